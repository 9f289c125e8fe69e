"""The store's own contracts: what bulk writes leave behind reads back, compares and sorts
exactly as SQLAlchemy's own writes do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import DateTime

from publisher.model import Article
from publisher.store import Store, sqlite_datetime


@pytest.mark.parametrize(
    "moment", [datetime(2026, 5, 6, 7, 8, 9, 123456), datetime(2026, 5, 6), datetime(999, 1, 2, 3, 4, 5, 6)]
)
def test_bulk_insert_writes_datetimes_in_sqlalchemys_sqlite_format(tmp_path: Path, moment: datetime) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        dialect = store.engine.dialect
        sqlalchemys = DateTime().dialect_impl(dialect).bind_processor(dialect)
        assert sqlalchemys is not None and sqlite_datetime(moment) == sqlalchemys(moment)
    finally:
        store.close()


def test_bulk_inserted_articles_read_back_and_sort_as_written(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    base = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    whens = [base, base + timedelta(microseconds=1), base - timedelta(days=400), base + timedelta(seconds=1)]
    try:
        with store.writer() as writer:
            for n, when in enumerate(whens):
                article = Article("s", f"k{n}", "", f"标题{n}", "<p>x</p>", "摘要", when, when, ("tech",), f"h{n}")
                writer.insert(article, f"tag:x,2026:{n}", None, "1:2", base)
        newest = store.latest("tech", 10)
        assert [(a.title, a.published) for a in newest] == sorted(
            ((f"标题{n}", when) for n, when in enumerate(whens)), key=lambda pair: pair[1], reverse=True
        )
        assert [a.title for a in store.latest(None, 10)] == [a.title for a in newest]
        assert [a.title for a in store.articles_between(base, base + timedelta(seconds=1), "published")] == [
            "标题3",
            "标题1",
        ]
    finally:
        store.close()
