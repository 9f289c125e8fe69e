"""`publisher worker`: a Procrastinate worker sending digests' chunks (fan-out, docs/scale.md)."""

from __future__ import annotations

import os
import socket
import sys

import click

from ..errors import PublisherError, StoreError
from .base import EXIT_CONFIG, config_path, fail, load_app, main, open_store, out


@main.command()
@click.option("--name", help="The worker's name in its log lines (default: worker-<host>-<pid>).")
@click.pass_context
def worker(ctx: click.Context, name: str | None) -> None:
    """Send the digest chunks the scheduler hands over ([fanout] enabled, a PostgreSQL store)
    until SIGTERM or Ctrl-C; run one on any number of machines."""
    from sqlalchemy.engine import make_url

    app = load_app(ctx, store=False)
    settings = app.settings
    url = make_url(settings.store.url)
    if url.get_backend_name() != "postgresql":
        fail(
            PublisherError(
                f"`publisher worker` needs a PostgreSQL store; {config_path(ctx)} has {url.get_backend_name()} "
                f"({url.render_as_string(hide_password=True)})",
                "with SQLite one process sends the digest: `publisher run` (or `publisher digest send`); to send "
                'from workers, move the store to PostgreSQL (store.url = "postgresql+psycopg://user@host/db", '
                "docs/scale.md) and set [fanout] enabled = true",
            ),
            EXIT_CONFIG,
        )
    if not settings.fanout.enabled:
        fail(
            PublisherError(
                f"[fanout] enabled is false in {config_path(ctx)}: `publisher run` sends each digest in its own "
                "process and hands nothing to workers",
                "set [fanout] enabled = true (docs/scale.md), restart `publisher run`, then start the workers",
            ),
            EXIT_CONFIG,
        )
    from ..store.job_queue import check_procrastinate

    try:  # before Procrastinate is imported: a missing or mismatched one is named, not a SQL error
        check_procrastinate()
    except StoreError as exc:
        fail(exc, EXIT_CONFIG)
    open_store(ctx, app)
    name = name or f"worker-{socket.gethostname()}-{os.getpid()}"
    fanout, rate = settings.fanout, settings.digest.messages_per_second
    pace = f"{rate:g} messages a second" if rate > 0 else "no rate limit"
    out.print(
        f"{name}: sending digest chunks from {url.render_as_string(hide_password=True)}, {fanout.concurrency} at a "
        f"time, {pace} for every sender of this store together; SIGTERM or Ctrl-C stops it after the messages "
        "in flight",
        highlight=False,
    )
    sys.stdout.flush()
    from ..fanout import run_worker

    try:
        run_worker(app, name)
    finally:
        app.close()
