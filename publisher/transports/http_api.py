"""HTTP mail APIs (Mailgun, SendGrid, Postmark, Resend): one mapper per provider, one sender.

A mapper turns a built EmailMessage into the provider's documented request and reads its
message id from the answer. The sender posts it with a timeout, waits out 429 (Retry-After,
capped), retries 5xx and timeouts with backoff, and sends an idempotency key where the provider
has one (Resend), so a retried request cannot send twice there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from . import Sent, TransportError


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    json: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    auth: tuple[str, str] | None = None


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str  # the documented default; EU regions and tests pass another
    build: Callable[[EmailMessage, str, dict[str, str]], Request]  # (message, api key, options)
    message_id: Callable[[requests.Response], str | None]
    idempotent: bool = False  # a retried request cannot send twice


# --- what every mapper needs from a message ----------------------------------------------------

_LIST_HEADERS = ("List-Id", "List-Unsubscribe", "List-Unsubscribe-Post")


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    return (text.get_content() if text else ""), (html.get_content() if html else "")


def _mailbox(message: EmailMessage, header: str) -> tuple[str, str] | None:
    value = message[header]
    if value is None:
        return None
    address = value.addresses[0]
    return address.display_name, address.addr_spec


def _formatted(message: EmailMessage, header: str) -> str | None:
    box = _mailbox(message, header)
    if box is None:
        return None
    name, addr = box
    return f'"{name}" <{addr}>' if name else addr


def _list_headers(message: EmailMessage) -> dict[str, str]:
    return {name: str(message[name]) for name in _LIST_HEADERS if message[name] is not None}


# --- the providers -----------------------------------------------------------------------------


def _mailgun(message: EmailMessage, key: str, options: dict[str, str]) -> Request:
    """POST /v3/{domain}/messages.mime, HTTP Basic api:KEY, form field `to` and the MIME file."""
    to = _mailbox(message, "To")
    assert to is not None
    from ..mail import POLICY

    return Request(
        path=f"/v3/{options['domain']}/messages.mime",
        auth=("api", key),
        data={"to": to[1]},
        files={"message": ("message.mime", message.as_bytes(policy=POLICY), "message/rfc822")},
    )


def _sendgrid(message: EmailMessage, key: str, options: dict[str, str]) -> Request:
    """POST /v3/mail/send with a Bearer key; JSON personalizations, content, headers."""
    text, html = _parts(message)
    sender, to, reply = _mailbox(message, "From"), _mailbox(message, "To"), _mailbox(message, "Reply-To")
    assert sender is not None and to is not None
    body: dict[str, Any] = {
        "personalizations": [{"to": [{"email": to[1], "name": to[0]} if to[0] else {"email": to[1]}]}],
        "from": {"email": sender[1], "name": sender[0]},
        "subject": str(message["Subject"]),
        "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
        "headers": _list_headers(message),
    }
    if reply:
        body["reply_to"] = {"email": reply[1], "name": reply[0]}
    return Request(path="/v3/mail/send", headers={"Authorization": f"Bearer {key}"}, json=body)


def _postmark(message: EmailMessage, key: str, options: dict[str, str]) -> Request:
    """POST /email with X-Postmark-Server-Token; broadcast stream unless configured otherwise."""
    text, html = _parts(message)
    body: dict[str, Any] = {
        "From": _formatted(message, "From"),
        "To": _formatted(message, "To"),
        "Subject": str(message["Subject"]),
        "TextBody": text,
        "HtmlBody": html,
        "Headers": [{"Name": k, "Value": v} for k, v in _list_headers(message).items()],
        "MessageStream": options.get("message_stream", "broadcast"),
    }
    if message["Reply-To"] is not None:
        body["ReplyTo"] = _formatted(message, "Reply-To")
    headers = {"X-Postmark-Server-Token": key, "Accept": "application/json"}
    return Request(path="/email", headers=headers, json=body)


def _resend(message: EmailMessage, key: str, options: dict[str, str]) -> Request:
    """POST /emails with a Bearer key and an Idempotency-Key (the Message-ID)."""
    text, html = _parts(message)
    to = _mailbox(message, "To")
    assert to is not None
    body: dict[str, Any] = {
        "from": _formatted(message, "From"),
        "to": [to[1]],
        "subject": str(message["Subject"]),
        "text": text,
        "html": html,
        "headers": _list_headers(message),
    }
    if message["Reply-To"] is not None:
        body["reply_to"] = _formatted(message, "Reply-To")
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": str(message["Message-ID"])[:256]}
    return Request(path="/emails", headers=headers, json=body)


def _json_field(name: str) -> Callable[[requests.Response], str | None]:
    def read(response: requests.Response) -> str | None:
        try:
            value = response.json().get(name)
        except ValueError:
            return None
        return str(value) if value is not None else None

    return read


PROVIDERS = {
    "mailgun": Provider("mailgun", "https://api.mailgun.net", _mailgun, _json_field("id")),
    "sendgrid": Provider("sendgrid", "https://api.sendgrid.com", _sendgrid, lambda r: r.headers.get("X-Message-Id")),
    "postmark": Provider("postmark", "https://api.postmarkapp.com", _postmark, _json_field("MessageID")),
    "resend": Provider("resend", "https://api.resend.com", _resend, _json_field("id"), idempotent=True),
}


# --- the sender --------------------------------------------------------------------------------


class HttpApiTransport:
    """Sends through one provider's API. `sleep` is injectable so tests need not wait."""

    def __init__(
        self,
        provider: str,
        api_key: str,
        base_url: str | None = None,
        options: dict[str, str] | None = None,
        timeout: float = 20.0,
        attempts: int = 4,
        retry_after_cap: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.provider = PROVIDERS[provider]
        self.api_key = api_key
        self.base_url = (base_url or self.provider.base_url).rstrip("/")
        self.options = options or {}
        self.timeout, self.attempts, self.retry_after_cap, self.sleep = timeout, attempts, retry_after_cap, sleep
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "publisher (+https://github.com/publisher-feeds/publisher)"

    def send(self, message: EmailMessage) -> Sent:
        request = self.provider.build(message, self.api_key, self.options)
        url = f"{self.base_url}{request.path}"
        name = self.provider.name
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            try:
                response = self.session.post(
                    url, headers=request.headers, json=request.json, data=request.data, files=request.files,
                    auth=request.auth, timeout=self.timeout,
                )  # fmt: skip
            except requests.RequestException as exc:
                if last:
                    raise TransportError(
                        f"{name}: no answer from {url}: {exc}", retryable=True, uncertain=not self.provider.idempotent
                    ) from exc
                self.sleep(min(2.0 ** (attempt - 1) / 2, self.retry_after_cap))
                continue
            if response.ok:
                return Sent(provider_id=self.provider.message_id(response))
            if response.status_code == 429 and not last:
                self.sleep(self._retry_after(response, attempt))
                continue
            if response.status_code >= 500 and not last:
                self.sleep(min(2.0 ** (attempt - 1) / 2, self.retry_after_cap))
                continue
            raise self._error(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.session.close()

    def _retry_after(self, response: requests.Response, attempt: int) -> float:
        value = response.headers.get("Retry-After", "")
        seconds: float
        if value.isdigit():
            seconds = float(value)
        else:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                seconds = 2.0 ** (attempt - 1)
        return max(0.0, min(seconds, self.retry_after_cap))

    def _error(self, response: requests.Response) -> TransportError:
        status = response.status_code
        detail = response.text[:300].strip()
        retryable = status == 429 or status >= 500
        hint = {
            401: "check the API key's environment variable",
            403: "check the API key's permissions and the sending domain",
        }.get(status, "the provider will not take this message" if not retryable else "the provider asks to try later")
        return TransportError(
            f"{self.provider.name}: HTTP {status} from {response.url}: {detail}",
            hint,
            retryable=retryable,
            uncertain=retryable and status >= 500 and not self.provider.idempotent,
        )
