"""Deliveries that wait for another try, and those that failed: when each is due, the list an
operator reads (`digest failures`), and putting them back in the queue (`digest retry`).

A delivery whose last try ended in a temporary error is `pending` with its error kept in
`last_error`; it is due `retry_after[n-1]` after that try (its `updated_at`), n being its
attempts so far. No column holds the due time: it follows from the attempts, the time of the
last try and the configured waits, so a changed `retry_after` applies to deliveries already
waiting.

An `uncertain` delivery may have reached the reader (no answer came after the message was
handed over, or the process stopped mid-send): nothing sends it again by itself, only `digest
retry --all`, because the operator asked. Its `last_error` says which kind it is: starting with
UNANSWERED it was never confirmed (`--all` takes it); SENT_AGAIN, it was confirmed on such a
retry and may have arrived twice (nothing takes it). While it waits for that retry, its error
starts with EARLIER, and whatever the retry ends in keeps the doubt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal_column, or_, select, update
from sqlalchemy.engine import Engine

from ..model import SubscriberStatus
from .locks import in_key_order
from .schema import aware_utc, deliveries_table, digests_table, naive_utc, subscribers_table

OPEN = ("pending", "sending")
# How the error of a delivery that ran out of tries after temporary errors starts: `digest
# retry` tries those again, and leaves permanent failures to `--all`.
GAVE_UP = "gave up after "
# How an uncertain delivery's error starts when no answer confirmed it: `--all` sends it again.
UNANSWERED = "may have been delivered: "
# How the error of a delivery put back by `--all` after such a doubt starts (while it is open).
EARLIER = "an earlier try may have been delivered; "
# The error of an uncertain delivery that such a retry delivered.
SENT_AGAIN = "sent again on request after a try that may have been delivered: it may have arrived twice"

_x = deliveries_table.c
# Due at once: never tried after an error, or left `sending` (the next run records it uncertain).
# No parameters, so that a GROUP BY can repeat it as it is.
_SETTLE_NOW = or_(_x.last_error.is_(None), _x.status == literal_column("'sending'"))


def next_try_at(attempts: int, last_try: datetime, delays: Sequence[timedelta]) -> datetime:
    """When a delivery that failed its `attempts`-th try (at `last_try`) is due again. Past the
    last wait (the waits were shortened since) it is due at once, to be failed."""
    if attempts <= 0 or attempts > len(delays):
        return last_try
    return last_try + delays[attempts - 1]


def due_clause(now: datetime, delays: Sequence[timedelta]) -> Any:
    """The SQL condition for an open delivery that may be taken at `now`: never tried after an
    error, left `sending` by a process that stopped (due at once, to be recorded uncertain,
    whatever error an earlier try left), or its wait over; `next_try_at` in SQL."""
    at = naive_utc(now)
    waited = [and_(_x.attempts == n, _x.updated_at <= at - delay) for n, delay in enumerate(delays, start=1)]
    return or_(_SETTLE_NOW, _x.attempts <= 0, _x.attempts > len(delays), *waited)


@dataclass(frozen=True, slots=True)
class DeliveryProblem:
    """A delivery an operator may want to act on: failed, uncertain, or waiting for a try."""

    digest_id: int
    digest_key: str
    email_key: str
    status: str  # failed | uncertain | pending (waiting) | sending (its process stopped, or runs)
    attempts: int
    last_try: datetime  # UTC
    error: str

    @property
    def waiting(self) -> bool:
        """Waiting for its next try; not a `sending` one, which the next send records uncertain."""
        return self.status == "pending"

    @property
    def state(self) -> str:
        """As `digest failures` and the console show it: `waiting` for a pending one."""
        return "waiting" if self.waiting else self.status

    def next_try(self, delays: Sequence[timedelta]) -> datetime | None:
        """When a waiting one is tried again (`next_try_at`); None for the others."""
        return next_try_at(self.attempts, self.last_try, delays) if self.waiting else None

    @property
    def temporary(self) -> bool:
        """Waiting, or failed only because the tries ran out: `digest retry` takes it."""
        return self.waiting or self.error.startswith(GAVE_UP)

    @property
    def unanswered(self) -> bool:
        """Uncertain and never confirmed: the reader may or may not have it."""
        return self.status == "uncertain" and self.error.startswith(UNANSWERED)

    @property
    def retry_with(self) -> str:
        """The command that tries it again, and its risk; "" when none does (sent, maybe twice)."""
        if self.unanswered:
            return "retry --all (may arrive twice)"
        if self.status in ("uncertain", "sending"):
            return ""
        return "retry" if self.temporary else "retry --all"


class RetryStore:
    """The Store's view of deliveries waiting for another try and of those that failed."""

    engine: Engine

    def waiting(
        self, digest_id: int, delays: Sequence[timedelta], chunk: int | None = None
    ) -> tuple[int, datetime | None]:
        """(open deliveries, when the first of them is due), or (0, None) when none is open;
        `chunk`: of that chunk only (fan-out)."""
        fresh = _SETTLE_NOW
        query = (
            select(_x.attempts, fresh, func.count(), func.min(_x.updated_at))
            .where(_x.digest_id == digest_id, _x.status.in_(OPEN))
            .group_by(_x.attempts, fresh)
        )
        if chunk is not None:
            query = query.where(_x.chunk == chunk)
        with self.engine.connect() as conn:
            groups = conn.execute(query).all()
        if not groups:
            return 0, None
        due = [
            aware_utc(last) if is_fresh else next_try_at(attempts, aware_utc(last), delays)
            for attempts, is_fresh, _count, last in groups
        ]
        return sum(count for _a, _f, count, _l in groups), min(due)

    def due_count(self, digest_id: int, now: datetime, delays: Sequence[timedelta]) -> int:
        """How many of the digest's open deliveries may be tried at `now`."""
        query = select(func.count()).where(_x.digest_id == digest_id, _x.status.in_(OPEN), due_clause(now, delays))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def delivery_problems(self, digest_id: int | None = None, newest: int | None = None) -> list[DeliveryProblem]:
        """Failed and uncertain deliveries and those waiting after an error, oldest digest first;
        with `newest`, only that many of the latest, latest first (a live page's poll)."""
        d = digests_table.c
        query = (
            select(d.id, d.key, _x.email_key, _x.status, _x.attempts, _x.updated_at, _x.last_error)
            .join_from(deliveries_table, digests_table, d.id == _x.digest_id)
            .where(
                or_(
                    _x.status.in_(("failed", "uncertain")),
                    and_(_x.status.in_(OPEN), _x.last_error.is_not(None)),
                )
            )
            .order_by(d.id, _x.id)
        )
        if digest_id is not None:
            query = query.where(_x.digest_id == digest_id)
        if newest is not None:
            query = query.order_by(None).order_by(d.id.desc(), _x.id.desc()).limit(newest)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            DeliveryProblem(r[0], r[1], r[2], r[3], r[4], aware_utc(r[5]), r[6] or "")
            for r in rows
        ]  # fmt: skip

    def retry_deliveries(self, digest_id: int, now: datetime, everything: bool = False) -> int:
        """Put a digest's waiting deliveries, and those failed after temporary errors, back in
        the queue, due now with all their tries again. With `everything`, every failed one too,
        and the uncertain ones never confirmed (the operator asked: they may arrive twice, and
        keep saying so). A reader who no longer gets mail (unsubscribed, bounced, suppressed) is
        left alone; a `sending` row (its process stopped mid-send) is left for the next send,
        which records it uncertain. The digest is sending again when any was. Returns how many."""
        s = subscribers_table.c
        receiving = [status.value for status in SubscriberStatus if status.receives_mail]
        failed = _x.status == "failed"
        if not everything:
            failed = and_(failed, _x.last_error.like(GAVE_UP + "%"))
        unanswered = and_(_x.status == "uncertain", _x.last_error.like(UNANSWERED + "%"))
        kinds = [and_(_x.status == "pending", _x.last_error.is_not(None)), failed]
        chosen = and_(
            _x.digest_id == digest_id,
            _x.email_key.in_(select(s.email_key).where(s.status.in_(receiving))),
            or_(*kinds, unanswered) if everything else or_(*kinds),
        )
        doubt = case(
            (_x.status == "uncertain", EARLIER + "sent again on request"),
            (_x.last_error.like(EARLIER + "%"), _x.last_error),  # waiting again after such a retry
            else_=None,
        )
        with self.engine.begin() as conn:
            count = conn.execute(
                update(deliveries_table)
                .where(in_key_order(conn, _x.id, chosen))
                .values(status="pending", attempts=0, last_error=doubt, updated_at=naive_utc(now))
            ).rowcount
            if count:
                d = digests_table.c
                conn.execute(
                    update(digests_table).where(d.id == digest_id, d.status == "done").values(status="sending")
                )
        return int(count)
