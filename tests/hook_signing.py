"""Requests as each provider sends them: its documented payloads, signed the way it signs them,
with real keys (HMAC secrets, an ECDSA P-256 pair, an RSA key in an X.509 certificate)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from pytest_httpserver import HTTPServer

from publisher.bounces.providers import HookRequest
from publisher.bounces.providers.sns import download, string_to_sign

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-bounces"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem"


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- Mailgun -----------------------------------------------------------------------------------


def mailgun_event(email: str, event: str = "failed", severity: str = "permanent", when: float = 0.0,
                  token: str | None = None) -> dict[str, Any]:  # fmt: skip
    """event-data as documentation.mailgun.com shows a failed (or complained) event."""
    data: dict[str, Any] = {
        "id": secrets.token_hex(8),
        "timestamp": when,
        "log-level": "error",
        "event": event,
        "recipient": email,
        "recipient-domain": email.rpartition("@")[2],
        "message": {"headers": {"to": email, "message-id": "20240101.abc@mg.example.org", "subject": "Weekly"}},
        "user-variables": {"publisher_delivery": token} if token else {},
    }
    if event == "failed":
        data |= {
            "severity": severity,
            "reason": "bounce" if severity == "permanent" else "generic",
            "delivery-status": {"code": 550 if severity == "permanent" else 452, "message": "5.1.1 No such user",
                                "description": "", "attempt-no": 1},
        }  # fmt: skip
    return data


def mailgun_request(key: str, event_data: dict[str, Any], timestamp: float, token: str | None = None) -> HookRequest:
    token = token or secrets.token_hex(25)
    stamp = str(int(timestamp))
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    body = {"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": event_data}
    return HookRequest(json.dumps(body).encode(), {"content-type": "application/json"})


# --- SendGrid ----------------------------------------------------------------------------------


def sendgrid_keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 pair; the public half as SendGrid shows its verification key (base64 DER)."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(der).decode()


def sendgrid_event(email: str, event: str = "bounce", when: float = 0.0, **extra: Any) -> dict[str, Any]:
    """One event of the array, as twilio.com/docs/sendgrid's Event Webhook reference shows it."""
    data: dict[str, Any] = {
        "email": email,
        "timestamp": int(when),
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": event,
        "category": ["digest"],
        "sg_event_id": secrets.token_urlsafe(16),
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    }
    if event == "bounce":
        data |= {"reason": "500 unknown recipient", "status": "5.0.0", "type": "bounce",
                 "bounce_classification": "Invalid Address"}  # fmt: skip
    return data | extra


def sendgrid_request(private: ec.EllipticCurvePrivateKey, events: list[dict[str, Any]], when: float) -> HookRequest:
    body = json.dumps(events).encode()
    stamp = str(int(when))
    signature = private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
        "x-twilio-email-event-webhook-timestamp": stamp,
        "content-type": "application/json",
    }
    return HookRequest(body, headers)


# --- Postmark ----------------------------------------------------------------------------------


def postmark_bounce(email: str, when: float, kind: str = "HardBounce", ident: int = 4323372036854775807,
                    token: str | None = None) -> dict[str, Any]:  # fmt: skip
    """A bounce webhook as postmarkapp.com/developer/webhooks/bounce-webhook shows it."""
    return {
        "RecordType": "Bounce", "MessageStream": "broadcast", "ID": ident, "Type": kind, "TypeCode": 1,
        "Name": "Hard bounce", "Tag": "", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"publisher_delivery": token} if token else {}, "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.", "Email": email,
        "From": "newsletter@example.org", "BouncedAt": iso(when), "DumpAvailable": True, "Inactive": True,
        "CanActivate": True, "Subject": "Weekly", "Content": "Return-Path: <>\n...",
    }  # fmt: skip


def postmark_request(user: str, password: str, record: dict[str, Any]) -> HookRequest:
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    return HookRequest(json.dumps(record).encode(), {"authorization": f"Basic {credentials}"})


