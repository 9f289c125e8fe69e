"""The `json` source: any JSON API, with dotted paths to the fields and three kinds of paging.

Paths are dotted (`data.items`, `author.name`, `tags.0`). Paging: `page` (the URL's `{page}`:
1, 2, ...), `offset` (`{offset}`: 0, page_size, ...), `next` (a path to the next page's URL in
each answer) or `none`. The walk stops at `max_pages`, at an empty page, at the first page
with nothing new or changed, or at a page that answers 304 to its stored ETag/Last-Modified
(kept for every page of a `page` or `offset` walk, for the first of a `next` chain, and only
when the walk ended well), so a run costs one page when nothing happened. A page that fails
ends the walk, reported as a `ScopeRead` with its URL; the pages before it are kept, and the next
run reads on to the page that failed (`FailedItems.walk_resume`), whatever the pages before it
say. An API
shows its recent items, so the source is never `complete`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

from ..errors import SourceError
from ..model import ItemProblem, ScopeRead, SourceItem, Unchanged
from . import Fetched, PartFailed
from .failed_items import FailedItems
from .http import Fetcher, Page, RunOutOfTime


@dataclass(frozen=True)
class Fields:
    list: str  # path to the list of items in an answer ("" : the answer is the list)
    id: str = "id"
    title: str = "title"
    date: str = "date"
    body: str = "content"
    url: str | None = "url"
    category: str | None = None  # path to a category name or slug; none: the source's category
    author: str | None = None
    summary: str | None = None


@dataclass(frozen=True)
class Paging:
    kind: str = "page"  # page | offset | next | none
    page_size: int = 20  # for offset
    next: str | None = None  # for next: path to the next page's URL
    max_pages: int = 5


class JsonSource:
    complete = False
    remote = True

    def __init__(
        self, name: str, url: str, fields: Fields, paging: Paging, category: str | None, fetcher: Fetcher,
        timezone: str, failed: FailedItems | None = None,
    ) -> None:  # fmt: skip
        self.name, self.url, self.fields, self.paging = name, url, fields, paging
        self.category, self.fetcher, self.zone = category, fetcher, ZoneInfo(timezone)
        self.failed = failed  # only its walks that failed past page 1 are kept there
        self.first_title: str | None = None
        self.count = 0

    def fetch(self, fingerprints: Mapping[str, str]) -> Iterator[Fetched]:
        """The items page by page, then one `ScopeRead` for the list URL. A page that fails ends
        the walk there and is reported with its URL; the items of the pages before it are kept
        (they were read whole, and storing them loses nothing)."""
        first = url = self._page_url(1)
        if self.failed is not None:
            self.failed.keep_walks_from({first})  # a walk from another list URL would never resume
        resume = self.failed.walk_resume(first) if self.failed is not None else None  # read on to it
        seen: set[str] = set()
        read: list[tuple[str, Mapping[str, str]]] = []  # (URL, headers) of each page read
        stable = self.paging.kind != "next"  # a `next` chain's later URLs are the server's cursors
        for number in range(1, self.paging.max_pages + 1):
            try:
                # With nothing stored (a new source, changed settings) every page is read in full.
                page = self.fetcher.get(url, conditional=bool(fingerprints) and (stable or number == 1)
                                        and resume is None, remember=False)  # fmt: skip
                if page.not_modified:  # this page is as it was when its items were stored: stop
                    break
                answer = self._answer(url, page)
                items = self._items(url, answer)
            except RunOutOfTime:
                raise
            except SourceError as exc:
                if self.failed is not None:
                    self.failed.walk_ended(first, url, exc.message)
                yield ScopeRead(self.url, url, exc.message, exc.hint)
                return
            if stable or number == 1:
                read.append((url, page.headers))
            anything_new = False
            for position, item in enumerate(items):
                result = self._item(item, f"{url} item {position + 1}", fingerprints, seen)
                anything_new |= not isinstance(result, Unchanged)
                if result is not None:
                    yield result
            following = self._next(answer, url, number)
            resume = None if url == resume else resume
            if not items or (not anything_new and resume is None) or following is None:
                break
            url = following
        for page_url, headers in read:  # the walk ended well: these may answer 304 next time
            self.fetcher.remember(page_url, headers)
        if self.failed is not None:
            self.failed.walk_ended(first)
        yield ScopeRead(self.url, first)

    def probe(self) -> tuple[int, str | None, list[ItemProblem]]:
        """For `publisher check`: the first page only; (items, the first title, problems)."""
        url = self._page_url(1)
        try:
            items = self._items(url, self._answer(url, self.fetcher.get(url, conditional=False)))
        except RunOutOfTime:
            raise
        except SourceError as exc:  # the list URL fails, as a build would say
            raise PartFailed(ScopeRead(self.url, url, exc.message, exc.hint)) from exc
        results = [self._item(item, f"{url} item {n + 1}", {}, set()) for n, item in enumerate(items)]
        return len(items), self.first_title, [r for r in results if isinstance(r, ItemProblem)]

    def committed(self) -> None:
        self.fetcher.commit()
        if self.failed is not None:
            self.failed.commit()

    def _answer(self, url: str, page: Page) -> Any:
        try:
            charset = _charset(page.headers.get("Content-Type", ""))
            try:
                text = page.content.decode(charset, errors="replace")
            except LookupError:  # a charset Python does not know (utf8mb4, say): UTF-8
                text = page.content.decode("utf-8", errors="replace")
            return json.loads(text.removeprefix("\ufeff"))
        except ValueError as exc:
            raise SourceError(f"{url}: the answer is not JSON ({exc})", "check the API URL") from exc

    def _items(self, url: str, answer: Any) -> list[Any]:
        items = pick(answer, self.fields.list) if self.fields.list else answer
        if not isinstance(items, list):
            raise SourceError(
                f"{url}: `{self.fields.list}` is not a list in the answer",
                "check [sources.fields] list (a dotted path such as data.items)",
            )
        return items

    def _page_url(self, number: int) -> str:
        kind = self.paging.kind
        if kind == "offset":
            return self.url.replace("{offset}", str((number - 1) * self.paging.page_size))
        return self.url.replace("{page}", str(number))

    def _next(self, answer: Any, url: str, number: int) -> str | None:
        kind = self.paging.kind
        if kind in ("page", "offset"):
            return self._page_url(number + 1)
        if kind == "next" and self.paging.next:
            following = pick(answer, self.paging.next)
            return urljoin(url, following) if isinstance(following, str) and following else None
        return None

    def _item(self, item: Any, where: str, fingerprints: Mapping[str, str], seen: set[str]) -> Fetched | None:
        f = self.fields
        key = _text(pick(item, f.id))
        title = _text(pick(item, f.title))
        if not key or not title:
            hint = f"each item needs `{f.id}` and `{f.title}`: check [sources.fields]"
            return ItemProblem(key or where, where, "has no id or no title", hint)
        if key in seen:
            return None
        seen.add(key)
        fingerprint = hashlib.sha256(json.dumps(item, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]
        if fingerprints.get(key) == fingerprint:
            return Unchanged((key,))
        published = parse_date(pick(item, f.date), self.zone)
        if published is None:
            hint = f"`{f.date}` must be an ISO 8601 date, `YYYY-MM-DD HH:MM[:SS]` or Unix seconds"
            return ItemProblem(key, where, f"no readable date at `{f.date}`", hint)
        category = _text(pick(item, f.category)) if f.category else ""
        self.count += 1
        self.first_title = self.first_title or title
        return SourceItem(
            source=self.name,
            key=key,
            title=title,
            content=_text(pick(item, f.body)),
            published=published,
            categories=(category,) if category else (),
            location=where,
            url=_text(pick(item, f.url)) or None if f.url else None,
            author=_text(pick(item, f.author)) or None if f.author else None,
            summary=_text(pick(item, f.summary)) or None if f.summary else None,
            fingerprint=fingerprint,
            default_category=self.category,
        )


def pick(value: Any, path: str | None) -> Any:
    """`data.items.0.title` out of nested dicts and lists; None where the path leads nowhere."""
    if not path:
        return value
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def parse_date(value: Any, zone: tzinfo) -> datetime | None:
    """ISO 8601 (with or without a zone: without, the site's), `YYYY-MM-DD HH:MM[:SS]`, or Unix
    seconds (milliseconds too)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("/", "-")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _text(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value).strip()


def _charset(content_type: str) -> str:
    for part in content_type.split(";"):
        name, _, charset = part.strip().partition("=")
        if name.lower() == "charset" and charset:
            return charset.strip("\"'")
    return "utf-8"
