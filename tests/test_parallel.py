"""prepare_in_order: results in input order, a pool only when there is work for one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from publisher import parallel
from publisher.model import Category, SourceItem
from publisher.normalize import CategoryIndex, TextRules

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
