"""Pure: what a message in the bounce mailbox says, as `MailEvent`s.

Three shapes are read:

- a DSN (RFC 3464: multipart/report; report-type=delivery-status): each recipient block whose
  Action is "failed" is an event, hard when its Status (or, for X.0.0, its Diagnostic-Code)
  says the address is bad (`status.address_refused`: 5.1.1, 5.1.2, 5.1.3, 5.1.10, 5.2.1),
  soft otherwise (4.x.x, and 5.7.x policy refusals and other 5.x.x), with the Diagnostic-Code
  as its reason; "delayed" (the server is still trying), "delivered", "relayed" and
  "expanded" say nothing;
- an ARF feedback report (RFC 5965: multipart/report; report-type=feedback-report): a
  complaint, unless its Feedback-Type is "not-spam";
- the plain-text bounces of qmail and Exim, only when they carry a 5.x.x status and name the
  address that failed: hard or soft by the same rule.

The link to the delivery: a VERP token in the address the bounce was sent to
(`[bounces] return_path` as `bounces+<token>@example.org` in Delivered-To, X-Original-To,
Envelope-To or To), else the
`X-Publisher-Delivery` header or our Message-ID in the returned original (a message/rfc822 or
text/rfc822-headers part, or the copy quoted in a plain-text bounce). Anything else is
`None`: left in the mailbox for a person to read.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser
from email.utils import collapse_rfc2231_value, getaddresses, parsedate_to_datetime

from .events import DELIVERY_HEADER, RAW_LIMIT, EventKind, MailEvent
from .links import token_from_address
from .status import ENHANCED_STATUS as _STATUS
from .status import bounce_kind, reply_code

_ADDRESS = r"[^\s<>\"@:;,]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
_QMAIL = re.compile(r"^<(" + _ADDRESS + r")>:\s*$", re.M)
_EXIM = re.compile(r"following address(?:\(es\))? failed:\s*\n+\s*<?(" + _ADDRESS + r")>?", re.I)
_COPY_FOLLOWS = re.compile(r"^-+ ?(?:Below this line is a copy|This is a copy of the message)", re.M)
_QUOTED_HEADER = r"^{name}:[ \t]*(.+?)[ \t]*$"
_BOUNCE_SUBJECT = re.compile(r"failure notice|undeliver|delivery status|returned mail|mail delivery failed", re.I)


@dataclass(frozen=True, slots=True)
class Reading:
    """What one message in the mailbox was: its shape (dsn, arf, qmail/exim) and its events
    (none for a DSN that reports only success, or an ARF "not-spam")."""

    shape: str
    events: tuple[MailEvent, ...]


def read_report(raw: bytes, source: str, now: datetime, return_path: str = "") -> Reading | None:
    """The events in one message of the bounce mailbox; None when it is none of the shapes
    above (or names no recipient): it is left where it is. `return_path`: `[bounces]
    return_path`, whose VERP form the bounce may have been sent to."""
    message = message_from_bytes(raw, policy=policy.compat32)
    token = _verp_token(message, return_path) if return_path else None
    if message.get_content_type() == "multipart/report":
        report_type = collapse_rfc2231_value(message.get_param("report-type") or "").lower()
        if report_type == "delivery-status":
            return _read_dsn(message, source, now, token)
        if report_type == "feedback-report":
            return _read_arf(message, source, now, token)
        return None
    return _read_plain(message, raw, source, now, token)


def _read_dsn(message: Message, source: str, now: datetime, token: str | None) -> Reading | None:
    status_part = _first_part(message, "message/delivery-status")
    if status_part is None:
        return None
    payload = status_part.get_payload()
    blocks = [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []
    if len(blocks) < 2:
        return None
    per_message, recipients = blocks[0], blocks[1:]
    link = _link(message, token)
    occurred = _date(per_message.get("Arrival-Date")) or _date(message.get("Date")) or now
    raw = _raw(message, status_part.as_string())
    events = []
    for block in recipients:
        action = (block.get("Action") or "").strip().lower()
        address = _recipient(block.get("Original-Recipient")) or _recipient(block.get("Final-Recipient"))
        if address is None:
            continue
        if action != "failed":
            continue  # delayed (still trying: RFC 3464), delivered, relayed, expanded: nothing to act on
        status = (block.get("Status") or "").strip()
        diagnostic = _unfold(block.get("Diagnostic-Code") or "")
        found = _STATUS.search(status)
        permanent = found is not None and found.group(1) == "5"
        kind = bounce_kind(reply_code(diagnostic), diagnostic, status) if permanent else EventKind.SOFT_BOUNCE
        reason = "; ".join(part for part in (f"{action} {status}".strip(), diagnostic) if part)
        when = _date(block.get("Last-Attempt-Date")) or occurred
        events.append(_event(kind, address, source, reason, when, link, message, raw))
    named = any(_recipient(b.get("Final-Recipient")) for b in recipients)
    return Reading("dsn", tuple(events)) if named else None


def _read_arf(message: Message, source: str, now: datetime, token: str | None) -> Reading | None:
    feedback_part = _first_part(message, "message/feedback-report")
    if feedback_part is None:
        return None
    fields = _fields_of(feedback_part)
    feedback_type = (fields.get("Feedback-Type") or "").strip().lower()
    if not feedback_type:
        return None
    original = _original_headers(message)
    address = _recipient(fields.get("Original-Rcpt-To"))
    if address is None and original is not None:
        address = next((a for _n, a in getaddresses(original.get_all("To") or []) if "@" in a), None)
    if address is None:
        return None
    if feedback_type == "not-spam":
        return Reading("arf", ())
    occurred = _date(fields.get("Arrival-Date")) or _date(message.get("Date")) or now
    agent = (fields.get("User-Agent") or "").strip()
    reason = f"feedback-type {feedback_type}" + (f" from {agent}" if agent else "")
    raw = _raw(message, feedback_part.as_string())
    event = _event(EventKind.COMPLAINT, address, source, reason, occurred, _link(message, token), message, raw)
    return Reading("arf", (event,))


def _read_plain(message: Message, raw: bytes, source: str, now: datetime, token: str | None) -> Reading | None:
    """qmail's "failure notice" and Exim's "Mail delivery failed", with a 5.x.x status."""
    if not _BOUNCE_SUBJECT.search(message.get("Subject") or ""):
        return None
    text = raw.decode("utf-8", "replace").replace("\r\n", "\n")
    body = text.split("\n\n", 1)[-1]
    shape, found = "qmail", _QMAIL.search(body)
    if found is None:
        shape, found = "exim", _EXIM.search(body)
    if found is None:
        return None
    copy = _COPY_FOLLOWS.search(body, found.end())  # the status is the server's, not the original's
    status = _STATUS.search(body, found.end(), copy.start() if copy else len(body))
    if status is None or status.group(1) != "5":
        return None
    line_start, line_end = body.rfind("\n", 0, status.start()) + 1, body.find("\n", status.start())
    reason = body[line_start : line_end if line_end >= 0 else None].strip()
    kind = bounce_kind(reply_code(reason), reason, status.group(0))
    quoted_token, message_id = _quoted_link(body)
    occurred = _date(message.get("Date")) or now
    event = _event(
        kind, found.group(1), source, reason, occurred, (token or quoted_token, message_id), message,
        _raw(message, body),
    )  # fmt: skip
    return Reading(shape, (event,))


Link = tuple[str | None, str | None]  # (our delivery token, our Message-ID)


def _link(message: Message, token: str | None) -> Link:
    """The token from the address the bounce came to, else the returned original's header;
    the original's Message-ID."""
    original = _original_headers(message)
    message_id = None
    if original is not None:
        token = token or _clean(original.get(DELIVERY_HEADER))
        message_id = _clean(original.get("Message-ID"))
    return token, message_id


