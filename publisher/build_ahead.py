"""What a build does ahead, in one forked process, while it imports SQLAlchemy and opens the store.

A build's start (SQLAlchemy and the store, about a third of a cold build of 10,000 articles) runs
on one core. Right after the configuration is read, a build forks one process that works on the
other core meanwhile:

1. the slugs of its categories (`text.slugify`: pypinyin reads a 2.5 MB phrase dictionary whole
   the first time it is used, 0.1-0.2 s), unless the store is a SQLite file that exists, which
   has them already;
2. the walk of each `files` source's folders (`walk.walk_ahead`): each folder listed and each
   file stat'ed, folder after folder, into a memory file. At 100,000 files the walk is what an
   incremental build spends most of its time on (docs/architecture.md).

The build asks for the slugs when it syncs its categories, and for a source's folders when the
ingest of its first files source begins: it then ends the process, takes the folders it
finished, and walks the rest itself (`walk.walk(..., ahead=...)`). A folder walked ahead is what
the build's own walk would have found a little earlier, at most `FRESH_FOR` seconds (a files
source whose ingest begins later, after a web source or another files source, is walked by the
build itself). A
file changed in between is read as it is now under the fingerprint it had then, so the next
build sees the change and reads it again; one removed in between is reported as unreadable, as
one removed between the stat and the read of any walk is.

The forked process only computes; it writes its slugs to a pipe and its folders to the memory
file, and ends with `os._exit` (when the build's process is gone, after the folder it is on).
Whatever goes wrong with it (no fork on this platform, another thread running, the process
killed, an answer cut short or that does not parse), the slugs are made and the folders walked
here, as before: the outcome is the same either way, only the time differs."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import struct
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .text import slugify

if TYPE_CHECKING:
    from .config import Settings
    from .sources.walk import WalkedFolder

FRESH_FOR = 2.0  # seconds from the fork: folders walked ahead are given no later than this
# The build ends the walk ahead when its ingest begins, about a third of a second in: some 50,000
# files on the machine we measure on. A build whose start takes much longer (a slow machine, a
# remote store) finds at most this many walked, some 50 bytes each in the memory file.
MOST_FILES = 300_000
_FRAME = struct.Struct("!Q")  # the length of one folder's record in the memory file
_STOPPING = {signal.SIGINT, signal.SIGTERM}  # blocked across the fork: see _start


def build_ahead(settings: Settings) -> BuildAhead:
    """A build's work ahead: the slugs of its categories without one, unless its store is a
    SQLite file that exists already, and the walk of its files sources."""
    from .config import FilesSourceConfig

    names = [c.name for c in settings.categories if not c.slug]
    url = settings.store.url
    if url.startswith("sqlite:///"):
        with contextlib.suppress(OSError):
            if os.path.getsize(url.removeprefix("sqlite:///")) > 0:
                names = []  # a store made before: its categories have their slugs, and a new one is made here
    roots = [str(Path(s.path)) for s in settings.sources if isinstance(s, FilesSourceConfig)]
    return BuildAhead(names, roots)


class BuildAhead:
    """`slugify` and the folders of a files source, answered from a forked process started with
    the names and roots most likely asked for."""

    def __init__(self, names: Sequence[str], roots: Sequence[str] = ()) -> None:
        self._made: dict[str, str] | None = None
        self._folders: dict[str, list[WalkedFolder]] | None = None
        self._pid = 0
        self._forked_at = 0.0
        self._answer = -1  # the pipe the slugs come in
        self._written = -1  # the memory file the folders walked are written to
        names, roots = list(dict.fromkeys(names)), list(dict.fromkeys(roots))
        # fork is unsafe beside other threads (a lock held by one stays held in the child)
        if (names or roots) and hasattr(os, "fork") and threading.active_count() == 1:
            self._start(names, roots)

    def _start(self, names: list[str], roots: list[str]) -> None:
        opened: list[int] = []
        parent = os.getpid()
        # A Ctrl-C landing in the forked process before its `try` would unwind the build's own
        # stack there (its exit handlers, its output): it waits, blocked, until the process has
        # made it end at once instead.
        masked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
        try:
            answer, written = os.pipe()
            opened += [answer, written]
            folders = _memory_file()
            opened.append(folders)
            pid = os.fork()
        except OSError:  # no descriptors or no process to be had (EAGAIN, ENOMEM): all is done here
            for fd in opened:
                os.close(fd)
            signal.pthread_sigmask(signal.SIG_SETMASK, masked)
            return
        if pid == 0:  # the forked process: compute, answer, end without running any exit handler
            code = 1
            try:
                for signum in _STOPPING:
                    signal.signal(signum, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, masked)
                os.close(answer)
                data = json.dumps({name: slugify(name) for name in names}).encode()
                with open(written, "wb") as pipe:
                    pipe.write(data)
                _walk_into(folders, roots, parent)
                code = 0
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, masked)
        os.close(written)
        self._pid, self._forked_at, self._answer, self._written = pid, time.monotonic(), answer, folders

    def __call__(self, name: str) -> str:
        made = self._collect()
        slug = made.get(name)
        return slug if isinstance(slug, str) else slugify(name)

    def folders_of(self, root: str) -> list[WalkedFolder]:
        """The first folders of `root` in walk order, listed and stat'ed ahead, for `walk.walk`;
        none when they were not asked for or are older than `FRESH_FOR`. The process is ended
        first: the walk does what it had not finished, and each root's folders are given once."""
        if self._folders is None:
            self._collect()  # its slugs, before it is ended
            self._folders = {}
            if self._written >= 0:
                self._end()
                written, self._written = self._written, -1  # closed below, whatever happens: never twice
                try:
                    self._folders = _read_folders(written)
                finally:
                    os.close(written)
        folders = self._folders.pop(root, [])
        return folders if time.monotonic() - self._forked_at <= FRESH_FOR else []

    def _collect(self) -> dict[str, str]:
        if self._made is None:
            self._made = {}
            if self._answer >= 0:
                answer, self._answer = self._answer, -1  # closed below, whatever happens: never twice
                with open(answer, "rb") as pipe:
                    data = pipe.read()  # to its end: the process closes the pipe before it walks
                with contextlib.suppress(ValueError):
                    made = json.loads(data)
                    if isinstance(made, dict):
                        self._made = made
        return self._made

    def close(self) -> None:
        """End the forked process, whatever was asked of it, and let go of what it wrote."""
        given_up, self._answer, self._written = (self._answer, self._written), -1, -1  # first: never closed twice
        try:
            for fd in given_up:
                if fd >= 0:
                    os.close(fd)
        finally:
            self._end()

    def _end(self) -> None:
        if self._pid:
            pid, self._pid = self._pid, 0
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _memory_file() -> int:
    """An anonymous file for the folders walked: in memory where the system has memfd_create."""
    with contextlib.suppress(AttributeError, OSError):  # none here, or refused (an old kernel, a sandbox)
        return os.memfd_create("publisher-walk", os.MFD_CLOEXEC)
    import tempfile

    with tempfile.TemporaryFile() as file:  # created 0600 and unlinked at once
        return os.dup(file.fileno())


