"""The command line: load settings, build the app, call one service, report. Nothing more."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .app import App
from .config import DEFAULT_PATH, load_settings
from .errors import ConfigError, PublisherError
from .model import BuildReport, SubscriberStatus
from .normalize import CategoryIndex

out = Console(soft_wrap=True)  # no hard wrapping: paths in logs must stay whole
err = Console(stderr=True, soft_wrap=True)

EXIT_PROBLEMS = 1  # a source failed, or --strict found a bad item
EXIT_CONFIG = 2  # the configuration is invalid


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_PATH,
    envvar="PUBLISHER_CONFIG", show_default=True, help="The TOML configuration file.",
)  # fmt: skip
@click.option("-v", "--verbose", is_flag=True, help="Log every item, not just problems.")
@click.version_option(__version__, prog_name="publisher")
@click.pass_context
def main(ctx: click.Context, config_path: Path, verbose: bool) -> None:
    """Feeds (RSS, Atom, JSON Feed) and email digests for a news site."""
    handler: logging.Handler
    if err.is_terminal:
        handler = RichHandler(console=err, show_time=False, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:  # cron and CI logs: one plain line per message
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True)
    ctx.obj = config_path


def _app(ctx: click.Context) -> App:
    try:
        return App(load_settings(ctx.obj))
    except ConfigError as exc:
        err.print(str(exc), markup=False, highlight=False)
        sys.exit(EXIT_CONFIG)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int], None]]:
    """A live count of items read; silent when stderr is not a terminal."""
    if not err.is_terminal:
        yield lambda _n: None
        return
    columns = (SpinnerColumn(), TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=None)
        yield lambda n: progress.advance(task, n)


def _summary(title: str, report: BuildReport, seconds: float, feeds: bool, verbose: bool = False) -> None:
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
        out.print("written: " + " ".join(report.written_paths), markup=False, highlight=False)
    for source in report.failed_sources:
        err.print(f"[bold red]source failed[/]: {escape(source)}", highlight=False)
    if report.failed_sources:
        err.print("The feeds keep the last good articles of the failed source(s).")


def _run(
    ctx: click.Context,
    title: str,
    strict: bool,
    action: Callable[[App, BuildReport, Callable[[int], None]], None],
    feeds: bool,
) -> None:
    app = _app(ctx)
    report = BuildReport()
    started = time.perf_counter()
    try:
        with _progress("reading") as tick:
            action(app, report, tick)
    except PublisherError as exc:
        err.print(f"[bold red]error[/]: {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_PROBLEMS)
    finally:
        app.close()
    _summary(title, report, time.perf_counter() - started, feeds)
    if report.failed_sources or (strict and report.problems):
        sys.exit(EXIT_PROBLEMS)


def _print_problems(problems: list[str]) -> None:
    for problem in problems:
        err.print(f"[yellow]skipped[/] {escape(problem)}", highlight=False)


STRICT = click.option("--strict", is_flag=True, help="Any unreadable item is an error (for CI).")


@main.command()
@STRICT
@click.pass_context
def check(ctx: click.Context, strict: bool) -> None:
    """Validate the configuration, the mail settings' secrets, and read every source, writing nothing."""
    app = _app(ctx)
    try:
        app.transport().close()  # the secrets it names are in the environment
    except ConfigError as exc:
        err.print(str(exc), markup=False, highlight=False)
        sys.exit(EXIT_CONFIG)
    with _progress("checking") as tick:
        report = app.check(tick)
    app.close()
    _print_problems(report.problems)
    for source in report.failed_sources:
        err.print(f"[bold red]source failed[/]: {escape(source)}", highlight=False)
    out.print(
        f"configuration OK; {report.checked} item(s) readable, {report.skipped} skipped, "
        f"{len(report.failed_sources)} source(s) failed",
        highlight=False,
    )
    if report.failed_sources or (strict and report.problems):
        sys.exit(EXIT_PROBLEMS)


@main.command()
@STRICT
@click.pass_context
def ingest(ctx: click.Context, strict: bool) -> None:
    """Read the sources into the store (new, changed and withdrawn articles)."""
    _run(ctx, "ingest", strict, lambda app, report, tick: app.ingest(report, strict, tick), feeds=False)


@main.command()
@STRICT
@click.pass_context
def build(ctx: click.Context, strict: bool) -> None:
    """Ingest, then write every feed, index.html and feeds.opml whose bytes changed."""
    _run(ctx, "build", strict, lambda app, report, tick: app.build(report, strict, tick), feeds=True)


# --- subscribers ---------------------------------------------------------------------------

STATUS_CHOICE = click.Choice([s.value for s in SubscriberStatus])


