"""A greylisting mail server on loopback: a reader refused with 451 gets the digest on a later
try, across a restart, whether the next process is a new App, the CLI again or `publisher run`;
`digest failures` lists what waits or failed, `digest retry` tries it, a 550 is never retried."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from test_newsletter import Inbox, add_readers, mailing_site, run_cli
from test_smtp import free_port, smtp_on_loopback

from conftest import Service, Site
from publisher.model import SubscriberStatus
from publisher.newsletter import Newsletter
from publisher.store import Store

GREYLISTED = "reader0001@example.com"
REFUSED = "reader0002@example.com"


class Greylisting(Inbox):
    """Answers RCPT for each address in `refusals` with its scripted replies first (451 for
    greylisting, 5xx for a refusal), then 250, and counts every RCPT per address."""

    def __init__(self, refusals: dict[str, list[str]]) -> None:
        super().__init__()
        self.refusals = refusals
        self.rcpt: Counter[str] = Counter()
        self.rcpt_at: dict[str, list[float]] = {}  # time.time() of each RCPT
        self.rcpt_lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        with self.rcpt_lock:
            self.rcpt[address] += 1
            self.rcpt_at.setdefault(address, []).append(time.time())
            replies = self.refusals.get(address)
            if replies:
                return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def delivered(self, address: str) -> int:
        return sum(1 for rcpt, _mid in self.received if rcpt == address)


@pytest.fixture
def greylisting() -> Iterator[tuple[Greylisting, int]]:
    box = Greylisting({GREYLISTED: ["451 4.7.1 greylisted, try again later"]})
    with smtp_on_loopback(box) as port:
        yield box, port


def deliveries(site: Site) -> dict[str, tuple[str, int]]:
    """(status, attempts) per address, of the one digest."""
    return {key: (status, n) for key, status, n in site.sql("select email_key, status, attempts from deliveries")}


def finished(process: Any, timeout: float = 60) -> str:
    output, errors = process.communicate(timeout=timeout)
    assert process.returncode == 0, errors.decode()
    return str(output.decode())


def test_a_new_app_on_the_same_store_delivers_at_the_next_try(site: Site, greylisting: tuple[Greylisting, int]) -> None:
    """The clock is the App's (injected): each 'process' is a new App on the store, the way the
    scheduler's jobs and the CLI build one."""
    box, port = greylisting
    mailing_site(site, port)
    add_readers(site, 3)
    start = site.clock_now = datetime.now(UTC)

    first = site.app()
    try:
        letters = Newsletter(first)
        plan = letters.plan_scheduled()
        report = letters.send(plan.digest, first.transport())
    finally:
        first.close()
    assert (report.sent, report.waiting, report.next_try) == (2, 1, start + timedelta(minutes=1))
    assert box.delivered(GREYLISTED) == 0 and deliveries(site)[GREYLISTED] == ("pending", 1)

    for seconds, expected in ((59, 0), (60, 1)):  # a restart before the wait is over sends nothing
        site.clock_now = start + timedelta(seconds=seconds)
        again = site.app()
        try:
            letters = Newsletter(again)
            [unfinished] = letters.unfinished()
            letters.send(unfinished, again.transport())
        finally:
            again.close()
        assert box.delivered(GREYLISTED) == expected
    assert box.rcpt[GREYLISTED] == 2 and deliveries(site)[GREYLISTED] == ("sent", 2)
    store = Store(site.store_url)
    try:
        assert [d.status for d in store.digests()] == ["done"]
    finally:
        store.close()


def test_the_cli_run_twice_delivers_on_the_later_try_and_lists_it_meanwhile(
    site: Site, greylisting: tuple[Greylisting, int]
) -> None:
    box, port = greylisting
    mailing_site(site, port, 'retry_after = ["6s", "1h"]\n')
    add_readers(site, 3)
    sent = finished(run_cli(site, "digest", "send"))
    assert "1 delivery waits for another try, the next at" in sent and re.search(r"\(in [1-6] s\)", sent), sent
    assert box.delivered(GREYLISTED) == 0 and len(box.received) == 2

    # Meanwhile (in this process: quick enough to be well within the six seconds)
    listed = json.loads(site.cli("digest", "failures", "--format", "json").output)
    [waiting] = listed
    assert waiting["address"] == GREYLISTED and waiting["state"] == "waiting" and waiting["tries"] == 1
    assert waiting["reason"] == f"127.0.0.1:{port} recipient refused: 451 4.7.1 greylisted, try again later"
    last_try, next_try = (datetime.fromisoformat(waiting[k]) for k in ("last_try", "next_try"))
    assert next_try - last_try == timedelta(seconds=6) and waiting["retry"] == "retry"

    early = site.cli("digest", "resume").output  # not due yet: says when, sends nothing
    assert datetime.now(UTC) < next_try, "too slow to check the early resume: lengthen the wait"
    assert "nothing to resume" not in early and "1 delivery waits for another try" in early
    assert box.rcpt[GREYLISTED] == 1
    time.sleep(max(0.0, (next_try - datetime.now(UTC)).total_seconds()))
    resumed = finished(run_cli(site, "digest", "resume"))
    assert "now sent 1," in resumed and "waits" not in resumed, resumed
    assert box.delivered(GREYLISTED) == 1 and deliveries(site)[GREYLISTED] == ("sent", 2)
    assert finished(run_cli(site, "digest", "failures", "--format", "json")).strip() == "[]"
    assert "nothing to resume" in finished(run_cli(site, "digest", "resume"))


