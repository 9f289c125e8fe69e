"""The output folder's index.html (every feed, with autodiscovery) and feeds.opml. Pure renderers.

Neither page shows article data, so adding an article rewrites only the feeds it is in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from .feeds import FeedLinks, feed_home, feed_title
from .model import Category, FeedFormat, FeedSpec, Site
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


def render_index(
    site: Site,
    links: FeedLinks,
    categories: Sequence[Category],
    theme: Theme,
    subscribe_url: str | None = None,
) -> bytes:
    t = theme.messages(site.language)["index"]
    rows = [{"name": t["site"], "description": site.description, "feeds": _links(site, links, None)}]
    rows += [{"name": c.name, "description": c.description, "feeds": _links(site, links, c)} for c in categories]
    feeds = [feed for row in rows for feed in row["feeds"]]
    html = theme.environment.get_template("index.html.j2").render(
        site=site, t=t, theme=theme.context(), rows=rows, feeds=feeds, opml_url=links.of("feeds.opml"),
        subscribe_url=subscribe_url,
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
