"""Alibaba Cloud DirectMail events, published by EventBridge to an HTTP target.

DirectMail has no webhook of its own: an EventBridge rule on the `acs.dm` source sends its
events, CloudEvents 1.0 JSON (`id`, `type`, `time`, `data`; one object, or an array when the
target batches), to `/hooks/aliyun` (alibabacloud.com/help/en/eventbridge/user-guide/events-of-the-direct-mail-type).
EventBridge signs nothing, so the target carries a secret token, in the header
`X-Publisher-Token` (preferred: a query string lands in access logs) or the query parameter
`token`, compared in constant time. An event's `time` must be within `MAX_AGE` (EventBridge
retries for up to a day): a stale one is skipped and logged, the batch's others kept (a
request of stale events only is refused); a request's ids are accepted once. Types: `dm:Deliver:Fail`
(`failed_type`, `err_code`, `err_msg`), `dm:Feedback:FblReport` (a complaint) and
`dm:Feedback:UnSubscribe`. The delivery token comes back under `data.header` as
`X-User-Notify-Publisher-Delivery`, the provider id is `data.env_id` (SingleSendMail's EnvId).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from ..events import DELIVERY_HEADER, EventKind, MailEvent
from ..status import bounce_kind
from .base import (
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
    same,
    text,
)

log = logging.getLogger(__name__)

MAX_AGE = 48 * 3600.0  # seconds
TOKEN_HEADER = "X-Publisher-Token"
# DirectMail passes on only headers named X-User-Notify-*: the transport sends our delivery
# token as this one, and the events carry it under data.header.
NOTIFY_DELIVERY_HEADER = "X-User-Notify-" + DELIVERY_HEADER.removeprefix("X-")

# A failure is hard when DirectMail says the mailbox or domain does not exist (failed_type
# SmtpNxBox, SmtpNxDomain) or the receiving server's answer says the address is bad, as the
# SMTP transport reads it (bounces.status: 5.1.1, a 550 "user unknown"); the rest (a full
# mailbox, a refusal as spam or by policy, a timeout) is soft.
_HARD_TYPES = {"smtpnxbox", "smtpnxdomain"}


class Aliyun:
    name = "aliyun"

    def __init__(self, token: str, clock: Callable[[], float] = time.time) -> None:
        self.token, self.clock = token, clock

    def receive(self, request: HookRequest) -> Verified:
        given = request.header(TOKEN_HEADER) or request.query.get("token", "")
        if not given:
            raise Refused(f"no token: set the {TOKEN_HEADER} header in the EventBridge HTTP target")
        if not same(given, self.token):
            raise Refused("wrong token (check hooks.aliyun.token_env)")
        payload = load_json(request.body, "the body")
        items = payload if isinstance(payload, list) else [payload]
        if not items or not all(isinstance(item, dict) for item in items):
            raise Malformed("the body is not a CloudEvent or an array of them")
        now, events, newest, stale = self.clock(), [], 0.0, []
        for item in items:
            name = text(item.get("id"))[:60]
            try:
                moment = parse_time(item.get("time"), "time")
                check_fresh(moment.timestamp(), now, MAX_AGE, f"event {name}'s time")
            except Refused as exc:  # one stale event does not lose the batch; a batch of nothing else is refused
                stale.append(exc)
                log.warning("hooks/aliyun: skipped event %s: %s", name, exc)
                continue
            except Malformed as exc:
                log.warning("hooks/aliyun: skipped event %s: %s", name, exc)
                continue
            newest = max(newest, moment.timestamp())
            try:
                event = read_event(item)
            except Malformed as exc:  # one unreadable event does not lose the batch
                log.warning("hooks/aliyun: skipped event %s: %s", name, exc)
                continue
            if event is not None:
                events.append(event)
        if stale and len(stale) == len(items):
            raise stale[0]
        ids = hashlib.sha256("\n".join(text(item.get("id")) for item in items).encode()).hexdigest()
        return Verified(events, f"aliyun:{ids}", newest + MAX_AGE)


def read_event(item: dict[str, Any]) -> MailEvent | None:
    kind_name = text(item.get("type"))
    data = obj(item.get("data"))
    if kind_name == "dm:Deliver:Fail":
        code, message = text(data.get("err_code")), text(data.get("err_msg"))
        by_type = text(data.get("failed_type")).lower() in _HARD_TYPES
        kind = EventKind.HARD_BOUNCE if by_type else bounce_kind(code, message)
    elif kind_name == "dm:Feedback:FblReport":
        kind = EventKind.COMPLAINT
    elif kind_name == "dm:Feedback:UnSubscribe":
        kind = EventKind.UNSUBSCRIBE
    else:
        return None
    email = text(data.get("rcpt"))
    if not email:
        raise Malformed(f"data.rcpt is missing from a {kind_name!r} event")
    header = obj(data.get("header"))
    return MailEvent(
        kind=kind,
        email=email,
        source="aliyun",
        reason=reason_of(data.get("err_code"), data.get("err_msg"), data.get("failed_type"), kind_name),
        occurred=parse_time(item.get("time"), "time"),
        delivery_token=text(header.get(NOTIFY_DELIVERY_HEADER)) or None,
        provider_id=text(data.get("env_id")) or None,  # SingleSendMail's answer: EnvId
        event_id=text(item.get("id")) or None,
        raw=raw_json(item),
    )
