"""Transports deliver one message at a time; the send engine decides what to retry.

Contract (one method that matters, like httpx's transports): `send(message)` returns `Sent`
once the receiving system has taken responsibility for the message, or raises TransportError.
`TransportError.retryable` says whether trying later can help (4xx, timeouts, a dropped
connection); `uncertain` says the message may have been delivered although no answer came,
so a retry could duplicate it; `broken` says no message can go until the operator fixes
something (credentials, certificates, the sending domain). `close()` ends a batch (one SMTP connection, say).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import PublisherError

if TYPE_CHECKING:
    from ..mail import Message


@dataclass(frozen=True, slots=True)
class Sent:
    """The receiver took the message; `provider_id` is its own id for it, where it gives one."""

    provider_id: str | None = None


class TransportError(PublisherError):
    def __init__(
        self,
        message: str,
        hint: str = "",
        *,
        retryable: bool,
        uncertain: bool = False,
        broken: bool = False,
        bounced: bool = False,
    ) -> None:
        super().__init__(message, hint)
        self.retryable = retryable
        self.uncertain = uncertain
        # The receiving system says the address does not exist (at RCPT, 5.1.1 or a 550 "user
        # unknown": bounces.status): recorded as a hard bounce of the delivery.
        self.bounced = bounced
        # The transport itself cannot send (login refused, bad certificate, sender refused, an
        # API key rejected): no message can go, so the digest pauses rather than failing readers.
        self.broken = broken


class Transport(Protocol):
    def send(self, message: Message) -> Sent: ...

    def close(self) -> None: ...
