"""The output folder a build writes: in each edition (publisher.editions), the feeds and the
category pages of the scopes that need it, and index.html and feeds.opml when the site's shape
changed. One query per scope serves every format, page and edition, and each article is
converted to an edition's script once, whichever feeds and pages show it; only changed bytes
reach the disk (feeds.write_if_changed), so an unchanged build writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .archive import ARCHIVE_DIR
from .editions import Converted, Edition, script_links
from .feeds import FeedLinks, write_feeds, write_if_changed
from .model import Article, Category, FeedFormat, FeedSpec, Site
from .pages import category_page, render_category, render_index, render_opml
from .scripts import HANS, HANT, path_segment
from .theme import Theme

SITE_PAGES = ("index.html", "feeds.opml")
# The output folder's own folders, which no category's page and feeds may take (`<slug>/`):
# what each holds, for the config error that refuses such a slug.
RESERVED_SLUGS = {
    path_segment(HANT): "the folder of the feeds and pages in 繁體 (`[feeds] scripts`)",
    path_segment(HANS): "the folder of the feeds and pages in 简体 (`[feeds] scripts`)",
    ARCHIVE_DIR: "the folder of the digest archive (`[digest] archive`)",
}

# The articles of each scope (a category's slug, None for the whole site), newest first
ScopesArticles = Callable[[Sequence[str | None]], Mapping[str | None, Sequence[Article]]]


@dataclass(frozen=True, slots=True)
class Output:
    """What every file of the output folder is rendered from."""

    out: Path
    site: Site
    links: FeedLinks
    categories: Sequence[Category]
    theme: Theme
    subscribe_url: str | None
    editions: Sequence[Edition]
    subscribe_scripts: Sequence[str] = ()  # the scripts the sign-up page lets a reader choose

    def subscribe_link(self, edition: Edition) -> str | None:
        """The sign-up page as an edition links it: from the other script's pages with that
        script chosen (`?script=zh-Hant`), when the page offers it (web/account.py reads it)."""
        if self.subscribe_url and edition.folder and edition.script in self.subscribe_scripts:
            return f"{self.subscribe_url}?script={edition.script}"
        return self.subscribe_url

    def scope_files(self, scope: Category | None) -> list[str]:
        """The paths a scope has in every edition: its feeds, and a category's page."""
        own = [FeedSpec(fmt, scope).path for fmt in FeedFormat]
        if scope is not None:
            own.append(category_page(scope) + "index.html")
        return [edition.path(path) for edition in self.editions for path in own]

    def site_files(self) -> list[str]:
        return [edition.path(name) for edition in self.editions for name in SITE_PAGES]

    def file_count(self) -> int:
        return sum(len(self.scope_files(s)) for s in [None, *self.categories]) + len(self.site_files())

    def write_scopes(
        self, scopes: Sequence[Category | None], articles_for: ScopesArticles
    ) -> tuple[list[str], list[str]]:
        """The feeds of `scopes` and their categories' pages, in every edition; (written, unchanged)."""
        # Every scope's articles at once: the bodies still to render are rendered together
        cache = articles_for([scope.slug if scope else None for scope in scopes])

        def latest(scope: Category | None) -> Sequence[Article]:
            return cache[scope.slug if scope else None]

        by_slug = {c.slug: c for c in self.categories}
        written: list[str] = []
        unchanged: list[str] = []
        for edition in self.editions:
            site, links = edition.site(self.site), edition.links(self.links)
            categories = edition.categories(self.categories)
            converted = {c.slug: c for c in categories}
            once: Converted = {}  # each article converted once in this edition, for its feeds and pages

            def articles(
                scope: Category | None, edition: Edition = edition, once: Converted = once
            ) -> Sequence[Article]:
                return edition.articles(latest(by_slug[scope.slug] if scope else None), once)

            out = edition.out_dir(self.out)
            in_edition = [converted[s.slug] if s else None for s in scopes]
            done, same = write_feeds(out, site, links, categories, articles, in_edition)
            for scope in in_edition:
                if scope is None:
                    continue
                page = category_page(scope)
                switch = script_links(self.editions, edition, self.links, page)
                html = render_category(site, links, scope, articles(scope), self.theme, self.subscribe_link(edition),
                                       edition, switch)  # fmt: skip
                path = page + "index.html"
                (done if write_if_changed(out / path, html) else same).append(path)
            written += [edition.path(p) for p in done]
            unchanged += [edition.path(p) for p in same]
        return written, unchanged

    def write_site_pages(self, needed: Callable[[str], bool]) -> tuple[list[str], list[str]]:
        """index.html and feeds.opml of every edition for which `needed(path)`."""
        written: list[str] = []
        unchanged: list[str] = []
        for edition in self.editions:
            site, links = edition.site(self.site), edition.links(self.links)
            categories = edition.categories(self.categories)
            switch = script_links(self.editions, edition, self.links, "")
            for name in SITE_PAGES:
                path = edition.path(name)
                if not needed(path):
                    continue
                if name == "index.html":
                    subscribe = self.subscribe_link(edition)
                    data = render_index(site, links, categories, self.theme, subscribe, edition, switch)
                else:
                    data = render_opml(site, links, categories)
                (written if write_if_changed(self.out / path, data) else unchanged).append(path)
        return written, unchanged
