"""The composition root's sources: configured sources made concrete, their fetchers sharing
one run's robots.txt cache, their stored state (validators, failed items, health), the ingest
context, and `check`'s reading of every source."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING

from ..config import (
    FeedSourceConfig,
    FilesSourceConfig,
    HtmlSourceConfig,
    JsonSourceConfig,
    Settings,
    SourceConfig,
    WebSourceConfig,
    WordPressSourceConfig,
)
from ..errors import SourceError
from ..ingest import Clock, IngestContext, Tick
from ..metrics import Metrics
from ..model import (
    Article,
    BuildReport,
    Category,
    Deferred,
    Folder,
    ItemProblem,
    Rendition,
    ScopeRead,
    Site,
    SourceItem,
    SourceWarning,
    Unchanged,
)
from ..normalize import CategoryIndex, NormalizeError, TextRules
from ..sources import PartFailed, Source, failed_part_message
from ..sources.failed_items import FailedItem, FailedItems
from ..sources.files import files_source
from ..store import SourceHealth, Store

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ..build_ahead import BuildAhead
    from ..parallel import Prepared, Workers
    from ..sources.html import ListRules
    from ..sources.http import Fetcher
    from ..sources.robots import RobotsCache
    from ..sources.walk import WalkedFolder, WalkPool


def make_source(
    config: SourceConfig,
    timezone: str,
    fetcher: Callable[[WebSourceConfig], Fetcher],
    known: frozenset[str] = frozenset(),
    categories: Sequence[Category] = (),
    convert: Callable[[str], str] = str,
    failed: Callable[[str], FailedItems] | None = None,
    walk_pool: WalkPool | None = None,
    walked_ahead: Callable[[str], Sequence[WalkedFolder]] | None = None,
) -> Source:
    """The registry from a config `type` to a source; config validation rejects unknown types.
    `known`: our category names and slugs (a WordPress site's categories are matched to them);
    `categories`: ours (an html source's overrides name them); `convert`: text converted as
    the content will be (`[text] convert`: an html source's meta-line regexes read it too);
    `failed`: a web source's memory of its failed items and walks, by its name (None: none, as
    for `check`); `walk_pool`: a build's worker processes (a files source stats its big folders there);
    `walked_ahead`: a build's folders walked ahead, by root (build_ahead.py).
    Web sources are imported only when configured: they bring requests and lxml.html, a tenth
    of a second of every build of a site that reads only files."""
    if isinstance(config, WordPressSourceConfig):
        from ..sources.wordpress import WordPressSource

        return WordPressSource(
            config.source_name, config.url, config.categories, config.category, fetcher(config), known,
            config.max_pages, failed=failed(config.source_name) if failed is not None else None,
        )  # fmt: skip
    if isinstance(config, FeedSourceConfig):
        from ..sources.feed import FeedSource

        return FeedSource(config.source_name, config.url, config.category, fetcher(config))
    if isinstance(config, JsonSourceConfig):
        from ..sources.json_api import Fields, JsonSource, Paging

        f, p = config.fields, config.paging
        fields = Fields(f.list, f.id, f.title, f.date, f.body, f.url or None, f.category or None, f.author or None,
                        f.summary or None)  # fmt: skip
        paging = Paging(p.kind, p.page_size, p.next or None, p.max_pages)
        return JsonSource(
            config.source_name, config.url, fields, paging, config.category, fetcher(config), timezone,
            failed=failed(config.source_name) if failed is not None else None,
        )  # fmt: skip
    if isinstance(config, HtmlSourceConfig):
        from ..sources.html import ArticleRules, HtmlSource

        article = ArticleRules(**config.article.model_dump())
        lists = _list_rules(config, categories)
        return HtmlSource(
            config.source_name, lists, article, fetcher(config), timezone, config.recheck_days, convert=convert,
            failed=failed(config.source_name) if failed is not None else None,
        )  # fmt: skip
    return files_source(config, timezone, walk_pool, walked_ahead)


def _list_rules(config: HtmlSourceConfig, categories: Sequence[Category]) -> ListRules:
    """An html source's list rules, each category's override laid over the source's own."""
    from ..sources.html import ListRules, Walk

    lists = config.list
    walk = Walk(lists.links, lists.next, lists.url_pattern, lists.max_pages)
    category_of = {label: c.name for c in categories for label in (c.name, c.slug)}
    overrides = {}
    for page_key, override in lists.matched_overrides(category_of)[0].items():
        own_paging = override.next or override.url_pattern
        paging = (override.next, override.url_pattern) if own_paging else (lists.next, lists.url_pattern)
        overrides[page_key] = Walk(override.links or lists.links, *paging, override.max_pages or lists.max_pages)
    return ListRules(lists.pages, walk, overrides)


class SourceServices:
    """`App`'s part that reads sources (a mixin: App provides what is declared here)."""

    settings: Settings
    clock: Clock
    metrics: Metrics
    workers: Workers | None  # a build's worker processes (App.build), shared by its ingest and renders
    ahead: BuildAhead | None  # a build's slugs and walk, done while it loads (build_ahead.py)
    # During a build's writes: (source, key) -> (why, article) of each article left out (render_bodies)
    rendering: dict[tuple[str, str], tuple[str, Article]] | None

    if TYPE_CHECKING:

        @property
        def store(self) -> Store: ...
        @property
        def site(self) -> Site: ...
        @property
        def categories(self) -> list[Category]: ...
        @property
        def configured_categories(self) -> list[Category]: ...
        @property
        def rules(self) -> TextRules: ...

    @property
    def sources(self) -> list[Source]:
        """One run's sources (their web sources share the run's robots.txt cache)."""
        return self.run_sources()

    def run_sources(self, retry_failed: bool = False) -> list[Source]:
        """One run's sources; `retry_failed`: their failed items are all due now."""
        categories = self.categories
        known = frozenset(name for c in categories for name in (c.name, c.slug))
        tz, fetchers = self.settings.site.timezone, self.run_fetchers()
        failed = partial(self.failed_items, retry_now=retry_failed)
        pool = self.workers.pool if self.workers is not None else None  # a build's
        ahead = self.ahead.folders_of if self.ahead is not None else None  # a build's
        return [
            make_source(
                s, tz, fetchers, known, categories, self.convert, failed=failed, walk_pool=pool, walked_ahead=ahead
            )
            for s in self.settings.sources
        ]

    @property
    def convert(self) -> Callable[[str], str]:
        """Text converted as normalising converts the content (`[text] convert`)."""
        from ..text import convert_script

        return partial(convert_script, mode=self.settings.text.convert)

    def render_bodies(self, articles: Sequence[Article]) -> Iterator[tuple[Rendition, str] | None]:
        """The bodies of articles stored unrendered (files), read again from their sources and
        rendered as normalize renders them (the store keeps them: `ArticleStore.render_bodies`),
        each with the body hash of what was read, in their order, each as soon as it is made;
        many at once on every core, as ingest reads them, so a file that crashes the renderer
        is named and the rest rendered (always in a worker, even one body: a crash in native
        code never takes the build or the service down). A file changed since the last ingest
        is shown as it is now (the next ingest stores its new fields). One gone, unreadable or
        unrenderable is left out (None) and logged; during a build (set by write_output) it is
        also kept in `rendering`, for the report and the feeds that stay marked, and not tried
        again by the build's other feeds."""
        from ..parallel import CHUNK, prepare_in_order

        configs = {s.source_name: s for s in self.settings.sources if isinstance(s, FilesSourceConfig)}
        sources: dict[str, Source] = {}
        work: list[Deferred | SourceItem] = []
        read: list[bool] = []  # whether each article is read again (else it is left out)
        for article in articles:
            config = configs.get(article.source)
            read.append(False)
            if self.rendering is not None and (article.source, article.key) in self.rendering:
                continue
            if config is None:
                self._left_out(article, f"{article.key}: its source {article.source!r} is no longer configured")
                continue
            source = sources.get(article.source)
            if source is None:
                source = sources[article.source] = make_source(config, self.settings.site.timezone, self.run_fetchers())
            work.append(source.read_again(article.key))  # type: ignore[attr-defined]
            read[-1] = True
        chunks = [work[start : start + CHUNK] for start in range(0, len(work), CHUNK)]
        shared = self.workers  # the build's, when this is one: forked while its process was small
        index = shared.context[0] if shared is not None else CategoryIndex(self.categories)
        results = prepare_in_order(chunks, index, self.rules, self.site.url, in_process=0, shared=shared)
        rendered = (r for chunk in results for r in chunk)
        for article, again in zip(articles, read, strict=True):
            yield self._rendition(article, next(rendered)) if again else None

    def _rendition(self, article: Article, result: Prepared) -> tuple[Rendition, str] | None:
        """What rendering `article` again gave: its rendition and body hash, or None (left out)."""
        if result is None or isinstance(result, ItemProblem):
            self._left_out(article, str(result) if result is not None else f"{article.key}: it is a draft now")
            return None
        item, normalized = result
        if isinstance(normalized, NormalizeError):
            self._left_out(article, f"{item.location}: {normalized.reason}")
            return None
        return Rendition(normalized.content_html, normalized.summary), normalized.body_hash

    def _left_out(self, article: Article, problem: str) -> None:
        log.warning("left out until it can be shown: %s", problem)
        if self.rendering is not None:
            self.rendering[(article.source, article.key)] = (problem, article)

    def source_health(self) -> list[SourceHealth]:
        """Every configured source and its parts as their last runs left them (`publisher
        status`, `/healthz`)."""
        return self.store.health_of_sources([s.source_name for s in self.settings.sources])

    def failed_items(self, source: str, retry_now: bool = False) -> FailedItems:
        """`source`'s items that failed, as the store keeps them, for one run (`retry_now`:
        all due at once); what the run learns is written when the source's `committed()`
        calls `commit()`."""
        store = self.store
        return FailedItems(
            stored=store.failed_items(source),
            clock=self.clock,
            save=lambda upserts, cleared: store.save_failed_items(source, upserts, cleared),
            retry_now=retry_now,
        )

    def failed_items_waiting(self) -> list[tuple[str, FailedItem]]:
        """(source, item) of every configured source's failed items, by source, the next due first."""
        return [
            (s.source_name, item)
            for s in self.settings.sources
            for item in sorted(self.store.failed_items(s.source_name).values(), key=lambda i: (i.next_try, i.key))
        ]

    def run_fetchers(self, conditional: bool = True) -> Callable[[WebSourceConfig], Fetcher]:
        """The fetchers of one run's web sources: they share one robots.txt cache, so a site is
        asked for it once per run however many sources read it."""
        shared: list[RobotsCache] = []

        def fetcher(config: WebSourceConfig) -> Fetcher:
            from ..sources.robots import RobotsCache

            if not shared:
                shared.append(RobotsCache())
            return self.fetcher(config, conditional, shared[0])

        return fetcher

    def fetcher(self, config: WebSourceConfig, conditional: bool = True, robots: RobotsCache | None = None) -> Fetcher:
        """The HTTP layer for a web source; conditional: remember ETag/Last-Modified in the store;
        `robots`: the run's robots.txt cache (None: the fetcher's own)."""
        from ..sources.addresses import AddressGuard
        from ..sources.http import Fetcher, Validators, source_hosts, user_agent

        store, name = self.store, config.source_name
        validators = None
        if conditional:  # per source: two sources reading one URL keep their own
            validators = Validators(
                lambda url: store.http_validators(name, url), lambda kept: store.save_http_validators(name, kept)
            )
        return Fetcher(
            user_agent(self.site.url),
            validators,
            delay=config.delay,
            timeout=(min(10.0, config.timeout), config.timeout),
            robots=config.robots,
            hosts=source_hosts(config.start_urls, config.hosts),
            guard=AddressGuard(allow_private=config.allow_private),
            deadline=config.deadline,
            run_deadline=config.run_deadline,
            robots_cache=robots,
        )

    def context(self, strict: bool) -> IngestContext:
        return IngestContext(
            index=self.workers.context[0] if self.workers is not None else CategoryIndex(self.categories),
            rules=self.rules,
            site_url=self.site.url,
            clock=self.clock,
            strict=strict,
            signatures={s.source_name: self.reading_signature(s) for s in self.settings.sources},
            failed=self.metrics.source_failed,
            workers=self.workers,
            read_ahead=self.ahead.reads_for if self.ahead is not None else None,
        )

    def reading_signature(self, source: SourceConfig) -> str:
        """Everything besides a file's bytes that shapes its article. When it changes (a new
        [text] rule, site URL, category, source setting or version), every file is read again."""
        import hashlib
        import json

        from .. import __version__
        from ..text import CLEANING

        shape = {
            "version": __version__,
            "cleaning": CLEANING,
            "text": self.settings.text.model_dump(),
            "site": [self.site.url, self.site.timezone],
            "categories": [(c.name, c.slug) for c in self.categories],
            "source": source.model_dump(),
        }
        return hashlib.sha256(json.dumps(shape, ensure_ascii=False, sort_keys=True).encode()).hexdigest()

    def check(self, tick: Tick = lambda _n: None) -> BuildReport:
        """Read and normalize every item of every source as ingest would, writing nothing;
        `checked` counts the good items."""
        from ..parallel import prepare_all

        report = BuildReport()
        configured = self.configured_categories
        index, rules = CategoryIndex(configured), self.rules
        tz = self.settings.site.timezone
        known = frozenset(name for c in configured for name in (c.name, c.slug))
        fetchers = self.run_fetchers(conditional=False)
        sources = [make_source(s, tz, fetchers, known, configured, self.convert) for s in self.settings.sources]
        for source in sources:
            try:
                inspect = getattr(source, "inspect", None)
                if inspect is not None:  # an html source: what each category and one article show
                    seen = inspect()
                    report.source_notes.append(seen.note)
                    report.problems.extend(seen.problems)
                    report.failed_parts.extend(seen.failed)
                    report.checked += seen.readable
                    report.skipped += seen.skipped
                    continue
                probe = getattr(source, "probe", None)
                if probe is not None:  # a web source: reached once, and what it shows is reported
                    count, first, problems = probe()
                    shown = f", the first: {first}" if first else ""
                    report.source_notes.append(f"{source.name}: {count} item(s) at {source.url}{shown}")  # type: ignore[attr-defined]
                    report.problems.extend(str(p) for p in problems)
                    report.skipped += len(problems)
                    continue
                for fetched in source.fetch({}):
                    if isinstance(fetched, (Folder, Unchanged, ScopeRead)):  # unchanged never (no fingerprints)
                        continue
                    if isinstance(fetched, SourceWarning):
                        report.warnings.append(str(fetched))
                        continue
                    tick(1)
                    if isinstance(fetched, ItemProblem):
                        outcome: Prepared = fetched
                    else:
                        [outcome] = prepare_all([fetched], index, rules, self.site.url)
                    if isinstance(outcome, tuple):
                        item, article = outcome
                        if isinstance(article, NormalizeError):
                            outcome = ItemProblem(item.key, item.location, article.reason, article.hint)
                    if isinstance(outcome, ItemProblem):
                        report.skipped += 1
                        report.problems.append(str(outcome))
                    elif outcome is not None:
                        report.checked += 1
            except PartFailed as exc:  # a part of the source: worded as `build` words it
                report.failed_parts.append(failed_part_message(source.name, exc.read))
            except SourceError as exc:
                report.failed_sources.append(str(exc))
            finally:
                close = getattr(getattr(source, "fetcher", None), "close", None)
                if close is not None:
                    close()
        return report
