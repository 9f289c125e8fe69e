"""Worker processes driven from the thread that uses them: no helper threads in this process.

`concurrent.futures.ProcessPoolExecutor` runs two threads beside the caller's: one pickles the
tasks and writes them to the workers, one reads and unpickles their results. In a cold build's
ingest of 10,000 articles those threads took 0.14 CPU seconds of the main process (0.41 s in
all, 0.28 s in the thread that stores the articles); done here by the calling thread, when it
submits a task and when it asks for a result, the same work costs it 0.03-0.06 s, and the
process 0.31-0.34 s in all (docs/performance.md, "seventh session").

Each worker has a pipe in (tasks) and a pipe out (results) and does its tasks in the order it
was given them; a task goes to the worker with the fewest not done (the results already sent
are read first). Tasks are written without
blocking, the rest kept here and written while a result is awaited, so neither side can block
the other: a worker whose results pipe is full waits for this process to read, and this
process never waits to write. A worker that dies (a crash in native code) breaks the pool, as
it breaks ProcessPoolExecutor: every task not finished fails with BrokenProcessPool, the other
workers are ended, and the pool takes no more tasks.

The futures are `concurrent.futures.Future`s whose `result`, `exception` and `done` first read
what the workers have sent. Where this differs from ProcessPoolExecutor (no caller relies on
it): a task is pickled, and its pickling error raised, by `submit`; `result(timeout)` waits
without a limit; cancelling a future only drops its result (the task is in its worker's pipe
already), and closing the pool ends a worker that still has work at once (SIGKILL: its tasks
only read, or write a file whole by renaming it), so an interrupted build does not wait for
the tasks it gave. Anything that interrupts this process while it talks to the workers (a
Ctrl-C in the middle of a result) breaks the pool, which cannot tell where the next message
starts. POSIX only (`select.poll`, non-blocking pipes), as the `files` source's walk is.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import struct
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

T = TypeVar("T")

_HEADER = struct.Struct("!i")  # multiprocessing.Connection's framing, read by the worker's recv_bytes
_STOP = b""  # an empty task: the worker ends
_TROUBLE = select.POLLERR | select.POLLHUP | select.POLLNVAL


def _serve(
    tasks: Connection,
    results: Connection,
    pools_ends: list[Connection],
    initializer: Callable[..., object],
    initargs: tuple[Any, ...],
) -> None:
    """A worker's life: its initializer, then each task in the order given, its outcome sent
    back pickled: (True, value) or (False, exception, with the worker's traceback as a note).
    `pools_ends` are the copies a forked worker holds of the pool's ends of its pipes and of the
    pipes of the workers started before it: closed, so that the pool's closing a task pipe
    reads there as an end unless a process forked later holds it too (a worker's own thread
    watches for the pool's process to end either way: parallel._init_worker)."""
    for end in pools_ends:
        end.close()
    initializer(*initargs)
    while True:
        try:
            data = tasks.recv_bytes()
        except (EOFError, OSError):  # the pool's process is gone
            return
        if data == _STOP:
            return
        try:
            task, args = pickle.loads(data)
            outcome: tuple[bool, object] = (True, task(*args))
        except BaseException as exc:  # noqa: BLE001 - every failure is the caller's to see
            outcome = (False, _with_traceback(exc))
        try:
            sent = pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - a result that cannot be pickled
            sent = pickle.dumps((False, _with_traceback(exc)), pickle.HIGHEST_PROTOCOL)
        try:
            results.send_bytes(sent)
        except OSError:  # EPIPE: the pool's process is gone (killed): nobody to tell
            return


def _without_value(task: Callable[..., object], *args: object) -> None:
    """A broadcast's task, run for what it leaves loaded in the worker."""
    task(*args)


def _with_traceback(exc: BaseException) -> BaseException:
    """`exc` with where it was raised in the worker as a note, or a RuntimeError saying it when
    `exc` itself cannot be pickled."""
    where = "".join(traceback.format_exception(exc))
    try:
        pickle.loads(pickle.dumps(exc, pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - any exception an unpicklable one raises
        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
    exc.add_note(f"in a worker process:\n{where}")
    return exc


class _Worker:
    __slots__ = ("process", "tasks", "results", "waiting", "unsent")

    def __init__(self, process: Any, tasks: Connection, results: Connection) -> None:
        self.process, self.tasks, self.results = process, tasks, results
        self.waiting: deque[_Awaited] = deque()  # its tasks' futures, in the order given
        self.unsent: deque[memoryview] = deque()  # framed tasks its pipe had no room for yet


class ProcessPool:
    """`size` worker processes started in `context`, each running `initializer(*initargs)` first."""

    def __init__(
        self, size: int, context: BaseContext, initializer: Callable[..., object], initargs: tuple[Any, ...]
    ) -> None:
        self.size = size
        self._broken: str | None = None
        self._workers: list[_Worker] = []
        try:
            for _ in range(size):
                self._workers.append(self._start(context, initializer, initargs))
        except BaseException:
            self.shutdown(wait=False)
            raise

    def _start(self, context: BaseContext, initializer: Callable[..., object], initargs: tuple[Any, ...]) -> _Worker:
        task_reader, task_writer = context.Pipe(duplex=False)
        result_reader, result_writer = context.Pipe(duplex=False)
        pools_ends = []  # under spawn and forkserver a worker holds only what it is given
        if context.get_start_method() == "fork":
            pools_ends = [end for w in self._workers for end in (w.tasks, w.results)] + [task_writer, result_reader]
        try:
            process = context.Process(  # type: ignore[attr-defined]
                target=_serve, args=(task_reader, result_writer, pools_ends, initializer, initargs), daemon=True
            )
            process.start()
        except BaseException:
            task_writer.close()
            result_reader.close()
            raise
        finally:
            task_reader.close()
            result_writer.close()  # the worker holds the only writer: its death reads as an end
        worker = _Worker(process, task_writer, result_reader)
        try:
            os.set_blocking(task_writer.fileno(), False)
            for end in (task_writer, result_reader):
                widen_pipe(end.fileno())
        except BaseException:
            _end(worker, kill=True)
            raise
        return worker

    def submit(self, task: Callable[..., T], /, *args: object) -> Future[T]:
        """`task(*args)` on the worker with the fewest tasks not done, the results already sent
        read first: a worker whose results wait to be asked for has finished those tasks (a
        build's feeds, given as their bodies are rendered and read once all were given, went
        one after the other to the worker that rendered the slowest while the other sat idle).
        Raises BrokenProcessPool once a worker died."""
        if self._broken is not None:
            raise BrokenProcessPool(self._broken)
        data = pickle.dumps((task, args), pickle.HIGHEST_PROTOCOL)
        self._read_sent()
        if self._broken is not None:
            raise BrokenProcessPool(self._broken)
        worker = min(self._workers, key=lambda w: len(w.waiting))
        future = _Awaited(self, worker)
        self._give(worker, future, data)
        return future

    def broadcast(self, task: Callable[..., object], /, *args: object) -> None:
        """`task(*args)` once on every worker, its results not awaited: not even sent back
        (unpickled here, a value could import what this process never uses)."""
        data = pickle.dumps((_without_value, (task, *args)), pickle.HIGHEST_PROTOCOL)
        for worker in list(self._workers):
            if self._broken is not None:
                return
            self._give(worker, _Awaited(self, worker, awaited=False), data)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """End the workers: with `wait`, a worker whose every result was read is told to stop
        and waited for; one that still has work, and every worker without `wait`, is killed.
        Futures not done are cancelled (`cancel_futures`) or fail as broken."""
        workers, self._workers = self._workers, []
        if self._broken is None:
            self._broken = "the pool was shut down"
        for worker in workers:
            idle = not worker.unsent and not any(f.awaited for f in worker.waiting)
            for future in worker.waiting:
                if cancel_futures:
                    future.cancel()
                if not future.done():
                    future.set_exception(BrokenProcessPool(self._broken))
            worker.waiting.clear()
            worker.unsent.clear()
            _end(worker, kill=not (wait and idle))

    # -- reading and writing, from the calling thread -------------------------------------

    def _give(self, worker: _Worker, future: _Awaited, data: bytes) -> None:
        with self._talking():
            worker.waiting.append(future)
            worker.unsent.append(memoryview(_frame(data)))
            self._write(worker)

    def _wait(self, future: _Awaited) -> None:
        """Read and write until `future` is done (or the pool is broken)."""
        with self._talking():
            while not Future.done(future) and self._broken is None:
                self._exchange(future.worker, block=True)
        if not Future.done(future):  # broken: shutdown failed every future it still held
            future.set_exception(BrokenProcessPool(self._broken))

    def _poll(self) -> None:
        """Read every result already sent and write what waits, without blocking."""
        with self._talking():
            for worker in list(self._workers):
                if self._broken is not None:  # a death read: the workers are gone
                    return
                self._exchange(worker, block=False)

    def _read_sent(self) -> None:
        """Read every result the workers have sent, without waiting for more."""
        with self._talking():
            while self._broken is None:
                ready = {worker.results.fileno(): worker for worker in self._workers if worker.waiting}
                poller = select.poll()
                for fd in ready:
                    poller.register(fd, select.POLLIN)
                events = poller.poll(0) if ready else []
                if not events:
                    return
                for fd, _event in events:
                    if self._broken is None:
                        self._read(ready[fd])

    @contextlib.contextmanager
    def _talking(self) -> Iterator[None]:
        """Whatever interrupts a read or a write (KeyboardInterrupt) may leave half a message in
        a pipe: the pool is broken then, its workers killed."""
        try:
            yield
        except BaseException:
            if self._broken is None:
                self._break("interrupted while it talked to its workers")
            raise

    def _exchange(self, worker: _Worker, block: bool) -> None:
        """Write what waits for any worker, then read one result of `worker`: when one is there,
        or (`block`) when it comes."""
        results = worker.results.fileno()
        writing = {other.tasks.fileno(): other for other in self._workers if other.unsent}
        poller = select.poll()
        poller.register(results, select.POLLIN)
        for fd in writing:
            poller.register(fd, select.POLLOUT)
        for fd, events in poller.poll(None if block else 0):
            if self._broken is not None:
                return
            if fd == results and events & (select.POLLIN | _TROUBLE):
                self._read(worker)
            elif fd in writing and events & (select.POLLOUT | _TROUBLE):  # trouble: the write says which
                self._write(writing[fd])

    def _write(self, worker: _Worker) -> None:
        """As much of the worker's waiting tasks as its pipe takes now."""
        unsent = worker.unsent
        while unsent:
            try:
                written = os.write(worker.tasks.fileno(), unsent[0])
            except BlockingIOError:
                return
            except OSError as exc:  # EPIPE: the worker is gone
                self._break(f"a worker process ended (writing its task: {exc})")
                return
            if written == len(unsent[0]):
                unsent.popleft()
            else:
                unsent[0] = unsent[0][written:]

    def _read(self, worker: _Worker) -> None:
        try:
            data = worker.results.recv_bytes()
        except (EOFError, OSError):
            worker.process.join(1)
            self._break(f"a worker process ended abruptly (exit code {worker.process.exitcode})")
            return
        try:
            ok, value = pickle.loads(data)
        except Exception as exc:  # noqa: BLE001 - e.g. an exception class this process cannot import
            ok, value = False, exc
        future = worker.waiting.popleft()  # only now: an interrupt before leaves it to the break
        if future.cancelled():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def _break(self, reason: str) -> None:
        """A worker died (or a message was cut): every task not done fails, the workers are killed."""
        self._broken = reason
        self.shutdown(wait=False)


class _Awaited(Future):  # type: ignore[type-arg]
    """A task's future: asking it reads what its worker sent."""

    def __init__(self, pool: ProcessPool, worker: _Worker, awaited: bool = True) -> None:
        super().__init__()
        self.pool, self.worker = pool, worker
        self.awaited = awaited  # False: a broadcast's, whose result nobody asks for

    def result(self, timeout: float | None = None) -> Any:
        self.pool._wait(self)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self.pool._wait(self)
        return super().exception(0)

    def done(self) -> bool:
        if not super().done():
            self.pool._poll()
        return super().done()


PIPE_BYTES = 1 << 20  # what a pipe holds (Linux: 64 KB unless asked; 1 MB is what anyone may ask)


def widen_pipe(fd: int) -> None:
    """The pipe holds PIPE_BYTES from now on, where the system allows (Linux): a worker whose
    results are not read yet (this process is busy storing the ones before) goes on until it is
    that far ahead, not 64 KB (4 chunks of articles) ahead, and a window of tasks is written at
    once (build_ahead.py: the orders to the process ahead are written whole)."""
    with contextlib.suppress(ImportError, AttributeError, OSError):  # not Linux, or not allowed
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def _frame(data: bytes) -> bytes:
    """`data` framed as multiprocessing.Connection frames a message (recv_bytes reads it)."""
    if len(data) < 2**31 - 1:
        return _HEADER.pack(len(data)) + data
    return _HEADER.pack(-1) + struct.pack("!Q", len(data)) + data


def _end(worker: _Worker, kill: bool) -> None:
    """A worker ended: killed, or told to stop once it has read what it was given (the stop
    written while its results are read and dropped, so that neither side waits on the other)."""
    if kill:
        worker.process.kill()  # SIGKILL: a SIGTERM handler it inherited from this process would catch SIGTERM
    else:
        with contextlib.suppress(EOFError, OSError):  # it ended already
            _send_stop(worker)
            while True:  # its results, dropped, until it ends
                worker.results.recv_bytes()
    worker.process.join()
    worker.tasks.close()
    worker.results.close()


def _send_stop(worker: _Worker) -> None:
    view = memoryview(_frame(_STOP))
    poller = select.poll()
    poller.register(worker.tasks.fileno(), select.POLLOUT)
    poller.register(worker.results.fileno(), select.POLLIN)
    while view:
        for fd, events in poller.poll():
            if fd == worker.results.fileno():
                worker.results.recv_bytes()
            elif events & _TROUBLE:
                return
            else:
                with contextlib.suppress(BlockingIOError):
                    view = view[os.write(fd, view) :]
