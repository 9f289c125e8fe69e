"""`/hooks/<provider>` through the real Flask app, store and rules: for each provider its
documented payload, correctly signed, wrongly signed, stale and replayed, after a real digest
was sent; only the good one changes the reader, and the next digest leaves them out."""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from conftest import Site
from hook_signing import (
    TOPIC,
    SnsSigner,
    aliyun_event,
    aliyun_request,
    loopback_sns,
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
    ses_bounce,
    sns_notification,
    sns_request,
)
from publisher.app import App
from publisher.bounces.events import DELIVERY_HEADER
from publisher.bounces.providers import HookRequest, Ses
from publisher.bounces.providers.sns import Certificates
from publisher.bounces.recorder import RecordReport
from publisher.errors import ConfigError
from publisher.model import Subscriber, SubscriberStatus
from publisher.newsletter import Newsletter
from publisher.transports.outbox import OutboxTransport
from publisher.web import create_app
from publisher.web.hooks import EXTENSION, HookState

MAILGUN_KEY = "key-" + secrets.token_hex(16)
POSTMARK_PASSWORD = secrets.token_urlsafe(18)
RESEND_SECRET = resend_secret()
ALIYUN_TOKEN = secrets.token_urlsafe(24)
SENDGRID_PRIVATE, SENDGRID_PUBLIC = sendgrid_keys()
SENDGRID_OTHER, _ = sendgrid_keys()
SIGNER, OTHER_SIGNER = SnsSigner(), SnsSigner()

HOOKS = f"""
[hooks]
body_limit = 65536
[hooks.mailgun]
signing_key_env = "TEST_HOOK_MAILGUN_KEY"
[hooks.sendgrid]
public_key = "{SENDGRID_PUBLIC}"
[hooks.postmark]
username = "postmark"
password_env = "TEST_HOOK_POSTMARK_PASSWORD"
[hooks.resend]
secret_env = "TEST_HOOK_RESEND_SECRET"
[hooks.ses]
topic_arns = ["{TOPIC}"]
[hooks.aliyun]
token_env = "TEST_HOOK_ALIYUN_TOKEN"
"""
SECRETS = {
    "TEST_HOOK_MAILGUN_KEY": MAILGUN_KEY,
    "TEST_HOOK_POSTMARK_PASSWORD": POSTMARK_PASSWORD,
    "TEST_HOOK_RESEND_SECRET": RESEND_SECRET,
    "TEST_HOOK_ALIYUN_TOKEN": ALIYUN_TOKEN,
}


@dataclass(frozen=True)
class Sent:
    """What a provider would echo of a message we sent: our token and Message-ID."""

    email: str
    token: str
    message_id: str


@dataclass(frozen=True)
class Provider:
    """How one provider posts a hard bounce for `sent` at `when` (echoing our token as it
    does), signed right or wrong, and how old its request must be to be stale."""

    name: str
    signed: Callable[[Sent, float], HookRequest]
    forged: Callable[[Sent, float], HookRequest]
    stale: float


def sendgrid_bounce(key: ec.EllipticCurvePrivateKey, s: Sent, t: float) -> HookRequest:
    return sendgrid_request(key, [sendgrid_event(s.email, when=t, publisher_delivery=s.token)], t)


def ses_bounce_from(signer: SnsSigner, s: Sent, t: float) -> HookRequest:
    return sns_request(sns_notification(signer, ses_bounce(s.email, t, token=s.token, message_id=s.message_id), t))


