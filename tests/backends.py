"""Which store the suite runs on, and the PostgreSQL databases it uses.

`pytest --backend postgresql` (or PUBLISHER_TEST_BACKEND=postgresql) runs every test that opens
a store on PostgreSQL; the default is SQLite. `make test` runs the suite once on each. A test of
one backend's own behaviour (SQLite's file locks, its files' modes, its online backup) carries
`@pytest.mark.sqlite_only(reason)` or `postgresql_only(reason)` and runs in that backend's run
only, as does a test whose stores are SQLite whatever the run's backend (the installed wheel's:
a new user's store is the SQLite file `publisher init` configures); a fixture parametrised
over both backends (`store_url`) gives the run's own.

The PostgreSQL server: $PUBLISHER_TEST_POSTGRES when set (an admin URL), else the one on
127.0.0.1:5432 when it answers, else a throwaway server started from Debian's PostgreSQL
binaries (pytest-postgresql's executor; `make test` installs the binaries when missing and
apt-get is usable). Each test gets a database of its own, copied from a template that holds
the schema at the code's head, and dropped when the test ends. Under pytest-xdist the main
process finds (or starts) the server and its workers use it.

This module is also the pytest plugin (conftest's `pytest_plugins`) behind `--backend`.
"""

from __future__ import annotations

import glob
import os
import pwd
import queue
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BACKENDS = ("sqlite", "postgresql")
LOCAL_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
THROWAWAY = "throwaway"  # PUBLISHER_TEST_POSTGRES=throwaway: skip the local server, start one


class NoServer(Exception):
    """No PostgreSQL to test on, and why (what the skips and the CI failure say)."""


class Postgres:
    """A PostgreSQL server for the run: throwaway databases on it, one per test."""

    def __init__(self, admin_url: str, executor: Any = None, folder: Path | None = None) -> None:
        self.admin_url, self.executor, self.folder = admin_url, executor, folder  # a throwaway server's
        self.created: list[str] = []  # databases not dropped yet, oldest first
        self.not_dropped: list[str] = []  # what a drop said
        self._doomed: queue.Queue[str | None] = queue.Queue()
        self._dropper: threading.Thread | None = None
        self._template: str | None = None

    def _admin(self) -> Any:
        from sqlalchemy import create_engine

        return create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=_null_pool())

    def __str__(self) -> str:
        if self.executor is not None:
            return f"a throwaway server ({self.executor.executable}, {_shown(self.admin_url)}, in {self.folder})"
        return _shown(self.admin_url)

    def new_database(self, *, schema: bool = True) -> str:
        """A new database's URL; `schema`: with the tables of a new store at the code's head
        (copied from the run's template), else empty. Dropped by `drop_since`."""
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        name = f"publisher_test_{uuid.uuid4().hex[:12]}"
        template = f' TEMPLATE "{self._template_name()}"' if schema else ""
        engine = self._admin()
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"{template}'))
        finally:
            engine.dispose()
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def _template_name(self) -> str:
        """The database every test's copies: a new store's schema, made once per run."""
        if self._template is None:
            from publisher.store import Store

            self._template = "__template__"  # new_database(schema=False) must not recurse here
            url = self.new_database(schema=False)
            self._template = self.created.pop()
            store = Store(url)
            store.close()
            store.engine.dispose()
        return self._template

    def drop_since(self, count: int) -> None:
        """Drop the databases created after the first `count`, in a thread of their own: the
        next test does not wait for it (a drop takes about 0.1 s)."""
        doomed, self.created = self.created[count:], self.created[:count]
        for name in doomed:
            self._doomed.put(name)
        if doomed and self._dropper is None:
            self._dropper = threading.Thread(target=self._drop_each, name="drop-test-databases", daemon=True)
            self._dropper.start()

    def _drop_each(self) -> None:
        from sqlalchemy import text

        engine = self._admin()
        try:
            while (name := self._doomed.get()) is not None:
                try:
                    with engine.connect() as conn:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                except Exception as exc:  # noqa: BLE001 (said at the end of the run)
                    self.not_dropped.append(f"{name}: {exc}")
        finally:
            engine.dispose()

    def close(self) -> None:
        """Drop every database left, the template last, and stop a throwaway server."""
        self.drop_since(0)
        if self._template is not None:
            self.created.append(self._template)
            self._template = None
            self.drop_since(0)
        if self._dropper is not None:
            self._doomed.put(None)
            self._dropper.join()
            self._dropper = None
        if self.executor is not None:
            self.executor.stop()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def chosen_backend(option: str | None) -> str:
    backend = option or os.environ.get("PUBLISHER_TEST_BACKEND") or "sqlite"
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (--backend or PUBLISHER_TEST_BACKEND): {', '.join(BACKENDS)}")
    return backend


