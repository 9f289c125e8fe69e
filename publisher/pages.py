"""The output folder's index.html (every feed, with autodiscovery) and feeds.opml. Pure renderers.

Neither page shows article data, so adding an article rewrites only the feeds it is in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

from .feeds import FeedLinks, feed_title
from .model import Category, FeedFormat, FeedSpec, Site
from .templating import TEMPLATES, environment

LABELS = {FeedFormat.RSS: "RSS", FeedFormat.ATOM: "Atom", FeedFormat.JSON: "JSON Feed"}
TEXTS = {
    "zh": {
        "heading": "订阅源",
        "lead": (
            "把链接复制到 Feedly、Inoreader、NetNewsWire、Thunderbird 等阅读器即可订阅；"
            "每个栏目都有 RSS、Atom 和 JSON Feed 三种格式。"
        ),
        "scope": "栏目",
        "formats": "订阅链接",
        "site": "全站",
        "opml": "一次订阅全部栏目：",
        "mail": "不用阅读器？订阅每周邮件：",
        "mail_link": "邮件订阅",
    },
    "en": {
        "heading": "Feeds",
        "lead": (
            "Paste a link into Feedly, Inoreader, NetNewsWire, Thunderbird or any feed reader. "
            "Every section has RSS, Atom and JSON Feed."
        ),
        "scope": "Section",
        "formats": "Feeds",
        "site": "Everything",
        "opml": "Subscribe to every section at once:",
        "mail": "No feed reader? Get a weekly e-mail:",
        "mail_link": "subscribe by e-mail",
    },
}


@dataclass(frozen=True, slots=True)
class FeedLink:
    title: str
    label: str
    url: str
    media_type: str


def texts_for(language: str) -> dict[str, str]:
    return TEXTS["en"] if language.lower().startswith("en") else TEXTS["zh"]


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
    templates: Path = TEMPLATES,
    subscribe_url: str | None = None,
) -> bytes:
    t = texts_for(site.language)
    rows = [{"name": t["site"], "description": site.description, "feeds": _links(site, links, None)}]
    rows += [{"name": c.name, "description": c.description, "feeds": _links(site, links, c)} for c in categories]
    feeds = [feed for row in rows for feed in row["feeds"]]
    html = (
        environment(templates)
        .get_template("index.html.j2")
        .render(site=site, t=t, rows=rows, feeds=feeds, opml_url=links.of("feeds.opml"), subscribe_url=subscribe_url)
    )
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
                      xmlUrl=links.of(spec.path), htmlUrl=site.url + "/", language=site.language)  # fmt: skip

    outline(body, None)
    folder = ET.SubElement(body, "outline", text=site.title, title=site.title)
    for category in categories:
        outline(folder, category)
    ET.indent(opml, space="  ")
    xml = ET.tostring(opml, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{xml}\n'.encode()
