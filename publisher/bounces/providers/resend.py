"""Resend's webhooks, sent through Svix: JSON `{"type", "created_at", "data"}`.

Verification (docs.svix.com, "Verifying payloads manually"; resend.com/docs/webhooks): HMAC-SHA256
with the key base64-decoded from the secret after `whsec_`, over `"{svix-id}.{svix-timestamp}.{raw
body}"`, base64; `svix-signature` is a space-separated list of `v1,<signature>` (more than one
while a secret is rotated), any of which may match. A timestamp more than `MAX_AGE` away from
our clock is refused, and a message id is accepted once. Types: `email.bounced` (the receiving
server refused for good; `data.bounce.type`), `email.complained`; `email.delivery_delayed` is a
delay, not a bounce, and is ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

from ..events import EventKind, MailEvent
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

MAX_AGE = 300.0  # seconds, either way


def svix_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret; ValueError when it is not one."""
    try:
        return base64.b64decode(secret.strip().removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ValueError("not a Svix signing secret (whsec_ followed by base64)") from None


class Resend:
    name = "resend"

    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        self.key, self.clock = svix_key(secret), clock

    def receive(self, request: HookRequest) -> Verified:
        ident, stamp, signatures = (request.header(h) for h in ("svix-id", "svix-timestamp", "svix-signature"))
        if not (ident and stamp and signatures):
            raise Refused("svix-id, svix-timestamp or svix-signature is missing")
        try:
            moment = int(stamp)
        except ValueError:
            raise Refused(f"svix-timestamp {stamp[:20]!r} is not a number") from None
        signed = f"{ident}.{stamp}.".encode() + request.body
        expected = base64.b64encode(hmac.new(self.key, signed, hashlib.sha256).digest())
        given = [value for version, _, value in (s.partition(",") for s in signatures.split()) if version == "v1"]
        if not any(same(value, expected) for value in given):
            raise Refused("no v1 signature matches (check hooks.resend.secret_env)")
        check_fresh(moment, self.clock(), MAX_AGE, "svix-timestamp")  # and at most FUTURE_SKEW (as much) ahead
        payload = as_dict(load_json(request.body, "the body"), "the body")
        events = read_events(payload, ident)
        return Verified(events, f"resend:{ident}", moment + MAX_AGE)


def _tags(data: dict[str, Any]) -> dict[str, str]:
    """Resend's tags, given as an object or as a list of {name, value}."""
    tags = data.get("tags")
    if isinstance(tags, dict):
        return {str(k): text(v) for k, v in tags.items()}
    if isinstance(tags, list):
        return {text(t.get("name")): text(t.get("value")) for t in tags if isinstance(t, dict)}
    return {}


def read_events(payload: dict[str, Any], ident: str) -> list[MailEvent]:
    kind_name = text(payload.get("type"))
    data = as_dict(payload.get("data"), "data")
    bounce = obj(data.get("bounce"))
    if kind_name == "email.bounced":
        kind = EventKind.SOFT_BOUNCE if text(bounce.get("type")) == "Transient" else EventKind.HARD_BOUNCE
    elif kind_name == "email.complained":
        kind = EventKind.COMPLAINT
    else:
        return []
    recipients = data.get("to")
    recipients = [recipients] if isinstance(recipients, str) else recipients
    if not isinstance(recipients, list) or not recipients:
        raise Malformed(f"data.to is missing from a {kind_name!r} event")
    occurred = parse_time(payload.get("created_at") or data.get("created_at"), "created_at")
    token = _tags(data).get(DELIVERY_VARIABLE) or None
    return [
        MailEvent(
            kind=kind,
            email=text(recipient),
            source="resend",
            reason=reason_of(bounce.get("type"), bounce.get("subType"), bounce.get("message"), kind_name),
            occurred=occurred,
            delivery_token=token,
            provider_id=text(data.get("email_id")) or None,
            event_id=ident if len(recipients) == 1 else f"{ident}:{text(recipient)}",
            raw=raw_json(payload),
        )
        for recipient in recipients
        if text(recipient)
    ]
