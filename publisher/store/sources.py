"""What the store keeps about the web and files sources themselves, besides their articles: each
part's health (last success, last error, for `publisher status` and `/healthz`), the items that
failed and wait with backoff, and the HTTP validators of the pages read."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine

from ..model import ScopeRead
from ..sources.failed_items import FailedItem
from .schema import (
    VALIDATOR_URL_BYTES,
    aware_utc,
    http_validators_table,
    naive_utc,
    source_failures_table,
    source_health_table,
)

log = logging.getLogger(__name__)

WHOLE_SOURCE = ""  # the scope of a source as a whole
FAILED_KEY_BYTES = 1000  # a failed item's key longer than this is not kept (it is asked for each run)
_CHUNK = 500  # keys per IN (...) list


@dataclass(frozen=True, slots=True)
class ScopeHealth:
    """One part of a source as its last runs left it; `scope` "" is the source as a whole.
    `failures`: the runs in a row whose read of the part failed (0: the last one read it)."""

    source: str
    scope: str
    last_success: datetime | None  # UTC
    items: int | None  # what the part listed at its last success
    last_error_at: datetime | None  # UTC
    last_error: str | None
    last_error_url: str | None
    last_hint: str | None
    failures: int

    @property
    def failing(self) -> bool:
        """The part's last run failed."""
        return self.failures > 0


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """A configured source: its parts as the last runs left them (the source as a whole
    first; none before its first ingest), and how many of its failed items wait for a retry."""

    name: str
    parts: tuple[ScopeHealth, ...]
    failed_items: int

    @property
    def failing(self) -> bool:
        """The source's, or one of its parts', last run failed."""
        return any(part.failing for part in self.parts)


