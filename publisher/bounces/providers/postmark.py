"""Postmark's webhooks: one JSON object a request, by `RecordType`.

Verification: Postmark signs nothing; it sends the HTTP Basic credentials written in the
webhook's URL (postmarkapp.com/developer/webhooks, "secure them using HTTP Auth"), which are
compared in constant time. The event's own time (BouncedAt, ChangedAt) must be within
`MAX_AGE`, longer than Postmark's retries (about ten hours), and an event id is accepted once.
Records: `Bounce` (by `Type`), `SpamComplaint`, and `SubscriptionChange` (a reader's own
unsubscribe, `SuppressionReason` ManualSuppression).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from datetime import datetime
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

MAX_AGE = 48 * 3600.0  # seconds

# Bounce `Type`s (postmarkapp.com/developer/api/bounce-api#bounce-types); the ones not here
# (AutoResponder, AddressChange, Subscribe, OpenRelayTest, ChallengeVerification, ...) say
# nothing about whether the address takes mail.
_BOUNCE_TYPES = {
    "HardBounce": EventKind.HARD_BOUNCE,
    "BadEmailAddress": EventKind.HARD_BOUNCE,
    "ManuallyDeactivated": EventKind.HARD_BOUNCE,
    "SoftBounce": EventKind.SOFT_BOUNCE,
    "Transient": EventKind.SOFT_BOUNCE,
    "DnsError": EventKind.SOFT_BOUNCE,
    "SpamNotification": EventKind.SOFT_BOUNCE,
    "VirusNotification": EventKind.SOFT_BOUNCE,
    "DMARCPolicy": EventKind.SOFT_BOUNCE,
    "Blocked": EventKind.SOFT_BOUNCE,
    "SpamComplaint": EventKind.COMPLAINT,
    "Unsubscribe": EventKind.UNSUBSCRIBE,
}


class Postmark:
    name = "postmark"

    def __init__(self, username: str, password: str, clock: Callable[[], float] = time.time) -> None:
        self.credentials = f"{username}:{password}".encode()
        self.clock = clock

    def receive(self, request: HookRequest) -> Verified:
        scheme, _, value = request.header("Authorization").partition(" ")
        if scheme.lower() != "basic":
            raise Refused("no HTTP Basic credentials (put them in the webhook's URL: https://user:password@...)")
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except binascii.Error:
            raise Refused("the Basic credentials are not base64") from None
        if not same(given, self.credentials):
            raise Refused("wrong credentials (check hooks.postmark.username and password_env)")
        data = as_dict(load_json(request.body, "the body"), "the body")
        record = text(data.get("RecordType"))
        moment = parse_time(data.get("ChangedAt") if record == "SubscriptionChange" else data.get("BouncedAt"), "time")
        check_fresh(moment.timestamp(), self.clock(), MAX_AGE, "the event's time")
        event = read_event(record, data, moment)
        ident = text(data.get("ID")) or f"{text(data.get('MessageID'))}/{moment.isoformat()}"
        return Verified([event] if event else [], f"postmark:{record}:{ident}", moment.timestamp() + MAX_AGE)


def read_event(record: str, data: dict[str, Any], moment: datetime) -> MailEvent | None:
    if record == "Bounce":
        kind = _BOUNCE_TYPES.get(text(data.get("Type")))
    elif record == "SpamComplaint":
        kind = EventKind.COMPLAINT
    elif record == "SubscriptionChange":
        manual = text(data.get("SuppressionReason")) == "ManualSuppression"
        kind = EventKind.UNSUBSCRIBE if data.get("SuppressSending") is True and manual else None
    else:
        kind = None
    if kind is None:
        return None
    email = text(data.get("Recipient") if record == "SubscriptionChange" else data.get("Email"))
    if not email:
        raise Malformed(f"the recipient is missing from a {record!r} record")
    metadata = obj(data.get("Metadata"))
    ident = text(data.get("ID"))
    return MailEvent(
        kind=kind,
        email=email,
        source="postmark",
        reason=reason_of(data.get("Type"), data.get("Description"), data.get("Details"), data.get("SuppressionReason")),
        occurred=moment,
        delivery_token=text(metadata.get(DELIVERY_VARIABLE)) or None,
        provider_id=text(data.get("MessageID")) or None,
        event_id=f"{record}:{ident}" if ident else f"{record}:{text(data.get('MessageID'))}:{moment.isoformat()}",
        raw=raw_json({k: v for k, v in data.items() if k != "Content"}),  # Content: the whole bounce message
    )
