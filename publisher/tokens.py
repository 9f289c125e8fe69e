"""Signed, expiring tokens for the links in mail (confirm, unsubscribe, preferences) and for the
embeddable sign-up form. Pure.

A token is `<purpose><subscriber id>.<expiry>.<signature>`, e.g. `u2s.tgb3k0.Zk3…` (35 or so
characters, so that `List-Unsubscribe: <https://…/unsubscribe/TOKEN>` fits a 78-column
header line). Id and expiry are base 36; the signature is HMAC-SHA256, cut to 128 bits, over
purpose, id, expiry *and the subscriber's address*, base64url. So a token names its
subscriber without revealing the address, works only while that id still belongs to that
address, and a token made for one purpose is refused for another: an unsubscribe link
cannot confirm anybody. A `signup` token names a sign-up request (store.signups) instead of a
subscriber, signed over the address the request was made for. A `form` token names a random
number instead: the embeddable sign-up form's (web/embed.py), good for one sign-up.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Callable
from datetime import UTC, datetime

PURPOSES = {"confirm": "c", "signup": "s", "unsubscribe": "u", "preferences": "p", "form": "f"}
_NAMES = {letter: name for name, letter in PURPOSES.items()}
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
# Checked before any number is parsed: int() of a long or signed string is never reached.
_SHAPE = re.compile(r"[a-z][0-9a-z]{1,12}\.[0-9a-z]{1,12}\.[A-Za-z0-9_-]{22}")


class TokenError(ValueError):
    """The token is malformed, forged, made for another purpose, or expired."""


def base36(number: int) -> str:
    """`number` (not negative) in lower-case base 36: the ids in our tokens."""
    out = ""
    while True:
        number, digit = divmod(number, 36)
        out = _DIGITS[digit] + out
        if not number:
            return out


def _signature(key: bytes, letter: str, subscriber: int, expires: int, email_key: str) -> str:
    message = f"{letter}.{subscriber}.{expires}.{email_key}".encode()
    digest = hmac.digest(key, message, "sha256")[:16]  # one call in C: a digest signs three per message
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_token(key: bytes, purpose: str, subscriber: int, email_key: str, expires: datetime) -> str:
    """A token saying subscriber `subscriber` (address `email_key`) may do `purpose` until
    `expires` (aware)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    if len(key) < 16:
        raise ValueError("the signing key must have at least 16 bytes")
    if subscriber < 0:
        raise ValueError("subscriber ids are not negative")
    letter, until = PURPOSES[purpose], int(expires.astimezone(UTC).timestamp())
    return f"{letter}{base36(subscriber)}.{base36(until)}.{_signature(key, letter, subscriber, until, email_key)}"


def expiry(token: str) -> datetime:
    """When a token (already checked by read_token) expires."""
    return datetime.fromtimestamp(int(token.split(".")[1], 36), UTC)


def read_token(key: bytes, token: str, purpose: str, now: datetime, email_of: Callable[[int], str | None]) -> int:
    """The subscriber id of a valid, unexpired token for `purpose`; TokenError otherwise.

    `email_of` gives the address key of a subscriber id (None: no such subscriber)."""
    parts = token.split(".")
    if len(parts) != 3 or not token.isascii() or len(token) > 100:
        raise TokenError("malformed token")
    head, until_text, signature = parts
    if not _SHAPE.fullmatch(token):
        raise TokenError("malformed token")
    letter, subscriber, until = head[:1], int(head[1:], 36), int(until_text, 36)
    if head[1:] != base36(subscriber) or until_text != base36(until):  # one spelling per token
        raise TokenError("malformed token")
    if letter not in _NAMES:
        raise TokenError("malformed token")
    if _NAMES[letter] != purpose:
        raise TokenError(f"a {_NAMES[letter]} token, not a {purpose} one")
    email_key = email_of(subscriber)
    if email_key is None or not hmac.compare_digest(_signature(key, letter, subscriber, until, email_key), signature):
        raise TokenError("bad signature")
    if now.astimezone(UTC).timestamp() > until:
        raise TokenError("expired")
    return subscriber
