"""What every provider's door shares: the request as received, the two ways one is turned away,
what a verified one yields, the replay guard, and small readers of times and JSON.

A door verifies a request as its provider documents it and turns it into `MailEvent`s. It
raises `Refused` when the request is not the provider's (a bad or missing signature, a stale
timestamp: answered 401, nothing changed) and `Malformed` when it is, but says nothing we can
read (400); `Unavailable` when it cannot be checked now (503). Replays are caught by
`ReplayGuard`, keyed by what the provider never sends twice.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ..events import RAW_LIMIT, MailEvent

# The custom variable (Mailgun `v:`, SendGrid custom_args, Postmark Metadata, Resend tags) that
# carries a delivery's token, for the providers that echo those and not headers. SES echoes the
# original's X-Publisher-Delivery header instead ("Include original headers"), DirectMail the
# X-User-Notify-Publisher-Delivery header its transport sends.
DELIVERY_VARIABLE = "publisher_delivery"

FUTURE_SKEW = 300.0  # seconds a timestamp may lie ahead of our clock (the two clocks differ)


class Refused(Exception):
    """The request is not verifiably the provider's: 401, logged, nothing changed."""


class Malformed(Exception):
    """The provider's request, verified, in a shape we cannot read: 400, logged."""


class Unavailable(Exception):
    """The request cannot be verified now (the provider's certificate could not be fetched):
    503, so the provider tries again later."""


@dataclass(frozen=True)
class HookRequest:
    """One POST as received: the raw body (signatures cover its bytes), the headers with
    lower-cased names, and the query's parameters."""

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True)
class Verified:
    """A verified request's events, and the key it must not be accepted again under, which the
    guard remembers until `seen_until` (epoch seconds; past it the request is stale anyway)."""

    events: list[MailEvent]
    replay_key: str
    seen_until: float


class Door(Protocol):
    """One provider's webhook: verify, then read."""

    name: str

    def receive(self, request: HookRequest) -> Verified: ...


class SpentKeys(Protocol):
    """Where accepted replay keys are kept: the store (`FormTokenStore`), shared by every process."""

    def spend_once(self, key: str, expires: datetime, now: datetime) -> bool: ...

    def unspend(self, key: str) -> None: ...


class ReplayGuard:
    """The replay keys accepted lately, each kept until its request would be stale anyway, in
    the store: a replay is refused whichever of several web processes it reaches, and after a
    restart. (The store also keeps an event whose id it already holds only once,
    events.MailEvent.event_id.)"""

    PREFIX = "webhook "  # beside the embedded form's tokens in one table; those hold no space

    def __init__(self, kept: SpentKeys, clock: Callable[[], float] = time.time) -> None:
        self.kept, self.clock = kept, clock

    def claim(self, key: str, until: float) -> bool:
        """True the first time `key` is offered (it is then kept until `until`, epoch seconds);
        False for a replay."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        expires = datetime.fromtimestamp(max(until, self.clock()), UTC)
        return self.kept.spend_once(self.PREFIX + key, expires, now)

    def release(self, key: str) -> None:
        """Forget `key`: its events could not be recorded, so the provider's retry must pass."""
        self.kept.unspend(self.PREFIX + key)


def same(given: str | bytes, expected: str | bytes) -> bool:
    """Constant-time equality of two secrets or signatures."""
    a = given.encode() if isinstance(given, str) else given
    b = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


def check_fresh(moment: float, now: float, max_age: float, what: str) -> None:
    """Refuse a request dated more than `max_age` seconds ago, or too far ahead of our clock."""
    if moment < now - max_age:
        raise Refused(f"stale: {what} is {int(now - moment)} s old, more than {int(max_age)} s")
    if moment > now + FUTURE_SKEW:
        raise Refused(f"{what} is {int(moment - now)} s ahead of this machine's clock")


def parse_time(value: Any, what: str) -> datetime:
    """An ISO 8601 time or epoch seconds as an aware datetime (naive ISO times are UTC)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise Malformed(f"{what} {value[:40]!r} is not an ISO 8601 time") from None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    raise Malformed(f"{what} is missing")


def load_json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed(f"{what} is not JSON: {exc}") from None


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not a JSON object")
    return value


def obj(value: Any) -> dict[str, Any]:
    """A field that should be a JSON object, or {} when it is absent or something else."""
    return value if isinstance(value, dict) else {}


def text(value: Any) -> str:
    """A field as a stripped string; absent or null as ''."""
    return "" if value is None else str(value).strip()


def raw_json(value: Any) -> str:
    """An event as received, cut to RAW_LIMIT characters, for the record."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)[:RAW_LIMIT]


def reason_of(*parts: Any) -> str:
    """The non-empty parts, joined: an SMTP code, its text, the provider's words."""
    return " ".join(dict.fromkeys(t for t in (text(p) for p in parts) if t))[:1000]
