"""The bounce mailbox against a real Dovecot on loopback, over IMAP and POP3, plain and TLS.

The mailbox holds DSNs, an ARF complaint and an Exim bounce built around digests that really
went through our SMTP transport (the `sent` fixture), and one message that is no
bounce, which must stay where it is.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import trustme
from bounce_mail import arf, dsn, exim, ordinary
from dovecot import PASSWORD, USER, Dovecot

from publisher.bounces.events import MailEvent
from publisher.bounces.mailbox import ImapMailbox, MailboxAccess, MailboxError, Pop3Mailbox, poll
from publisher.bounces.recorder import RecordReport

NOW = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def imap_access(server: Dovecot, **changes: object) -> MailboxAccess:
    settings: dict[str, object] = {
        "protocol": "imap", "host": "127.0.0.1", "port": server.imap_port, "username": USER,
        "password": PASSWORD, "security": "none", "timeout": 10.0,
    }  # fmt: skip
    settings.update(changes)
    return MailboxAccess(**settings)  # type: ignore[arg-type]


def into(recorded: list[MailEvent]) -> Callable[[list[MailEvent]], RecordReport]:
    """A recorder that keeps the events in `recorded` (the real one is App.record_mail_events,
    tested end to end in test_bounce_loop)."""

    def record(events: list[MailEvent]) -> RecordReport:
        recorded.extend(events)
        return RecordReport(recorded=len(events))

    return record


def fill(server: Dovecot, originals: dict[str, bytes]) -> list[str]:
    """A hard bounce, a soft bounce, a complaint, an Exim bounce and an out-of-office reply."""
    readers = list(originals)
    server.append(dsn(originals[readers[0]], readers[0]))
    server.append(dsn(originals[readers[1]], readers[1], status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full"))
    server.append(arf(originals[readers[2]], readers[2]))
    server.append(exim(originals[readers[3]], readers[3]))
    server.append(ordinary())
    return readers


def test_imap_poll_records_what_it_reads_moves_it_and_leaves_the_rest(
    dovecot: Dovecot,
    sent: dict[str, bytes],
) -> None:
    readers = fill(dovecot, sent)
    recorded: list[MailEvent] = []
    with ImapMailbox(imap_access(dovecot)) as mailbox:
        report = poll(mailbox, into(recorded), "imap", NOW)
    assert (report.processed, report.left, report.left_before) == (4, 1, 0)
    assert dict(report.by_kind) == {"hard": 2, "soft": 1, "complaint": 1}
    assert dict(report.by_shape) == {"dsn": 2, "arf": 1, "exim": 1}
    assert sorted((e.email, e.kind.value) for e in recorded) == sorted(
        [(readers[0], "hard"), (readers[1], "soft"), (readers[2], "complaint"), (readers[3], "hard")]
    )
    assert all(e.message_id and e.source == "imap" for e in recorded)
    [left] = dovecot.messages("INBOX")
    assert b"out of the office" in left
    assert len(dovecot.messages("Processed")) == 4

    # The next poll reads nothing again and counts what it left before.
    with ImapMailbox(imap_access(dovecot)) as mailbox:
        again = poll(mailbox, into(recorded), "imap", NOW)
    assert (again.processed, again.left, again.left_before) == (0, 0, 1) and len(recorded) == 4
    assert len(dovecot.messages("INBOX")) == 1


def test_imap_delete_and_another_folder(dovecot: Dovecot, sent: dict[str, bytes]) -> None:
    readers = list(sent)
    imap = dovecot.imap()
    imap.create('"Bounces"')
    imap.logout()
    dovecot.append(dsn(sent[readers[0]], readers[0]), folder="Bounces")
    dovecot.append(ordinary(), folder="Bounces")
    recorded: list[MailEvent] = []
    with ImapMailbox(imap_access(dovecot, folder="Bounces", processed="delete")) as mailbox:
        report = poll(mailbox, into(recorded), "imap", NOW)
    assert (report.processed, report.left) == (1, 1) and [e.email for e in recorded] == [readers[0]]
    assert len(dovecot.messages("Bounces")) == 1 and dovecot.messages("Processed") == []


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_imap_over_verified_tls(
    dovecot: Dovecot, dovecot_ca: trustme.CA, sent: dict[str, bytes], security: str
) -> None:
    readers = list(sent)
    dovecot.append(dsn(sent[readers[0]], readers[0]))
    port = dovecot.imaps_port if security == "tls" else dovecot.imap_port
    access = imap_access(dovecot, port=port, security=security, ssl_context=trusting(dovecot_ca))
    recorded: list[MailEvent] = []
    with ImapMailbox(access) as mailbox:
        assert poll(mailbox, into(recorded), "imap", NOW).processed == 1


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_certificate_we_do_not_trust_is_refused_and_nothing_changes(
    dovecot: Dovecot,
    sent: dict[str, bytes],
    protocol: str,
) -> None:
    readers = list(sent)
    dovecot.append(dsn(sent[readers[0]], readers[0]))
    port = dovecot.imaps_port if protocol == "imap" else dovecot.pop3s_port
    access = imap_access(dovecot, protocol=protocol, port=port, security="tls")  # the system's CAs only
    opened = ImapMailbox(access) if protocol == "imap" else Pop3Mailbox(access, set())
    with pytest.raises(MailboxError) as refused:
        opened.__enter__()
    assert "certificate did not verify" in str(refused.value)
    assert len(dovecot.messages("INBOX")) == 1


def test_a_wrong_password_is_said_plainly(dovecot_ca: trustme.CA) -> None:
    # Its own server: Dovecot delays the next logins from an address that failed one.
    server = Dovecot(dovecot_ca).start()
    try:
        with pytest.raises(MailboxError) as refused:
            ImapMailbox(imap_access(server, password="wrong")).__enter__()
    finally:
        server.remove()
    assert "refused the login of 'bounces'" in str(refused.value)
    assert "password" in refused.value.hint


def test_a_failure_to_record_keeps_that_message_and_clears_those_before(
    dovecot: Dovecot,
    sent: dict[str, bytes],
) -> None:
    readers = list(sent)
    dovecot.append(dsn(sent[readers[0]], readers[0]))
    dovecot.append(dsn(sent[readers[1]], readers[1]))
    recorded: list[MailEvent] = []

    def record(events: list[MailEvent]) -> RecordReport:
        if recorded:
            raise RuntimeError("the store is gone")
        recorded.extend(events)
        return RecordReport(recorded=len(events))

    with pytest.raises(RuntimeError), ImapMailbox(imap_access(dovecot)) as mailbox:
        poll(mailbox, record, "imap", NOW)
    [kept] = dovecot.messages("INBOX")
    assert readers[1].encode() in kept and len(dovecot.messages("Processed")) == 1


@pytest.mark.parametrize("security", ["none", "tls", "starttls"])
def test_pop3_deletes_what_it_read_and_remembers_what_it_left(
    dovecot: Dovecot,
    dovecot_ca: trustme.CA,
    sent: dict[str, bytes],
    security: str,
) -> None:
    readers = fill(dovecot, sent)
    port = dovecot.pop3s_port if security == "tls" else dovecot.pop3_port
    access = imap_access(dovecot, protocol="pop3", port=port, security=security, processed="delete",
                         ssl_context=trusting(dovecot_ca))  # fmt: skip
    left: set[str] = set()
    recorded: list[MailEvent] = []
    with Pop3Mailbox(access, left) as mailbox:
        report = poll(mailbox, into(recorded), "pop3", NOW)
    assert (report.processed, report.left) == (4, 1) and len(left) == 1
    assert {e.email for e in recorded} == set(readers) and {e.source for e in recorded} == {"pop3"}
    [kept] = dovecot.messages("INBOX")
    assert b"out of the office" in kept
    with Pop3Mailbox(access, left) as mailbox:
        again = poll(mailbox, into(recorded), "pop3", NOW)
    assert (again.processed, again.left, again.left_before) == (0, 0, 1) and len(recorded) == 4


def test_a_connection_lost_mid_poll_is_a_mailbox_error_and_the_next_poll_reads_it_all(
    dovecot: Dovecot, sent: dict[str, bytes]
) -> None:
    readers = list(sent)
    dovecot.append(dsn(sent[readers[0]], readers[0]))
    dovecot.append(dsn(sent[readers[1]], readers[1]))
    recorded: list[MailEvent] = []
    mailbox = ImapMailbox(imap_access(dovecot))

    def record_then_drop(events: list[MailEvent]) -> RecordReport:
        recorded.extend(events)
        mailbox.imap.sock.shutdown(socket.SHUT_RDWR)  # the server or the network goes away
        return RecordReport(recorded=len(events))

    with pytest.raises(MailboxError) as lost, mailbox:
        poll(mailbox, record_then_drop, "imap", NOW)
    assert str(lost.value).startswith(f"imap://127.0.0.1:{dovecot.imap_port}")
    assert len(recorded) == 1 and len(dovecot.messages("INBOX")) == 2  # nothing was moved
    with ImapMailbox(imap_access(dovecot)) as again:
        assert poll(again, into(recorded), "imap", NOW).processed == 2  # the first again: kept once by its id
    assert recorded[0].event_id == recorded[1].event_id
