"""The digest's content, as pure functions: which window, which articles, for whom, in which script.

Windows: a scheduled digest takes what was *ingested* since the previous scheduled digest of
its cadence (its very first one: since another cadence's last, or on a new install the last 7
days, or 1 for the daily one; see model.first_scheduled), so every
article lands in exactly one digest of each cadence whatever its publication date says: a
backdated or late article is not lost, a re-published one is not sent twice. An explicit
`--since/--until` window picks by *publication* date instead, for a one-off or a re-send; its
key is the window itself (and its cadence), so sending the same window twice sends nothing.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from .model import CADENCE_DAYS, WEEKLY, Article, Category, Site, Subscriber, cadence_key, first_scheduled
from .scripts import ScriptConversion
from .text import clean_line
from .theme import Theme

FIRST_DIGEST_DAYS = CADENCE_DAYS[WEEKLY]
# Gmail clips an HTML part past 102 KB behind "[Message clipped]"; the footer with the
# unsubscribe link would be what disappears. Budget below that, with room for personal parts.
HTML_BUDGET = 100_000 - 2_000


@dataclass(frozen=True, slots=True)
class DigestWindow:
    """Articles with `start < moment <= end`, where moment is first ingest or publication."""

    key: str  # unique per digest: a second run of the same window creates nothing
    start: datetime  # aware, UTC
    end: datetime  # aware, UTC
    by: Literal["ingested", "published", "first"]  # first: ingested and published in the window
    cadence: str = WEEKLY  # whose digest: the readers of this cadence


@dataclass(frozen=True, slots=True)
class DigestSection:
    category: Category
    articles: tuple[Article, ...]
    more: int = 0  # the category's other new articles, left out by max_per_category


def scheduled_window(
    previous_end: datetime | None, now: datetime, cadence: str = WEEKLY, other_end: datetime | None = None
) -> DigestWindow:
    """The window of the cadence's scheduled digest due at `now`, after its one that ended at
    `previous_end`; its first one after another cadence's last (`other_end`) or on a new install
    as model.first_scheduled says. The end keeps its microseconds, as articles' first_seen does:
    cut to the second, an article stored in the same second before the digest opened would wait for the next."""
    end = now.astimezone(UTC)
    if previous_end is None:
        key, start = first_scheduled(end, cadence, CADENCE_DAYS[cadence], other_end)
        return DigestWindow(key, start, end, "first" if "scheduled-first:" in key else "ingested", cadence)
    key = cadence_key(cadence, f"scheduled:{end:%Y-%m-%dT%H:%M:%SZ}")
    return DigestWindow(key, previous_end.astimezone(UTC), end, "ingested", cadence)


def explicit_window(since: date, until: date, timezone: str, cadence: str = WEEKLY) -> DigestWindow:
    """Publication dates from `since` to `until`, both days included, in the site's zone."""
    if until < since:
        raise ValueError(f"--until {until} is before --since {since}")
    zone = ZoneInfo(timezone)
    start = datetime.combine(since, time(0, 0), tzinfo=zone) - timedelta(microseconds=1)
    end = datetime.combine(until + timedelta(days=1), time(0, 0), tzinfo=zone) - timedelta(microseconds=1)
    key = cadence_key(cadence, f"window:{since.isoformat()}..{until.isoformat()}")
    return DigestWindow(key, start.astimezone(UTC), end.astimezone(UTC), "published", cadence)


def reader_cadence(subscriber: Subscriber, cadences: Sequence[str]) -> str:
    """The cadence whose digest `subscriber` gets: theirs while it is offered, else the first
    offered (a cadence taken out of `[digest] cadences` leaves no reader without a digest)."""
    return subscriber.cadence if subscriber.cadence in cadences else cadences[0]


def reader_script(subscriber: Subscriber, scripts: Sequence[str]) -> str | None:
    """The script `subscriber` reads their digest in: theirs while `[digest] scripts` offers
    it, else None (the site's own)."""
    return subscriber.script if subscriber.script in scripts else None


def sections_for(
    subscriber: Subscriber, articles: Sequence[Article], categories: Sequence[Category], max_per_category: int
) -> list[DigestSection]:
    """The subscriber's digest: their categories in config order (none chosen: all), newest
    first, each article once even when it sits in two of them. Empty: send no e-mail."""
    chosen = set(subscriber.categories) or {c.slug for c in categories}
    ordered = sorted(articles, key=lambda a: (a.published, a.guid), reverse=True)
    placed: set[str] = set()
    sections = []
    for category in categories:
        if category.slug not in chosen:
            continue
        candidates = [a for a in ordered if category.slug in a.categories and a.guid not in placed]
        picked = candidates[:max_per_category]
        placed.update(a.guid for a in picked)
        if picked:
            sections.append(DigestSection(category, tuple(picked), len(candidates) - len(picked)))
    return sections


