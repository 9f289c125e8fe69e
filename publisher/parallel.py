"""Reading and normalising many items on every core, in order, with bounded memory.

A cold build of 10,000 articles spends most of its time reading files and in normalize. The
main process walks the source and writes the store; worker processes read and normalize
chunks of items (a file's body is only checked and hashed then, and rendered, on this pool
too, when a feed first shows it: docs/architecture.md). Results come back in the order the
items went in, so guids, row ids and every tie-break are the same as in a serial run. Small
batches (an incremental build) never start a pool. A build's pool then renders and writes its
feeds (`Workers.run_in_order`), the main process being idle by then.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from .model import Article, Deferred, ItemProblem, ReadItem, SourceItem
from .normalize import CategoryIndex, NormalizeError, TextRules, normalize
from .process_pool import ProcessPool

Normalized = Article | NormalizeError
# Per input: the problem reading it, None for a draft, or the item (what ingest keeps of it)
# with its article or the reason it has none.
Prepared = ItemProblem | None | tuple[ReadItem, Normalized]
# An item read ahead (build_ahead.py): the (fingerprint, path) it was listed and read under, and
# what it gave; it stands for a read of the same item under the same fingerprint and path.
ReadAhead = tuple[tuple[str | None, str], Prepared]

CHUNK = 32  # items per task: large enough to amortise pickling, small enough to balance
SERIAL_CHUNKS = 2  # this many chunks are done in-process before a pool is worth starting
# Items read ahead of the one the main process waits for: enough to keep every worker busy
# while the main process commits a batch of 2,000 articles (StoreWriter.BATCH, some 50 ms at
# 10,000 articles, when two workers read about 30 chunks). With two chunks a worker, the
# workers sat idle through each commit: a third of a cold build's reading time.
WINDOW_ITEMS = 1024
PARENT_POLL = 0.5  # seconds between a worker's checks that the build that started it lives
# How much lower a worker's priority is than its build's process (nice(2)), at most 19. That
# process feeds the workers and stores what they read: when the three want the two cores of a
# small server, it goes first (about 3 to 1 on Linux), and a build that `publisher run` starts
# leaves its web requests theirs. 5, 10 and 19 measured alike (docs/performance.md).
WORKER_NICENESS = 5

Context = tuple[CategoryIndex, TextRules, str]  # index, rules, site URL

_worker_context: Context | None = None

Task = TypeVar("Task")
Done = TypeVar("Done")


def _init_worker(index: CategoryIndex, rules: TextRules, site_url: str) -> None:
    """A worker's context, its priority (WORKER_NICENESS below the build's), and its ties to
    the build: Ctrl-C is the parent's to handle (it stops the pool), and when the parent dies,
    however it dies (SIGTERM, SIGKILL, a crash), the worker exits instead of waiting for work
    forever."""
    global _worker_context
    _worker_context = (index, rules, site_url)
    with contextlib.suppress(OSError):  # refused (a sandbox): the worker runs as the build does
        os.nice(WORKER_NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="exit-with-parent", daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """Poll for the parent's death: an orphan is re-parented, so its parent id changes."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)


def prepare_all(
    work: list[Deferred | SourceItem], index: CategoryIndex, rules: TextRules, site_url: str, render: bool = True
) -> list[Prepared]:
    """Read (if deferred) and normalize each item (`render`: its body too, see normalize);
    errors come back as values."""
    out: list[Prepared] = []
    for unit in work:
        item = unit.read() if isinstance(unit, Deferred) else unit
        if item is None or isinstance(item, ItemProblem):
            out.append(item)
            continue
        try:
            article: Normalized = normalize(item, index, rules, site_url, render)
        except NormalizeError as exc:
            article = exc
        out.append((ReadItem.of(item), article))
    return out


def _prepare_chunk(work: list[Deferred | SourceItem], render: bool) -> list[Prepared]:
    assert _worker_context is not None
    return prepare_all(work, *_worker_context, render)


