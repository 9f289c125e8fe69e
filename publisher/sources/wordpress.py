"""The `wordpress` source: the WordPress REST API (`/wp-json/wp/v2/posts`, `_embed`).

Posts are asked for newest-modified first, `modified_after` the newest modification already
stored (WordPress 5.7+; older sites ignore it, and the walk still stops at the first page with
nothing new), paged by `X-WP-TotalPages` or `Link: rel="next"` until WordPress answers
`rest_post_invalid_page_number`. The first page is asked for with its ETag/Last-Modified: a 304
there reads nothing. A page that fails is reported (a `ScopeRead` for the site) and what the
pages before it gave is stored. `_embed` brings authors, featured images and terms
in the same answer. A post's categories are mapped to ours: first by the `categories` table in
the config (WordPress slug -> our name or slug), then by slug or name when one of ours matches.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from requests.utils import parse_header_links

from ..errors import SourceError
from ..model import ItemProblem, ScopeRead, SourceItem, Unchanged
from . import Fetched, PartFailed
from .failed_items import FailedItems
from .http import Fetcher, Page, RunOutOfTime, status_hint
from .json_api import parse_date, pick

PER_PAGE = 50
# Statuses whose JSON answer WordPress explains (`code`, `message`): read, not failed on at once.
_SAYS_WHY = (400, 401, 403, 404)


class WordPressSource:
    complete = False  # posts are asked for since the last modification, not all of them
    remote = True

    def __init__(
        self,
        name: str,
        url: str,
        mapping: Mapping[str, str],
        category: str | None,
        fetcher: Fetcher,
        known: frozenset[str] = frozenset(),
        max_pages: int = 10,
        failed: FailedItems | None = None,
    ) -> None:
        self.known = known  # our category names and slugs
        self.name, self.base = name, url.rstrip("/")
        self.mapping, self.category, self.fetcher, self.max_pages = dict(mapping), category, fetcher, max_pages
        self.failed = failed  # only its walks that failed past page 1 are kept there
        self.first_title: str | None = None
        self.count = 0

    @property
    def url(self) -> str:
        return f"{self.base}/wp-json/wp/v2/posts"

    def fetch(self, fingerprints: Mapping[str, str]) -> Iterator[Fetched]:
        return self._walk(fingerprints, self.max_pages)

    def _walk(self, fingerprints: Mapping[str, str], max_pages: int) -> Iterator[Fetched]:
        """The posts page by page, then one `ScopeRead` for the site: a page that fails ends
        the walk there, reported with its URL, and what the pages before it gave is kept."""
        query: dict[str, str | int] = {"per_page": PER_PAGE, "_embed": 1, "orderby": "modified", "order": "desc"}
        if self.failed is not None:
            self.failed.keep_walks_from({self.url})  # a walk from another site's URL would never resume
        # The last walk failed at this page: read on to it, from the newest post, whatever comes before.
        resume = _page_number(self.failed.walk_resume(self.url)) if self.failed is not None else None
        newest = max(fingerprints.values(), default="") if resume is None else ""
        if newest:
            # WordPress compares modified_after with the site's local time, we store GMT: a day's
            # margin covers every zone; what comes twice is Unchanged.
            after = parse_date(newest, UTC)
            if after is not None:
                query["modified_after"] = (after - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
        first = self._page_url(query, 1)
        seen: set[str] = set()
        validators: Mapping[str, str] = {}
        for number in range(1, max_pages + 1):
            url = self._page_url(query, number)
            try:
                # Only the first page is asked for conditionally (with nothing stored, all is read):
                # a 304 there means no post was modified since, and its URL is the one asked again.
                answer = self.fetcher.get(url, conditional=number == 1 and bool(fingerprints) and resume is None,
                                          remember=False, accept=_SAYS_WHY)  # fmt: skip
                posts = None if answer.not_modified else self._posts(url, answer)
            except RunOutOfTime:
                raise
            except SourceError as exc:
                if self.failed is not None and number > 1:
                    self.failed.walk_ended(self.url, url, exc.message)
                yield ScopeRead(self.base, url, exc.message, exc.hint)
                return
            if posts is None:  # not modified, or past the last page
                break
            if number == 1:
                validators = answer.headers
            anything_new = False
            for post in posts:
                key = str(pick(post, "id") or "")
                if key in seen:
                    continue
                seen.add(key)
                result = self._post(post, url, fingerprints)
                anything_new |= not isinstance(result, Unchanged)
                yield result
            reading_on = resume is not None and number < resume
            if not posts or not (anything_new or reading_on) or not _more(answer, number, len(posts)):
                break
        self.fetcher.remember(first, validators)  # the walk ended well; kept once its posts are stored
        if self.failed is not None:
            self.failed.walk_ended(self.url)
        yield ScopeRead(self.base, first)

    def _page_url(self, query: Mapping[str, str | int], number: int) -> str:
        return f"{self.url}?{urlencode({**query, 'page': number})}"

    def _posts(self, url: str, answer: Page) -> list[Any] | None:
        """The page's posts; None past the last page (WordPress's 400
        `rest_post_invalid_page_number`); SourceError for anything but a list of posts."""
        try:
            posts = json.loads(answer.content.decode("utf-8-sig", errors="replace"))
        except ValueError as exc:
            if answer.status >= 400:
                raise SourceError(f"{url}: HTTP {answer.status}", status_hint(answer.status)) from exc
            raise SourceError(f"{url}: not JSON ({exc})", "is this a WordPress site with the REST API on?") from exc
        if isinstance(posts, dict) and posts.get("code") == "rest_post_invalid_page_number":
            return None
        if answer.status >= 400:
            said = (posts.get("message") or posts.get("code")) if isinstance(posts, dict) else None
            raise SourceError(
                f"{url}: HTTP {answer.status}" + (f" ({said})" if said else ""), status_hint(answer.status)
            )
        if not isinstance(posts, list):
            raise SourceError(f"{url}: the answer is not a list of posts", "is `url` the WordPress site's address?")
        return posts

    def probe(self) -> tuple[int, str | None, list[ItemProblem]]:
        """For `publisher check`: the first page of posts; (posts, the first title, problems)."""
        results = list(self._walk({}, 1))
        for result in results:
            if isinstance(result, ScopeRead) and result.error is not None:
                raise PartFailed(result)  # the site's page fails, as a build would say
        return self.count, self.first_title, [r for r in results if isinstance(r, ItemProblem)]

    def committed(self) -> None:
        self.fetcher.commit()
        if self.failed is not None:
            self.failed.commit()

    def _post(self, post: Any, where: str, fingerprints: Mapping[str, str]) -> Fetched:
        key = str(pick(post, "id") or "")
        title = _rendered(pick(post, "title.rendered"))
        if not key or not title:
            return ItemProblem(key or where, where, "a post without id or title", "")
        modified = str(pick(post, "modified_gmt") or pick(post, "modified") or "")
        if key in fingerprints and fingerprints[key] == modified:
            return Unchanged((key,))
        published = parse_date(pick(post, "date_gmt"), UTC) or parse_date(pick(post, "date"), UTC)
        if published is None:
            return ItemProblem(key, where, "a post without a readable date", "")
        self.count += 1
        self.first_title = self.first_title or title
        return SourceItem(
            source=self.name,
            key=key,
            title=title,
            content=str(pick(post, "content.rendered") or ""),
            published=published,
            categories=self._categories(post),
            location=str(pick(post, "link") or where),
            url=str(pick(post, "link") or "") or None,
            author=_rendered(pick(post, "_embedded.author.0.name")) or None,
            summary=None,
            image=str(pick(post, "_embedded.wp:featuredmedia.0.source_url") or "") or None,
            updated=parse_date(modified, UTC) if modified else None,
            fingerprint=modified,
            default_category=self.category,
        )

    def _categories(self, post: Any) -> tuple[str, ...]:
        """Ours, from the post's WordPress categories: the config's table first, then the same
        slug or name. Unmapped ones are left out (the source's `category` catches the rest)."""
        terms = pick(post, "_embedded.wp:term.0") or []
        ours = []
        for term in terms if isinstance(terms, list) else []:
            if not isinstance(term, dict) or term.get("taxonomy", "category") != "category":
                continue
            slug, name = str(term.get("slug", "")), _rendered(term.get("name"))
            mapped = self.mapping.get(slug) or self.mapping.get(name)
            if mapped:
                ours.append(mapped)
            elif slug in self.known or name in self.known:
                ours.append(slug if slug in self.known else name)
        return tuple(dict.fromkeys(ours))


def _page_number(url: str | None) -> int | None:
    """The `page` a posts URL asks for (None: no URL)."""
    if url is None:
        return None
    pages = parse_qs(urlsplit(url).query).get("page", ["1"])
    return int(pages[0]) if pages[0].isdigit() else 1


def _more(answer: Page, number: int, count: int) -> bool:
    """Whether there is a page after page `number` of `count` posts. `X-WP-TotalPages` says so,
    else a `Link: <...>; rel="next"`; without either, a full page. A short page is not the end
    when the headers say there are more: many hosts cap `per_page` below what was asked. The
    next page is asked for with our own query (the Link may name the site by an internal host)."""
    total = answer.headers.get("X-WP-TotalPages", "").strip()
    if total.isdigit():
        return number < int(total)
    links = parse_header_links(answer.headers.get("Link", ""))
    if any("next" in link.get("rel", "").split() for link in links):
        return True
    return count >= PER_PAGE


def _rendered(value: Any) -> str:
    """WordPress's rendered strings carry HTML entities (&#8211;) and sometimes tags."""
    import html
    import re

    if not isinstance(value, str):
        return ""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", value)).split())
