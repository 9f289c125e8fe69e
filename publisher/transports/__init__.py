"""Transports deliver one message at a time; the send engine decides what to retry.

Contract (one method that matters, like httpx's transports): `send(message)` returns `Sent`
once the receiving system has taken responsibility for the message, or raises TransportError.
`TransportError.retryable` says whether trying later can help (4xx, timeouts, a dropped
connection); `uncertain` says the message may have been delivered although no answer came,
so a retry could duplicate it; `broken` says no message can go until the operator fixes
something (credentials, certificates, the sending domain). `close()` ends a batch (one SMTP connection, say).

A `BatchTransport` (transports/batch.py: the HTTP APIs that take many messages in one call)
adds two methods: `calls(messages)` says how the messages go out, as the indices of each
call's messages (every call within the provider's limit), and `send_batch(messages)` makes one
such call and returns each message's own outcome, a `Sent` or a `TransportError`, in order; it
raises TransportError when the call as a whole failed (then that error is every message's).

A `SplitTransport` (SMTP) sends in two steps: `start(message)` hands it over and `finish()`
waits for the receiver's answer, so the send engine builds the next message while the receiver
reads this one (and SMTP sends the next one's envelope with this one's end: `following`).
`split(transport)` gives any transport those two steps (`Answered`: it sends in `start`, and
`finish` gives its answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

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


@runtime_checkable
class BatchTransport(Protocol):
    limit: int  # messages one call takes at most

    def calls(self, messages: Sequence[Message]) -> list[list[int]]: ...

    def send_batch(self, messages: Sequence[Message]) -> list[Sent | TransportError]: ...

    def send(self, message: Message) -> Sent: ...

    def close(self) -> None: ...


@runtime_checkable
class SplitTransport(Protocol):
    """`send` in two steps: `start` hands the message over (raising TransportError when it
    could not), `finish` waits for the receiver's answer to it. One message at a time;
    `following` names the message the caller means to start next, when it knows it (SMTP
    announces its envelope ahead), and is only a hint: the next `start` may be another's."""

    def start(self, message: Message, following: Message | None = None) -> None: ...

    def finish(self) -> Sent: ...

    def send(self, message: Message) -> Sent: ...

    def close(self) -> None: ...


class Answered:
    """A transport's `send` as a SplitTransport's two steps: sent in `start`, whose answer or
    error `finish` gives."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._answer: Sent | TransportError | None = None

    def start(self, message: Message, following: Message | None = None) -> None:
        try:
            self._answer = self.transport.send(message)
        except TransportError as exc:
            self._answer = exc

    def finish(self) -> Sent:
        answer, self._answer = self._answer, None
        assert answer is not None, "finish() without start()"
        if isinstance(answer, TransportError):
            raise answer
        return answer

    def send(self, message: Message) -> Sent:
        return self.transport.send(message)

    def close(self) -> None:
        self.transport.close()


def split(transport: Transport) -> SplitTransport:
    """`transport` in two steps: itself when it is a SplitTransport, else `Answered`."""
    return transport if isinstance(transport, SplitTransport) else Answered(transport)
