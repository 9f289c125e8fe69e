"""The `html` source: the site's own pages, read the way its editors see them.

Category list pages (one or more URLs per category, followed to the next page by a selector or
a URL pattern, up to `max_pages`; each category may override these) give the article links;
each article page gives title, date, source and author by CSS selectors, with regular
expressions for the meta line (html_article.py). Dates without a zone are in the site's zone.

Each category is read on its own: a list page that fails, or whose links selector matches
nothing, is reported as that category's `ScopeRead` with the URL and a hint, while the other
categories ingest. Only running out of the source's time stops the whole source.

Incremental and polite: list pages are asked for with their validators, and a 304 ends the
category's walk (nothing new there); an article already stored is not fetched again (unless
`recheck_days` says it is time, and then with a conditional GET); an article that failed waits
(`FailedItems`: the next run, then 1 h, 6 h, a day, weekly; a 404 or 410 an hour first) and no
longer counts as new; the walk stops at the first list page that brings nothing new, but a walk
that failed past its first page reads on to that page at the next run. List pages show recent
articles only, so the source is never `complete`: an article that drops off the lists is not
withdrawn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

from ..errors import SourceError
from ..model import ItemProblem, ScopeRead, SourceItem, SourceWarning, Unchanged
from . import Fetched
from .failed_items import WALK, FailedItems
from .html_article import ArticleRead, ArticleRules, clean_url, parse_html, read_article
from .http import Fetcher, RunOutOfTime, host_allowed

if TYPE_CHECKING:
    from .html_probe import Inspection

__all__ = ["ArticleRules", "HtmlSource", "ListRules", "Walk", "no_links", "wrong_next"]

# The text of a link to the next list page, on sites whose pager has no class to select by.
NEXT_TEXT = re.compile(r"^\s*(?:下一?[页頁]|next(?:\s*page)?)\s*[>›»]*\s*$|^\s*[>›»]{1,2}\s*$", re.I)
GONE = frozenset({404, 410})  # a page that is not there (past the last list page; an article removed)


@dataclass(frozen=True)
class Walk:
    """How one category's list pages are read."""

    links: str  # CSS selector of article links on a list page
    next: str | None = None  # CSS selector of the link to the next list page
    url_pattern: str | None = None  # or: list page URLs with {page} (2, 3, ...)
    max_pages: int = 5


@dataclass(frozen=True)
class ListRules:
    pages: Mapping[str, Sequence[str]]  # category (name or slug) -> first list pages
    walk: Walk
    overrides: Mapping[str, Walk] = field(default_factory=dict)  # keyed as in `pages`

    def walk_for(self, category: str) -> Walk:
        return self.overrides.get(category, self.walk)


@dataclass
class ListPage:
    """One list page as read: its distinct article links, and where its next page is."""

    url: str
    matched: int  # elements the links selector matched
    links: list[str]  # distinct, absolute, without fragments
    next_url: str | None
    next_matched: int  # elements the next selector matched (0 without one)
    pager: str | None  # a link that looks like "next page" (its text), when `next` found none
    other_hosts: list[str] = field(default_factory=list)  # article links left out: their host is not the source's


