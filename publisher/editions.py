"""The output in each script `[feeds] scripts` names: the site's own at the root of the output
folder, the other (繁體 or 简体) under its own folder, `/zh-hant/…` or `/zh-hans/…`.

An `Edition` turns the site, its categories and its articles into its script as they are
rendered (publisher.scripts, the one conversion), sets its language and moves its links under
its folder; the renderers (feeds, pages) never know which edition they render. The site's own
edition changes nothing, so a site with one script writes what it always wrote. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .feeds import FeedLinks
from .model import Article, Category, Site
from .scripts import LABELS, ScriptConversion, path_segment

Converted = dict[Article, Article]  # an article as stored -> the same article in an edition's script


@dataclass(frozen=True, slots=True)
class Edition:
    """The output in one script: where it goes, its language, how its text is made."""

    script: str  # HANS or HANT
    folder: str  # "" for the site's own script, else path_segment(script)
    language: str  # the feeds' and pages' language tag
    conversion: ScriptConversion

    @property
    def label(self) -> str:
        """How a reader is offered it: 简体, 繁體."""
        return LABELS[self.script]

    def text(self, value: str) -> str:
        return value if not self.folder else self.conversion.convert(value, self.script)

    def path(self, relative: str) -> str:
        """A path under the output folder (`policy/rss.xml` -> `zh-hant/policy/rss.xml`)."""
        return f"{self.folder}/{relative}" if self.folder else relative

    def out_dir(self, out: Path) -> Path:
        return out / self.folder if self.folder else out

    def links(self, links: FeedLinks) -> FeedLinks:
        """The links of this edition's files: under its folder, anything else `links` holds kept."""
        return replace(links, base_url=f"{links.base_url}/{self.folder}") if self.folder else links

    def site(self, site: Site) -> Site:
        if not self.folder:
            return site
        author = self.text(site.author) if site.author else site.author
        return replace(site, title=self.text(site.title), description=self.text(site.description),
                       author=author, language=self.language)  # fmt: skip

    def categories(self, categories: Sequence[Category]) -> list[Category]:
        """Names and descriptions converted; slugs and pages (URLs) kept."""
        if not self.folder:
            return list(categories)
        return [replace(c, name=self.text(c.name), description=self.text(c.description)) for c in categories]

    def articles(self, articles: Sequence[Article], converted: Converted | None = None) -> Sequence[Article]:
        """`articles` in this script; `converted` remembers the ones converted before, so an
        article that several scopes hold, or that a scope's feeds and its page both show, is
        converted once (`Output.write` keeps one per edition and build)."""
        if not self.folder:
            return articles
        done = {} if converted is None else converted
        return [done[a] if a in done else done.setdefault(a, self.article(a)) for a in articles]

    def article(self, a: Article) -> Article:
        """Title, summary, content, author and tags converted; guid, URLs and dates kept (the
        same article in another script: docs/feeds.md, "Feeds in a second script")."""
        if not self.folder:
            return a
        return replace(
            a,
            title=self.text(a.title),
            summary=self.text(a.summary),
            content_html=self.text(a.content_html),
            author=self.text(a.author) if a.author else a.author,
            tags=tuple(self.text(t) for t in a.tags),
        )  # fmt: skip

    def words(self, words: Mapping[str, str]) -> dict[str, str]:
        """A section of the message catalogue in this script."""
        return {key: self.text(value) for key, value in words.items()}


def editions(conversion: ScriptConversion, scripts: Sequence[str], site_language: str) -> list[Edition]:
    """The site's own edition first, then each other script configured (at most one)."""
    own = Edition(conversion.site, "", site_language, conversion)
    others = [
        Edition(script, path_segment(script), conversion.language(script, site_language), conversion)
        for script in dict.fromkeys(scripts)
        if script != conversion.site
    ]
    return [own, *others]


@dataclass(frozen=True, slots=True)
class ScriptLink:
    """The same page in one edition, for a page's language switch and its hreflang links."""

    label: str
    language: str
    url: str
    current: bool


def script_links(all_editions: Sequence[Edition], current: Edition, links: FeedLinks, page: str) -> list[ScriptLink]:
    """`page` (a path such as `policy/` or ``) in every edition; empty when there is only one."""
    if len(all_editions) < 2:
        return []
    return [
        ScriptLink(e.label, e.language, e.links(links).of(page), e == current) for e in all_editions
    ]  # fmt: skip
