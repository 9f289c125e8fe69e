"""SendGrid's Event Webhook: a JSON array of events, batched.

Verification (twilio.com/docs/sendgrid, "Event Webhook security features"): the Signed Event
Webhook's ECDSA P-256 signature, base64 DER in `X-Twilio-Email-Event-Webhook-Signature`, over
the bytes of `X-Twilio-Email-Event-Webhook-Timestamp` followed by the raw body, checked with
the public key SendGrid shows (base64 DER). A timestamp older than `MAX_AGE` is refused, and
a signed request (its timestamp and body) is accepted once. Events: `bounce` (`type` bounce or blocked, with a
`bounce_classification`), `dropped` (SendGrid kept it back: a known bad, complaining or
unsubscribed address), `spamreport`, `unsubscribe` and `group_unsubscribe`; custom_args
arrive as top-level fields.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from ..events import EventKind, MailEvent
from .base import (
    DELIVERY_VARIABLE,
    HookRequest,
    Malformed,
    Refused,
    Verified,
    check_fresh,
    load_json,
    obj,
    parse_time,
    raw_json,
    reason_of,
    text,
)

log = logging.getLogger(__name__)

MAX_AGE = 300.0  # seconds
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

# bounce_classification values that say the address itself is bad; the others (Technical,
# Content, Reputation, Frequency or Volume, Unclassified) are the sender's or the moment's.
_ADDRESS_CLASSES = {"invalid address", "mailbox unavailable"}
_DROPPED = {
    "bounced address": EventKind.HARD_BOUNCE,
    "invalid": EventKind.HARD_BOUNCE,
    "spam reporting address": EventKind.COMPLAINT,
    "unsubscribed address": EventKind.UNSUBSCRIBE,
}


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key (base64 DER SubjectPublicKeyInfo) as a P-256 public key;
    ValueError saying what is wrong with it."""
    try:
        key = load_der_public_key(base64.b64decode("".join(value.split()), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not a base64 DER public key ({exc.__class__.__name__})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 key")
    return key


class Sendgrid:
    name = "sendgrid"

    def __init__(self, public_key: str, clock: Callable[[], float] = time.time) -> None:
        self.public_key, self.clock = load_public_key(public_key), clock

    def receive(self, request: HookRequest) -> Verified:
        timestamp, signature = request.header(TIMESTAMP_HEADER), request.header(SIGNATURE_HEADER)
        if not (timestamp and signature):
            raise Refused(f"{SIGNATURE_HEADER} or {TIMESTAMP_HEADER} is missing (turn on the Signed Event Webhook)")
        try:
            self.public_key.verify(
                base64.b64decode(signature, validate=True), timestamp.encode() + request.body, ec.ECDSA(hashes.SHA256())
            )
        except (InvalidSignature, binascii.Error, ValueError):
            raise Refused("the signature does not match (check hooks.sendgrid.public_key)") from None
        try:
            moment = float(timestamp)
        except ValueError:
            raise Refused(f"{TIMESTAMP_HEADER} {timestamp[:20]!r} is not a number") from None
        check_fresh(moment, self.clock(), MAX_AGE, TIMESTAMP_HEADER)
        payload = load_json(request.body, "the body")
        if not isinstance(payload, list):
            raise Malformed("the body is not a JSON array of events")
        events = []
        for item in payload:
            try:
                event = read_event(obj(item))
            except Malformed as exc:  # one unreadable event does not lose the batch
                log.warning("hooks/sendgrid: skipped an event: %s", exc)
                continue
            if event is not None:
                events.append(event)
        # Keyed on what was signed, not on the signature: ECDSA's is malleable ((r, n - s) verifies
        # too), so a replay with the other signature would pass a guard keyed on it.
        signed = hashlib.sha256(timestamp.encode() + b"\n" + request.body).hexdigest()
        return Verified(events, f"sendgrid:{signed}", moment + MAX_AGE)


def read_event(data: dict[str, Any]) -> MailEvent | None:
    name = text(data.get("event"))
    kind: EventKind | None = None
    if name == "bounce":
        soft = text(data.get("type")) == "blocked" or (
            "bounce_classification" in data and text(data["bounce_classification"]).lower() not in _ADDRESS_CLASSES
        )
        kind = EventKind.SOFT_BOUNCE if soft else EventKind.HARD_BOUNCE
    elif name == "dropped":
        kind = _DROPPED.get(text(data.get("reason")).lower())
    elif name == "spamreport":
        kind = EventKind.COMPLAINT
    elif name in ("unsubscribe", "group_unsubscribe"):
        kind = EventKind.UNSUBSCRIBE
    if kind is None:
        return None
    email = text(data.get("email"))
    if not email:
        raise Malformed(f"email is missing from a {name!r} event")
    message_id = text(data.get("sg_message_id")).split(".", 1)[0]  # the send answer's X-Message-Id
    return MailEvent(
        kind=kind,
        email=email,
        source="sendgrid",
        reason=reason_of(data.get("status"), data.get("reason"), data.get("bounce_classification"), data.get("type")),
        occurred=parse_time(data.get("timestamp"), "timestamp"),
        delivery_token=text(data.get(DELIVERY_VARIABLE)) or None,
        provider_id=message_id or None,
        event_id=text(data.get("sg_event_id")) or None,
        raw=raw_json(data),
    )
