"""The digest archive, pure: each sent digest's address, its public page, the index of past
digests and their Atom feed, rendered from values (archive_output.py writes them).

A digest's page is the every-category version of the mail (what a reader of all sections
got), in the site's script, with nothing personal: no greeting by name, no unsubscribe or
preferences link (each holds a reader's signed token), a sign-up link instead. It is served
as a static file under a strict Content-Security-Policy (web/feeds.py): no script, and no
inline style, so its look comes from one stylesheet beside it (`digests/archive.css`).

Addresses (docs/digest.md): a weekly digest is named after the ISO week it was sent in
(`2026-w48`), a daily one after its day (`2026-12-03`), an explicit window after its first
and last days (`2026-11-01-to-2026-11-30`); all in the site's zone as the address is given. A
name already taken gets the first free number, `2026-w48-2`. The address is given once, as the
digest is planned, and kept in the ledger (`digests.archive_slug`): a later digest, another
zone or a renumbering never moves a page a sent mail links to.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

from .digest import DigestSection, Look, section_context, sections_for
from .feeds import EMPTY_FEED_UPDATED
from .model import CADENCES, DAILY, WEEKLY, Article, Category, Subscriber, SubscriberStatus

ARCHIVE_DIR = "digests"  # under the output folder
FEED_FILE = "atom.xml"  # served as application/atom+xml by its name
STYLESHEET = "archive.css"
FEED_ENTRIES = 20  # the newest digests in the Atom feed; the index lists them all
ATOM = "http://www.w3.org/2005/Atom"


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One archived digest: its address (`slug`, under digests/) and what its page shows."""

    key: str  # the digest's key in the ledger
    slug: str
    start: datetime  # aware, UTC
    end: datetime  # aware, UTC
    by: str  # how the window picks articles (DigestRow.by)
    sent: datetime  # aware, UTC: when the digest was opened and its sending began
    cadence: str = WEEKLY  # model.CADENCES: what its title calls it (ArchiveNames)


@dataclass(frozen=True, slots=True)
class ArchiveNames:
    """What the archive calls the list as a whole (the index, the feed) and each cadence's
    digest (its page, its title in the index and the feed), so a daily and a weekly digest of
    one day are told apart and a daily page never says 周报."""

    whole: str
    cadences: Mapping[str, str]

    def of(self, cadence: str) -> str:
        return self.cadences.get(cadence, self.whole)


def archive_names(look: Look, configured: str, offered: Sequence[str]) -> ArchiveNames:
    """`[digest] list_name` (`configured`) names everything, with the cadence added when
    `[digest] cadences` offers two; without it, each cadence's digest is called what its mails
    call it (`Look.list_name_for`: the catalogue's `[digest]` and `[digest.daily]` `list`), and
    the whole is the `[archive]` words' `list`, or the one cadence's name."""
    t, site = look.theme.messages(look.site.language)["archive"], look.site.title
    if configured:
        if len(offered) < 2:
            return ArchiveNames(configured, {})
        return ArchiveNames(configured, {c: t["named"].format(list_name=configured, cadence=t[c]) for c in CADENCES})
    own = {c: look.list_name_for(c) for c in CADENCES}
    return ArchiveNames(own[offered[0]] if len(offered) == 1 else t["list"].format(site=site), own)


def base_slug(start: datetime, end: datetime, by: str, cadence: str, timezone: str) -> str:
    """The name a digest's window and cadence (model.CADENCES: weekly or daily) give it,
    before a taken name is numbered."""
    zone = ZoneInfo(timezone)
    last = end.astimezone(zone)
    if by == "published":  # an explicit window: (since 00:00 - 1 µs, until + 1 day - 1 µs]
        first = (start + timedelta(microseconds=1)).astimezone(zone)
        return f"{first.date().isoformat()}-to-{last.date().isoformat()}"
    if cadence == DAILY:
        return last.date().isoformat()
    year, week, _day = last.isocalendar()
    return f"{year}-w{week:02d}"


def free_slug(base: str, taken: Collection[str]) -> str:
    """`base` when no digest holds it, else the first free `base-2`, `base-3`, ..."""
    slug, number = base, 1
    while slug in taken:
        number += 1
        slug = f"{base}-{number}"
    return slug


@dataclass(frozen=True, slots=True)
class ArchiveLinks:
    """Where the archive is served (the output folder's URL) and where readers sign up."""

    base_url: str  # the output folder's URL (an edition's: its folder's), no trailing slash
    signup_url: str
    folder: str = ""  # the edition's folder (`zh-hant`), in the feed's entry ids; "": the site's own

    @property
    def index_url(self) -> str:
        return f"{self.base_url}/{ARCHIVE_DIR}/"

    @property
    def feed_url(self) -> str:
        return f"{self.base_url}/{ARCHIVE_DIR}/{FEED_FILE}"

    def page_url(self, slug: str) -> str:
        return f"{self.base_url}/{ARCHIVE_DIR}/{slug}/"


def archive_sections(look: Look, categories: Sequence[Category], articles: Sequence[Article]) -> list[DigestSection]:
    """The every-category version of a digest: what a reader of all sections was sent."""
    moment = datetime.now(UTC)  # the probe's dates are never read
    everyone = Subscriber("", "", (), SubscriberStatus.CONFIRMED, moment, "archive", moment)
    return sections_for(everyone, articles, categories, look.max_per_category)


def _date_label(look: Look, moment: datetime) -> str:
    words, local = look.words, moment.astimezone(ZoneInfo(look.site.timezone))
    return str(words["date"].format(d=local, month=words["months"][local.month - 1]))


