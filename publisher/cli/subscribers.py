"""`publisher subscribers`: import, add, list, remove and export the mailing list."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import PublisherError
from ..model import SubscriberStatus
from .base import EXIT_CONFIG, EXIT_PROBLEMS, err, labelled, load_app, main, out, print_problems
from .tables import FORMAT, Column, print_records

if TYPE_CHECKING:
    from ..app import App
    from ..normalize import CategoryIndex

STATUS_CHOICE = click.Choice([s.value for s in SubscriberStatus])


@main.group()
def subscribers() -> None:
    """Mailing-list subscribers: import, add, list, remove, export."""


def _subscriber_app(ctx: click.Context) -> tuple[App, CategoryIndex]:
    from ..normalize import CategoryIndex

    app = load_app(ctx)
    return app, CategoryIndex(app.categories)


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--pending", is_flag=True, help="Import new people as pending (they must confirm) instead of confirmed.")
@click.option(
    "--update", is_flag=True, help="Change the name and categories of readers already on the list to the file's."
)
@click.option("--send-confirmation", is_flag=True, help="Mail every pending reader in FILE their confirmation link.")
@click.pass_context
def subscribers_import(ctx: click.Context, file: Path, pending: bool, update: bool, send_confirmation: bool) -> None:
    """Import FILE.csv with the columns email, name, categories (names or slugs, `;` between),
    script (zh-Hans, zh-Hant; empty: the site's) and cadence (weekly, daily; empty: the first
    of [digest] cadences). New people are added; readers already on the list keep their own
    choices (and status)."""
    from ..subscriptions import import_csv

    app, index = _subscriber_app(ctx)
    status = SubscriberStatus.PENDING if pending else SubscriberStatus.CONFIRMED
    try:
        report = import_csv(app.store, file, index, status, app.clock(), app.offered, update=update)
        sent, unsent = _send_confirmations(app, report.pending) if send_confirmation else (0, [])
    except PublisherError as exc:
        err.print(labelled("error:", "bold red", str(exc)), highlight=False)
        sys.exit(EXIT_PROBLEMS)
    finally:
        app.close()
    print_problems(report.problems + unsent)
    out.print(
        f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
        f"not updated {report.not_updated}{' (--update changes them)' if report.not_updated else ''}, "
        f"kept unsubscribed or bounced {report.kept_stopped}, "
        f"{f'left out as suppressed {report.suppressed}, ' if report.suppressed else ''}"
        f"rejected {len(report.problems)}",
        highlight=False,
    )
    if send_confirmation:
        out.print(f"sent {sent} confirmation e-mail(s), {len(unsent)} not sent", highlight=False)
    elif report.pending:
        out.print(
            f"{len(report.pending)} pending reader(s) in the file get no mail: --send-confirmation mails their link",
            highlight=False,
        )
    if report.problems or unsent:
        sys.exit(EXIT_PROBLEMS)


def _send_confirmations(app: App, keys: list[str]) -> tuple[int, list[str]]:
    """The confirmation link to each pending reader, through the configured transport."""
    from ..newsletter import Newsletter
    from ..signup import mail_confirmations

    letters = Newsletter(app)
    transport = app.transport()
    try:
        per_day = app.settings.web.confirmation_mails_per_day
        return mail_confirmations(app.store, letters, transport, keys, per_day, app.clock())
    finally:
        transport.close()


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="The subscriber's name.")
@click.option("--category", "categories", multiple=True, help="A category name or slug; repeat it. None: all.")
@click.option("--script", help="zh-Hans or zh-Hant, as [digest] scripts offers (empty: the site's).")
@click.option("--cadence", help="weekly or daily, as [digest] cadences offers (default: the first).")
@click.option("--pending", is_flag=True, help="Add as pending (they must confirm) instead of confirmed.")
@click.pass_context
def subscribers_add(
    ctx: click.Context,
    email: str,
    name: str,
    categories: tuple[str, ...],
    script: str | None,
    cadence: str | None,
    pending: bool,
) -> None:
    """Add EMAIL, or change their name and categories (and, when given, script and cadence) if
    they are on the list."""
    from ..subscriptions import add, parse_categories

    app, index = _subscriber_app(ctx)
    try:
        slugs = parse_categories(";".join(categories), index)
        status = SubscriberStatus.PENDING if pending else SubscriberStatus.CONFIRMED
        subscriber, new = add(app.store, email, name, slugs, status, app.clock(), app.offered, script, cadence)
    except ValueError as exc:
        err.print(labelled("error:", "bold red", str(exc)), highlight=False)
        sys.exit(EXIT_CONFIG)
    except PublisherError as exc:
        err.print(labelled("error:", "bold red", str(exc)), highlight=False)
        sys.exit(EXIT_PROBLEMS)
    finally:
        app.close()
    out.print(f"{'added' if new else 'updated'} {subscriber.email} ({subscriber.status.value})", highlight=False)


SUBSCRIBER_COLUMNS = (
    Column("email"),
    Column("name"),
    Column("categories", empty="(all)"),
    Column("script", empty="(site's)"),  # as `export` writes it: empty for the site's own
    Column("cadence"),
    Column("status"),
    Column("status_at", "since", time=True),
    Column("status_via", "via"),
)


@subscribers.command("list")
@click.option("--status", type=STATUS_CHOICE, help="Only subscribers with this status.")
@FORMAT
@click.pass_context
def subscribers_list(ctx: click.Context, status: str | None, output_format: str) -> None:
    """Subscribers: address, name, categories, script, cadence, status and since when (in the site's zone)."""
    app, index = _subscriber_app(ctx)
    try:
        found = app.store.subscribers(SubscriberStatus(status) if status else None)
    finally:
        app.close()
    names = {c.slug: c.name for c in index.categories}
    rows = [
        (s.email, s.name, tuple(names.get(slug, slug) for slug in s.categories), s.script or "", s.cadence,
         s.status.value, s.status_at, s.status_via)
        for s in found
    ]  # fmt: skip
    print_records(SUBSCRIBER_COLUMNS, rows, output_format, app.settings.site.timezone)
    if output_format == "table":
        out.print(f"{len(found)} subscriber(s)", highlight=False)


@subscribers.command("remove")
@click.argument("email")
@click.option("--erase", is_flag=True, help="Forget the address entirely instead of marking it unsubscribed.")
@click.pass_context
def subscribers_remove(ctx: click.Context, email: str, erase: bool) -> None:
    """Unsubscribe EMAIL (kept, so no import signs them up again), or --erase it."""
    from ..subscriptions import remove

    app, _index = _subscriber_app(ctx)
    try:
        existing = remove(app.store, email, app.clock(), erase=erase)
    finally:
        app.close()
    if existing is None:
        err.print(f"{email} is not on the list", highlight=False)
        sys.exit(EXIT_PROBLEMS)
    out.print(f"{'erased' if erase else 'unsubscribed'} {existing.email}", highlight=False)


@subscribers.command("export")
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path), required=False)
@click.pass_context
def subscribers_export(ctx: click.Context, file: Path | None) -> None:
    """Every subscriber as CSV, to FILE or standard output; `import` reads it back."""
    from ..private_files import open_private_text
    from ..subscriptions import export_csv

    app, index = _subscriber_app(ctx)
    try:
        found = app.store.subscribers()
    finally:
        app.close()
    if file is None:
        export_csv(found, index, sys.stdout)
        return
    with open_private_text(file) as handle:  # readers' addresses: 0600
        count = export_csv(found, index, handle)
    err.print(f"exported {count} subscriber(s) to {file}", highlight=False)
