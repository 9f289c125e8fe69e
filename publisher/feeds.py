"""Feeds: pure renderers (spec, site, articles -> bytes) and write_if_changed() at the edge."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from . import __version__
from .atomic import write_atomically
from .errors import OutputError
from .model import Article, Category, FeedFormat, FeedSpec, Site

GENERATOR = "publisher"
GENERATOR_URI = "https://github.com/publisher-feeds/publisher"
FEED_FILES = frozenset(fmt.value for fmt in FeedFormat)  # a feed's file name, in any folder of the output
# An empty feed still needs an `updated`; a fixed instant keeps its bytes stable.
EMPTY_FEED_UPDATED = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class FeedLinks:
    """Where the output folder is served, and the WebSub hubs its feeds name (`[websub] hubs`)."""

    base_url: str  # the URL of the output folder, no trailing slash
    hubs: tuple[str, ...] = ()  # each feed carries a `rel="hub"` link to each (publisher.websub pings them)

    def of(self, path: str) -> str:
        return f"{self.base_url}/{path}"


def feed_title(spec: FeedSpec, site: Site) -> str:
    return f"{spec.category.name} - {site.title}" if spec.category else site.title


def feed_home(spec: FeedSpec, site: Site) -> str:
    """The web page a feed stands for: its category's page when configured, else the site."""
    return spec.category.url if spec.category and spec.category.url else site.url + "/"


def render_feed(
    spec: FeedSpec,
    site: Site,
    links: FeedLinks,
    articles: Sequence[Article],
    names: dict[str, str],
    pages: Mapping[str, str] | None = None,
) -> bytes:
    """The bytes of one feed. Same inputs, same bytes: no clock is read here.

    `articles` come newest first; `names` maps category slugs to display names, `pages` to the
    category's page on the site (an RSS `<category domain>` and Atom `scheme` point there, and
    are left out for a category without one: a URL in them should lead somewhere).
    """
    if spec.format is FeedFormat.JSON:
        return _json_feed(spec, site, links, articles, names)
    return _xml_feed(spec, site, links, articles, names, pages or {})


def render_feeds(
    site: Site, links: FeedLinks, categories: Sequence[Category], scope: Category | None, articles: Sequence[Article]
) -> list[tuple[str, bytes]]:
    """(path, bytes) of each format's feed of `scope` (None: the whole site), from its articles."""
    names = {c.slug: c.name for c in categories}
    pages = {c.slug: c.url for c in categories if c.url}
    out = []
    for fmt in FeedFormat:
        spec = FeedSpec(fmt, scope)
        out.append((spec.path, render_feed(spec, site, links, articles, names, pages)))
    return out


def _updated(articles: Sequence[Article]) -> datetime:
    return max((a.updated for a in articles), default=EMPTY_FEED_UPDATED)


def _description(spec: FeedSpec, site: Site) -> str:
    if spec.category:
        return spec.category.description or f"{site.title}: {spec.category.name}"
    return site.description or site.title