# --- rendering ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Look:
    """What every digest of the list shows besides articles."""

    site: Site
    list_name: str  # the default cadence's (the first of `[digest] cadences`): the pages and sign-up mails say it
    feeds_url: str  # the feeds' index page
    postal_address: str
    subject_template: str  # Jinja; empty: the language's default
    max_per_category: int
    theme: Theme
    send_when_empty: bool = False
    scripts: ScriptConversion = ScriptConversion("zh-Hans", "s2t", "t2s")  # App.scripts: the site's and the other
    list_names: dict[str, str] = field(default_factory=dict)  # each cadence's list name (App.look)

    @property
    def words(self) -> dict[str, Any]:
        return self.theme.messages(self.site.language)["digest"]

    def words_for(self, cadence: str) -> dict[str, Any]:
        """The digest's words for a cadence: the catalogue's `[digest]`, with its table of the
        cadence's own words (`[digest.daily]`: the subject, the greeting) laid over."""
        return cadence_words(self.words, cadence)

    def language_of(self, script: str | None) -> str:
        """The `lang` of mail in `script` (None: the site's): the tag of the conversion that made
        it (ScriptConversion.language: `zh-TW` for s2tw, `zh-HK`, `zh-Hant`), as the feeds in that
        script say. Only a Chinese site's mail has another script; any other keeps the site's."""
        if script is None or not self.site.language.lower().startswith("zh"):
            return self.site.language
        return self.scripts.language(script, self.site.language)

    def list_name_for(self, cadence: str) -> str:
        """The name of the cadence's list: its masthead, List-Id and default subject (a daily
        reader's mail says 日报, not 周报); `list_name` for a cadence not named."""
        return self.list_names.get(cadence, self.list_name)


def section_context(look: Look, sections: Sequence[DigestSection]) -> list[dict[str, Any]]:
    """The sections as the digest's templates and the archive's page read them."""
    zone = ZoneInfo(look.site.timezone)
    return [
        {
            "name": s.category.name,
            "url": s.category.url or look.site.url,
            "more": s.more,
            "articles": [
                {
                    "title": a.title,
                    "url": a.url or look.site.url,
                    "summary": a.summary,
                    "date": a.published.astimezone(zone).strftime("%Y-%m-%d"),
                    "author": a.author or "",
                }
                for a in s.articles
            ],
        }
        for s in sections
    ]


def cadence_words(words: dict[str, Any], cadence: str) -> dict[str, Any]:
    """A catalogue's `[digest]` words with the cadence's own table (`[digest.daily]`) laid over."""
    own = words.get(cadence)
    return {**words, **own} if isinstance(own, dict) else words


@dataclass(frozen=True, slots=True)
class Draft:
    """One category set's digest; the personal parts are still markers (see `Renderer.personal`).

    `text` and `html` are each (head, middle, foot): the middle holds every article and nothing
    personal, and is padded to a multiple of 57 bytes, so that each reader's message can reuse
    its base64 (see mail.Message) and only head and foot are encoded per reader.
    """

    subject: str
    text: tuple[str, str, str]
    html: tuple[str, str, str]
    count: int
    script: str | None = None  # the script it was converted to (None: the site's own)


@dataclass(frozen=True, slots=True)
class Personal:
    name: str
    unsubscribe_url: str
    preferences_url: str


