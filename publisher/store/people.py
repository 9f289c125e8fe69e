"""The console's reading of the list: a page of subscribers found by address, name, status and
category, a reader's deliveries, and digests with their counts. Read-only; every query pages
(keyset on ids), so a list of 100,000 readers is never loaded whole."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine

from ..model import Subscriber, SubscriberStatus
from .schema import aware_utc, deliveries_table, digests_table, subscribers_table
from .subscribers import subscriber_from_row

RECENT_DIGESTS = 26  # a reader's timeline shows their deliveries of the last half year of weekly digests


@dataclass(frozen=True, slots=True)
class SubscriberPage:
    """One page of a search: `next_after` is the id to continue after (None: the last page)."""

    subscribers: list[Subscriber]
    next_after: int | None


@dataclass(frozen=True, slots=True)
class ReaderDelivery:
    """One delivery of one reader, as their timeline shows it."""

    digest_id: int
    digest_key: str
    status: str
    attempts: int
    updated_at: datetime
    error: str


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class PeopleStore:
    """The Store's queries for the console's subscriber and digest pages."""

    engine: Engine

    def find_subscribers(
        self,
        text: str = "",
        status: SubscriberStatus | None = None,
        category: str | None = None,
        after_id: int = 0,
        limit: int = 50,
    ) -> SubscriberPage:
        """Subscribers in sign-up order after `after_id`: whose address or name contains `text`
        (case-insensitive for the address, which is kept lower-cased in email_key), with
        `status`, getting `category` (a reader of every category gets each). The primary key
        is walked from `after_id` and the walk stops at `limit + 1` matches."""
        s = subscribers_table.c
        query = select(subscribers_table).where(s.id > after_id).order_by(s.id).limit(limit + 1)
        needle = text.strip()
        if needle:
            pattern = f"%{_like_escape(needle)}%"
            query = query.where(or_(s.email_key.like(pattern.lower(), escape="\\"), s.name.like(pattern, escape="\\")))
        if status is not None:
            query = query.where(s.status == status.value)
        if category:
            # categories is a JSON list of slugs; [] means every category.
            quoted = f'%"{_like_escape(category)}"%'
            query = query.where(or_(s.categories == "[]", s.categories.like(quoted, escape="\\")))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        found = [subscriber_from_row(r) for r in rows[:limit]]
        more = len(rows) > limit and found
        return SubscriberPage(found, found[-1].id if more else None)

    def subscriber_counts(self) -> dict[str, int]:
        """How many subscribers have each status."""
        s = subscribers_table.c
        with self.engine.connect() as conn:
            return {status: n for status, n in conn.execute(select(s.status, func.count()).group_by(s.status)).all()}

    def reader_deliveries(self, email_key: str, digests: int = RECENT_DIGESTS) -> list[ReaderDelivery]:
        """The reader's deliveries of the last `digests` digests, newest first: each looked up by
        (digest, address), the ledger's unique index."""
        d, x = digests_table.c, deliveries_table.c
        recent = select(d.id).order_by(d.id.desc()).limit(digests).scalar_subquery()
        query = (
            select(d.id, d.key, x.status, x.attempts, x.updated_at, x.last_error)
            .join_from(deliveries_table, digests_table, d.id == x.digest_id)
            .where(x.digest_id.in_(recent), x.email_key == email_key)
            .order_by(d.id.desc())
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [ReaderDelivery(r[0], r[1], r[2], r[3], aware_utc(r[4]), r[5] or "") for r in rows]

    def digest_counts(self, digest_ids: Sequence[int]) -> dict[int, dict[str, int]]:
        """Per digest of `digest_ids`, its deliveries by state, in one grouped query."""
        x = deliveries_table.c
        counts: dict[int, dict[str, int]] = {i: {} for i in digest_ids}
        if not digest_ids:
            return counts
        query = (
            select(x.digest_id, x.status, func.count())
            .where(x.digest_id.in_(list(digest_ids)))
            .group_by(x.digest_id, x.status)
        )
        with self.engine.connect() as conn:
            for digest_id, state, n in conn.execute(query).all():
                counts[digest_id][state] = n
        return counts
