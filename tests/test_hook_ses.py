"""Amazon SES through SNS: the signature (versions 1 and 2) with a real RSA key in a real X.509
certificate, fetched over verified TLS from a loopback server; the Amazon-host rule for the
certificate and the SubscribeURL, tested on its own against bad URLs; the confirmation GET."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from pytest_httpserver import HTTPServer

from hook_signing import (
    CERT_URL,
    TOPIC,
    SnsSigner,
    loopback_sns,
    ses_bounce,
    ses_complaint,
    sns_confirmation,
    sns_notification,
    sns_request,
)
from publisher.bounces.events import EventKind
from publisher.bounces.providers import Refused, Ses, Unavailable
from publisher.bounces.providers.sns import Certificates, check_sns_url, confirm_subscription, download

NOW = time.time()
SUBSCRIBE_URL = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "&Token=2336412f37fb687f"
)


@pytest.fixture(scope="module")
def signer() -> SnsSigner:
    return SnsSigner()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def amazon(ca: trustme.CA, signer: SnsSigner, tmp_path: Path) -> Iterator[tuple[HTTPServer, Callable[[str], bytes]]]:
    with loopback_sns(ca, signer, tmp_path) as served:
        yield served


def door(fetch: Callable[[str], bytes], confirm: Callable[[str], None] = lambda url: None) -> Ses:
    return Ses([TOPIC], Certificates(fetch, clock=lambda: NOW), confirm=lambda url: confirm(url), clock=lambda: NOW)


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_bounce_notification_gives_its_event(amazon: tuple[HTTPServer, Callable[[str], bytes]],
                                                      signer: SnsSigner, version: str) -> None:  # fmt: skip
    server, fetch = amazon
    message = sns_notification(signer, ses_bounce("a@example.com", NOW - 5, token="t5"), NOW - 4, version)
    verified = door(fetch).receive(sns_request(message))
    [event] = verified.events
    assert (event.kind, event.email, event.source, event.delivery_token) == (
        EventKind.HARD_BOUNCE, "a@example.com", "ses", "t5",
    )  # fmt: skip
    assert event.message_id == "<digest.1@example.org>" and event.provider_id and event.event_id
    assert "5.1.1" in event.reason and verified.replay_key == f"ses:{message['MessageId']}"
    assert len(server.log) == 1  # the certificate, fetched once


def test_transient_bounces_and_complaints(amazon: tuple[HTTPServer, Callable[[str], bytes]], signer: SnsSigner) -> None:
    server, fetch = amazon
    ses = door(fetch)
    soft = sns_notification(signer, ses_bounce("a@example.com", NOW, "Transient"), NOW)
    assert [e.kind for e in ses.receive(sns_request(soft)).events] == [EventKind.SOFT_BOUNCE]
    complaint = sns_notification(signer, ses_complaint("b@example.com", NOW), NOW)
    assert [(e.kind, e.email) for e in ses.receive(sns_request(complaint)).events] == [
        (EventKind.COMPLAINT, "b@example.com")
    ]
    published = ses_bounce("c@example.com", NOW)  # a configuration set's event publishing says eventType
    published["eventType"] = published.pop("notificationType")
    assert len(ses.receive(sns_request(sns_notification(signer, published, NOW))).events) == 1
    delivery = {"notificationType": "Delivery", "mail": {"messageId": "x"}, "delivery": {}}
    assert ses.receive(sns_request(sns_notification(signer, delivery, NOW))).events == []
    assert len(server.log) == 1  # one certificate fetch for all of them


def test_wrongly_signed_altered_stale_or_foreign_messages_are_refused(
    amazon: tuple[HTTPServer, Callable[[str], bytes]], signer: SnsSigner
) -> None:
    server, fetch = amazon
    ses = door(fetch)
    content = ses_bounce("a@example.com", NOW)
    with pytest.raises(Refused, match="does not match"):
        ses.receive(sns_request(SnsSigner().sign(sns_notification(signer, content, NOW))))  # another key
    altered = sns_notification(signer, content, NOW)
    altered["Message"] = altered["Message"].replace("a@example.com", "b@example.com")
    with pytest.raises(Refused, match="does not match"):
        ses.receive(sns_request(altered))
    with pytest.raises(Refused, match="stale"):
        ses.receive(sns_request(sns_notification(signer, content, NOW - 3601)))
    other_topic = "arn:aws:sns:us-east-1:123456789012:someone-elses"
    with pytest.raises(Refused, match="not in hooks.ses.topic_arns"):
        ses.receive(sns_request(sns_notification(signer, content, NOW, topic=other_topic)))
    with pytest.raises(Refused, match="SignatureVersion"):
        ses.receive(sns_request(sns_notification(signer, content, NOW) | {"SignatureVersion": "3"}))
    request = sns_request(sns_notification(signer, content, NOW))
    with pytest.raises(Refused, match="x-amz-sns-message-type"):
        ses.receive(type(request)(request.body, {"x-amz-sns-message-type": "SubscriptionConfirmation"}))
    assert ses.receive(request).replay_key == ses.receive(request).replay_key  # a replay: the guard's key


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",  # not https
        "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-abc.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com@evil.example/SimpleNotificationService-abc.pem",
        "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-abc.pem",
        "https://s3.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        # S3 buckets named `sns`, which anyone may create and fill: not SNS hosts.
        "https://sns.s3.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.s3-ap-southeast-2.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.s3-external-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.s3-website-us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.s3.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.s3.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
        "https://127.0.0.1/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com/other.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem/../../x",
        "https://sns.us-east-1.amazonaws.com\\@evil.example/SimpleNotificationService-abc.pem",
    ],
)
def test_a_certificate_off_amazons_sns_hosts_is_never_fetched(signer: SnsSigner, url: str) -> None:
    fetched: list[str] = []
    ses = door(lambda u: fetched.append(u) or signer.pem)
    with pytest.raises(Refused, match="not on an Amazon SNS host"):
        ses.receive(sns_request(sns_notification(signer, ses_bounce("a@example.com", NOW), NOW, SigningCertURL=url)))
    with pytest.raises(Refused, match="not on an Amazon SNS host"):
        Certificates().key(url)  # the default fetcher's keeper refuses it too, before any connection
    assert fetched == []


def test_the_host_rule_admits_amazons_regions_and_china() -> None:
    for url in (CERT_URL, "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
                "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
                "https://sns.us-iso-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
                "https://sns.ap-southeast-2.amazonaws.com/SimpleNotificationService-abc.pem",
                "https://sns.il-central-1.amazonaws.com/SimpleNotificationService-abc.pem"):  # fmt: skip
        assert check_sns_url(url, "SigningCertURL", certificate=True) == url
    with pytest.raises(Refused):
        confirm_subscription("https://evil.example/?Action=ConfirmSubscription")


def test_a_subscription_is_confirmed_by_a_get_of_its_subscribe_url(
    amazon: tuple[HTTPServer, Callable[[str], bytes]], signer: SnsSigner
) -> None:
    server, fetch = amazon
    query = {"Action": "ConfirmSubscription", "TopicArn": TOPIC, "Token": "2336412f37fb687f"}
    server.expect_request("/", query_string=query).respond_with_data("<ConfirmSubscriptionResponse/>")
    verified = door(fetch, confirm=fetch).receive(sns_request(sns_confirmation(signer, NOW, SUBSCRIBE_URL)))
    assert verified.events == []
    assert [request.path for request, _answer in server.log[1:]] == ["/"]  # after the certificate, the confirmation
    server.check_assertions()


def test_a_confirmation_elsewhere_or_for_another_topic_is_refused_and_nothing_is_fetched(signer: SnsSigner) -> None:
    confirmed: list[str] = []
    ses = Ses([TOPIC], Certificates(lambda url: signer.pem, clock=lambda: NOW), confirm=confirmed.append,
              clock=lambda: NOW)  # fmt: skip
    with pytest.raises(Refused, match="SubscribeURL"):
        ses.receive(sns_request(sns_confirmation(signer, NOW, "https://evil.example/?Action=ConfirmSubscription")))
    with pytest.raises(Refused, match="topic_arns"):
        ses.receive(sns_request(sns_confirmation(signer, NOW, SUBSCRIBE_URL, topic=TOPIC + "-other")))
    assert confirmed == []


def test_an_expired_certificate_is_refused(signer: SnsSigner) -> None:
    now = datetime.now(UTC)
    expired = (
        x509.CertificateBuilder().subject_name(signer.certificate.subject).issuer_name(signer.certificate.subject)
        .public_key(signer.key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=60)).not_valid_after(now - timedelta(days=1))
        .sign(signer.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    )  # fmt: skip
    ses = Ses([TOPIC], Certificates(lambda url: expired, clock=lambda: NOW), clock=lambda: NOW)
    with pytest.raises(Refused, match="not valid now"):
        ses.receive(sns_request(sns_notification(signer, ses_bounce("a@example.com", NOW), NOW)))


def test_download_verifies_tls_and_a_failed_fetch_is_unavailable(amazon: tuple[HTTPServer, Callable[[str], bytes]],
                                                                  signer: SnsSigner) -> None:  # fmt: skip
    server, fetch = amazon
    with pytest.raises(Unavailable, match="SSLError"):
        download(server.url_for(urlsplit(CERT_URL).path))  # the system's trust store does not know the test CA
    with pytest.raises(Unavailable, match="HTTP 500"):
        fetch("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-missing.pem")
    ses = door(lambda url: b"not a certificate")
    with pytest.raises(Unavailable, match="not a PEM certificate"):
        ses.receive(sns_request(sns_notification(signer, ses_bounce("a@example.com", NOW), NOW)))


def test_the_signed_text_is_snss(signer: SnsSigner) -> None:
    """The string to sign for a Notification without a Subject, field by field as AWS documents it."""
    from publisher.bounces.providers.sns import string_to_sign

    message = json.loads(sns_request(sns_notification(signer, {"x": 1}, NOW)).body)
    expected = "".join(f"{k}\n{message[k]}\n" for k in ("Message", "MessageId", "Timestamp", "TopicArn", "Type"))
    assert string_to_sign(message) == expected.encode()
