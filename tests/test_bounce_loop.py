"""The bounce loop end to end: a digest goes out over SMTP with VERP return paths, mail systems
answer with DSNs, an Exim bounce and an ARF complaint built around the exact bytes that
arrived, Dovecot holds them, `publisher bounces poll` (and `publisher run`'s scheduled poll)
reads them, and the next digest skips the readers they suppressed."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bounce_mail import arf, dsn, exim, ordinary
from dovecot import PASSWORD, USER, Dovecot
from test_newsletter import add_readers, mailing_site
from test_smtp import free_port, smtp_on_loopback

from conftest import Service, Site
from publisher.bounces.mailbox import MailboxError
from publisher.config import load_settings
from publisher.jobs import poll_bounce_mailbox
from publisher.model import SubscriberStatus
from publisher.scheduler import BOUNCES_JOB, INGEST_EXECUTOR, Scheduler
from publisher.store import Store

RETURN_PATH = "bounces@example.org"


class Relay:
    """An SMTP server that keeps each message with its envelope: (MAIL FROM, RCPT TO, bytes)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.sent.append((envelope.mail_from, envelope.rcpt_tos[0], envelope.original_content))
        return "250 OK"


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    handler = Relay()
    with smtp_on_loopback(handler) as port:
        yield handler, port


def mailbox_config(server: Dovecot, protocol: str = "imap") -> str:
    port = server.imap_port if protocol == "imap" else server.pop3_port
    return f"""
[bounces]
return_path = "{RETURN_PATH}"
[bounces.mailbox]
protocol = "{protocol}"
host = "127.0.0.1"
port = {port}
security = "none"
username = "{USER}"
password_env = "TEST_BOUNCE_MAILBOX_PASSWORD"
interval = 1
"""


def send_digest(site: Site, relay: Relay, readers: int) -> dict[str, tuple[str, bytes]]:
    """Send the digest to `readers` new readers: by recipient, (the envelope sender, the bytes)."""
    add_readers(site, readers)
    result = site.cli("digest", "send")
    assert result.exit_code == 0, result.output
    return {rcpt: (mail_from, raw) for mail_from, rcpt, raw in relay.sent}


