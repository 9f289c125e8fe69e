"""The build's worker processes, driven from the thread that uses them (publisher.process_pool):
tasks and results in order, failures as the caller's exceptions, a dead worker breaking the pool,
and neither side ever waiting on the other however large the tasks and results."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import select
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from publisher import process_pool
from publisher.process_pool import ProcessPool

FORK = multiprocessing.get_context("fork")


def nothing() -> None:
    return None


def pid_and(n: int) -> tuple[int, int]:
    return n, os.getpid()


def pid_after(n: int, seconds: float = 0.05) -> tuple[int, int]:
    """`pid_and`, done only after a while: a task still running when the next one is given."""
    time.sleep(seconds)
    return n, os.getpid()


def sized(n: int, size: int) -> tuple[int, bytes]:
    return n, bytes([n % 256]) * size


def fails(n: int) -> None:
    raise ValueError(f"no {n}")


def unpicklable() -> object:
    return threading.Lock()


def dies(after: float = 0) -> None:
    time.sleep(after)
    os._exit(3)


def sleeps_then_says(seconds: float, path: str) -> None:
    time.sleep(seconds)
    Path(path).write_text("done")


UNPICKLED_HERE: list[int] = []


def _unpickled() -> None:
    UNPICKLED_HERE.append(os.getpid())


class NoticedWhenUnpickled:
    """A value whose unpickling in a process is noted there (as unpickling a compiled `regex`
    pattern imports `regex`)."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _unpickled, ()


def makes_a_value() -> NoticedWhenUnpickled:
    return NoticedWhenUnpickled()


def says_its_pid(folder: str) -> None:
    (Path(folder) / str(os.getpid())).touch(exist_ok=False)


class Stuck(Exception):
    pass


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise Stuck in this thread if the block has not ended after `seconds` (SIGALRM)."""

    def stuck(_signum: int, _frame: object) -> None:
        raise Stuck(f"still waiting after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stuck)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """Every test here waits on other processes: one stuck (a deadlock, a death not seen) fails
    with Stuck instead of hanging the run."""
    with deadline(60):
        yield


def pool(size: int = 2) -> ProcessPool:
    return ProcessPool(size, FORK, nothing, ())


def test_results_come_back_from_the_workers_for_each_task() -> None:
    workers = pool()
    try:
        futures = [workers.submit(pid_after, n) for n in range(20)]  # each still running as the next is given
        done = [f.result() for f in futures]
    finally:
        workers.shutdown()
    assert [n for n, _pid in done] == list(range(20))
    pids = {pid for _n, pid in done}
    assert len(pids) == 2 and os.getpid() not in pids  # both workers, neither of them this process


def sleeps_and_says_its_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_a_task_goes_to_a_worker_that_finished_its_tasks_though_their_results_were_not_asked_for() -> None:
    """A build hands its feeds over as their bodies are rendered and asks for their results
    once all are given: a worker that finished its feeds counts as free, not as busy with them
    (the feeds after them went to the other worker, busy with a slow one, while it sat idle)."""
    workers = pool()
    try:
        slow = workers.submit(sleeps_and_says_its_pid, 2.0)  # the first worker, busy for a while
        quick = workers.submit(pid_and, 0)  # the second
        second = workers._workers[1].results
        assert select.select([second], [], [], 10)[0]  # done there: its result waits to be asked for
        later = workers.submit(pid_and, 1)
        assert later.result()[1] == quick.result()[1] != slow.result()
    finally:
        workers.shutdown()


def test_no_thread_runs_beside_the_caller() -> None:
    """What ProcessPoolExecutor did in two threads (pickling, reading) this thread does."""
    before = threading.active_count()
    workers = pool()
    try:
        futures = [workers.submit(pid_and, n) for n in range(10)]
        assert threading.active_count() == before
        assert [f.result()[0] for f in futures] == list(range(10))
    finally:
        workers.shutdown()


def test_a_task_that_raises_raises_in_the_caller_with_where_it_was_raised() -> None:
    workers = pool(1)
    try:
        failed = workers.submit(fails, 7)
        after = workers.submit(pid_and, 8)
        with pytest.raises(ValueError, match="no 7") as raised:
            failed.result()
        assert after.result()[0] == 8  # the worker goes on
    finally:
        workers.shutdown()
    [note] = raised.value.__notes__
    assert note.startswith("in a worker process:") and "in fails" in note


def test_a_result_that_cannot_be_pickled_fails_that_task_only() -> None:
    workers = pool(1)
    try:
        bad = workers.submit(unpicklable)
        good = workers.submit(pid_and, 1)
        assert isinstance(bad.exception(), TypeError)  # cannot pickle '_thread.lock' object
        assert good.result()[0] == 1
    finally:
        workers.shutdown()


def test_tasks_and_results_larger_than_a_pipe_never_stall_either_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every task is given before any result is read, each task and result 200 KB through pipes
    of 4 KB: this process writes what a pipe takes and keeps the rest, so it never waits on a
    worker that waits to write its result."""
    monkeypatch.setattr(process_pool, "PIPE_BYTES", 4096)
    workers = pool()
    try:
        big = [workers.submit(sized, n, 200_000) for n in range(12)]
        lengths = [workers.submit(len, b"x" * 200_000) for _ in range(4)]
        results = [f.result() for f in big]
        measured = [f.result() for f in lengths]
    finally:
        workers.shutdown()
    assert [(n, len(data), data[:1]) for n, data in results] == [(n, 200_000, bytes([n])) for n in range(12)]
    assert measured == [200_000] * 4