# --- Resend (Svix) -----------------------------------------------------------------------------


def resend_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def resend_event(email: str, kind: str = "email.bounced", when: float = 0.0, token: str | None = None,
                 bounce_type: str = "Permanent") -> dict[str, Any]:  # fmt: skip
    """As resend.com/docs/webhooks/emails/bounced shows it."""
    data: dict[str, Any] = {
        "broadcast_id": "8b146471-e88e-4322-86af-016cd36fd216",
        "created_at": iso(when - 5),
        "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
        "from": "Example <newsletter@example.org>",
        "to": [email],
        "subject": "Weekly",
        "tags": {"publisher_delivery": token} if token else {},
    }
    if kind == "email.bounced":
        data["bounce"] = {"message": "The recipient's email address does not exist.", "subType": "General",
                          "type": bounce_type}  # fmt: skip
    return {"type": kind, "created_at": iso(when), "data": data}


def resend_request(secret: str, event: dict[str, Any], timestamp: float, ident: str | None = None) -> HookRequest:
    body = json.dumps(event).encode()
    ident = ident or "msg_" + secrets.token_hex(12)
    stamp = str(int(timestamp))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{ident}.{stamp}.".encode() + body, hashlib.sha256).digest()
    signature = f"v1,{base64.b64encode(secrets.token_bytes(32)).decode()} v1,{base64.b64encode(digest).decode()}"
    return HookRequest(body, {"svix-id": ident, "svix-timestamp": stamp, "svix-signature": signature})


# --- Amazon SNS / SES --------------------------------------------------------------------------


class SnsSigner:
    """An RSA key and its self-signed X.509 certificate, standing in for SNS's signing pair."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, message: dict[str, Any], version: str = "2") -> dict[str, Any]:
        message = message | {"SignatureVersion": version, "SigningCertURL": message.get("SigningCertURL", CERT_URL)}
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        return message | {"Signature": base64.b64encode(signature).decode()}


@contextmanager
def loopback_sns(ca: Any, signer: SnsSigner, folder: Path) -> Iterator[tuple[HTTPServer, Callable[[str], bytes]]]:
    """A loopback HTTPS server standing in for sns.us-east-1.amazonaws.com, serving the signer's
    certificate at CERT_URL's path, and a fetcher that sends an (already checked) Amazon URL's
    path and query there over TLS verified against the test CA (`ca`, a trustme.CA): the only
    thing the tests replace is which address the name reaches."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = HTTPServer(host="127.0.0.1", ssl_context=context)
    server.start()
    ca_file = folder / "sns-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server.expect_request(urlsplit(CERT_URL).path).respond_with_data(signer.pem, content_type="application/x-pem-file")

    def fetch(url: str) -> bytes:
        parts = urlsplit(url)
        return download(server.url_for(parts.path) + (f"?{parts.query}" if parts.query else ""), verify=str(ca_file))

    try:
        yield server, fetch
    finally:
        server.clear()
        if server.is_running():
            server.stop()


def ses_bounce(email: str, when: float, bounce_type: str = "Permanent", token: str | None = None,
               message_id: str = "<digest.1@example.org>") -> dict[str, Any]:  # fmt: skip
    """SES's bounce notification content (docs.aws.amazon.com/ses, notification contents), with
    the original headers SES includes when "Include original headers" is on."""
    headers = [{"name": "Message-ID", "value": message_id}, {"name": "To", "value": email}]
    if token:
        headers.append({"name": "X-Publisher-Delivery", "value": token})
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type, "bounceSubType": "General" if bounce_type == "Permanent" else "MailboxFull",
            "bouncedRecipients": [{"emailAddress": email, "action": "failed", "status": "5.1.1",
                                   "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
            "timestamp": iso(when), "feedbackId": "0100018c-" + secrets.token_hex(8),
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        "mail": {
            "timestamp": iso(when - 2), "source": "newsletter@example.org",
            "messageId": "0100018c-" + secrets.token_hex(8), "destination": [email], "headersTruncated": False,
            "headers": headers, "commonHeaders": {"messageId": message_id, "to": [email]},
        },
    }  # fmt: skip


def ses_complaint(email: str, when: float) -> dict[str, Any]:
    return {
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": email}], "timestamp": iso(when),
                      "feedbackId": "0100018c-" + secrets.token_hex(8), "complaintFeedbackType": "abuse",
                      "userAgent": "Yahoo!-Mail-Feedback/2.0"},
        "mail": {"timestamp": iso(when - 60), "messageId": "0100018c-" + secrets.token_hex(8),
                 "destination": [email], "source": "newsletter@example.org"},
    }  # fmt: skip