def find_postgres() -> Postgres:
    """The run's PostgreSQL server (the module's docstring says which); NoServer says why none."""
    wanted = os.environ.get("PUBLISHER_TEST_POSTGRES", "")
    if wanted and wanted != THROWAWAY:
        problem = _answers(wanted)
        if problem:
            raise NoServer(f"$PUBLISHER_TEST_POSTGRES ({_shown(wanted)}) does not answer: {problem}")
        return Postgres(wanted)
    if not wanted:
        problem = _answers(LOCAL_SERVER)
        if not problem:
            return Postgres(LOCAL_SERVER)
        local = f"nothing answers at 127.0.0.1:5432 ({problem})"
    else:
        local = "PUBLISHER_TEST_POSTGRES=throwaway"
    return _throwaway_server(local)


def _throwaway_server(why: str) -> Postgres:
    """A server of our own from Debian's binaries, on a free loopback port. initdb refuses to
    run as root, so as root it runs as Debian's `postgres` user (through runuser)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if not found:
        raise NoServer(f"{why}, and no PostgreSQL binaries (/usr/lib/postgresql/*/bin/pg_ctl) to start one: "
                       "install Debian's `postgresql` package (`make test` does, where apt-get is usable)")  # fmt: skip
    try:
        from pytest_postgresql.executors import PostgreSQLExecutor
    except ImportError as exc:
        raise NoServer(f"{why}, and pytest-postgresql is not installed ({exc})") from None
    base = Path(tempfile.mkdtemp(prefix="publisher-tests-pg-"))
    pg_ctl, folder = found[-1], base / "server"
    folder.mkdir()
    if os.geteuid() == 0:
        pg_ctl = _as_postgres_user(pg_ctl, folder, why)
    port = _free_port()
    executor = PostgreSQLExecutor(
        executable=pg_ctl,
        host="127.0.0.1",
        port=port,
        datadir=str(folder / "data"),
        unixsocketdir=str(folder),
        logfile=str(folder / "server.log"),
        startparams="-w",
        dbname="postgres",
        user="postgres",
        postgres_options="-c fsync=off -c full_page_writes=off -c synchronous_commit=off",
    )
    try:
        executor.start()
    except Exception as exc:  # noqa: BLE001 (any failure: say what it was, where its log is)
        raise NoServer(f"{why}, and a throwaway server from {found[-1]} did not start ({exc}; log: "
                       f"{folder / 'server.log'})") from None  # fmt: skip
    return Postgres(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", executor, base)


def _as_postgres_user(pg_ctl: str, folder: Path, why: str) -> str:
    """A pg_ctl that runs as the `postgres` user, who owns `folder`."""
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise NoServer(f"{why}; running as root, a throwaway server needs the `postgres` user "
                       "(Debian's postgresql package makes it)") from None  # fmt: skip
    runuser = shutil.which("runuser")
    if runuser is None:
        raise NoServer(f"{why}; running as root, a throwaway server needs runuser to start it as `postgres`")
    os.chown(folder, user.pw_uid, user.pw_gid)
    folder.parent.chmod(0o711)  # postgres reaches its folder
    wrapper = folder.parent / "pg_ctl"
    wrapper.write_text(f'#!/bin/sh\nexec {runuser} -u postgres -- {pg_ctl} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def _answers(url: str) -> str:
    """'' when the server at `url` runs a query, else what went wrong."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url, poolclass=_null_pool(), connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 (any failure means: no server to test on)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        engine.dispose()
    return ""


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool


