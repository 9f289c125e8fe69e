"""What a provider's event or a bounce message says, as one value, whoever said it.

Every door (a provider's webhook under `/hooks/<provider>`, the bounce mailbox) turns what it
received into `MailEvent`s and hands them to one service, which links each to its delivery,
keeps it with its raw reason, and applies the rules. An event finds its delivery by, in order:
our per-delivery token (the VERP Return-Path `local+<token>@domain` or the
`X-Publisher-Delivery` header, echoed by providers as custom variables or headers), our
Message-ID (DSNs and ARF reports quote the original headers), or the provider's own message
id (stored as the delivery's `provider_id` when it was sent). Without any of them, only a
provider's verified webhook may fall back to the address alone: anyone can mail the bounce
mailbox, so its events (MAILBOX_SOURCES) act only when our token or Message-ID links them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

DELIVERY_HEADER = "X-Publisher-Delivery"
RAW_LIMIT = 8000  # characters of an event as received (JSON, a report's headers) kept with it: every door cuts to it
MAILBOX_SOURCES = frozenset({"imap", "pop3"})  # the bounce mailbox's sources: their sender is nobody we verified


class EventKind(enum.Enum):
    HARD_BOUNCE = "hard"  # permanent: the address does not exist, the domain does not take mail
    SOFT_BOUNCE = "soft"  # temporary: a full mailbox, greylisting, a server down
    COMPLAINT = "complaint"  # the reader marked the mail as spam (a feedback loop, ARF)
    UNSUBSCRIBE = "unsubscribe"  # the provider's own unsubscribe (its link or its list)


@dataclass(frozen=True, slots=True)
class MailEvent:
    kind: EventKind
    email: str  # the recipient as the event names it
    source: str  # where it came from: mailgun, sendgrid, postmark, resend, ses, aliyun, imap, pop3
    reason: str  # the raw reason: the SMTP status and diagnostic, the provider's words
    occurred: datetime  # timezone-aware, as the event dates it (now when it does not)
    delivery_token: str | None = None  # ours, from the Return-Path or the X-Publisher-Delivery header
    message_id: str | None = None  # our Message-ID, as quoted in a DSN or ARF report
    provider_id: str | None = None  # the provider's id of the message sent
    event_id: str | None = None  # the provider's id of the event itself: the same event twice is kept once
    raw: str = ""  # the event as received (JSON, or a message's headers), cut to RAW_LIMIT characters
