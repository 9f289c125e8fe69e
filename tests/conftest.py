"""Shared fixtures: a site folder with its own config, content, store and output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, settings

from publisher.app import App
from publisher.cli import main
from publisher.config import load_settings
from publisher.model import BuildReport
from publisher.store import Store

if TYPE_CHECKING:
    import trustme
    from dovecot import Dovecot

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["backends"]  # --backend: the store every test runs on


def backends() -> Any:
    """tests/backends.py, imported by pytest as a plugin (so not at this module's top)."""
    import backends

    return backends


# CI runs the property tests on fixed examples, so a landing never hangs on a lucky draw;
# `make test` elsewhere draws new ones each time, to keep finding bugs (two were found so).
# No deadline and no "too slow" check in either: an example's time is the machine's load, not
# a property of the code (a first example that loads OpenCC took 290 ms on a busy machine and
# failed as "flaky"). Speed is bench/'s to measure. A test's own `suppress_health_check`
# replaces the profile's list: it names too_slow again.
_UNTIMED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", _UNTIMED, derandomize=True, print_blob=True)
settings.register_profile("dev", _UNTIMED, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

CONFIG = """\
[site]
title = "高新院"
url = "https://www.example.org"
language = "zh-CN"
timezone = "Asia/Shanghai"
[output]
dir = "{out}"
[store]
url = "{store_url}"
[text]
convert = "t2s"
[feeds]
max_items = {max_items}
[[categories]]
name = "高新院新闻"
[[categories]]
name = "政策解读"
slug = "policy"
[[categories]]
name = "科技创新"
slug = "tech"
[[sources]]
type = "files"
path = "{content}"
default_category = "高新院新闻"
"""


class Site:
    """A throw-away site: content folder, config file, store and output in tmp_path."""

    def __init__(self, root: Path, max_items: int = 50) -> None:
        self.root = root
        self.content = root / "content"
        self.out = root / "public"
        self.db = root / "var" / "publisher.db"
        self.config = root / "publisher.toml"
        self.store_url = backends().new_store_url(self.db)  # the run's backend
        self.content.mkdir(parents=True, exist_ok=True)
        self.write_config(max_items=max_items)
        self.clock_now = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    def mail_to_outbox(self) -> str:
        """The [mail] tables that send every message to `outbox` as .eml files."""
        return f'\n[mail]\ntransport = "outbox"\n[mail.outbox]\ndir = "{self.outbox}"\n'

    def write_config(self, extra: str = "", max_items: int = 50) -> None:
        text = CONFIG.format(out=self.out, store_url=self.store_url, content=self.content, max_items=max_items)
        self.config.write_text(text + extra, encoding="utf-8")

    def append_config(self, extra: str) -> None:
        """More TOML after what the config holds now (a source, a table)."""
        self.config.write_text(self.config.read_text(encoding="utf-8") + extra, encoding="utf-8")

    def use_store(self, url: str) -> None:
        """The site's store is `url` from now on (the config as it is, and as written again)."""
        text = self.config.read_text(encoding="utf-8").replace(f'url = "{self.store_url}"', f'url = "{url}"')
        self.config.write_text(text, encoding="utf-8")
        self.store_url = url

    def add(self, relative: str, text: str, encoding: str = "utf-8") -> Path:
        path = self.content / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(textwrap.dedent(text).lstrip("\n").encode(encoding))
        return path

    def article(
        self, relative: str, title: str, date: str = "2026-05-06 14:00", body: str = "正文。", **meta: str
    ) -> Path:
        lines = [
            f"title: {title!r}" if ":" in title or title[:1] in "[{*&!|>'\"%@`" else f"title: {title}",
            f"date: {date}",
        ]
        lines += [f"{k}: {v}" for k, v in meta.items()]
        return self.add(relative, "---\n" + "\n".join(lines) + "\n---\n" + body + "\n")

    def app(self) -> App:
        return App(load_settings(self.config), clock=lambda: self.clock_now)

    def build(self) -> BuildReport:
        report = BuildReport()
        app = self.app()
        try:
            app.build(report)
        finally:
            app.close()
        return report

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(main, ["--config", str(self.config), *args], catch_exceptions=False)

    def feed(self, path: str) -> bytes:
        return (self.out / path).read_bytes()

    def sql(self, statement: str, **params: Any) -> list[tuple[Any, ...]]:
        """Run one SQL statement on the site's store, whatever its backend, and commit: its rows."""
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        engine = create_engine(self.store_url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                result = conn.execute(text(statement), params)
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            engine.dispose()

    def mtimes(self) -> dict[str, int]:
        return {p.relative_to(self.out).as_posix(): p.stat().st_mtime_ns for p in self.out.rglob("*") if p.is_file()}


def every_command(group: click.Group, prefix: str = "publisher") -> list[tuple[str, click.Command]]:
    """Every command and group under `group` (not `group` itself), with its full name
    (`publisher subscribers import`), as click finds them: the root group defines each when it
    is asked for (publisher.cli.base.COMMAND_MODULES)."""
    ctx = click.Context(group)
    found: list[tuple[str, click.Command]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None:
            continue
        found.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            found += every_command(command, f"{prefix} {name}")
    return found


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


@pytest.fixture
def make_site(tmp_path: Path) -> Callable[..., Site]:
    counter = iter(range(1000))

    def factory(**kwargs: int) -> Site:
        return Site(tmp_path / f"site{next(counter)}", **kwargs)

    return factory


def touch_later(path: Path) -> None:
    """Move a file's mtime forward so a fingerprint sees the change even on coarse clocks."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def part_failures(output: str) -> list[str]:
    """Each `part failed:` report in a command's output, with its hint line."""
    lines = output.splitlines()
    return [f"{line}\n{lines[n + 1]}" for n, line in enumerate(lines) if line.startswith("part failed:")]


def days_ago(days: int) -> str:
    """A front-matter date `days` before now, in the site's zone (the CLI runs on the real clock)."""
    return f"{datetime.now(ZoneInfo('Asia/Shanghai')) - timedelta(days=days):%Y-%m-%d %H:%M}"


HEALTH_TOKEN = "service-test-health-token"  # what conftest.Service gives the process
HEALTH_HEADERS = {"Authorization": f"Bearer {HEALTH_TOKEN}"}  # /healthz with its details

PUBLISHER_MAIN = "import sys; from publisher.cli import main; sys.exit(main())"  # for `python -c`


class Service:
    """`publisher run` (or `command`) on a loopback port, its output in files (no pipe to fill
    up). `python -c` imports `publisher` from `cwd` first when there is one there."""

    def __init__(
        self,
        config: Path | None,
        cwd: Path,
        port: int,
        program: Sequence[str] = (),
        env: dict[str, str] | None = None,
        command: str = "run",
    ) -> None:
        """`program`: the `publisher` to run (default: this checkout's, through this Python);
        `config` None: the one `publisher` finds in `cwd`."""
        self.base = f"http://127.0.0.1:{port}"
        self.stdout, self.stderr = cwd / "run.out", cwd / "run.err"
        program = list(program) or [sys.executable, "-c", PUBLISHER_MAIN]
        env = {
            **(os.environ if env is None else env),
            "PUBLISHER_SECRET_KEY": "service-test-signing-key-0123456789",
            "PUBLISHER_HEALTH_TOKEN": HEALTH_TOKEN,
        }
        options = ["--config", str(config)] if config is not None else []
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [*program, *options, command, "--port", str(port)], env=env, stdout=out, stderr=err, cwd=cwd
            )

    def output(self) -> str:
        return f"stdout:\n{self.stdout.read_text(errors='replace')}\nstderr:\n{self.stderr.read_text(errors='replace')}"

    def health(self, timeout: float = 10) -> Any:
        """The response of /healthz with its details (the operator's token)."""
        import requests

        return requests.get(f"{self.base}/healthz", headers=HEALTH_HEADERS, timeout=timeout)

    def wait_until_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f"serving {self.base}/" in self.stdout.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                pytest.fail(f"`publisher run` exited with {self.process.returncode}\n{self.output()}")
            time.sleep(0.1)
        pytest.fail(f"`publisher run` did not serve within {timeout} s\n{self.output()}")

    def wait_until_built(self, timeout: float = 60) -> dict[str, Any]:
        """Until /healthz reports a finished ingest and none running (`run` serves first and
        builds in the background; for a store with no ingest before this process); its report."""
        import requests

        deadline = time.monotonic() + timeout
        report: dict[str, Any] = {}
        while time.monotonic() < deadline:
            report = requests.get(f"{self.base}/healthz", headers=HEALTH_HEADERS, timeout=10).json()
            if report["last_ingest"] is not None and report["scheduler"].get("ingest") == "idle":
                return report
            time.sleep(0.1)
        pytest.fail(f"no finished ingest within {timeout} s: {report}\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM, as systemd sends it; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"`publisher run` did not stop within 10 s of SIGTERM\n{self.output()}")


@pytest.fixture(scope="session")
def dovecot_ca() -> trustme.CA:
    """The CA that signs the throwaway Dovecot's certificate (tests/dovecot.py)."""
    import trustme

    return trustme.CA()


@pytest.fixture(scope="session")
def dovecot_server(dovecot_ca: trustme.CA) -> Iterator[Dovecot]:
    """One throwaway Dovecot on loopback for the whole run; it skips when not installed."""
    from dovecot import Dovecot

    server = Dovecot(dovecot_ca).start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def dovecot(dovecot_server: Dovecot) -> Dovecot:
    """The Dovecot with an empty mailbox: INBOX only, and nothing in it."""
    dovecot_server.empty()
    return dovecot_server


@pytest.fixture(scope="session")
def sent(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A digest sent to four readers through the SMTP transport, as the SMTP server (aiosmtpd)
    received it, by recipient: the originals that bounces and complaints are built around."""
    from email import message_from_bytes, policy

    from aiosmtpd.controller import Controller
    from test_newsletter import Inbox, add_readers, mailing_site
    from test_smtp import free_port

    box, port = Inbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        site = mailing_site(Site(tmp_path_factory.mktemp("sent")), port)
        add_readers(site, 4)
        result = site.cli("digest", "send")
        assert result.exit_code == 0, result.output
    finally:
        controller.stop()
    by_recipient = {}
    for raw in box.raw:
        parsed = message_from_bytes(raw, policy=policy.default)
        by_recipient[parsed["To"].addresses[0].addr_spec] = raw
    assert len(by_recipient) == 4
    return by_recipient


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A new store's URL on the run's backend: SQLite in tmp_path, or a PostgreSQL database of
    the test's own (tests/backends.py)."""
    return backends().new_store_url(tmp_path / "var" / "store.db")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A new Store on the run's backend (store_url)."""
    opened = Store(store_url)
    yield opened
    opened.close()
