"""The store: SQLAlchemy 2 Core tables and the queries services need. Returns model objects.

One Store, composed of one class per aggregate (articles.py, subscribers.py, signups.py,
form_tokens.py, bounces.py, ledger.py, retries.py, sources.py, accounts.py, people.py, reports.py,
websub.py) over one engine; the tables are in schema/.
Import everything from here: `from publisher.store import Store`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, event, insert, select
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError

from ..errors import StoreError, StoreSchemaError
from ..private_files import create_private, private_folder
from .accounts import Account, AccountExists, AccountStore, AdminSession, AuditEntry
from .archive import ArchivedDigest, ArchiveStore
from .articles import ArticleStore, Known
from .bounces import BounceStore, DeliveryRef, NewMailEvent, Recorded, StoredEvent, Suppression
from .form_tokens import FormTokenStore
from .ledger import DigestRow, LedgerStore, QueueChunk
from .ledger_connection import Ledger
from .locks import BUILD_LOCK, SCHEDULER_LOCK, held_lock
from .people import PeopleStore, ReaderDelivery, SubscriberPage
from .reports import CategoryWeeks, DigestReport, ReportStore, SubscriberWeek, Week, weeks_ending
from .retries import EARLIER, GAVE_UP, SENT_AGAIN, UNANSWERED, DeliveryProblem, RetryStore, next_try_at
from .revision import HEAD, create_at_head, read_state
from .schema import SITE_SCOPE, meta_table, metadata
from .send_rates import SendRateStore
from .signups import Budget, SignupRequest, SignupStore
from .sources import WHOLE_SOURCE, ScopeHealth, SourceHealth, SourceStateStore
from .subscribers import SubscriberStore
from .watch import DigestRates, WatchStore
from .websub import HubState, Waiting, WebSubStore
from .writer import SQLITE_CHECKPOINT_PAGES, StoreWriter, sqlite_datetime

log = logging.getLogger(__name__)

__all__ = [
    "Account", "AccountExists", "AdminSession", "AuditEntry",
    "EARLIER", "GAVE_UP", "SENT_AGAIN", "UNANSWERED", "SITE_SCOPE", "WHOLE_SOURCE",
    "Budget", "DeliveryProblem", "DeliveryRef", "DigestRates", "DigestRow",
    "Known", "Ledger", "NewMailEvent", "PeopleStore", "ReaderDelivery", "Recorded", "ScopeHealth", "SignupRequest",
    "SourceHealth", "Store", "StoreWriter", "StoredEvent", "SubscriberPage", "Suppression", "metadata",
    "next_try_at", "prepare_sqlite_file", "sqlite_datetime", "store_failure",
    "CategoryWeeks", "DigestReport", "SubscriberWeek", "Week", "weeks_ending",
    "ArchivedDigest", "HubState", "Waiting", "QueueChunk",
]  # fmt: skip


class Store(
    ArticleStore,
    SubscriberStore,
    SignupStore,
    FormTokenStore,
    BounceStore,
    LedgerStore,
    RetryStore,
    SourceStateStore,
    WatchStore,
    AccountStore,
    PeopleStore,
    ReportStore,
    ArchiveStore,
    WebSubStore,
    SendRateStore,
):
    """All persistence. One instance per process; connections are short-lived. Opening one
    creates a new store at the code's schema revision, and refuses a store at another
    (StoreSchemaError: behind needs `publisher db upgrade`, ahead a newer publisher)."""

    def __init__(self, url: str) -> None:
        self._checkpointing: threading.Thread | None = None
        self._checkpoint_turn = threading.Lock()
        try:
            parsed = make_url(url)
            self.engine: Engine = create_engine(parsed)
        except (ArgumentError, ImportError) as exc:  # NoSuchModuleError is an ArgumentError
            fix = 'use "sqlite:///var/publisher.db", or "postgresql+psycopg://user@host/db" with its driver installed'
            raise StoreError(f"store.url {url!r} is not a database publisher can open: {exc}", fix) from exc
        prepare_sqlite_file(parsed)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "checkout", self._leave_the_log)
            event.listen(self.engine, "checkin", _copy_the_log_again)
        try:
            state = read_state(self.engine)
            if state.empty:
                state = create_at_head(self.engine)
        except DBAPIError as exc:
            self.engine.dispose()
            raise store_failure(exc, url) from exc
        if not state.current:
            self.engine.dispose()
            raise StoreSchemaError(parsed.render_as_string(hide_password=True), state.label, HEAD, state.ahead)

    def close(self) -> None:
        with self._checkpoint_turn:
            self._checkpointed()
        self.engine.dispose()

    def writer(
        self,
        clock: Callable[[], datetime] | None = None,
        source: str | None = None,
        checkpoint_later: Callable[[], bool] = lambda: False,
    ) -> StoreWriter:
        """The writes of one source's ingest, committed a batch at a time and at the end; an
        error rolls back the batch in progress (see StoreWriter). With `clock`, new articles
        are stamped first seen under the turnstile (see StoreWriter._stamp). On SQLite, when
        `checkpoint_later()` at its end (no process is to be forked while the thread runs: a
        build whose workers run already), its log is copied by `checkpoint_soon`."""
        return StoreWriter(self.engine, clock, source, self.checkpoint_soon, checkpoint_later)

    def checkpoint_soon(self) -> None:
        """Copy SQLite's write-ahead log into the database on a thread of its own. An ingest's
        last commit left it to this: copying the 10 to 40 MB a cold build wrote took that commit
        50 ms at 10,000 articles, while the feeds waited for it; SQLite's checkpoint runs
        without Python's lock, beside the build's queries of its feeds. Done before the next
        one starts and before the store closes; one that fails is done by the next commit."""
        begun = threading.Event()  # so that this process's next commit finds it running, and leaves it be
        with self._checkpoint_turn:  # one at a time, whichever thread's ingest asks
            self._checkpointed()
            thread = threading.Thread(target=self._checkpoint, args=(begun,), name="store-checkpoint")
            try:
                thread.start()
            except RuntimeError:  # no thread to be had: copied here and now
                self._checkpoint(begun)
                return
            self._checkpointing = thread
        begun.wait()

    def _checkpoint(self, begun: threading.Event) -> None:
        try:
            with self.engine.connect() as conn:
                begun.set()
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except SQLAlchemyError as exc:
            log.warning("the store's log was not copied into it now (its next commit does): %s", exc)
        finally:
            begun.set()

    def _leave_the_log(self, dbapi_connection: Any, record: Any, _proxy: object) -> None:
        """A connection taken while `checkpoint_soon`'s thread copies the log leaves the copy to
        it: a commit that found more than 1,000 pages in the log would copy them itself, its
        caller waiting, whenever it got there before the thread (26-33 ms of a cold build of
        10,000 articles, in the first small write after its ingest). Given back, the
        connection copies as usual again (`_copy_the_log_again`)."""
        thread = self._checkpointing
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")
            record.info[_LEAVING_THE_LOG] = True

    def _checkpointed(self) -> None:
        if self._checkpointing is not None:
            self._checkpointing.join()
            self._checkpointing = None

    # --- meta: small named values (the signing key, signatures, last ingest) and the scheduler lock

    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(meta_table.c.value).where(meta_table.c.key == key)).scalar_one_or_none()

    def setdefault_meta(self, key: str, value: str) -> str:
        """The value kept under `key`, keeping `value` first when there is none: of two
        processes or threads racing to make it, the first wins and both get its value."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(meta_table).values(key=key, value=value))
        except IntegrityError:
            pass  # made meanwhile: theirs stands
        kept = self.get_meta(key)
        assert kept is not None
        return kept

    def set_meta(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(meta_table).where(meta_table.c.key == key))
            conn.execute(insert(meta_table).values(key=key, value=value))

    @contextmanager
    def scheduler_lock(self) -> Iterator[bool]:
        """Held for the life of the scheduling process: True if this process got it (see
        `held_lock`), so one `publisher run` schedules a store however many serve it."""
        with self.held_lock("scheduler-lock", SCHEDULER_LOCK) as got:
            yield got

    @contextmanager
    def build_lock(self) -> Iterator[bool]:
        """Held while the service builds (the scheduler's ingest job, the console's "ingest
        now", in whichever process): True if this build got it; False, another one runs."""
        with self.held_lock("build-lock", BUILD_LOCK) as got:
            yield got

    def build_running(self) -> bool:
        """Whether a build holds `build_lock` now, in any process (asked, then let go)."""
        with self.build_lock() as got:
            return not got

    @contextmanager
    def held_lock(self, suffix: str, key: int) -> Iterator[bool]:
        """A lock every process on the store sees, taken without waiting: True if this one got
        it (locks.held_lock)."""
        with held_lock(self.engine, suffix, key) as got:
            yield got


