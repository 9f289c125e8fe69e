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
    """One entry: its `kind` is what the page names in the reader's language (signed-up,
    pending, confirmed, unsubscribed, bounced, delivery, an event kind, suppressed, lifted);
    `text` and `detail` are the store's own words (a digest's key and state, a reason)."""

    at: datetime  # UTC
    kind: str
    text: str = ""
    detail: str = ""
    digest_id: int | None = None


def reader_timeline(
    subscriber: Subscriber,
    deliveries: Iterable[ReaderDelivery],
    events: Iterable[StoredEvent],
    suppression: Suppression | None,
) -> list[TimelineEntry]:
    """Every entry known of `subscriber`, oldest first (ties in the order above)."""
    entries = [TimelineEntry(subscriber.created_at, "signed-up")]
    if subscriber.status is not SubscriberStatus.PENDING or subscriber.status_at != subscriber.created_at:
        entries.append(TimelineEntry(subscriber.status_at, subscriber.status.value, detail=subscriber.status_via))
    for d in deliveries:
        tries = f"{d.attempts} tr{'y' if d.attempts == 1 else 'ies'}"
        entries.append(TimelineEntry(d.updated_at, "delivery", f"{d.digest_key}: {d.status}",
                                     f"{tries}; {d.error}" if d.error else tries, d.digest_id))  # fmt: skip
    for e in events:
        entries.append(TimelineEntry(e.occurred, e.kind.value, e.source, f"{e.reason} ({e.outcome})", e.digest_id))
    if suppression is not None:
        why = f"{KIND_NAMES[suppression.kind]}: {suppression.reason}"
        entries.append(TimelineEntry(suppression.since, "suppressed", detail=why))
        if suppression.lifted_at is not None:
            entries.append(TimelineEntry(suppression.lifted_at, "lifted", detail=suppression.lifted_by or ""))
    return [e for _i, e in sorted(enumerate(entries), key=lambda pair: (pair[1].at, pair[0]))]
