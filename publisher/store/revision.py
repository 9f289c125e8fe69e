"""Which schema revision this code needs, and which one a store has: one query when a Store
opens. Alembic itself is imported only to migrate (migrate.py), never on this path."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, delete, insert, inspect, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from .job_queue import create_job_queue
from .schema import metadata

# Every revision in migrations/versions, oldest first (a test holds them together).
REVISIONS = (
    "0001",
    "0002",
    "0003",
    "0004_deliverability",
    "0005_source_state",
    "0006_admin",
    "0007_device_trust",
    "0008_readers_choices",
    "0009_renditions",
    "0010_fan_out",
    "0011_send_rates",
    "0012_confirmed_requests",
)
HEAD = REVISIONS[-1]
BEFORE_MIGRATIONS = "0.1.0 (before migrations)"  # our tables, but no alembic_version

# Alembic's own table, as Alembic makes it; written here so a new store is stamped without it.
version_table = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


@dataclass(frozen=True, slots=True)
class SchemaState:
    """What a store holds: a revision, BEFORE_MIGRATIONS, or None (no table of ours yet)."""

    stored: str | None

    @property
    def empty(self) -> bool:
        return self.stored is None

    @property
    def current(self) -> bool:
        return self.stored == HEAD

    @property
    def behind(self) -> bool:
        return self.stored == BEFORE_MIGRATIONS or self.stored in REVISIONS[:-1]

    @property
    def ahead(self) -> bool:
        return not (self.empty or self.current or self.behind)

    @property
    def label(self) -> str:
        return "none (an empty database)" if self.stored is None else self.stored


def read_state(engine: Engine) -> SchemaState:
    """The store's schema state; one query when alembic_version is there."""
    with engine.connect() as conn:
        try:
            stored = list(conn.execute(select(version_table.c.version_num)).scalars())
        except DBAPIError:  # no alembic_version table (PostgreSQL's failed query needs the rollback)
            conn.rollback()
            stored = []
        if len(stored) == 1:
            return SchemaState(stored[0])
        if len(stored) > 1:
            return SchemaState(" and ".join(sorted(stored)))  # branches we never made: ahead
        ours = set(inspect(conn).get_table_names()) & set(metadata.tables)
        return SchemaState(BEFORE_MIGRATIONS if ours else None)


def stamp(conn: Connection, revision: str) -> None:
    """Record `revision` as the store's schema revision, as `alembic stamp` does."""
    version_table.create(conn, checkfirst=True)
    conn.execute(delete(version_table))
    conn.execute(insert(version_table).values(version_num=revision))


def create_at_head(engine: Engine) -> SchemaState:
    """A new store: every table as the code has it, stamped at HEAD, in one transaction.
    Another process doing the same at the same moment is fine: the state is read again."""
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            if not inspect(conn).has_table(version_table.name):
                create_job_queue(conn)  # PostgreSQL: Procrastinate's tables, as revision 0010 makes them
                stamp(conn, HEAD)
    except DBAPIError:
        state = read_state(engine)
        if state.empty:
            raise
        return state
    return SchemaState(HEAD)
