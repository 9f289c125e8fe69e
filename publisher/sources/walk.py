"""Walking a files source's folders: one stat per file, the big folders' on the build's workers.

An incremental build of 100,000 files costs one stat per file and little else (folder digests,
docs/architecture.md), so the stat calls are what grows with a site: 100,000 of them take
0.2 s of CPU here (two thirds of it in the kernel), and the Python around them half as much
again. A folder of thousands of files is therefore stat'ed in chunks on the build's worker
processes, each chunk coming back as the very text its folder's digest sums up (one bytes
object: pickling it is nearly free), while this process lists the next folders. A small
tree, and every small folder, is stat'ed here: a pool is not worth starting for it.
"""

from __future__ import annotations

import hashlib
import os
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import CancelledError, Future
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple, Protocol, TypeVar

PARALLEL_FROM = 2048  # a folder of this many files is stat'ed on the workers, in chunks of as many
WINDOW = 4  # chunks in flight per worker: this process lists the next folders meanwhile

BY_FD = os.scandir in os.supports_fd and os.stat in os.supports_dir_fd

T = TypeVar("T")
Stats = tuple[bytes, tuple[str, ...]]  # a chunk's listing text and the names that vanished from it


class WalkedFolder(NamedTuple):
    """A folder listed and stat'ed ahead (`walk_ahead`), as `walk` takes it up."""

    folder: str
    prefix: str  # its files' key prefix
    subfolders: tuple[str, ...]  # in name order
    names: list[str]  # its content files, in name order
    text: bytes  # the listing text of `stat_names`
    vanished: tuple[str, ...]  # names gone before their stat


class WalkPool(Protocol):
    """The build's worker processes, as the walk uses them (parallel.Workers' pool): how many
    (1: none, the work is done here), and a task handed to one of them; a pool broken since
    its last use gives a future that raises BrokenProcessPool."""

    @property
    def size(self) -> int: ...

    def submit(self, task: Callable[..., T], /, *args: object) -> Future[T]: ...


class Listing:
    """One folder's content files in name order with their fingerprints (mtime and size, or
    `unreadable:<errno>`), kept as the text its digest sums up: "name<TAB>fingerprint" lines
    joined by newlines, in one or more chunks. A folder whose digest matched is never split
    into pairs (`files`): its keys are given as they are asked for (`keys`)."""

    __slots__ = ("names", "texts", "vanished")

    def __init__(self, names: list[str], parts: list[Stats]) -> None:
        self.names = names  # sorted: the listing's order, and `ListedKeys`' bisection
        self.texts = [text for text, _gone in parts]
        self.vanished = frozenset(name for _text, gone in parts for name in gone)

    def __len__(self) -> int:
        return len(self.names) - len(self.vanished)

    def digest(self) -> str:
        """The blake2b of the whole text, one chunk after the other: what it was when the
        listing was one string (digests stored by earlier versions stay valid)."""
        summed = hashlib.blake2b(digest_size=16)
        started = False
        for text in self.texts:
            if text:  # a chunk whose files all vanished has no lines
                if started:
                    summed.update(b"\n")
                summed.update(text)
                started = True
        return summed.hexdigest()

    def files(self) -> list[tuple[str, str]]:
        """(name, fingerprint) of each file listed. Read through the names, in order: a name
        may hold a tab or a newline, a fingerprint never does."""
        text = "\n".join([chunk.decode("utf-8", "surrogateescape") for chunk in self.texts if chunk])
        vanished = self.vanished
        files: list[tuple[str, str]] = []
        start = 0
        for name in self.names:
            if vanished and name in vanished:
                continue
            start += len(name) + 1
            end = text.find("\n", start)
            end = len(text) if end < 0 else end
            files.append((name, text[start:end]))
            start = end + 1
        return files

    def keys(self, prefix: str) -> ListedKeys:
        return ListedKeys(prefix, self.names, self.vanished)


class ListedKeys(Collection[str]):
    """The keys of a folder's files, made only when iterated (100,000 of them are a tenth of
    an unchanged build); asking whether one is there is a bisection of the sorted names."""

    __slots__ = ("names", "prefix", "vanished")

    def __init__(self, prefix: str, names: list[str], vanished: frozenset[str]) -> None:
        self.prefix, self.names, self.vanished = prefix, names, vanished

    def __len__(self) -> int:
        return len(self.names) - len(self.vanished)

    def __iter__(self) -> Iterator[str]:
        prefix, vanished = self.prefix, self.vanished
        return (prefix + name for name in self.names if not (vanished and name in vanished))

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str) or not key.startswith(self.prefix):
            return False
        name = key[len(self.prefix) :]
        at = bisect_left(self.names, name)
        return at < len(self.names) and self.names[at] == name and name not in self.vanished


