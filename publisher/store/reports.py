"""The console's dashboard numbers: subscribers by week, the last digests, articles per category
by week. Read-only queries over the existing tables, counted per week in the site's timezone.

A week runs from Monday 00:00 to the next Monday 00:00 in the site's zone (`weeks_ending`). The
store keeps a subscriber's current status and when it was reached (`status_at`), not their
history: a reader who confirmed in week 1 and unsubscribed in week 3 counts in week 3 only, as
unsubscribed, and a reader who left and came back counts where they came back. The weekly
numbers are therefore where today's subscribers reached their status, not a log of changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Engine

from .schema import (
    article_categories_table,
    articles_table,
    aware_utc,
    deliveries_table,
    digests_table,
    mail_events_table,
    naive_utc,
    subscribers_table,
)


@dataclass(frozen=True, slots=True)
class Week:
    """[start, end) in UTC; `label` the Monday it starts on, in the site's zone (2026-11-30)."""

    start: datetime
    end: datetime
    label: str


def weeks_ending(now: datetime, zone: ZoneInfo, count: int) -> list[Week]:
    """The `count` weeks up to and including the one holding `now`, oldest first."""
    local = now.astimezone(zone)
    monday = datetime(local.year, local.month, local.day, tzinfo=zone) - timedelta(days=local.weekday())
    weeks = []
    for back in range(count - 1, -1, -1):
        start = _local_midnight(monday - timedelta(days=7 * back), zone)
        end = _local_midnight(start + timedelta(days=7), zone)
        weeks.append(Week(start.astimezone(now.tzinfo), end.astimezone(now.tzinfo), start.date().isoformat()))
    return weeks


def _local_midnight(moment: datetime, zone: ZoneInfo) -> datetime:
    """Midnight of `moment`'s date in `zone` (a daylight-saving change moves the hour, not the day)."""
    local = moment.astimezone(zone)
    return datetime(local.year, local.month, local.day, tzinfo=zone)


@dataclass(frozen=True, slots=True)
class SubscriberWeek:
    """One week of the list. `confirmed`, `pending`, `unsubscribed`, `bounced`: subscribers whose
    current status is that one and was reached in the week; `net` = confirmed − unsubscribed −
    bounced; `list_size`: subscribers confirmed at the week's end, estimated from the current
    statuses (those confirmed by then and still confirmed, plus those who left after it and
    had signed up by then)."""

    week: Week
    confirmed: int
    pending: int
    unsubscribed: int
    bounced: int
    list_size: int

    @property
    def net(self) -> int:
        return self.confirmed - self.unsubscribed - self.bounced


@dataclass(frozen=True, slots=True)
class DigestReport:
    """A digest and how its deliveries went. `planned`: every delivery row (one per reader);
    `sent`, `failed`, `uncertain`, `skipped`, `waiting` (pending or sending): deliveries by
    status now; `bounced`, `complained`: distinct readers with a hard or soft bounce, or a
    complaint, linked to this digest; `time_to_send`: from the digest's planning to its last
    delivery's last change, once the digest is done (None before)."""

    id: int
    key: str
    status: str
    created_at: datetime
    planned: int
    sent: int
    failed: int
    uncertain: int
    skipped: int
    waiting: int
    bounced: int
    complained: int
    time_to_send: timedelta | None


@dataclass(frozen=True, slots=True)
class CategoryWeeks:
    """A category's live articles by the week of their publication date."""

    slug: str
    counts: tuple[int, ...]  # one per week, in the order of the weeks asked for

    @property
    def total(self) -> int:
        return sum(self.counts)


