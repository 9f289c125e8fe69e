"""The `html` source: the site's own pages, read the way its editors see them.

Category list pages (one or more URLs per category, followed to the next page by a selector or
a URL pattern, up to `max_pages`) give the article links; each article page gives title, date,
source, author and body by CSS selectors, with regular expressions for the meta line
(`来源:… 日期:2023-12-04 点击:…`). Without a body selector the main text is found with
readability. Dates without a zone are in the site's zone.

Incremental: an article already stored is not fetched again (unless `recheck_days` says it is
time, and then with a conditional GET), and the walk through a category's list pages stops at
the first page that brings nothing new. List pages show recent articles only, so the source is
never `complete`: an article that drops off the lists is not withdrawn.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urldefrag, urljoin
from zoneinfo import ZoneInfo

from ..errors import SourceError
from ..model import ItemProblem, SourceItem, Unchanged
from . import Fetched
from .http import Fetcher, RunOutOfTime

DATE_PATTERNS = (
    (re.compile(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:\s*(\d{1,2})[:：](\d{2})(?:[:：](\d{2}))?)?"), None),
)


@dataclass(frozen=True)
class ListRules:
    pages: Mapping[str, Sequence[str]]  # category (name or slug) -> first list pages
    links: str  # CSS selector of article links on a list page
    next: str | None = None  # CSS selector of the link to the next list page
    url_pattern: str | None = None  # or: list page URLs with {page} (2, 3, ...)
    max_pages: int = 5


@dataclass(frozen=True)
class ArticleRules:
    title: str = "h1"
    body: str | None = None  # None: readability finds the main text
    meta: str | None = None  # where date and source are read from (default: the whole page)
    date: str | None = None  # a regex whose first group is the date (default: any date)
    date_format: str | None = None  # strptime format of that group (default: common forms)
    source: str | None = None  # a regex whose first group is the source, shown as author
    author: str | None = None  # a CSS selector of the author


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
    ) -> None:
        self.name, self.lists, self.rules, self.fetcher = name, lists, article, fetcher
        self.zone, self.recheck_days = ZoneInfo(timezone), recheck_days
        self.today = today or datetime.now(self.zone).date()
        self.first_title: str | None = None  # for `publisher check`
        self.count = 0
        self.warnings: list[ItemProblem] = []  # found while walking list pages

    @property
    def url(self) -> str:
        return next(iter(u for urls in self.lists.pages.values() for u in urls), "")

    def fetch(self, fingerprints: Mapping[str, str]) -> Iterator[Fetched]:
        seen: set[str] = set()
        for category, first_pages in self.lists.pages.items():
            for first in first_pages:
                for url in self._article_links(first, fingerprints, seen):
                    if url in seen:  # listed under two categories: the first one keeps it
                        continue
                    seen.add(url)
                    known = fingerprints.get(url)
                    if known is not None and not self._due(known):
                        yield Unchanged((url,))
                        continue
                    yield self._article(url, category, conditional=known is not None)
                yield from self.warnings
                self.warnings.clear()

    def probe(self) -> tuple[int, str | None, list[ItemProblem]]:
        """For `publisher check`: each category's first list page, and the first article of the
        first one (so the article selectors are tried too); (links, the first title, problems)."""
        links, first_article, problems = 0, None, []
        for category, first_pages in self.lists.pages.items():
            for first in first_pages:
                page = self.fetcher.get(first, conditional=False)
                tree = _parse(page.text(), page.url)
                found = [urljoin(page.url, a.get("href", "")) for a in tree.cssselect(self.lists.links)]
                if not found:
                    raise SourceError(f"{first}: no article links match `{self.lists.links}`",
                                      "check [sources.list] links")  # fmt: skip
                links += len(found)
                first_article = first_article or (found[0], category)
        if first_article is not None:
            result = self._article(first_article[0], first_article[1], conditional=False)
            if isinstance(result, ItemProblem):
                problems.append(result)
        return links, self.first_title, problems

    def committed(self) -> None:
        self.fetcher.commit()

    # --- list pages ------------------------------------------------------------------------

    def _article_links(self, first: str, known: Mapping[str, str], seen: set[str]) -> Iterator[str]:
        url: str | None = first
        visited: set[str] = set()
        for number in range(1, self.lists.max_pages + 1):
            if url is None:
                return
            if url in visited:  # a "next" link back to a page already read: a loop, not more news
                self.warnings.append(
                    ItemProblem(url, url, "the next-page links loop back", "check [sources.list] next")
                )
                return
            visited.add(url)
            page = self.fetcher.get(url, conditional=False)
            tree = _parse(page.text(), page.url)
            if tree is None:
                raise SourceError(f"{url}: the list page is empty or not HTML", "check the URL in [sources.list] pages")
            links = [_clean_url(urljoin(page.url, a.get("href", ""))) for a in tree.cssselect(self.lists.links)]
            links = [link for link in links if link.startswith(("http://", "https://"))]
            if not links and number == 1:
                raise SourceError(
                    f"{url}: no article links match `{self.lists.links}`",
                    "check [sources.list] links (a CSS selector of the <a> elements on the list page)",
                )
            fresh = [link for link in links if link not in known and link not in seen]
            yield from dict.fromkeys(links)
            if not fresh:  # nothing new on this page: older pages hold nothing new either
                return
            url = self._next(tree, page.url, number)
        if url is not None:  # still new links and a next page: an endless chain, or a long absence
            self.warnings.append(
                ItemProblem(
                    first, first, f"stopped after {self.lists.max_pages} list pages that were all new (next: {url})",
                    "raise [sources.list] max_pages to read further back once, or check the next-page selector",
                )
            )  # fmt: skip

    def _next(self, tree: Any, page_url: str, number: int) -> str | None:
        if self.lists.url_pattern:  # relative to the category's list page, so one pattern serves all
            return urljoin(page_url, self.lists.url_pattern.replace("{page}", str(number + 1)))
        if self.lists.next:
            found = tree.cssselect(self.lists.next)
            if found and found[0].get("href"):
                return _clean_url(urljoin(page_url, found[0].get("href")))
        return None

    # --- article pages ---------------------------------------------------------------------

    def _due(self, fingerprint: str) -> bool:
        """Stored articles are read again every `recheck_days` days (0: never)."""
        if not self.recheck_days:
            return False
        try:
            read = date.fromisoformat(fingerprint.removeprefix("read:"))
        except ValueError:
            return True
        return self.today - read >= timedelta(days=self.recheck_days)

    def _article(self, url: str, category: str, conditional: bool) -> Fetched:
        try:
            page = self.fetcher.get(url, conditional=conditional, remember=self.recheck_days > 0)
        except RunOutOfTime:  # the whole source stops
            raise
        except SourceError as exc:  # one broken article (or on a host not allowed): skipped, the others go on
            return ItemProblem(url, url, exc.message, exc.hint)
        if page.not_modified:
            return Unchanged((url,))
        text = page.text()
        tree = _parse(text, page.url)
        if tree is None:
            return ItemProblem(url, url, "the page is empty or not HTML", "check that the link leads to the article")
        rules = self.rules
        title = _text(tree, rules.title)
        if not title:
            return ItemProblem(url, url, f"no title matches `{rules.title}`", "check [sources.article] title")
        if rules.body:
            found = tree.cssselect(rules.body)
            if not found:
                return ItemProblem(url, url, f"no body matches `{rules.body}`", "check [sources.article] body")
            body = "".join(_outer_html(node) for node in found)
        else:
            from readability import Document

            try:
                body = Document(text).summary(html_partial=True)
            except Exception as exc:  # noqa: BLE001 - readability raises its own and lxml's errors
                hint = "set [sources.article] body to the CSS selector of the article's text"
                return ItemProblem(url, url, f"no main text found ({exc.__class__.__name__})", hint)
        meta = _text(tree, rules.meta) if rules.meta else tree.text_content()
        published = self._date(meta)
        if published is None:
            hint = "set [sources.article] date (a regex around the date) and meta (where it is)"
            return ItemProblem(url, url, "no date found", hint)
        source = _group(rules.source, meta)
        author = _text(tree, rules.author) if rules.author else None
        self.count += 1
        self.first_title = self.first_title or title
        return SourceItem(
            source=self.name,
            key=url,
            title=title,
            content=body,
            published=published,
            location=url,
            url=url,
            author=author or source,
            fingerprint=f"read:{self.today.isoformat()}",
            default_category=category,
        )

    def _date(self, meta: str) -> datetime | None:
        raw = _group(self.rules.date, meta) if self.rules.date else None
        if raw and self.rules.date_format:
            try:
                parsed = datetime.strptime(raw.strip(), self.rules.date_format)
            except ValueError:
                return None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=self.zone)
        match = DATE_PATTERNS[0][0].search(raw or meta)
        if not match:
            return None
        year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
        try:
            return datetime(year, month, day, hour, minute, second, tzinfo=self.zone)
        except ValueError:
            return None


def _parse(text: str, url: str) -> Any:
    """The page's tree; None for an empty page or one lxml cannot read."""
    import lxml.etree
    import lxml.html

    # lxml refuses a str that still declares an encoding (`<?xml ... encoding=...?>`)
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text or "")
    if not text.strip():
        return None
    try:
        return lxml.html.document_fromstring(text, base_url=url)
    except (lxml.etree.ParserError, ValueError):
        return None


def _text(tree: Any, selector: str | None) -> str:
    if not selector:
        return ""
    found = tree.cssselect(selector)
    return " ".join(" ".join(node.text_content().split()) for node in found).strip()


def _outer_html(node: Any) -> str:
    import lxml.html

    return str(lxml.html.tostring(node, encoding="unicode"))


def _group(pattern: str | None, text: str) -> str | None:
    if not pattern:
        return None
    match = re.search(pattern, text)
    if not match:
        return None
    return (match.group(1) if match.groups() else match.group(0)).strip() or None


def _clean_url(url: str) -> str:
    return urldefrag(url)[0]