def _version(path: str) -> tuple[int, ...]:
    number = Path(path).parent.parent.name
    return tuple(int(part) for part in number.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- the pytest plugin -------------------------------------------------------------------------

BACKEND = "sqlite"  # the run's: --backend, else $PUBLISHER_TEST_BACKEND (pytest_configure)
_server: Postgres | NoServer | None = None  # this process's PostgreSQL, found when first needed
_LEFT = pytest.StashKey[int]()  # tests left to the other backend's run


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend", choices=BACKENDS, default=None,
        help="the store the tests run on (default: $PUBLISHER_TEST_BACKEND, else sqlite); tests/backends.py",
    )  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    global BACKEND
    BACKEND = chosen_backend(config.getoption("--backend"))
    config.addinivalue_line(
        "markers", "sqlite_only(reason): tests SQLite's own behaviour, or SQLite whatever the backend; the SQLite run's"
    )
    config.addinivalue_line(
        "markers", "postgresql_only(reason): tests PostgreSQL's own behaviour; runs in the PostgreSQL run"
    )
    if BACKEND == "postgresql" and not hasattr(config, "workerinput"):
        # Found once, here: pytest-xdist's workers start after this and use the same server.
        server = _find_once()
        if isinstance(server, Postgres):
            os.environ["PUBLISHER_TEST_POSTGRES"] = server.admin_url


def pytest_report_header(config: pytest.Config) -> str:
    where = f" on {_server}" if _server is not None else ""
    return f"store backend: {BACKEND}{where} (--backend, PUBLISHER_TEST_BACKEND; tests/backends.py)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The other backend's tests leave the run: those marked for it, and the instances of a
    fixture parametrised over both backends that are not the run's."""
    other = "postgresql" if BACKEND == "sqlite" else "sqlite"
    kept, left = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec is not None else ()
        if item.get_closest_marker(f"{other}_only") or other in (p for p in params if isinstance(p, str)):
            left.append(item)
        else:
            kept.append(item)
    config.stash[_LEFT] = len(left)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's
def pytest_testnodedown(node: Any, error: Any) -> None:
    """A pytest-xdist worker's count of the tests it left to the other run (each collects all)."""
    left = getattr(node, "workeroutput", {}).get("left_to_other_backend")
    if left is not None:
        node.config.stash[_LEFT] = left


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _server is not None:
        terminalreporter.write_line(f"PostgreSQL: {_server}")
    left = config.stash.get(_LEFT, 0)
    if left:
        other = "postgresql" if BACKEND == "sqlite" else "sqlite"
        terminalreporter.write_line(
            f"store backend {BACKEND}: {left} test(s) left to the {other} run (marked {other}_only, or its "
            f"instance of a test over both backends): pytest --backend {other}"
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["left_to_other_backend"] = session.config.stash.get(_LEFT, 0)
    if isinstance(_server, Postgres):
        _server.close()
        for problem in _server.not_dropped:
            print(f"PostgreSQL: a test database was not dropped: {problem}")


def _find_once() -> Postgres | NoServer:
    global _server
    if _server is None:
        try:
            _server = find_postgres()
        except NoServer as exc:
            _server = exc
    return _server


def postgres_server() -> Postgres:
    """The run's PostgreSQL server. Where there is none, the test skips saying why, or fails in
    CI (PUBLISHER_TEST_REQUIRE_POSTGRES=1, set by .ci/run: CI runs every test that needs it)."""
    server = _find_once()
    if isinstance(server, NoServer):
        if os.environ.get("PUBLISHER_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here (PUBLISHER_TEST_REQUIRE_POSTGRES=1): {server}")
        pytest.skip(f"PostgreSQL: {server}")
    return server


def new_store_url(sqlite_path: Path, *, schema: bool = True) -> str:
    """A store's URL on the run's backend: `sqlite_path`, or a new PostgreSQL database (with a
    new store's tables, or empty without `schema`), dropped when the test ends."""
    if BACKEND == "sqlite":
        return f"sqlite:///{sqlite_path}"
    return postgres_server().new_database(schema=schema)


def new_postgres_url(*, schema: bool = False) -> str:
    """A new PostgreSQL database whatever the run's backend, dropped when the test ends."""
    return postgres_server().new_database(schema=schema)


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """The PostgreSQL databases a test made are dropped when it ends (a module's or the
    session's fixtures keep theirs to the end of the run)."""
    before = len(_server.created) if isinstance(_server, Postgres) else 0
    yield
    if isinstance(_server, Postgres):
        _server.drop_since(before)
