"""What an ingest pass asks the store only as it needs it: the stored fingerprints of a
source's items (all at once, or folder by folder once folder digests exist), and whether a new
guid is free."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .sources import FolderFingerprints
from .store import Store


class StoredFingerprints(FolderFingerprints):
    """The fingerprints of a source's live items, read from the store only as asked: all at
    once (as a mapping, for web sources), or folder by folder once folder digests exist, so
    an incremental build of a large tree reads only the fingerprints of the folders that
    changed."""

    def __init__(self, store: Store, source: str) -> None:
        self.store, self.source = store, source
        self._all: dict[str, str] | None = None
        self._digests: dict[str, str] | None = None

    def _everything(self) -> dict[str, str]:
        if self._all is None:
            self._all = {key: fp for key, fp in self.store.fingerprints(self.source).items() if fp}
        return self._all

    def __getitem__(self, key: str) -> str:
        return self._everything()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._everything())

    def __len__(self) -> int:
        return len(self._everything())

    def digests(self) -> dict[str, str]:
        """folder -> the digest stored for it."""
        if self._digests is None:
            self._digests = self.store.folder_digests(self.source)
        return self._digests

    def digest(self, folder: str) -> str | None:
        return self.digests().get(folder)

    def in_folder(self, folder: str) -> Mapping[str, str]:
        if self._all is not None or not self._digests:  # no digests yet: one query for all
            return self._everything()
        return {key: fp for key, fp in self.store.fingerprints(self.source, folder).items() if fp}


class GuidCheck:
    """Is a new guid free? Asked of a store without articles once (a first build: each of its
    first 64 look-ups took 0.2 ms), else a few look-ups one by one (an incremental build), the
    whole set once many new articles arrive (a cold build after a settings change)."""

    LOOKUPS = 64

    def __init__(self, store: Store) -> None:
        self.store = store
        self.everything: set[str] | None = None
        self.new: set[str] = set()
        self.lookups = 0

    def taken(self, guid: str) -> bool:
        if guid in self.new:
            return True
        if self.everything is None and self.lookups == 0 and not self.store.has_articles():
            self.everything = set()  # none stored before; those added since are `new`
        if self.everything is None:
            self.lookups += 1
            if self.lookups <= self.LOOKUPS:
                return self.store.guid_exists(guid)
            self.everything = self.store.guids()
        return guid in self.everything

    def add(self, guid: str) -> None:
        self.new.add(guid)
