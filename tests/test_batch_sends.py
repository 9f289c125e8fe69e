"""The send engine through a batch API (the Postmark double on loopback) and the real ledger:
each delivery marked with its own outcome, a lost answer uncertain for its call only, a whole
call's failure one error in a row, the operator's pause between calls; and the fleet's rate."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from provider_double import TOKEN, PostmarkDouble
from sqlalchemy import event, text
from test_delivery import NOW, READERS, _planned, build
from test_http_api import _dropping_server

from backends import new_postgres_url
from conftest import Site
from publisher.delivery import Sender
from publisher.model import Delivery
from publisher.store import Store
from publisher.store.send_rates import SendTokens
from publisher.transports.batch import BATCH_APIS, BatchApiTransport
from publisher.transports.http_api import HttpApiTransport


@pytest.fixture
def planned(site: Site) -> Iterator[tuple[Store, int]]:
    yield from _planned(site.store_url)


def postmark(url: str, token: str = TOKEN, size: int | None = None) -> BatchApiTransport:
    single = HttpApiTransport("postmark", token, base_url=url, options={}, sleep=lambda _s: None, attempts=2)
    return BatchApiTransport(single, BATCH_APIS["postmark"], size)


def sender(store: Store, transport: Any, refused: list[str] | None = None, **extra: Any) -> Sender:
    gone = refused if refused is not None else []
    return Sender(store, transport, lambda: NOW, messages_per_second=0, sleep=lambda _s: None,
                  refused=lambda delivery, _why: gone.append(delivery.email_key), **extra)  # fmt: skip


def statuses(store: Store) -> dict[str, tuple[str, int, str | None]]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("select email_key, status, attempts, provider_id from deliveries")).all()
    return {key: (status, attempts, provider) for key, status, attempts, provider in rows}


def test_each_delivery_of_a_call_gets_its_own_outcome(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    refused: list[str] = []
    with PostmarkDouble(inactive=frozenset({READERS[2]})) as api:
        report = sender(store, postmark(api.url), refused).run(digest_id, build)
    assert api.calls == 1 and sorted(to for to, _ in api.taken) == sorted(set(READERS) - {READERS[2]})
    assert (report.sent, report.failed) == (4, 1)
    marks = statuses(store)
    assert marks.pop(READERS[2])[:2] == ("failed", 1)
    assert all(status == "sent" and provider for status, _n, provider in marks.values())
    assert refused == [READERS[2]]  # an inactive address: a hard bounce, as a refusal at RCPT is
    assert store.digest(digest_id).status == "done"


def test_an_answer_lost_after_the_call_went_makes_that_calls_deliveries_uncertain(
    planned: tuple[Store, int],
) -> None:
    store, digest_id = planned
    listener, seen = _dropping_server()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        report = sender(store, postmark(url, size=3), pause_after=3).run(digest_id, build)
    finally:
        listener.close()
    assert len(seen) == 2 and report.uncertain == 5 and not report.paused  # two calls, two errors in a row
    assert {status for status, _n, _p in statuses(store).values()} == {"uncertain"}


def test_a_wrong_key_gives_every_delivery_back_and_pauses(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    with PostmarkDouble() as api:
        report = sender(store, postmark(api.url, token="wrong")).run(digest_id, build)
    assert report.paused and "HTTP 401" in report.pause_reason and api.taken == []
    assert {mark[:2] for mark in statuses(store).values()} == {("pending", 0)}
    assert store.digest(digest_id).status == "paused"


def test_the_operators_pause_is_read_between_calls(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    calls: list[int] = []
    with PostmarkDouble() as api:
        report = sender(store, postmark(api.url, size=2)).run(
            digest_id, build, should_stop=lambda: calls.append(len(api.taken)) is None and len(api.taken) >= 2
        )
    assert report.stopped and len(api.taken) == 2
    assert sorted(status for status, _n, _p in statuses(store).values()) == ["pending"] * 3 + ["sent"] * 2


def test_a_delivery_another_sender_claimed_is_left_out_of_the_call(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    taken_by_other = store.next_deliveries(digest_id, 1)[0]

    def build_and_claim(delivery: Delivery) -> Any:
        if delivery.id == taken_by_other.id:  # another process claims it between the read and the call
            with store.ledger() as other:
                assert other.claim(taken_by_other, NOW)
        return build(delivery)

    with PostmarkDouble() as api:
        sender(store, postmark(api.url)).run(digest_id, build_and_claim)
    assert taken_by_other.email_key not in {to for to, _ in api.taken} and len(api.taken) == 4


@pytest.mark.postgresql_only("the fleet's bucket lives in a PostgreSQL store")
def test_the_send_rate_is_shared_by_every_sender() -> None:
    """Four threads (think: workers) take 1 token at a time from one bucket at 200 a second:
    together they send no faster than 200 a second (one second's burst aside)."""
    store = Store(new_postgres_url())
    try:
        taken: list[float] = []
        lock = threading.Lock()

        def worker() -> None:
            for _ in range(100):
                time.sleep(store.take_send_tokens("postmark", 1, 200.0))
                with lock:
                    taken.append(time.monotonic())

        started = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        assert len(taken) == 400 and elapsed >= (400 - 200) / 200 * 0.95  # the burst, then 200 a second
        assert elapsed < 4.0  # and not much slower
        assert store.take_send_tokens("resend", 1, 200.0) == 0.0  # each transport its own bucket
    finally:
        store.close()


def test_tokens_taken_in_blocks_wait_as_one_take_a_message_would() -> None:
    """At 10 a second a sender takes 10 tokens a take, not one, and each message still waits
    for its own token's time: the rate is kept, at a tenth of the takes."""
    now = [0.0]
    takes: list[int] = []
    tokens = [10.0]  # a bucket as store/send_rates.py keeps it, on a clock of our own

    def take(n: int) -> float:
        takes.append(n)
        tokens[0] -= n
        return max(0.0, -tokens[0]) / 10

    taker = SendTokens(take, 10.0, monotonic=lambda: now[0])
    waits = [taker(1) for _ in range(30)]  # no time passes: the burst, then a debt
    assert takes == [10, 10, 10]
    assert waits == pytest.approx([0.0] * 10 + [n / 10 for n in range(1, 21)])
    assert taker(3) == pytest.approx(2.3)  # more than the reserve: the rest taken, the last's wait
    assert taker.reserve == 7
    taker.give_back()
    assert takes[-1] == -7 and taker.reserve == 0


@pytest.mark.postgresql_only("the fleet's bucket lives in a PostgreSQL store")
def test_tokens_not_spent_go_back_to_the_bucket_never_above_its_burst() -> None:
    store = Store(new_postgres_url())
    try:
        statements: list[str] = []
        event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        taker = store.send_tokens("postmark", 50.0)
        assert taker(1) == 0.0 and taker.reserve == 49  # a block of 50: the bucket is empty
        assert any("synchronous_commit = off" in s for s in statements)  # a crash loses nothing that matters
        taker.give_back()
        assert store.take_send_tokens("postmark", 49, 50.0) < 0.05  # the 49 came back
        store.take_send_tokens("postmark", -500, 50.0)  # more than the burst given back
        assert store.take_send_tokens("postmark", 100, 50.0) > 0.9  # holds one second's worth at most
    finally:
        store.close()