PROVIDERS = [
    Provider(
        "mailgun",
        lambda s, t: mailgun_request(MAILGUN_KEY, mailgun_event(s.email, when=t, token=s.token), t),
        lambda s, t: mailgun_request("key-not-the-one", mailgun_event(s.email, when=t, token=s.token), t),
        301,
    ),
    Provider(
        "sendgrid",
        lambda s, t: sendgrid_bounce(SENDGRID_PRIVATE, s, t),
        lambda s, t: sendgrid_bounce(SENDGRID_OTHER, s, t),
        400,
    ),
    Provider(
        "postmark",
        lambda s, t: postmark_request("postmark", POSTMARK_PASSWORD, postmark_bounce(s.email, t, token=s.token)),
        lambda s, t: postmark_request("postmark", "guessed", postmark_bounce(s.email, t, token=s.token)),
        49 * 3600,
    ),
    Provider(
        "resend",
        lambda s, t: resend_request(RESEND_SECRET, resend_event(s.email, when=t, token=s.token), t),
        lambda s, t: resend_request(resend_secret(), resend_event(s.email, when=t, token=s.token), t),
        301,
    ),
    Provider(
        "ses",
        lambda s, t: ses_bounce_from(SIGNER, s, t),
        lambda s, t: ses_bounce_from(OTHER_SIGNER, s, t),  # signed with a key that is not the certificate's
        3601,
    ),
    Provider(
        "aliyun",
        lambda s, t: aliyun_request(ALIYUN_TOKEN, aliyun_event(s.email, t, token=s.token)),
        lambda s, t: aliyun_request(ALIYUN_TOKEN[:-1], aliyun_event(s.email, t, token=s.token)),
        49 * 3600,
    ),
]  # fmt: skip


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def secrets_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def readers(app: App, *emails: str) -> None:
    now = app.clock()
    app.store.save_subscribers(Subscriber(e, "", (), SubscriberStatus.CONFIRMED, now, "import", now) for e in emails)


def send_digest(app: App, outbox: Path, since: date, until: date) -> dict[str, Sent]:
    """A real digest through the outbox transport; what each reader's message carries."""
    letters = Newsletter(app)
    plan = letters.plan(letters.window(since, until))
    letters.send(plan.digest, OutboxTransport(outbox))
    sent = {}
    for path in sorted(outbox.glob("*.eml")):
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        email = mail["To"].addresses[0].addr_spec
        sent[email] = Sent(email, str(mail[DELIVERY_HEADER]), str(mail["Message-ID"]))
    return sent


@pytest.fixture
def service(
    site: Site, secrets_set: None, ca: trustme.CA, tmp_path: Path
) -> Iterator[tuple[App, Flask, dict[str, Sent]]]:
    """The site with every provider's hook configured, a digest sent to two readers, and the
    service's Flask app; SES's certificate is fetched from a loopback stand-in for Amazon."""
    site.write_config(site.mail_to_outbox() + HOOKS)
    site.article("policy/a.md", "《人才十条》政策要点解读", date="2026-11-10 09:00")
    site.build()
    app = site.app()
    readers(app, "a@example.com", "b@example.com")
    sent = send_digest(app, tmp_path / "first", date(2026, 11, 1), date(2026, 11, 19))
    assert set(sent) == {"a@example.com", "b@example.com"} and all(s.token for s in sent.values())
    with loopback_sns(ca, SIGNER, tmp_path) as (_server, fetch):
        web = create_app(app)
        state: HookState = web.extensions[EXTENSION]
        ses = Ses([TOPIC], Certificates(fetch))  # the same door as configured, its certificate from loopback
        web.extensions[EXTENSION] = replace(state, doors={**state.doors, "ses": ses})
        try:
            yield app, web, sent
        finally:
            app.close()


def post(web: Flask, provider: str, request: HookRequest) -> int:
    answer = web.test_client().post(
        f"/hooks/{provider}", data=request.body, headers=dict(request.headers), query_string=dict(request.query)
    )
    return answer.status_code


