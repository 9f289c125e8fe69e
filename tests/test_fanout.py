"""Digest fan-out on Procrastinate workers, end to end: a PostgreSQL store, real `publisher
worker` processes (one SIGKILLed mid-run), a real SMTP server on loopback, and the ledger."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from test_newsletter import Inbox, add_readers, mailing_site, this_month
from test_newsletter import run_cli as cli
from test_smtp import smtp_on_loopback

from backends import new_postgres_url
from conftest import Site
from publisher.newsletter import Newsletter

READERS = 5000
FANOUT = """
[fanout]
enabled = true
chunk = 250
heartbeat = "1s"
stalled_after = "3s"
"""


pytestmark = pytest.mark.postgresql_only("digest fan-out runs on a PostgreSQL store")


@pytest.fixture
def postgres_url() -> str:
    return new_postgres_url()


def fanning_site(site: Site, url: str, port: int, extra: str = "") -> None:
    """The site on the PostgreSQL store `url`, with fan-out, mailing through the SMTP server
    on `port` as fast as it takes them, and three articles built (test_newsletter's site)."""
    site.use_store(url)
    mailing_site(site, port, f"{extra}\n{FANOUT}")


def ledger(url: str) -> tuple[str, dict[str, int], set[str]]:
    """The only digest's status, its deliveries by status, and the uncertain addresses."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            status = conn.execute(text("select status from digests")).scalar_one()
            counts = dict(conn.execute(text("select status, count(*) from deliveries group by status")).all())
            uncertain = set(conn.execute(text("select email_key from deliveries where status = 'uncertain'")).scalars())
    finally:
        engine.dispose()
    return status, counts, uncertain


def stopped_sending(url: str) -> bool:
    """No chunk job running and no delivery claimed (`sending`)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            running = "select count(*) from procrastinate_jobs where status = 'doing' and lock is not null"
            sending = "select count(*) from deliveries where status = 'sending'"
            return conn.execute(text(running)).scalar_one() == conn.execute(text(sending)).scalar_one() == 0
    finally:
        engine.dispose()


def wait_for(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def sent_to_the_end(url: str, still_for: float = 30, at_most: float = 600) -> bool:
    """Whether the digest ends `done` while its workers keep settling deliveries (sent,
    uncertain or failed): False once that count and the digest's status have stood still for
    `still_for` seconds, or after `at_most` in all. A fixed deadline failed a run on a slow
    machine that was still sending (4,757 of 5,000 sent after 60 s)."""

    def progress() -> tuple[str, int]:
        status, counts, _uncertain = ledger(url)
        return status, sum(n for state, n in counts.items() if state not in ("pending", "sending"))

    start = moved = time.monotonic()
    last = progress()
    while last[0] != "done":
        now = time.monotonic()
        if now - moved > still_for or now - start > at_most:
            return False
        time.sleep(0.2)
        if (seen := progress()) != last:
            last, moved = seen, time.monotonic()
    return True


def test_two_workers_one_killed_mid_run_every_reader_gets_one_message(site: Site, postgres_url: str) -> None:
    """5,000 readers in chunks of 250 over two workers; one is SIGKILLed mid-send. Its chunk
    goes back to the queue once its heartbeat is stale, the other worker finishes it, and the
    message it had in flight is uncertain (its reader has it or not: never twice)."""
    box = Inbox()
    with smtp_on_loopback(box) as port:
        fanning_site(site, postgres_url, port)
        readers = add_readers(site, READERS)
        since, until = this_month()
        plan = cli(site, "digest", "send", "--since", since, "--until", until)
        output, errors = plan.communicate(timeout=60)
        assert plan.returncode == 0, errors.decode()
        assert b"handed to the workers" in output and box.received == []  # the planner sends nothing

        killed, survivor = cli(site, "worker", "--name", "killed"), cli(site, "worker", "--name", "survivor")
        try:
            assert wait_for(lambda: len(box.received) >= READERS // 4, 40), "the workers sent too little"
            killed.send_signal(signal.SIGKILL)
            killed.wait(timeout=10)
            at_kill = len(box.received)
            assert at_kill < READERS, "the run ended before the kill: make the test bigger"
            assert sent_to_the_end(postgres_url), ledger(postgres_url)
        finally:
            for worker in (killed, survivor):
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
            _out, survivor_errors = survivor.communicate(timeout=30)
            killed.communicate(timeout=10)
        assert survivor.returncode == 0, survivor_errors.decode()

    assert b"of a worker that stopped beating: taken back" in survivor_errors  # the killed one's chunk
    status, counts, uncertain = ledger(postgres_url)
    per_reader = Counter(rcpt for rcpt, _mid in box.received)
    assert max(per_reader.values()) == 1  # nobody got two
    assert len(uncertain) <= 1  # the killed worker's one message in flight, at most
    assert set(readers) - set(per_reader) <= uncertain  # a reader left out is never silent
    assert counts == {"sent": READERS - len(uncertain), **({"uncertain": 1} if uncertain else {})}
    sent_keys = set(per_reader) - uncertain
    assert len(sent_keys) == READERS - len(uncertain)


class Greylist:
    """An SMTP server that answers every recipient's first message with 451 (greylisting), and
    takes the next after `delay`: `accepted` the recipients of the messages it took, in order."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.seen: set[str] = set()
        self.accepted: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        rcpt = envelope.rcpt_tos[0]
        with self.lock:
            if rcpt not in self.seen:
                self.seen.add(rcpt)
                return "451 4.7.1 greylisted, try again later"
        time.sleep(self.delay)  # blocks aiosmtpd's loop: a chunk's second pass takes a while
        with self.lock:
            self.accepted.append(rcpt)
        return "250 OK"


def test_a_worker_waits_out_retries_as_jobs_and_stops_at_the_operators_pause_until_resumed(
    site: Site, postgres_url: str
) -> None:
    """Every first try is greylisted: each chunk's job defers the chunk again for its retry
    (`retry_after`), and the worker sends it then. The operator's pause stops the worker's
    chunks; `digest resume` hands them over again, and the digest ends done, once per reader."""
    box, readers_count = Greylist(delay=0.03), 300
    with smtp_on_loopback(box) as port:
        fanning_site(site, postgres_url, port, 'retry_after = ["1s"]\npause_after = 10000')
        readers = add_readers(site, readers_count)
        since, until = this_month()
        plan = cli(site, "digest", "send", "--since", since, "--until", until)
        _output, errors = plan.communicate(timeout=60)
        assert plan.returncode == 0, errors.decode()
        worker = cli(site, "worker", "--name", "only")
        try:
            assert wait_for(lambda: len(box.accepted) >= 50, 40), "no retried delivery was sent"
            app = site.app()
            try:
                letters = Newsletter(app)
                [digest] = app.store.digests()
                assert letters.pause(digest)
            finally:
                app.close()
            # The worker's chunks read the pause after their message in flight and end: then no
            # chunk job runs, no delivery is in flight, and nothing more is accepted for a while.
            assert wait_for(lambda: stopped_sending(postgres_url), 20), ledger(postgres_url)
            at_pause = len(box.accepted)
            # (a chunk's `later` job may still start when due: it finds the digest paused and ends)
            assert not wait_for(lambda: len(box.accepted) > at_pause or "sending" in ledger(postgres_url)[1], 1.5)
            # nothing goes out while paused, and the chunk sending at the pause stopped mid-way
            # (both chunks, 250 and 50 readers, would be 300; the bigger alone 250)
            assert len(box.accepted) == at_pause < 250
            assert ledger(postgres_url)[0] == "paused"
            resume = cli(site, "digest", "resume")
            output, errors = resume.communicate(timeout=60)
            assert resume.returncode == 0, errors.decode()
            assert b"handed to the workers" in output
            assert sent_to_the_end(postgres_url), ledger(postgres_url)
        finally:
            worker.send_signal(signal.SIGTERM)
            _out, worker_errors = worker.communicate(timeout=30)
        assert worker.returncode == 0, worker_errors.decode()

    assert sorted(box.accepted) == sorted(readers)  # each reader's second try, once
    assert ledger(postgres_url)[1:] == ({"sent": readers_count}, set())


def test_a_stopped_worker_puts_its_chunk_back_after_the_message_in_flight(site: Site, postgres_url: str) -> None:
    """SIGTERM: the worker's chunk stops after the message in flight (answered and recorded),
    goes back to the queue, and the next worker sends the rest: nothing twice, nothing uncertain."""
    box, readers_count = Inbox(delay=0.005), 600
    with smtp_on_loopback(box) as port:
        fanning_site(site, postgres_url, port)
        readers = add_readers(site, readers_count)
        since, until = this_month()
        plan = cli(site, "digest", "send", "--since", since, "--until", until)
        _output, errors = plan.communicate(timeout=60)
        assert plan.returncode == 0, errors.decode()
        first = cli(site, "worker", "--name", "first")
        second = None
        try:
            assert wait_for(lambda: len(box.received) >= 100, 40), "the worker sent too little"
            first.send_signal(signal.SIGTERM)
            _out, first_errors = first.communicate(timeout=20)
            assert first.returncode == 0, first_errors.decode()
            assert len(box.received) < readers_count, "the run ended before the stop: make the server slower"
            assert ledger(postgres_url)[:2] == ("sending", {"sent": len(box.received), "pending": readers_count
                                                            - len(box.received)})  # fmt: skip
            second = cli(site, "worker", "--name", "second")
            assert sent_to_the_end(postgres_url), ledger(postgres_url)
        finally:
            for worker in (first, second):
                if worker is not None and worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
                    worker.communicate(timeout=30)

    assert sorted(rcpt for rcpt, _mid in box.received) == sorted(readers)
    assert ledger(postgres_url)[1:] == ({"sent": readers_count}, set())
