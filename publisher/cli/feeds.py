"""The feed commands: check, ingest and build, each ending with its summary."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from ..errors import ConfigError, PublisherError, StoreError, StoreSchemaError
from .base import EXIT_CONFIG, EXIT_PROBLEMS, err, fail, labelled, load_app, main, out, progress

if TYPE_CHECKING:
    from ..app import App
    from ..model import BuildReport

STRICT = click.option("--strict", is_flag=True, help="Any unreadable item is an error (for CI).")


def _summary(title: str, report: BuildReport, seconds: float, feeds: bool, verbose: bool = False) -> None:
    from rich.table import Table

    table = Table(title=f"publisher {title}", title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        ("new articles", report.new),
        ("changed", report.changed),
        ("unchanged", report.unchanged),
        ("skipped (see warnings)", report.skipped),
        ("withdrawn (gone from source)", report.withdrawn),
    ]
    if feeds:
        rows += [("files written", report.feeds_written), ("files unchanged", report.feeds_unchanged)]
    for label, value in rows:
        table.add_row(label, str(value))
    table.add_row("seconds", f"{seconds:.2f}")
    out.print(table)
    if report.written_paths and (verbose or len(report.written_paths) <= 12):
        out.print("written: " + " ".join(report.written_paths), highlight=False)
    for source in report.failed_sources:
        err.print(labelled("source failed:", "bold red", source), highlight=False)
    for part in report.failed_parts:
        err.print(labelled("part failed:", "bold red", part), highlight=False)
    if report.failed_sources or report.failed_parts:
        err.print("The feeds keep the last good articles of what failed; `publisher status` shows each part.")


def _run(
    ctx: click.Context,
    title: str,
    strict: bool,
    action: Callable[[App, BuildReport, Callable[[int], None]], None],
    feeds: bool,
) -> None:
    from ..model import BuildReport

    app = load_app(ctx, ahead=True)
    report = BuildReport()
    started = time.perf_counter()
    try:
        with progress("reading") as tick:
            action(app, report, tick)
    except PublisherError as exc:
        err.print(labelled("error:", "bold red", str(exc)), highlight=False)
        sys.exit(EXIT_PROBLEMS)
    finally:
        app.close()
    _summary(title, report, time.perf_counter() - started, feeds)
    if report.failed_sources or report.failed_parts or (strict and report.problems):
        sys.exit(EXIT_PROBLEMS)


def _check_schema(url: str) -> None:
    """Exit 2, as every other command would, when the store needs `publisher db upgrade` or was
    made by a newer publisher; a store that is not there yet is fine (the first build makes it)."""
    from ..store.migrate import shown_url, status
    from ..store.revision import HEAD

    try:
        state = status(url)
    except StoreError as exc:
        fail(exc)
    if state.behind or state.ahead:
        fail(StoreSchemaError(shown_url(url), state.label, HEAD, state.ahead, "publisher check"), EXIT_CONFIG)


@main.command()
@STRICT
@click.pass_context
def check(ctx: click.Context, strict: bool) -> None:
    """Validate the configuration, the mail and webhook secrets, and read every source, writing nothing."""
    app = load_app(ctx, store=False)  # the store is neither read nor created
    _check_schema(app.settings.store.url)
    try:
        app.transport().close()  # the secrets it names are in the environment
        app.hook_doors()  # and those of the provider webhooks
        app.alert_webhook()  # and the [alerts] webhook's
    except ConfigError as exc:
        err.print(str(exc), highlight=False)
        sys.exit(EXIT_CONFIG)
    with progress("checking") as tick:
        report = app.check(tick)
    app.close()
    look_problems, look_warnings = app.check_look()
    for problem in look_problems:
        err.print(labelled(problem, "bold red"), highlight=False)
    for warning in look_warnings:
        err.print(labelled("warning:", "yellow", warning), highlight=False)
    for note in report.source_notes:  # what each web source showed; an html source, per category
        out.print(f"source {note}", highlight=False)
    for problem in report.problems:  # an item a build would skip, or a selector that matches nothing
        err.print(labelled("problem:", "yellow", problem), highlight=False)
    for warning in report.warnings:  # what a source noticed that costs no item (a next page not found)
        err.print(labelled("warning:", "yellow", warning), highlight=False)
    for source in report.failed_sources:
        err.print(labelled("source failed:", "bold red", source), highlight=False)
    for part in report.failed_parts:  # worded as `build` words them
        err.print(labelled("part failed:", "bold red", part), highlight=False)
    out.print(
        f"configuration OK; {report.checked} item(s) readable, {report.skipped} skipped, "
        f"{len(report.failed_sources) + len(report.failed_parts)} failed (sources, or categories of one)",
        highlight=False,
    )
    if report.failed_sources or report.failed_parts or look_problems or (strict and report.problems):
        sys.exit(EXIT_PROBLEMS)


@main.command()
@STRICT
@click.option(
    "--retry-failed", is_flag=True,
    help="Ask now for every failed item (`publisher status --failed`), whatever its wait: list pages are read "
    "in full, and an item no list page shows any more is forgotten.",
)  # fmt: skip
@click.pass_context
def ingest(ctx: click.Context, strict: bool, retry_failed: bool) -> None:
    """Read the sources into the store (new, changed and withdrawn articles)."""
    _run(ctx, "ingest", strict, lambda app, report, tick: app.ingest(report, strict, tick, retry_failed), feeds=False)


@main.command()
@STRICT
@click.pass_context
def build(ctx: click.Context, strict: bool) -> None:
    """Ingest, then write every feed, index.html and feeds.opml whose bytes changed."""
    _run(ctx, "build", strict, lambda app, report, tick: app.build(report, strict, tick), feeds=True)
