"""Composition root: settings -> concrete store, sources and clock; the services the doors call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .config import FilesSourceConfig, Settings
from .feeds import FeedLinks, write_feeds, write_if_changed
from .ingest import Clock, IngestContext, Tick, ingest
from .model import BuildReport, Category, ItemProblem, Site, SourceItem, Unchanged
from .normalize import CategoryIndex, NormalizeError, TextRules, normalize
from .pages import render_index, render_opml
from .sources import Source
from .sources.files import FilesSource
from .store import Store
from .text import slugify


def utc_now() -> datetime:
    return datetime.now(UTC)


def make_source(config: FilesSourceConfig, timezone: str) -> Source:
    """The registry from a config `type` to a source; config validation rejects unknown types."""
    return FilesSource(
        name=config.source_name,
        root=Path(config.path),
        timezone=timezone,
        default_category=config.default_category,
        url_template=config.url_template,
    )


@dataclass
class App:
    settings: Settings
    clock: Clock = utc_now
    _store: Store | None = field(default=None, init=False)
    _categories: list[Category] | None = field(default=None, init=False)

    @property
    def site(self) -> Site:
        s = self.settings.site
        return Site(
            title=s.title,
            url=s.url.rstrip("/"),
            language=s.language,
            timezone=s.timezone,
            description=s.description,
            author=s.author,
        )

    @property
    def links(self) -> FeedLinks:
        return FeedLinks((self.settings.output.base_url or self.settings.site.url).rstrip("/"))

    @property
    def out_dir(self) -> Path:
        return Path(self.settings.output.dir)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings.store.url)
        return self._store

    @property
    def categories(self) -> list[Category]:
        """Configured categories with the slugs the store fixed at first sight."""
        if self._categories is None:
            wanted = [(c.name, c.slug, c.description) for c in self.settings.categories]
            self._categories = self.store.sync_categories(wanted, slugify, self.clock())
        return self._categories

    @property
    def sources(self) -> list[Source]:
        return [make_source(s, self.settings.site.timezone) for s in self.settings.sources]

    def context(self, strict: bool) -> IngestContext:
        t = self.settings.text
        return IngestContext(
            index=CategoryIndex(self.categories),
            rules=TextRules(t.convert, t.summary_length, t.remove_glosses),
            site_url=self.site.url,
            clock=self.clock,
            strict=strict,
        )

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # --- services ----------------------------------------------------------------------------

    def check(self, tick: Tick = lambda _k: None) -> BuildReport:
        """Read every item of every source as ingest would, writing nothing."""
        report = BuildReport()
        t = self.settings.text
        configured = [Category(c.name, c.slug or slugify(c.name), c.description) for c in self.settings.categories]
        index, rules = CategoryIndex(configured), TextRules(t.convert, t.summary_length, t.remove_glosses)
        from .errors import SourceError

        for source in self.sources:
            try:
                for result in source.fetch({}):
                    tick(result.key)
                    if isinstance(result, ItemProblem):
                        report.skipped += 1
                        report.problems.append(str(result))
                    elif isinstance(result, SourceItem):
                        try:
                            normalize(result, index, rules, self.site.url)
                            report.unchanged += 1
                        except NormalizeError as exc:
                            report.skipped += 1
                            report.problems.append(str(ItemProblem(result.key, result.location, exc.reason, exc.hint)))
                    elif isinstance(result, Unchanged):  # pragma: no cover - no fingerprints given
                        report.unchanged += 1
            except SourceError as exc:
                report.failed_sources.append(str(exc))
        return report

    def ingest(self, report: BuildReport, strict: bool = False, tick: Tick = lambda _k: None) -> None:
        ingest(self.store, self.sources, self.context(strict), report, tick)

    def write_output(self, report: BuildReport) -> None:
        """Every feed, index.html and feeds.opml; only changed bytes reach the disk."""
        limit = self.settings.feeds.max_items
        categories = self.categories

        def articles_for(category: Category | None) -> list:  # type: ignore[type-arg]
            return self.store.latest(category.slug if category else None, limit)

        written, unchanged = write_feeds(self.out_dir, self.site, self.links, categories, articles_for)
        pages: list[tuple[str, Callable[[], bytes]]] = [
            ("index.html", lambda: render_index(self.site, self.links, categories)),
            ("feeds.opml", lambda: render_opml(self.site, self.links, categories)),
        ]
        for name, render in pages:
            (written if write_if_changed(self.out_dir / name, render()) else unchanged).append(name)
        report.feeds_written += len(written)
        report.feeds_unchanged += len(unchanged)
        report.written_paths = written

    def build(self, report: BuildReport, strict: bool = False, tick: Tick = lambda _k: None) -> None:
        self.ingest(report, strict, tick)
        self.write_output(report)
