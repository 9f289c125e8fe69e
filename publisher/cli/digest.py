"""`publisher digest`: preview, send, resume, retry, test and archive the e-mail digest (its
status and failures: digest_report.py)."""

from __future__ import annotations

import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click

from ..errors import PublisherError
from ..model import CADENCES
from .base import EXIT_CONFIG, EXIT_PROBLEMS, err, fail, labelled, load_app, main, out, progress

if TYPE_CHECKING:
    from ..app import App
    from ..delivery import SendReport
    from ..newsletter import Newsletter
    from ..store import DigestRow, Store
    from ..transports import Transport


@main.group()
def digest() -> None:
    """The e-mail digest (weekly, daily): preview, send, status, resume, failures, retry, test."""


CADENCE = click.option(
    "--cadence", type=click.Choice(CADENCES), default=None,
    help="Whose digest: the readers of this cadence (default: the first of [digest] cadences).",
)  # fmt: skip


def _cadence(app: App, cadence: str | None) -> str:
    """The --cadence asked for, if `[digest] cadences` offers it; else the first it offers."""
    offered = app.settings.digest.cadences
    if cadence is not None and cadence not in offered:
        raise ValueError(f"--cadence {cadence}: not in [digest] cadences ({', '.join(offered)}); add it there first")
    return cadence or offered[0]


WAIT = click.option(
    "--wait", is_flag=True,
    help="Keep going until no delivery waits for another try (hours, with the default retry_after).",
)  # fmt: skip


def _date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; write it as YYYY-MM-DD") from None


@digest.command("preview")
@click.option("--subscriber", "email", help="Render the digest this subscriber would get (default: all categories).")
@CADENCE
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("var/preview"),
              show_default=True, help="Folder for digest.html, digest.txt and digest.eml.")  # fmt: skip
@click.pass_context
def digest_preview(ctx: click.Context, email: str | None, cadence: str | None, out_dir: Path) -> None:
    """Write the next digest as HTML, text and .eml, sending nothing and opening nothing: the
    subscriber's (their cadence and script) or --cadence's."""
    from ..newsletter import Newsletter, preview_files

    app = load_app(ctx)
    try:
        letters = Newsletter(app)
        subscriber = None
        if email:
            subscriber = app.store.subscriber(email.strip().lower())
            if subscriber is None:
                fail(ValueError(f"{email} is not on the list (see `publisher subscribers list`)"))
        if cadence is None and subscriber is not None:
            cadence = letters.cadence_of(subscriber)
        window = letters.scheduled_window(app.clock(), _cadence(app, cadence))
        message, stand_in = letters.preview(window, subscriber)
        paths = preview_files(message, out_dir)
    except (PublisherError, ValueError) as exc:
        fail(exc)
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
    out.print(f"subject: {message.envelope.subject}", highlight=False)
    out.print(f"HTML {size / 1000:.1f} KB; wrote " + " ".join(str(p) for p in paths), highlight=False)


@digest.command("send")
@click.option("--since", callback=_date, help="First publication day of a one-off window (YYYY-MM-DD).")
@click.option("--until", callback=_date, help="Last publication day of that window (YYYY-MM-DD).")
@CADENCE
@click.option("--dry-run", is_flag=True, help="Render every message into --out as .eml; no ledger, no mail.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("var/dry-run"),
              show_default=True, help="Where --dry-run writes.")  # fmt: skip
