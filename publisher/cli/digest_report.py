"""`publisher digest status` and `publisher digest failures`: every digest with its delivery
counts, and the deliveries that failed, wait or are uncertain, as a table, CSV or JSON."""

from __future__ import annotations

import click

from ..errors import PublisherError
from .base import fail, load_app, out
from .digest import digest, digest_row
from .tables import FORMAT, Cell, Column, print_records

DELIVERY_STATES = ("sent", "uncertain", "pending", "sending", "failed", "skipped")
DIGEST_COLUMNS = (
    Column("id", "#", right=True),
    Column("digest"),
    Column("status"),
    Column("start", "after", time=True),  # the window is after `start`, until `end` included
    Column("end", "until", time=True),
    *(Column(state, right=True) for state in DELIVERY_STATES),
)


@digest.command("status")
@FORMAT
@click.pass_context
def digest_status(ctx: click.Context, output_format: str) -> None:
    """Every digest with its window (in the site's zone), state and delivery counts."""
    app = load_app(ctx)
    try:
        rows: list[tuple[Cell, ...]] = [
            (row.id, row.key, row.status, row.start, row.end, *(counts.get(s, 0) for s in DELIVERY_STATES))
            for row in app.store.digests()
            for counts in [app.store.delivery_counts(row.id)]
        ]
    finally:
        app.close()
    print_records(DIGEST_COLUMNS, rows, output_format, app.settings.site.timezone)
    if output_format == "table":
        out.print(f"{len(rows)} digest(s)", highlight=False)


FAILURE_COLUMNS = (
    Column("digest", "#", right=True),
    Column("address"),
    Column("state"),
    Column("tries", right=True),
    Column("last_try", "last try", time=True),
    Column("next_try", "next try", time=True),
    Column("retry"),
    Column("reason"),
)


@digest.command("failures")
@click.argument("digest_ref", metavar="[DIGEST]", required=False)
@FORMAT
@click.pass_context
def digest_failures(ctx: click.Context, digest_ref: str | None, output_format: str) -> None:
    """Deliveries that failed, that wait for another try, or that are uncertain (no answer came
    after the message was handed over: the reader may have it, or not; twice once `retry --all`
    sent it again), of DIGEST (its # or key, as `digest status` shows them) or of every digest,
    with what would try each again."""

    app = load_app(ctx)
    try:
        digest_id = digest_row(app.store, digest_ref).id if digest_ref else None
        delays = app.settings.digest.retry_delays
        rows: list[tuple[Cell, ...]] = []
        problems = app.store.delivery_problems(digest_id)
        for p in problems:
            next_try: Cell = p.next_try(delays) or ""
            rows.append((p.digest_id, p.email_key, p.state, p.attempts, p.last_try, next_try, p.retry_with, p.error))
        unanswered = sum(p.unanswered for p in problems)
    except (PublisherError, ValueError) as exc:
        fail(exc)
    finally:
        app.close()
    print_records(FAILURE_COLUMNS, rows, output_format, app.settings.site.timezone)
    if output_format == "table":
        counts = {state: sum(1 for r in rows if r[2] == state) for state in ("failed", "uncertain", "waiting")}
        out.print(", ".join(f"{n} {state}" for state, n in counts.items()), highlight=False)
        if unanswered:
            which = digest_ref or "DIGEST"
            out.print(
                f"{unanswered} uncertain deliver{'y' if unanswered == 1 else 'ies'} never confirmed: the message was "
                "handed over and no answer came, so the reader may have it. Nothing sends it again by itself; "
                f"`publisher digest retry {which} --all` does, and a reader who has it then gets it twice.",
                highlight=False,
            )
