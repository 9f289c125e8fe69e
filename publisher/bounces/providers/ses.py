"""Amazon SES bounce and complaint notifications, delivered by SNS to `/hooks/ses`.

Every message is verified by `sns` (the signature, the certificate's host) and must come from
one of the configured topics; its Timestamp (when SNS published it, kept on SNS's retries) must
be within `MAX_AGE`, which outlasts SNS's longest HTTP retry policy (an hour), and a MessageId is
accepted once. A SubscriptionConfirmation of a configured topic is confirmed by a GET of its
SubscribeURL. A Notification carries SES's JSON in `Message`: `notificationType` (identity
notifications) or `eventType` (a configuration set's event publishing) `Bounce` or `Complaint`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..events import DELIVERY_HEADER, EventKind, MailEvent
from .base import (
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
    text,
)
from .sns import Certificates, check_sns_url, confirm_subscription, sns_time, verify_signature

log = logging.getLogger(__name__)

MAX_AGE = 3600.0  # seconds


class Ses:
    name = "ses"

    def __init__(
        self,
        topic_arns: Iterable[str],
        certificates: Certificates | None = None,
        confirm: Callable[[str], None] = confirm_subscription,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topic_arns = frozenset(topic_arns)
        self.certificates = certificates or Certificates(clock=clock)
        self.confirm, self.clock = confirm, clock

    def receive(self, request: HookRequest) -> Verified:
        try:
            message = as_dict(load_json(request.body, "the body"), "the body")
        except Malformed as exc:
            raise Refused(f"not an SNS message: {exc}") from None
        kind = text(message.get("Type"))
        if kind not in ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"):
            raise Refused(f"Type {kind[:40]!r} is not an SNS message type")
        if request.header("x-amz-sns-message-type") != kind:
            raise Refused("x-amz-sns-message-type does not match the message's Type")
        topic = text(message.get("TopicArn"))
        if topic not in self.topic_arns:
            raise Refused(f"TopicArn {topic[:200]!r} is not in hooks.ses.topic_arns")
        moment = sns_time(message)
        check_fresh(moment, self.clock(), MAX_AGE, "Timestamp")
        verify_signature(message, self.certificates)
        key = f"ses:{text(message.get('MessageId'))}"
        if kind == "SubscriptionConfirmation":
            self.confirm(check_sns_url(text(message.get("SubscribeURL")), "SubscribeURL"))
            log.info("hooks/ses: confirmed the subscription to %s", topic)
            return Verified([], key, moment + MAX_AGE)
        if kind == "UnsubscribeConfirmation":
            log.warning("hooks/ses: %s says this endpoint was unsubscribed from it", topic)
            return Verified([], key, moment + MAX_AGE)
        content = as_dict(load_json(text(message.get("Message")).encode(), "Message"), "Message")
        return Verified(read_events(content), key, moment + MAX_AGE)


def _headers(mail: dict[str, Any]) -> dict[str, str]:
    """The original headers SES includes when "Include original headers" is on, by lower-cased name."""
    headers = mail.get("headers")
    headers = headers if isinstance(headers, list) else []
    return {text(h.get("name")).lower(): text(h.get("value")) for h in headers if isinstance(h, dict)}


def _event(mail: dict[str, Any], kind: EventKind, recipient: dict[str, Any], reason: str, when: Any, feedback: str,
           raw: dict[str, Any]) -> MailEvent:  # fmt: skip
    common = obj(mail.get("commonHeaders"))
    email = text(recipient.get("emailAddress"))
    return MailEvent(
        kind=kind,
        email=email,
        source="ses",
        reason=reason,
        occurred=parse_time(when, "the event's timestamp"),
        delivery_token=_headers(mail).get(DELIVERY_HEADER.lower()) or None,
        message_id=text(common.get("messageId")) or _headers(mail).get("message-id") or None,
        provider_id=text(mail.get("messageId")) or None,
        event_id=f"{feedback}:{email}" if feedback else None,
        raw=raw_json(raw | {"recipient": recipient, "mail": {"messageId": mail.get("messageId")}}),
    )


def _recipients(value: Any) -> list[dict[str, Any]]:
    return [r for r in value or [] if isinstance(r, dict) and text(r.get("emailAddress"))]


def read_events(content: dict[str, Any]) -> list[MailEvent]:
    kind_name = text(content.get("notificationType") or content.get("eventType"))
    mail = as_dict(content.get("mail"), "Message.mail")
    if kind_name == "Bounce":
        bounce = as_dict(content.get("bounce"), "Message.bounce")
        bounce_type, sub_type = text(bounce.get("bounceType")), bounce.get("bounceSubType")
        kind = EventKind.HARD_BOUNCE if bounce_type == "Permanent" else EventKind.SOFT_BOUNCE
        return [
            _event(
                mail,
                kind,
                r,
                reason_of(r.get("status"), r.get("diagnosticCode"), bounce_type, sub_type),
                bounce.get("timestamp"),
                text(bounce.get("feedbackId")),
                {"bounce": bounce},
            )  # fmt: skip
            for r in _recipients(bounce.get("bouncedRecipients"))
        ]
    if kind_name == "Complaint":
        complaint = as_dict(content.get("complaint"), "Message.complaint")
        feedback_type = text(complaint.get("complaintFeedbackType"))
        if feedback_type == "not-spam":
            return []
        reason = reason_of("complaint", feedback_type, complaint.get("complaintSubType"), complaint.get("userAgent"))
        return [
            _event(
                mail,
                EventKind.COMPLAINT,
                r,
                reason,
                complaint.get("timestamp"),
                text(complaint.get("feedbackId")),
                {"complaint": complaint},
            )  # fmt: skip
            for r in _recipients(complaint.get("complainedRecipients"))
        ]
    return []  # Delivery, Send, DeliveryDelay, Open, ...: nothing about the address
