"""The weekly digest's content, as pure functions: which window, which articles, for whom.

Windows: a scheduled digest takes what was *ingested* since the previous scheduled digest
(the very first one takes the last 7 days), so every article lands in exactly one digest
whatever its publication date says: a backdated or late article is not lost, a re-published
one is not sent twice. An explicit `--since/--until` window picks by *publication* date
instead, for a one-off or a re-send; its key is the window itself, so sending the same window
twice sends nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from .model import Article, Category, Subscriber

FIRST_DIGEST_DAYS = 7


@dataclass(frozen=True, slots=True)
class DigestWindow:
    """Articles with `start < moment <= end`, where moment is first ingest or publication."""

    key: str  # unique per digest: a second run of the same window creates nothing
    start: datetime  # aware, UTC
    end: datetime  # aware, UTC
    by: Literal["ingested", "published"]


@dataclass(frozen=True, slots=True)
class DigestSection:
    category: Category
    articles: tuple[Article, ...]


def scheduled_window(previous_end: datetime | None, now: datetime) -> DigestWindow:
    """The window of the scheduled digest due at `now`, after the one that ended at `previous_end`."""
    end = now.astimezone(UTC).replace(microsecond=0)
    start = previous_end.astimezone(UTC) if previous_end else end - timedelta(days=FIRST_DIGEST_DAYS)
    return DigestWindow(f"scheduled:{end:%Y-%m-%dT%H:%M:%SZ}", start, end, "ingested")


def explicit_window(since: date, until: date, timezone: str) -> DigestWindow:
    """Publication dates from `since` to `until`, both days included, in the site's zone."""
    if until < since:
        raise ValueError(f"--until {until} is before --since {since}")
    zone = ZoneInfo(timezone)
    start = datetime.combine(since, time(0, 0), tzinfo=zone) - timedelta(microseconds=1)
    end = datetime.combine(until + timedelta(days=1), time(0, 0), tzinfo=zone) - timedelta(microseconds=1)
    return DigestWindow(
        f"window:{since.isoformat()}..{until.isoformat()}", start.astimezone(UTC), end.astimezone(UTC), "published"
    )


def sections_for(
    subscriber: Subscriber, articles: Sequence[Article], categories: Sequence[Category], max_per_category: int
) -> list[DigestSection]:
    """The subscriber's digest: their categories in config order (none chosen: all), newest
    first, each article once even when it sits in two of them. Empty: send no e-mail."""
    chosen = set(subscriber.categories) or {c.slug for c in categories}
    ordered = sorted(articles, key=lambda a: (a.published, a.guid), reverse=True)
    placed: set[str] = set()
    sections = []
    for category in categories:
        if category.slug not in chosen:
            continue
        picked = [a for a in ordered if category.slug in a.categories and a.guid not in placed][:max_per_category]
        placed.update(a.guid for a in picked)
        if picked:
            sections.append(DigestSection(category, tuple(picked)))
    return sections