@WAIT
@click.pass_context
def digest_send(
    ctx: click.Context,
    since: date | None,
    until: date | None,
    cadence: str | None,
    dry_run: bool,
    out_dir: Path,
    wait: bool,
) -> None:
    """Send a cadence's digest of everything ingested since its last one (or of --since/--until)
    to that cadence's readers. What a temporary error holds back waits for its next try: see --wait."""
    from ..newsletter import Newsletter
    from ..transports.outbox import OutboxTransport

    if (since is None) != (until is None):
        fail(click.UsageError("give both --since and --until, or neither"), EXIT_CONFIG)
    if since is not None and until is not None and until < since:
        fail(click.UsageError(f"--until {until} is before --since {since}"), EXIT_CONFIG)
    app = load_app(ctx)
    try:
        letters, chosen = Newsletter(app), _cadence(app, cadence)
        if since is not None and until is not None:
            window = letters.window(since, until, chosen)
        else:
            window = letters.scheduled_window(app.clock(), chosen)
        if dry_run:
            outbox = OutboxTransport(out_dir)
            count = letters.dry_run(window, outbox.send)
            out.print(f"dry run of {window.key}: {count} message(s) written to {out_dir}", highlight=False)
            return
        transport = app.transport()
        plan = letters.plan(window) if since is not None else letters.plan_scheduled(chosen)
        if plan.suppressed:
            note = f"{plan.suppressed} confirmed reader(s) left out: on the suppression list"
            out.print(f"{note} (`publisher bounces suppressed`)", highlight=False)
        _send(letters, [plan.digest], transport, planned=plan.planned, existed=not plan.created, wait=wait)
    except (PublisherError, ValueError) as exc:
        fail(exc)
    finally:
        app.close()


@digest.command("resume")
@WAIT
@click.pass_context
def digest_resume(ctx: click.Context, wait: bool) -> None:
    """Finish every digest that a crash, a kill or a pause left unfinished: send what is due,
    and say when the deliveries that wait for another try are due (see --wait)."""
    from ..newsletter import Newsletter

    app = load_app(ctx)
    try:
        letters = Newsletter(app)
        unfinished = letters.unfinished()
        if not unfinished:
            out.print("nothing to resume: every digest is done", highlight=False)
            return
        _send(letters, unfinished, app.transport(), wait=wait)
    except (PublisherError, ValueError) as exc:
        fail(exc)
    finally:
        app.close()


def _send(
    letters: Newsletter,
    rows: list[DigestRow],
    transport: Transport,
    planned: int = 0,
    existed: bool = False,
    wait: bool = False,
) -> None:
    trouble = False
    for row in rows:
        if existed and row.status == "done":
            out.print(f"{row.key} was sent before (digest #{row.id}): nothing to send", highlight=False)
            continue
        report = _send_due(letters, row, transport, planned)
        while wait and report.next_try is not None and not (report.paused or report.stopped):
            out.print(f"{row.key}: waiting for the next try at {_when(letters, report.next_try)} (Ctrl-C stops; "
                      "`publisher digest resume` continues)", highlight=False)  # fmt: skip
            time.sleep(max(0.0, (report.next_try - letters.clock()).total_seconds()))
            report = _send_due(letters, row, transport, planned)
        if report.uncertain:
            out.print(
                f"{row.key}: {report.uncertain} uncertain: the message may have reached the reader, so it is not sent "
                f"again by itself; `publisher digest failures {row.id}` lists them",
                highlight=False,
            )
        if report.paused:
            advice = "after too many errors in a row; fix the cause, then `publisher digest resume`"
            err.print(labelled("paused", "bold red", advice))
        elif report.next_try is not None:
            many = "delivery waits" if report.waiting == 1 else "deliveries wait"
            out.print(
                f"{row.key}: {report.waiting} {many} for another try, the next at {_when(letters, report.next_try)}: "
                f"`publisher run` tries then (or `publisher digest resume` after that time, or `--wait`); "
                f"`publisher digest failures {row.id}` lists them, `publisher digest retry {row.id}` tries now",
                highlight=False,
            )
        trouble |= report.paused or report.failed > 0
    if trouble:
        sys.exit(EXIT_PROBLEMS)


def _send_due(letters: Newsletter, row: DigestRow, transport: Transport, planned: int) -> SendReport:
    """One pass over what is due of `row`, with a progress bar and the summary line; with
    fan-out, its hand-over to the workers."""
    if letters.settings.fanout.enabled:
        report = letters.send(row, transport)
        counts = letters.store.delivery_counts(row.id)
        out.print(
            f"{row.key}: planned {planned or sum(counts.values())}; {report.queued} chunk(s) handed to the workers "
            "(`publisher worker` sends them; `publisher digest status` shows how far they are)",
            highlight=False,
        )
        return report
    total = letters.due_count(row)
    with progress(f"sending {row.key}", total) as tick:
        report = letters.send(row, transport, tick)
    counts = letters.store.delivery_counts(row.id)
    out.print(
        f"{row.key}: planned {planned or sum(counts.values())}; now sent {report.sent}, "
        f"uncertain {report.uncertain}, "
        f"failed {report.failed}, skipped {report.skipped}, retried {report.retried}",
        highlight=False,
    )
    return report