def answer_as_mail_systems_would(server: Dovecot, sent: dict[str, tuple[str, bytes]]) -> list[str]:
    """Reader 0's server has no such user (a DSN with the headers only, to the VERP address);
    reader 1 marks it as spam (ARF, through a feedback loop); reader 2's mailbox is full (a
    soft bounce: one is not enough to suppress); reader 3's Exim says no such user; reader 4's
    bounce went to the plain return path and quotes only our Message-ID. And an out-of-office."""
    readers = sorted(sent)
    (verp0, raw0), (_v1, raw1), (verp2, raw2), (verp3, raw3), (_v4, raw4) = (sent[r] for r in readers[:5])
    assert verp0.startswith("bounces+") and verp0.endswith("@example.org"), verp0
    server.append(dsn(raw0, readers[0], to=verp0, headers_only=True))
    server.append(arf(raw1, readers[1]))
    server.append(dsn(raw2, readers[2], to=verp2, status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full"))
    server.append(exim(raw3, readers[3], to=verp3))
    without_token = b"".join(line for line in raw4.splitlines(keepends=True) if not line.startswith(b"X-Publisher"))
    server.append(dsn(without_token, readers[4], to=RETURN_PATH, headers_only=True))
    server.append(ordinary())
    return readers


def test_polling_suppresses_the_right_readers_and_the_next_digest_skips_them(
    site: Site, relay: tuple[Relay, int], dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, port = relay
    monkeypatch.setenv("TEST_BOUNCE_MAILBOX_PASSWORD", PASSWORD)
    mailing_site(site, port, mailbox_config(dovecot))
    readers = answer_as_mail_systems_would(dovecot, send_digest(site, handler, 6))

    result = site.cli("bounces", "poll")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"imap://127.0.0.1:{dovecot.imap_port}/INBOX: 5 read and moved to Processed, 1 left"
    assert "  hard bounces: 3" in lines and "  soft bounces: 1" in lines and "  complaints: 1" in lines
    suppressed = {readers[0], readers[1], readers[3], readers[4]}
    [listed] = [line for line in lines if line.startswith("  suppressed: ")]
    assert set(listed.removeprefix("  suppressed: ").split(", ")) == suppressed
    [left] = dovecot.messages("INBOX")
    assert b"out of the office" in left and len(dovecot.messages("Processed")) == 5

    store = Store(site.store_url)
    try:
        assert {r for r in readers if store.is_suppressed(r)} == suppressed
        events = {e.email_key: e for e in store.mail_events(limit=100)}
        assert len(events) == 5 and {e.source for e in events.values()} == {"imap"}
        assert all(e.delivery_id is not None for e in events.values())  # each linked to its delivery
        assert events[readers[4]].linked_by == "message_id" and events[readers[0]].linked_by == "token"
        assert events[readers[2]].reason == "failed 4.2.2; smtp; 452 4.2.2 Mailbox full"
    finally:
        store.close()

    again = site.cli("bounces", "poll")
    assert again.output.splitlines() == [
        f"imap://127.0.0.1:{dovecot.imap_port}/INBOX: 0 read and moved to Processed, 0 left (1 left by earlier polls)"
    ]

    # The next digest goes to the readers who were not suppressed, and to them only.
    handler.sent.clear()
    site.clock_now = datetime.now(UTC)
    site.article("all.md", "下周开放日", date=f"{datetime.now(UTC) + timedelta(hours=9):%Y-%m-%d %H:%M}",
                 categories="[高新院新闻, policy, tech]")  # fmt: skip
    site.build()
    assert site.cli("digest", "send").exit_code == 0
    assert {rcpt for _from, rcpt, _raw in handler.sent} == set(readers) - suppressed


def forged_original(reader: str) -> bytes:
    """What anyone can write: a message that looks like our digest to `reader`, but was never
    sent by us (no token, a Message-ID of the forger's)."""
    return (
        f"From: news@example.org\r\nTo: {reader}\r\nSubject: digest\r\n"
        f"Message-ID: <forged.{reader.split('@')[0]}@attacker.example>\r\n\r\nhello\r\n"
    ).encode()


def test_forged_bounces_and_complaints_in_the_mailbox_change_nobody(
    site: Site, relay: tuple[Relay, int], dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone can mail the bounce address. A DSN naming a reader without our token or Message-ID,
    one sent to a VERP address whose token's signature is wrong, and an ARF complaint about a
    made-up message are read, kept as `unlinked`, moved out of the way, and change nobody."""
    handler, port = relay
    monkeypatch.setenv("TEST_BOUNCE_MAILBOX_PASSWORD", PASSWORD)
    mailing_site(site, port, mailbox_config(dovecot))
    sent = send_digest(site, handler, 3)
    readers = sorted(sent)
    verp1 = sent[readers[1]][0]
    local, _at, domain = verp1.rpartition("@")
    bad_token = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain  # the signature's last letter changed
    dovecot.append(dsn(forged_original(readers[0]), readers[0], to=RETURN_PATH))
    dovecot.append(dsn(forged_original(readers[1]), readers[1], to=bad_token))
    dovecot.append(arf(forged_original(readers[2]), readers[2]))

    result = site.cli("bounces", "poll")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("WARNING: imap event for reader0001@example.com: delivery token ")  # the forged one
    assert lines[1] == f"imap://127.0.0.1:{dovecot.imap_port}/INBOX: 3 read and moved to Processed, 0 left"
    assert "  not linked to a delivery of ours, changing nobody: 3" in lines
    assert not [line for line in lines if line.startswith("  suppressed: ")]
    assert len(dovecot.messages("Processed")) == 3 and dovecot.messages("INBOX") == []

    store = Store(site.store_url)
    try:
        for reader in readers:
            found = store.subscriber(reader)
            assert found is not None and found.status is SubscriberStatus.CONFIRMED, reader
            assert not store.is_suppressed(reader)
        events = store.mail_events()
        assert sorted((e.email_key, e.kind.value, e.linked_by) for e in events) == [
            (readers[0], "hard", "unlinked"), (readers[1], "hard", "unlinked"), (readers[2], "complaint", "unlinked"),
        ]  # fmt: skip
        assert all(e.delivery_id is None for e in events)
    finally:
        store.close()
    listed = site.cli("bounces", "list", "--format", "json")
    assert listed.exit_code == 0 and listed.output.count('"unlinked"') == 3, listed.output


def test_pop3_polls_from_the_command_line_delete_and_remember_what_they_left(
    site: Site, relay: tuple[Relay, int], dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, port = relay
    monkeypatch.setenv("TEST_BOUNCE_MAILBOX_PASSWORD", PASSWORD)
    mailing_site(site, port, mailbox_config(dovecot, "pop3"))
    readers = answer_as_mail_systems_would(dovecot, send_digest(site, handler, 5))
    result = site.cli("bounces", "poll")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"pop3://127.0.0.1:{dovecot.pop3_port}: 5 read and deleted, 1 left"
    assert len(dovecot.messages("INBOX")) == 1
    again = site.cli("bounces", "poll")
    assert "0 read and deleted, 0 left (1 left by earlier polls)" in again.output
    store = Store(site.store_url)
    try:
        assert store.is_suppressed(readers[0]) and not store.is_suppressed(readers[2])
    finally:
        store.close()


def test_a_mailbox_that_refuses_the_login_is_said_and_nothing_is_recorded(
    site: Site, relay: tuple[Relay, int], dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    _handler, port = relay
    mailing_site(site, port, mailbox_config(dovecot).replace(f"port = {dovecot.imap_port}", f"port = {free_port()}"))
    missing = site.cli("bounces", "poll")
    assert missing.exit_code == 2 and "TEST_BOUNCE_MAILBOX_PASSWORD" in missing.output
    monkeypatch.setenv("TEST_BOUNCE_MAILBOX_PASSWORD", PASSWORD)
    refused = site.cli("bounces", "poll")
    assert refused.exit_code == 1 and "cannot connect to imap://127.0.0.1:" in refused.output
    with pytest.raises(MailboxError, match="cannot connect"):  # the scheduler logs it, /healthz shows it failed
        poll_bounce_mailbox(str(site.config))


def test_publisher_run_polls_the_mailbox_on_its_interval_and_drops_the_job_with_the_table(
    site: Site, relay: tuple[Relay, int], dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, port = relay
    monkeypatch.setenv("TEST_BOUNCE_MAILBOX_PASSWORD", PASSWORD)
    mailing_site(site, port, mailbox_config(dovecot))
    answer_as_mail_systems_would(dovecot, send_digest(site, handler, 5))
    store = Store(site.store_url)
    try:
        service = Scheduler(load_settings(site.config), str(site.config), store)
        assert service.start()
        try:
            job = service.scheduler.get_job(BOUNCES_JOB)  # type: ignore[union-attr]
            assert job.trigger.interval == timedelta(minutes=1) and job.executor == INGEST_EXECUTOR
            job.modify(next_run_time=datetime.now(UTC))
            deadline = time.monotonic() + 20
            while len(dovecot.messages("Processed")) < 5 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            service.stop()
        assert len(dovecot.messages("Processed")) == 5 and len(dovecot.messages("INBOX")) == 1
        assert len(store.mail_events(limit=100)) == 5

        site.config.write_text(site.config.read_text("utf-8").split("[bounces.mailbox]")[0], "utf-8")
        without = Scheduler(load_settings(site.config), str(site.config), store)
        assert without.start()
        try:
            assert without.scheduler.get_job(BOUNCES_JOB) is None  # type: ignore[union-attr]
        finally:
            without.stop()
    finally:
        store.close()


def test_mailbox_settings_that_cannot_work_are_refused_with_the_fix(site: Site) -> None:
    site.write_config("""
[bounces.mailbox]
protocol = "pop3"
host = "mail.example.org"
security = "none"
username = "bounces"
password_env = "X"
processed = "move"
""")  # fmt: skip
    result = site.cli("check")
    assert result.exit_code == 2
    assert 'bounces.mailbox.processed: "move" needs IMAP' in result.output
    assert 'bounces.mailbox.security: "none" for mail.example.org, which is not this machine' in result.output


def test_publisher_run_says_it_polls_and_healthz_shows_the_job(site: Site, dovecot: Dovecot) -> None:
    site.write_config(site.mail_to_outbox() + mailbox_config(dovecot))
    service = Service(site.config, site.root, free_port(), env={**os.environ, "TEST_BOUNCE_MAILBOX_PASSWORD": PASSWORD})
    try:
        service.wait_until_serving()
        jobs = service.health().json()["scheduler"]["jobs"]
        assert jobs[BOUNCES_JOB]["next_run"] is not None
    finally:
        assert service.stop() == 0
    assert "; bounce mailbox 127.0.0.1 every 1 min" in service.stdout.read_text()
