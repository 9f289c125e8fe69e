"""What every `publisher` command pays before it does anything: the modules it imports.

Each command imports the heavy libraries it uses when it runs, so `publisher --help` and the
commands that need no store, web or mail start without them (docs/performance.md).
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from conftest import Site
from publisher.app import App
from publisher.cli import base, run

# Imported only by the commands that use them, never by `publisher --help`.
HEAVY = ("sqlalchemy", "pydantic", "jinja2", "prometheus_client", "argon2", "flask", "requests", "apscheduler",
         "rich.table", "rich.progress", "publisher.app", "publisher.config", "publisher.store")  # fmt: skip


def imported_by(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code` (which may end in SystemExit)."""
    shown = f"import atexit, json, sys\natexit.register(lambda: print(json.dumps(sorted(sys.modules))))\n{code}"
    done = subprocess.run([sys.executable, "-c", shown], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_command_line_starts_without_the_heavy_libraries() -> None:
    """`publisher --help` imports every command's module (base.COMMAND_MODULES): none of them
    imports a heavy library at its top."""
    loaded = imported_by("from publisher.cli import main\nmain(['--help'])")
    assert {"publisher.cli.digest", "publisher.cli.service"} <= loaded  # every command was defined
    assert sorted(name for name in HEAVY if name in loaded) == []


def test_a_command_imports_only_its_own_modules(tmp_path: Path) -> None:
    """`publisher init` defines no other command: their modules stay unread."""
    loaded = imported_by(f"from publisher.cli import main\nmain(['init', {str(tmp_path / 'site')!r}])")
    assert sorted(name for name in loaded if name.startswith("publisher.cli.")) == [
        "publisher.cli.base",
        "publisher.cli.init",
    ]


def test_a_mistyped_command_is_told_the_one_meant() -> None:
    """An unknown name has every command defined first, so click can say which was meant."""
    code = "from publisher.cli import main\nmain(['biuld'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert "No such command 'biuld'" in done.stderr and "Did you mean 'build'?" in done.stderr


@pytest.mark.parametrize("command", [["init", "{dir}/site"], ["theme", "export", "{dir}/theme"]])
def test_commands_that_use_no_store_run_without_its_libraries(command: list[str], tmp_path: Path) -> None:
    """`init` and `theme export` never open a store: they do not import SQLAlchemy or it (the
    root group's handling of a store's errors does not import them either)."""
    args = [part.format(dir=tmp_path) for part in command]
    loaded = imported_by(f"from publisher.cli import main\nmain({args!r})")
    assert any(tmp_path.iterdir())  # the command did its work
    assert sorted(name for name in ("sqlalchemy", "publisher.store") if name in loaded) == []


def test_the_program_starts_without_the_collector_and_then_collects(
    site: Site, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`publisher` (base.run) loads the app with the cyclic collector off, then turns it on with
    what the start made frozen, its youngest generation collected after YOUNG_COLLECTION new
    objects: `publisher run` serves for weeks, and must collect."""
    site.article("tech/a.md", "科技新闻")
    opening = base.open_store
    while_opening: list[bool] = []

    def open_store(ctx: click.Context, app: App) -> None:
        while_opening.append(gc.isenabled())
        opening(ctx, app)

    monkeypatch.setattr(base, "open_store", open_store)
    monkeypatch.setattr(sys, "argv", ["publisher", "--config", str(site.config), "build"])
    threshold = gc.get_threshold()
    try:
        with pytest.raises(SystemExit) as done:
            run()
        assert done.value.code == 0
        assert while_opening == [False]
        assert gc.isenabled() and gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == base.YOUNG_COLLECTION
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        gc.enable()
    assert "new articles" in capsys.readouterr().out


def test_check_without_http_mail_or_webhooks_imports_neither_requests_nor_cryptography(site: Site) -> None:
    """The transports of the HTTP APIs and the providers' webhooks are imported only when the
    configuration names them."""
    site.append_config(site.mail_to_outbox())
    site.article("tech/a.md", "科技新闻")
    loaded = imported_by(f"from publisher.cli import main\nmain(['--config', {str(site.config)!r}, 'check'])")
    assert "publisher.transports.outbox" in loaded  # checked: the transport was made
    assert sorted(name for name in ("requests", "cryptography", "publisher.bounces.providers") if name in loaded) == []


def test_db_upgrade_collects_as_it_upgrades(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """`publisher db upgrade` reads no app (`load_app` is what turns the collector on for the
    others): it turns it on itself before migrating, which can take long on a large store."""
    from publisher.store import migrate

    upgrading = migrate.upgrade
    while_upgrading: list[bool] = []

    def upgrade(*args: object, **kwargs: object) -> object:
        while_upgrading.append(gc.isenabled())
        return upgrading(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(migrate, "upgrade", upgrade)
    monkeypatch.setattr(sys, "argv", ["publisher", "--config", str(site.config), "db", "upgrade", "--no-backup"])
    threshold = gc.get_threshold()
    try:
        with pytest.raises(SystemExit) as done:
            run()
        assert done.value.code == 0
        assert while_upgrading == [True]
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        gc.enable()


@pytest.mark.sqlite_only("what a SQLite store imports")
def test_a_sqlite_store_is_opened_and_written_without_the_postgresql_dialect(site: Site) -> None:
    """Only the dialect in use is imported (store.schema.upsert_into): PostgreSQL's costs every
    command on SQLite 30 to 60 ms."""
    site.article("tech/a.md", "科技新闻")
    loaded = imported_by(f"from publisher.cli import main\nmain(['--config', {str(site.config)!r}, 'build'])")
    assert "sqlalchemy.dialects.sqlite" in loaded  # the build wrote its renditions through it
    assert sorted(name for name in loaded if name.startswith("sqlalchemy.dialects.postgresql")) == []


def test_a_build_counts_without_the_metrics_library(site: Site) -> None:
    """A build is never scraped: its counts stay in the App's Metrics, and prometheus_client
    (25 ms of its start) is not imported (metrics.py)."""
    site.article("tech/a.md", "科技新闻")
    loaded = imported_by(f"from publisher.cli import main\nmain(['--config', {str(site.config)!r}, 'build'])")
    assert "publisher.metrics" in loaded and "publisher.output" in loaded  # it counted, and wrote its feeds
    assert sorted(name for name in loaded if name.startswith("prometheus_client")) == []


def test_a_build_forks_its_work_ahead_before_it_validates_its_configuration(site: Site) -> None:
    """The process ahead (build_ahead.py) is forked on what the file most likely says, before
    pydantic and the settings' models load: a fifth of a cold build's start runs beside it."""
    code = (
        "import json, os, sys\n"
        "fork = os.fork\n"
        "def recorded():\n"
        "    loaded = sorted(name for name in ('pydantic', 'publisher.config', 'sqlalchemy') if name in sys.modules)\n"
        "    pid = fork()\n"
        "    if pid:\n"
        "        print('forked with', json.dumps(loaded), file=sys.stderr)\n"
        "    return pid\n"
        "os.fork = recorded\n"
        "from publisher.cli import main\n"
        f"main(['--config', {str(site.config)!r}, 'build'])\n"
    )
    site.article("tech/a.md", "一篇")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    forks = [line.removeprefix("forked with ") for line in done.stderr.splitlines() if line.startswith("forked with ")]
    assert forks and json.loads(forks[0]) == []  # the first: the process ahead (the workers come later)


def _program(code: str) -> subprocess.CompletedProcess[str]:
    """`code` run in a fresh interpreter, where the console script's `program` may end it."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_program_leaves_with_its_exit_code_after_the_exit_handlers(tmp_path: Path) -> None:
    """`program` (the console script) ends as SystemExit would: the exit handlers run, and what
    was printed but not yet written reaches the pipe, before the process exits with the code;
    a message for a code is said on stderr with status 1."""
    code = (
        "import atexit, sys\n"
        "from publisher.cli.entry import leave\n"
        "class TornDown:\n"
        "    def __del__(self):\n"
        "        print('torn down')\n"
        "kept = TornDown()  # deleted only by the interpreter's teardown, which leave skips\n"
        "atexit.register(lambda: print('handler ran'))\n"
        "print('buffered', end=' ')\n"
        "assert sys.gettrace() is None and sys.getprofile() is None  # else it leaves the usual way\n"
        "leave(int(sys.argv[1]) if sys.argv[1].isdigit() else sys.argv[1])\n"
    )
    for given, status in (("0", 0), ("3", 3), ("cannot go on", 1)):
        done = subprocess.run([sys.executable, "-c", code, given], capture_output=True, text=True, timeout=60)
        assert done.returncode == status
        assert done.stdout == "buffered handler ran\n"
        assert done.stderr == ("cannot go on\n" if status == 1 else "")
    # A command's SystemExit becomes the program's status: a configuration that is not there
    missing = tmp_path / "missing.toml"
    done = _program(f"import sys\nsys.argv = ['publisher', '--config', {str(missing)!r}, 'build']\n"
                    "from publisher.cli import program\nprogram()")  # fmt: skip
    assert done.returncode == base.EXIT_CONFIG and str(missing) in done.stderr


def test_the_program_waits_for_a_thread_the_interpreter_would_wait_for() -> None:
    """A thread that is not a daemon still running at the end: the program leaves the usual
    way, and the thread finishes its work first."""
    code = (
        "import threading, time\n"
        "from publisher.cli.entry import leave\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\n"
        "leave(4)\n"
    )
    done = _program(code)
    assert done.returncode == 4
    assert done.stdout == "thread done\n"


def test_the_program_returns_to_a_profiler_that_runs_it(tmp_path: Path) -> None:
    """Under `python -m cProfile` (as `bench/run.py --profile` runs a build) the program leaves
    the usual way, so the profiler gets to write what it measured (cProfile itself then exits
    0 whatever the program's status)."""
    script = tmp_path / "publisher_script.py"
    script.write_text("import sys\nsys.argv[1:] = ['--version']\nfrom publisher.cli import program\nprogram()\n")
    profile = tmp_path / "build.prof"
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile), str(script)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "publisher, version" in done.stdout
    assert profile.is_file() and profile.stat().st_size > 0
