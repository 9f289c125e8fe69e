"""The output folder's pages: index.html (every feed, with autodiscovery), feeds.opml, and each
category's page (`<slug>/index.html`: its latest articles and how to subscribe). Pure renderers.

index.html and feeds.opml show no article data, so adding an article rewrites only the feeds it
is in and their categories' pages. Each renders in an edition (publisher.editions) given the
site, links and categories already in its script.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

from .editions import Edition, ScriptLink
from .feeds import FeedLinks, feed_home, feed_title
from .model import Article, Category, FeedFormat, FeedSpec, Site
from .theme import Theme

LABELS = {FeedFormat.RSS: "RSS", FeedFormat.ATOM: "Atom", FeedFormat.JSON: "JSON Feed"}


@dataclass(frozen=True, slots=True)
class FeedLink:
    title: str
    label: str
    url: str
    media_type: str


def _links(site: Site, links: FeedLinks, scope: Category | None) -> list[FeedLink]:
    out = []
    for fmt in FeedFormat:
        spec = FeedSpec(fmt, scope)
        out.append(FeedLink(feed_title(spec, site), LABELS[fmt], links.of(spec.path), fmt.media_type))
    return out


def category_page(category: Category) -> str:
    """A category's page under the output folder: a folder, so any static host serves it."""
    return f"{category.slug}/"


def render_index(
    site: Site,
    links: FeedLinks,
    categories: Sequence[Category],
    theme: Theme,
    subscribe_url: str | None = None,
    edition: Edition | None = None,
    scripts: Sequence[ScriptLink] = (),
) -> bytes:
    """index.html: every feed, each category's page; `scripts` the same page in each edition."""
    t = theme.messages(site.language)["index"]
    t = edition.words(t) if edition else t
    rows = [{"name": t["site"], "description": site.description, "feeds": _links(site, links, None), "page": ""}]
    rows += [
        {"name": c.name, "description": c.description, "feeds": _links(site, links, c),
         "page": links.of(category_page(c))}
        for c in categories
    ]  # fmt: skip
    feeds = [feed for row in rows for feed in row["feeds"]]
    html = theme.environment.get_template("index.html.j2").render(
        site=site, t=t, theme=theme.context(), rows=rows, feeds=feeds, opml_url=links.of("feeds.opml"),
        subscribe_url=subscribe_url, scripts=scripts,
    )  # fmt: skip
    return html.encode("utf-8")


@dataclass(frozen=True, slots=True)
class PageItem:
    """One article as a category's page lists it."""

    title: str
    url: str | None
    date: str  # the publication day in the site's zone, as readers read it
    iso: str  # the same instant for <time datetime>
    summary: str


def render_category(
    site: Site,
    links: FeedLinks,
    category: Category,
    articles: Sequence[Article],
    theme: Theme,
    subscribe_url: str | None = None,
    edition: Edition | None = None,
    scripts: Sequence[ScriptLink] = (),
) -> bytes:
    """`<slug>/index.html`: the category's latest articles (as its feeds have them, newest first)
    and its feeds' URLs to copy into a reader, with autodiscovery links."""
    t = theme.messages(site.language)["category"]
    t = edition.words(t) if edition else t
    zone = ZoneInfo(site.timezone)
    items = []
    for a in articles:
        when = a.published.astimezone(zone)
        items.append(PageItem(a.title, a.url, when.strftime("%Y-%m-%d"), when.isoformat(), a.summary))
    html = theme.environment.get_template("category.html.j2").render(
        site=site, t=t, theme=theme.context(), category=category, items=items,
        feeds=_links(site, links, category), index_url=links.of(""), subscribe_url=subscribe_url, scripts=scripts,
    )  # fmt: skip
    return html.encode("utf-8")


def render_opml(site: Site, links: FeedLinks, categories: Sequence[Category]) -> bytes:
    """OPML 2.0: the site feed, then a folder holding every category feed (RSS)."""
    opml = ET.Element("opml", version="2.0")
    head = ET.SubElement(opml, "head")
    ET.SubElement(head, "title").text = feed_title(FeedSpec(FeedFormat.RSS), site)
    ET.SubElement(head, "ownerName").text = site.author or site.title
    body = ET.SubElement(opml, "body")

    def outline(parent: ET.Element, scope: Category | None) -> None:
        spec = FeedSpec(FeedFormat.RSS, scope)
        title = feed_title(spec, site)
        ET.SubElement(parent, "outline", type="rss", text=title, title=title,
                      xmlUrl=links.of(spec.path), htmlUrl=feed_home(spec, site), language=site.language)  # fmt: skip

    outline(body, None)
    folder = ET.SubElement(body, "outline", text=site.title, title=site.title)
    for category in categories:
        outline(folder, category)
    ET.indent(opml, space="  ")
    xml = ET.tostring(opml, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{xml}\n'.encode()
