"""The output folder a build writes: in each edition (publisher.editions), the feeds and the
category pages of the scopes that need it, and index.html and feeds.opml when the site's shape
changed. One query per scope serves every format, page and edition, and each article is
converted to an edition's script once, whichever feeds and pages show it; only changed bytes
reach the disk (feeds.write_if_changed), so an unchanged build writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .archive import ARCHIVE_DIR
from .editions import Converted, Edition, ScriptLink, script_links
from .feeds import FeedLinks, render_feeds, write_if_changed
from .model import Article, Category, FeedFormat, FeedSpec, Site
from .pages import category_page, render_category, render_index, render_opml
from .scripts import HANS, HANT, path_segment
from .theme import Theme

if TYPE_CHECKING:
    from .parallel import Workers

SITE_PAGES = ("index.html", "feeds.opml")
# The output folder's own folders, which no category's page and feeds may take (`<slug>/`):
# what each holds, for the config error that refuses such a slug.
RESERVED_SLUGS = {
    path_segment(HANT): "the folder of the feeds and pages in 繁體 (`[feeds] scripts`)",
    path_segment(HANS): "the folder of the feeds and pages in 简体 (`[feeds] scripts`)",
    ARCHIVE_DIR: "the folder of the digest archive (`[digest] archive`)",
}

# The articles of each scope (a category's slug, None for the whole site), newest first, each
# scope as soon as they are known (store.latest_each)
ScopesArticles = Callable[[Sequence[str | None]], Iterable[tuple[str | None, Sequence[Article]]]]
Files = list[tuple[str, bytes]]  # (path under the output folder, bytes)
Done = TypeVar("Done")


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

    def write(
        self,
        scopes: Sequence[Category | None],
        articles_for: ScopesArticles,
        site_page_needed: Callable[[str], bool],
        workers: Workers | None = None,
    ) -> tuple[list[str], list[str]]:
        """The feeds of `scopes` and their categories' pages, and each index.html and
        feeds.opml for which `site_page_needed(path)`, in every edition; (written, unchanged).

        With the build's `workers`, while they run, the files are rendered there: the site's
        pages while this process queries the articles, each scope's files as soon as its
        articles are known (the bodies of the scopes after it rendering meanwhile), each
        written by the worker that rendered it. The site's pages are written last, so that
        index.html never links a feed not written yet."""
        pages = _run(workers, render_files, self._site_jobs(site_page_needed))
        known = articles_for([scope.slug if scope else None for scope in scopes]) if scopes else ()
        written: list[str] = []  # each scope's feeds and page in every edition, then the site's pages
        unchanged: list[str] = []
        write, again = partial(write_files, self.out), partial(write_files, self.out, again=True)
        for done, same in _run(workers, write, self._scope_jobs(known), again):
            written += done
            unchanged += same
        for files in pages:
            for path, data in files:
                (written if write_if_changed(self.out / path, data) else unchanged).append(path)
        return written, unchanged

    def _scope_jobs(self, known: Iterable[tuple[str | None, Sequence[Article]]]) -> Iterator[ScopeFiles]:
        """What each scope's files in every edition are rendered from, as soon as its articles
        are known; each article converted to an edition's script once, whichever scopes show it."""
        editions = []
        for edition in self.editions:
            categories = edition.categories(self.categories)
            converted: Converted = {}  # each article once in this edition, for its feeds and pages
            editions.append((edition, edition.site(self.site), edition.links(self.links), categories, converted))
        for slug, articles in known:
            for edition, site, links, categories, converted in editions:
                own = next(c for c in categories if c.slug == slug) if slug is not None else None
                switch = script_links(self.editions, edition, self.links, category_page(own)) if own else []
                yield ScopeFiles(edition, site, links, categories, own, edition.articles(articles, converted),
                                 self.theme, self.subscribe_link(edition), switch)  # fmt: skip

    def _site_jobs(self, needed: Callable[[str], bool]) -> Iterator[SitePages]:
        """index.html and feeds.opml of every edition for which `needed(path)`."""
        for edition in self.editions:
            names = tuple(name for name in SITE_PAGES if needed(edition.path(name)))
            if names:
                switch = script_links(self.editions, edition, self.links, "")
                subscribe = self.subscribe_link(edition)
                yield SitePages(edition, self.site, self.links, self.categories, self.theme, subscribe, switch, names)


