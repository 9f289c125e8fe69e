"""prepare_in_order: results in input order, a pool only when there is work for one."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime

import pytest

from conftest import Site
from publisher import parallel
from publisher.model import Category, SourceItem
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


def test_no_pool_for_chunks_without_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pool(*args: object, **kwargs: object) -> None:
        raise AssertionError("a pool was started for nothing")

    monkeypatch.setattr(parallel, "workers", lambda: 2)
    monkeypatch.setattr(parallel, "ProcessPoolExecutor", no_pool)
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
