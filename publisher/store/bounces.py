"""The deliverability loop's records: mail events (bounces, complaints, provider unsubscribes)
and the suppression list. One event is recorded, and its rule applied, in one transaction."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ..bounces.events import EventKind
from ..bounces.rules import KIND_NAMES, Action, Rule, count_in_window, decide, status_after, window_end, window_start
from ..model import SubscriberStatus
from .schema import (
    aware_utc,
    deliveries_table,
    mail_events_table,
    naive_utc,
    subscribers_table,
    suppressions_table,
)

UNKNOWN = "unknown"  # linked_by of an event naming nobody of ours: kept, never counted
UNLINKED = "unlinked"  # linked_by of a mailbox event without our token or Message-ID, or a forged token: the same
NOT_COUNTED = (UNKNOWN, UNLINKED)


@dataclass(frozen=True, slots=True)
class DeliveryRef:
    """The delivery an event refers to: what linking needs of it."""

    id: int
    digest_id: int
    email_key: str


@dataclass(frozen=True, slots=True)
class NewMailEvent:
    """An event as it is kept: the door's MailEvent, linked (see bounces.recorder)."""

    kind: EventKind
    email_key: str  # the delivery's address when linked to one, else the event's, lower-cased
    source: str
    reason: str
    occurred: datetime
    received_at: datetime
    delivery: DeliveryRef | None
    linked_by: str  # token | message_id | provider_id | address | unlinked | unknown
    event_id: str | None
    raw: str


@dataclass(frozen=True, slots=True)
class Recorded:
    """What recording one event did."""

    id: int | None  # None: a duplicate, not kept again
    outcome: str  # as `bounces list` shows it
    action: Action = Action.NONE
    status: SubscriberStatus | None = None  # the reader's new status, if it changed
    suppressed: bool = False  # put on the suppression list now


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    kind: EventKind
    email_key: str
    source: str
    reason: str
    occurred: datetime
    received_at: datetime
    delivery_id: int | None
    digest_id: int | None
    linked_by: str
    event_id: str | None
    outcome: str


@dataclass(frozen=True, slots=True)
class Suppression:
    email_key: str
    kind: EventKind
    reason: str
    since: datetime
    mail_event_id: int | None
    lifted_at: datetime | None = None
    lifted_by: str | None = None

    @property
    def active(self) -> bool:
        return self.lifted_at is None


