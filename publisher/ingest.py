"""fetch -> normalize -> store, per source (each a SourcePass, source_pass.py), and each source's
health kept. One bad item or source never stops the rest."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from .errors import SourceError
from .model import (
    BuildReport,
    ScopeRead,
)
from .normalize import CategoryIndex, TextRules
from .parallel import ReadAhead, Workers
from .source_pass import SourcePass
from .sources import Source, failed_part_message
from .store import WHOLE_SOURCE, Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Tick = Callable[[int], None]  # advance a progress display by this many items


@dataclass(frozen=True, slots=True)
class IngestContext:
    index: CategoryIndex
    rules: TextRules
    site_url: str
    clock: Clock
    strict: bool = False
    # source name -> hash of the settings that shape its articles; a change re-reads everything
    signatures: Mapping[str, str] = field(default_factory=dict)
    # told of each failed read: (source, part); part "" is the source as a whole (metrics)
    failed: Callable[[str, str], None] = lambda _source, _part: None
    workers: Workers | None = None  # the build's pool (made with index, rules and site_url)
    # A build's files read ahead (build_ahead.py), by key, when read by this source as it reads
    # now: (source, index, rules, site_url) -> {key: ((fingerprint, path), prepared)}.
    read_ahead: Callable[[Source, CategoryIndex, TextRules, str], Mapping[str, ReadAhead]] | None = None


def ingest(
    store: Store,
    sources: Sequence[Source],
    context: IngestContext,
    report: BuildReport,
    tick: Tick = lambda _n: None,
) -> None:
    """Ingest every source. A failed source is reported; its batch in progress is rolled back,
    the batches it committed stay (each whole, see StoreWriter), nothing of it is withdrawn.
    A part of a source that failed (a category's list page) is reported while the others
    ingest. Each source's and part's outcome is kept for `publisher status` and `/healthz`."""
    for source in sources:
        counts = (report.new, report.changed, report.unchanged, report.withdrawn)
        source_pass = SourcePass(store, source, context, report, tick)
        try:
            source_pass.run()
        except SourceError as exc:
            # Its batch in progress was rolled back: the counts claim none of the pass (the next
            # build finds the committed batches unchanged and finishes the rest).
            report.new, report.changed, report.unchanged, report.withdrawn = counts
            context.failed(source.name, WHOLE_SOURCE)
            _record_health(store, source.name, [ScopeRead(WHOLE_SOURCE, exc.url, exc.message, exc.hint)], context)
            if context.strict:
                raise
            log.warning("%s", exc)
            report.failed_sources.append(str(exc))
            continue
        _tell_committed(source)
        for read in source_pass.scopes:
            if read.error is not None:
                failed = failed_part_message(source.name, read)
                context.failed(source.name, read.scope)
                log.warning("%s", failed)
                report.failed_parts.append(failed)
        reads = [*source_pass.scopes, ScopeRead(WHOLE_SOURCE, "")]
        items = {**source_pass.part_items, WHOLE_SOURCE: source_pass.listed}
        _record_health(store, source.name, reads, context, items, every_part=True)


def _tell_committed(source: Source) -> None:
    """Tell a source its pass is stored (web sources then keep their HTTP validators and failed
    items). Those only save requests: a store error here is logged, the ingest stands."""
    committed = getattr(source, "committed", None)
    if committed is None:
        return
    try:
        committed()
    except SQLAlchemyError as exc:
        log.warning("source %r: could not keep what this run learnt of its pages (asked again next run): %s",
                    source.name, exc)  # fmt: skip


def _record_health(
    store: Store,
    source: str,
    reads: Sequence[ScopeRead],
    context: IngestContext,
    items: Mapping[str, int] | None = None,
    every_part: bool = False,
) -> None:
    """Keep what a run said of a source's parts; a store error here is logged, never raised:
    health is the report of an ingest, not part of it."""
    try:
        store.record_health(source, reads, context.clock(), items, every_part)
    except SQLAlchemyError as exc:
        log.warning("source %r: could not record its health: %s", source, exc)
