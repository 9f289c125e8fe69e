"""Which refusals say the address itself is bad, whoever reports them (the SMTP transport at
RCPT, a DSN in the bounce mailbox, a provider's webhook). Pure.

Only a refusal that says the mailbox or domain does not exist, or the mailbox is disabled, is a
hard bounce: an enhanced status (RFC 3463) 5.1.1 (no such mailbox), 5.1.2 (no such domain),
5.1.3 (a bad address), 5.1.10 (the domain takes no mail: a null MX) or 5.2.1 (disabled). Every
other permanent refusal is about the sender or the message, not the address (5.7.x: Gmail's
550 5.7.26 for unauthenticated mail, a blocklist, "relaying denied"; 5.3.x, 5.4.x: the
receiver's systems; unclassified 5.x.x) and suppressing readers for it would suppress whole
domains. Without an enhanced status (or with X.0.0, which classifies nothing), a 550, 551 or
553 whose text says the user is unknown is hard, as servers that give no enhanced codes say it.
"""

from __future__ import annotations

import re

from .events import EventKind

ENHANCED_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
ADDRESS_STATUSES = frozenset({"5.1.1", "5.1.2", "5.1.3", "5.1.10", "5.2.1"})
ADDRESS_CODES = frozenset({550, 551, 553})
_REPLY_CODE = re.compile(r"(?<![\d.])([245]\d\d)(?![\d.])")
_NO_SUCH_ADDRESS = re.compile(
    r"user unknown|unknown user|unknown recipient|recipient unknown|no such (?:user|mailbox|recipient|address)"
    r"|mailbox (?:unavailable|not found)|(?:user|recipient|address) not found|n(?:o|')t exist"
    r"|invalid (?:recipient|mailbox)",
    re.IGNORECASE,
)


def enhanced_status(text: str) -> str | None:
    """The first enhanced status code in `text`, as `5.1.1` (leading zeros dropped)."""
    found = ENHANCED_STATUS.search(text)
    if found is None:
        return None
    return f"{found.group(1)}.{int(found.group(2))}.{int(found.group(3))}"


def reply_code(text: str) -> int | None:
    """The first SMTP reply code (`550`) in `text`, such as a DSN's Diagnostic-Code."""
    found = _REPLY_CODE.search(text)
    return int(found.group(1)) if found else None


def address_refused(code: int | None, text: str, status: str | None = None) -> bool:
    """Whether a permanent refusal says the address does not exist or is disabled (a hard
    bounce): by its enhanced status (`status`, else the first in `text`), else by a 550, 551 or
    553 whose `text` says the user is unknown. False for everything else (a soft bounce)."""
    found = [s for s in (enhanced_status(status or ""), enhanced_status(text)) if s is not None]
    classified = [s for s in found if not s.endswith(".0.0")]
    if classified:
        return classified[0] in ADDRESS_STATUSES
    if found and not found[0].startswith("5."):
        return False  # 4.0.0: temporary
    return code in ADDRESS_CODES and _NO_SUCH_ADDRESS.search(text) is not None


def bounce_kind(code: int | str | None, text: str, status: str | None = None) -> EventKind:
    """A permanent refusal's kind: a hard bounce when `address_refused` says so, else soft.
    `code` may come as a reporter's text (`"550"`; anything not digits is none)."""
    if isinstance(code, str):
        code = int(code) if code.isdigit() else None
    return EventKind.HARD_BOUNCE if address_refused(code, text, status) else EventKind.SOFT_BOUNCE