@pytest.mark.parametrize("provider", PROVIDERS, ids=[p.name for p in PROVIDERS])
def test_only_the_good_request_changes_the_reader_and_the_next_digest_skips_them(
    service: tuple[App, Flask, dict[str, Sent]], provider: Provider, caplog: pytest.LogCaptureFixture,
    tmp_path: Path, site: Site,
) -> None:  # fmt: skip
    app, web, sent = service
    a = sent["a@example.com"]
    now = time.time()
    with caplog.at_level(logging.WARNING, logger="publisher.web.hooks"):
        assert post(web, provider.name, provider.forged(a, now)) == 401
        assert post(web, provider.name, provider.signed(a, now - provider.stale)) == 401
    refusals = [r.getMessage() for r in caplog.records if r.name == "publisher.web.hooks"]
    assert len(refusals) == 2 and all(f"hooks/{provider.name}: refused" in line for line in refusals)
    assert "stale" in refusals[1]
    assert app.store.mail_events() == [] and not app.store.suppressed_keys()
    assert app.store.subscriber("a@example.com").status is SubscriberStatus.CONFIRMED  # type: ignore[union-attr]

    good = provider.signed(a, now)
    assert post(web, provider.name, good) == 200
    [kept] = app.store.mail_events()
    assert (kept.source, kept.email_key, kept.linked_by) == (provider.name, "a@example.com", "token")
    assert kept.delivery_id is not None
    assert app.store.suppressed_keys() == {"a@example.com"}
    assert app.store.subscriber("a@example.com").status is SubscriberStatus.BOUNCED  # type: ignore[union-attr]

    # The same request again: its events carry the provider's ids, which the store keeps once,
    # so it is answered 200 and changes nothing, in this process and another on the store.
    assert post(web, provider.name, good) == 200
    elsewhere = site.app()
    try:
        twin = create_app(elsewhere)
        twin.extensions[EXTENSION] = replace(twin.extensions[EXTENSION], doors=web.extensions[EXTENSION].doors)
        assert post(twin, provider.name, good) == 200
    finally:
        elsewhere.close()
    assert len(app.store.mail_events()) == 1

    app.store.save_subscribers(  # even confirmed again by hand, a suppressed address gets no digest
        [Subscriber("a@example.com", "", (), SubscriberStatus.CONFIRMED, app.clock(), "import", app.clock())]
    )
    later = send_digest(app, tmp_path / "second", date(2026, 11, 2), date(2026, 11, 19))
    assert set(later) == {"b@example.com"}


def test_an_unconfigured_provider_answers_404(site: Site, secrets_set: None) -> None:
    site.write_config('\n[hooks.mailgun]\nsigning_key_env = "TEST_HOOK_MAILGUN_KEY"\n')
    app = site.app()
    try:
        client = create_app(app).test_client()
        for name in ("sendgrid", "postmark", "resend", "ses", "aliyun", "nonesuch"):
            assert client.post(f"/hooks/{name}", data=b"{}").status_code == 404
        assert client.post("/hooks/mailgun", data=b"{}").status_code == 401
    finally:
        app.close()