def stat_names(folder: str, fd: int | None, names: list[str]) -> Stats:
    """The listing text of `names` (in `folder`, open as `fd` where stat() takes a folder): a
    file that vanished since the folder was listed is left out (and named), one that cannot be
    looked at (a link to itself) is listed as unreadable, so that reading it reports it.

    stat() by name through the open folder is an fstatat, no path resolution: a third less
    than DirEntry.stat(). At 100,000 files each microsecond here is a tenth of a second."""
    stat = os.stat
    lines: list[str] = []
    line = lines.append
    vanished: list[str] = []
    for name in names:
        try:
            st = stat(name, dir_fd=fd) if fd is not None else stat(os.path.join(folder, name))
        except FileNotFoundError:
            vanished.append(name)
            continue
        except OSError as exc:  # never matches a stored fingerprint: read, and reported
            line(f"{name}\tunreadable:{exc.errno}")
            continue
        line(f"{name}\t{st.st_mtime_ns}:{st.st_size}")
    return "\n".join(lines).encode("utf-8", "surrogateescape"), tuple(vanished)


def stat_in_worker(folder: str, identity: tuple[int, int], names: list[str]) -> Stats:
    """`stat_names` in a worker process, through a folder it opens again; one that is not the
    folder listed any more (renamed, replaced) raises, and the walk stats the chunk itself."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != identity:
            raise FileNotFoundError(f"{folder} is not the folder listed any more")
        return stat_names(folder, fd, names)
    finally:
        os.close(fd)


class _Folder:
    """A folder listed, its files stat'ed here or being stat'ed in chunks on the workers."""

    def __init__(self, folder: str, fd: int | None, names: list[str], parts: list[Stats] | None = None) -> None:
        self.folder, self.fd, self.names = folder, fd, names
        self.parts: list[Stats] = parts or []  # given: stat'ed ahead (walk_ahead)
        self.chunks: list[tuple[list[str], Future[Stats]]] = []

    def stat_here(self) -> None:
        try:
            self.parts = [stat_names(self.folder, self.fd, self.names)]
        finally:
            self.close()

    def submit(self, pool: WalkPool, size: int) -> None:
        """Its names in chunks of `size` to the workers; the folder stays open meanwhile."""
        assert self.fd is not None
        st = os.fstat(self.fd)
        identity = (st.st_dev, st.st_ino)
        for start in range(0, len(self.names), size):
            chunk = self.names[start : start + size]
            self.chunks.append((chunk, pool.submit(stat_in_worker, self.folder, identity, chunk)))

    def ready(self) -> bool:
        return all(future.done() for _chunk, future in self.chunks)

    def listing(self) -> Listing:
        """The folder's listing, its chunks in order. A chunk the workers could not stat (a
        worker died, the pool was closed, the folder moved) is stat'ed here, through the
        folder opened when it was listed, as though no worker had been asked."""
        try:
            for chunk, future in self.chunks:
                try:
                    self.parts.append(future.result())
                except (BrokenProcessPool, CancelledError, OSError):
                    self.parts.append(stat_names(self.folder, self.fd, chunk))
            return Listing(self.names, self.parts)
        finally:
            self.close()

    def close(self) -> None:
        fd, self.fd = self.fd, None  # given up before it is closed: an interrupt never closes it twice
        if fd is not None:
            os.close(fd)


def walk(
    root: str,
    suffixes: tuple[str, ...],
    pool: WalkPool | None = None,
    parallel_from: int = PARALLEL_FROM,
    ahead: Sequence[WalkedFolder] = (),
) -> Iterator[tuple[str, str, Listing | OSError]]:
    """(folder, key prefix, listing) for every folder under `root`, folders depth first in
    name order; a folder that cannot be listed comes with the error instead (the root's too:
    the caller decides). Files whose names end in one of `suffixes` (lower case) only; names
    starting with . or _ are skipped, and a link to a folder is not followed (a link to a
    parent would loop).

    `ahead`: the first folders of this walk, listed and stat'ed already by `walk_ahead` (in a
    build's process forked while it loads: build_ahead.py), taken as they are while they are
    this walk's next; the walk goes on from where they end. With a pool of more than one
    worker, a folder of `parallel_from` files or more is stat'ed there in chunks of that many,
    while this process lists (and stats the small folders) ahead, up to `WINDOW` chunks or
    folders a worker; the listings still come in walk order."""
    workers = pool if pool is not None and pool.size > 1 and BY_FD else None
    window = WINDOW * workers.size if workers is not None else 0
    waiting: deque[tuple[str, str, _Folder | OSError]] = deque()
    units = 0  # chunks on the workers and folders stat'ed here, in `waiting`
    try:
        for folder, prefix, listed, _subfolders in _folders(root, suffixes, ahead):
            waiting.append((folder, prefix, listed))
            if isinstance(listed, _Folder) and not listed.parts:  # not stat'ed ahead
                if workers is not None and len(listed.names) >= parallel_from:
                    listed.submit(workers, parallel_from)
                else:
                    listed.stat_here()
            units += _units(listed)
            while waiting and (units > window or _ready(waiting[0][2])):
                folder, prefix, first = waiting.popleft()
                units -= _units(first)
                yield folder, prefix, first.listing() if isinstance(first, _Folder) else first
        while waiting:
            folder, prefix, first = waiting.popleft()
            yield folder, prefix, first.listing() if isinstance(first, _Folder) else first
    finally:  # the walk left early: close the folders still open
        for _folder, _prefix, left in waiting:
            if isinstance(left, _Folder):
                left.close()


def _units(listed: _Folder | OSError) -> int:
    return max(1, len(listed.chunks)) if isinstance(listed, _Folder) else 1


def _ready(listed: _Folder | OSError) -> bool:
    return not isinstance(listed, _Folder) or listed.ready()


def walk_ahead(root: str, suffixes: tuple[str, ...]) -> Iterator[WalkedFolder]:
    """`root`'s folders listed and stat'ed here, in walk order, each with its sub-folders: what
    `walk` takes as `ahead`. It ends before the first folder that cannot be listed, which the
    walk then lists, and reports, itself."""
    for folder, prefix, listed, folders in _folders(root, suffixes):
        if not isinstance(listed, _Folder):
            return
        listed.stat_here()
        [(text, vanished)] = listed.parts
        yield WalkedFolder(folder, prefix, tuple(folders), listed.names, text, vanished)


def _folders(
    root: str, suffixes: tuple[str, ...], ahead: Sequence[WalkedFolder] = ()
) -> Iterator[tuple[str, str, _Folder | OSError, list[str]]]:
    """Every folder listed (open, its files not stat'ed yet, unless walked `ahead`), with its
    sub-folders, depth first in name order."""
    stack = [(root, "")]
    given = deque(ahead)
    while stack:
        folder, prefix = stack.pop()
        if given and (given[0].folder, given[0].prefix) == (folder, prefix):
            walked = given.popleft()
            listed: _Folder | OSError = _Folder(folder, None, walked.names, [(walked.text, walked.vanished)])
            folders = list(walked.subfolders)
        else:
            given.clear()  # not this walk's next folder: what follows is listed here
            try:
                listed, folders = _list(folder, suffixes)
            except OSError as exc:
                yield folder, prefix, exc, []
                continue
        stack.extend((os.path.join(folder, name), f"{prefix}{name}/") for name in reversed(folders))
        yield folder, prefix, listed, folders


def _list(folder: str, suffixes: tuple[str, ...]) -> tuple[_Folder, list[str]]:
    """A folder's content files and its sub-folders, each in name order, the folder left open."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if BY_FD else None
    try:
        names: list[str] = []
        folders: list[str] = []
        with os.scandir(fd if fd is not None else folder) as entries:
            for entry in entries:
                name = entry.name
                if name[0] in "._":
                    continue
                if name.lower().endswith(suffixes):
                    try:
                        is_file = entry.is_file()  # from the listing's file type: no system call
                    except OSError:  # a link to itself, a loop of links: reading it says what
                        is_file = True
                    if is_file:
                        names.append(name)
                elif entry.is_dir(follow_symlinks=False):
                    folders.append(name)
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    names.sort()
    folders.sort()
    return _Folder(folder, fd, names), folders
