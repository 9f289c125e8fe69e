"""The process `build_ahead` forks: what it works out (the walk, the slugs, the files read) and
the records it writes them in, each a length and a pickle, in memory files the build reads when
it ends the process (`records`: a record cut short by the kill is left out)."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import struct
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Category
    from .normalize import CategoryIndex, TextRules
    from .parallel import ReadAhead
    from .sources.files import FilesSource
    from .sources.walk import WalkedFolder

# The build ends the walk ahead when its ingest begins, about a third of a second in: some 50,000
# files on the machine we measure on. A build whose start takes much longer (a slow machine, a
# remote store) finds at most this many walked, some 50 bytes each in the memory file.
MOST_FILES = 300_000
MOST_READ = 20_000  # files read ahead at most: a build that starts in time reads a few thousand
_FRAME = struct.Struct("!Q")  # the length of one record (a folder, or a chunk of files read)


def work_ahead(
    answer: int, orders: int, folders: int, reads: int, roots: list[str], parent: int, slugs_likely: bool, until: float
) -> None:
    """The forked process's work: the walk, the slugs it is told to make (answered as soon as
    it is told), the files it is told to read (until the build ends it, or `until`, a
    monotonic time past which the build would not take them). While it waits to be told, it
    loads what that work takes (pypinyin's dictionaries when some category is likely to need
    a slug, the modules that read a file). It imports what makes a slug itself, after the fork:
    the build then forks 20 ms sooner (the regular expressions of `text`)."""
    from .text import slugify

    if slugs_likely:
        slugify("一")  # what makes a slug: most of it is loading pypinyin's dictionaries
    told = _Orders(orders, answer)
    # Answered on a thread of its own as soon as told, even in the middle of a folder of
    # 100,000 files: the build may be waiting for the slugs (the stat calls let it run).
    answering = threading.Thread(target=told.answer, name="answer-orders", daemon=True)
    answering.start()
    walked = walk_into(folders, roots, parent)
    if answering.is_alive():  # the build is still validating its settings
        from . import parallel  # noqa: F401 - what reading files takes
        from .sources import files  # noqa: F401
    answering.join()
    if told.reading is not None:
        from dataclasses import replace

        from .normalize import CategoryIndex

        source, categories, rules, site_url = told.reading
        made = told.made
        index = CategoryIndex([replace(c, slug=c.slug or made.get(c.name) or slugify(c.name)) for c in categories])
        read_into(reads, source, index, rules, site_url, walked, parent, until)


class _Orders:
    """What the build tells the process (`BuildAhead.told`): the names to make slugs of, and
    what to read the files with (or None), pickled and written whole before the build closes
    its end; anything that does not unpickle (the build's end closed early) orders nothing."""

    def __init__(self, orders: int, answer: int) -> None:
        self.orders, self.answer_to = orders, answer
        self.made: dict[str, str] = {}
        self.reading: tuple[FilesSource, list[Category], TextRules, str] | None = None

    def answer(self) -> None:
        """Read the orders (waiting for them) and answer the slugs at once."""
        from .text import slugify  # imported already by `work_ahead`

        with open(self.orders, "rb") as pipe:
            given = pipe.read()  # to its end: the build closes its end once it has written them
        names: list[str] = []
        try:
            names, self.reading = pickle.loads(given) if given else ([], None)
        except Exception:  # noqa: BLE001 - cut short: nothing ordered, the build does it all itself
            names, self.reading = [], None
        self.made = {name: slugify(name) for name in names}
        with contextlib.suppress(OSError), open(self.answer_to, "wb") as pipe:  # the build gone: none to answer
            pipe.write(json.dumps(self.made).encode())


def memory_file(name: str) -> int:
    """An anonymous file for the folders walked or the files read: in memory where the system
    has memfd_create."""
    with contextlib.suppress(AttributeError, OSError):  # none here, or refused (an old kernel, a sandbox)
        return os.memfd_create(f"publisher-{name}", os.MFD_CLOEXEC)
    import tempfile

    with tempfile.TemporaryFile() as file:  # created 0600 and unlinked at once
        return os.dup(file.fileno())


def walk_into(fd: int, roots: list[str], parent: int, most: int = MOST_FILES) -> dict[str, list[WalkedFolder]]:
    """Each folder of each root, as `walk_ahead` gives it, one record after the other, until the
    folders written hold `most` files or the build's process (`parent`) is gone; returned too."""
    from .sources.files import CONTENT_SUFFIXES
    from .sources.walk import walk_ahead

    files = 0
    walked: dict[str, list[WalkedFolder]] = {}
    for root in roots:
        for folder in walk_ahead(root, CONTENT_SUFFIXES):
            data = pickle.dumps((root, folder), pickle.HIGHEST_PROTOCOL)
            if not _write(fd, data):
                return walked
            walked.setdefault(root, []).append(folder)
            files += len(folder.names)
            if files >= most or os.getppid() != parent:
                return walked
    return walked


def _write(fd: int, data: bytes) -> bool:
    """One record; False when it could not be written whole (a full disk: the record cut short
    ends what is read, as a kill cuts the last one)."""
    return os.writev(fd, [_FRAME.pack(len(data)), data]) == _FRAME.size + len(data)


def read_into(
    fd: int,
    source: FilesSource,
    index: CategoryIndex,
    rules: TextRules,
    site_url: str,
    walked: dict[str, list[WalkedFolder]],
    parent: int,
    until: float,
    most: int = MOST_READ,
) -> None:
    """The source's files read as the build's workers read them (`prepare_all`, bodies left
    unrendered), in the order its walk gives them, a chunk to a record, after a first record
    that says what they were read with; until `most` are read, the build's process is gone or
    `until` has passed."""
    from .model import Deferred, SourceItem
    from .parallel import CHUNK, prepare_all

    source.walked_ahead = lambda root: walked.pop(root, [])
    context = (source.__getstate__(), index.categories, rules, site_url)
    if not _write(fd, pickle.dumps(context, pickle.HIGHEST_PROTOCOL)):
        return

    def written(chunk: list[Deferred | SourceItem]) -> bool:
        prepared = prepare_all(chunk, index, rules, site_url, render=False)
        data = [(u.key, (u.fingerprint, u.location), p) for u, p in zip(chunk, prepared, strict=True)]
        return _write(fd, pickle.dumps(data, pickle.HIGHEST_PROTOCOL))

    chunk: list[Deferred | SourceItem] = []
    done = 0
    for unit in source.fetch({}):
        if isinstance(unit, Deferred):
            chunk.append(unit)
        if len(chunk) == CHUNK:
            if not written(chunk):
                return
            done += len(chunk)
            chunk = []
            if done >= most or os.getppid() != parent or time.monotonic() > until:
                return
    if chunk:
        written(chunk)


def read_reads(fd: int) -> tuple[object, dict[str, ReadAhead]]:
    """What the reads were made with, and the files read, by key, from the records written whole."""
    records = _records(fd)
    if not records:
        return None, {}
    reads = {key: (listed, prepared) for record in records[1:] for key, listed, prepared in record}
    return records[0], reads


def read_folders(fd: int) -> dict[str, list[WalkedFolder]]:
    """The folders walked, by root, in order."""
    folders: dict[str, list[WalkedFolder]] = {}
    for root, folder in _records(fd):
        folders.setdefault(root, []).append(folder)
    return folders


def _records(fd: int) -> list[Any]:
    """The records written whole, in order; one cut short (the process was ended while it wrote
    it), one that does not read, and what follows them are left out."""
    data = memoryview(os.pread(fd, os.fstat(fd).st_size, 0))
    records: list[Any] = []
    at = 0
    while at + _FRAME.size <= len(data):
        (size,) = _FRAME.unpack_from(data, at)
        start, at = at + _FRAME.size, at + _FRAME.size + size
        if at > len(data):
            break
        try:
            records.append(pickle.loads(data[start:at]))
        except Exception:  # noqa: BLE001 - whatever it is, the build does that part itself
            break
    return records
