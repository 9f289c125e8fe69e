"""A digest's plan is written in batches: memory holds one, and a crash half-way is planned again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from publisher.store import Store
from publisher.store.ledger import PLAN_BATCH

NOW = datetime(2026, 11, 30, tzinfo=UTC)


class Crash(Exception):
    pass


def readers(count: int, crash_after: int | None = None) -> Iterator[tuple[str, str]]:
    for n in range(count):
        if n == crash_after:
            raise Crash  # the planning process dies here
        yield f"r{n}@example.com", f"<first.{n}@example.org>"


def test_a_plan_stopped_half_way_is_planned_again_keeping_the_rows_written(store: Store) -> None:
    digest_id, _created = store.open_digest("scheduled:2026-11-30T00:00:00Z", NOW - timedelta(days=7), NOW, NOW)
    count = PLAN_BATCH * 2 + 10
    with pytest.raises(Crash):
        store.plan_deliveries(digest_id, readers(count, crash_after=PLAN_BATCH + 5), NOW)
    assert store.digest(digest_id).status == "planning"  # resume plans it again
    assert store.delivery_counts(digest_id) == {"pending": PLAN_BATCH}  # the first batch was committed

    again = ((key, mid.replace("first", "second")) for key, mid in readers(count))
    store.plan_deliveries(digest_id, again, NOW)
    assert store.digest(digest_id).status == "sending"
    opened = store.open_deliveries(digest_id)
    assert len(opened) == count and len({key for _id, key, _mid, _status, _tries in opened}) == count
    kept = [mid for _id, _key, mid, _status, _tries in opened if mid.startswith("<first.")]
    assert len(kept) == PLAN_BATCH  # a Message-ID fixed at planning never changes
