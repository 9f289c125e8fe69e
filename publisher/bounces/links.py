"""The per-delivery token that links a bounce or complaint to the delivery it answers. Pure.

A token is `d<delivery id>-<signature>`, e.g. `d2s-k3xq7mbe5tnd0v2a` (about 20 characters):
the delivery's id in base 36 and an HMAC-SHA256 over the id *and the delivery's address*,
cut to 80 bits, in lower-case base 32. Lower case and digits only, so it survives in an
e-mail address's local part (VERP: `bounces+<token>@example.org`, which some systems fold
to lower case) and in any provider's custom header or variable. It does not expire (a bounce
may come days later), and it holds only for the address the delivery went to: a store restored
from a backup, whose ids were handed out again, does not let an old token name another reader.

Every digest message carries it in the `X-Publisher-Delivery` header (DELIVERY_HEADER), and,
with `[bounces] return_path` set, in the envelope sender the SMTP transport uses as MAIL FROM.
"""

from __future__ import annotations

import base64
import hmac
import re

from ..tokens import base36

_SHAPE = re.compile(r"d([0-9a-z]{1,12})-([a-z2-7]{16})")


def _signature(key: bytes, delivery_id: int, email_key: str) -> str:
    digest = hmac.digest(key, f"delivery.{delivery_id}.{email_key}".encode(), "sha256")[:10]
    return base64.b32encode(digest).decode("ascii").lower()


def make_delivery_token(key: bytes, delivery_id: int, email_key: str) -> str:
    """The token of delivery `delivery_id`, sent to `email_key` (the lower-cased address)."""
    if len(key) < 16:
        raise ValueError("the signing key must have at least 16 bytes")
    if delivery_id < 0:
        raise ValueError("delivery ids are not negative")
    return f"d{base36(delivery_id)}-{_signature(key, delivery_id, email_key)}"


def token_delivery_id(token: str) -> int | None:
    """The delivery id a token names, None when it is not shaped like one (not yet checked:
    see `delivery_token_valid`)."""
    found = _SHAPE.fullmatch(token.strip().lower())
    if found is None:
        return None
    number = int(found.group(1), 36)
    return number if base36(number) == found.group(1) else None  # one spelling per token


def delivery_token_valid(key: bytes, token: str, email_key: str) -> bool:
    """Whether `token` was made with `key` for its delivery id and `email_key`."""
    found = _SHAPE.fullmatch(token.strip().lower())
    if found is None:
        return False
    expected = _signature(key, int(found.group(1), 36), email_key)
    return hmac.compare_digest(expected, found.group(2))


def verp_address(return_path: str, token: str) -> str:
    """`bounces@example.org` with `token` as `bounces+<token>@example.org`: the envelope
    sender (Return-Path) whose bounces name their delivery."""
    local, _at, domain = return_path.rpartition("@")
    return f"{local}+{token}@{domain}"


def token_from_address(address: str, return_path: str) -> str | None:
    """The token in a VERP address made by `verp_address` for `return_path` (the address a
    bounce was sent to: its To, Delivered-To or X-Original-To), else None."""
    local, _at, domain = return_path.lower().rpartition("@")
    found = address.strip().strip("<>").lower()
    prefix, suffix = f"{local}+", f"@{domain}"
    if not (found.startswith(prefix) and found.endswith(suffix)):
        return None
    token = found[len(prefix) : -len(suffix)]
    return token if token_delivery_id(token) is not None else None
