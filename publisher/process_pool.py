"""Worker processes driven from the thread that uses them: no helper threads in this process.

`concurrent.futures.ProcessPoolExecutor` runs two threads beside the caller's: one pickles the
tasks and writes them to the workers, one reads and unpickles their results. In a cold build's
ingest of 10,000 articles those threads took 0.14 CPU seconds of the main process (0.41 s in
all, 0.28 s in the thread that stores the articles); done here by the calling thread, when it
submits a task and when it asks for a result, the same work costs it 0.04-0.06 s, and the
process 0.31-0.34 s in all (docs/performance.md, "seventh session").

Each worker has a pipe in (tasks) and a pipe out (results) and does its tasks in the order it
was given them; a task goes to the worker with the fewest waiting. Tasks are written without
blocking, the rest kept here and written while a result is awaited, so neither side can block
the other: a worker whose results pipe is full waits for this process to read, and this
process never waits to write. A worker that dies (a crash in native code) breaks the pool, as
it breaks ProcessPoolExecutor: every task not finished fails with BrokenProcessPool, the other
workers are ended, and the pool takes no more tasks.

The futures are `concurrent.futures.Future`s whose `result`, `exception` and `done` first read
what the workers have sent. Cancelling one that a worker was given already only drops its
result: the worker still does it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import struct
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

T = TypeVar("T")

_HEADER = struct.Struct("!i")  # multiprocessing.Connection's framing, read by the worker's recv_bytes
_STOP = b""  # an empty task: the worker ends


def _serve(
    tasks: Connection,
    results: Connection,
    ours: tuple[Connection, Connection],
    initializer: Callable[..., object],
    initargs: tuple[Any, ...],
) -> None:
    """A worker's life: its initializer, then each task in the order given, its outcome sent
    back pickled: (True, value) or (False, exception, with the worker's traceback as a note).
    `ours` are the pool's ends of its two pipes, which a forked worker holds copies of: closed,
    so that the pool's closing its end reads here as an end."""
    for end in ours:
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
    __slots__ = ("process", "tasks", "results", "waiting", "unsent", "started")

    def __init__(self, process: Any, tasks: Connection, results: Connection) -> None:
        self.process, self.tasks, self.results = process, tasks, results
        self.waiting: deque[Future[Any]] = deque()  # its tasks' futures, in the order given
        self.unsent: deque[memoryview] = deque()  # framed tasks its pipe had no room for yet
        self.started = False  # the first of them is partly written


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
                task_reader, task_writer = context.Pipe(duplex=False)
                result_reader, result_writer = context.Pipe(duplex=False)
                process = context.Process(  # type: ignore[attr-defined]
                    target=_serve,
                    args=(task_reader, result_writer, (task_writer, result_reader), initializer, initargs),
                    daemon=True,
                )
                process.start()
                task_reader.close()
                result_writer.close()  # the worker holds the only writer: its death reads as an end
                os.set_blocking(task_writer.fileno(), False)
                for end in (task_writer, result_reader):
                    _widen(end)
                self._workers.append(_Worker(process, task_writer, result_reader))
        except BaseException:
            self.shutdown(wait=False)
            raise

    def submit(self, task: Callable[..., T], /, *args: object) -> Future[T]:
        """`task(*args)` on the worker with the fewest tasks waiting. Raises BrokenProcessPool
        once a worker died."""
        if self._broken is not None:
            raise BrokenProcessPool(self._broken)
        data = pickle.dumps((task, args), pickle.HIGHEST_PROTOCOL)
        worker = min(self._workers, key=lambda w: len(w.waiting))
        future: Future[T] = _Awaited(self)
        worker.waiting.append(future)
        worker.unsent.append(memoryview(_frame(data)))
        self._write(worker)
        return future

    def broadcast(self, task: Callable[..., object], /, *args: object) -> None:
        """`task(*args)` once on every worker, its results not awaited."""
        for worker in self._workers:
            if self._broken is not None:
                return
            data = pickle.dumps((task, args), pickle.HIGHEST_PROTOCOL)
            worker.waiting.append(_Awaited(self))
            worker.unsent.append(memoryview(_frame(data)))
            self._write(worker)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """End the workers. `wait`: each first does the tasks it has read or been written (their
        results dropped); else they are ended now. Futures not done are cancelled
        (`cancel_futures`) or fail as broken; tasks not written yet are dropped."""
        workers, self._workers = self._workers, []
        if self._broken is None:
            self._broken = "the pool was shut down"
        for worker in workers:
            for future in worker.waiting:
                if cancel_futures:
                    future.cancel()
                if not future.done():
                    future.set_exception(BrokenProcessPool(self._broken))
            worker.waiting.clear()
            if wait and worker.process.is_alive():
                _stop(worker)
            worker.tasks.close()
        for worker in workers:
            if wait:
                _drain(worker)
            else:
                worker.process.kill()  # SIGKILL: a SIGTERM handler inherited from this process would catch SIGTERM
            worker.process.join()
            worker.results.close()

    # -- reading and writing, from the calling thread -------------------------------------

    def _wait(self, future: Future[Any]) -> None:
        """Read and write until `future` is done (or the pool is broken)."""
        while not Future.done(future):
            worker = self._owner(future)
            if worker is None:  # its worker's result was read, or the pool broke: it is done
                break
            self._exchange(worker, block=True)

    def _poll(self) -> None:
        """Read every result already sent and write what waits, without blocking."""
        for worker in list(self._workers):
            if self._broken is not None:  # a death read: the workers are gone
                return
            self._exchange(worker, block=False)

    def _owner(self, future: Future[Any]) -> _Worker | None:
        for worker in self._workers:
            if future in worker.waiting:
                return worker
        return None

    def _exchange(self, worker: _Worker, block: bool) -> None:
        """Write what waits for any worker, then read one result of `worker`: when one is there,
        or (`block`) when it comes."""
        poller = select.poll()
        poller.register(worker.results.fileno(), select.POLLIN)
        writing = {other.tasks.fileno(): other for other in self._workers if other.unsent}
        for fd in writing:
            poller.register(fd, select.POLLOUT)
        for fd, events in poller.poll(None if block else 0):
            if self._broken is not None:
                return
            if fd in writing and events & (select.POLLOUT | select.POLLERR):
                self._write(writing[fd])
            if fd == worker.results.fileno() and events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                self._read(worker)

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
                worker.started = False
            else:
                unsent[0] = unsent[0][written:]
                worker.started = True

    def _read(self, worker: _Worker) -> None:
        try:
            data = worker.results.recv_bytes()
        except (EOFError, OSError):
            worker.process.join(1)
            self._break(f"a worker process ended abruptly (exit code {worker.process.exitcode})")
            return
        future = worker.waiting.popleft()
        try:
            ok, value = pickle.loads(data)
        except Exception as exc:  # noqa: BLE001 - e.g. an exception class this process cannot import
            ok, value = False, exc
        if future.cancelled():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def _break(self, reason: str) -> None:
        """A worker died: every task not done fails, and the other workers are ended."""
        self._broken = reason
        for worker in self._workers:
            for future in worker.waiting:
                if not future.done():
                    future.set_exception(BrokenProcessPool(reason))
            worker.waiting.clear()
            worker.unsent.clear()
        self.shutdown(wait=False)


class _Awaited(Future):  # type: ignore[type-arg]
    """A task's future: asking it reads what the pool's workers sent."""

    def __init__(self, pool: ProcessPool) -> None:
        super().__init__()
        self._pool = pool

    def result(self, timeout: float | None = None) -> Any:
        self._pool._wait(self)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._pool._wait(self)
        return super().exception(0)

    def done(self) -> bool:
        if not super().done():
            self._pool._poll()
        return super().done()


PIPE_BYTES = 1 << 20  # what a pipe holds (Linux: 64 KB unless asked; 1 MB is what anyone may ask)


def _widen(end: Connection) -> None:
    """A pipe that holds PIPE_BYTES, where the system allows: a worker whose results are not read
    yet (this process is busy storing the ones before) goes on until it is that far ahead, not
    64 KB (4 chunks of articles) ahead, and a window of tasks is written at once."""
    with contextlib.suppress(ImportError, AttributeError, OSError):  # not Linux, or not allowed
        import fcntl

        fcntl.fcntl(end.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def _frame(data: bytes) -> bytes:
    """`data` framed as multiprocessing.Connection frames a message (recv_bytes reads it)."""
    if len(data) < 2**31 - 1:
        return _HEADER.pack(len(data)) + data
    return _HEADER.pack(-1) + struct.pack("!Q", len(data)) + data


def _stop(worker: _Worker) -> None:
    """Tell a worker to end once it has done what it has: the rest of a task half written, then
    the stop, written while its results are read (and dropped), so that neither side waits on
    the other."""
    rest = bytes(worker.unsent[0]) if worker.started else b""  # never half a frame
    view = memoryview(rest + _frame(_STOP))
    worker.unsent.clear()
    poller = select.poll()
    poller.register(worker.tasks.fileno(), select.POLLOUT)
    poller.register(worker.results.fileno(), select.POLLIN)
    try:
        while view:
            for fd, events in poller.poll():
                if fd == worker.results.fileno():
                    worker.results.recv_bytes()
                elif events & select.POLLOUT:
                    with contextlib.suppress(BlockingIOError):
                        view = view[os.write(fd, view) :]
                if events & (select.POLLERR | select.POLLHUP | select.POLLNVAL) and fd == worker.tasks.fileno():
                    return
    except (EOFError, OSError):  # it ended already
        return


def _drain(worker: _Worker) -> None:
    """Read (and drop) a closing worker's results until it ends, so it is never stuck writing."""
    with contextlib.suppress(EOFError, OSError):
        while True:
            worker.results.recv_bytes()
