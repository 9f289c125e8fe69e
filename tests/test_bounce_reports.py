"""Reading bounces and complaints built around digests we really sent through SMTP."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
from bounce_mail import WHEN, arf, dsn, exim, ordinary, qmail

from publisher.bounces.events import DELIVERY_HEADER, RAW_LIMIT, EventKind
from publisher.bounces.links import make_delivery_token
from publisher.bounces.reports import read_report

NOW = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)


def message_id(raw: bytes) -> str:
    return str(message_from_bytes(raw, policy=policy.default)["Message-ID"])


def delivery_header(raw: bytes) -> str:
    value = message_from_bytes(raw, policy=policy.default)[DELIVERY_HEADER]
    assert value, "every digest message carries its delivery token"
    return str(value)


def test_a_dsn_with_a_permanent_status_is_a_hard_bounce_linked_to_our_message(sent: dict[str, bytes]) -> None:
    rcpt, original = next(iter(sent.items()))
    reading = read_report(dsn(original, rcpt), "imap", NOW)
    assert reading is not None and reading.shape == "dsn"
    [event] = reading.events
    assert (event.kind, event.email, event.source) == (EventKind.HARD_BOUNCE, rcpt, "imap")
    assert event.message_id == message_id(original)
    assert event.delivery_token == delivery_header(original)
    assert event.reason.startswith("failed 5.1.1; smtp; 550 5.1.1") and "User unknown" in event.reason
    assert event.occurred == WHEN and event.occurred.tzinfo is not None
    assert event.event_id and event.event_id.endswith("/" + rcpt)
    assert "Reporting-MTA: dns; mx.example.com" in event.raw and len(event.raw) <= RAW_LIMIT


def test_a_temporary_dsn_is_a_soft_bounce_and_a_delayed_one_says_nothing(sent: dict[str, bytes]) -> None:
    rcpt, original = next(iter(sent.items()))
    full = read_report(dsn(original, rcpt, status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full"), "imap", NOW)
    assert full is not None and [e.kind for e in full.events] == [EventKind.SOFT_BOUNCE]
    # RFC 3464: "delayed" means the server is still trying; the message may yet arrive.
    delayed = dsn(original, rcpt, action="delayed", status="4.4.1", diagnostic="X-Postfix; connect timed out")
    reading = read_report(delayed, "imap", NOW)
    assert reading is not None and reading.shape == "dsn" and reading.events == ()


@pytest.mark.parametrize(
    ("status", "diagnostic", "kind"),
    [
        ("5.1.1", "smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown", EventKind.HARD_BOUNCE),
        ("5.1.2", "smtp; 550 5.1.2 Host unknown (Name server: example.net: host not found)", EventKind.HARD_BOUNCE),
        ("5.1.10", "smtp; 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", EventKind.HARD_BOUNCE),
        ("5.2.1", "smtp; 550 5.2.1 The email account that you tried to reach is disabled", EventKind.HARD_BOUNCE),
        ("5.0.0", "smtp; 550 Requested action not taken: mailbox unavailable", EventKind.HARD_BOUNCE),
        # Policy, not the address: Gmail's unauthenticated mail, a blocklist, relaying denied.
        ("5.7.26", "smtp; 550 5.7.26 Unauthenticated email from example.org is not accepted", EventKind.SOFT_BOUNCE),
        (
            "5.7.1",
            "smtp; 554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org",
            EventKind.SOFT_BOUNCE,
        ),  # fmt: skip
        ("5.7.1", "smtp; 550 5.7.1 <{rcpt}>: Relay access denied", EventKind.SOFT_BOUNCE),
        ("5.4.4", "smtp; 550 5.4.4 Unable to route", EventKind.SOFT_BOUNCE),
        ("5.0.0", "smtp; 554 rejected", EventKind.SOFT_BOUNCE),
    ],
)
def test_only_a_bad_address_is_a_hard_bounce(
    sent: dict[str, bytes], status: str, diagnostic: str, kind: EventKind
) -> None:
    rcpt, original = next(iter(sent.items()))
    reading = read_report(dsn(original, rcpt, status=status, diagnostic=diagnostic), "imap", NOW)
    assert reading is not None and [e.kind for e in reading.events] == [kind]


def test_a_plain_text_bounce_for_a_policy_refusal_is_soft(sent: dict[str, bytes]) -> None:
    rcpt, original = next(iter(sent.items()))
    blocked = qmail(original, rcpt).replace(b"550 5.1.1", b"550 5.7.1")
    reading = read_report(blocked, "imap", NOW)
    assert reading is not None and [e.kind for e in reading.events] == [EventKind.SOFT_BOUNCE]


def test_a_dsn_with_only_the_headers_still_finds_our_message_id(sent: dict[str, bytes]) -> None:
    rcpt, original = list(sent.items())[1]
    reading = read_report(dsn(original, rcpt, headers_only=True), "pop3", NOW)
    assert reading is not None
    [event] = reading.events
    assert event.message_id == message_id(original) and event.source == "pop3"


def test_the_verp_token_in_the_address_the_bounce_came_to_is_the_link(sent: dict[str, bytes]) -> None:
    rcpt, original = next(iter(sent.items()))
    token = make_delivery_token(b"k" * 32, 42, rcpt)
    bounce = dsn(original, rcpt, to=f"Bounces+{token}@Example.org")
    reading = read_report(bounce, "imap", NOW, return_path="bounces@example.org")
    assert reading is not None
    assert reading.events[0].delivery_token == token
    elsewhere = read_report(bounce, "imap", NOW, return_path="returns@example.org")
    assert elsewhere is not None and elsewhere.events[0].delivery_token != token


def test_a_success_dsn_is_read_and_says_nothing(sent: dict[str, bytes]) -> None:
    rcpt, original = next(iter(sent.items()))
    delivered = dsn(original, rcpt, action="delivered", status="2.0.0", diagnostic="smtp; 250 ok")
    reading = read_report(delivered, "imap", NOW)
    assert reading is not None and reading.events == ()


def test_an_arf_report_is_a_complaint_about_the_reader_it_names(sent: dict[str, bytes]) -> None:
    rcpt, original = list(sent.items())[2]
    reading = read_report(arf(original, rcpt), "imap", NOW)
    assert reading is not None and reading.shape == "arf"
    [event] = reading.events
    assert (event.kind, event.email) == (EventKind.COMPLAINT, rcpt)
    assert event.message_id == message_id(original)
    assert event.reason == "feedback-type abuse from SomeGenerator/1.0"
    not_spam = read_report(arf(original, rcpt, feedback_type="not-spam"), "imap", NOW)
    assert not_spam is not None and not_spam.events == ()


def test_an_arf_report_without_the_recipient_takes_it_from_the_original(sent: dict[str, bytes]) -> None:
    rcpt, original = list(sent.items())[2]
    raw = arf(original, rcpt).replace(f"Original-Rcpt-To: <{rcpt}>\r\n".encode(), b"")
    reading = read_report(raw, "imap", NOW)
    assert reading is not None and reading.events[0].email == rcpt
    assert reading.events[0].delivery_token == delivery_header(original)


@pytest.mark.parametrize("wrap", [qmail, exim])
def test_qmail_and_exim_plain_text_bounces(sent: dict[str, bytes], wrap: object) -> None:
    rcpt, original = list(sent.items())[3]
    reading = read_report(wrap(original, rcpt), "imap", NOW)  # type: ignore[operator]
    assert reading is not None and reading.shape == wrap.__name__  # type: ignore[attr-defined]
    [event] = reading.events
    assert (event.kind, event.email) == (EventKind.HARD_BOUNCE, rcpt)
    assert event.message_id == message_id(original)
    assert event.delivery_token == delivery_header(original)
    assert "550 5.1.1" in event.reason


def test_what_is_not_a_bounce_is_not_read(sent: dict[str, bytes]) -> None:
    rcpt, original = next(iter(sent.items()))
    assert read_report(ordinary(), "imap", NOW) is None
    assert read_report(original, "imap", NOW) is None  # our own digest, forwarded back
    temporary_qmail = qmail(original, rcpt).replace(b"550 5.1.1", b"451 4.3.0")
    assert read_report(temporary_qmail, "imap", NOW) is None
    without_status = qmail(original, rcpt).replace(b"550 5.1.1 ", b"")
    quoting_a_status = without_status.replace(b"\r\n\r\nFrom: ", b"\r\n\r\nX-Note: 550 5.1.1\r\nFrom: ")
    assert b"X-Note: 550 5.1.1" in quoting_a_status  # a status in the returned original is not the server's
    assert read_report(quoting_a_status, "imap", NOW) is None
    no_recipient = dsn(original, rcpt).replace(f"Final-Recipient: rfc822; {rcpt}\r\n".encode(), b"")
    assert read_report(no_recipient, "imap", NOW) is None
    assert read_report(b"\x00\xff garbage \r\n\r\n", "imap", NOW) is None
