"""Subscribers: who gets the digest, with which categories, script and cadence, in which status."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from ..model import Consent, Subscriber, SubscriberStatus
from .locks import lock_in_key_order
from .schema import aware_utc, naive_utc, signup_requests_table, subscribers_table


class SubscriberStore:
    """The Store's subscribers: the list, its statuses and categories."""

    engine: Engine

    def subscriber(self, email_key: str) -> Subscriber | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(subscribers_table).where(subscribers_table.c.email_key == email_key)).first()
        return subscriber_from_row(row) if row else None

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(subscribers_table).where(subscribers_table.c.id == subscriber_id)).first()
        return subscriber_from_row(row) if row else None

    def subscribers(self, status: SubscriberStatus | None = None) -> list[Subscriber]:
        """Subscribers in sign-up order, all of them or those with one status."""
        query = select(subscribers_table).order_by(subscribers_table.c.id)
        if status is not None:
            query = query.where(subscribers_table.c.status == status.value)
        with self.engine.connect() as conn:
            return [subscriber_from_row(row) for row in conn.execute(query).all()]

    def each_subscriber(self, status: SubscriberStatus, batch: int = 1000) -> Iterator[Subscriber]:
        """Subscribers with `status` in sign-up order, read `batch` at a time (by id, one short
        query each, no snapshot held between them): memory holds one batch however long the
        list (a digest's plan)."""
        s = subscribers_table.c
        after = 0
        while True:
            query = select(subscribers_table).where(s.status == status.value, s.id > after).order_by(s.id).limit(batch)
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            yield from (subscriber_from_row(row) for row in rows)
            if len(rows) < batch:
                return
            after = rows[-1].id

    def save_subscribers(self, subscribers: Iterable[Subscriber]) -> None:
        """Insert or update each subscriber (by address), all in one transaction."""
        with self.engine.begin() as conn:
            write_subscribers(conn, subscribers)

    def confirm_subscriber(self, email_key: str, now: datetime, via: str) -> bool:
        """The address's row becomes confirmed as it is; True only when this call changed it (a
        conditional UPDATE: of two confirmations at once, one sees True and sends the welcome)."""
        with self.engine.begin() as conn:
            return newly_confirmed(conn, email_key, now, via)

    def mark_bounced(self, email_key: str, now: datetime, reason: str) -> None:
        """The address does not exist: no more digests (an import never signs it up again)."""
        s = subscribers_table.c
        with self.engine.begin() as conn:
            conn.execute(
                update(subscribers_table)
                .where(s.email_key == email_key)
                .values(status="bounced", status_at=naive_utc(now), status_via=f"bounce: {reason}"[:100])
            )

    def delete_subscriber(self, email_key: str) -> bool:
        """The subscriber and their sign-up requests; the requests locked first, as a
        confirmation locks them before the subscriber."""
        with self.engine.begin() as conn:
            lock_signup_requests(conn, email_key)
            conn.execute(delete(signup_requests_table).where(signup_requests_table.c.email_key == email_key))
            deleted = conn.execute(delete(subscribers_table).where(subscribers_table.c.email_key == email_key))
            return bool(deleted.rowcount)


def lock_signup_requests(conn: Connection, email_key: str) -> None:
    """Lock an address's sign-up requests in id order, in `conn`'s transaction: every
    transaction that changes them and its subscriber takes these locks first (docs/scale.md)."""
    r = signup_requests_table.c
    lock_in_key_order(conn, r.id, r.email_key == email_key)


def write_subscribers(conn: Connection, subscribers: Iterable[Subscriber]) -> None:
    """Insert or update each subscriber (by address) in `conn`'s transaction."""
    s = subscribers_table
    for sub in subscribers:
        values = {
            "email": sub.email,
            "name": sub.name,
            "categories": json.dumps(list(dict.fromkeys(sub.categories)), ensure_ascii=False),
            "status": sub.status.value,
            "status_at": naive_utc(sub.status_at),
            "status_via": sub.status_via,
            "script": sub.script,
            "cadence": sub.cadence,
        }
        if sub.consent is not None:  # kept as recorded when a later change carries none
            values.update(consent_text=sub.consent.text, consent_at=naive_utc(sub.consent.at))
            values.update(consent_network=sub.consent.network)
        key = sub.email.lower()
        done = conn.execute(update(s).where(s.c.email_key == key).values(**values)).rowcount
        if not done:
            conn.execute(insert(s).values(email_key=key, created_at=naive_utc(sub.created_at), **values))


def newly_confirmed(conn: Connection, email_key: str, now: datetime, via: str) -> bool:
    """Confirm the address's row in `conn`'s transaction unless it is confirmed already; whether
    this changed it (UPDATE ... WHERE status <> 'confirmed': the database decides the race)."""
    s = subscribers_table.c
    changed = update(subscribers_table).where(s.email_key == email_key, s.status != SubscriberStatus.CONFIRMED.value)
    values = {"status": SubscriberStatus.CONFIRMED.value, "status_at": naive_utc(now), "status_via": via}
    return bool(conn.execute(changed.values(**values)).rowcount)


def subscriber_from_row(row: Any) -> Subscriber:
    """A Subscriber from a row of the subscribers table."""
    return Subscriber(
        email=row.email,
        name=row.name,
        categories=tuple(dict.fromkeys(json.loads(row.categories))),  # each once, however it was stored
        status=SubscriberStatus(row.status),
        status_at=aware_utc(row.status_at),
        status_via=row.status_via,
        created_at=aware_utc(row.created_at),
        id=row.id,
        script=row.script,
        cadence=row.cadence,
        consent=_consent(row),
    )


def _consent(row: Any) -> Consent | None:
    if row.consent_at is None:
        return None
    return Consent(row.consent_text or "", aware_utc(row.consent_at), row.consent_network or "")
