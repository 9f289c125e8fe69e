"""`publisher db upgrade` and `db status`: bring a store's schema to the code's revision with
Alembic (imported here only), backing a SQLite store up first. See docs/operations.md."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from ..errors import StoreError, StoreSchemaError
from ..private_files import create_private, tighten_store
from . import prepare_sqlite_file, store_failure
from .revision import BEFORE_MIGRATIONS, HEAD, REVISIONS, SchemaState, create_at_head, read_state, stamp

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = "publisher.store:migrations"  # a package resource: works from the wheel

# The tables and columns of publisher 0.1.0 (migrations/versions/0001_baseline.py creates
# them; a test holds the two together): a store without alembic_version must have exactly
# these before it is stamped at 0001.
BASELINE = {
    "categories": ("id", "name", "slug", "first_seen"),
    "articles": ("id", "source", "key", "fingerprint", "withdrawn", "explicit_id", "guid", "content_hash",
                 "published", "updated", "first_seen", "title", "url", "author", "image", "tags", "summary",
                 "content_html"),
    "article_categories": ("article_id", "category_slug", "published"),
    "dirty_feeds": ("scope",),
    "folder_digests": ("source", "folder", "digest"),
    "subscribers": ("id", "email", "email_key", "name", "categories", "status", "status_at", "status_via",
                    "created_at"),
    "digests": ("id", "key", "window_start", "window_end", "status", "created_at"),
    "deliveries": ("id", "digest_id", "email_key", "message_id", "status", "attempts", "last_error",
                   "provider_id", "updated_at"),
    "meta": ("key", "value"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Upgraded:
    """What `upgrade` did: from which revision to which, and where the backup is."""

    before: str
    after: str
    backup: Path | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def shown_url(url: str) -> str:
    """The store's URL as messages show it: without a password."""
    return make_url(url).render_as_string(hide_password=True)


def migration_engine(url: str) -> Engine:
    """An engine whose transactions hold DDL too. SQLite: foreign keys off (a table rebuild
    drops the old table, which must not cascade) and an explicit BEGIN IMMEDIATE, so the whole
    upgrade is one transaction that no writer can interleave with."""
    try:
        engine = create_engine(make_url(url))
    except ArgumentError as exc:
        raise StoreError(f"store.url {url!r} is not a database URL", str(exc)) from exc
    if engine.dialect.name == "sqlite":

        def on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
            dbapi_connection.isolation_level = None  # we say BEGIN ourselves
            dbapi_connection.execute("PRAGMA foreign_keys=OFF")
            dbapi_connection.execute("PRAGMA busy_timeout=120000")

        def on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        event.listen(engine, "connect", on_connect)
        event.listen(engine, "begin", on_begin)
    return engine


def status(url: str) -> SchemaState:
    """The store's schema state, creating nothing (a SQLite file that is not there is empty)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        return SchemaState(None)
    engine = migration_engine(url)
    try:
        return read_state(engine)
    except DBAPIError as exc:
        raise store_failure(exc, url) from exc
    finally:
        engine.dispose()


def upgrade(url: str, backup: bool = True, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Upgraded:
    """Migrate the store to HEAD in one transaction. A 0.1.0 store (no alembic_version) is
    checked to have 0.1.0's tables and stamped 0001 first; a SQLite file is copied beside
    itself first unless `backup` is False; a store ahead of the code is refused. A SQLite file
    that is not there yet is made at HEAD, its folder too, as a Store would make it (private)."""
    engine = migration_engine(url)
    prepare_sqlite_file(engine.url)
    try:
        state = read_state(engine)
        if state.ahead:
            raise StoreSchemaError(shown_url(url), state.label, HEAD, True, "publisher db upgrade")
        if state.current:
            return Upgraded(state.label, HEAD, None)
        if state.empty:
            create_at_head(engine)
            return Upgraded(state.label, HEAD, None)
        copy = _backup(engine, state, now()) if backup else None
        with engine.begin() as conn:
            if state.stored == BEFORE_MIGRATIONS:
                _check_baseline(conn, url)
                stamp(conn, REVISIONS[0])
            from alembic import command

            command.upgrade(alembic_config(conn), "head")
            if conn.dialect.name == "sqlite":
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise StoreError(f"the upgraded store breaks {len(broken)} foreign key(s): {broken[:3]}",
                                     "nothing was changed; report this with the store's schema")  # fmt: skip
        if engine.url.get_backend_name() == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            for path in tighten_store(Path(engine.url.database)):
                log.warning("made %s private (0600): it holds the signing key and every reader's address", path)
        return Upgraded(state.label, HEAD, copy)
    except DBAPIError as exc:
        failure = store_failure(exc, url)
        raise StoreError(f"cannot upgrade: {failure.message}", f"nothing was changed; {failure.hint}") from exc
    finally:
        engine.dispose()


def alembic_config(connection: Connection | None = None, url: str = "") -> Config:
    """Alembic's configuration, made in code (no alembic.ini): the scripts in the package, and
    the connection to run on (or, for a developer's `new_revision`, a URL)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url:
        config.set_main_option("sqlalchemy.url", url)
    config.attributes["connection"] = connection
    return config


def new_revision(url: str, message: str, rev_id: str) -> None:
    """For developers: write versions/<rev_id>_....py from the difference between the store at
    `url` (at HEAD) and the metadata of schema/. Add rev_id to revision.REVISIONS afterwards."""
    from alembic import command

    config = alembic_config(url=url)
    config.attributes["autogenerate"] = True
    command.revision(config, message=message, autogenerate=True, rev_id=rev_id)


def _check_baseline(conn: Connection, url: str) -> None:
    """A store without alembic_version must be 0.1.0's, table for table, column for column."""
    inspector = inspect(conn)
    problems = []
    for table, columns in BASELINE.items():
        if not inspector.has_table(table):
            problems.append(f"table {table} is missing")
            continue
        found = tuple(c["name"] for c in inspector.get_columns(table))
        if sorted(found) != sorted(columns):
            problems.append(f"table {table} has columns {', '.join(found)}, 0.1.0 had {', '.join(columns)}")
    if problems:
        raise StoreError(
            f"the store at {shown_url(url)} has no schema revision and is not a publisher 0.1.0 store: "
            + "; ".join(problems),
            "point [store] url at the store publisher made, or restore it from a backup",
        )


def _backup(engine: Engine, state: SchemaState, now: datetime) -> Path | None:
    """A SQLite store's copy, made with SQLite's online backup: `<file>.before-<revision>-<UTC time>`, 0600."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    revision = "0.1.0" if state.stored == BEFORE_MIGRATIONS else state.label
    target = Path(f"{database}.before-{revision}-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}")
    try:
        create_private(target)  # a copy of the signing key and of every reader's address
        source, copy = sqlite3.connect(database), sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
    except (OSError, sqlite3.Error) as exc:
        target.unlink(missing_ok=True)
        raise StoreError(
            f"cannot back up the store to {target}: {exc}",
            "nothing was changed; free space on the disk that holds it (the copy is as big as the store), "
            "then run `publisher db upgrade` again",
        ) from exc
    return target