class BounceStore:
    """The Store's mail events and suppression list."""

    engine: Engine

    # --- linking ------------------------------------------------------------------------------

    def delivery_ref(self, delivery_id: int) -> DeliveryRef | None:
        return self._delivery_where(deliveries_table.c.id == delivery_id)

    def delivery_by_message_id(self, message_id: str) -> DeliveryRef | None:
        """By our Message-ID, with or without its angle brackets."""
        bare = message_id.strip().strip("<>")
        if not bare:
            return None
        return self._delivery_where(deliveries_table.c.message_id.in_((f"<{bare}>", bare)))

    def delivery_by_provider_id(self, provider_id: str, email_key: str) -> DeliveryRef | None:
        """By the provider's id of the message, as its answer gave it (brackets or not). A batch
        call (Mailgun, SendGrid) gives one id to all its readers' deliveries: when the id names
        several readers, only a delivery to `email_key` (the event's address) is it, and an
        event naming none of them links nothing (another reader's delivery would apply the
        event's rule to the wrong person)."""
        bare = provider_id.strip().strip("<>")
        if not bare:
            return None
        x = deliveries_table.c
        same_id = x.provider_id.in_((f"<{bare}>", bare))
        with self.engine.connect() as conn:
            readers = conn.execute(select(x.email_key).where(same_id).distinct().limit(2)).scalars().all()
        if len(readers) < 2:
            return self._delivery_where(same_id)
        return self._delivery_where(same_id & (x.email_key == email_key))

    def _delivery_where(self, condition: Any) -> DeliveryRef | None:
        x = deliveries_table.c
        with self.engine.connect() as conn:
            row = conn.execute(select(x.id, x.digest_id, x.email_key).where(condition).order_by(x.id.desc())).first()
        return DeliveryRef(row.id, row.digest_id, row.email_key) if row else None

    # --- recording ----------------------------------------------------------------------------

    def record_mail_event(self, event: NewMailEvent, rule: Rule) -> Recorded:
        """Keep `event` (once per source and event id) and apply `rule` to its address, in one
        transaction: concurrent events for one reader are counted one after the other (the
        subscriber's row is locked on PostgreSQL; SQLite has one writer anyway)."""
        e = mail_events_table.c
        delivery = event.delivery
        values = {
            "kind": event.kind.value, "email_key": event.email_key, "source": event.source[:40],
            "reason": event.reason, "occurred": naive_utc(event.occurred),
            "received_at": naive_utc(event.received_at),
            "delivery_id": delivery.id if delivery else None, "digest_id": delivery.digest_id if delivery else None,
            "linked_by": event.linked_by, "event_id": event.event_id[:300] if event.event_id else None,
            "outcome": "", "raw": event.raw,
        }  # fmt: skip
        try:
            with self.engine.begin() as conn:
                # The write first: SQLite's write lock is taken here and held to the commit, so
                # no other writer comes between the count and what it decides. (Not in a
                # savepoint: pysqlite would commit the insert on its release.)
                event_id = conn.execute(insert(mail_events_table).values(**values)).inserted_primary_key[0]  # type: ignore[index]
                recorded = self._apply(conn, event, rule, int(event_id))
                conn.execute(update(mail_events_table).where(e.id == event_id).values(outcome=recorded.outcome[:200]))
        except IntegrityError:
            kept = select(e.id).where(e.source == values["source"], e.event_id == values["event_id"])
            with self.engine.connect() as conn:
                if values["event_id"] is None or conn.execute(kept).first() is None:
                    raise  # not the same event again: a delivery deleted meanwhile, say
            return Recorded(None, "duplicate: kept before")
        return recorded

    def _apply(self, conn: Connection, event: NewMailEvent, rule: Rule, event_id: int) -> Recorded:
        if event.linked_by == UNKNOWN:
            return Recorded(event_id, "kept: not a reader of ours")
        if event.linked_by == UNLINKED:
            return Recorded(event_id, "kept: not linked to a delivery of ours, changes nobody")
        s, e, p = subscribers_table.c, mail_events_table.c, suppressions_table.c
        key = event.email_key
        reader = conn.execute(
            select(s.id, s.status).where(s.email_key == key).with_for_update()  # one reader's events in turn
        ).first()
        held = conn.execute(select(p.lifted_at).where(p.email_key == key)).first()
        lifted_at = aware_utc(held.lifted_at) if held is not None and held.lifted_at is not None else None
        start, end = window_start(rule, event.occurred, lifted_at), window_end(rule, event.occurred)
        rows = conn.execute(
            select(e.id, e.delivery_id, e.occurred).where(
                e.email_key == key, e.kind == event.kind.value, e.linked_by.not_in(NOT_COUNTED),
                e.occurred >= naive_utc(start), e.occurred <= naive_utc(end),
            )
        ).all()  # fmt: skip
        count = count_in_window(rule, event.occurred, once_per_delivery(rows))
        action = decide(rule, count)
        counted = f"{count} of {rule.count} within {rule.within_days} days"
        if action is Action.NONE:
            return Recorded(event_id, f"counted: {counted}")
        words = KIND_NAMES[event.kind]
        status = None
        if reader is not None:
            status = status_after(event.kind, action, SubscriberStatus(reader.status))
            if status is not None:
                conn.execute(
                    update(subscribers_table)
                    .where(s.id == reader.id)
                    .values(status=status.value, status_at=naive_utc(event.received_at),
                            status_via=f"{words}: {event.source}"[:100])
                )  # fmt: skip
        suppressed = False
        if action is Action.SUPPRESS:
            suppressed = held is None or lifted_at is not None
            row = {"kind": event.kind.value, "reason": event.reason[:2000], "since": naive_utc(event.received_at),
                   "mail_event_id": event_id, "lifted_at": None, "lifted_by": None}  # fmt: skip
            if held is None:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(suppressions_table).values(email_key=key, **row))
                except IntegrityError:  # another event for the address, not locked by a reader's row, was first
                    suppressed = False
            elif suppressed:
                conn.execute(update(suppressions_table).where(p.email_key == key).values(**row))
        if action is Action.UNSUBSCRIBE:
            done = "unsubscribed" if status is not None else "unsubscribe: the reader receives no mail already"
        else:
            done = "suppressed" if suppressed else "suppressed already"
            done += f", reader {status.value}" if status is not None else ""
        return Recorded(event_id, f"{done} ({counted})", action, status, suppressed)

    # --- the suppression list -----------------------------------------------------------------

    def suppressed_keys(self) -> set[str]:
        """Every address on the suppression list now (a digest's plan checks them all at once)."""
        p = suppressions_table.c
        with self.engine.connect() as conn:
            return set(conn.execute(select(p.email_key).where(p.lifted_at.is_(None))).scalars())

    def suppressed_among(self, email_keys: Collection[str]) -> set[str]:
        """Which of these addresses are on the suppression list now (a digest's plan asks a
        batch of readers at a time: memory holds a batch, however long the list)."""
        p = suppressions_table.c
        if not email_keys:
            return set()
        query = select(p.email_key).where(p.email_key.in_(list(email_keys)), p.lifted_at.is_(None))
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def suppression(self, email_key: str) -> Suppression | None:
        """The address's suppression, active or lifted; None when it never had one."""
        with self.engine.connect() as conn:
            row = conn.execute(select(suppressions_table).where(suppressions_table.c.email_key == email_key)).first()
        return _suppression(row) if row else None

    def is_suppressed(self, email_key: str) -> bool:
        found = self.suppression(email_key)
        return found is not None and found.active

    def suppressions(self, include_lifted: bool = False) -> list[Suppression]:
        """The list, newest first."""
        p = suppressions_table.c
        query = select(suppressions_table).order_by(p.since.desc(), p.email_key)
        if not include_lifted:
            query = query.where(p.lifted_at.is_(None))
        with self.engine.connect() as conn:
            return [_suppression(r) for r in conn.execute(query).all()]

    def lift_suppression(self, email_key: str, now: datetime, by: str) -> bool:
        """Take the address off the list (the row stays, dated); False when it was not on it."""
        with self.engine.begin() as conn:
            return lift_suppression(conn, email_key, now, by)

    def mail_events(self, limit: int = 100, email_key: str | None = None) -> list[StoredEvent]:
        """Kept events, newest first (by when they were received)."""
        e = mail_events_table.c
        query = select(mail_events_table).order_by(e.id.desc()).limit(limit)
        if email_key is not None:
            query = query.where(e.email_key == email_key)
        with self.engine.connect() as conn:
            return [_stored_event(r) for r in conn.execute(query).all()]