class ReportStore:
    """The Store's dashboard queries (read-only)."""

    engine: Engine

    if TYPE_CHECKING:

        def digest_counts(self, digest_ids: Sequence[int]) -> dict[int, dict[str, int]]: ...  # PeopleStore

    def subscriber_weeks(self, weeks: Sequence[Week]) -> list[SubscriberWeek]:
        """The list by week (see SubscriberWeek). Reads three columns of every subscriber."""
        s = subscribers_table.c
        with self.engine.connect() as conn:
            rows = [
                (r.status, aware_utc(r.status_at), aware_utc(r.created_at))
                for r in conn.execute(select(s.status, s.status_at, s.created_at))
            ]
        report = []
        for week in weeks:
            reached = Counter(status for status, at, _ in rows if week.start <= at < week.end)
            size = sum(
                1
                for status, at, created in rows
                if (status == "confirmed" and at < week.end)
                or (status in ("unsubscribed", "bounced") and at >= week.end and created < week.end)
            )
            report.append(
                SubscriberWeek(
                    week, reached["confirmed"], reached["pending"], reached["unsubscribed"], reached["bounced"], size
                )
            )
        return report

    def digest_reports(self, last: int) -> list[DigestReport]:
        """The newest `last` digests, newest first, with their deliveries counted."""
        d, x, e = digests_table.c, deliveries_table.c, mail_events_table.c
        with self.engine.connect() as conn:
            digests = conn.execute(select(digests_table).order_by(d.id.desc()).limit(last)).all()
            ids = [row.id for row in digests]
            by_status = {i: Counter(counts) for i, counts in self.digest_counts(ids).items()}
            last_change = dict(
                conn.execute(
                    select(x.digest_id, func.max(x.updated_at)).where(x.digest_id.in_(ids)).group_by(x.digest_id)
                ).all()
            )
            readers: dict[int, dict[str, set[str]]] = {i: {"bounced": set(), "complained": set()} for i in ids}
            for digest_id, kind, email_key in conn.execute(
                select(e.digest_id, e.kind, e.email_key)
                .distinct()
                .where(and_(e.digest_id.in_(ids), e.kind.in_(("hard", "soft", "complaint"))))
            ):
                readers[digest_id]["complained" if kind == "complaint" else "bounced"].add(email_key)
        reports = []
        for row in digests:
            counts, created = by_status[row.id], aware_utc(row.created_at)
            ended = last_change.get(row.id)
            reports.append(
                DigestReport(
                    id=row.id, key=row.key, status=row.status, created_at=created,
                    planned=sum(counts.values()), sent=counts["sent"], failed=counts["failed"],
                    uncertain=counts["uncertain"], skipped=counts["skipped"],
                    waiting=counts["pending"] + counts["sending"],
                    bounced=len(readers[row.id]["bounced"]), complained=len(readers[row.id]["complained"]),
                    time_to_send=aware_utc(ended) - created if row.status == "done" and ended is not None else None,
                )
            )  # fmt: skip
        return reports

    def category_weeks(self, weeks: Sequence[Week]) -> list[CategoryWeeks]:
        """Live articles per category and week of publication, by slug; categories with no
        article in the weeks are left out."""
        c = article_categories_table.c
        query = select(c.category_slug, c.published).where(
            c.published >= naive_utc(weeks[0].start), c.published < naive_utc(weeks[-1].end)
        )
        counts: dict[str, list[int]] = {}
        with self.engine.connect() as conn:
            for slug, published in conn.execute(query):
                moment = aware_utc(published)
                row = counts.setdefault(slug, [0] * len(weeks))
                for n, week in enumerate(weeks):
                    if week.start <= moment < week.end:
                        row[n] += 1
                        break
        return [CategoryWeeks(slug, tuple(row)) for slug, row in sorted(counts.items())]

    def live_article_counts(self) -> dict[str, int]:
        """Live articles per category slug, and under "" every live article of the site."""
        c, a = article_categories_table.c, articles_table.c
        with self.engine.connect() as conn:
            counts = dict(conn.execute(select(c.category_slug, func.count()).group_by(c.category_slug)).all())
            counts[""] = conn.execute(select(func.count()).where(a.withdrawn.is_(False))).scalar_one()
        return counts

    def live_articles_by_source(self) -> dict[str, int]:
        """Live articles per source name."""
        a = articles_table.c
        query = select(a.source, func.count()).where(a.withdrawn.is_(False)).group_by(a.source)
        with self.engine.connect() as conn:
            return dict(conn.execute(query).all())
