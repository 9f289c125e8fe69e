"""The digest end to end: a real SMTP server, the ledger, a SIGKILL mid-send, and the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from test_smtp import free_port, smtp_on_loopback

from conftest import Site, days_ago
from publisher.model import Subscriber, SubscriberStatus
from publisher.newsletter import Newsletter
from publisher.store import Store

CATEGORY_SLUGS = ("gao-xin-yuan-xin-wen", "policy", "tech")


class Inbox:
    """An SMTP server's view: every accepted message, in order; optionally slow per message."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.received: list[tuple[str, str]] = []  # (recipient, Message-ID)
        self.raw: list[bytes] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            time.sleep(self.delay)  # blocks aiosmtpd's loop: one message at a time, like a slow relay
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        with self.lock:
            self.received.append((envelope.rcpt_tos[0], str(parsed["Message-ID"])))
            self.raw.append(envelope.original_content)
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box = Inbox()
    with smtp_on_loopback(box) as port:
        yield box, port


def mailing_site(site: Site, port: int, extra: str = "") -> Site:
    site.write_config(
        f"""
[mail]
transport = "smtp"
[mail.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
timeout = 10
[digest]
messages_per_second = 0
postal_address = "云川市高新区创新大道 1 号"
{extra}"""
    )
    site.clock_now = datetime.now(UTC) - timedelta(hours=1)  # the CLI runs on the real clock
    # Published in the last days (the CLI's clock is the real one; a first digest takes a week).
    site.article("policy/a.md", "《人才十条》政策要点解读", date=days_ago(2))
    site.article("tech/shared.md", "科技成果转化与产业政策联动", date=days_ago(3), categories="[policy, tech]")
    site.article("news.md", "高新院开放日", date=days_ago(5))
    site.build()
    return site


def this_month() -> tuple[str, str]:
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    return f"{today - timedelta(days=20)}", f"{today}"


def add_readers(site: Site, count: int) -> list[str]:
    now = datetime.now(UTC)
    readers = [
        Subscriber(
            f"reader{n:04d}@example.com",
            f"读者{n}",
            CATEGORY_SLUGS[n % 3 : n % 3 + 1] if n % 4 else (),
            SubscriberStatus.CONFIRMED,
            now,
            "import",
            now,
        )  # fmt: skip
        for n in range(count)
    ]
    store = Store(site.store_url)
    try:
        store.save_subscribers(readers)
    finally:
        store.close()
    return [r.email for r in readers]


