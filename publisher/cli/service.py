"""The service: `publisher run` (scheduler and web) and `publisher serve` (the web alone)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigError, PublisherError
from .base import config_path, err, fail, load_app, main, open_store, out
from .db import upgrade_store

if TYPE_CHECKING:
    from ..app import App

HOST = click.option("--host", help="Listen on this address (default: [web] host).")
PORT = click.option("--port", type=int, help="Listen on this port; 0 picks a free one (default: [web] port).")


@main.command()
@HOST
@PORT
@click.option("--upgrade", is_flag=True, help="Upgrade the store's schema first, as `publisher db upgrade` does.")
@click.pass_context
def run(ctx: click.Context, host: str | None, port: int | None, upgrade: bool) -> None:
    """The whole service: the scheduler (ingest, feeds, digest) and the web, until SIGTERM or Ctrl-C."""
    _serve(ctx, host, port, schedule=True, upgrade=upgrade)


@main.command()
@HOST
@PORT
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """The web alone: feeds, subscription pages, /healthz. No scheduler."""
    _serve(ctx, host, port, schedule=False)


def _serve(ctx: click.Context, host: str | None, port: int | None, schedule: bool, upgrade: bool = False) -> None:
    import signal

    from .. import jobs
    from ..scheduler import Scheduler
    from ..web import create_app
    from ..web.server import create_server, serve_in_thread

    def stop(signum: int, _frame: object) -> None:
        # Once: a second signal during the stop must not cut it short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        jobs.STOP.set()  # a digest being sent stops after the message in flight
        raise SystemExit(0)  # waitress's loop ends on it (closing its sockets); so does start-up

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    app = load_app(ctx, store=False)
    if upgrade:
        upgrade_store(app.settings.store.url, command="publisher run --upgrade")
    open_store(ctx, app)
    config_file = str(config_path(ctx).resolve())
    settings = app.settings
    scheduler = Scheduler(settings, config_file, app.store, app.metrics) if schedule else None
    if schedule:
        jobs.share_metrics(config_file, app.metrics)  # the jobs' work shows on this process's /metrics
        if app.websub is not None:  # its thread outlives each build's job, and sends what waited
            jobs.share_hub_pings(config_file, app.websub)
            app.websub.wake()
    try:
        app.alert_webhook()  # its variables are in the environment, and its URL is https
    except ConfigError as exc:
        fail(exc)
    try:
        if scheduler is not None:
            # Served at once, whatever the sources do: the existing output, the subscription
            # pages, /healthz. The first ingest and build run in the background.
            if scheduler.start(ingest_now=True):
                box = settings.bounces.mailbox
                polls = f"; bounce mailbox {box.host} every {box.interval} min" if box is not None else ""
                out.print(
                    f"scheduler: ingest and feeds every {settings.schedule.ingest_every} min; digest "
                    f"{settings.digest.schedule!r} ({settings.site.timezone}){polls}",
                    highlight=False,
                )
            else:
                err.print("another `publisher run` schedules this database: this one serves the web only")
        try:
            if scheduler is not None:
                Path(settings.output.dir).mkdir(parents=True, exist_ok=True)  # the builds write there
            web = create_app(app, scheduler.health if scheduler else None)
            server = create_server(
                web, settings.web, host or settings.web.host, settings.web.port if port is None else port
            )
            console = _console(app, create_server, serve_in_thread)
        except (PublisherError, OSError) as exc:
            fail(exc)
        base = f"http://{server.effective_host}:{server.effective_port}"
        banner = [f"serving {base}/ (feeds: {base}/rss.xml), subscribe: {base}/subscribe, health: {base}/healthz"]
        if settings.admin.enabled:
            banner.append(f"console: {console or base}/admin/")
        if settings.mail.transport == "outbox":
            banner.append(f"mail goes to {settings.mail.outbox.dir}/ as .eml files (transport = outbox)")
        out.print("\n".join(banner), highlight=False)  # one write: a reader that sees its first line sees it all
        sys.stdout.flush()
        server.run()  # until SIGTERM/SIGINT
    finally:
        jobs.STOP.set()
        if scheduler is not None and scheduler.owner:
            err.print("stopping: letting running jobs finish")
        if scheduler is not None:
            scheduler.stop()
        app.close()


def _console(app: App, create_server: Any, serve_in_thread: Any) -> str | None:
    """The console on its own address (`[admin] listen`), served by a second waitress in a
    thread of this process; its base URL, or None when it is on the public server (or off)."""
    from ..config import listen_address
    from ..web import create_admin_app

    admin = app.settings.admin
    if not (admin.enabled and admin.listen):
        return None
    host, port = listen_address(admin.listen)
    server = create_server(create_admin_app(app), app.settings.web, host, port)
    serve_in_thread(server, "publisher-console")
    shown = f"[{server.effective_host}]" if ":" in str(server.effective_host) else server.effective_host
    return f"http://{shown}:{server.effective_port}"
