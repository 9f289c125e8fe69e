"""One source's ingest pass: fetch -> normalize (on the build's workers) -> store, a batch at a
time. Each item is new, changed, unchanged, moved (its `id` under a new path) or a problem;
what the source no longer lists is withdrawn. One bad item never stops the pass."""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from .errors import ContentError, SourceError
from .ingest_lookups import GuidCheck, StoredFingerprints
from .model import (
    Article,
    BuildReport,
    Deferred,
    Folder,
    ItemProblem,
    ReadItem,
    ScopeRead,
    SourceItem,
    SourceWarning,
    Unchanged,
)
from .normalize import NormalizeError, hash_before_0009
from .parallel import CHUNK, Normalized, Prepared, prepare_in_order
from .sources import Fetched, Source
from .store import Known, Store, StoreWriter
from .text import is_utf8

if TYPE_CHECKING:
    from .ingest import IngestContext, Tick

log = logging.getLogger(__name__)


class SourcePass:
    """One source's ingest, committed a batch of 500 writes at a time and at its end (StoreWriter)."""

    def __init__(self, store: Store, source: Source, context: IngestContext, report: BuildReport, tick: Tick) -> None:
        self.store, self.source, self.context, self.report, self.tick = store, source, context, report, tick
        self.live_count = store.live_count(source.name)
        self.any_rows = bool(self.live_count) or store.has_items(source.name)
        self.known: dict[str, Known] = {}  # details, fetched only for items that were read
        # The keys the source listed: those that matched live fingerprints, as it gave them (not
        # copied: an unchanged build of 100,000 files never makes them), and the others (read,
        # or reported as problems); gathered in one set only if a rename or withdrawal asks.
        self.matched: list[Collection[str]] = []
        self.unchanged = 0  # keys in `matched`
        self.read: set[str] = set()
        self._seen: set[str] | None = None
        self.written: set[str] = set()  # read keys now stored as listed (new, changed or the same)
        self.folders: list[tuple[str, str, int, int]] = []  # (name, digest, listed, unchanged)
        self.moved_from: set[str] = set()
        self.explicit_ids: dict[str, str] = {}
        self.guids = GuidCheck(store)
        self.moved: list[tuple[int, str, ReadItem, Article]] = []
        self.stored_before_0009: list[tuple[Known, ReadItem, Article]] = []
        self.id_lost: list[tuple[Known, ReadItem, Article]] = []
        self.scopes: list[ScopeRead] = []  # what a web source said of each of its parts
        self.listed = 0  # items, unchanged ones and problems the source gave
        self.part_items: dict[str, int] = {}  # of those, the ones given before each part read
        self._part_start = 0

    def run(self) -> None:
        signature = self.context.signatures.get(self.source.name, "")
        signature_key = f"reading-signature:{self.source.name}"
        reread = self.store.get_meta(signature_key) != signature
        # After a settings change every item is read again; the content hash then tells which
        # articles really changed.
        fingerprints: Mapping[str, str] = {} if reread else StoredFingerprints(self.store, self.source.name)
        fetched = self.source.fetch(fingerprints)
        if self.source.remote:
            # Read to the end before writing: a site that fails half-way (a page that never
            # comes) then fails before anything is written, and a site that hangs holds no
            # transaction open meanwhile.
            fetched = iter(list(fetched))
        workers = self.context.workers
        later = workers.running if workers is not None else (lambda: False)  # no fork beside the thread
        with self.store.writer(self.context.clock, self.source.name, later) as writer:
            for batch, prepared in self._prepared(fetched):
                self._fetch_known(r.key for r in batch if isinstance(r, (Deferred, SourceItem)))
                results = iter(prepared)
                for result in batch:
                    if isinstance(result, ScopeRead):
                        self._scope_read(result)
                        continue
                    if isinstance(result, SourceWarning):
                        log.warning("%s", result)
                        self.report.warnings.append(str(result))
                        continue
                    if isinstance(result, (Folder, Unchanged)):
                        keys = result.unchanged if isinstance(result, Folder) else result.keys
                        self.listed += len(keys)
                        self.matched.append(keys)  # they matched live fingerprints: all are live
                        self.unchanged += len(keys)
                        self.report.unchanged += len(keys)
                        self.tick(len(keys))
                        if isinstance(result, Folder):
                            self.folders.append((result.name, result.digest, result.listed, len(keys)))
                        continue
                    self.read.add(result.key)
                    self.listed += 1
                    self.tick(1)
                    outcome = result if isinstance(result, ItemProblem) else next(results)
                    if isinstance(outcome, ItemProblem):
                        self._problem(outcome)
                    elif outcome is None:  # a draft: as if the file were not there
                        self.read.discard(result.key)
                    else:
                        self._item(writer, *outcome)
                if len(self.stored_before_0009) >= 8 * CHUNK:
                    self._compare_before_0009(writer)
            self._compare_before_0009(writer)
            self._finish_moves(writer)
            self._withdraw_missing(writer)
            if self.folders:
                # A folder's digest vouches that every item listed in it is stored as listed:
                # it matched, or it was written with its fingerprint. A problem or a draft
                # keeps its folder on the item-by-item path.
                written = Counter(key[: key.rfind("/") + 1] for key in self.written)
                settled = {
                    name: digest
                    for name, digest, listed, unchanged in self.folders
                    if unchanged + written[name] == listed
                }
                stored = fingerprints.digests() if isinstance(fingerprints, StoredFingerprints) else None
                if writer.batches_committed or settled != stored:  # a batch dropped them; else no write
                    writer.set_folder_digests(self.source.name, settled)
        if reread:
            self.store.set_meta(signature_key, signature)

    def _scope_read(self, read: ScopeRead) -> None:
        """A part's outcome; a part read counts the items given since the part before it."""
        self.scopes.append(read)
        if read.error is None:
            self.part_items[read.scope] = self.part_items.get(read.scope, 0) + self.listed - self._part_start
        self._part_start = self.listed

    def _prepared(self, fetched: Iterator[Fetched]) -> Iterator[tuple[list[Fetched], list[Prepared]]]:
        """The fetched results in order, in batches, with their items read and normalized
        (on every core when there are many)."""
        batches: deque[list[Fetched]] = deque()

        def chunks() -> Iterator[list[Deferred | SourceItem]]:
            batch: list[Fetched] = []
            work: list[Deferred | SourceItem] = []
            for result in fetched:
                batch.append(result)
                if isinstance(result, (Deferred, SourceItem)):
                    work.append(result)
                if len(work) >= CHUNK or len(batch) >= 16 * CHUNK:
                    batches.append(batch)
                    yield work
                    batch, work = [], []
            batches.append(batch)
            yield work

        c = self.context
        # A source that can read an item again (files) has its bodies rendered when shown.
        render = getattr(self.source, "read_again", None) is None
        ahead = c.read_ahead(self.source, c.index, c.rules, c.site_url) if c.read_ahead and not render else None
        for prepared in prepare_in_order(chunks(), c.index, c.rules, c.site_url, render, shared=c.workers, ahead=ahead):
            yield batches.popleft(), prepared

    def _fetch_known(self, keys: Iterable[str]) -> None:
        if not self.any_rows:  # a first ingest: nothing to look up
            return
        # A key that is not valid Unicode (a file name's undecodable bytes) was never stored.
        missing = [key for key in keys if key not in self.known and is_utf8(key)]
        if missing:
            self.known.update(self.store.known(self.source.name, missing))

    def _problem(self, problem: ItemProblem) -> None:
        if self.context.strict:
            raise ContentError(problem.location, problem.reason, problem.hint)
        log.warning("skipped %s", problem)
        self.report.skipped += 1
        self.report.problems.append(str(problem))

    def _item(self, writer: StoreWriter, item: ReadItem, article: Normalized) -> None:
        for warning in item.warnings:
            log.warning("%s: %s", item.location or item.key, warning)
        if isinstance(article, NormalizeError):
            self._problem(ItemProblem(item.key, item.location or item.key, article.reason, article.hint))
            return
        if item.explicit_id:
            other = self.explicit_ids.setdefault(item.explicit_id, item.key)
            if other != item.key:
                self._problem(self._duplicate_id(item, other))
                return
        known = self.known.get(item.key)
        if known is None:
            self._new(writer, item, article)
        elif known.explicit_id and known.explicit_id != item.explicit_id:
            # The file at this path no longer carries the stored article's id: decided once
            # the whole folder is seen (that id may have moved to another file with its article).
            self.id_lost.append((known, item, article))
        elif (
            known.content_hash == article.content_hash
            and known.body_hash == article.body_hash
            and not known.withdrawn
            and known.explicit_id == item.explicit_id
        ):
            if known.fingerprint != item.fingerprint:
                writer.set_fingerprint(known.id, item.fingerprint)
            self.written.add(item.key)
            self.report.unchanged += 1
        elif known.body_hash == known.content_hash:  # stored before 0009 (new hashes never match)
            self.stored_before_0009.append((known, item, article))
        else:
            self._changed(writer, known, item, article)

    def _compare_before_0009(self, writer: StoreWriter) -> None:
        """Articles stored before revision 0009 met again (the first build after the upgrade
        reads every file): compared by the hash they were stored with, of their rendered body,
        so one unchanged takes the new hashes and keeps its updated stamp and its rendition
        instead of counting as changed. Their bodies are rendered for this once (files are read
        again for it, on the worker pool)."""
        waiting, self.stored_before_0009 = self.stored_before_0009, []
        if not waiting:
            return
        read_again = getattr(self.source, "read_again", None)
        results: Iterable[Prepared]
        if read_again is None:  # a web source's: rendered as read
            results = [(item, article) for _known, item, article in waiting]
        else:
            c = self.context
            units: list[Deferred | SourceItem] = [read_again(item.key) for _known, item, _article in waiting]
            chunks = [units[start : start + CHUNK] for start in range(0, len(units), CHUNK)]
            # A pool of its own: the pass's reads may still have chunks in flight on the build's
            prepared = prepare_in_order(chunks, c.index, c.rules, c.site_url, True, 0)
            results = (r for chunk in prepared for r in chunk)
        for (known, item, article), result in zip(waiting, results, strict=True):
            if isinstance(result, tuple):
                again, now = result
                if (
                    isinstance(now, Article)
                    and not known.withdrawn
                    and known.explicit_id == item.explicit_id
                    and now.body_hash == article.body_hash
                    and hash_before_0009(again, now) == known.content_hash
                ):
                    updated = replace(now, guid=known.guid, updated=known.updated)
                    writer.replace(known.id, updated, item.explicit_id, item.fingerprint)
                    self.written.add(item.key)
                    self.report.unchanged += 1
                    continue
            self._changed(writer, known, item, article)

    def _new(self, writer: StoreWriter, item: ReadItem, article: Article) -> None:
        if item.explicit_id:
            found = self.store.find_explicit(self.source.name, item.explicit_id)
            if found is not None and found[1] != item.key:
                # Same id under a new path: a rename, once we know the old path is gone.
                self.moved.append((found[0], found[1], item, article))
                return
        guid = article.guid  # made by normalize, on a worker: a cold build's main process writes
        if self.guids.taken(guid):
            self._problem(
                ItemProblem(
                    item.key, item.location, f"its feed id {guid} is already taken", "give the article its own `id`"
                )
            )
            return
        self.guids.add(guid)
        writer.insert(article, guid, item.explicit_id, item.fingerprint)  # first seen: the batch's stamp
        self.written.add(item.key)
        log.info("new %s", item.location or item.key)
        self.report.new += 1

    def _changed(self, writer: StoreWriter, known: Known, item: ReadItem, article: Article) -> None:
        if known.content_hash == article.content_hash:
            # Back after a withdrawal, or only rendered anew ([text] rules): no "updated" noise
            updated = known.updated
        elif item.dated:
            updated = article.updated
        else:
            updated = max(self.context.clock(), article.published)
        writer.replace(known.id, replace(article, guid=known.guid, updated=updated), item.explicit_id, item.fingerprint)
        self.written.add(item.key)
        log.info("changed %s", item.location or item.key)
        self.report.changed += 1

    def _finish_moves(self, writer: StoreWriter) -> None:
        """Renames (an id found under a new path), then paths whose id went elsewhere, then the
        renames those turned up (a file that took the id another file gave up)."""
        lost_at = {item.key for _known, item, _article in self.id_lost}
        self._apply_moves(writer, lost_at)
        for known, item, article in self.id_lost:
            if item.key in self.moved_from:
                self._new(writer, item, article)  # a new article where the moved one was; may move
            else:
                self._changed(writer, known, item, article)  # the same article, its id edited
        self._apply_moves(writer, lost_at)

    def _apply_moves(self, writer: StoreWriter, lost_at: set[str]) -> None:
        while self.moved:
            _row_id, old_key, item, article = self.moved.pop(0)
            if old_key in self.seen() and old_key not in lost_at:
                self._problem(self._duplicate_id(item, old_key))
                continue
            if old_key in self.written:  # that row already took its file's new content
                self._problem(
                    ItemProblem(
                        item.key,
                        item.location,
                        f"id {item.explicit_id!r} came from {old_key}, which took another id in the same build",
                        "build again to file it as a new article; if its feed id is then taken, give it its own `id`",
                    )
                )
                continue
            self._fetch_known([old_key])
            self._changed(writer, self.known.pop(old_key), item, article)
            self.moved_from.add(old_key)

    def _duplicate_id(self, item: ReadItem, other: str) -> ItemProblem:
        return ItemProblem(
            item.key,
            item.location,
            f"id {item.explicit_id!r} is also used by {other}",
            "give each article its own `id`",
        )

    def seen(self) -> set[str]:
        """Every key the source listed (unchanged, read or reported, drafts aside), once it
        listed them all."""
        if self._seen is None:
            self._seen = self.read.union(*self.matched)
        return self._seen

    def _withdraw_missing(self, writer: StoreWriter) -> None:
        if not self.source.complete:
            return
        if self.live_count and not self.unchanged and not self.read:
            raise SourceError(
                f"source {self.source.name!r} has no items now but had {self.live_count}",
                "if the folder really is empty on purpose, remove the source from the config",
            )
        self._fetch_known(self.read)
        seen_live = self.unchanged + sum(1 for key in self.read if key in self.known and not self.known[key].withdrawn)
        if seen_live == self.live_count:
            return  # every live item was seen: nothing to withdraw, and no need to load their ids
        live_ids = self.store.live_ids(self.source.name)
        seen = self.seen()
        missing = [key for key in live_ids if key not in seen and key not in self.moved_from]
        gone = [live_ids[key] for key in missing]
        if gone:
            log.info("withdrawn (gone from %s): %s", self.source.name, ", ".join(missing))
            writer.withdraw(gone)
            self.report.withdrawn += len(gone)
