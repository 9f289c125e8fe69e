"""Alembic's environment: run by publisher.store.migrate on the connection it hands over, in
its transaction. The table `apscheduler_jobs` belongs to APScheduler and is never touched.

Revisions run without target_metadata, so each one creates exactly what it spells out (0001
the unnamed constraints of 0.1.0); only autogenerate (migrate.new_revision) compares with the
code's metadata, whose naming convention then names every constraint it writes."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from publisher.store.schema import metadata


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """Only our tables: the database may hold others (APScheduler's jobs)."""
    return type_ != "table" or name in metadata.tables


def run(connection: Connection) -> None:
    autogenerating = bool(context.config.attributes.get("autogenerate"))
    context.configure(
        connection=connection,
        target_metadata=metadata if autogenerating else None,
        render_as_batch=True,  # SQLite alters tables by rebuilding them
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("publisher's migrations run online only: `publisher db upgrade`")
handed_over = context.config.attributes.get("connection")
if handed_over is not None:
    run(handed_over)
else:
    with create_engine(context.config.get_main_option("sqlalchemy.url", "")).begin() as connection:
        run(connection)