def lift_suppression(conn: Connection, email_key: str, now: datetime, by: str) -> bool:
    """`BounceStore.lift_suppression` in `conn`'s transaction (a confirmed sign-up lifts it
    with the subscriber's row)."""
    p = suppressions_table.c
    lifted = conn.execute(
        update(suppressions_table)
        .where(p.email_key == email_key, p.lifted_at.is_(None))
        .values(lifted_at=naive_utc(now), lifted_by=by[:100])
    )
    return bool(lifted.rowcount)


def once_per_delivery(rows: Any) -> list[datetime]:
    """The dates to count of (id, delivery_id, occurred) rows: one per delivery, its first,
    so one message counts once however often it is reported (a provider's report of each
    retry, a DSN naming several recipients for one token); an event of no delivery counts alone."""
    first: dict[tuple[str, int], datetime] = {}
    for row in rows:
        key = ("delivery", row.delivery_id) if row.delivery_id is not None else ("event", row.id)
        at = aware_utc(row.occurred)
        first[key] = min(first.get(key, at), at)
    return list(first.values())


def _suppression(r: Any) -> Suppression:
    lifted = aware_utc(r.lifted_at) if r.lifted_at is not None else None
    since = aware_utc(r.since)
    return Suppression(r.email_key, EventKind(r.kind), r.reason, since, r.mail_event_id, lifted, r.lifted_by)


def _stored_event(r: Any) -> StoredEvent:
    return StoredEvent(
        r.id, EventKind(r.kind), r.email_key, r.source, r.reason, aware_utc(r.occurred), aware_utc(r.received_at),
        r.delivery_id, r.digest_id, r.linked_by, r.event_id, r.outcome,
    )  # fmt: skip
