"""Fan-out through a provider's batch API, end to end: a PostgreSQL store, two real `publisher
worker` processes (one SIGKILLed mid-run), a loopback double of Postmark's `/email/batch` that
answers some calls with 429 and 503, the fleet's shared send rate, and the ledger."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from provider_double import TOKEN, PostmarkDouble
from sqlalchemy import create_engine, text
from test_fanout import FANOUT, ledger, wait_for
from test_newsletter import add_readers, run_cli, this_month

from backends import new_postgres_url
from conftest import Site, days_ago

READERS = 5000
RATE = 1000  # messages a second, the whole fleet's: a call of 500 every half second

pytestmark = pytest.mark.postgresql_only("digest fan-out and the shared send rate run on a PostgreSQL store")


def batching_site(site: Site, url: str, api: str) -> None:
    site.write_config(
        f"""
[mail]
transport = "postmark"
[mail.postmark]
api_key_env = "POSTMARK_TOKEN"
base_url = "{api}"
[digest]
messages_per_second = {RATE}
postal_address = "云川市高新区创新大道 1 号"
{FANOUT}"""
    )
    site.use_store(url)
    site.clock_now = datetime.now(UTC)
    site.article("policy/a.md", "《人才十条》政策要点解读", date=days_ago(2))
    site.article("tech/shared.md", "科技成果转化与产业政策联动", date=days_ago(3), categories="[policy, tech]")
    site.article("news.md", "高新院开放日", date=days_ago(5))
    site.build()


def cli(site: Site, *args: str) -> subprocess.Popen[bytes]:
    return run_cli(site, *args, POSTMARK_TOKEN=TOKEN)


def test_two_workers_one_killed_mid_call_every_reader_gets_one_message(site: Site) -> None:
    """5,000 readers in chunks of 250, sent 250 a call through Postmark's batch API by two
    workers; one is SIGKILLed mid-run. The other finishes its chunks; the killed call's
    deliveries are uncertain (its readers have the message or not: never twice)."""
    url = new_postgres_url()
    with PostmarkDouble(throttle_every=7, unavailable_every=11, delay=0.05) as api:
        batching_site(site, url, api.url)
        readers = add_readers(site, READERS)
        since, until = this_month()
        plan = cli(site, "digest", "send", "--since", since, "--until", until)
        output, errors = plan.communicate(timeout=60)
        assert plan.returncode == 0, errors.decode()
        assert b"handed to the workers" in output and api.taken == []

        started = time.monotonic()
        killed, survivor = cli(site, "worker", "--name", "killed"), cli(site, "worker", "--name", "survivor")
        try:
            assert wait_for(lambda: len(api.taken) >= READERS // 4, 40), "the workers sent too little"
            killed.send_signal(signal.SIGKILL)
            killed.wait(timeout=10)
            assert len(api.taken) < READERS, "the run ended before the kill: make the test bigger"
            assert wait_for(lambda: ledger(url)[0] == "done", 90), ledger(url)
        finally:
            for worker in (killed, survivor):
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
            _out, survivor_errors = survivor.communicate(timeout=30)
            killed.communicate(timeout=10)
        elapsed = time.monotonic() - started
        assert survivor.returncode == 0, survivor_errors.decode()

    assert api.problems == []  # every call as Postmark documents it
    assert api.throttled and api.unavailable  # both kinds of refusal were waited out
    status, counts, uncertain = ledger(url)
    per_reader = Counter(to for to, _token in api.taken)
    assert max(per_reader.values()) == 1  # nobody got two
    assert len(uncertain) <= 250  # the killed worker's one call in flight, at most
    assert set(readers) - set(per_reader) <= uncertain  # a reader left out is never silent
    assert counts == {"sent": READERS - len(uncertain), **({"uncertain": len(uncertain)} if uncertain else {})}
    assert len({token for _to, token in api.taken}) == len(api.taken)  # each message its own delivery
    # The rate is the fleet's: two workers together never beat it (the bucket starts with one
    # second's worth).
    assert len(api.taken) <= RATE * (elapsed + 1)
    assert _provider_ids(url) == counts["sent"]  # each with Postmark's MessageID


def _provider_ids(url: str) -> int:
    """Sent deliveries with their provider's id; and the workers took their tokens from the
    store's bucket (the one row of the transport)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select transport from send_rates")).scalars().all() == ["postmark"]
            query = text("select count(provider_id) from deliveries where status = 'sent'")
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()
