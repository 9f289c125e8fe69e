"""The command line: load settings, build the app, call one service, report. Nothing more."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from zoneinfo import ZoneInfo

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

if TYPE_CHECKING:
    from .newsletter import Newsletter
    from .store import DigestRow
    from .transports import Transport

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
def _progress(label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A live count of items done; silent when stderr is not a terminal."""
    if not err.is_terminal:
        yield lambda _n: None
        return
    columns = (SpinnerColumn(), TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=total)
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
    for note in report.source_notes:
        out.print(f"source {note}", markup=False, highlight=False)
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


# --- the digest ------------------------------------------------------------------------------


@main.group()
def digest() -> None:
    """The weekly e-mail digest: preview, send, status, resume, test."""


def _date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; write it as YYYY-MM-DD") from None


def _fail(exc: Exception, code: int = EXIT_PROBLEMS) -> NoReturn:
    if isinstance(exc, ConfigError):
        err.print(str(exc), markup=False, highlight=False)
        sys.exit(EXIT_CONFIG)
    err.print(f"[bold red]error[/]: {escape(str(exc))}", highlight=False)
    sys.exit(code)


@digest.command("preview")
@click.option("--subscriber", "email", help="Render the digest this subscriber would get (default: all categories).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("var/preview"),
              show_default=True, help="Folder for digest.html, digest.txt and digest.eml.")  # fmt: skip
@click.pass_context
def digest_preview(ctx: click.Context, email: str | None, out_dir: Path) -> None:
    """Write the next digest as HTML, text and .eml, sending nothing and opening nothing."""
    from .newsletter import Newsletter, preview_files

    app = _app(ctx.find_root())
    try:
        letters = Newsletter(app)
        subscriber = None
        if email:
            subscriber = app.store.subscriber(email.strip().lower())
            if subscriber is None:
                _fail(ValueError(f"{email} is not on the list (see `publisher subscribers list`)"))
        window = letters.scheduled_window(app.clock())
        message, stand_in = letters.preview(window, subscriber)
        paths = preview_files(message, out_dir)
    except (PublisherError, ValueError) as exc:
        _fail(exc)
    finally:
        app.close()
    if stand_in:
        since = f"{window.start.astimezone(ZoneInfo(app.settings.site.timezone)):%Y-%m-%d %H:%M}"
        err.print(
            f"the next digest would be empty (nothing new since {since}): the preview shows the newest "
            "articles instead",
            highlight=False,
        )
    size = len(message.html.encode("utf-8"))
    out.print(f"subject: {message.envelope.subject}", markup=False, highlight=False)
    out.print(f"HTML {size / 1000:.1f} KB; wrote " + " ".join(str(p) for p in paths), markup=False, highlight=False)


@digest.command("send")
@click.option("--since", callback=_date, help="First publication day of a one-off window (YYYY-MM-DD).")
@click.option("--until", callback=_date, help="Last publication day of that window (YYYY-MM-DD).")
@click.option("--dry-run", is_flag=True, help="Render every message into --out as .eml; no ledger, no mail.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("var/dry-run"),
              show_default=True, help="Where --dry-run writes.")  # fmt: skip
@click.pass_context
def digest_send(ctx: click.Context, since: date | None, until: date | None, dry_run: bool, out_dir: Path) -> None:
    """Send the digest of everything ingested since the last one (or of --since/--until)."""
    from .newsletter import Newsletter
    from .transports.outbox import OutboxTransport

    if (since is None) != (until is None):
        _fail(click.UsageError("give both --since and --until, or neither"), EXIT_CONFIG)
    if since is not None and until is not None and until < since:
        _fail(click.UsageError(f"--until {until} is before --since {since}"), EXIT_CONFIG)
    app = _app(ctx.find_root())
    try:
        letters = Newsletter(app)
        if since is not None and until is not None:
            window = letters.window(since, until)
        else:
            window = letters.scheduled_window(app.clock())
        if dry_run:
            outbox = OutboxTransport(out_dir)
            count = letters.dry_run(window, outbox.send)
            out.print(f"dry run of {window.key}: {count} message(s) written to {out_dir}", highlight=False)
            return
        transport = app.transport()
        plan = letters.plan(window) if since is not None else letters.plan_scheduled()
        _send(letters, [plan.digest], transport, planned=plan.planned, existed=not plan.created)
    except (PublisherError, ValueError) as exc:
        _fail(exc)
    finally:
        app.close()


@digest.command("resume")
@click.pass_context
def digest_resume(ctx: click.Context) -> None:
    """Finish every digest that a crash, a kill or a pause left unfinished."""
    from .newsletter import Newsletter

    app = _app(ctx.find_root())
    try:
        letters = Newsletter(app)
        unfinished = letters.unfinished()
        if not unfinished:
            out.print("nothing to resume: every digest is done", highlight=False)
            return
        _send(letters, unfinished, app.transport(), retry_now=True)
    except (PublisherError, ValueError) as exc:
        _fail(exc)
    finally:
        app.close()


