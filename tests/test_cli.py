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
