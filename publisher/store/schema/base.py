"""The one MetaData of the store's tables, its naming convention, the meta table (with the
turnstile row) and the helpers every aggregate shares."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Column, MetaData, String, Table, Text, insert, update
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

# Every constraint and index has a name, so a migration can drop or alter it on SQLite (batch
# mode) and PostgreSQL alike (Alembic's "The Importance of Naming Constraints"). Names given
# explicitly below predate this convention and are kept.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)


META_KEY_LENGTH = 300  # "reading-signature:" and a source's name of up to 200 characters
meta_table = Table(
    "meta",
    metadata,
    Column("key", String(META_KEY_LENGTH), primary_key=True),
    Column("value", Text, nullable=False),
)


TURNSTILE = "turnstile"  # the meta row that orders ingest commits and digest windows


def take_turnstile(conn: Connection) -> None:
    """Take the turnstile row (a write: SQLite's write lock, a row lock elsewhere) until commit."""
    m = meta_table.c
    if not conn.execute(update(meta_table).where(m.key == TURNSTILE).values(value=m.value)).rowcount:
        conn.execute(insert(meta_table).values(key=TURNSTILE, value=""))


def upsert_into(conn: Connection, table: Table) -> PostgresInsert | SqliteInsert:
    """An INSERT into `table` that can take ON CONFLICT, in the dialect of `conn`. Only the
    dialect in use is imported: PostgreSQL's costs every command on SQLite 30 to 60 ms."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgres_insert

        return postgres_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def naive_utc(moment: datetime) -> datetime:
    """How the store keeps a moment: naive, in UTC."""
    if moment.tzinfo is UTC:  # an article's dates: a cold build of 100,000 stores 300,000 of them
        return moment.replace(tzinfo=None)
    return moment.astimezone(UTC).replace(tzinfo=None)


def aware_utc(moment: datetime) -> datetime:
    """A moment read from the store, aware again (UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