def _context() -> multiprocessing.context.BaseContext:
    # fork is cheapest (workers inherit the loaded modules) but unsafe beside other threads,
    # such as a terminal progress bar's; then forkserver.
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def workers() -> int:
    """Worker processes: one per core (at most 8), or PUBLISHER_WORKERS (1 turns the pool off)."""
    configured = os.environ.get("PUBLISHER_WORKERS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return max(1, min(os.cpu_count() or 1, 8))


class _Pool:
    """Worker processes, started on first use and started anew after one died."""

    def __init__(self, size: int, context: Context) -> None:
        self.size, self.context = size, context
        self.executor: ProcessPool | None = None

    def submit(self, task: Callable[..., Done], *args: object) -> Future[Done]:
        """`task(*args)` on a worker, the pool started if it is not running."""
        if self.executor is None:
            self.executor = ProcessPool(self.size, _context(), _init_worker, self.context)
        try:
            return self.executor.submit(task, *args)
        except BrokenProcessPool as exc:  # a worker died since: the task's result says so (_result)
            broken: Future[Done] = Future()
            broken.set_exception(exc)
            return broken

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None


class Workers:
    """The worker processes of one build, shared by its ingest and the bodies its feeds render
    when shown (`prepare_in_order(..., shared=...)`), then by the feeds themselves
    (`run_in_order`, publisher.output), started at first use and closed with the build. One
    pool, forked while the build's process is still small: a pool started for the renders at
    the end of a cold build of 100,000 articles forked the grown process, and each worker's
    share of its pages counted again in the memory of the process tree."""

    def __init__(self, index: CategoryIndex, rules: TextRules, site_url: str) -> None:
        self.context: Context = (index, rules, site_url)
        self.pool = _Pool(workers(), self.context)
        self.preparations: list[tuple[Callable[..., object], tuple[object, ...], bool]] = []

    def close(self) -> None:
        self.pool.close()

    def running(self) -> bool:
        """Whether more than one worker process runs now (what `run_in_order` hands work to)."""
        return self.pool.size > 1 and self.pool.executor is not None

    def prepare(self, task: Callable[..., object], *arguments: object, bodies: bool = False) -> None:
        """Have each worker run `task(*arguments)` once it has read what it was given: what the
        tasks of a later `run_in_order` need loaded (imports, compiled templates), loaded while
        the workers would idle and the main process stores what they read. Handed over after
        the last chunk of a `prepare_in_order` that read anything, here or there (a build that
        read nothing has most likely nothing to render: its jobs load what they need), once,
        when the pool runs, to each worker once; its result is not awaited. With `bodies`, it
        is what rendering a body needs, worth loading ahead only of the many bodies a large
        ingest's feeds then show: handed over after chunks read on the workers without their
        bodies rendered (the files source's), kept after any other reading (a few files read
        here, a web source's ingest that rendered its bodies, the bodies themselves), where
        a worker that renders no body would load it for nothing ahead of its feeds. A build
        into a store without articles loads them all before the pool is forked (`load_here`)."""
        self.preparations.append((task, arguments, bodies))

    def load_here(self) -> None:
        """Run every preparation (`prepare`) in this process, before the pool is forked: its
        workers inherit what they load rather than each loading it. For a build into a store
        without articles, whose feeds render every article it reads: 0.04 s of this process's
        CPU, spent while the process ahead reads its files (build_ahead.py), spares each
        worker's, which came at the ingest's end, where the feeds waited for it (a cold build
        of 10,000 articles 5-10 % faster, docs/performance.md). Nothing once the pool runs, nor
        when it would not be forked (another thread runs: `_context`), where the workers load
        them as before."""
        if self.pool.executor is not None or _context().get_start_method() != "fork":
            return  # running, or to be started afresh (beside a thread: a progress bar's), not forked
        for task, arguments, _bodies in self.preparations:
            task(*arguments)
        self.preparations = []

    def _handed_over(self, bodies_ahead: bool) -> None:
        """Every chunk of a `prepare_in_order` is with the workers (`bodies_ahead`: chunks read
        there without their bodies rendered): the preparations follow, those for bodies only
        then (see `prepare`)."""
        executor = self.pool.executor
        if self.preparations and self.running() and executor is not None:
            for task, arguments, bodies in self.preparations:
                if bodies_ahead or not bodies:
                    executor.broadcast(task, *arguments)
            self.preparations = [p for p in self.preparations if p[2] and not bodies_ahead]

    def run_in_order(
        self, task: Callable[[Task], Done], tasks: Iterable[Task], again: Callable[[Task], Done] | None = None
    ) -> Iterator[Done]:
        """`task(t)` of each of `tasks`, in order. Each is handed over as `tasks` gives it, before
        the first result is awaited, to the workers while they run (started by the build's reads
        or renders) and are more than one, so the caller's work until it asks overlaps theirs;
        else it is done here when its result is asked for. A pool is never started for this:
        one forked at the end of a large build copies the grown process (above). `task` is a
        module-level function; it, its tasks and their results are pickled. A task whose worker
        died is done again here, by `again` when given (the task may have been half done
        there), and the pool starts anew at its next use."""
        pool = self.pool
        queued: list[tuple[Task, Future[Done] | None, ProcessPool | None]] = []
        for t in tasks:
            queued.append((t, pool.submit(task, t) if self.running() else None, pool.executor))
        return self._in_order(task, again or task, queued)

    def _in_order(
        self,
        task: Callable[[Task], Done],
        again: Callable[[Task], Done],
        queued: list[tuple[Task, Future[Done] | None, ProcessPool | None]],
    ) -> Iterator[Done]:
        for t, future, executor in queued:
            if future is None:
                yield task(t)
                continue
            try:
                yield future.result()
            except BrokenProcessPool:
                if self.pool.executor is executor:  # not the pool a read started anew since
                    self.pool.close()
                yield again(t)


Queued = tuple[list[Deferred | SourceItem], Future[list[Prepared]]]


def _result(queued: Queued, window: deque[Queued], pool: _Pool, render: bool) -> list[Prepared]:
    """A chunk's results. When a worker died (a crash in a native library: a segfault leaves
    nothing to catch), every chunk in flight is lost: this one is done again item by item, each
    in a worker of its own, so the item that kills its worker is named and the rest is kept;
    the chunks behind it go to a new pool."""
    chunk, future = queued
    try:
        return future.result()
    except BrokenProcessPool:
        pool.close()
        for i, (waiting, earlier) in enumerate(window):
            if not (earlier.done() and earlier.exception() is None):  # lost with the pool
                window[i] = (waiting, pool.submit(_prepare_chunk, waiting, render))
        return _one_by_one(chunk, pool.context, render)


def _one_by_one(chunk: list[Deferred | SourceItem], context: Context, render: bool) -> list[Prepared]:
    out: list[Prepared] = []
    alone = _Pool(1, context)
    try:
        for unit in chunk:
            try:
                out.extend(alone.submit(_prepare_chunk, [unit], render).result())
            except BrokenProcessPool:
                alone.close()
                out.append(
                    ItemProblem(
                        unit.key,
                        unit.location or unit.key,
                        "reading it crashed the worker process (a crash in native code, nothing to catch)",
                        "the build went on without it; check it for extreme nesting or size, and report it",
                    )
                )
    finally:
        alone.close()
    return out


class _Taken(Future[list[Prepared]]):
    """The results of a chunk read ahead (build_ahead.py): in the window, it holds no worker."""


def _done(result: list[Prepared], kind: type[Future[list[Prepared]]] = Future) -> Future[list[Prepared]]:
    """A chunk's results known already: a `kind` of future that holds them."""
    done = kind()
    done.set_result(result)
    return done


def _read_ahead(chunk: list[Deferred | SourceItem], ahead: Mapping[str, ReadAhead]) -> list[Prepared] | None:
    """The chunk's results read ahead, when every item of it was, under its fingerprint and path."""
    taken: list[Prepared] = []
    for unit in chunk:
        found = ahead.get(unit.key) if isinstance(unit, Deferred) else None
        if found is None or found[0] != (unit.fingerprint, unit.location):
            return None
        taken.append(found[1])
    return taken


def prepare_in_order(
    chunks: Iterable[list[Deferred | SourceItem]],
    index: CategoryIndex,
    rules: TextRules,
    site_url: str,
    render: bool = True,
    in_process: int = SERIAL_CHUNKS,
    shared: Workers | None = None,
    ahead: Mapping[str, ReadAhead] | None = None,
) -> Iterator[list[Prepared]]:
    """Yield prepared items chunk by chunk, in input order; a pool starts only after
    `in_process` chunks were done here (0: every chunk in a worker, however few). An item that
    kills its worker process comes back as an ItemProblem naming it. With `shared` (made with
    the same index, rules and site URL), its pool is used and left running.

    `ahead`: items read already, with their bodies unrendered (`render` False), by key (a cold
    build's first files, read while it started: build_ahead.py). A chunk whose every item is
    there under the same fingerprint and path takes those results; the chunks after it go to
    the pool meanwhile, so the workers read while this process stores what was read ahead."""
    if shared is not None:
        assert shared.context == (index, rules, site_url), "the shared workers were made for another build"
    pool = shared.pool if shared is not None else _Pool(workers(), (index, rules, site_url))
    size = pool.size
    in_flight = max(2 * size, WINDOW_ITEMS // CHUNK)  # chunks on the workers: at most this many in memory
    window: deque[Queued] = deque()
    taken_ahead = 0  # chunks of `window` read ahead: they hold no worker
    read = False  # any item read, here, on the workers or ahead
    pooled = False  # any chunk read on the workers
    try:
        n = 0
        for chunk in chunks:
            if not chunk:  # nothing to read here (only unchanged files): no reason for a pool
                if window:
                    window.append((chunk, _done([])))  # keep the order behind queued work
                else:
                    yield []
                continue
            read = True
            taken = _read_ahead(chunk, ahead) if ahead and not render else None
            if taken is not None:
                window.append((chunk, _done(taken, _Taken)))  # yielded once the chunks after it are on the workers
                taken_ahead += 1
                in_process = 0  # a cold build: what was not read ahead is the pool's
                continue
            n += 1
            if n <= in_process or size == 1:
                while window:  # keep order: never overtake queued work
                    yield _result(window.popleft(), window, pool, render)
                taken_ahead = 0
                yield prepare_all(chunk, index, rules, site_url, render)
                continue
            window.append((chunk, pool.submit(_prepare_chunk, chunk, render)))
            pooled = True
            while len(window) - taken_ahead >= in_flight:
                queued = window.popleft()
                if isinstance(queued[1], _Taken):
                    taken_ahead -= 1
                yield _result(queued, window, pool, render)
        if shared is not None and read:  # nothing read (an unchanged build): most likely nothing to render
            shared._handed_over(pooled and not render)
        while window:
            yield _result(window.popleft(), window, pool, render)
    finally:
        if shared is None:
            pool.close()
        else:  # left running for the build: chunks of this call not started yet are not wanted
            for _chunk, future in window:
                future.cancel()