class HtmlSource:
    complete = False  # list pages show the recent articles only
    remote = True

    def __init__(
        self,
        name: str,
        lists: ListRules,
        article: ArticleRules,
        fetcher: Fetcher,
        timezone: str,
        recheck_days: int = 0,
        today: date | None = None,
        convert: Callable[[str], str] = str,
        failed: FailedItems | None = None,
    ) -> None:
        self.name, self.lists, self.rules, self.fetcher = name, lists, article, fetcher
        self.zone, self.recheck_days = ZoneInfo(timezone), recheck_days
        self.today = today or datetime.now(self.zone).date()
        self.convert, self.failed = convert, failed
        self.warnings: list[SourceWarning] = []  # found while walking list pages

    @property
    def url(self) -> str:
        return next(iter(u for urls in self.lists.pages.values() for u in urls), "")

    def fetch(self, fingerprints: Mapping[str, str]) -> Iterator[Fetched]:
        seen: set[str] = set()
        # Nothing stored (a first run, or settings changed and every article is read again), or
        # failed items retried now: list pages are read in full, not answered by a 304.
        conditional = bool(fingerprints) and not self.retrying
        every_category_read = True
        if self.failed is not None:
            self.failed.keep_walks_from({first for firsts in self.lists.pages.values() for first in firsts})
        for category, first_pages in self.lists.pages.items():
            errors: list[ScopeRead] = []
            for first in first_pages:
                error = yield from self._walk(category, first, fingerprints, seen, conditional)
                yield from self.warnings
                self.warnings.clear()
                if error is not None:
                    errors.append(error)
            if not errors:
                yield ScopeRead(category, first_pages[0] if first_pages else "")
            else:
                every_category_read = False
                also = "".join(f"; also {e.url}: {e.error}" for e in errors[1:])
                yield ScopeRead(category, errors[0].url, f"{errors[0].error}{also}", errors[0].hint)
        if self.retrying and every_category_read and self.failed is not None:
            # Every list page read in full shows none of these: no run would ask for them again.
            for key in self.failed.keys():
                if key not in seen and not key.startswith(WALK):
                    self.failed.forget(key)

    @property
    def retrying(self) -> bool:
        """Failed items are retried now (`ingest --retry-failed`): every walk reads its list
        pages in full, up to `max_pages`, to find them."""
        return self.failed is not None and self.failed.retry_now

    def inspect(self) -> Inspection:
        """For `publisher check`: what each category's first list page and one article show."""
        from .html_probe import inspect

        return inspect(self)

    def committed(self) -> None:
        self.fetcher.commit()
        if self.failed is not None:
            self.failed.commit()

    # --- list pages ------------------------------------------------------------------------

    def read_list_page(self, url: str, walk: Walk, number: int, conditional: bool = False) -> ListPage | None:
        """The list page at `url` (page `number` of its walk); None: unchanged since the last
        run (304). SourceError when it cannot be had or is not HTML."""
        page = self.fetcher.get(url, conditional=conditional, remember=True)
        if page.not_modified:
            return None
        tree = parse_html(page.text(), page.url)
        if tree is None:
            raise SourceError(f"{url}: the list page is empty or not HTML", "check the URL in [sources.list] pages")
        found = tree.cssselect(walk.links)
        links = [clean_url(urljoin(page.url, a.get("href") or "")) for a in found]
        links = list(dict.fromkeys(link for link in links if link.startswith(("http://", "https://"))))
        hosts = self.fetcher.hosts
        other_hosts = [link for link in links if hosts is not None and not host_allowed(_host(link), hosts)]
        links = [link for link in links if link not in other_hosts]
        next_url, next_matched, pager = None, 0, None
        if walk.url_pattern:  # relative to the category's list page, so one pattern serves all
            next_url = urljoin(page.url, walk.url_pattern.replace("{page}", str(number + 1)))
        elif walk.next:
            matches = tree.cssselect(walk.next)
            next_matched = len(matches)
            href = next((m.get("href") for m in matches if m.get("href")), None)
            if href:
                next_url = clean_url(urljoin(page.url, href))
            else:
                pager = _pager_link(tree, number)
        return ListPage(url, len(found), links, next_url, next_matched, pager, other_hosts)

    def _walk(
        self, category: str, first: str, known: Mapping[str, str], seen: set[str], conditional: bool
    ) -> Generator[Fetched, None, ScopeRead | None]:
        """Yield the articles of one list URL's pages; return the category's error, if any. A
        walk that failed past its first page is remembered (`FailedItems`, under `WALK` and
        the first page), and the next run reads on to the page that failed, whatever the pages
        before it say (a 304, nothing new), so what that page held is not skipped for good."""
        resume = self.failed.walk_resume(first) if self.failed is not None else None
        error = yield from self._walk_pages(category, first, known, seen, conditional, resume)
        if self.failed is not None and error is None:
            self.failed.walk_ended(first)
        elif self.failed is not None and error is not None:
            self.failed.walk_ended(first, error.url, error.error or "")
        return error

    def _walk_pages(
        self,
        category: str,
        first: str,
        known: Mapping[str, str],
        seen: set[str],
        conditional: bool,
        resume: str | None,
    ) -> Generator[Fetched, None, ScopeRead | None]:
        """The walk itself; `resume`: the page where the last run's walk failed, read again."""
        walk = self.lists.walk_for(category)
        url: str | None = first
        visited: set[str] = set()
        every_page_new = True
        for number in range(1, walk.max_pages + 1):
            if url is None:
                return None
            if url in visited:  # a "next" link back to a page already read: a loop, not more news
                self.warnings.append(SourceWarning(url, "the next-page links loop back", "check [sources.list] next"))
                return None
            visited.add(url)
            try:
                page = self.read_list_page(url, walk, number, conditional and resume is None)
            except RunOutOfTime:  # the whole source stops
                raise
            except SourceError as exc:
                if number > 1 and exc.status in GONE:  # past the last page (url_pattern)
                    return None
                self._forget(visited)  # the next run reads these pages in full, to get further
                return ScopeRead(category, url, exc.message, exc.hint)
            if page is None:  # 304: nothing new on this page, so nothing on older ones either
                return None
            if not page.links and number == 1:
                self._forget(visited)  # a 304 next run must not pass this page off as read
                return no_links(category, url, walk)
            fresh = [link for link in page.links if not self._not_new(link, known, seen)]
            for link in page.links:
                yield from self._link_result(link, category, known, seen)
            resume = None if url == resume else resume
            every_page_new = every_page_new and bool(fresh)
            if not fresh and resume is None and not self.retrying:  # older pages hold nothing new either
                return None
            if page.pager is not None and number < walk.max_pages:
                self.warnings.append(wrong_next(url, walk, page.pager))
            url = page.next_url
        if url is not None and every_page_new:  # still a next page: an endless chain, or a long absence
            self.warnings.append(
                SourceWarning(
                    first, f"stopped after {walk.max_pages} list pages that were all new (next: {url})",
                    "raise [sources.list] max_pages to read further back once, or check the next-page selector",
                )
            )  # fmt: skip
        return None

    def _forget(self, urls: set[str]) -> None:
        """Keep no validators of these list pages, so a 304 does not end the next run's walk
        before the page that failed this time."""
        if self.fetcher.validators is not None:
            for url in urls:
                self.fetcher.validators.pending.pop(url, None)

    def _not_new(self, link: str, known: Mapping[str, str], seen: set[str]) -> bool:
        """Stored, read in this run, or failed before: not a reason to read older list pages."""
        return link in known or link in seen or (self.failed is not None and self.failed.known(link))

    def _link_result(self, url: str, category: str, known: Mapping[str, str], seen: set[str]) -> Iterator[Fetched]:
        """What one article link gives: Unchanged (stored), nothing (failed lately, or listed
        before in this run), or the article read (an item, or the problem that kept it out)."""
        if url in seen:  # listed twice, or under two categories: the first one keeps it
            return
        seen.add(url)
        fingerprint = known.get(url)
        if fingerprint is not None and not self._recheck_due(fingerprint):
            yield Unchanged((url,))
            return
        if self.failed is not None and self.failed.waiting(url):  # failed lately: not asked again yet
            return
        result = self.article(url, category, conditional=fingerprint is not None)
        if self.failed is not None:
            if isinstance(result, ItemProblem):
                self.failed.failed(url, url, result.reason, gone=result.gone)
            else:
                self.failed.succeeded(url)
        yield result

    # --- article pages ---------------------------------------------------------------------

    def _recheck_due(self, fingerprint: str) -> bool:
        """Stored articles are read again every `recheck_days` days (0: never)."""
        if not self.recheck_days:
            return False
        try:
            read = date.fromisoformat(fingerprint.removeprefix("read:"))
        except ValueError:
            return True
        return self.today - read >= timedelta(days=self.recheck_days)

    def article(self, url: str, category: str, conditional: bool) -> SourceItem | Unchanged | ItemProblem:
        read = self.read(url, conditional)
        if isinstance(read, (Unchanged, ItemProblem)):
            return read
        if read.problem is not None:
            return ItemProblem(url, url, *read.problem)
        assert read.published is not None  # no problem: a date was found
        return SourceItem(
            source=self.name,
            key=url,
            title=read.title,
            content=read.body,
            published=read.published,
            location=url,
            url=url,
            author=read.author or read.source,
            fingerprint=f"read:{self.today.isoformat()}",
            default_category=category,
        )

    def read(self, url: str, conditional: bool) -> ArticleRead | Unchanged | ItemProblem:
        """The article page at `url` as the rules read it, Unchanged (304) or why it could not be had."""
        try:
            page = self.fetcher.get(url, conditional=conditional, remember=self.recheck_days > 0)
        except RunOutOfTime:  # the whole source stops
            raise
        except SourceError as exc:  # one broken article (or on a host not allowed): skipped, the others go on
            return ItemProblem(url, url, exc.message, exc.hint, gone=exc.status in GONE)
        if page.not_modified:
            return Unchanged((url,))
        return read_article(page.text(), page.url, self.rules, self.zone, self.convert)


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