class Renderer:
    """Renders a window's digest once per (set of chosen categories, script), then personalises copies.

    Rendering and CSS inlining take milliseconds; a digest goes to thousands of readers who
    chose a few dozen different category sets. So a set is rendered once with markers where
    the greeting and the two links go (random per renderer, so no article can contain one, and
    ASCII, so no conversion changes one), converted to the reader's script as a whole (the
    links in it are ASCII: the sanitiser percent-encodes them), and each reader's copy is a
    few string replacements. The cache is bounded (512 sets, each one digest: tens of MB at
    most), so memory does not grow with the number of subscribers. One renderer serves one
    digest, so one cadence, whose words (`Look.words_for`) it uses.
    """

    def __init__(
        self,
        look: Look,
        categories: Sequence[Category],
        articles: Sequence[Article],
        end: datetime,
        cache_size: int = 512,
        archive_url: str | None = None,
        cadence: str = WEEKLY,
        script_archive_urls: Mapping[str, str] | None = None,
    ) -> None:
        self.look, self.categories, self.articles, self.end = look, list(categories), list(articles), end
        self.archive_url = archive_url  # the digest's public page ("View in browser"); None: no link
        # The same page in another script (`zh-Hant`: `/zh-hant/digests/…`), linked from that script's drafts.
        self.script_archive_urls = dict(script_archive_urls or {})
        self.env = look.theme.environment
        self.words = look.words_for(cadence)
        self.cadence, self.list_name = cadence, look.list_name_for(cadence)
        nonce = secrets.token_hex(8)
        self.markers = {k: f"pub{nonce}{k}" for k in ("hello", "unsubscribe", "preferences", "split")}
        from jinja2 import StrictUndefined
        from jinja2.sandbox import SandboxedEnvironment

        # The subject template is the operator's: sandboxed, and never autoescaped.
        subject_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        self._subject = subject_env.from_string(look.subject_template or self.words["subject"])
        self._cache: OrderedDict[tuple[tuple[str, ...], str | None], Draft | None] = OrderedDict()
        self._cache_size = cache_size

    def draft(self, chosen: Sequence[str], script: str | None = None) -> Draft | None:
        """The digest for readers of these category slugs (empty: all) in `script` (None: the
        site's own); None: send nothing."""
        if self.look.scripts.mode(script) == "none":
            script = None
        key = (tuple(sorted(chosen)), script)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        draft = self._render(*key)
        self._cache[key] = draft
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return draft

    def personal(self, draft: Draft, who: Personal) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
        """(text, html) for one reader, each as (head, middle, foot): their greeting and their
        own signed links in head and foot, head padded to keep the middle aligned."""
        from markupsafe import escape

        w, m = self.words, self.markers
        hello_named, hello = (self.look.scripts.convert(w[k], draft.script) for k in ("hello_named", "hello"))
        hello = hello_named.format(name=who.name) if who.name else hello  # their name as they wrote it
        (text_head, text_middle, text_foot), (html_head, html_middle, html_foot) = draft.text, draft.html
        text_head = _aligned(text_head.replace(m["hello"], hello), "\n")
        html_head = _aligned(html_head.replace(m["hello"], str(escape(hello))), "")
        for marker, value in ((m["unsubscribe"], who.unsubscribe_url), (m["preferences"], who.preferences_url)):
            text_foot = text_foot.replace(marker, value)
            html_foot = html_foot.replace(marker, str(escape(value)))
        return (text_head, text_middle, text_foot), (html_head, html_middle, html_foot)

    def _render(self, chosen: tuple[str, ...], script: str | None) -> Draft | None:
        probe = Subscriber("", "", chosen, None, self.end, "", self.end)  # type: ignore[arg-type]
        limit = self.look.max_per_category
        while True:
            sections = sections_for(probe, self.articles, self.categories, limit)
            if not sections and not self.look.send_when_empty:
                return None
            draft = self._render_sections(sections, chosen, script)
            size = sum(len(part.encode("utf-8")) for part in draft.html)
            if size <= HTML_BUDGET or limit == 1:
                return draft
            # Too big for Gmail: fewer articles per category, the rest behind "more on the site".
            limit = max(1, min(limit - 1, int(limit * HTML_BUDGET / size)))

    def _render_sections(self, sections: list[DigestSection], chosen: tuple[str, ...], script: str | None) -> Draft:
        look, w, zone = self.look, self.words, ZoneInfo(self.look.site.timezone)
        end = self.end.astimezone(zone)
        date_label = w["date"].format(d=end, month=w["months"][end.month - 1])
        items = [a for s in sections for a in s.articles]
        by_slug = {c.slug: c.name for c in self.categories}
        names = [by_slug[s] for s in chosen if s in by_slug]
        split = self.markers["split"]
        context = {
            "split": split,
            "language": look.language_of(script),  # a converted digest says which script it is in
            "title": self.list_name,
            "list_name": self.list_name,
            "site_url": look.site.url,
            "feeds_url": look.feeds_url,
            "archive_url": self.script_archive_urls.get(script, self.archive_url) if script else self.archive_url,
            "postal_address": look.postal_address,
            "date_label": date_label,
            "count": len(items),
            "greeting": self.markers["hello"],
            "unsubscribe_url": self.markers["unsubscribe"],
            "preferences_url": self.markers["preferences"],
            "chosen": w["join"].join(names) if names else w["all"],
            "t": w,
            "theme": look.theme.context(),
            "preheader": w["join"].join(a.title for a in items[:3])[:140],
            "sections": section_context(look, sections),
        }
        html = _inline(self.env.get_template("digest.html.j2").render(context))
        text = self.env.get_template("digest.txt.j2").render(context)
        subject = self._subject.render(
            site=look.site.title,
            list_name=self.list_name,
            date=date_label,
            count=len(items),
            first_title=items[0].title if items else w["empty"],
            categories=w["join"].join(s.category.name for s in sections),
        )
        subject = clean_line(subject) or self.list_name  # titles stored before cleaning too
        # The reader's script, converted before the parts are aligned (a conversion may change
        # a part's length): every word, title and summary; the markers and links are ASCII.
        convert = look.scripts.convert
        subject, html, text = convert(subject, script), convert(html, script), convert(text, script)
        html_parts = html.split(f"<!--{split}-->")
        text_parts = text.split(f"{split}\n")
        assert len(html_parts) == 3 and len(text_parts) == 3, "a digest template lost its split markers"
        # The middle starts where the (padded) head ends: on a 57-byte boundary. Pad its end too.
        html_parts[1] = _aligned(html_parts[1], "")
        text_parts[1] = _aligned(text_parts[1], "\n")
        return Draft(subject, tuple(text_parts), tuple(html_parts), len(items), script)  # type: ignore[arg-type]


