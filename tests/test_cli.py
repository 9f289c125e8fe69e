"""The command line as people type it: global options anywhere, the default configuration."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import Site
from publisher.cli import main


def leaf_and_group_commands(group: click.Group, prefix: str = "publisher") -> list[tuple[str, click.Command]]:
    """Every command and group under `group` (not `group` itself), with its full name."""
    found: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        found.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            found += leaf_and_group_commands(command, f"{prefix} {name}")
    return found


def test_every_command_takes_the_global_options_after_its_name() -> None:
    for name, command in leaf_and_group_commands(main):
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