def _pager_link(tree: Any, number: int) -> str | None:
    """The text of a link that looks like the way to the next list page ("下一頁", "next", "›",
    or the next page's number), on a page where the `next` selector found none."""
    texts = [
        " ".join(str(link.text_content()).split())
        for link in tree.iter("a")
        if link.get("href") and not link.get("href", "").startswith(("#", "javascript:"))
    ]
    return next((t for t in texts if NEXT_TEXT.match(t)), None) or next(
        (t for t in texts if t == str(number + 1)), None
    )


def no_links(category: str, url: str, walk: Walk) -> ScopeRead:
    """The category's failure when its first list page has no link the `links` selector matches."""
    return ScopeRead(
        category, url, f"no article links match `{walk.links}`",
        "check [sources.list] links (a CSS selector of the <a> elements on the list page), "
        "or give this category its own in [sources.list.overrides]",
    )  # fmt: skip


def wrong_next(url: str, walk: Walk, pager: str) -> SourceWarning:
    """The warning for a `next` selector that found no link on a page that has a pager."""
    return SourceWarning(
        url,
        f"the next-page selector `{walk.next}` matched no link, but the page links to a next page "
        f"(“{pager}”): older list pages are not read",
        f"set [sources.list] next to a selector of that link, e.g. 'a:contains(\"{pager}\")'; see docs/sources.md"
        if not pager.isdigit()
        else "set [sources.list] url_pattern to the list pages' URL with {page}; see docs/sources.md",
    )  # fmt: skip
