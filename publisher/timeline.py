"""A reader's story as the console shows it, oldest first: signed up, their status now (confirmed,
unsubscribed, bounced) and how, each delivery with its state, each bounce, complaint or
provider unsubscribe, and the suppression list. Pure: values in, entries out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .bounces.rules import KIND_NAMES
from .model import Subscriber, SubscriberStatus
from .store import ReaderDelivery, StoredEvent, Suppression


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime  # UTC
    kind: (
        str  # signed-up | confirmed | pending | unsubscribed | bounced | delivery | <event kind> | suppressed | lifted
    )
    text: str
    detail: str = ""
    digest_id: int | None = None


_STATUS_TEXT = {
    SubscriberStatus.PENDING: "waiting for confirmation",
    SubscriberStatus.CONFIRMED: "confirmed",
    SubscriberStatus.UNSUBSCRIBED: "unsubscribed",
    SubscriberStatus.BOUNCED: "marked bounced",
}


def reader_timeline(
    subscriber: Subscriber,
    deliveries: Iterable[ReaderDelivery],
    events: Iterable[StoredEvent],
    suppression: Suppression | None,
) -> list[TimelineEntry]:
    """Every entry known of `subscriber`, oldest first (ties in the order above)."""
    entries = [TimelineEntry(subscriber.created_at, "signed-up", "signed up")]
    if subscriber.status is not SubscriberStatus.PENDING or subscriber.status_at != subscriber.created_at:
        status = subscriber.status
        entries.append(
            TimelineEntry(subscriber.status_at, status.value, _STATUS_TEXT[status], f"via {subscriber.status_via}")
        )
    for d in deliveries:
        tries = f"{d.attempts} tr{'y' if d.attempts == 1 else 'ies'}"
        entries.append(TimelineEntry(d.updated_at, "delivery", f"digest {d.digest_key}: {d.status}",
                                     f"{tries}; {d.error}" if d.error else tries, d.digest_id))  # fmt: skip
    for e in events:
        entries.append(TimelineEntry(e.occurred, e.kind.value, KIND_NAMES[e.kind],
                                     f"{e.source}: {e.reason} ({e.outcome})", e.digest_id))  # fmt: skip
    if suppression is not None:
        entries.append(TimelineEntry(suppression.since, "suppressed", "put on the suppression list",
                                     f"{KIND_NAMES[suppression.kind]}: {suppression.reason}"))  # fmt: skip
        if suppression.lifted_at is not None:
            entries.append(TimelineEntry(suppression.lifted_at, "lifted", "taken off the suppression list",
                                         f"by {suppression.lifted_by or '?'}"))  # fmt: skip
    return [e for _i, e in sorted(enumerate(entries), key=lambda pair: (pair[1].at, pair[0]))]
