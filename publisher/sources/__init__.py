"""Content sources. Each reads only; normalising and storing happen elsewhere."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping
from typing import Protocol

from ..errors import SourceError
from ..model import Deferred, Folder, ItemProblem, ScopeRead, SourceItem, SourceWarning, Unchanged

Fetched = SourceItem | Deferred | Unchanged | ItemProblem | Folder | ScopeRead | SourceWarning


class PartFailed(SourceError):
    """A part of a web source could not be read where `check` reached it (a `json` list URL's
    first page, a WordPress site's): `read` says which, to be worded as `build` words it."""

    def __init__(self, read: ScopeRead) -> None:
        super().__init__(read.error or "", read.hint)
        self.read = read


def failed_part_message(source: str, read: ScopeRead) -> str:
    """How a part that failed is worded, by `build` and `check` alike: `site (政策解读) <URL>:
    <error>` and its hint (the part is not repeated when it is the URL, as a json source's list
    URL is; nor the URL when the error starts with it)."""
    error = read.error or ""
    where = "" if error.startswith(read.url) else f"{read.url}: "
    part = f"{source} ({read.scope}) " if read.scope != read.url else f"{source} "
    return str(SourceError(f"{part}{where}{error}", read.hint))


class FolderFingerprints(Mapping[str, str]):
    """The fingerprints of the last ingest (key -> fingerprint of every live item), which a
    source that lists folders may also ask for by folder: the stored digest of a folder
    (see `Folder`), and the fingerprints of the items directly in it."""

    @abstractmethod
    def digest(self, folder: str) -> str | None: ...

    @abstractmethod
    def in_folder(self, folder: str) -> Mapping[str, str]: ...


class Source(Protocol):
    """What ingest needs from a source.

    `fetch` yields a result for every item it knows: the item (or a `Deferred` read of it,
    which ingest may run on another core), `Unchanged` (for many keys at once) when their
    fingerprints equal those in `fingerprints` (key -> fingerprint from the last ingest), or
    an `ItemProblem`; a `SourceWarning` says what it noticed that costs no item. A source that
    lists folders yields a `Folder` for each, and, when `fingerprints` is a
    `FolderFingerprints`, may take a folder whose digest is unchanged as unchanged as a whole.
    `complete` says whether the scan saw every item, so that items missing
    from it may be withdrawn. `remote`: its items come over the network, so reading them may
    take minutes (or hang until a timeout); ingest reads them all before it writes (its
    page limits keep them few). A source that can read one item again by its key, cheaply
    (files), has `read_again(key)`, a `Deferred` read: its articles are stored with their bodies unrendered and
    rendered when a feed, page or digest first shows them (`app.sources.render_bodies`); the
    others' are rendered as they are read. A source that cannot be read at all raises SourceError. A
    source may also have `committed()`, called once what it yielded is stored (web sources
    keep their HTTP validators only then).
    """

    name: str
    complete: bool
    remote: bool

    def fetch(self, fingerprints: Mapping[str, str]) -> Iterator[Fetched]: ...
