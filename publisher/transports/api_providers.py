"""The HTTP mail APIs' requests and answers, as each provider documents them: what a message
becomes (`Request`: one mapper per provider, Mailgun, SendGrid, Postmark, Resend), what an
error answer means (`Refusal`), and how a message id is read from the answer. Amazon SES and
Alibaba Cloud DirectMail map, sign and read theirs in ses.py and aliyun.py; http_api.py sends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.headerregistry import Address
from typing import Any

import requests

from ..bounces.events import DELIVERY_HEADER
from ..bounces.providers.base import DELIVERY_VARIABLE
from ..mail import Message, addr_spec


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    json: dict[str, Any] | list[dict[str, Any]] | None = None
    data: dict[str, Any] | list[tuple[str, str]] | None = None  # a list: a form field given more than once
    files: dict[str, Any] | None = None
    auth: tuple[str, str] | None = None
    body: bytes | None = None  # sent as these exact bytes (a signed request's payload)


# 5xx statuses that say the request was not taken: 503 Service Unavailable (RFC 9110: "currently
# unable to handle the request"; Postmark documents it as maintenance, SES and DirectMail as
# ServiceUnavailable). Any other 5xx can come after the message was queued.
NOT_TAKEN = frozenset({503})


@dataclass(frozen=True)
class Refusal:
    """What an error answer means: wait and try again (`throttled`: as after a 429), stop every
    message (`broken`: credentials, account, sender), the address is known to be dead, or the
    provider may have taken the message although it answered an error (`uncertain`)."""

    code: str  # the provider's error code, "" when it gives none
    retryable: bool
    throttled: bool = False
    broken: bool = False
    bounced: bool = False
    hint: str = ""
    uncertain: bool = False

    @classmethod
    def from_status(cls, status: int, code: str = "", *, idempotent: bool = False) -> Refusal:
        """An HTTP status's meaning, for every provider (their readers ask it for the codes they
        do not know): 429 and NOT_TAKEN wait and try again; another 5xx may have been taken, so
        it is uncertain, unless the request carries an idempotency key the provider honours;
        401 and 403 stop every message (the key or the domain); another 4xx refuses this one."""
        if status == 429 or status in NOT_TAKEN:
            return cls(code, retryable=True, throttled=status == 429)
        if status >= 500:
            return cls(code, retryable=idempotent, uncertain=not idempotent)
        return cls(code, retryable=False, broken=status in (401, 403))


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str  # the documented default; EU regions and tests pass another
    build: Callable[[Message, str, dict[str, str]], Request]  # (message, api key, options)
    message_id: Callable[[requests.Response], str | None]
    idempotent: bool = False  # a retried request cannot send twice
    # (request, url, secret, options) -> the request with its signature, for every attempt
    sign: Callable[[Request, str, str, dict[str, str]], Request] | None = None
    # the provider's reading of an error answer; None: judged by its HTTP status alone
    refusal: Callable[[requests.Response], Refusal | None] | None = None


# --- what every mapper needs from a message ----------------------------------------------------


def _pair(address: Address) -> dict[str, str]:
    """{"email", "name"} as SendGrid takes it; no empty name."""
    out = {"email": addr_spec(address)}
    if address.display_name:
        out["name"] = address.display_name
    return out


def _formatted(address: Address) -> str:
    """`"Name" <addr>` as Postmark and Resend take it (they encode the name themselves)."""
    name = address.display_name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{name}" <{addr_spec(address)}>' if name else addr_spec(address)


def _delivery_token(message: Message) -> str | None:
    """The message's delivery token (X-Publisher-Delivery), which each provider is asked to echo
    in its webhooks as a custom variable: they pass custom headers on, but echo only those."""
    return dict(message.envelope.extra_headers).get(DELIVERY_HEADER)


# --- the providers -----------------------------------------------------------------------------


def _mailgun(message: Message, key: str, options: dict[str, str]) -> Request:
    """POST /v3/{domain}/messages.mime, HTTP Basic api:KEY, form field `to` and the MIME file;
    the delivery token as `v:` variable (echoed in webhooks' user-variables); no open or click
    tracking, whatever the domain's setting (docs/signup.md, the privacy line)."""
    token = _delivery_token(message)
    fields = {"to": message.recipient, "o:tracking": "no"}
    return Request(
        path=f"/v3/{options['domain']}/messages.mime",
        auth=("api", key),
        data=fields | ({f"v:{DELIVERY_VARIABLE}": token} if token else {}),
        files={"message": ("message.mime", message.as_bytes(), "message/rfc822")},
    )


def _sendgrid(message: Message, key: str, options: dict[str, str]) -> Request:
    """POST /v3/mail/send with a Bearer key; JSON personalizations, content, headers; no open
    or click tracking, whatever the account's setting."""
    e = message.envelope
    body: dict[str, Any] = {
        "personalizations": [{"to": [_pair(e.to)]}],
        "from": _pair(e.sender),
        "subject": e.subject,
        "content": [{"type": "text/plain", "value": message.text}, {"type": "text/html", "value": message.html}],
        "headers": message.list_headers,
        "tracking_settings": {
            "click_tracking": {"enable": False, "enable_text": False},
            "open_tracking": {"enable": False},
        },
    }
    if e.reply_to is not None:
        body["reply_to"] = _pair(e.reply_to)
    if token := _delivery_token(message):
        body["custom_args"] = {DELIVERY_VARIABLE: token}  # echoed as a field of each event
    return Request(path="/v3/mail/send", headers={"Authorization": f"Bearer {key}"}, json=body)


def _postmark(message: Message, key: str, options: dict[str, str]) -> Request:
    """POST /email with X-Postmark-Server-Token; broadcast stream unless configured otherwise;
    no open or link tracking asked (a server whose own tracking is on overrides that)."""
    headers = {"X-Postmark-Server-Token": key, "Accept": "application/json"}
    return Request(path="/email", headers=headers, json=postmark_body(message, options))


def postmark_body(message: Message, options: dict[str, str]) -> dict[str, Any]:
    """One message as Postmark's /email takes it (and /email/batch, an array of them)."""
    e = message.envelope
    body: dict[str, Any] = {
        "From": _formatted(e.sender),
        "To": _formatted(e.to),
        "Subject": e.subject,
        "TextBody": message.text,
        "HtmlBody": message.html,
        "Headers": [{"Name": k, "Value": v} for k, v in message.list_headers.items()],
        "MessageStream": options.get("message_stream", "broadcast"),
        "TrackOpens": False,
        "TrackLinks": "None",
    }
    if e.reply_to is not None:
        body["ReplyTo"] = _formatted(e.reply_to)
    if token := _delivery_token(message):
        body["Metadata"] = {DELIVERY_VARIABLE: token}  # echoed in bounce and complaint webhooks
    return body


def _resend(message: Message, key: str, options: dict[str, str]) -> Request:
    """POST /emails with a Bearer key and an Idempotency-Key (the Message-ID)."""
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": message.message_id[:256]}
    return Request(path="/emails", headers=headers, json=resend_body(message))


def resend_body(message: Message) -> dict[str, Any]:
    """One message as Resend's /emails takes it (and /emails/batch, an array of them)."""
    e = message.envelope
    body: dict[str, Any] = {
        "from": _formatted(e.sender),
        "to": [message.recipient],
        "subject": e.subject,
        "text": message.text,
        "html": message.html,
        "headers": message.list_headers,
    }
    if e.reply_to is not None:
        body["reply_to"] = _formatted(e.reply_to)
    if token := _delivery_token(message):
        body["tags"] = [{"name": DELIVERY_VARIABLE, "value": token}]  # echoed in webhooks' data.tags
    return body


def _resend_refusal(response: requests.Response) -> Refusal | None:
    """Resend's idempotency answers (409): `concurrent_idempotent_requests`, the first request
    with this key is still running (safe to try again); `invalid_idempotent_request`, the key
    was used by an earlier request whose payload differs (the message rebuilt for a later try
    after an article changed), so that earlier one reached Resend and may have been sent."""
    if response.status_code != 409:
        return None
    name = str(json_object(response).get("name") or "")
    if name == "concurrent_idempotent_requests":
        return Refusal(name, retryable=True, hint="Resend is still sending the first request with this key")
    if name == "invalid_idempotent_request":
        hint = "an earlier try with this delivery's key reached Resend within 24 hours: it may have been sent"
        return Refusal(name, retryable=False, uncertain=True, hint=hint)
    return None


def json_object(response: requests.Response) -> dict[str, Any]:
    """The answer's JSON object; {} when it is not JSON or not an object (a list, a string)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def json_field(*names: str) -> Callable[[requests.Response], str | None]:
    """A provider's message id: the first of `names` the answer's JSON object has."""

    def read(response: requests.Response) -> str | None:
        body = json_object(response)
        return next((str(body[name]) for name in names if body.get(name)), None)

    return read


PROVIDERS = {
    "mailgun": Provider("mailgun", "https://api.mailgun.net", _mailgun, json_field("id")),
    "sendgrid": Provider("sendgrid", "https://api.sendgrid.com", _sendgrid, lambda r: r.headers.get("X-Message-Id")),
    "postmark": Provider("postmark", "https://api.postmarkapp.com", _postmark, json_field("MessageID")),
    "resend": Provider(
        "resend", "https://api.resend.com", _resend, json_field("id"), idempotent=True, refusal=_resend_refusal
    ),
}
