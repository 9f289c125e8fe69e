"""Each provider's door on its own: documented payloads, correctly signed, wrongly signed,
replayed and stale, with real keys and real cryptography (the HTTP side: test_hooks.py)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from hook_signing import (
    aliyun_event,
    aliyun_request,
    mailgun_event,
    mailgun_request,
    postmark_bounce,
    postmark_request,
    resend_event,
    resend_request,
    resend_secret,
    sendgrid_event,
    sendgrid_keys,
    sendgrid_request,
)
from publisher.bounces.events import EventKind
from publisher.bounces.providers import (
    Aliyun,
    HookRequest,
    Mailgun,
    Malformed,
    Postmark,
    Refused,
    ReplayGuard,
    Resend,
    Sendgrid,
)
from publisher.bounces.providers.sendgrid import SIGNATURE_HEADER, load_public_key
from publisher.store import Store

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # n of NIST P-256 (SEC 2)

NOW = time.time()
KEY = "key-" + secrets.token_hex(16)


def test_replay_guard_accepts_a_key_once_until_it_expires_and_forgets_a_released_one(store: Store) -> None:
    clock = [1000.0]
    guard = ReplayGuard(store, clock=lambda: clock[0])
    assert guard.claim("a", until=1300.0) and not guard.claim("a", until=1300.0)
    guard.release("a")
    assert guard.claim("a", until=1300.0)  # a request whose events could not be recorded may come again
    # Kept in the store: a guard of another process (another Store on it) refuses the replay too.
    other = Store(store.engine.url.render_as_string(hide_password=False))
    try:
        assert not ReplayGuard(other, clock=lambda: clock[0]).claim("a", until=1300.0)
    finally:
        other.close()
    clock[0] = 1301.0  # past its staleness, a request with that key is refused as stale anyway
    assert guard.claim("a", until=1600.0)


# --- Mailgun -----------------------------------------------------------------------------------


def test_mailgun_reads_a_signed_permanent_failure() -> None:
    door = Mailgun(KEY, clock=lambda: NOW)
    verified = door.receive(mailgun_request(KEY, mailgun_event("a@example.com", when=NOW - 3, token="tok1"), NOW))
    [event] = verified.events
    assert (event.kind, event.email, event.source) == (EventKind.HARD_BOUNCE, "a@example.com", "mailgun")
    assert event.delivery_token == "tok1" and event.provider_id == "<20240101.abc@mg.example.org>"
    assert "550" in event.reason and "No such user" in event.reason
    assert event.event_id and event.occurred.tzinfo is not None and abs(event.occurred.timestamp() - (NOW - 3)) < 1
    assert verified.replay_key.startswith("mailgun:") and verified.seen_until >= NOW + 299


@pytest.mark.parametrize(
    ("name", "severity", "kind"),
    [("failed", "temporary", EventKind.SOFT_BOUNCE), ("complained", "", EventKind.COMPLAINT),
     ("unsubscribed", "", EventKind.UNSUBSCRIBE)],
)  # fmt: skip
def test_mailgun_kinds(name: str, severity: str, kind: EventKind) -> None:
    door = Mailgun(KEY, clock=lambda: NOW)
    [event] = door.receive(mailgun_request(KEY, mailgun_event("a@example.com", name, severity, NOW), NOW)).events
    assert event.kind is kind


@pytest.mark.parametrize(
    ("reason", "code", "message", "kind"),
    [
        ("suppress-bounce", 605, "Not delivering to previously bounced address", EventKind.HARD_BOUNCE),
        ("suppress-complaint", 607, "Not delivering to a user who marked your messages as spam", EventKind.COMPLAINT),
        ("suppress-unsubscribe", 606, "Not delivering to unsubscribed address", EventKind.UNSUBSCRIBE),
        ("old", 0, "Too old", EventKind.SOFT_BOUNCE),  # Mailgun gave up retrying
        ("bounce", 550, "5.1.1 The email account that you tried to reach does not exist", EventKind.HARD_BOUNCE),
        ("bounce", 550, "5.7.26 Unauthenticated email from example.org is not accepted", EventKind.SOFT_BOUNCE),
        ("generic", 554, "5.7.1 Service unavailable; client host blocked", EventKind.SOFT_BOUNCE),
    ],
)
def test_mailgun_permanent_failures_by_reason_and_status(reason: str, code: int, message: str, kind: EventKind) -> None:
    data = mailgun_event("a@example.com", when=NOW)
    data["reason"], data["delivery-status"] = reason, {"code": code, "message": message, "description": ""}
    [event] = Mailgun(KEY, clock=lambda: NOW).receive(mailgun_request(KEY, data, NOW)).events
    assert event.kind is kind and reason in event.reason


def test_mailgun_ignores_events_that_say_nothing_about_the_address() -> None:
    door = Mailgun(KEY, clock=lambda: NOW)
    assert door.receive(mailgun_request(KEY, mailgun_event("a@example.com", "delivered", when=NOW), NOW)).events == []


def test_mailgun_refuses_a_wrong_key_a_changed_token_a_stale_or_a_future_timestamp() -> None:
    door = Mailgun(KEY, clock=lambda: NOW)
    data = mailgun_event("a@example.com", when=NOW)
    with pytest.raises(Refused, match="does not match"):
        door.receive(mailgun_request("another key", data, NOW))
    good = json.loads(mailgun_request(KEY, data, NOW).body)
    good["signature"]["token"] = "x" + good["signature"]["token"][1:]
    with pytest.raises(Refused, match="does not match"):
        door.receive(HookRequest(json.dumps(good).encode()))
    with pytest.raises(Refused, match="stale"):
        door.receive(mailgun_request(KEY, data, NOW - 301))
    with pytest.raises(Refused, match="ahead"):
        door.receive(mailgun_request(KEY, data, NOW + 3600))
    with pytest.raises(Refused, match="no signature"):
        door.receive(HookRequest(b"event=failed&recipient=a%40example.com"))


def test_mailgun_a_replayed_token_has_the_same_key(store: Store) -> None:
    door, guard = Mailgun(KEY, clock=lambda: NOW), ReplayGuard(store, clock=lambda: NOW)
    request = mailgun_request(KEY, mailgun_event("a@example.com", when=NOW), NOW)
    first, again = door.receive(request), door.receive(request)
    assert guard.claim(first.replay_key, first.seen_until) and not guard.claim(again.replay_key, again.seen_until)


# --- SendGrid ----------------------------------------------------------------------------------


def test_sendgrid_reads_a_signed_batch() -> None:
    private, public = sendgrid_keys()
    door = Sendgrid(public, clock=lambda: NOW)
    events = [
        sendgrid_event("hard@example.com", when=NOW, publisher_delivery="tok2"),
        sendgrid_event("soft@example.com", when=NOW, bounce_classification="Technical"),
        sendgrid_event("blocked@example.com", when=NOW, type="blocked", bounce_classification="Reputation"),
        sendgrid_event("spam@example.com", "spamreport", NOW),
        sendgrid_event("gone@example.com", "group_unsubscribe", NOW),
        sendgrid_event("kept@example.com", "dropped", NOW, reason="Bounced Address"),
        sendgrid_event("open@example.com", "open", NOW),
        sendgrid_event("late@example.com", "deferred", NOW),
        {"event": "bounce", "timestamp": int(NOW)},  # no address: skipped, the rest kept
    ]
    got = Sendgrid(public, clock=lambda: NOW).receive(sendgrid_request(private, events, NOW)).events
    assert [(e.email, e.kind) for e in got] == [
        ("hard@example.com", EventKind.HARD_BOUNCE), ("soft@example.com", EventKind.SOFT_BOUNCE),
        ("blocked@example.com", EventKind.SOFT_BOUNCE), ("spam@example.com", EventKind.COMPLAINT),
        ("gone@example.com", EventKind.UNSUBSCRIBE), ("kept@example.com", EventKind.HARD_BOUNCE),
    ]  # fmt: skip
    assert got[0].delivery_token == "tok2" and got[0].provider_id == "14c5d75ce93"
    assert got[0].event_id == events[0]["sg_event_id"] and "5.0.0" in got[0].reason
    assert door.receive(sendgrid_request(private, events[:1], NOW)).replay_key.startswith("sendgrid:")


def test_sendgrid_refuses_another_key_a_changed_body_a_stale_timestamp_and_no_signature() -> None:
    private, public = sendgrid_keys()
    other, _ = sendgrid_keys()
    door = Sendgrid(public, clock=lambda: NOW)
    events = [sendgrid_event("a@example.com", when=NOW)]
    with pytest.raises(Refused, match="does not match"):
        door.receive(sendgrid_request(other, events, NOW))
    good = sendgrid_request(private, events, NOW)
    with pytest.raises(Refused, match="does not match"):
        door.receive(replace(good, body=good.body.replace(b"a@example.com", b"b@example.com")))
    with pytest.raises(Refused, match="stale"):
        door.receive(sendgrid_request(private, events, NOW - 400))
    with pytest.raises(Refused, match="missing"):
        door.receive(HookRequest(good.body))


def test_a_sendgrid_request_replayed_with_a_malleated_signature_has_the_same_replay_key(store: Store) -> None:
    """ECDSA signatures are malleable: (r, n - s) verifies as (r, s) does, so the replay guard
    cannot key on the signature; it keys on what was signed."""
    private, public = sendgrid_keys()
    door = Sendgrid(public, clock=lambda: NOW)
    good = sendgrid_request(private, [sendgrid_event("a@example.com", when=NOW)], NOW)
    r, s_value = decode_dss_signature(base64.b64decode(good.header(SIGNATURE_HEADER)))
    malleated = base64.b64encode(encode_dss_signature(r, P256_ORDER - s_value)).decode()
    assert malleated != good.header(SIGNATURE_HEADER)
    again = replace(good, headers={**good.headers, SIGNATURE_HEADER.lower(): malleated})
    first, second = door.receive(good), door.receive(again)  # both verify
    assert first.replay_key == second.replay_key
    guard = ReplayGuard(store, clock=lambda: NOW)
    assert guard.claim(first.replay_key, first.seen_until) and not guard.claim(second.replay_key, second.seen_until)


def test_sendgrid_public_key_must_be_a_p256_key_in_base64_der() -> None:
    _, public = sendgrid_keys()
    assert load_public_key(public[:40] + "\n" + public[40:]).curve.name == "secp256r1"
    for bad in ("not base64!", base64.b64encode(b"not der").decode()):
        with pytest.raises(ValueError, match="base64 DER"):
            load_public_key(bad)


# --- Postmark ----------------------------------------------------------------------------------


def test_postmark_reads_a_bounce_with_the_right_credentials() -> None:
    door = Postmark("postmark", "pw-" + "x" * 20, clock=lambda: NOW)
    request = postmark_request("postmark", "pw-" + "x" * 20, postmark_bounce("a@example.com", NOW - 60, token="t3"))
    verified = door.receive(request)
    [event] = verified.events
    assert (event.kind, event.email, event.delivery_token) == (EventKind.HARD_BOUNCE, "a@example.com", "t3")
    assert event.provider_id == "883953f4-6105-42a2-a16a-77a8eac79483" and "550 5.1.1" in event.reason
    assert "Content" not in event.raw  # the bounce message itself is not kept
    assert door.receive(request).replay_key == verified.replay_key


@pytest.mark.parametrize(
    ("record", "kind"),
    [({"Type": "SoftBounce", "TypeCode": 4096}, EventKind.SOFT_BOUNCE),
     ({"RecordType": "SpamComplaint", "Type": "SpamComplaint", "TypeCode": 512}, EventKind.COMPLAINT),
     ({"Type": "AutoResponder", "TypeCode": 64}, None)],
)  # fmt: skip
def test_postmark_kinds(record: dict[str, object], kind: EventKind | None) -> None:
    door = Postmark("u", "p", clock=lambda: NOW)
    events = door.receive(postmark_request("u", "p", postmark_bounce("a@example.com", NOW) | record)).events
    assert [e.kind for e in events] == ([kind] if kind else [])


def test_postmark_a_readers_own_unsubscribe() -> None:
    record = {
        "RecordType": "SubscriptionChange", "MessageID": "a4909a96-73ec-4b41-bd10-2cee4e3e5a5a",
        "ServerID": 23, "MessageStream": "broadcast", "ChangedAt": "2026-12-03T06:00:00.123456Z",
        "Recipient": "a@example.com", "Origin": "Recipient", "SuppressSending": True,
        "SuppressionReason": "ManualSuppression", "Tag": "", "Metadata": {},
    }  # fmt: skip
    door = Postmark("u", "p", clock=lambda: 1796277600.0)
    [event] = door.receive(postmark_request("u", "p", record)).events
    assert (event.kind, event.email) == (EventKind.UNSUBSCRIBE, "a@example.com")


def test_postmark_refuses_wrong_or_missing_credentials_and_a_stale_event() -> None:
    door = Postmark("postmark", "right", clock=lambda: NOW)
    record = postmark_bounce("a@example.com", NOW)
    for user, password in (("postmark", "wrong"), ("other", "right"), ("postmark", "right:")):
        with pytest.raises(Refused, match="wrong credentials"):
            door.receive(postmark_request(user, password, record))
    with pytest.raises(Refused, match="no HTTP Basic"):
        door.receive(HookRequest(json.dumps(record).encode()))
    with pytest.raises(Refused, match="stale"):
        door.receive(postmark_request("postmark", "right", postmark_bounce("a@example.com", NOW - 49 * 3600)))


# --- Resend ------------------------------------------------------------------------------------


def test_resend_reads_a_svix_signed_bounce_and_complaint() -> None:
    secret = resend_secret()
    door = Resend(secret, clock=lambda: NOW)
    request = resend_request(secret, resend_event("a@example.com", when=NOW, token="t4"), NOW, ident="msg_1")
    verified = door.receive(request)
    [event] = verified.events
    assert (event.kind, event.email, event.delivery_token) == (EventKind.HARD_BOUNCE, "a@example.com", "t4")
    assert event.provider_id == "56761188-7520-42d8-8898-ff6fc54ce618" and event.event_id == "msg_1"
    assert verified.replay_key == "resend:msg_1"
    complained = resend_event("b@example.com", "email.complained", NOW)
    [complaint] = door.receive(resend_request(secret, complained, NOW)).events
    assert complaint.kind is EventKind.COMPLAINT
    delayed = resend_event("c@example.com", "email.delivery_delayed", NOW)
    assert door.receive(resend_request(secret, delayed, NOW)).events == []


def test_resend_refuses_another_secret_a_changed_body_and_a_timestamp_out_of_tolerance() -> None:
    secret = resend_secret()
    door = Resend(secret, clock=lambda: NOW)
    event = resend_event("a@example.com", when=NOW)
    with pytest.raises(Refused, match="no v1 signature"):
        door.receive(resend_request(resend_secret(), event, NOW))
    good = resend_request(secret, event, NOW)
    with pytest.raises(Refused, match="no v1 signature"):
        door.receive(replace(good, body=good.body + b" "))
    with pytest.raises(Refused, match="stale"):
        door.receive(resend_request(secret, event, NOW - 301))
    with pytest.raises(Refused, match="ahead"):
        door.receive(resend_request(secret, event, NOW + 301))
    with pytest.raises(Refused, match="missing"):
        door.receive(HookRequest(good.body, {"svix-id": "msg_1"}))
    with pytest.raises(ValueError, match="Svix"):
        Resend("whsec_not base64!")


# --- Alibaba Cloud DirectMail --------------------------------------------------------------------


def test_aliyun_reads_eventbridge_events_with_the_token_in_the_header_or_the_query() -> None:
    token = secrets.token_urlsafe(24)
    door = Aliyun(token, clock=lambda: NOW)
    batch = [
        aliyun_event("nx@example.com", NOW - 30, token="t6"),
        aliyun_event("full@example.com", NOW - 30, failed_type="SmtpMailboxFull", err_code="452"),
        aliyun_event("spam@example.com", NOW - 30, kind="dm:Feedback:FblReport"),
        aliyun_event("bye@example.com", NOW - 30, kind="dm:Feedback:UnSubscribe"),
        aliyun_event("ok@example.com", NOW - 30, kind="dm:Deliver:Succeed"),
    ]
    # A 550 is hard only when it says the address is bad; a policy refusal (5.7.1) is soft.
    batch.append(aliyun_event("gone@example.com", NOW - 30, failed_type="SmtpOther", err_code="550"))
    batch.append(aliyun_event("policy@example.com", NOW - 30, failed_type="SmtpOther", err_code="550"))
    batch[-1]["data"]["err_msg"] = "550 5.7.1 Message rejected by the recipient's policy"
    got = door.receive(aliyun_request(token, batch)).events
    assert [(e.email, e.kind) for e in got] == [
        ("nx@example.com", EventKind.HARD_BOUNCE), ("full@example.com", EventKind.SOFT_BOUNCE),
        ("spam@example.com", EventKind.COMPLAINT), ("bye@example.com", EventKind.UNSUBSCRIBE),
        ("gone@example.com", EventKind.HARD_BOUNCE), ("policy@example.com", EventKind.SOFT_BOUNCE),
    ]  # fmt: skip
    assert got[0].provider_id == batch[0]["data"]["env_id"] and got[0].event_id == batch[0]["id"]
    assert "SmtpNxBox" in got[0].reason and got[0].occurred.utcoffset() is not None and got[0].delivery_token == "t6"
    [one] = door.receive(aliyun_request(token, batch[0], in_query=True)).events
    assert one.email == "nx@example.com"


def test_aliyun_refuses_a_wrong_or_missing_token_and_a_stale_event() -> None:
    token = secrets.token_urlsafe(24)
    door = Aliyun(token, clock=lambda: NOW)
    event = aliyun_event("a@example.com", NOW)
    with pytest.raises(Refused, match="wrong token"):
        door.receive(aliyun_request(token + "x", event))
    with pytest.raises(Refused, match="no token"):
        door.receive(HookRequest(json.dumps(event).encode()))
    with pytest.raises(Refused, match="stale"):
        door.receive(aliyun_request(token, aliyun_event("a@example.com", NOW - 49 * 3600)))
    request = aliyun_request(token, event)
    assert door.receive(request).replay_key == door.receive(request).replay_key


def test_one_stale_event_in_an_aliyun_batch_is_skipped_and_the_others_kept(caplog: pytest.LogCaptureFixture) -> None:
    token = secrets.token_urlsafe(24)
    door = Aliyun(token, clock=lambda: NOW)
    batch = [
        aliyun_event("fresh@example.com", NOW - 60),
        aliyun_event("old@example.com", NOW - 49 * 3600),
        aliyun_event("later@example.com", NOW - 30),
    ]
    got = door.receive(aliyun_request(token, batch)).events
    assert [e.email for e in got] == ["fresh@example.com", "later@example.com"]
    assert f"skipped event {batch[1]['id']}" in caplog.text and "stale" in caplog.text


def test_a_verified_body_that_is_not_json_is_malformed() -> None:
    token = "t" * 20
    with pytest.raises(Malformed):
        Aliyun(token).receive(HookRequest(b"<xml/>", {"x-publisher-token": token}))
