"""prepare_in_order: results in input order, a pool only when there is work for one."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import Site
from publisher import parallel
from publisher.model import Category, Deferred, SourceItem
from publisher.normalize import CategoryIndex, TextRules
from publisher.store import Store

INDEX = CategoryIndex([Category("科技创新", "tech")])


def item(n: int) -> SourceItem:
    return SourceItem("s", f"k{n}", f"标题{n}", f"<p>{n}</p>", datetime(2026, 1, 1, tzinfo=UTC), folder="tech")


def test_order_is_kept_across_the_pool_and_empty_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    chunks = [[], [item(1)], [item(2), item(3)], [], [item(4)], [item(5)], [], [item(6)]]
    out = list(parallel.prepare_in_order(iter(chunks), INDEX, TextRules(), "https://x.org"))
    assert [len(c) for c in out] == [len(c) for c in chunks]
    titles = [a.title for chunk in out for (_item, a) in chunk]  # type: ignore[misc]
    assert titles == [f"标题{n}" for n in range(1, 7)]


def test_the_workers_are_given_a_commit_s_worth_of_chunks_ahead_of_the_one_awaited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the main process stores a result (a batch commit takes some 50 ms), the workers
    read on: with two chunks a worker handed over, both sat idle through every commit."""
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    pulled = 0

    def chunks() -> Iterator[list[SourceItem]]:
        nonlocal pulled
        for n in range(100):
            pulled += 1
            yield [item(n)]

    results = parallel.prepare_in_order(chunks(), INDEX, TextRules(), "https://x.org", in_process=0)
    try:
        next(results)  # the first pooled result: the main process would store it now
        assert pulled >= parallel.WINDOW_ITEMS // parallel.CHUNK >= 8 * 2
    finally:
        results.close()


def test_no_pool_for_chunks_without_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pool(*args: object, **kwargs: object) -> None:
        raise AssertionError("a pool was started for nothing")

    monkeypatch.setattr(parallel, "workers", lambda: 2)
    monkeypatch.setattr(parallel, "ProcessPool", no_pool)
    out = list(parallel.prepare_in_order(iter([[]] * 10 + [[item(1)]]), INDEX, TextRules(), "https://x.org"))
    assert [len(c) for c in out] == [0] * 10 + [1]


