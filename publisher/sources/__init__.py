"""Content sources. Each reads only; normalising and storing happen elsewhere."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from ..model import ItemProblem, SourceItem, Unchanged

Fetched = SourceItem | Unchanged | ItemProblem


class Source(Protocol):
    """What ingest needs from a source.

    `fetch` yields one result per item it knows: the item, `Unchanged` when its fingerprint
    equals the one in `fingerprints` (key -> fingerprint from the last ingest), or an
    `ItemProblem`. `complete` says whether the scan saw every item, so that items missing
    from it may be withdrawn. A source that cannot be read at all raises SourceError.
    """

    name: str
    complete: bool

    def fetch(self, fingerprints: Mapping[str, str]) -> Iterator[Fetched]: ...
