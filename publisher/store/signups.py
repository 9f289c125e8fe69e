"""The subscribe form's records: the sign-up budgets every process shares, and sign-up requests
kept until their link expires, marked once the address is confirmed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ..model import WEEKLY, Subscriber
from .bounces import lift_suppression
from .schema import (
    aware_utc,
    meta_table,
    naive_utc,
    signup_events_table,
    signup_requests_table,
    subscribers_table,
)
from .subscribers import lock_signup_requests, newly_confirmed, write_subscribers

SIGNUP_LOCK = "signup_budget"  # the meta row that orders budget checks across processes


@dataclass(frozen=True, slots=True)
class Budget:
    """At most `limit` sign-ups under (`scope`, `key`) in the `window` before now."""

    scope: str
    key: str
    limit: int
    window: timedelta


@dataclass(frozen=True, slots=True)
class SignupRequest:
    """What one sign-up asked for: the address as typed (normalised), a name, categories
    (slugs; empty means all), a script (None: the site's) and a cadence; and when the address
    was confirmed, through this request's link or another's (None: not yet)."""

    id: int
    email: str
    name: str
    categories: tuple[str, ...]
    created_at: datetime
    script: str | None = None
    cadence: str = WEEKLY
    consent_text: str = ""  # the words beside the form the reader sent
    confirmed_at: datetime | None = None


class SignupStore:
    """The Store's sign-up budgets and requests."""

    engine: Engine

    def spend_budgets(self, budgets: list[Budget], now: datetime, keep: timedelta) -> bool:
        """Record one sign-up under every budget's key if none of them is spent, else record
        nothing; False when one is spent. One transaction, ordered across processes by a row
        lock, so two processes cannot both take the last place. Events older than `keep` go."""
        e, at, m = signup_events_table.c, naive_utc(now), meta_table.c
        try:  # the lock row, made once; two first sign-ups at once must not both insert it
            with self.engine.begin() as conn:
                if conn.execute(select(m.key).where(m.key == SIGNUP_LOCK)).first() is None:
                    conn.execute(insert(meta_table).values(key=SIGNUP_LOCK, value=""))
        except IntegrityError:
            pass  # another process made it first
        with self.engine.begin() as conn:
            conn.execute(update(meta_table).where(m.key == SIGNUP_LOCK).values(value=m.value))
            conn.execute(delete(signup_events_table).where(e.at < naive_utc(now - keep)))
            for budget in budgets:
                count = conn.execute(
                    select(func.count())
                    .select_from(signup_events_table)
                    .where(e.scope == budget.scope, e.key == budget.key, e.at > naive_utc(now - budget.window))
                ).scalar_one()
                if count >= budget.limit:
                    return False
            pairs = {(b.scope, b.key) for b in budgets}
            conn.execute(insert(signup_events_table), [{"scope": s, "key": k, "at": at} for s, k in sorted(pairs)])
        return True

    def add_signup_request(
        self,
        email: str,
        name: str,
        categories: tuple[str, ...],
        now: datetime,
        keep: timedelta,
        script: str | None = None,
        cadence: str = WEEKLY,
        consent_text: str = "",
    ) -> SignupRequest:
        """Keep a sign-up's data for its link; requests older than `keep` go."""
        self._forget_requests_before(now - keep)
        with self.engine.begin() as conn:
            request_id = conn.execute(
                insert(signup_requests_table).values(
                    email_key=email.lower(),
                    email=email,
                    name=name,
                    categories=json.dumps(list(categories), ensure_ascii=False),
                    created_at=naive_utc(now),
                    script=script,
                    cadence=cadence,
                    consent_text=consent_text or None,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        return SignupRequest(int(request_id), email, name, categories, now, script, cadence, consent_text)

    def signup_request(self, request_id: int) -> SignupRequest | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(signup_requests_table).where(signup_requests_table.c.id == request_id)).first()
        if row is None:
            return None
        categories = tuple(dict.fromkeys(json.loads(row.categories)))
        created = aware_utc(row.created_at)
        consent = row.consent_text or ""
        confirmed = aware_utc(row.confirmed_at) if row.confirmed_at is not None else None
        return SignupRequest(
            row.id, row.email, row.name, categories, created, row.script, row.cadence, consent, confirmed
        )

    def signup_request_email_key(self, request_id: int) -> str | None:
        """The address key a request was made for (what its link's signature covers)."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(signup_requests_table.c.email_key).where(signup_requests_table.c.id == request_id)
            ).scalar_one_or_none()

    def confirm_signup(self, request_id: int, subscriber: Subscriber, keep: timedelta) -> bool | None:
        """Save `subscriber` (what the request asked for, confirmed), mark the address's
        requests confirmed and lift its suppression, in one transaction: whether this changed
        the address from not confirmed (or absent) to confirmed, so that only one of two
        confirmations at once sends the welcome. None, saving nothing, when the request was
        confirmed already or is gone (it expired). Requests older than `keep` go."""
        key = subscriber.email.lower()
        with self.engine.begin() as conn:
            if not mark_confirmed(conn, request_id, key, subscriber.status_at):
                return None
            absent = conn.execute(select(subscribers_table.c.id).where(subscribers_table.c.email_key == key)).first()
            newly = absent is None or newly_confirmed(conn, key, subscriber.status_at, subscriber.status_via)
            write_subscribers(conn, [subscriber])
            lift_suppression(conn, key, subscriber.status_at, "re-subscribed")
        self._forget_requests_before(subscriber.status_at - keep)
        return newly

    def mark_signup_requests_confirmed(self, request_id: int, email_key: str, now: datetime, keep: timedelta) -> None:
        """Mark the address's requests confirmed, saving nothing else (it was confirmed already);
        requests older than `keep` go."""
        with self.engine.begin() as conn:
            mark_confirmed(conn, request_id, email_key, now)
        self._forget_requests_before(now - keep)

    def _forget_requests_before(self, moment: datetime) -> None:
        """The requests made before `moment`, in a transaction of its own, but those another
        transaction holds (a confirmation's, an erasure's): the prune never waits for a lock,
        so it takes part in no deadlock, and what it skips goes at the next one."""
        r = signup_requests_table.c
        expired = select(r.id).where(r.created_at < naive_utc(moment)).with_for_update(skip_locked=True)
        with self.engine.begin() as conn:
            conn.execute(delete(signup_requests_table).where(r.id.in_(expired)))


def mark_confirmed(conn: Connection, request_id: int, email_key: str, now: datetime) -> bool:
    """In `conn`'s transaction: mark the request, then the address's other requests, confirmed
    at `now`, after which their links confirm nothing; False, changing nothing, when the request
    was confirmed already or is gone. A conditional UPDATE: of two processes following one link
    at once, one is told True. The address's requests are locked first (lock_signup_requests),
    so that two of them confirmed at once wait for each other in turn rather than deadlock."""
    r, at = signup_requests_table.c, naive_utc(now)
    lock_signup_requests(conn, email_key)
    marked = update(signup_requests_table).where(r.id == request_id, r.confirmed_at.is_(None))
    if not conn.execute(marked.values(confirmed_at=at)).rowcount:
        return False
    others = update(signup_requests_table).where(r.email_key == email_key, r.confirmed_at.is_(None))
    conn.execute(others.values(confirmed_at=at))
    return True
