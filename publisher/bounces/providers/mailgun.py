"""Mailgun's webhooks: JSON `{"signature": {...}, "event-data": {...}}`, one event a request.

Verification (documentation.mailgun.com, "Securing webhooks"): HMAC-SHA256 with the webhook
signing key over `timestamp + token`, hex, equal to `signature`. The signature does not cover
the body, so a token is accepted once (the replay guard) and a timestamp only within
`MAX_AGE`. `event-data.event`: `failed` (`severity` permanent or temporary), `complained`,
`unsubscribed`; the others (delivered, opened, ...) say nothing about the address.

A permanent failure is read by its `reason`: Mailgun's own suppressions (`suppress-bounce`,
the address bounced before: hard; `suppress-complaint`: a complaint; `suppress-unsubscribe`:
an unsubscribe, the delivery-status codes 605, 607 and 606), `old` (Mailgun gave up retrying:
soft), and any other (`bounce`, `generic`, ...) by its `delivery-status` code and message, as
an SMTP refusal is read (bounces.status: hard only when the address is bad). A temporary
failure, reported at each retry, is soft.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

from ..events import EventKind, MailEvent
from ..status import bounce_kind
from .base import (
    DELIVERY_VARIABLE,
    HookRequest,
    Malformed,
    Refused,
    Verified,
    as_dict,
    check_fresh,
    load_json,
    obj,
    parse_time,
    raw_json,
    reason_of,
    same,
    text,
)

MAX_AGE = 300.0  # seconds
_PERMANENT = {
    "suppress-bounce": EventKind.HARD_BOUNCE,
    "suppress-complaint": EventKind.COMPLAINT,
    "suppress-unsubscribe": EventKind.UNSUBSCRIBE,
    "old": EventKind.SOFT_BOUNCE,
}


class Mailgun:
    name = "mailgun"

    def __init__(self, signing_key: str, clock: Callable[[], float] = time.time) -> None:
        self.signing_key, self.clock = signing_key.encode(), clock

    def receive(self, request: HookRequest) -> Verified:
        try:
            payload = as_dict(load_json(request.body, "the body"), "the body")
            signature = as_dict(payload.get("signature"), "signature")
        except Malformed as exc:
            raise Refused(f"no signature: {exc}") from None
        timestamp, token, given = (text(signature.get(k)) for k in ("timestamp", "token", "signature"))
        if not (timestamp and token and given):
            raise Refused("signature.timestamp, .token or .signature is missing")
        expected = hmac.new(self.signing_key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not same(given.lower(), expected):
            raise Refused("the signature does not match (check hooks.mailgun.signing_key_env)")
        try:
            moment = float(timestamp)
        except ValueError:
            raise Refused(f"signature.timestamp {timestamp[:20]!r} is not a number") from None
        check_fresh(moment, self.clock(), MAX_AGE, "signature.timestamp")
        event = read_event(as_dict(payload.get("event-data"), "event-data"))
        return Verified([event] if event else [], f"mailgun:{token}", moment + MAX_AGE)


def _by_status(status: dict[str, Any]) -> EventKind:
    code = text(status.get("code"))
    words = " ".join(text(status.get(k)) for k in ("message", "description"))
    return bounce_kind(code, words)


def read_event(data: dict[str, Any]) -> MailEvent | None:
    name, severity = text(data.get("event")), text(data.get("severity"))
    status = obj(data.get("delivery-status"))
    if name == "failed" and severity == "permanent":
        kind = _PERMANENT.get(text(data.get("reason")).lower()) or _by_status(status)
    elif name == "failed":
        kind = EventKind.SOFT_BOUNCE
    elif name == "complained":
        kind = EventKind.COMPLAINT
    elif name == "unsubscribed":
        kind = EventKind.UNSUBSCRIBE
    else:
        return None
    recipient = text(data.get("recipient"))
    if not recipient:
        raise Malformed(f"event-data.recipient is missing from a {name!r} event")
    message = obj(data.get("message"))
    headers = obj(message.get("headers"))
    variables = obj(data.get("user-variables"))
    message_id = text(headers.get("message-id")).strip("<>")
    return MailEvent(
        kind=kind,
        email=recipient,
        source="mailgun",
        reason=reason_of(
            status.get("code"), status.get("message"), status.get("description"), data.get("reason"), severity
        ),
        occurred=parse_time(data.get("timestamp"), "event-data.timestamp"),
        delivery_token=text(variables.get(DELIVERY_VARIABLE)) or None,
        message_id=f"<{message_id}>" if message_id else None,
        provider_id=f"<{message_id}>" if message_id else None,  # Mailgun's send answer gives it in <>
        event_id=text(data.get("id")) or None,
        raw=raw_json(data),
    )