@main.group()
def subscribers() -> None:
    """Mailing-list subscribers: import, add, list, remove, export."""


def _subscriber_app(ctx: click.Context) -> tuple[App, CategoryIndex]:
    app = _app(ctx.find_root())
    return app, CategoryIndex(app.categories)


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--pending", is_flag=True, help="Import as pending (they must confirm) instead of confirmed.")
@click.pass_context
def subscribers_import(ctx: click.Context, file: Path, pending: bool) -> None:
    """Import FILE.csv with the columns email, name, categories (names or slugs, `;` between)."""
    from .subscriptions import import_csv

    app, index = _subscriber_app(ctx)
    status = SubscriberStatus.PENDING if pending else SubscriberStatus.CONFIRMED
    try:
        report = import_csv(app.store, file, index, status, app.clock())
    except PublisherError as exc:
        err.print(f"[bold red]error[/]: {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_PROBLEMS)
    finally:
        app.close()
    _print_problems(report.problems)
    out.print(
        f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
        f"kept unsubscribed or bounced {report.kept_stopped}, rejected {len(report.problems)}",
        highlight=False,
    )
    if report.problems:
        sys.exit(EXIT_PROBLEMS)


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="The subscriber's name.")
@click.option("--category", "categories", multiple=True, help="A category name or slug; repeat it. None: all.")
@click.option("--pending", is_flag=True, help="Add as pending (they must confirm) instead of confirmed.")
@click.pass_context
def subscribers_add(ctx: click.Context, email: str, name: str, categories: tuple[str, ...], pending: bool) -> None:
    """Add EMAIL, or change their name and categories if they are on the list."""
    from .subscriptions import add, parse_categories

    app, index = _subscriber_app(ctx)
    try:
        slugs = parse_categories(";".join(categories), index)
        status = SubscriberStatus.PENDING if pending else SubscriberStatus.CONFIRMED
        subscriber, new = add(app.store, email, name, slugs, status, app.clock())
    except ValueError as exc:
        err.print(f"[bold red]error[/]: {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_CONFIG)
    except PublisherError as exc:
        err.print(f"[bold red]error[/]: {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_PROBLEMS)
    finally:
        app.close()
    out.print(f"{'added' if new else 'updated'} {subscriber.email} ({subscriber.status.value})", highlight=False)


@subscribers.command("list")
@click.option("--status", type=STATUS_CHOICE, help="Only subscribers with this status.")
@click.pass_context
def subscribers_list(ctx: click.Context, status: str | None) -> None:
    """A table of subscribers: address, name, categories, status and since when."""
    app, index = _subscriber_app(ctx)
    try:
        found = app.store.subscribers(SubscriberStatus(status) if status else None)
    finally:
        app.close()
    names = {c.slug: c.name for c in index.categories}
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for column in ("email", "name", "categories", "status", "since", "via"):
        table.add_column(column)
    for s in found:
        cats = "、".join(names.get(slug, slug) for slug in s.categories) or "(all)"
        table.add_row(s.email, s.name, cats, s.status.value, f"{s.status_at:%Y-%m-%d %H:%M}", s.status_via)
    out.print(table)
    out.print(f"{len(found)} subscriber(s)", highlight=False)


@subscribers.command("remove")
@click.argument("email")
@click.option("--erase", is_flag=True, help="Forget the address entirely instead of marking it unsubscribed.")
@click.pass_context
def subscribers_remove(ctx: click.Context, email: str, erase: bool) -> None:
    """Unsubscribe EMAIL (kept, so no import signs them up again), or --erase it."""
    from .subscriptions import remove

    app, _index = _subscriber_app(ctx)
    try:
        existing = remove(app.store, email, app.clock(), erase=erase)
    finally:
        app.close()
    if existing is None:
        err.print(f"{escape(email)} is not on the list", highlight=False)
        sys.exit(EXIT_PROBLEMS)
    out.print(f"{'erased' if erase else 'unsubscribed'} {existing.email}", highlight=False)


@subscribers.command("export")
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path), required=False)
@click.pass_context
def subscribers_export(ctx: click.Context, file: Path | None) -> None:
    """Every subscriber as CSV, to FILE or standard output; `import` reads it back."""
    from .subscriptions import export_csv

    app, index = _subscriber_app(ctx)
    try:
        found = app.store.subscribers()
    finally:
        app.close()
    if file is None:
        export_csv(found, index, sys.stdout)
        return
    with open(file, "w", encoding="utf-8", newline="") as handle:
        count = export_csv(found, index, handle)
    err.print(f"exported {count} subscriber(s) to {escape(str(file))}", highlight=False)