def _walk_into(fd: int, roots: list[str], parent: int, most: int = MOST_FILES) -> None:
    """Each folder of each root, as `walk_ahead` gives it, one record after the other, until the
    folders written hold `most` files or the build's process (`parent`) is gone."""
    from .sources.files import CONTENT_SUFFIXES
    from .sources.walk import walk_ahead

    files = 0
    for root in roots:
        for folder in walk_ahead(root, CONTENT_SUFFIXES):
            data = pickle.dumps((root, folder), pickle.HIGHEST_PROTOCOL)
            if os.writev(fd, [_FRAME.pack(len(data)), data]) != _FRAME.size + len(data):
                return  # a full disk: the record cut short ends what is read (a kill cuts the last one so)
            files += len(folder.names)
            if files >= most or os.getppid() != parent:
                return


def _read_folders(fd: int) -> dict[str, list[WalkedFolder]]:
    """The records written whole, by root, in order; one cut short (the process was ended while it
    wrote it), one that does not read, and what follows them are left out."""
    data = memoryview(os.pread(fd, os.fstat(fd).st_size, 0))
    folders: dict[str, list[WalkedFolder]] = {}
    at = 0
    while at + _FRAME.size <= len(data):
        (size,) = _FRAME.unpack_from(data, at)
        start, at = at + _FRAME.size, at + _FRAME.size + size
        if at > len(data):
            break
        try:
            root, folder = pickle.loads(data[start:at])
        except Exception:  # noqa: BLE001 - whatever it is, the walk does that folder itself
            break
        folders.setdefault(root, []).append(folder)
    return folders