def test_a_worker_that_dies_is_named_by_its_file_and_the_build_goes_on(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17, item 12: a crash in native code (here markdown-it-pyrs overflowing its stack on
    deep nesting, with the limits that now prevent it switched off) broke the pool, and the
    build failed with BrokenProcessPool and no file name. Bodies are rendered when a feed first
    shows them (issue 16), on the same pool: the file is stored, then left out of the feeds,
    named in the report, and its feeds stay marked so that they are written again."""
    import resource

    from publisher import markdown, normalize

    monkeypatch.setenv("PUBLISHER_WORKERS", "2")
    monkeypatch.setattr(markdown, "check_limits", lambda text: None)  # the workers fork with it
    monkeypatch.setattr(normalize, "check_limits", lambda text: None)
    # fork, not forkserver (chosen when an earlier test left a thread running): the workers
    # must inherit the switched-off limits and the small stack below.
    monkeypatch.setattr(parallel, "_context", lambda: multiprocessing.get_context("fork"))
    for n in range(70):  # more than SERIAL_CHUNKS * CHUNK: the ingest's pool starts
        site.article(f"tech/a{n:03d}.md", f"文章{n}")
    # The newest: the first body the feeds render
    deep = site.add("tech/zz-deep.md", "---\ntitle: 深\ndate: 2026-05-07 14:00\n---\n" + "1. " * 20_000 + "x\n")
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    resource.setrlimit(resource.RLIMIT_STACK, (1 << 20, hard))  # 1 MB: the worker dies at once
    try:
        report = site.build()
        again = site.build()  # one body to render: in a worker too, never in the build's process
    finally:
        resource.setrlimit(resource.RLIMIT_STACK, (soft, hard))
    assert (report.new, report.skipped, report.failed_sources) == (71, 0, [])
    for built in (report, again):
        [problem] = built.problems
        assert problem.startswith(f"{deep}: reading it crashed the worker process"), problem
    feed = site.feed("tech/rss.xml").decode()
    assert feed.count("<item>") == 50 and "文章69" in feed and "<title>深</title>" not in feed
    store = Store(site.store_url)
    assert store.dirty_scopes() == {"", "tech"}
    store.close()


def test_a_worker_that_dies_while_the_main_process_is_busy_is_named_and_the_next_chunks_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker that dies while the main process is still busy with the previous results breaks
    the pool before the next chunk is handed over: that submit raised BrokenProcessPool out of
    the build (review of issue 16). On the build's shared pool, as ingest and renders use it."""
    import functools
    import os
    import time

    from publisher.model import Deferred

    monkeypatch.setattr(parallel, "workers", lambda: 2)
    monkeypatch.setattr(parallel, "_context", lambda: multiprocessing.get_context("fork"))
    dies = Deferred("dies", functools.partial(os._exit, 1), "dies.md")

    def chunks() -> list[list[Deferred | SourceItem]]:
        yield [dies]
        time.sleep(0.5)  # the main process busy: the pool is broken before the next submit
        yield [item(2), item(3)]
        yield [item(4)]

    shared = parallel.Workers(INDEX, TextRules(), "https://x.org")
    try:
        out = list(
            parallel.prepare_in_order(chunks(), INDEX, TextRules(), "https://x.org", in_process=0, shared=shared)
        )
        again = list(parallel.prepare_in_order(iter([[item(5)]]), INDEX, TextRules(), "https://x.org", shared=shared))
    finally:
        shared.close()
    [[problem], second, third] = out
    assert str(problem).startswith("dies.md: reading it crashed the worker process")
    assert [a.title for _i, a in second + third] == ["标题2", "标题3", "标题4"]  # type: ignore[union-attr,misc]
    assert [a.title for _i, a in again[0]] == ["标题5"]  # type: ignore[union-attr,misc]


MAIN_PID = os.getpid()  # the test's process: a forked worker inherits the number, not the process


def pid_and(n: int) -> tuple[int, int]:
    return n, os.getpid()


def dies_on_a_worker(n: int) -> tuple[int, int]:
    if n == 2 and os.getpid() != MAIN_PID:
        os._exit(1)  # as a crash in native code would end it
    return n, os.getpid()


def started(monkeypatch: pytest.MonkeyPatch) -> parallel.Workers:
    """A build's workers of two processes, started as a build starts them: by a chunk to read."""
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    monkeypatch.setattr(parallel, "_context", lambda: multiprocessing.get_context("fork"))
    shared = parallel.Workers(INDEX, TextRules(), "https://x.org")
    list(parallel.prepare_in_order(iter([[item(1)]]), INDEX, TextRules(), "https://x.org", in_process=0, shared=shared))
    return shared


def test_tasks_run_in_order_on_the_running_workers_and_here_when_none_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The feeds' jobs go to a build's workers only while they run: no pool is started for them
    (one forked at the end of a large build copies the grown process)."""
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    idle = parallel.Workers(INDEX, TextRules(), "https://x.org")
    assert list(idle.run_in_order(pid_and, range(3))) == [(n, MAIN_PID) for n in range(3)]
    assert idle.pool.executor is None
    shared = started(monkeypatch)
    try:
        done = list(shared.run_in_order(pid_and, range(12)))
    finally:
        shared.close()
    assert [n for n, _pid in done] == list(range(12))
    assert MAIN_PID not in {pid for _n, pid in done}


def niceness(_n: int) -> int:
    return os.nice(0)


def test_the_workers_yield_the_cores_to_the_build_s_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The build's process feeds the workers and stores what they read: when they all want the
    cores, it goes first (and a service's web requests, in that process, too)."""
    shared = started(monkeypatch)
    try:
        seen = set(shared.run_in_order(niceness, range(4)))
    finally:
        shared.close()
    assert seen == {min(os.nice(0) + parallel.WORKER_NICENESS, 19)}


def test_tasks_go_to_the_workers_from_when_they_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build's first feeds may be known before its pool runs (the bodies' renders start it):
    each task goes where it can when it is given."""
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    monkeypatch.setattr(parallel, "_context", lambda: multiprocessing.get_context("fork"))
    shared = parallel.Workers(INDEX, TextRules(), "https://x.org")

    def tasks() -> Iterator[int]:
        yield 0
        yield 1
        list(parallel.prepare_in_order(iter([[item(1)]]), INDEX, TextRules(), "https://x.org", in_process=0,
                                       shared=shared))  # fmt: skip
        yield from range(2, 8)

    try:
        done = list(shared.run_in_order(pid_and, tasks()))
    finally:
        shared.close()
    assert [n for n, _pid in done] == list(range(8))
    assert [pid == MAIN_PID for _n, pid in done] == [True, True] + [False] * 6


def test_a_task_whose_worker_dies_is_done_here_and_the_pool_starts_anew(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = started(monkeypatch)
    try:
        done = list(shared.run_in_order(dies_on_a_worker, range(6)))
        assert [n for n, _pid in done] == list(range(6))
        assert dict(done)[2] == MAIN_PID  # done again here
        assert shared.pool.executor is None  # the broken pool closed: the next use starts one
        again = list(parallel.prepare_in_order(iter([[item(7)]]), INDEX, TextRules(), "https://x.org", in_process=0,
                                               shared=shared))  # fmt: skip
    finally:
        shared.close()
    assert [a.title for _i, a in again[0]] == ["标题7"]  # type: ignore[union-attr,misc]


def again_here(n: int) -> tuple[int, int]:
    return n, -1


def test_a_task_whose_worker_died_is_done_by_its_again_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output's jobs write files: one done again counts them all written (publisher.output).
    The tasks lost with it (the pool ends every worker then) are done by it too."""
    shared = started(monkeypatch)
    try:
        done = dict(shared.run_in_order(dies_on_a_worker, range(6), again=again_here))
    finally:
        shared.close()
    assert done[2] == -1 and sorted(done) == list(range(6))


