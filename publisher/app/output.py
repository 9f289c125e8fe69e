"""The composition root's output: the feeds, pages and archive a build writes, only the files
whose bytes changed (publisher.output), and the signature of what shapes them all."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from ..feeds import FeedLinks
from ..metrics import Metrics
from ..model import Article, BuildReport, Category, Site
from ..scripts import ScriptConversion
from ..store import Store
from ..theme import Theme

if TYPE_CHECKING:
    from ..archive_output import Archive
    from ..choices import Offered
    from ..editions import Edition
    from ..output import Output
    from ..parallel import Workers

log = logging.getLogger(__name__)


def _folder_state(folder: Path | None) -> list[tuple[str, int, int]]:
    """Names, sizes and mtimes of a theme folder's files: an edited override re-renders the pages."""
    if folder is None:
        return []
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [(p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


class OutputServices:
    """`App`'s part that writes the output folder (a mixin: App provides what is declared here)."""

    settings: Settings
    metrics: Metrics
    workers: Workers | None  # a build's worker processes (App.build)
    # During a build's writes: (source, key) -> (why, article) of each article left out (render_bodies)
    rendering: dict[tuple[str, str], tuple[str, Article]] | None

    if TYPE_CHECKING:

        @property
        def store(self) -> Store: ...
        @property
        def site(self) -> Site: ...
        @property
        def scripts(self) -> ScriptConversion: ...
        @property
        def offered(self) -> Offered: ...
        @property
        def theme(self) -> Theme: ...
        @property
        def archive(self) -> Archive | None: ...
        @property
        def links(self) -> FeedLinks: ...
        @property
        def subscribe_url(self) -> str: ...
        @property
        def out_dir(self) -> Path: ...
        @property
        def categories(self) -> list[Category]: ...
        def keep_pings(self, feeds: Sequence[str]) -> bool: ...
        def announce_feeds(self) -> None: ...

    def render_signature(self) -> str:
        """Everything besides articles that shapes the output; when it changes, all is rewritten."""
        import hashlib
        import json

        from .. import __version__

        shape = {
            "version": __version__,
            "site": self.site.__repr__(),
            "links": self.links.base_url,
            "subscribe": self.subscribe_url,
            "max_items": self.settings.feeds.max_items,
            "editions": [(e.script, e.folder, e.language, e.conversion.mode(e.script)) for e in self.editions],
            "categories": [(c.name, c.slug, c.description, c.url) for c in self.categories],
            "theme": [self.settings.theme.model_dump(), _folder_state(self.theme.templates)],
        }
        if len(self.editions) > 1:  # the other script's sign-up links preselect it when offered
            shape["subscribe_scripts"] = self.offered.on_page()["scripts"]
        if self.links.hubs:  # only then: a site without hubs keeps the signature it had
            shape["websub"] = list(self.links.hubs)
        return hashlib.sha256(json.dumps(shape, ensure_ascii=False, sort_keys=True).encode()).hexdigest()

    @property
    def editions(self) -> list[Edition]:
        """The scripts the output is published in (`[feeds] scripts`): the site's own first."""
        from ..editions import editions

        return editions(self.scripts, self.settings.feeds.scripts, self.site.language)

    def output(self) -> Output:
        """What the output folder is rendered from (publisher.output)."""
        from ..output import Output

        return Output(self.out_dir, self.site, self.links, self.categories, self.theme, self.subscribe_url,
                      self.editions, self.offered.on_page()["scripts"])  # fmt: skip

    def write_output(self, report: BuildReport) -> None:
        """Feeds and category pages whose articles changed (or whose files are missing), in
        every edition, and index.html and feeds.opml when the site's shape changed; only
        changed bytes reach the disk."""
        from ..atomic import remove_stale_temporaries
        from ..store import SITE_SCOPE

        store, out = self.store, self.out_dir
        for stale in remove_stale_temporaries(out, recursive=True):
            log.info("removed %s, left by a write that was killed", stale)
        output = self.output()
        signature = self.render_signature()
        reshaped = store.get_meta("render_signature") != signature
        dirty = store.dirty_scopes()

        def needed(scope: Category | None) -> bool:
            missing = any(not (out / path).is_file() for path in output.scope_files(scope))
            return reshaped or missing or (scope.slug if scope else SITE_SCOPE) in dirty

        def site_page_needed(path: str) -> bool:
            return reshaped or not (out / path).is_file()

        scopes: list[Category | None] = [s for s in [None, *output.categories] if needed(s)]
        limit = self.settings.feeds.max_items
        left_out: dict[tuple[str, str], tuple[str, Article]] = {}
        self.rendering = left_out
        try:
            latest = partial(store.latest_each, limit=limit)
            written, _unchanged = output.write(scopes, latest, site_page_needed, self.workers)
        finally:
            self.rendering = None
        archive = self.archive
        if archive is not None:  # a sent digest's page, when missing; all of them when reshaped
            archive.write(everything=reshaped)
        # The pings wait in the store before the marks of what changed go: a build killed in
        # between, or a store that failed, leaves the marks, and the next build pings again
        # (every feed of a scope still marked, even when its bytes are on disk already).
        changed = [s for s in scopes if reshaped or (s.slug if s else SITE_SCOPE) in dirty]
        announced = sorted({*written, *(path for scope in changed for path in output.scope_files(scope))})
        # An article left out (its body could not be rendered) keeps its feeds marked: they are
        # written again, with it, once it can be shown.
        report.problems.extend(problem for problem, _article in left_out.values())
        kept = {scope for _problem, article in left_out.values() for scope in (SITE_SCOPE, *article.categories)}
        if self.keep_pings(announced):
            store.clear_dirty(dirty - kept)
            if reshaped:
                store.set_meta("render_signature", signature)
        report.feeds_written += len(written)
        self.metrics.feeds_written(len(written))
        report.feeds_unchanged += output.file_count() - len(written)
        report.written_paths = written
        self.announce_feeds()