def run_cli(site: Site, *args: str, **environment: str) -> subprocess.Popen[bytes]:
    """`publisher --config <site's> args...` as a process of its own, with `environment` added."""
    code = "import sys; from publisher.cli import main; sys.exit(main())"
    env = {**os.environ, "PUBLISHER_SECRET_KEY": "crash-test-signing-key-0123456789", **environment}
    return subprocess.Popen(
        [sys.executable, "-c", code, "--config", str(site.config), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def sending(site: Site, box: Inbox, received: int) -> subprocess.Popen[bytes]:
    """`publisher digest send` in its own process, once `box` has `received` messages (or it
    ended, or a minute passed)."""
    sender = run_cli(site, "digest", "send")
    deadline = time.monotonic() + 60
    while len(box.received) < received and time.monotonic() < deadline and sender.poll() is None:
        time.sleep(0.01)
    return sender


def ledger(site: Site) -> dict[str, int]:
    store = Store(site.store_url)
    try:
        [digest] = store.digests()
        return store.delivery_counts(digest.id)
    finally:
        store.close()


def uncertain_addresses(site: Site) -> set[str]:
    return {row[0] for row in site.sql("select email_key from deliveries where status = 'uncertain'")}


def test_killed_mid_send_then_resumed_sends_nobody_two_and_retry_all_sends_the_doubtful(site: Site) -> None:
    """A SIGKILL between claiming a delivery and recording its answer leaves that row uncertain:
    resume never sends it again (its reader may have it, or may not), `retry --all` does."""
    box, port = Inbox(delay=0.004), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mailing_site(site, port)
        readers = add_readers(site, 500)
        sender = sending(site, box, 150)
        sender.send_signal(signal.SIGKILL)
        sender.wait(timeout=30)
        assert sender.returncode == -signal.SIGKILL, "the send finished before the kill: make the server slower"
        before = len(box.received)
        assert 150 <= before < 500

        resume = run_cli(site, "digest", "resume")
        output, errors = resume.communicate(timeout=120)
        assert resume.returncode == 0, errors.decode()

        per_reader = Counter(rcpt for rcpt, _mid in box.received)
        assert max(per_reader.values()) == 1  # nothing is sent twice by itself
        doubtful = uncertain_addresses(site)
        assert len(doubtful) <= 1  # the one message in flight at the kill (one connection, one at a time)
        assert set(readers) - set(per_reader) <= doubtful  # a reader left out is never silent
        counts = ledger(site)  # the site's only digest, #1
        assert counts.get("sent", 0) + counts.get("uncertain", 0) == 500 and set(counts) <= {"sent", "uncertain"}

        retry = run_cli(site, "digest", "retry", "#1", "--all")  # the operator sends the doubtful again
        output, errors = retry.communicate(timeout=120)
        assert retry.returncode == 0, errors.decode()
    finally:
        controller.stop()

    per_reader = Counter(rcpt for rcpt, _mid in box.received)
    assert set(per_reader) == set(readers)
    twice = {r for r, n in per_reader.items() if n > 1}
    assert twice <= doubtful and max(per_reader.values()) <= 2  # a second copy only where asked for
    for reader in twice:  # and it carries the same Message-ID: a client can fold it away
        assert len({mid for rcpt, mid in box.received if rcpt == reader}) == 1
    assert uncertain_addresses(site) == doubtful  # sent again on request: it stays uncertain


def test_five_hundred_then_a_second_send_of_the_same_period_sends_none(site: Site, inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    mailing_site(site, port)
    add_readers(site, 500)
    since, until = this_month()
    first = run_cli(site, "digest", "send", "--since", since, "--until", until)
    _out, errors = first.communicate(timeout=120)
    assert first.returncode == 0, errors.decode()
    assert len(box.received) == 500 and len({r for r, _m in box.received}) == 500
    again = run_cli(site, "digest", "send", "--since", since, "--until", until)
    output, errors = again.communicate(timeout=60)
    assert again.returncode == 0, errors.decode()
    assert b"sent before" in output and len(box.received) == 500


def test_scheduled_digests_chain_and_an_unsubscribe_after_planning_is_skipped(
    site: Site, inbox: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    box, port = inbox
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "test-signing-key-0123456789")
    mailing_site(site, port)
    add_readers(site, 4)  # reader0000 (all), 0001 policy, 0002 tech, 0003 news
    site.clock_now = datetime.now(UTC)
    app = site.app()
    try:
        letters = Newsletter(app)
        plan = letters.plan(letters.scheduled_window(app.clock()))
        assert plan.created and plan.planned == 4
        gone = app.store.subscriber("reader0002@example.com")
        assert gone is not None
        from dataclasses import replace

        app.store.save_subscribers([replace(gone, status=SubscriberStatus.UNSUBSCRIBED)])
        report = letters.send(plan.digest, app.transport())
        assert (report.sent, report.skipped) == (3, 1)
        assert sorted(r for r, _m in box.received) == [f"reader000{n}@example.com" for n in (0, 1, 3)]

        # A week later nothing new was ingested: no digest e-mail at all.
        site.clock_now += timedelta(days=7)
        later = letters.plan(letters.scheduled_window(app.clock()))
        assert later.created and later.planned == 0
        assert letters.send(later.digest, app.transport()).sent == 0
    finally:
        app.close()
    # Every message read back: text first, one-click pair, a 78-column header block.
    for raw in box.raw:
        parsed = message_from_bytes(raw, policy=policy.default)
        assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert all(len(line) <= 78 for line in head.split(b"\r\n")), head.decode()


def test_an_article_in_two_chosen_categories_is_mailed_once(site: Site, inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    mailing_site(site, port)
    now = datetime.now(UTC)
    store = Store(site.store_url)
    store.save_subscribers(
        [Subscriber("both@example.com", "", ("policy", "tech"), SubscriberStatus.CONFIRMED, now, "cli", now)]
    )
    store.close()
    result = site.cli("digest", "send")
    assert result.exit_code == 0, result.output
    [raw] = box.raw
    text = message_from_bytes(raw, policy=policy.default).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text.count("科技成果转化与产业政策联动") == 1 and "高新院开放日" not in text


def test_preview_status_test_and_dry_run_commands(
    site: Site, inbox: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    box, port = inbox
    monkeypatch.chdir(site.root)
    mailing_site(site, port)
    add_readers(site, 3)
    preview = site.cli("digest", "preview", "--subscriber", "reader0001@example.com", "--out", "pv")
    assert preview.exit_code == 0, preview.output
    eml = (site.root / "pv" / "digest.eml").read_bytes()
    assert b"reader0001@example.com" in eml and (site.root / "pv" / "digest.html").stat().st_size < 100_000
    assert site.cli("digest", "preview", "--subscriber", "nobody@example.com").exit_code == 1

    dry = site.cli("digest", "send", "--dry-run", "--out", "dry")
    assert dry.exit_code == 0 and "3 message(s)" in dry.output
    assert len(list((site.root / "dry").glob("*.eml"))) == 3 and not box.raw  # nothing mailed, no ledger
    assert "0 digest(s)" in site.cli("digest", "status").output

    test = site.cli("digest", "test", "--to", "Editor@Example.com")
    assert test.exit_code == 0, test.output
    [raw] = box.raw
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["X-Publisher-Test"] == "yes" and str(parsed["Subject"]).startswith("[测试] ")
    assert "0 digest(s)" in site.cli("digest", "status").output

    assert site.cli("digest", "send").exit_code == 0
    status = site.cli("digest", "status").output
    assert "1 digest(s)" in status and "done" in status
    assert "nothing to resume" in site.cli("digest", "resume").output
    assert site.cli("digest", "send", "--since", "2026-11-01").exit_code == 2
    assert site.cli("digest", "send", "--since", "2026-11-07", "--until", "2026-11-01").exit_code == 2
    assert site.cli("digest", "send", "--since", "2026-13-01", "--until", "2026-11-01").exit_code == 2
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace('url = "https://www.example.org"', 'url = "http://www.example.org"'), "utf-8")
    plain_http = site.cli("digest", "send")
    assert plain_http.exit_code == 2 and "web.public_url" not in plain_http.output  # names site.url
    assert "site.url" in plain_http.output and "https" in plain_http.output


def test_a_refusing_server_pauses_the_digest_and_resume_finishes_it(site: Site, inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    mailing_site(site, port, "pause_after = 2\n")
    add_readers(site, 5)
    real_handler = box.handle_DATA

    async def busy(server: Any, session: Any, envelope: Any) -> str:
        return "451 try again later"

    box.handle_DATA = busy  # type: ignore[method-assign]
    site.clock_now = datetime.now(UTC)
    paused = site.cli("digest", "send")
    assert paused.exit_code == 1 and "paused" in paused.output + (paused.stderr if paused.stderr_bytes else "")
    assert "paused" in site.cli("digest", "status").output
    box.handle_DATA = real_handler  # type: ignore[method-assign]
    resumed = site.cli("digest", "resume")  # the untried go; the two that failed wait their minute
    assert resumed.exit_code == 0, resumed.output
    assert "2 deliveries wait for another try, the next at" in resumed.output and len(box.received) == 3
    retried = site.cli("digest", "retry", "1")  # the operator does not wait
    assert retried.exit_code == 0 and "2 deliveries to try again now" in retried.output, retried.output
    assert len({r for r, _m in box.received}) == 5 == len(box.received)
    assert "nothing to resume" in site.cli("digest", "resume").output


def test_nothing_new_sends_nothing_unless_configured(site: Site, inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    mailing_site(site, port, "send_when_empty = true\n")
    add_readers(site, 2)
    assert site.cli("digest", "send").exit_code == 0 and len(box.raw) == 2  # the articles
    time.sleep(1.1)  # the next scheduled window (keys are per second) holds nothing new
    result = site.cli("digest", "send")
    assert result.exit_code == 0, result.output
    assert len(box.raw) == 4  # configured: an e-mail saying there is nothing new
    text = message_from_bytes(box.raw[-1], policy=policy.default).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "本期没有新文章" in text


def test_an_address_the_server_says_does_not_exist_is_marked_bounced(site: Site) -> None:
    """Only a refusal that says the address is bad bounces it: a policy refusal (Gmail's 5.7.26,
    relaying denied) fails that delivery and marks nobody."""
    refusals = {
        "reader0001@example.com": "550 5.1.1 no such user",
        "reader0002@example.com": "550 5.7.26 Unauthenticated email from example.org is not accepted",
        "reader0003@example.com": "550 Relaying denied",
        "reader0004@example.com": "550 Requested action not taken: mailbox unavailable",  # no enhanced code
    }

    class Refusing(Inbox):
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
            if address in refusals:
                return refusals[address]
            envelope.rcpt_tos.append(address)
            return "250 OK"

    box, port = Refusing(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mailing_site(site, port)
        add_readers(site, 5)
        result = site.cli("digest", "send")
    finally:
        controller.stop()
    assert result.exit_code == 1  # deliveries failed
    assert sorted(r for r, _m in box.received) == ["reader0000@example.com"]
    store = Store(site.store_url)
    try:
        gone = store.subscriber("reader0001@example.com")
        events = {e.email_key: e for e in store.mail_events()}  # hard bounces of the deliveries, kept as any other
        held = store.suppression("reader0001@example.com")
        statuses = {r: found.status for r in refusals if (found := store.subscriber(r)) is not None}
        suppressed = store.suppressed_keys()
    finally:
        store.close()
    assert gone is not None and gone.status is SubscriberStatus.BOUNCED and gone.status_via == "hard bounce: smtp"
    event = events["reader0001@example.com"]
    assert event.linked_by == "token" and event.delivery_id is not None and "550 5.1.1 no such user" in event.reason
    assert held is not None and held.active and held.mail_event_id == event.id
    assert set(events) == suppressed == {"reader0001@example.com", "reader0004@example.com"}
    assert statuses["reader0002@example.com"] is statuses["reader0003@example.com"] is SubscriberStatus.CONFIRMED
