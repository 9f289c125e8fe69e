"""The one service every bounce door calls: link each MailEvent to its delivery, keep it, and
apply the rules (`App.record_mail_events`).

An event finds its delivery by our signed token, else our Message-ID, else the provider's id
for the message; then the address counted is the delivery's (a forwarded mailbox's bounce
names the address we sent to). A token whose signature fails links nothing, and nothing else
is tried: the event is kept `unlinked` and logged. Without a delivery, a provider's event
(its webhook verified) counts for its own address when that is a subscriber's; a bounce
mailbox's event (anyone can mail that address) is kept `unlinked`. Unlinked events, and those
naming nobody of ours (`unknown`), are kept and change nobody.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..store import DeliveryRef, NewMailEvent, Recorded, Store
from ..store.bounces import UNKNOWN, UNLINKED
from .events import MAILBOX_SOURCES, RAW_LIMIT, EventKind, MailEvent
from .links import delivery_token_valid, token_delivery_id
from .rules import Action, Rule

log = logging.getLogger(__name__)

REASON_LIMIT = 2000


@dataclass
class RecordReport:
    """What recording a batch of events did, for the door's answer and log."""

    recorded: int = 0  # kept now
    duplicates: int = 0  # kept before (a provider sending an event again): nothing changed
    strangers: int = 0  # naming nobody of ours: kept, counted for no rule
    unlinked: int = 0  # a mailbox event without our token or Message-ID, or a forged token: kept, changes nobody
    forged_tokens: int = 0  # a delivery token whose signature failed: links nothing
    suppressed: list[str] = field(default_factory=list)  # addresses put on the suppression list now
    unsubscribed: list[str] = field(default_factory=list)  # readers unsubscribed now
    outcomes: list[Recorded] = field(default_factory=list)  # one per event, in order
    digests: set[int] = field(default_factory=set)  # the digests whose deliveries the events kept now name


def record_events(
    store: Store,
    signing_key: bytes,
    rules: Mapping[EventKind, Rule],
    events: Iterable[MailEvent],
    clock: Callable[[], datetime],
) -> RecordReport:
    """Keep each event once, linked, and apply its kind's rule; each in its own transaction."""
    report = RecordReport()
    for event in events:
        delivery, linked_by, forged = link(store, signing_key, event)
        report.forged_tokens += forged
        email_key = delivery.email_key if delivery is not None else event.email.strip().lower()
        occurred = event.occurred if event.occurred.tzinfo is not None else event.occurred.replace(tzinfo=UTC)
        kept = NewMailEvent(
            kind=event.kind,
            email_key=email_key[:320],
            source=event.source,
            reason=event.reason[:REASON_LIMIT],
            occurred=occurred,
            received_at=clock(),
            delivery=delivery,
            linked_by=linked_by,
            event_id=event.event_id or None,
            raw=event.raw[:RAW_LIMIT],
        )
        recorded = store.record_mail_event(kept, rules[event.kind])
        report.outcomes.append(recorded)
        if recorded.id is None:
            report.duplicates += 1
            continue
        report.recorded += 1
        report.strangers += linked_by == UNKNOWN
        report.unlinked += linked_by == UNLINKED
        if delivery is not None:
            report.digests.add(delivery.digest_id)
        if recorded.suppressed:
            report.suppressed.append(email_key)
        if recorded.action is Action.UNSUBSCRIBE and recorded.status is not None:
            report.unsubscribed.append(email_key)
        if recorded.action is not Action.NONE:
            log.info("%s from %s for %s: %s", event.kind.value, event.source, email_key, recorded.outcome)
    return report


def link(store: Store, signing_key: bytes, event: MailEvent) -> tuple[DeliveryRef | None, str, bool]:
    """(the delivery, how it was found, whether a forged token was seen) for one event."""
    if event.delivery_token:
        delivery_id = token_delivery_id(event.delivery_token)
        ref = store.delivery_ref(delivery_id) if delivery_id is not None else None
        if ref is not None and delivery_token_valid(signing_key, event.delivery_token, ref.email_key):
            return ref, "token", False
        log.warning(
            "%s event for %s: delivery token %r is not one of ours (a bad signature or no such delivery); "
            "kept unlinked, it changes nobody",
            event.source, event.email, event.delivery_token[:40],
        )  # fmt: skip
        return None, UNLINKED, True  # never the Message-ID or the address instead: the event is forged
    if event.message_id:
        ref = store.delivery_by_message_id(event.message_id)
        if ref is not None:
            return ref, "message_id", False
    if event.provider_id:
        ref = store.delivery_by_provider_id(event.provider_id, event.email.strip().lower())
        if ref is not None:
            return ref, "provider_id", False
    if event.source in MAILBOX_SOURCES:
        return None, UNLINKED, False  # anyone can mail the bounce address: its word alone acts on nobody
    is_reader = store.subscriber(event.email.strip().lower()) is not None
    return None, "address" if is_reader else UNKNOWN, False