@dataclass(frozen=True, slots=True)
class ScopeFiles:
    """What one scope's feeds and category page in one edition are rendered from: values
    only, so that a worker process can render them (Workers.run_in_order)."""

    edition: Edition
    site: Site  # in the edition's script, as are the rest
    links: FeedLinks
    categories: Sequence[Category]
    scope: Category | None  # None: the whole site
    articles: Sequence[Article]
    theme: Theme
    subscribe_url: str | None
    switch: Sequence[ScriptLink]  # the category's page in every edition

    def render(self) -> Files:
        feeds = render_feeds(self.site, self.links, self.categories, self.scope, self.articles)
        files = [(self.edition.path(path), data) for path, data in feeds]
        if self.scope is not None:
            html = render_category(self.site, self.links, self.scope, self.articles, self.theme, self.subscribe_url,
                                   self.edition, self.switch)  # fmt: skip
            files.append((self.edition.path(category_page(self.scope) + "index.html"), html))
        return files


@dataclass(frozen=True, slots=True)
class SitePages:
    """What an edition's index.html and feeds.opml (`names`) are rendered from: values only."""

    edition: Edition
    site: Site  # as configured: converted to the edition's script here
    links: FeedLinks
    categories: Sequence[Category]
    theme: Theme
    subscribe_url: str | None
    switch: Sequence[ScriptLink]  # index.html in every edition
    names: tuple[str, ...]  # of SITE_PAGES

    def render(self) -> Files:
        edition = self.edition
        site, links = edition.site(self.site), edition.links(self.links)
        categories = edition.categories(self.categories)
        files = []
        for name in self.names:
            if name == "index.html":
                data = render_index(site, links, categories, self.theme, self.subscribe_url, edition, self.switch)
            else:
                data = render_opml(site, links, categories)
            files.append((edition.path(name), data))
        return files


Job = ScopeFiles | SitePages


def render_files(job: Job) -> Files:
    """A job's files, (path under the output folder, bytes). Pure: run on a worker process."""
    return job.render()


def write_files(out: Path, job: Job, again: bool = False) -> tuple[list[str], list[str]]:
    """A job's files rendered and written under `out` where their bytes changed; (written,
    unchanged). On a worker process: 13 MB of feeds at 10,000 articles never cross a pipe,
    and the two workers write at once. `again`: the job's worker died, perhaps after writing
    some of its files, so that their bytes are the same now: every file counts as written
    (a WebSub hub told of a feed that did not change fetches it for nothing, one not told of a
    change misses it)."""
    written: list[str] = []
    unchanged: list[str] = []
    for path, data in job.render():
        (written if write_if_changed(out / path, data) or again else unchanged).append(path)
    return written, unchanged


def _run(
    workers: Workers | None,
    task: Callable[[Job], Done],
    jobs: Iterable[Job],
    again: Callable[[Job], Done] | None = None,
) -> Iterator[Done]:
    """`task` of each job, in order: on the build's workers (Workers.run_in_order, doing a job
    whose worker died by `again`), else here."""
    return workers.run_in_order(task, jobs, again) if workers is not None else map(task, jobs)


def load_renderers(theme: Theme) -> None:
    """Import the feeds' modules and compile the category page's template in a worker process
    before its first ScopeFiles, while it would idle (Workers.prepare, App.build): 0.05 s of
    CPU that was its first job's."""
    from feedgen.feed import FeedGenerator  # noqa: F401 - imported when first used, see feeds._xml_feed

    theme.environment.get_template("category.html.j2")
