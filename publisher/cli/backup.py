"""`publisher backup FILE`: an online copy of a SQLite store, safe to restore mid-send
(docs/operations.md, Backups)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import StoreError
from .base import EXIT_CONFIG, err, fail, load_app, main, open_store, out


@main.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def backup(ctx: click.Context, file: Path) -> None:
    """Copy the SQLite store to a new FILE (mode 0600) while the service runs; a digest in flight is paused there."""
    from sqlalchemy.engine import make_url

    from ..store.backup import backup_sqlite
    from ..store.migrate import shown_url

    app = load_app(ctx, store=False)
    try:
        url = make_url(app.settings.store.url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            err.print(
                f"publisher backup copies SQLite stores; {shown_url(str(url))} is {url.get_backend_name()}: "
                "use its own tool, for PostgreSQL `pg_dump --format=custom --file=FILE DBNAME` "
                "(docs/operations.md, Backups)",
                markup=False,
                highlight=False,
            )
            raise SystemExit(EXIT_CONFIG)
        open_store(ctx, app)  # a store at another schema revision is refused, as by every command
        try:
            done = backup_sqlite(Path(url.database), file)
        except StoreError as exc:
            fail(exc)
    finally:
        app.close()
    out.print(f"backed up {url.database} to {done.path} (taken {done.taken_at:%Y-%m-%dT%H:%M:%SZ})", markup=False,
              highlight=False)  # fmt: skip
    for digest in done.paused:
        counts = ", ".join(f"{state} {n}" for state, n in sorted(digest.counts.items()))
        out.print(
            f"digest {digest.key} was {digest.was} ({counts}): paused in the copy, so a restore does not send it "
            "again by itself (docs/operations.md, Backups)",
            markup=False,
            highlight=False,
        )