def _send(
    letters: Newsletter,
    rows: list[DigestRow],
    transport: Transport,
    planned: int = 0,
    existed: bool = False,
    retry_now: bool = False,
) -> None:
    trouble = False
    for row in rows:
        if existed and row.status == "done":
            out.print(f"{row.key} was sent before (digest #{row.id}): nothing to send", highlight=False)
            continue
        total = letters.open_count(row)
        with _progress(f"sending {row.key}", total) as tick:
            report = letters.send(row, transport, tick, retry_now=retry_now)
        counts = letters.store.delivery_counts(row.id)
        out.print(
            f"{row.key}: planned {planned or sum(counts.values())}; now sent {report.sent}, "
            f"uncertain {report.uncertain}, "
            f"failed {report.failed}, skipped {report.skipped}, retried {report.retried}",
            highlight=False,
        )
        if report.paused:
            err.print(
                "[bold red]paused[/] after too many errors in a row; fix the cause, then `publisher digest resume`"
            )
        trouble |= report.paused or report.failed > 0
    if trouble:
        sys.exit(EXIT_PROBLEMS)


@digest.command("status")
@click.pass_context
def digest_status(ctx: click.Context) -> None:
    """Every digest with its window, state and delivery counts."""
    app = _app(ctx.find_root())
    try:
        rows = [(row, app.store.delivery_counts(row.id)) for row in app.store.digests()]
    finally:
        app.close()
    states = ("sent", "uncertain", "pending", "sending", "failed", "skipped")
    width = max([len(row.key) for row, _counts in rows] + [6])
    header = f"{'#':>4}  {'digest':<{width}}  {'status':<8}" + "".join(f"  {s:>9}" for s in states)
    out.print(header, markup=False, highlight=False)
    for row, counts in rows:
        cells = "".join(f"  {counts.get(s, 0):>9}" for s in states)
        out.print(f"{row.id:>4}  {row.key:<{width}}  {row.status:<8}{cells}", markup=False, highlight=False)
    out.print(f"{len(rows)} digest(s)", highlight=False)


@digest.command("test")
@click.option("--to", "to", required=True, help="The address that gets the one test message.")
@click.pass_context
def digest_test(ctx: click.Context, to: str) -> None:
    """Send one digest to --to through the configured transport, marked as a test; no ledger rows."""
    from .newsletter import Newsletter

    app = _app(ctx.find_root())
    try:
        message = Newsletter(app).test_message(to)
        transport = app.transport()
        try:
            sent = transport.send(message)
        finally:
            transport.close()
    except (PublisherError, ValueError) as exc:
        _fail(exc)
    finally:
        app.close()
    out.print(f"sent a test to {message.recipient} ({sent.provider_id or 'no provider id'})", highlight=False)


# --- the service ---------------------------------------------------------------------------


HOST = click.option("--host", help="Listen on this address (default: [web] host).")
PORT = click.option("--port", type=int, help="Listen on this port; 0 picks a free one (default: [web] port).")


@main.command()
@HOST
@PORT
@click.pass_context
def run(ctx: click.Context, host: str | None, port: int | None) -> None:
    """The whole service: the scheduler (ingest, feeds, digest) and the web, until SIGTERM or Ctrl-C."""
    _serve(ctx, host, port, schedule=True)


@main.command()
@HOST
@PORT
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """The web alone: feeds, subscription pages, /healthz. No scheduler."""
    _serve(ctx, host, port, schedule=False)


def _serve(ctx: click.Context, host: str | None, port: int | None, schedule: bool) -> None:
    import signal

    import waitress

    from . import jobs
    from .scheduler import Scheduler
    from .web import create_app

    def stop(signum: int, _frame: object) -> None:
        # Once: a second signal during the stop must not cut it short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        jobs.STOP.set()  # a digest being sent stops after the message in flight
        raise SystemExit(0)  # waitress's loop ends on it (closing its sockets); so does start-up

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    app = _app(ctx)
    config_path = str(Path(ctx.obj).resolve())
    settings = app.settings
    scheduler = Scheduler(settings, config_path, app.store) if schedule else None
    try:
        if scheduler is not None:
            # The feeds exist before the first request; the scheduler is paused meanwhile.
            if scheduler.start(first=lambda: jobs.ingest_and_build(config_path)):
                out.print(
                    f"scheduler: ingest and feeds every {settings.schedule.ingest_every} min; digest "
                    f"{settings.digest.schedule!r} ({settings.site.timezone})",
                    highlight=False,
                )
            else:
                err.print("another `publisher run` schedules this database: this one serves the web only")
        try:
            web = create_app(app, scheduler.health if scheduler else None)
            server = waitress.create_server(
                web, host=host or settings.web.host, port=settings.web.port if port is None else port, threads=8
            )
        except (PublisherError, OSError) as exc:
            _fail(exc)
        base = f"http://{server.effective_host}:{server.effective_port}"
        out.print(
            f"serving {base}/ (feeds: {base}/rss.xml), subscribe: {base}/subscribe, health: {base}/healthz",
            highlight=False,
        )
        if settings.mail.transport == "outbox":
            out.print(f"mail goes to {settings.mail.outbox.dir}/ as .eml files (transport = outbox)", highlight=False)
        sys.stdout.flush()
        server.run()  # until SIGTERM/SIGINT
    finally:
        jobs.STOP.set()
        if scheduler is not None and scheduler.owner:
            err.print("stopping: letting running jobs finish")
        if scheduler is not None:
            scheduler.stop()
        app.close()
