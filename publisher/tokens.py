"""Signed, expiring tokens for the links in mail: confirm, unsubscribe, preferences. Pure.

A token is `<payload>.<signature>`, both base64url without padding: the payload is JSON with
the purpose, the subject (whom it is for) and the expiry; the signature is HMAC-SHA256 over
the payload with the site's key. A token made for one purpose is refused for another, so an
unsubscribe link cannot confirm anybody.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

PURPOSES = frozenset({"confirm", "unsubscribe", "preferences"})


class TokenError(ValueError):
    """The token is malformed, forged, made for another purpose, or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def make_token(key: bytes, purpose: str, subject: str, expires: datetime) -> str:
    """A token saying `subject` may do `purpose` until `expires` (aware)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    if len(key) < 16:
        raise ValueError("the signing key must have at least 16 bytes")
    body = {"p": purpose, "s": subject, "e": int(expires.astimezone(UTC).timestamp())}
    payload = _b64(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    return f"{payload}.{_signature(key, payload)}"


def read_token(key: bytes, token: str, purpose: str, now: datetime) -> str:
    """The subject of a valid, unexpired token for `purpose`; TokenError otherwise."""
    payload, dot, signature = token.partition(".")
    if not dot or not payload.isascii() or not signature.isascii():
        raise TokenError("malformed token")
    if not hmac.compare_digest(_signature(key, payload), signature):
        raise TokenError("bad signature")
    try:
        body = json.loads(_unb64(payload))
        token_purpose, subject, expires = body["p"], body["s"], int(body["e"])
    except (ValueError, KeyError, TypeError) as exc:
        raise TokenError("malformed token") from exc
    if token_purpose != purpose:
        raise TokenError(f"a {token_purpose} token, not a {purpose} one")
    if now.astimezone(UTC).timestamp() > expires:
        raise TokenError("expired")
    if not isinstance(subject, str):
        raise TokenError("malformed token")
    return subject
