"""Procrastinate's job queue inside a PostgreSQL store: its tables, types and functions, made by
revision 0010 (and with a new store), so a digest chunk's delivery rows and its job are written
in one transaction (publisher.fanout). SQLite stores have no job queue: they send in one process.

Procrastinate ships its schema as one file (`procrastinate/sql/schema.sql`, the latest) and as
SQL migrations that bring older schemas to it. The file is what we apply: its migrations cannot
all run in one transaction (a new enum value must be committed before it is used), and `db
upgrade` on PostgreSQL is one transaction. The file is the schema of the newest migration the
installed Procrastinate ships, so we check that it is the one this revision knows
(`SCHEMA_MIGRATION`): a Procrastinate release with a newer schema needs a revision of ours
applying its migration, and until one exists it is refused here, naming what to install.
"""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable

from sqlalchemy.engine import Connection

from ..errors import StoreError

# The newest of Procrastinate's migrations that its schema.sql includes, for the versions
# pyproject.toml allows (3.10): the schema revision 0010 applies.
SCHEMA_MIGRATION = "03.04.00_50_post_add_retry_failed_job_procedure.sql"
REQUIREMENT = "procrastinate>=3.10,<3.11"
_INSTALL = f"install publisher's `postgres` extra (pip install 'publisher[postgres]', which has {REQUIREMENT})"


def check_procrastinate() -> Traversable:
    """The installed Procrastinate's SQL folder, refused (naming what to install) when it is
    missing or its schema is not the one this code knows: `db upgrade` (through
    `procrastinate_schema`) and `publisher worker` check it before touching the queue."""
    try:
        sql = resources.files("procrastinate.sql")
        newest = max(p.name for p in sql.joinpath("migrations").iterdir() if p.name.endswith(".sql"))
    except ModuleNotFoundError:
        raise StoreError("a PostgreSQL store keeps its job queue in Procrastinate's tables", _INSTALL) from None
    if newest != SCHEMA_MIGRATION:
        raise StoreError(
            f"the installed Procrastinate's schema (up to {newest}) is not the one this publisher knows "
            f"({SCHEMA_MIGRATION})",
            _INSTALL,
        )
    return sql


def procrastinate_schema() -> str:
    """Procrastinate's schema.sql, checked to be the schema this code knows."""
    return check_procrastinate().joinpath("schema.sql").read_text(encoding="utf-8")


def create_job_queue(conn: Connection) -> None:
    """Procrastinate's tables and functions in `conn`'s transaction, on PostgreSQL only. The
    file holds many statements and `%` signs: it goes to the driver as it is, without
    parameters (psycopg then neither splits nor substitutes anything)."""
    if conn.dialect.name != "postgresql":
        return
    conn.connection.driver_connection.execute(procrastinate_schema())  # type: ignore[union-attr]


def drop_job_queue(conn: Connection) -> None:
    """Revision 0010's downgrade: every table, function and type of the current schema whose
    name starts `procrastinate_`. Procrastinate names all its objects so and publisher's own
    tables never are; a table an operator made with that prefix would go too. Like the create
    path, the block goes to the driver as it is: its `%` signs are format()'s, not parameters."""
    if conn.dialect.name != "postgresql":
        return
    conn.connection.driver_connection.execute(  # type: ignore[union-attr]
        "DO $$ DECLARE r record; BEGIN "
        "FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
        "AND tablename LIKE 'procrastinate\\_%' LOOP "
        "EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.tablename); END LOOP; "
        "FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%' LOOP "
        "EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', r.f); END LOOP; "
        "FOR r IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate\\_%' AND t.typtype IN ('e', 'c') "
        "LOOP EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', r.typname); END LOOP; END $$"
    )
