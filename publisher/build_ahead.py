"""What a build does ahead, in one forked process, while it validates its configuration, imports
SQLAlchemy and opens the store.

A build's start (pydantic and the settings, SQLAlchemy and the store: a third of a cold build of
10,000 articles) runs on one core. As soon as it knows which file its configuration is, before
validating it, a build forks one process on what the file most likely says
(`config_file.hints`), which works on the other core meanwhile:

1. the walk of each `files` source's folders (`walk.walk_ahead`): each folder listed and each
   file stat'ed, folder after folder, into a memory file. At 100,000 files the walk is what an
   incremental build spends most of its time on (docs/architecture.md);
2. the slugs of its categories (`text.slugify`: pypinyin reads a 2.5 MB phrase dictionary whole
   the first time it is used, 0.1-0.2 s), unless the store is a SQLite file that exists, which
   has them already; pypinyin is loaded before the walk when the hints say slugs will be made;
3. for a store not made yet (a SQLite file that does not exist), whose build reads every file:
   the first files source's files, read as the build's workers read them (bodies unrendered)
   in the order its walk gives them, into a second memory file, a chunk to a record.

The build tells it (`told`) what the validated settings say: the slugs to make (answered on
a thread of the process as soon as it is told, whatever folder it is walking), and, when the
first source is a files source, what to read its files with (the source, the categories, the
`[text]` rules, the site's URL); it reads no longer than `FRESH_FOR` from the fork. The build
asks for the slugs when it syncs its categories, and for a source's folders and files read when
the ingest of its first files source begins: it then ends the process, takes what it finished,
and does the rest itself (`walk.walk(..., ahead=...)`, `parallel.prepare_in_order(..., ahead=...)`).
A file read ahead stands for the build's own read only when the build lists it under the same
fingerprint and path, and only when it was read with what the build reads with (the source's
settings, the categories with the slugs the store gave them, the rules, the URL): a slug the
store made otherwise (one taken already) leaves every file to the workers.

A folder walked ahead, or a file read, is what the build's own walk or read would have found a
little earlier, at most `FRESH_FOR` seconds (a files source whose ingest begins later, after a
web source or another files source, is walked and read by the build itself). A file changed in
between is read as it is now under the fingerprint it had then, so the next build sees the
change and reads it again; one removed in between is reported as unreadable, as one removed
between the stat and the read of any walk is.

The forked process only computes; it writes its slugs to a pipe and its folders and reads to
the memory files, and ends with `os._exit` (when the build's process is gone, after the folder
or chunk it is on). Whatever goes wrong with it (no fork on this platform, another thread
running, hints that were wrong, the process killed, an answer cut short or that does not
parse), the slugs are made, the folders walked and the files read by the build, as before: the
outcome is the same either way, only the time differs."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pickle
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .ahead_process import memory_file, read_folders, read_reads, work_ahead

if TYPE_CHECKING:
    from .config import Settings
    from .normalize import CategoryIndex, TextRules
    from .parallel import ReadAhead
    from .sources.walk import WalkedFolder

FRESH_FOR = 2.0  # seconds from the fork: folders walked ahead are given no later than this
_STOPPING = {signal.SIGINT, signal.SIGTERM}  # blocked across the fork: see _start


_early: BuildAhead | None = None  # forked by the program before its command line was read


def fork_early(config: Path) -> None:
    """Fork the work ahead of a build of `config` now, for the build's `build_ahead` to take
    (cli.entry: before click and the command's modules are read). One never taken (the
    command line refused, `--help` asked for) is ended at exit."""
    global _early
    if _early is not None:
        _early.close()
    else:
        atexit.register(_end_untaken)  # once: it ends whichever is left then
    _early = _forked(config)


def _end_untaken() -> None:
    global _early
    early, _early = _early, None
    if early is not None:
        early.close()


def build_ahead(config: Path) -> BuildAhead:
    """A build's work ahead, forked before its configuration is validated (`config_file.hints`: the
    files sources' folders and whether its categories lack slugs); `BuildAhead.told` then
    gives it what the validated settings say. The one `fork_early` forked for `config`, when
    there is one; one forked for another file is ended."""
    global _early
    early, _early = _early, None
    if early is not None and early.config == config:
        return early
    if early is not None:
        early.close()
    return _forked(config)


def _forked(config: Path) -> BuildAhead:
    from .config_file import hints

    said = hints(config)
    slugs_likely = said.unslugged and not made_before(said.store_url)
    return BuildAhead(None, said.roots, slugs_likely=slugs_likely, config=config)


class BuildAhead:
    """`slugify`, the folders of a files source and the first files it reads, answered from a
    forked process started with the roots (and names) most likely asked for."""

    def __init__(
        self,
        names: Sequence[str] | None,
        roots: Sequence[str] = (),
        *,
        slugs_likely: bool = True,
        config: Path | None = None,
    ) -> None:
        self.config = config  # the configuration file whose hints it was forked on
        self._made: dict[str, str] | None = None
        self._folders: dict[str, list[WalkedFolder]] | None = None
        self._reads: dict[str, ReadAhead] = {}
        self._read_with: object = None  # what the reads were made with: (source, categories, rules, site URL)
        self._pid = 0
        self._forked_at = 0.0
        self._answer = -1  # the pipe the slugs come in
        self._orders = -1  # the pipe the build tells it what to do beyond the walk (`told`)
        self._written = -1  # the memory file the folders walked are written to
        self._read = -1  # the memory file the files read are written to
        roots = list(dict.fromkeys(roots))
        # fork is unsafe beside other threads (a lock held by one stays held in the child)
        wanted = names or roots or (names is None and slugs_likely)
        if wanted and hasattr(os, "fork") and threading.active_count() == 1:
            self._start(roots, slugs_likely and names is None)
        if names is not None:
            self._tell(list(dict.fromkeys(names)), None)

    def _start(self, roots: list[str], slugs_likely: bool) -> None:
        opened: list[int] = []
        parent = os.getpid()
        # A Ctrl-C landing in the forked process before its `try` would unwind the build's own
        # stack there (its exit handlers, its output): it waits, blocked, until the process has
        # made it end at once instead.
        masked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
        try:
            answer, written = os.pipe()
            opened += [answer, written]
            orders_in, orders = os.pipe()
            opened += [orders_in, orders]
            folders = memory_file("walk")
            opened.append(folders)
            reads = memory_file("reads")
            opened.append(reads)
            forked_at = time.monotonic()
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
                os.close(orders)
                work_ahead(written, orders_in, folders, reads, roots, parent, slugs_likely, forked_at + FRESH_FOR)
                code = 0
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, masked)
        os.close(written)
        os.close(orders_in)
        from .process_pool import widen_pipe  # imported here after the fork: it is the build's anyway

        widen_pipe(orders)
        os.set_blocking(orders, False)  # see `_tell`
        self._pid, self._forked_at = pid, forked_at
        self._answer, self._orders, self._written, self._read = answer, orders, folders, reads

    def told(self, settings: Settings) -> None:
        """What the validated settings say: the slugs to make (none when the store is a SQLite
        file that exists, which has them; another store may be new) and, for a SQLite store
        not made yet, whose every file the build reads, what to read its files with when its
        first source is a files source (one after a web source begins its ingest too late)."""
        from .config import FilesSourceConfig

        url = settings.store.url
        made = made_before(url)
        names = [] if made else [c.name for c in settings.categories if not c.slug]
        new = url.startswith("sqlite:///") and not made  # another store may be new or not
        first = settings.sources[0] if settings.sources else None
        reading = None
        if new and isinstance(first, FilesSourceConfig) and self._read >= 0:
            from .model import Category, Site
            from .normalize import TextRules
            from .sources.files import files_source

            categories = [Category(c.name, c.slug or "", c.description, c.url) for c in settings.categories]
            source = files_source(first, settings.site.timezone)
            reading = (source, categories, TextRules.of(settings.text), Site.of(settings.site).url)
        self._tell(names, reading)

    def _tell(self, names: list[str], reading: object) -> None:
        """Write the orders whole, never waiting for the process to read them: what the pipe
        does not take at once (a thousand categories with long descriptions) is cut short, and
        the process, which cannot read a cut pickle, is ordered nothing (all is done here)."""
        if self._orders < 0:
            return
        orders, self._orders = self._orders, -1
        try:
            os.write(orders, pickle.dumps((names, reading), pickle.HIGHEST_PROTOCOL))
        except OSError:  # full (EAGAIN), or the process is gone: whatever it was to do is done here
            pass
        finally:
            os.close(orders)

    def __call__(self, name: str) -> str:
        from .text import slugify  # imported by the build before it asks: not before the fork

        made = self._collect()
        slug = made.get(name)
        return slug if isinstance(slug, str) else slugify(name)

    def folders_of(self, root: str) -> list[WalkedFolder]:
        """The first folders of `root` in walk order, listed and stat'ed ahead, for `walk.walk`;
        none when they were not asked for or are older than `FRESH_FOR`. The process is ended
        first: the walk does what it had not finished, and each root's folders are given once."""
        self._take()
        assert self._folders is not None
        folders = self._folders.pop(root, [])
        return folders if time.monotonic() - self._forked_at <= FRESH_FOR else []

    def reads_for(self, source: object, index: CategoryIndex, rules: TextRules, site_url: str) -> dict[str, ReadAhead]:
        """The files read ahead, by key, each with the (fingerprint, path) it was read under,
        when they were read by `source` in this context (given once); else none. The process is
        ended first (`folders_of`)."""
        from .sources.files import FilesSource

        self._take()
        reads, self._reads = self._reads, {}
        if not reads or not isinstance(source, FilesSource):
            return {}
        if self._read_with != (source.__getstate__(), index.categories, rules, site_url):
            return {}
        return reads if time.monotonic() - self._forked_at <= FRESH_FOR else {}

    def _take(self) -> None:
        """End the process and take what it finished: its slugs, its folders and its reads."""
        if self._folders is not None:
            return
        self._collect()  # its slugs, before it is ended
        self._folders = {}
        self._end()
        written, self._written = self._written, -1  # closed below, whatever happens: never twice
        read, self._read = self._read, -1
        try:
            if written >= 0:
                self._folders = read_folders(written)
            if read >= 0:
                self._read_with, self._reads = read_reads(read)
        finally:
            for fd in (written, read):
                if fd >= 0:
                    os.close(fd)

    def _collect(self) -> dict[str, str]:
        if self._made is None:
            self._made = {}
            self._tell([], None)  # never told (a test, a failed start): it need not wait
            if self._answer >= 0:
                answer, self._answer = self._answer, -1  # closed below, whatever happens: never twice
                with open(answer, "rb") as pipe:
                    data = pipe.read()  # to its end: the process closes the pipe before it reads
                with contextlib.suppress(ValueError):
                    made = json.loads(data)
                    if isinstance(made, dict):
                        self._made = made
        return self._made

    def close(self) -> None:
        """End the forked process, whatever was asked of it, and let go of what it wrote."""
        given_up = (self._answer, self._orders, self._written, self._read)
        self._answer = self._orders = self._written = self._read = -1  # first: never closed twice
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


def made_before(store_url: str) -> bool:
    """Whether the store is a SQLite file made before, which has its categories' slugs (the
    slug of one configured since is made in the build's process); another store may be new."""
    if not store_url.startswith("sqlite:///"):
        return False
    try:
        return os.path.getsize(store_url.removeprefix("sqlite:///").partition("?")[0]) > 0
    except OSError:
        return False
