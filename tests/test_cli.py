"""The command line as people type it: global options anywhere, the default configuration."""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import pkgutil
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import ROOT, Site, every_command
from publisher import cli
from publisher.cli import main
from publisher.cli.base import COMMAND_MODULES


def test_each_command_is_defined_by_the_modules_its_name_imports() -> None:
    """`publisher NAME` imports only the modules COMMAND_MODULES names for NAME: they must be
    every module that defines NAME or one of its subcommands, and every command is there."""
    for found in pkgutil.iter_modules(cli.__path__):
        importlib.import_module(f"publisher.cli.{found.name}")
    assert sorted(main.commands) == sorted(COMMAND_MODULES)
    for name, command in main.commands.items():
        under = every_command(command) if isinstance(command, click.Group) else []
        defining = {c.callback.__module__ for c in [command, *(c for _n, c in under)] if c.callback is not None}
        assert defining == {f"publisher.cli.{module}" for module in COMMAND_MODULES[name]}, name


def test_every_command_takes_the_global_options_after_its_name() -> None:
    for name, command in every_command(main):
        flags = {flag for param in command.params for flag in param.opts}
        assert {"--config", "-v", "--verbose"} <= flags, name


@pytest.mark.parametrize(
    "args",
    [
        ["--config", "{config}", "build"],
        ["build", "--config", "{config}"],
        ["--config", "{config}", "-v", "build"],
        ["build", "-v", "--config", "{config}"],
        ["-v", "build", "--config", "{config}"],
    ],
    ids=" ".join,
)
def test_build_with_the_global_options_anywhere(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    site.article("高新院新闻/a.md", "第一篇")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no config here: only the option can name it
    monkeypatch.delenv("PUBLISHER_CONFIG", raising=False)
    result = CliRunner().invoke(main, [arg.format(config=site.config) for arg in args])
    assert result.exit_code == 0, result.output
    assert (site.out / "rss.xml").is_file()
    verbose = "-v" in args
    assert ("new " in result.stderr) == verbose, result.stderr  # -v logs every new article


def test_the_last_config_given_wins(site: Site, tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    result = CliRunner().invoke(main, ["--config", str(missing), "check", "--config", str(site.config)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["--config", str(site.config), "check", "--config", str(missing)])
    assert result.exit_code == 2
    assert str(missing) in result.output and "not found" in result.output


def test_a_group_command_takes_them_too(site: Site, tmp_path: Path) -> None:
    site.article("高新院新闻/a.md", "第一篇")
    assert site.cli("build").exit_code == 0
    out = tmp_path / "preview"
    result = CliRunner().invoke(
        main, ["digest", "preview", "--config", str(site.config), "-v", "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert (out / "digest.html").is_file()
    result = CliRunner().invoke(main, ["subscribers", "--config", str(site.config), "list"])
    assert result.exit_code == 0, result.output
    assert "0 subscriber(s)" in result.output


SITE_CONFIG = """\
[site]
title = "{title}"
url = "https://www.example.org"
[[categories]]
name = "新闻"
[[sources]]
type = "files"
path = "content"
"""


def site_folder(folder: Path, title: str) -> Path:
    """A config titled `title` at `folder`, its content under the current directory."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "publisher.toml"
    path.write_text(SITE_CONFIG.format(title=title), encoding="utf-8")
    return path


def built_title(cwd: Path) -> str:
    return (cwd / "public" / "rss.xml").read_text(encoding="utf-8").split("<title>", 2)[1].split("<", 1)[0]


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PUBLISHER_CONFIG", raising=False)
    (tmp_path / "content").mkdir()
    return tmp_path


def test_the_config_is_found_in_order(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    site_folder(cwd / "config", "demo")
    assert runner.invoke(main, ["build"]).exit_code == 0
    assert built_title(cwd) == "demo"  # config/publisher.toml, today's default
    site_folder(cwd, "here")
    assert runner.invoke(main, ["build"]).exit_code == 0
    assert built_title(cwd) == "here"  # ./publisher.toml first
    monkeypatch.setenv("PUBLISHER_CONFIG", str(site_folder(cwd / "env", "from env")))
    assert runner.invoke(main, ["build"]).exit_code == 0
    assert built_title(cwd) == "from env"
    given = site_folder(cwd / "given", "given")
    assert runner.invoke(main, ["build", "--config", str(given)]).exit_code == 0
    assert built_title(cwd) == "given"


def test_a_named_config_that_is_missing_is_an_error_not_a_fallback(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site_folder(cwd, "here")
    monkeypatch.setenv("PUBLISHER_CONFIG", str(cwd / "gone.toml"))
    result = CliRunner().invoke(main, ["build"])
    assert result.exit_code == 2
    assert "gone.toml" in result.output and "not found" in result.output


def test_no_config_anywhere_says_where_it_looked_and_what_to_do(cwd: Path) -> None:
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 2
    assert "./publisher.toml" in result.output and "./config/publisher.toml" in result.output
    assert "$PUBLISHER_CONFIG" in result.output and "--config" in result.output
    assert "publisher init" in result.output


# --- lists: whole values off a terminal, --format, times in the site's zone ----------------

LONG_EMAIL = "a.very.long.address.for.the.institute.newsletter.editor-in-chief@research-institute.example.cn"


def subscribed(site: Site) -> None:
    """Two subscribers, signed up at 2026-11-20 08:00 UTC (16:00 in Asia/Shanghai)."""
    from publisher.model import SubscriberStatus
    from publisher.subscriptions import add

    app = site.app()
    try:
        status = SubscriberStatus.CONFIRMED
        add(
            app.store,
            LONG_EMAIL,
            "欧阳·很长的名字也要完整地显示出来",
            ("policy", "tech"),
            status,
            site.clock_now,
            app.offered,
        )
        add(app.store, "b@example.cn", "", (), SubscriberStatus.PENDING, site.clock_now, app.offered)
    finally:
        app.close()


def test_subscribers_list_off_a_terminal_prints_whole_values_with_the_zone_named(site: Site) -> None:
    subscribed(site)
    result = site.cli("subscribers", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = ["email", "name", "categories", "script", "cadence", "status", "since", "(Asia/Shanghai)", "via"]
    assert lines[0].split() == header
    assert "…" not in result.stdout
    first = next(line for line in lines if line.startswith(LONG_EMAIL + " "))
    assert "欧阳·很长的名字也要完整地显示出来" in first and "政策解读、科技创新" in first
    assert "2026-11-20 16:00" in first  # 08:00 UTC, shown in the site's zone
    assert "(all)" in next(line for line in lines if line.startswith("b@example.cn"))
    assert "(site's)" in first and " weekly " in first
    assert lines[-1] == "2 subscriber(s)"


def test_subscribers_list_as_csv_and_json(site: Site) -> None:
    subscribed(site)
    as_csv = site.cli("subscribers", "list", "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert sorted(r["email"] for r in rows) == sorted([LONG_EMAIL, "b@example.cn"])
    by_email = {r["email"]: r for r in rows}
    assert by_email[LONG_EMAIL]["categories"] == "政策解读;科技创新"  # as `subscribers import` reads them
    assert by_email[LONG_EMAIL]["status_at"] == "2026-11-20T16:00:00+08:00"
    assert by_email["b@example.cn"]["categories"] == "" and by_email["b@example.cn"]["status"] == "pending"

    as_json = site.cli("subscribers", "list", "--format", "json", "--status", "confirmed")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == [
        {
            "email": LONG_EMAIL,
            "name": "欧阳·很长的名字也要完整地显示出来",
            "categories": ["政策解读", "科技创新"],
            "script": "",
            "cadence": "weekly",
            "status": "confirmed",
            "status_at": "2026-11-20T16:00:00+08:00",
            "status_via": "cli",
        }
    ]


def test_subscribers_list_on_a_narrow_terminal_folds_instead_of_cutting(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from publisher.cli import tables

    subscribed(site)
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100, color_system=None, soft_wrap=True)
    monkeypatch.setattr(tables, "out", terminal)
    assert site.cli("subscribers", "list").exit_code == 0
    shown = screen.getvalue()
    assert "…" not in shown
    lines = shown.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["email", "name"])
    email_width = lines[header].index("name")  # the first column, as wide as the screen left it
    assert email_width < len(LONG_EMAIL)  # so the address had to be folded...
    first_column = "".join(line[:email_width].strip() for line in lines[header + 1 :])
    assert LONG_EMAIL in first_column  # ...and is there whole, over several lines


def test_digest_status_shows_the_window_in_the_sites_zone(site: Site) -> None:
    site.article("高新院新闻/a.md", "第一篇")
    site.append_config(site.mail_to_outbox())
    assert site.cli("build").exit_code == 0
    assert site.cli("digest", "send", "--since", "2026-05-01", "--until", "2026-05-31").exit_code == 0
    table = site.cli("digest", "status")
    assert table.exit_code == 0, table.output
    header = table.stdout.splitlines()[0]
    assert "after (Asia/Shanghai)" in header and "until (Asia/Shanghai)" in header
    assert "2026-04-30 23:59" in table.stdout and "2026-05-31 23:59" in table.stdout  # all of May
    [record] = json.loads(site.cli("digest", "status", "--format", "json").stdout)
    assert record["digest"] == "window:2026-05-01..2026-05-31" and record["status"] == "done"
    assert record["start"].startswith("2026-04-30T23:59:59") and record["start"].endswith("+08:00")
    assert record["end"].startswith("2026-05-31T23:59:59") and record["end"].endswith("+08:00")
    rows = list(csv.DictReader(io.StringIO(site.cli("digest", "status", "--format", "csv").stdout)))
    assert rows[0]["id"] == str(record["id"]) and rows[0]["sent"] == str(record["sent"])


# --- make run -------------------------------------------------------------------------------


def test_make_run_serves_where_it_is_told_and_prints_that_address(site: Site, tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "publisher").exists() or shutil.which("make") is None:
        pytest.skip("needs make and the checkout's .venv (`make test` makes both)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "make-run.out"
    command = ["make", "-s", "-o", ".venv/.installed", "run", f"PORT={port}", "HOST=127.0.0.2", f"CONFIG={site.config}"]
    env = {**os.environ, "PUBLISHER_SECRET_KEY": "make-run-test-signing-key-0123456789"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        base = f"http://127.0.0.2:{port}"
        deadline = time.monotonic() + 60
        while f"serving {base}/" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as answer:
            assert answer.status == 200
        assert "8080" not in log.read_text(errors="replace")  # no address but the real one
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # make and the publisher it started
        process.wait(timeout=20)