def prepare_sqlite_file(url: URL) -> None:
    """A SQLite store's file made before SQLite makes it: 0600 (it holds the signing key; SQLite
    gives its -wal and -shm the same mode), in a folder made 0700 when it is missing."""
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(url.database)
        private_folder(database.parent)
        create_private(database)


BUSY_TIMEOUT_MS = 120_000  # how long a SQLite writer waits for another's lock before "database is locked"


def store_failure(exc: DBAPIError, url: str) -> StoreError:
    """A database error as the operator can act on it, naming the store: a full disk, a lock
    held too long, a damaged file, a folder it cannot open; else the driver's own words."""
    if url:
        parsed = make_url(url)
        sqlite = parsed.get_backend_name() == "sqlite"
        where = parsed.database if sqlite and parsed.database else parsed.render_as_string(hide_password=True)
    else:  # not known where the error was caught
        where = "of store.url"
    said = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    lowered = said.lower()
    if "disk is full" in lowered or "no space left" in lowered or "could not extend file" in lowered:
        return StoreError(
            f"the store {where} cannot grow: its disk is full ({said})",
            "free space on the disk that holds it, then run the command again: the step that failed was "
            "rolled back whole, and what was committed before it is kept",
        )
    if "database is locked" in lowered:
        return StoreError(
            f"the store {where} stayed locked by another process for {BUSY_TIMEOUT_MS // 1000} s ({said})",
            "a long import or ingest, or a sqlite3 shell with an open transaction, holds it: let it end "
            "(or end it), then run the command again",
        )
    if "not a database" in lowered or "malformed" in lowered:
        return StoreError(
            f"the store {where} is damaged ({said})",
            f"stop publisher and restore the last backup (docs/operations.md, Backups); "
            f"`sqlite3 {where} 'pragma integrity_check'` shows what is wrong",
        )
    if "disk i/o error" in lowered:
        return StoreError(
            f"the store {where} could not be written ({said})",
            "the disk that holds it refused: full, over a quota or file-size limit, or failing (see the "
            "kernel log); fix that, then run the command again: the step that failed was rolled back whole",
        )
    if "unable to open database file" in lowered:
        return StoreError(
            f"cannot open the store {where} ({said})",
            "check that its folder exists and that the user publisher runs as may write there",
        )
    return StoreError(f"the store {where} failed: {said}", "check [store] url, the disk and the database server")


CACHE_KB = 8 * 1024  # SQLite's page cache per connection
_LEAVING_THE_LOG = "publisher.leaving-the-log"  # a pooled connection's mark: see Store._leave_the_log


def _copy_the_log_again(dbapi_connection: Any, record: Any) -> None:
    if record.info.pop(_LEAVING_THE_LOG, False) and dbapi_connection is not None:  # None: invalidated
        with suppress(Exception):  # noqa: BLE001 - a connection that fails here is not pooled again
            dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # SQLite's default page cache (2 MB) holds too little of the articles' indexes at 100,000
    # articles: a cold build read its own pages back from the OS between commits (9.6 s of system
    # time at 500 rows a commit). 8 MB, with 2,000 rows a commit, does as well as 32 MB.
    cursor.execute(f"PRAGMA cache_size=-{CACHE_KB}")
    # A digest waits for a running ingest's commit rather than failing with "database is locked".
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()