def slowly(n: int) -> tuple[int, int]:
    time.sleep(0.1)
    return n, os.getpid()


def test_a_pool_broken_under_a_task_is_closed_only_if_no_read_started_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task lost with a broken pool is met after a read has started a pool anew (the bodies
    and the feeds share the workers): closing that one would cancel the tasks waiting on it."""
    shared = started(monkeypatch)

    def tasks() -> Iterator[int]:
        yield 2  # its worker dies: the pool is broken
        time.sleep(0.5)
        reads = [[item(3)], [item(4)]]  # the first met broken, read alone; the second on a new pool
        out = list(parallel.prepare_in_order(iter(reads), INDEX, TextRules(), "https://x.org", in_process=0,
                                             shared=shared))  # fmt: skip
        assert [a.title for chunk in out for _i, a in chunk] == ["标题3", "标题4"]  # type: ignore[union-attr,misc]
        yield from range(10, 20)  # more than the new pool takes at once: some wait in it

    try:
        done = list(shared.run_in_order(_dies_or_slowly, tasks()))
    finally:
        shared.close()
    assert [n for n, _pid in done] == [2, *range(10, 20)]
    assert dict(done)[2] == MAIN_PID and MAIN_PID not in {pid for n, pid in done if n >= 10}


def _dies_or_slowly(n: int) -> tuple[int, int]:
    return dies_on_a_worker(n) if n == 2 else slowly(n)


def touch_as(folder: Path) -> None:
    (folder / str(os.getpid())).touch()


def test_preparations_run_on_the_workers_once_they_were_given_every_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the feeds' jobs need loaded is loaded while the workers would idle: after the reads
    were handed over, never before the pool runs, and once."""
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    monkeypatch.setattr(parallel, "_context", lambda: multiprocessing.get_context("fork"))
    shared = parallel.Workers(INDEX, TextRules(), "https://x.org")
    shared.prepare(touch_as, tmp_path)
    try:
        chunks = [[item(n)] for n in range(3)]
        list(parallel.prepare_in_order(iter(chunks[:1]), INDEX, TextRules(), "https://x.org", shared=shared))
        assert list(tmp_path.iterdir()) == []  # read here, and no pool runs: none to prepare
        list(parallel.prepare_in_order(iter(chunks), INDEX, TextRules(), "https://x.org", in_process=0, shared=shared))
        list(parallel.prepare_in_order(iter(chunks), INDEX, TextRules(), "https://x.org", in_process=0, shared=shared))
    finally:
        shared.close()  # waits for what was handed over
    made = list(tmp_path.iterdir())
    assert 1 <= len(made) <= 2 and str(MAIN_PID) not in {p.name for p in made}
    assert shared.preparations == []


