"""Signed, expiring tokens: forged, swapped, expired and truncated ones are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.tokens import TokenError, make_token, read_token

KEY = b"k" * 32
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def test_round_trip() -> None:
    token = make_token(KEY, "unsubscribe", "张三@例子.中国", NOW + timedelta(days=365))
    assert token.isascii() and "/" not in token and "+" not in token and "=" not in token  # URL-safe as it is
    assert read_token(KEY, token, "unsubscribe", NOW) == "张三@例子.中国"


def test_expired() -> None:
    token = make_token(KEY, "confirm", "a@example.org", NOW + timedelta(days=7))
    assert read_token(KEY, token, "confirm", NOW + timedelta(days=6)) == "a@example.org"
    with pytest.raises(TokenError, match="expired"):
        read_token(KEY, token, "confirm", NOW + timedelta(days=8))


def test_other_purpose_other_key_and_tampering_are_refused() -> None:
    token = make_token(KEY, "unsubscribe", "a@example.org", NOW + timedelta(days=1))
    with pytest.raises(TokenError, match="not a confirm"):
        read_token(KEY, token, "confirm", NOW)
    with pytest.raises(TokenError, match="bad signature"):
        read_token(b"x" * 32, token, "unsubscribe", NOW)
    other = make_token(KEY, "unsubscribe", "b@example.org", NOW + timedelta(days=1))
    spliced = token.split(".")[0] + "." + other.split(".")[1]
    with pytest.raises(TokenError):
        read_token(KEY, spliced, "unsubscribe", NOW)
    for broken in ("", ".", "abc", token[:-1], token + "A", "中.文"):
        with pytest.raises(TokenError):
            read_token(KEY, broken, "unsubscribe", NOW)


def test_weak_keys_and_unknown_purposes_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        make_token(b"short", "confirm", "a", NOW)
    with pytest.raises(ValueError):
        make_token(KEY, "login", "a", NOW)


@given(st.text(max_size=40))
def test_any_string_is_refused_cleanly(garbage: str) -> None:
    with pytest.raises(TokenError):
        read_token(KEY, garbage, "unsubscribe", NOW)