def _window(look: Look, entry: ArchiveEntry) -> str:
    """ "New articles from <first day> to <last day>" of the window, in the site's zone."""
    zone = ZoneInfo(look.site.timezone)
    first, last = (entry.start + timedelta(microseconds=1)).astimezone(zone), entry.end.astimezone(zone)
    t = look.theme.messages(look.site.language)["archive"]
    return str(t["window"].format(start=f"{first:%Y-%m-%d}", end=f"{last:%Y-%m-%d}"))


def _title(look: Look, entry: ArchiveEntry, names: ArchiveNames) -> str:
    return f"{names.of(entry.cadence)} · {_date_label(look, entry.end)}"


def _names(look: Look, names: ArchiveNames | None) -> ArchiveNames:
    return names or ArchiveNames(look.list_name, {})


def _common(look: Look, links: ArchiveLinks, names: ArchiveNames) -> dict[str, object]:
    return {
        "language": look.site.language,
        "list_name": names.whole,
        "archive_name": names.whole,
        "site_url": look.site.url,
        "feeds_url": look.feeds_url,
        "postal_address": look.postal_address,
        "index_url": links.index_url,
        "feed_url": links.feed_url,
        "signup_url": links.signup_url,
        "t": look.theme.messages(look.site.language)["archive"],
        "theme": look.theme.context(),
    }


def render_page(
    look: Look,
    links: ArchiveLinks,
    entry: ArchiveEntry,
    categories: Sequence[Category],
    articles: Sequence[Article],
    names: ArchiveNames | None = None,
) -> bytes:
    """The digest's public page (`digests/<slug>/index.html`), named after its cadence's list."""
    names = _names(look, names)
    sections = archive_sections(look, categories, articles)
    context = _common(look, links, names) | {
        "list_name": names.of(entry.cadence),
        "title": _title(look, entry, names),
        "url": links.page_url(entry.slug),
        "stylesheet": f"../{STYLESHEET}",
        "date_label": _date_label(look, entry.end),
        "window": _window(look, entry),
        "count": sum(len(s.articles) for s in sections),
        "words": look.words,
        "sections": section_context(look, sections),
    }
    return look.theme.environment.get_template("digest_archive.html.j2").render(context).encode("utf-8")


def render_archive_index(
    look: Look, links: ArchiveLinks, entries: Sequence[ArchiveEntry], names: ArchiveNames | None = None
) -> bytes:
    """`digests/index.html`: every archived digest, newest first, each titled by its cadence."""
    names = _names(look, names)
    rows = [
        {"title": _title(look, e, names), "url": links.page_url(e.slug), "slug": e.slug}
        for e in sorted(entries, key=lambda e: (e.sent, e.slug), reverse=True)
    ]
    context = _common(look, links, names) | {"stylesheet": STYLESHEET, "rows": rows}
    return look.theme.environment.get_template("digest_archive_index.html.j2").render(context).encode("utf-8")


def render_stylesheet(look: Look) -> bytes:
    """`digests/archive.css`: the pages' one stylesheet, in the theme's accent colours."""
    return look.theme.environment.get_template("digest_archive.css.j2").render(theme=look.theme.context()).encode()


def render_archive_feed(
    look: Look,
    links: ArchiveLinks,
    entries: Sequence[tuple[ArchiveEntry, Sequence[DigestSection]]],
    names: ArchiveNames | None = None,
) -> bytes:
    """Atom 1.0 of the newest digests (each with its sections' article links as its content);
    ids are tag URIs of the site's host, the day the digest was sent, the edition's folder and
    its slug, so they survive a move of the output folder."""
    t, names = look.theme.messages(look.site.language)["archive"], _names(look, names)
    site = look.site
    ET.register_namespace("", ATOM)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        element.text = text
        return element

    newest = sorted(entries, key=lambda pair: (pair[0].sent, pair[0].slug), reverse=True)
    feed = ET.Element(f"{{{ATOM}}}feed", {"{http://www.w3.org/XML/1998/namespace}lang": site.language})
    sub(feed, "id", links.feed_url)
    sub(feed, "title", t["feed_title"].format(list_name=names.whole))
    sub(feed, "updated", _rfc3339(newest[0][0].sent if newest else EMPTY_FEED_UPDATED))
    sub(feed, "link", rel="self", type="application/atom+xml", href=links.feed_url)
    sub(feed, "link", rel="alternate", type="text/html", href=links.index_url)
    author = sub(feed, "author")
    sub(author, "name", site.author or site.title)
    sub(author, "uri", site.url + "/")
    host = urlsplit(site.url).hostname or "localhost"
    for entry, sections in newest:
        item = sub(feed, "entry")
        where = f"{links.folder}/{ARCHIVE_DIR}" if links.folder else ARCHIVE_DIR
        sub(item, "id", f"tag:{host},{entry.sent:%Y-%m-%d}:{where}/{entry.slug}")
        sub(item, "title", _title(look, entry, names))
        sub(item, "updated", _rfc3339(entry.sent))
        sub(item, "published", _rfc3339(entry.sent))
        sub(item, "link", rel="alternate", type="text/html", href=links.page_url(entry.slug))
        sub(item, "content", _feed_content(sections, site.url), type="html")
    ET.indent(feed, space="  ")
    xml = ET.tostring(feed, encoding="unicode")
    return f'<?xml version="1.0" encoding="utf-8"?>\n{xml}\n'.encode()


def _feed_content(sections: Sequence[DigestSection], site_url: str) -> str:
    from markupsafe import escape

    parts = []
    for section in sections:
        items = "".join(
            f'<li><a href="{escape(a.url or site_url)}">{escape(a.title)}</a></li>' for a in section.articles
        )
        parts.append(f"<h2>{escape(section.category.name)}</h2><ul>{items}</ul>")
    return "".join(parts)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
