"""Content sources. Each reads only; normalising and storing happen elsewhere."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from ..model import Deferred, ItemProblem, SourceItem, Unchanged

Fetched = SourceItem | Deferred | Unchanged | ItemProblem


class Source(Protocol):
    """What ingest needs from a source.

    `fetch` yields a result for every item it knows: the item (or a `Deferred` read of it,
    which ingest may run on another core), `Unchanged` (for many keys at once) when their
    fingerprints equal those in `fingerprints` (key -> fingerprint from the last ingest), or
    an `ItemProblem`. `complete` says whether the scan saw every item, so that items missing
    from it may be withdrawn. A source that cannot be read at all raises SourceError. A
    source may also have `committed()`, called once what it yielded is stored (web sources
    keep their HTTP validators only then).
    """

    name: str
    complete: bool

    def fetch(self, fingerprints: Mapping[str, str]) -> Iterator[Fetched]: ...