def test_check_names_a_missing_hook_secret(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    site.write_config('\n[hooks.aliyun]\ntoken_env = "TEST_HOOK_ALIYUN_TOKEN"\n')
    monkeypatch.delenv("TEST_HOOK_ALIYUN_TOKEN", raising=False)
    result = site.cli("check")
    assert result.exit_code == 2 and "hooks.aliyun.token_env" in result.output
    assert "TEST_HOOK_ALIYUN_TOKEN is not set" in result.output


def test_a_bad_sendgrid_key_or_topic_arn_is_a_config_error(site: Site) -> None:
    site.write_config('\n[hooks.sendgrid]\npublic_key = "bm90IGEga2V5"\n')
    result = site.cli("check")
    assert result.exit_code == 2
    assert "hooks.sendgrid.public_key: not a base64 DER public key" in result.output
    site.write_config('\n[hooks.ses]\ntopic_arns = ["ses-bounces"]\n')
    result = site.cli("check")
    assert result.exit_code == 2 and "hooks.ses.topic_arns[0]: 'ses-bounces' is not an SNS topic ARN" in result.output


def test_a_missing_secret_stops_the_start_naming_its_key(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    site.write_config('\n[hooks.resend]\nsecret_env = "TEST_HOOK_RESEND_SECRET"\n')
    monkeypatch.delenv("TEST_HOOK_RESEND_SECRET", raising=False)
    app = site.app()
    try:
        with pytest.raises(ConfigError, match="hooks.resend.secret_env"):
            create_app(app)
        monkeypatch.setenv("TEST_HOOK_RESEND_SECRET", "not-a-whsec-secret!")
        with pytest.raises(ConfigError, match="whsec_"):
            create_app(app)
    finally:
        app.close()


def test_a_body_over_the_limit_is_413_and_changes_nothing(service: tuple[App, Flask, dict[str, Sent]]) -> None:
    app, web, sent = service
    event = aliyun_event(sent["a@example.com"].email, time.time())
    event["data"]["padding"] = "x" * 70_000  # hooks.body_limit is 65536 here
    assert post(web, "aliyun", aliyun_request(ALIYUN_TOKEN, event)) == 413
    assert app.store.mail_events() == []
    state: HookState = web.extensions[EXTENSION]  # the limit is the hooks' own, not the pages' 64 KiB
    web.extensions[EXTENSION] = replace(state, body_limit=1_048_576)
    assert post(web, "aliyun", aliyun_request(ALIYUN_TOKEN, event)) == 200


def test_events_that_cannot_be_recorded_answer_503_and_the_providers_retry_passes(
    service: tuple[App, Flask, dict[str, Sent]],
) -> None:
    app, web, sent = service
    state: HookState = web.extensions[EXTENSION]
    failures = [RuntimeError("database is locked")]

    def record_after_a_failure(events: list[object]) -> RecordReport:
        if failures:
            raise failures.pop()
        return app.record_mail_events(events)  # type: ignore[arg-type]

    web.extensions[EXTENSION] = replace(state, record=record_after_a_failure)
    request = aliyun_request(ALIYUN_TOKEN, aliyun_event("a@example.com", time.time()))
    assert post(web, "aliyun", request) == 503
    assert post(web, "aliyun", request) == 200  # the same request again, as the provider retries it
    assert app.store.suppressed_keys() == {"a@example.com"}


def test_a_crash_between_the_replay_key_and_the_events_loses_nothing(
    service: tuple[App, Flask, dict[str, Sent]],
) -> None:
    """A process that spent the request's replay key and died before recording its events: the
    provider's retry is answered 200 and its events recorded."""
    app, web, sent = service
    state: HookState = web.extensions[EXTENSION]
    request = aliyun_request(ALIYUN_TOKEN, aliyun_event(sent["a@example.com"].email, time.time()))
    verified = state.doors["aliyun"].receive(request)
    assert state.guard.claim(verified.replay_key, verified.seen_until)  # what the dead process left
    assert post(web, "aliyun", request) == 200
    assert len(app.store.mail_events()) == 1 and app.store.suppressed_keys() == {"a@example.com"}


def test_a_replay_with_an_event_the_store_cannot_tell_apart_is_refused(
    service: tuple[App, Flask, dict[str, Sent]], caplog: pytest.LogCaptureFixture
) -> None:
    app, web, sent = service
    event = mailgun_event(sent["a@example.com"].email, when=time.time())
    del event["id"]  # no event id: recorded again, it would count twice
    request = mailgun_request(MAILGUN_KEY, event, time.time())
    assert post(web, "mailgun", request) == 200
    with caplog.at_level(logging.WARNING, logger="publisher.web.hooks"):
        assert post(web, "mailgun", request) == 401
    assert "replayed" in caplog.records[-1].getMessage() and len(app.store.mail_events()) == 1


def test_a_complaint_unsubscribes_and_suppresses(service: tuple[App, Flask, dict[str, Sent]]) -> None:
    app, web, sent = service
    b = sent["b@example.com"]
    request = resend_request(RESEND_SECRET, resend_event(b.email, "email.complained", time.time(), token=b.token),
                             time.time())  # fmt: skip
    assert post(web, "resend", request) == 200
    assert app.store.subscriber("b@example.com").status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
    assert app.store.suppressed_keys() == {"b@example.com"}


def test_the_token_in_the_query_works_for_aliyun(service: tuple[App, Flask, dict[str, Sent]]) -> None:
    app, web, _sent = service
    unsubscribe = aliyun_event("b@example.com", time.time(), kind="dm:Feedback:UnSubscribe")
    assert post(web, "aliyun", aliyun_request(ALIYUN_TOKEN, unsubscribe, in_query=True)) == 200
    assert app.store.subscriber("b@example.com").status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]


def test_basic_credentials_in_the_url_as_postmark_sends_them(service: tuple[App, Flask, dict[str, Sent]]) -> None:
    """Postmark turns https://user:password@host/hooks/postmark into an Authorization header."""
    _app, web, sent = service
    record = postmark_bounce(sent["a@example.com"].email, time.time())
    credentials = base64.b64encode(f"postmark:{POSTMARK_PASSWORD}".encode()).decode()
    request = HookRequest(postmark_request("x", "y", record).body, {"authorization": f"Basic {credentials}"})
    assert post(web, "postmark", request) == 200