def test_preparations_loaded_here_before_the_pool_is_forked_are_inherited_not_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build into a store without articles renders every article it reads: what the feeds
    need is loaded in its process before the workers are forked, and they inherit it."""
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    monkeypatch.setattr(parallel, "_context", lambda: multiprocessing.get_context("fork"))
    shared = parallel.Workers(INDEX, TextRules(), "https://x.org")
    shared.prepare(touch_as, tmp_path)
    shared.prepare(touch_as, tmp_path / "bodies", bodies=True)
    (tmp_path / "bodies").mkdir()
    try:
        shared.load_here()
        chunks = [[item(n)] for n in range(3)]
        list(parallel.prepare_in_order(iter(chunks), INDEX, TextRules(), "https://x.org", in_process=0, shared=shared))
        shared.load_here()  # the pool runs: nothing more here
    finally:
        shared.close()
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == [str(MAIN_PID)]
    assert [p.name for p in (tmp_path / "bodies").iterdir()] == [str(MAIN_PID)]
    assert shared.preparations == []


def test_a_build_loads_the_renderers_before_its_workers_only_into_a_store_without_articles(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[bool] = []
    load_here = parallel.Workers.load_here

    def recorded(self: parallel.Workers) -> None:
        loaded.append(self.pool.executor is None)
        load_here(self)

    monkeypatch.setattr(parallel.Workers, "load_here", recorded)
    site.article("tech/a.md", "一篇")
    site.build()
    site.article("tech/b.md", "又一篇")
    site.build()
    assert loaded == [True]  # the first build's, before any worker ran; none in the second


# Each reading a build may do before its feeds: (render, chunks read here first) of each call
FILES_INGEST = [(False, 0)]  # many files, read on the workers, bodies left unrendered
WEB_INGEST = [(True, 0)]  # a web source's items, their bodies rendered as read
A_FEW_FILES = [(False, 10)]  # a +1 rebuild: its file read here, while the pool runs (a big folder's walk)
WEB_THEN_FILES = [(True, 0), (False, 0)]


@pytest.mark.parametrize(
    ("readings", "prepared_for_bodies"),
    [(FILES_INGEST, True), (WEB_INGEST, False), (A_FEW_FILES, False), (WEB_THEN_FILES, True)],
)
def test_a_preparation_for_bodies_follows_only_many_files_read_without_their_bodies(
    readings: list[tuple[bool, int]], prepared_for_bodies: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What rendering a body needs (the summaries' grapheme patterns: importing `regex`) is
    loaded ahead of the many bodies the feeds show after an ingest of many files (read on the
    workers, bodies left unrendered). After any other reading a worker that renders no body
    would load it for nothing ahead of its feeds: it waits for such an ingest, the other
    preparations go at once."""
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    monkeypatch.setattr(parallel, "_context", lambda: multiprocessing.get_context("fork"))
    plain, bodies = tmp_path / "plain", tmp_path / "bodies"
    plain.mkdir()
    bodies.mkdir()
    shared = parallel.Workers(INDEX, TextRules(), "https://x.org")
    shared.prepare(touch_as, plain)
    shared.prepare(touch_as, bodies, bodies=True)
    try:
        shared.pool.submit(os.getpid).result()  # running, as after a big folder's stat calls
        for render, here in readings:
            chunks = [[item(n)] for n in range(3)]
            list(parallel.prepare_in_order(iter(chunks), INDEX, TextRules(), "https://x.org", render, here, shared))
    finally:
        shared.close()  # waits for what was handed over
    assert len(list(plain.iterdir())) == 2  # each worker once
    assert len(list(bodies.iterdir())) == (2 if prepared_for_bodies else 0)
    assert len(shared.preparations) == (0 if prepared_for_bodies else 1)