def _when(letters: Newsletter, moment: datetime) -> str:
    """A due time in the site's zone, and how far off it is."""
    zone = ZoneInfo(letters.settings.site.timezone)
    seconds = max(0, round((moment - letters.clock()).total_seconds()))
    away = f"{seconds} s" if seconds < 120 else f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M:%S %Z} (in {away})"


@digest.command("retry")
@click.argument("digest_ref", metavar="DIGEST")
@click.option("--all", "everything", is_flag=True,
              help="Also those that failed for good (a 5xx refusal, a message that could not be made), and the "
                   "uncertain ones never confirmed: a reader who has one gets it twice.")  # fmt: skip
@WAIT
@click.pass_context
def digest_retry(ctx: click.Context, digest_ref: str, everything: bool, wait: bool) -> None:
    """Try DIGEST's waiting deliveries now, and those that failed after temporary errors, each
    with all its tries again; readers who unsubscribed or bounced since are left alone."""
    from ..newsletter import Newsletter

    app = load_app(ctx)
    try:
        letters = Newsletter(app)
        row = digest_row(app.store, digest_ref)
        count = letters.retry(row, everything)
        if not count:
            out.print(f"{row.key}: nothing to retry (`publisher digest failures {row.id}` lists why)", highlight=False)
            return
        out.print(f"{row.key}: {count} deliver{'y' if count == 1 else 'ies'} to try again now", highlight=False)
        _send(letters, [app.store.digest(row.id)], app.transport(), wait=wait)
    except (PublisherError, ValueError) as exc:
        fail(exc)
    finally:
        app.close()


def digest_row(store: Store, ref: str) -> DigestRow:
    """The digest named by its number (`#` in `digest status`) or its key."""
    ref = ref.strip().removeprefix("#")
    for row in store.digests():
        if str(row.id) == ref or row.key == ref:
            return row
    raise ValueError(f"no digest {ref!r}: give its # or key as `publisher digest status` lists them")


@digest.command("test")
@click.option("--to", "to", required=True, help="The address that gets the one test message.")
@click.pass_context
def digest_test(ctx: click.Context, to: str) -> None:
    """Send one digest to --to through the configured transport, marked as a test; no ledger rows."""
    from ..newsletter import Newsletter

    app = load_app(ctx)
    try:
        message = Newsletter(app).test_message(to)
        transport = app.transport()
        try:
            sent = transport.send(message)
        finally:
            transport.close()
    except (PublisherError, ValueError) as exc:
        fail(exc)
    finally:
        app.close()
    out.print(f"sent a test to {message.recipient} ({sent.provider_id or 'no provider id'})", highlight=False)


@digest.command("archive")
@click.option("--all", "everything", is_flag=True, help="Publish every digest ever sent, however old.")
@click.option("--since", "since", callback=_date, help="Publish the digests opened from this day on (YYYY-MM-DD).")
@click.pass_context
def digest_archive(ctx: click.Context, everything: bool, since: date | None) -> None:
    """Publish older digests in the archive: by itself it archives only digests opened after it
    was first on (docs/digest.md, "Which digests"); without an option, say from when."""
    from datetime import UTC

    app = load_app(ctx)
    try:
        archive = app.archive
        if archive is None:
            raise ValueError("[digest] archive is false: turn it on first")
        if everything and since is not None:
            raise ValueError("give --all or --since, not both")
        if everything or since is not None:
            zone = ZoneInfo(app.settings.site.timezone)
            start = datetime(1970, 1, 1, tzinfo=UTC)
            if since is not None:
                start = datetime.combine(since, datetime.min.time(), zone)
            written = archive.publish_since(start)
            out.print(f"wrote {len(written)} file(s) under {archive.folder}", highlight=False)
        moment = archive.since().astimezone(ZoneInfo(app.settings.site.timezone))
        out.print(f"the archive holds the digests opened since {moment:%Y-%m-%d %H:%M %Z}", highlight=False)
    except (PublisherError, ValueError, OSError) as exc:
        fail(exc)
    finally:
        app.close()