def test_publisher_run_stopped_and_started_delivers_at_the_third_try(
    site: Site, greylisting: tuple[Greylisting, int]
) -> None:
    box, port = greylisting
    box.refusals[GREYLISTED] = ["451 4.7.1 greylisted"] * 2
    mailing_site(site, port, 'retry_after = ["2s", "4s"]\n')
    add_readers(site, 3)
    assert "1 delivery waits" in finished(run_cli(site, "digest", "send"))  # the first try

    def wait_for(tries: int, service: Service, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while box.rcpt[GREYLISTED] < tries and time.monotonic() < deadline:
            time.sleep(0.05)
        assert box.rcpt[GREYLISTED] >= tries, service.output()

    service = Service(site.config, site.root, free_port())
    try:
        service.wait_until_serving()
        wait_for(2, service)  # the resume job at its time: greylisted again, 4 s more
        assert box.delivered(GREYLISTED) == 0
        deadline, resume = time.monotonic() + 10, None
        while resume is None and time.monotonic() < deadline:  # the scheduler put the next try in its store
            resume = service.health().json()["scheduler"]["jobs"].get("resume", {}).get("next_run")
            time.sleep(0.05)
        assert resume is not None, service.output()
        due = datetime.fromisoformat(resume).timestamp()
        assert 3.5 <= due - box.rcpt_at[GREYLISTED][1] <= 10  # 4 s after that try, not at once
    finally:
        assert service.stop() == 0
    assert deliveries(site)[GREYLISTED] == ("pending", 2)
    assert box.rcpt[GREYLISTED] == 2

    restarted = Service(site.config, site.root, free_port())
    try:
        restarted.wait_until_serving()
        wait_for(3, restarted)
        deadline = time.monotonic() + 10
        while deliveries(site)[GREYLISTED][0] != "sent" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        assert restarted.stop() == 0
    assert box.delivered(GREYLISTED) == 1 and deliveries(site)[GREYLISTED] == ("sent", 3)
    first, second, third = box.rcpt_at[GREYLISTED]
    assert second - first >= 1.9 and third - second >= 3.9  # each at its time, never early
    assert Counter(rcpt for rcpt, _mid in box.received) == Counter(
        {"reader0000@example.com": 1, GREYLISTED: 1, "reader0002@example.com": 1}
    )


def test_failures_and_retry_a_refusal_is_not_retried_and_a_bounce_never(site: Site) -> None:
    box, port = (
        Greylisting(
            {
                GREYLISTED: ["451 4.7.1 greylisted"] * 2,  # outlasts a window of two tries
                REFUSED: ["550 5.1.1 no such user"],  # a bounce: the reader is marked bounced
                "reader0003@example.com": ["552 5.2.2 mailbox full"],  # permanent, no bounce
            }
        ),
        free_port(),
    )
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mailing_site(site, port, 'retry_after = ["1s"]\n')
        add_readers(site, 4)
        site.clock_now = datetime.now(UTC)
        sent = site.cli("digest", "send")
        assert sent.exit_code == 1 and "1 delivery waits for another try" in sent.output  # 2 failed
        time.sleep(1.1)
        resumed = site.cli("digest", "resume")
        assert resumed.exit_code == 1 and "waits" not in resumed.output  # the greylisted one gave up

        table = site.cli("digest", "failures", "1")
        assert table.exit_code == 0, table.output
        lines = table.output.splitlines()
        assert lines[0].split() == ["#", "address", "state", "tries", "last", "try", "(Asia/Shanghai)", "next", "try",
                                    "(Asia/Shanghai)", "retry", "reason"]  # fmt: skip
        assert lines[-1] == "3 failed, 0 uncertain, 0 waiting"
        rows = list(csv.DictReader(io.StringIO(site.cli("digest", "failures", "--format", "csv").output)))
        shown = {r["address"]: (r["state"], r["tries"], r["retry"], r["next_try"]) for r in rows}
        assert shown == {
            GREYLISTED: ("failed", "2", "retry", ""),
            REFUSED: ("failed", "1", "retry --all", ""),
            "reader0003@example.com": ("failed", "1", "retry --all", ""),
        }
        reasons = {r["address"]: r["reason"] for r in rows}
        assert reasons[GREYLISTED] == f"gave up after 2 tries: 127.0.0.1:{port} recipient refused: 451 4.7.1 greylisted"
        assert reasons[REFUSED].endswith("550 5.1.1 no such user")

        retried = site.cli("digest", "retry", "1")
        assert retried.exit_code == 0, retried.output
        assert "1 delivery to try again now" in retried.output and box.delivered(GREYLISTED) == 1
        assert box.rcpt[REFUSED] == 1 and box.rcpt["reader0003@example.com"] == 1  # permanent: not retried
        assert "nothing to retry" in site.cli("digest", "retry", "1").output

        unknown = site.cli("digest", "retry", "99", "--all")
        assert unknown.exit_code == 1 and "no digest '99'" in unknown.output
        key = json.loads(site.cli("digest", "status", "--format", "json").output)[0]["digest"]
        everything = site.cli("digest", "retry", key, "--all")
        assert everything.exit_code == 0, everything.output
        assert box.delivered("reader0003@example.com") == 1  # the mailbox has room now
        assert box.rcpt[REFUSED] == 1  # bounced: never retried, not even with --all
    finally:
        controller.stop()
    assert deliveries(site)[REFUSED] == ("failed", 1)
    store = Store(site.store_url)
    try:
        bounced = store.subscriber(REFUSED)
        assert bounced is not None and bounced.status is SubscriberStatus.BOUNCED
        assert [d.status for d in store.digests()] == ["done"]
    finally:
        store.close()
    assert Counter(r for r, _m in box.received) == Counter(
        {"reader0000@example.com": 1, GREYLISTED: 1, "reader0003@example.com": 1}
    )


def test_send_with_wait_stays_until_the_greylisted_reader_has_it(
    site: Site, greylisting: tuple[Greylisting, int]
) -> None:
    box, port = greylisting
    box.refusals[GREYLISTED] = ["451 4.7.1 greylisted"] * 2
    mailing_site(site, port, 'retry_after = ["1s", "2s"]\n')
    add_readers(site, 3)
    result = site.cli("digest", "send", "--wait")
    assert result.exit_code == 0, result.output
    assert result.output.count("waiting for the next try at") == 2 and "waits for another try" not in result.output
    assert box.delivered(GREYLISTED) == 1 and deliveries(site)[GREYLISTED] == ("sent", 3)
    first, second, third = box.rcpt_at[GREYLISTED]
    assert second - first >= 0.9 and third - second >= 1.9


class Unanswering(Greylisting):
    """Takes every message; to the addresses in `silent` the first time it never answers the
    final "." (past the client's timeout), as a server that crashed after queueing it would."""

    def __init__(self, silent: set[str]) -> None:
        super().__init__({})
        self.silent = silent

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if envelope.rcpt_tos[0] in self.silent:
            self.silent.discard(envelope.rcpt_tos[0])
            await asyncio.sleep(3)  # far past the client's 0.5 s
        return answer


def test_an_unanswered_message_is_uncertain_and_only_retry_all_sends_it_again(site: Site) -> None:
    """M4: the message may have gone out, so neither `digest resume` nor `digest retry` sends it
    again; `digest failures` says what retrying risks; `retry --all` sends it, and the row keeps
    saying it may have arrived twice."""
    box, port = Unanswering({GREYLISTED}), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mailing_site(site, port)
        quick = site.config.read_text(encoding="utf-8").replace("timeout = 10", "timeout = 0.5\ndata_timeout = 0.5")
        site.config.write_text(quick)
        add_readers(site, 3)
        sent = site.cli("digest", "send")
        assert sent.exit_code == 0, sent.output
        assert "uncertain 1" in sent.output and box.delivered(GREYLISTED) == 1
        assert "1 uncertain: the message may have reached the reader, so it is not sent again by itself" in " ".join(
            sent.output.split()
        )
        assert deliveries(site)[GREYLISTED] == ("uncertain", 1)
        assert "nothing to resume" in site.cli("digest", "resume").output
        assert "nothing to retry" in site.cli("digest", "retry", "1").output
        assert box.delivered(GREYLISTED) == 1

        table = site.cli("digest", "failures", "1")
        assert table.exit_code == 0, table.output
        assert "0 failed, 1 uncertain, 0 waiting" in table.output
        assert "`publisher digest retry 1 --all` does, and a reader who has it then gets it twice" in " ".join(
            table.output.split()
        )
        [row] = list(csv.DictReader(io.StringIO(site.cli("digest", "failures", "--format", "csv").output)))
        assert (row["address"], row["state"], row["retry"]) == (
            GREYLISTED,
            "uncertain",
            "retry --all (may arrive twice)",
        )
        assert row["reason"].startswith("may have been delivered: ") and row["reason"].endswith("timed out")

        again = site.cli("digest", "retry", "1", "--all")
        assert again.exit_code == 0, again.output
        assert box.delivered(GREYLISTED) == 2  # the operator asked
        [row] = list(csv.DictReader(io.StringIO(site.cli("digest", "failures", "--format", "csv").output)))
        assert (row["state"], row["retry"]) == ("uncertain", "")
        assert (
            row["reason"] == "sent again on request after a try that may have been delivered: it may have arrived twice"
        )
        assert "nothing to retry" in site.cli("digest", "retry", "1", "--all").output
    finally:
        controller.stop()
    assert deliveries(site)[GREYLISTED] == ("uncertain", 1)
    assert box.delivered("reader0000@example.com") == 1 and box.delivered(REFUSED) == 1