class SourceStateStore:
    """The Store's source health, failed items and HTTP validators."""

    engine: Engine

    # --- health ---------------------------------------------------------------------------

    def record_health(
        self,
        source: str,
        reads: Sequence[ScopeRead],
        at: datetime,
        items: Mapping[str, int] | None = None,
        every_part: bool = False,
    ) -> None:
        """What a run said of `source`'s parts: a read part gets `at` as its last success (and
        `items[scope]`), a failed one its last error; a part read twice in one run failed if
        either read did. `every_part`: the run reported every part the source has, so the
        parts it did not name (a category taken out of the configuration) are forgotten."""
        outcome: dict[str, ScopeRead] = {}
        for read in reads:
            if read.scope not in outcome or (read.error is not None and outcome[read.scope].error is None):
                outcome[read.scope] = read
        h, moment = source_health_table.c, naive_utc(at)
        with self.engine.begin() as conn:
            existing = set(conn.execute(select(h.scope).where(h.source == source)).scalars())
            for scope, read in outcome.items():
                values: dict[str, object]
                if read.error is None:
                    values = {"last_success": moment, "items": (items or {}).get(scope), "failures": 0}
                else:
                    values = {"last_error_at": moment, "last_error": read.error, "last_error_url": read.url or None,
                              "last_hint": read.hint or None}  # fmt: skip
                if scope in existing:
                    if read.error is not None:
                        values["failures"] = h.failures + 1
                    conn.execute(update(source_health_table).where(h.source == source, h.scope == scope).values(values))
                else:
                    values["failures"] = 0 if read.error is None else 1
                    conn.execute(insert(source_health_table).values(source=source, scope=scope, **values))
            if every_part:
                gone = existing - set(outcome)
                for chunk in _chunks(sorted(gone)):
                    conn.execute(delete(source_health_table).where(h.source == source, h.scope.in_(chunk)))

    def source_health(self) -> list[ScopeHealth]:
        """Every part of every source the store has heard of, by source, the whole source first."""
        with self.engine.connect() as conn:
            found = conn.execute(select(source_health_table)).all()
        rows = sorted(found, key=lambda row: (row.source, row.scope))  # by code point, whatever the collation
        return [
            ScopeHealth(
                row.source, row.scope, _aware(row.last_success), row.items, _aware(row.last_error_at), row.last_error,
                row.last_error_url, row.last_hint, row.failures,
            )
            for row in rows
        ]  # fmt: skip

    def health_of_sources(self, names: Sequence[str]) -> list[SourceHealth]:
        """The sources named (the configured ones), in that order: two queries."""
        parts: dict[str, list[ScopeHealth]] = {}
        for part in self.source_health():
            parts.setdefault(part.source, []).append(part)
        waiting = self.failed_item_counts()
        return [SourceHealth(name, tuple(parts.get(name, ())), waiting.get(name, 0)) for name in names]

    def forget_sources_except(self, kept: Collection[str]) -> None:
        """Health, failed items and validators of every source not in `kept` (one taken out of
        the configuration, or renamed) go."""
        with self.engine.begin() as conn:
            for table in (source_health_table, source_failures_table, http_validators_table):
                conn.execute(delete(table).where(table.c.source.not_in(list(kept))))

    # --- failed items ---------------------------------------------------------------------

    def failed_items(self, source: str) -> dict[str, FailedItem]:
        f = source_failures_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(source_failures_table).where(f.source == source)).all()
        return {
            row.key: FailedItem(
                row.key, row.url, row.failures, aware_utc(row.first_failed), aware_utc(row.last_failed),
                aware_utc(row.next_try), row.reason,
            )
            for row in rows
        }  # fmt: skip

    def save_failed_items(self, source: str, upserts: Sequence[FailedItem], cleared_keys: Sequence[str]) -> None:
        """One run's changes in one transaction: `upserts` kept as they are now, `cleared_keys`
        (read at last) forgotten. A key too long for the table is left out, and logged."""
        f = source_failures_table.c
        kept = []
        for item in upserts:
            if len(item.key.encode()) > FAILED_KEY_BYTES:
                log.info("%s: not remembered as failed (a key over %d bytes)", item.url[:200], FAILED_KEY_BYTES)
            else:
                kept.append(item)
        with self.engine.begin() as conn:
            for chunk in _chunks([*cleared_keys, *(item.key for item in kept)]):
                conn.execute(delete(source_failures_table).where(f.source == source, f.key.in_(chunk)))
            if kept:
                conn.execute(
                    insert(source_failures_table),
                    [
                        {"source": source, "key": i.key, "url": i.url, "failures": i.failures,
                         "first_failed": naive_utc(i.first_failed), "last_failed": naive_utc(i.last_failed),
                         "next_try": naive_utc(i.next_try), "reason": i.reason}
                        for i in kept
                    ],
                )  # fmt: skip

    def forget_failed_items(self, source: str, key: str | None = None) -> int:
        """Forget one failed item of `source` (or all of them), so the next run asks for it
        again; how many were forgotten."""
        f = source_failures_table.c
        query = delete(source_failures_table).where(f.source == source)
        with self.engine.begin() as conn:
            return conn.execute(query if key is None else query.where(f.key == key)).rowcount

    def failed_item_counts(self) -> dict[str, int]:
        """source -> how many of its items wait to be tried again."""
        f = source_failures_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(f.source, func.count()).group_by(f.source)).all()
        return {source: count for source, count in rows}

    # --- HTTP validators ------------------------------------------------------------------

    def http_validators(self, source: str, url: str) -> dict[str, str]:
        """The `ETag` and `Last-Modified` kept for `url` as `source` read it ({} if none)."""
        v = http_validators_table.c
        with self.engine.connect() as conn:
            row = conn.execute(select(v.etag, v.last_modified).where(v.source == source, v.url == url)).first()
        if row is None:
            return {}
        found = {"ETag": row.etag, "Last-Modified": row.last_modified}
        return {name: value for name, value in found.items() if value}

    def save_http_validators(self, source: str, validators: Mapping[str, Mapping[str, str]]) -> None:
        """Keep `url -> {"ETag": …, "Last-Modified": …}` for `source`, replacing what was kept,
        in one transaction. A URL too long for the table is left out (it is read in full)."""
        v = http_validators_table.c
        urls = [url for url in validators if len(url.encode()) <= VALIDATOR_URL_BYTES]
        rows = [
            {"source": source, "url": url, "etag": validators[url].get("ETag"),
             "last_modified": validators[url].get("Last-Modified")}
            for url in urls
        ]  # fmt: skip
        with self.engine.begin() as conn:
            for chunk in _chunks(urls):
                conn.execute(delete(http_validators_table).where(v.source == source, v.url.in_(chunk)))
            if rows:
                conn.execute(insert(http_validators_table), rows)


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else aware_utc(moment)


def _chunks(keys: Sequence[str]) -> Iterator[list[str]]:
    it = iter(keys)
    while chunk := list(islice(it, _CHUNK)):
        yield chunk