def sns_notification(signer: SnsSigner, content: dict[str, Any], when: float, version: str = "2",
                     topic: str = TOPIC, **fields: Any) -> dict[str, Any]:  # fmt: skip
    message = {
        "Type": "Notification", "MessageId": secrets.token_hex(16), "TopicArn": topic,
        "Message": json.dumps(content), "Timestamp": iso(when),
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    } | fields  # fmt: skip
    return signer.sign(message, version)


def sns_confirmation(signer: SnsSigner, when: float, subscribe_url: str, topic: str = TOPIC) -> dict[str, Any]:
    message = {
        "Type": "SubscriptionConfirmation", "MessageId": secrets.token_hex(16), "Token": "2336412f37fb687f5d51e6e2",
        "TopicArn": topic, "Message": f"You have chosen to subscribe to the topic {topic}.",
        "SubscribeURL": subscribe_url, "Timestamp": iso(when),
    }  # fmt: skip
    return signer.sign(message)


def sns_request(message: dict[str, Any]) -> HookRequest:
    headers = {"x-amz-sns-message-type": str(message["Type"]), "content-type": "text/plain; charset=UTF-8"}
    return HookRequest(json.dumps(message).encode(), headers)


# --- Alibaba Cloud DirectMail through EventBridge -----------------------------------------------


def aliyun_event(email: str, when: float, kind: str = "dm:Deliver:Fail", failed_type: str = "SmtpNxBox",
                 err_code: str = "554", token: str | None = None) -> dict[str, Any]:  # fmt: skip
    """A CloudEvent as alibabacloud.com/help/en/eventbridge/user-guide/events-of-the-direct-mail-type shows it."""
    moment = datetime.fromtimestamp(when, UTC).astimezone().isoformat(timespec="seconds")
    data: dict[str, Any] = {
        "header": {"X-Notify-Message-ID": "test@example.org"}
        | ({"X-User-Notify-Publisher-Delivery": token} if token else {}),
        "env_id": "600000" + secrets.token_hex(4),
        "account": "newsletter@example.org", "from": "newsletter@example.org", "rcpt": email,
        "msg_id": secrets.token_hex(6) + "@example.org", "status": "2", "event": kind, "region": "cn-hangzhou",
        "tag": "digest",
    }  # fmt: skip
    if kind == "dm:Deliver:Fail":
        data |= {"err_code": err_code, "err_msg": f"{err_code}  RCPT {email} dosn't exist", "failed_type": failed_type}
    return {
        "data": data, "id": secrets.token_hex(8), "source": "acs:dm", "specversion": "1.0",
        "subject": "acs:dm:cn-hangzhou:123456789098:*", "time": moment, "type": kind,
        "aliyunaccountid": "1234567890981234", "aliyunpublishtime": moment, "aliyuneventbusname": "default",
        "aliyunregionid": "cn-hangzhou",
    }  # fmt: skip


def aliyun_request(token: str, events: dict[str, Any] | list[dict[str, Any]], in_query: bool = False) -> HookRequest:
    body = json.dumps(events).encode()
    if in_query:
        return HookRequest(body, {"content-type": "application/json"}, {"token": token})
    return HookRequest(body, {"content-type": "application/json", "x-publisher-token": token})