def _xml_feed(
    spec: FeedSpec,
    site: Site,
    links: FeedLinks,
    articles: Sequence[Article],
    names: dict[str, str],
    pages: Mapping[str, str],
) -> bytes:
    from feedgen.feed import FeedGenerator  # here, not at the top: 0.1 s of imports an unchanged build skips

    zone = ZoneInfo(site.timezone)
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    self_url = links.of(spec.path)
    fg.id(self_url)
    fg.title(feed_title(spec, site))
    fg.description(_description(spec, site))
    if spec.format is FeedFormat.ATOM:
        fg.subtitle(_description(spec, site))
    # self first: feedgen's RSS <link> is the last link added, and it must be the site
    fg.link(href=self_url, rel="self", type=spec.format.media_type)
    if links.hubs:
        if spec.format is FeedFormat.ATOM:
            fg.link([{"href": hub, "rel": "hub"} for hub in links.hubs])
        else:  # feedgen writes only the self atom:link into RSS: the extension adds the hubs'
            fg.register_extension("websub", _HubLinks, atom=False, rss=True)
            fg.websub.hubs = links.hubs
    fg.link(href=feed_home(spec, site), rel="alternate", type="text/html")
    fg.language(site.language)
    fg.author(name=site.author or site.title)
    fg.generator(GENERATOR, version=__version__, uri=GENERATOR_URI)
    updated = _updated(articles).astimezone(zone)
    fg.updated(updated)
    fg.lastBuildDate(updated)
    fg.ttl(60)
    for article in articles:
        fe = fg.add_entry(order="append")  # feedgen prepends by default, reversing our order
        fe.id(article.guid)
        fe.title(article.title)
        if article.url:
            fe.link(href=article.url, rel="alternate")
        fe.published(article.published.astimezone(zone))
        fe.updated(article.updated.astimezone(zone))
        summary = article.summary or article.title
        # RSS readers read <description> as HTML; the summary is plain text, so escape it there
        # (Atom's <summary> is typed text already).
        fe.summary(html.escape(summary, quote=False) if spec.format is FeedFormat.RSS else summary)
        fe.content(article.content_html or "<p></p>", type="html")
        if article.author:
            if spec.format is FeedFormat.ATOM:
                fe.author(name=article.author)
            else:
                fe.dc.dc_creator(article.author)
        for slug in article.categories:
            fe.category(term=slug, label=names.get(slug, slug), scheme=pages.get(slug) or None)
    if spec.format is FeedFormat.ATOM:
        return fg.atom_str(pretty=True, encoding="UTF-8", xml_declaration=True)  # type: ignore[no-any-return]
    return fg.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)  # type: ignore[no-any-return]


class _HubLinks:
    """A feedgen extension: RSS 2.0's `<atom:link rel="hub">`s, after the self link (the W3C
    validator and WebSub read them in the atom namespace, as they read the self link)."""

    hubs: tuple[str, ...] = ()

    def extend_ns(self) -> dict[str, str]:
        return {}

    def extend_rss(self, feed: Any) -> Any:
        atom_link = "{http://www.w3.org/2005/Atom}link"
        after = next(link for link in feed[0].iter(atom_link) if link.get("rel") == "self")
        for hub in reversed(self.hubs):
            link = after.makeelement(atom_link, {"href": hub, "rel": "hub"})
            after.addnext(link)
        return feed

    def extend_atom(self, feed: Any) -> Any:
        return feed


def _json_feed(
    spec: FeedSpec, site: Site, links: FeedLinks, articles: Sequence[Article], names: dict[str, str]
) -> bytes:
    """JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/), written directly."""
    zone = ZoneInfo(site.timezone)
    items = []
    for a in articles:
        item: dict[str, object] = {"id": a.guid}
        if a.url:
            item["url"] = a.url
        item["title"] = a.title
        item["content_html"] = a.content_html
        item["summary"] = a.summary
        if a.image:
            item["image"] = a.image
        item["date_published"] = a.published.astimezone(zone).isoformat()
        item["date_modified"] = a.updated.astimezone(zone).isoformat()
        if a.author:
            item["authors"] = [{"name": a.author}]
        tags = [names.get(s, s) for s in a.categories] + list(a.tags)
        if tags:
            item["tags"] = list(dict.fromkeys(tags))
        items.append(item)
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": feed_title(spec, site),
        "home_page_url": feed_home(spec, site),
        "feed_url": links.of(spec.path),
        **({"hubs": [{"type": "WebSub", "url": hub} for hub in links.hubs]} if links.hubs else {}),
        "description": _description(spec, site),
        "language": site.language,
        "authors": [{"name": site.author or site.title}],
        "items": items,
    }
    return (json.dumps(feed, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


# --- the edge: writing files -------------------------------------------------------------------


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write `data` to `path` via a temp file and rename, only when the bytes differ.

    Unchanged files keep their mtime, so ETag and Last-Modified stay stable for readers. A
    full disk (or any refusal) is an OutputError naming the file; the file stays as it was.
    """
    kept = "the files written before keep their last good content"
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except (FileNotFoundError, NotADirectoryError):  # not there (a file where its folder goes: said below)
        pass
    except OSError as exc:  # a folder where the file goes, a file that cannot be read
        raise OutputError(path, exc, kept) from exc
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data, 0o644)  # served by nginx: readable by all
    except OSError as exc:
        raise OutputError(path, exc, kept) from exc
    return True