def test_done_says_whether_a_result_came_without_waiting_for_it(tmp_path: Path) -> None:
    workers = pool(1)
    try:
        flag = tmp_path / "flag"
        slow = workers.submit(sleeps_then_says, 0.5, str(flag))
        assert not slow.done()
        assert not flag.exists()  # done() did not wait for it
        slow.result()
        assert slow.done() and flag.read_text() == "done"
    finally:
        workers.shutdown()


def test_a_death_read_before_a_task_is_given_breaks_the_pool_at_once() -> None:
    workers = pool(1)
    try:
        workers.submit(dies)
        workers._workers[0].process.join(10)
        with pytest.raises(BrokenProcessPool, match="ended abruptly"):
            workers.submit(len, b"")
    finally:
        workers.shutdown()


def test_a_worker_that_dies_breaks_the_pool_for_every_task_not_done() -> None:
    """As ProcessPoolExecutor: a crash in native code leaves nothing to catch, so the tasks given
    to the pool and not read back are lost, the other worker is ended, and the pool takes no more
    (parallel.Workers starts a new one)."""
    workers = pool()
    processes = [w.process for w in workers._workers]
    try:
        assert workers.submit(pid_and, 1).result()[0] == 1
        dead = workers.submit(dies, 0.3)  # once all are given
        # two behind it, two on the other, none done when the death is read (one done and read
        # before would have its result: `submit` reads what was sent)
        behind = [workers.submit(pid_after, n, 5.0) for n in range(2, 6)]
        with pytest.raises(BrokenProcessPool, match=r"exit code 3"):
            dead.result()
        assert all(isinstance(f.exception(), BrokenProcessPool) for f in behind)
        assert not any(p.is_alive() for p in processes)
        with pytest.raises(BrokenProcessPool):
            workers.submit(pid_and, 9)
    finally:
        workers.shutdown()


def test_a_task_written_to_a_worker_that_died_breaks_the_pool() -> None:
    """Writing to the pipe of a worker that is gone (its death not read yet) fails that task, not
    this process (EPIPE, not SIGPIPE). (A death already there to read is read by `submit`, which
    then raises: here it dies between that read and the write.)"""
    workers = pool(1)
    try:
        workers.submit(dies)
        workers._workers[0].process.join(10)  # it is dead now; nothing has read that yet
        workers._read_sent = lambda: None  # type: ignore[method-assign]
        given = workers.submit(len, b"x" * 100_000)
        with pytest.raises(BrokenProcessPool, match="writing its task"):
            given.result()
        with pytest.raises(BrokenProcessPool):
            workers.submit(len, b"")
    finally:
        workers.shutdown()


def test_broadcast_runs_once_on_every_worker(tmp_path: Path) -> None:
    """What a build's workers load before they render (parallel.Workers.prepare): once each."""
    workers = pool()
    processes = [w.process for w in workers._workers]
    try:
        workers.broadcast(says_its_pid, str(tmp_path))
        workers.submit(pid_and, 1).result()  # behind a broadcast on its worker
    finally:
        workers.shutdown(wait=True, cancel_futures=True)
    said = sorted(p.name for p in tmp_path.iterdir())
    assert len(said) == 2 and str(os.getpid()) not in said
    assert [p.exitcode for p in processes] == [0, 0]  # a result nobody asks for is no work left: stopped