def test_a_build_that_reads_nothing_hands_its_workers_no_preparation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unchanged build walks on the workers (a big folder's stat calls) and reads nothing:
    loading the feeds' renderers there was 0.1 s of CPU for feeds it never writes, and the
    build's end waited for it. A later read that gives the workers a chunk hands it over."""
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    monkeypatch.setattr(parallel, "_context", lambda: multiprocessing.get_context("fork"))
    shared = parallel.Workers(INDEX, TextRules(), "https://x.org")
    shared.prepare(touch_as, tmp_path)
    try:
        shared.pool.submit(os.getpid).result()  # running, as after a walk's stat calls
        empty: list[list[Deferred | SourceItem]] = [[], []]
        read = list(parallel.prepare_in_order(iter(empty), INDEX, TextRules(), "https://x.org", shared=shared))
        assert read == [[], []]
        assert shared.preparations != []
        # One new article, read here (the first chunks are), as in a +1 rebuild of a big tree
        list(parallel.prepare_in_order(iter([[item(1)]]), INDEX, TextRules(), "https://x.org", shared=shared))
        assert shared.preparations == []
        deadline = time.monotonic() + 10  # handed over, not awaited: closing would cancel it
        while not list(tmp_path.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        shared.close()
    made = list(tmp_path.iterdir())
    assert 1 <= len(made) <= 2 and str(MAIN_PID) not in {p.name for p in made}


def _files(site: Site, count: int) -> list[Deferred]:
    """`count` articles of a files source, listed as a build lists them."""
    from publisher.sources.files import FilesSource

    for n in range(count):
        site.article(f"tech/{n:03d}.md", f"文章{n}")
    source = FilesSource("content", site.content, "Asia/Shanghai")
    return [unit for unit in source.fetch({}) if isinstance(unit, Deferred)]


def _read(units: list[Deferred]) -> dict[str, parallel.ReadAhead]:
    """What a read ahead gives for `units`: each read as the workers read it, bodies unrendered."""
    prepared = parallel.prepare_all(list(units), INDEX, TextRules(), "https://x.org", render=False)
    return {u.key: ((u.fingerprint, u.location), p) for u, p in zip(units, prepared, strict=True)}


def test_chunks_read_ahead_are_taken_and_the_rest_read_by_the_workers_meanwhile(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cold build's first files, read while it started (build_ahead.py): their chunks come
    back as read, in order among the chunks the workers read, and the workers get the chunks
    after them before the first of them is given back (the main process stores it meanwhile)."""
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    units = _files(site, 6 * parallel.CHUNK)
    chunks = [units[i : i + parallel.CHUNK] for i in range(0, len(units), parallel.CHUNK)]
    ahead = _read(units[: 3 * parallel.CHUNK])
    sent: list[object] = []
    submit = parallel._Pool.submit

    def recorded(pool: parallel._Pool, task: object, chunk: list[Deferred], render: bool) -> object:
        sent.append(chunk[0].key)
        return submit(pool, task, chunk, render)  # type: ignore[arg-type]

    monkeypatch.setattr(parallel._Pool, "submit", recorded)
    given = parallel.prepare_in_order(iter(chunks), INDEX, TextRules(), "https://x.org", render=False, ahead=ahead)
    first = next(given)
    assert sent == [chunk[0].key for chunk in chunks[3:]]  # every chunk not read ahead is on the workers
    out = [first, *given]
    assert out == [parallel.prepare_all(c, INDEX, TextRules(), "https://x.org", render=False) for c in chunks]
    assert all(out[i] == [ahead[u.key][1] for u in chunks[i]] for i in range(3))


def test_a_file_read_ahead_under_another_fingerprint_is_read_again(site: Site) -> None:
    """A file changed between the read ahead and the build's own listing is listed under a new
    fingerprint: what was read ahead does not stand for it, and its chunk is read now."""
    units = _files(site, 3)
    ahead = _read(units)
    changed = units[1]
    site.article(changed.key, "改过的标题")
    stale = {**ahead, changed.key: (("0:0", changed.location), ahead[changed.key][1])}
    out = list(parallel.prepare_in_order(iter([units]), INDEX, TextRules(), "https://x.org", render=False, ahead=stale))
    titles = [a.title for chunk in out for (_item, a) in chunk]  # type: ignore[misc]
    assert titles == ["文章0", "改过的标题", "文章2"]


def test_reads_ahead_stand_only_for_bodies_left_unrendered(site: Site) -> None:
    """A source whose bodies are rendered as they are read (a web source) takes nothing read
    ahead: the files were read without their bodies."""
    units = _files(site, 2)
    ahead = _read(units)
    out = list(parallel.prepare_in_order(iter([units]), INDEX, TextRules(), "https://x.org", render=True, ahead=ahead))
    assert [a.rendered for chunk in out for (_item, a) in chunk] == [True, True]  # type: ignore[misc]


def test_with_one_worker_the_chunks_read_ahead_come_first_and_the_rest_is_read_here(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PUBLISHER_WORKERS=1: no pool; what was read ahead is taken, the rest read in this process."""
    monkeypatch.setattr(parallel, "workers", lambda: 1)
    monkeypatch.setattr(parallel, "ProcessPool", lambda *a, **k: pytest.fail("a pool was started"))
    units = _files(site, 4 * parallel.CHUNK)
    chunks = [units[i : i + parallel.CHUNK] for i in range(0, len(units), parallel.CHUNK)]
    ahead = _read(units[: 2 * parallel.CHUNK])
    out = list(parallel.prepare_in_order(iter(chunks), INDEX, TextRules(), "https://x.org", render=False, ahead=ahead))
    assert out == [parallel.prepare_all(c, INDEX, TextRules(), "https://x.org", render=False) for c in chunks]
