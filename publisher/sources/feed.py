"""The `feed` source: an upstream RSS or Atom feed, read with feedparser, cleaned like any other.

A feed shows its newest items only, so the source is never `complete`: an item that leaves the
feed is not withdrawn. The feed is fetched with a conditional GET; a 304 reads nothing. Each
item's fingerprint is a hash of what it says, so an unchanged item costs nothing further.
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from ..errors import SourceError
from ..model import ItemProblem, SourceItem, Unchanged
from . import Fetched
from .http import Fetcher


class FeedSource:
    complete = False  # a feed is a window onto the newest items, not the whole archive
    remote = True

    def __init__(self, name: str, url: str, category: str | None, fetcher: Fetcher) -> None:
        self.name, self.url, self.category, self.fetcher = name, url, category, fetcher
        self.first_title: str | None = None  # for `publisher check`
        self.count = 0

    def fetch(self, fingerprints: Mapping[str, str]) -> Iterator[Fetched]:
        import feedparser

        # With nothing stored for this source (new, renamed, or a changed reading), read it all.
        page = self.fetcher.get(self.url, conditional=bool(fingerprints), remember=True)
        if page.not_modified:
            return
        parsed = feedparser.parse(page.content, response_headers={k.lower(): v for k, v in page.headers.items()})
        if not parsed.entries and (parsed.bozo or not parsed.get("version")):  # an HTML page, say
            raise SourceError(
                f"{self.url}: not an RSS or Atom feed ({parsed.get('bozo_exception') or 'no feed elements'})",
                "check that the URL is the RSS or Atom feed itself, not the page that links it",
            )
        unchanged, seen = [], set()
        for position, entry in enumerate(parsed.entries):
            key = entry.get("id") or entry.get("link") or ""
            if key in seen:  # the same guid twice in one feed: the first (newest) one counts
                continue
            seen.add(key)
            title = (entry.get("title") or "").strip()
            if not key or not title:
                yield ItemProblem(
                    key or f"{self.url}#{position + 1}",
                    f"{self.url} item {position + 1}",
                    "has no id/link or no title",
                    "the upstream feed must give each item a guid or link and a title",
                )
                continue
            self.count += 1
            self.first_title = self.first_title or title
            body = _content(entry)
            fingerprint = hashlib.sha256(
                "\x1f".join([title, body, str(dict.get(entry, "updated", "")), entry.get("link", "")]).encode()
            ).hexdigest()[:32]
            if fingerprints.get(key) == fingerprint:
                unchanged.append(key)
                continue
            published = _when(entry, "published_parsed") or _when(entry, "updated_parsed")  # raw keys
            yield SourceItem(
                source=self.name,
                key=key,
                title=title,
                content=body,
                published=published or datetime.now(UTC).replace(microsecond=0),
                location=f"{self.url} item {position + 1}",
                url=entry.get("link"),
                author=entry.get("author"),
                summary=None,
                tags=tuple(t.get("term", "") for t in entry.get("tags", []) if t.get("term")),
                updated=_when(entry, "updated_parsed"),
                fingerprint=fingerprint,
                default_category=self.category,
            )
        if unchanged:
            yield Unchanged(tuple(unchanged))

    def probe(self) -> tuple[int, str | None, list[ItemProblem]]:
        """For `publisher check`: one request; (items, the first title, problems)."""
        results = list(self.fetch({}))
        return self.count, self.first_title, [r for r in results if isinstance(r, ItemProblem)]

    def committed(self) -> None:
        """What this run read is stored: its ETag/Last-Modified may now answer a 304 next time."""
        self.fetcher.commit()


def _content(entry: Mapping[str, object]) -> str:
    """The full HTML when the feed has it, else the summary."""
    contents = entry.get("content") or []
    for part in contents:  # type: ignore[attr-defined]
        if part.get("value"):
            return str(part["value"])
    return str(entry.get("summary") or "")


def _when(entry: Any, field: str) -> datetime | None:
    value = dict.get(entry, field)  # not FeedParserDict.get, which maps updated to published
    if not value:
        return None
    return datetime.fromtimestamp(calendar.timegm(value), UTC)
