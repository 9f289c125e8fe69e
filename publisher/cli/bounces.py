"""`publisher bounces`: the mail events kept (bounces, complaints, provider unsubscribes) and
the suppression list."""

from __future__ import annotations

import sys
from dataclasses import replace

import click

from ..model import SubscriberStatus
from .base import EXIT_PROBLEMS, err, load_app, main, out
from .tables import FORMAT, Column, print_records

EVENT_COLUMNS = (
    Column("received_at", "received", time=True),
    Column("kind"),
    Column("email"),
    Column("source"),
    Column("reason"),
    Column("delivery", right=True, empty="-"),
    Column("linked_by", "linked by"),
    Column("outcome"),
)
SUPPRESSION_COLUMNS = (
    Column("email"),
    Column("kind"),
    Column("since", time=True),
    Column("reason"),
    Column("lifted_at", "lifted", time=True, empty="-"),
    Column("lifted_by", "by", empty="-"),
)


@main.group()
def bounces() -> None:
    """Bounces and complaints: the events kept and the suppression list."""


@bounces.command("list")
@click.option("--email", "email", help="Only the events of this address.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True, help="At most this many events.")
@FORMAT
@click.pass_context
def bounces_list(ctx: click.Context, email: str | None, limit: int, output_format: str) -> None:
    """Mail events, newest first: kind (hard, soft, complaint, unsubscribe), address, source,
    reason, the delivery it was linked to and how, and what the rules did."""
    app = load_app(ctx)
    try:
        events = app.store.mail_events(limit, email.strip().lower() if email else None)
    finally:
        app.close()
    rows = [
        (e.received_at, e.kind.value, e.email_key, e.source, e.reason, str(e.delivery_id or ""), e.linked_by,
         e.outcome)
        for e in events
    ]  # fmt: skip
    print_records(EVENT_COLUMNS, rows, output_format, app.settings.site.timezone)
    if output_format == "table":
        out.print(f"{len(events)} event(s)", highlight=False)


@bounces.command("suppressed")
@click.option("--all", "include_lifted", is_flag=True, help="Lifted suppressions too, with when and by whom.")
@FORMAT
@click.pass_context
def bounces_suppressed(ctx: click.Context, include_lifted: bool, output_format: str) -> None:
    """The suppression list: addresses no digest goes to, newest first."""
    app = load_app(ctx)
    try:
        found = app.store.suppressions(include_lifted)
    finally:
        app.close()
    rows = [(s.email_key, s.kind.value, s.since, s.reason, s.lifted_at or "", s.lifted_by or "") for s in found]
    print_records(SUPPRESSION_COLUMNS, rows, output_format, app.settings.site.timezone)
    if output_format == "table":
        out.print(f"{sum(s.active for s in found)} address(es) suppressed", highlight=False)


@bounces.command("unsuppress")
@click.argument("email")
@click.option("--restore", is_flag=True, help="Also make a bounced reader confirmed again (never an unsubscribed one).")
@click.pass_context
def bounces_unsuppress(ctx: click.Context, email: str, restore: bool) -> None:
    """Take EMAIL off the suppression list (its events stay; those before now no longer count)."""
    app = load_app(ctx)
    key = email.strip().lower()
    try:
        now = app.clock()
        lifted = app.store.lift_suppression(key, now, "operator")
        reader = app.store.subscriber(key)
        restored = restore and reader is not None and reader.status is SubscriberStatus.BOUNCED
        if restored and reader is not None:
            app.store.save_subscribers(
                [replace(reader, status=SubscriberStatus.CONFIRMED, status_at=now, status_via="cli unsuppress")]
            )
    finally:
        app.close()
    if not lifted:
        err.print(f"{email} is not on the suppression list", highlight=False)
        sys.exit(EXIT_PROBLEMS)
    if restored:
        out.print(f"unsuppressed {key}; the reader is confirmed again", highlight=False)
    elif reader is not None and not reader.status.receives_mail:
        how = "sign up again on the subscribe page" if reader.status is not SubscriberStatus.BOUNCED else "--restore"
        out.print(f"unsuppressed {key}; the reader is still {reader.status.value} ({how})", highlight=False)
    else:
        out.print(f"unsuppressed {key}", highlight=False)