def _verp_token(message: Message, return_path: str) -> str | None:
    for header in ("Delivered-To", "X-Original-To", "Envelope-To", "To"):
        for _name, address in getaddresses(message.get_all(header) or []):
            token = token_from_address(address, return_path)
            if token:
                return token
    return None


def _quoted_link(body: str) -> Link:
    """Our header and Message-ID in the copy of the original that a plain-text bounce quotes."""
    values = []
    for name in (DELIVERY_HEADER, "Message-ID"):
        found = re.search(_QUOTED_HEADER.format(name=re.escape(name)), body, re.M | re.I)
        values.append(_clean(found.group(1)) if found else None)
    return values[0], values[1]


def _original_headers(message: Message) -> Message | None:
    """The returned original's headers: a message/rfc822 part, or text/rfc822-headers."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        if kind == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                return HeaderParser(policy=policy.compat32).parsestr(text.decode("utf-8", "replace"))
    return None


def _first_part(message: Message, content_type: str) -> Message | None:
    return next((p for p in message.walk() if p.get_content_type() == content_type), None)


def _fields_of(part: Message) -> Message:
    """An ARF report's fields: Python's parser reads message/feedback-report as a sub-message
    (its fields as the headers) or, with a transfer encoding, as text."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    text = part.get_payload(decode=True)
    decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(payload)
    return HeaderParser(policy=policy.compat32).parsestr(decoded)


def _recipient(field: str | None) -> str | None:
    """`rfc822; reader@example.org` -> the address (other address types are not ours)."""
    if not field:
        return None
    kind, _, address = _unfold(field).partition(";")
    address = address.strip().strip("<>").strip()
    return address if kind.strip().lower() == "rfc822" and "@" in address else None


def _event(
    kind: EventKind, email: str, source: str, reason: str, occurred: datetime, link: Link, message: Message, raw: str
) -> MailEvent:
    token, message_id = link
    bounce_id = _clean(message.get("Message-ID")) or hashlib.sha256(raw.encode()).hexdigest()[:32]
    return MailEvent(
        kind=kind,
        email=email,
        source=source,
        reason=reason[:1000],
        occurred=occurred,
        delivery_token=token,
        message_id=message_id,
        event_id=f"{bounce_id}/{email.lower()}",
        raw=raw,
    )


def _raw(message: Message, report: str) -> str:
    head = "".join(f"{name}: {_unfold(message.get(name) or '')}\n" for name in ("From", "Subject", "Date"))
    return (head + "\n" + report)[:RAW_LIMIT]


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(_unfold(value))
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else None


def _clean(value: str | None) -> str | None:
    value = _unfold(value or "").strip()
    return value or None


def _unfold(value: str) -> str:
    return " ".join(str(value).split())