def render_account(look: Look, confirming: bool, link: str) -> tuple[str, str, str]:
    """(subject, text, html) of a sign-up e-mail: confirm a new subscription (`link` confirms),
    or, for an address already subscribed, manage it (`link` is its preferences page)."""
    words = look.theme.messages(look.site.language)["account"]
    t = {k: v.format(list_name=look.list_name) for k, v in words["confirm" if confirming else "manage"].items()}
    t.update(ignore=words["ignore"], privacy_link=words["privacy_link"], colon=words["colon"])
    context = {
        "t": t, "link": link, "list_name": look.list_name, "site_url": look.site.url,
        "postal_address": look.postal_address, "language": look.site.language, "theme": look.theme.context(),
    }  # fmt: skip
    env = look.theme.environment
    text = env.get_template("account.txt.j2").render(context)
    return t["subject"], text, env.get_template("account.html.j2").render(context)


def render_welcome(
    look: Look, chosen: list[str], preferences_url: str, unsubscribe_url: str, script: str | None = None
) -> tuple[str, str, str]:
    """(subject, text, html) of the welcome e-mail a reader gets once they confirmed: what they
    chose (category names; empty: every category), their preferences and unsubscribe links; in
    the reader's `script` (None: the site's), converted as their digests are."""
    words = look.theme.messages(look.site.language)["account"]
    t = {k: v.format(list_name=look.list_name) for k, v in words["welcome"].items()}
    t.update(privacy_link=words["privacy_link"], colon=words["colon"])
    every = look.words["all"]
    context = {
        "t": t, "link": preferences_url, "unsubscribe_url": unsubscribe_url, "list_name": look.list_name,
        "chosen": look.words["join"].join(chosen) if chosen else every, "site_url": look.site.url,
        "feeds_url": look.feeds_url, "postal_address": look.postal_address,
        "language": look.language_of(script), "theme": look.theme.context(),
    }  # fmt: skip
    env = look.theme.environment
    text, html = env.get_template("welcome.txt.j2").render(context), env.get_template("welcome.html.j2").render(context)
    convert = look.scripts.convert  # links and tokens are ASCII: no conversion changes them
    return convert(t["subject"], script), convert(text, script), convert(html, script)


def _aligned(part: str, before: str) -> str:
    """`part` padded with spaces to a multiple of 57 UTF-8 bytes (one base64 line); the spaces
    go before its final `before` (a newline in text, where they end a blank line) or at its end
    (in HTML, between table rows, where whitespace shows nothing)."""
    pad = " " * (-len(part.encode("utf-8")) % 57)
    if not pad:
        return part
    if before and part.endswith(before):
        return part[: -len(before)] + pad + before
    return part + pad


def _inline(html: str) -> str:
    import css_inline

    # Keep @media (dark mode, narrow screens); never fetch a remote stylesheet.
    inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False, minify_css=True)
    return inliner.inline(html)
