"""fetch -> normalize -> store, per source. One bad item or source never stops the rest."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from .errors import ContentError, SourceError
from .model import Article, BuildReport, ItemProblem, SourceItem, Unchanged
from .normalize import CategoryIndex, NormalizeError, TextRules, make_guid, normalize
from .sources import Source
from .store import Known, Store, StoreWriter

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Tick = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class IngestContext:
    index: CategoryIndex
    rules: TextRules
    site_url: str
    clock: Clock
    strict: bool = False


def ingest(
    store: Store,
    sources: Sequence[Source],
    context: IngestContext,
    report: BuildReport,
    tick: Tick = lambda _key: None,
) -> None:
    """Ingest every source; a failed source is reported and its stored articles stay as they were."""
    for source in sources:
        try:
            _SourcePass(store, source, context, report, tick).run()
        except SourceError as exc:
            if context.strict:
                raise
            log.warning("%s", exc)
            report.failed_sources.append(str(exc))


class _SourcePass:
    """One source's ingest, in one transaction."""

    def __init__(self, store: Store, source: Source, context: IngestContext, report: BuildReport, tick: Tick) -> None:
        self.store, self.source, self.context, self.report, self.tick = store, source, context, report, tick
        self.known: dict[str, Known] = store.known(source.name)
        self.seen: set[str] = set()
        self.explicit_ids: dict[str, str] = {}
        self.new_guids: set[str] = set()
        self.moved: list[tuple[int, str, SourceItem, Article]] = []

    def run(self) -> None:
        fingerprints = {k: v.fingerprint for k, v in self.known.items() if v.fingerprint and not v.withdrawn}
        with self.store.writer() as writer:
            for result in self.source.fetch(fingerprints):
                self.seen.add(result.key)
                self.tick(result.key)
                if isinstance(result, Unchanged):
                    self.report.unchanged += 1
                elif isinstance(result, ItemProblem):
                    self._problem(result)
                else:
                    self._item(writer, result)
            self._finish_moves(writer)
            self._withdraw_missing(writer)

    def _problem(self, problem: ItemProblem) -> None:
        if self.context.strict:
            raise ContentError(problem.location, problem.reason, problem.hint)
        log.warning("skipped %s", problem)
        self.report.skipped += 1
        self.report.problems.append(str(problem))

    def _item(self, writer: StoreWriter, item: SourceItem) -> None:
        try:
            article = normalize(item, self.context.index, self.context.rules, self.context.site_url)
        except NormalizeError as exc:
            self._problem(ItemProblem(item.key, item.location or item.key, exc.reason, exc.hint))
            return
        if item.explicit_id:
            other = self.explicit_ids.setdefault(item.explicit_id, item.key)
            if other != item.key:
                self._problem(
                    ItemProblem(
                        item.key,
                        item.location,
                        f"id {item.explicit_id!r} is also used by {other}",
                        "give each article its own `id`",
                    )
                )
                return
        known = self.known.get(item.key)
        if known is None:
            self._new(writer, item, article)
        elif known.content_hash == article.content_hash and not known.withdrawn:
            if known.fingerprint != item.fingerprint:
                writer.set_fingerprint(known.id, item.fingerprint)
            self.report.unchanged += 1
        else:
            self._changed(writer, known, item, article)

    def _new(self, writer: StoreWriter, item: SourceItem, article: Article) -> None:
        if item.explicit_id:
            found = self.store.find_explicit(self.source.name, item.explicit_id)
            if found is not None and found[1] != item.key:
                # Same id under a new path: a rename, once we know the old path is gone.
                self.moved.append((found[0], found[1], item, article))
                return
        guid = make_guid(self.context.site_url, article.published, item.source, item.key, item.explicit_id)
        if guid in self.new_guids or self.store.guid_taken(guid):
            self._problem(
                ItemProblem(
                    item.key, item.location, f"its feed id {guid} is already taken", "give the article its own `id`"
                )
            )
            return
        self.new_guids.add(guid)
        writer.insert(replace(article, guid=guid), item.explicit_id, item.fingerprint, self.context.clock())
        log.info("new %s", item.location or item.key)
        self.report.new += 1

    def _changed(self, writer: StoreWriter, known: Known, item: SourceItem, article: Article) -> None:
        if known.content_hash == article.content_hash:
            updated = known.updated  # back after a withdrawal, unchanged: no "updated" noise
        elif item.updated is not None:
            updated = article.updated
        else:
            updated = max(self.context.clock(), article.published)
        writer.replace(known.id, replace(article, guid=known.guid, updated=updated), item.explicit_id, item.fingerprint)
        log.info("changed %s", item.location or item.key)
        self.report.changed += 1

    def _finish_moves(self, writer: StoreWriter) -> None:
        for _row_id, old_key, item, article in self.moved:
            if old_key in self.seen:
                self._problem(
                    ItemProblem(
                        item.key,
                        item.location,
                        f"id {item.explicit_id!r} is also used by {old_key}",
                        "give each article its own `id`",
                    )
                )
                continue
            old = self.known[old_key]
            self._changed(writer, old, item, article)
            self.known.pop(old_key)

    def _withdraw_missing(self, writer: StoreWriter) -> None:
        if not self.source.complete:
            return
        live = [key for key, k in self.known.items() if not k.withdrawn]
        if live and not self.seen:
            raise SourceError(
                f"source {self.source.name!r} has no items now but had {len(live)}",
                "if the folder really is empty on purpose, remove the source from the config",
            )
        gone = [self.known[key].id for key in live if key not in self.seen]
        if gone:
            log.info("withdrawn (gone from %s): %s", self.source.name, ", ".join(k for k in live if k not in self.seen))
            writer.withdraw(gone)
            self.report.withdrawn += len(gone)