def test_a_broadcasts_value_never_comes_back() -> None:
    """Nobody awaits a broadcast's value (a preparation's): unpickled here, it could import what
    this process never uses, as the summaries' compiled grapheme patterns import `regex`."""
    workers = pool()
    try:
        workers.broadcast(makes_a_value)
        assert [workers.submit(pid_and, n).result()[0] for n in range(4)] == [0, 1, 2, 3]  # read past it
        assert UNPICKLED_HERE == []
        pickle.loads(pickle.dumps(makes_a_value()))  # the probe works: unpickled here, it is noted
        assert UNPICKLED_HERE == [os.getpid()]
    finally:
        UNPICKLED_HERE.clear()
        workers.shutdown(wait=True, cancel_futures=True)


def test_shutdown_stops_idle_workers_and_kills_busy_ones_at_once(tmp_path: Path) -> None:
    """At a build's end every result was read: its workers are told to stop and exit 0. A build
    that ends early (an error in strict mode, Ctrl-C) does not wait for the tasks it gave: their
    worker is killed (a task only reads, or writes a file whole by renaming it)."""
    idle = pool(1)
    idle.submit(pid_and, 1).result()
    [quiet] = [w.process for w in idle._workers]
    idle.shutdown(wait=True, cancel_futures=True)
    assert quiet.exitcode == 0
    busy = pool(1)
    flag = tmp_path / "flag"
    given: list[Future[Any]] = [busy.submit(sleeps_then_says, 5, str(flag)), busy.submit(pid_and, 1)]
    [killed] = [w.process for w in busy._workers]
    started = time.monotonic()
    busy.shutdown(wait=True, cancel_futures=True)
    assert time.monotonic() - started < 3 and killed.exitcode == -signal.SIGKILL and not flag.exists()
    assert all(f.cancelled() for f in given)
    with pytest.raises(CancelledError):
        given[1].result()


def test_a_worker_dying_while_its_tasks_wait_here_breaks_the_pool_for_the_other_worker_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Review of the pool: a task that its worker's pipe could not take waits here; the worker
    dies; awaiting the other worker's result finds the dead pipe while writing, and must say
    BrokenProcessPool (what the build recovers from), not fail on the pipes the break closed."""
    monkeypatch.setattr(process_pool, "PIPE_BYTES", 4096)
    workers = pool()
    try:
        workers.submit(dies, 0.3)  # the first worker
        other = workers.submit(sleeps_then_says, 30, str(tmp_path / "flag"))  # the second: killed by the break
        workers.submit(len, b"x" * 300_000)  # the first again: most of it waits here
        with pytest.raises(BrokenProcessPool):
            other.result()
    finally:
        workers.shutdown()


def test_an_interrupt_while_reading_a_result_breaks_the_pool_and_nothing_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C in the middle of a result leaves the rest of it in the pipe: the pool cannot tell
    where the next message starts, so it is broken and its workers killed, and the build's
    closing of it returns at once."""
    workers = pool(1)
    [worker] = workers._workers
    future = workers.submit(pid_and, 1)

    def interrupted() -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(worker.results, "recv_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        future.result()
    assert worker.process.exitcode == -signal.SIGKILL
    assert isinstance(future.exception(), BrokenProcessPool)
    with pytest.raises(BrokenProcessPool):
        workers.submit(pid_and, 2)
    workers.shutdown(wait=True, cancel_futures=True)


def test_shutdown_without_waiting_ends_the_workers_now(tmp_path: Path) -> None:
    """Even a worker that inherited a SIGTERM handler (forked from a process with one, as a test
    run's is after the service's tests) is ended."""
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    try:
        workers = pool(1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    flag = tmp_path / "flag"
    given = workers.submit(sleeps_then_says, 5, str(flag))
    processes = [w.process for w in workers._workers]
    started = time.monotonic()
    workers.shutdown(wait=False)
    assert time.monotonic() - started < 3
    assert all(not p.is_alive() for p in processes) and not flag.exists()
    assert isinstance(given.exception(), BrokenProcessPool)


def test_an_interrupt_while_a_result_is_unpickled_fails_its_future_as_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    """The result read whole, the interrupt in unpickling it (milliseconds for a chunk of 32
    articles): its future must not be lost between its worker's queue and its outcome."""
    workers = pool(1)
    future = workers.submit(pid_and, 1)
    real_loads = pickle.loads

    def interrupted(data: bytes) -> object:
        monkeypatch.setattr(pickle, "loads", real_loads)
        raise KeyboardInterrupt

    monkeypatch.setattr(pickle, "loads", interrupted)  # the module process_pool reads it from
    with pytest.raises(KeyboardInterrupt):
        future.result()
    assert future.done() and isinstance(future.exception(), BrokenProcessPool)
    workers.shutdown(wait=True, cancel_futures=True)
