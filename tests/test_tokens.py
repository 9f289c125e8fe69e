"""Signed, expiring tokens: forged, swapped, expired, truncated and orphaned ones are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.tokens import TokenError, make_token, read_token

KEY = b"k" * 32
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
PEOPLE = {7: "张三@例子.中国", 8: "b@example.org", 123456789: "c@example.org"}


def who(subscriber: int) -> str | None:
    return PEOPLE.get(subscriber)


def test_round_trip_and_short_enough_for_one_header_line() -> None:
    for subscriber, email in PEOPLE.items():
        token = make_token(KEY, "unsubscribe", subscriber, email, NOW + timedelta(days=365))
        assert token.isascii() and "/" not in token and "+" not in token and "=" not in token
        assert read_token(KEY, token, "unsubscribe", NOW, who) == subscriber
        # " <https://www.example.org/unsubscribe/TOKEN>" must fit in 78 columns
        assert len(" <https://www.example.org/unsubscribe/>") + len(token) <= 78


def test_expired() -> None:
    token = make_token(KEY, "confirm", 8, "b@example.org", NOW + timedelta(days=7))
    assert read_token(KEY, token, "confirm", NOW + timedelta(days=6), who) == 8
    with pytest.raises(TokenError, match="expired"):
        read_token(KEY, token, "confirm", NOW + timedelta(days=8), who)


def test_other_purpose_other_key_other_address_and_tampering_are_refused() -> None:
    token = make_token(KEY, "unsubscribe", 8, "b@example.org", NOW + timedelta(days=1))
    with pytest.raises(TokenError, match="not a confirm"):
        read_token(KEY, token, "confirm", NOW, who)
    with pytest.raises(TokenError, match="bad signature"):
        read_token(b"x" * 32, token, "unsubscribe", NOW, who)
    with pytest.raises(TokenError, match="bad signature"):  # the id now belongs to someone else
        read_token(KEY, token, "unsubscribe", NOW, {8: "new@example.org"}.get)
    with pytest.raises(TokenError, match="bad signature"):  # the subscriber was deleted
        read_token(KEY, token, "unsubscribe", NOW, lambda _id: None)
    other = make_token(KEY, "unsubscribe", 7, PEOPLE[7], NOW + timedelta(days=1))
    spliced = other.split(".")[0] + "." + ".".join(token.split(".")[1:])
    with pytest.raises(TokenError):
        read_token(KEY, spliced, "unsubscribe", NOW, who)
    later = token.split(".")[0] + ".zzzzzz." + token.split(".")[2]  # a forged expiry
    with pytest.raises(TokenError):
        read_token(KEY, later, "unsubscribe", NOW, who)
    for broken in ("", ".", "..", "abc", token[:-1], token + "A", "中.文.字", "u08" + token[2:], "x8.1.a"):
        with pytest.raises(TokenError):
            read_token(KEY, broken, "unsubscribe", NOW, who)


def test_weak_keys_and_unknown_purposes_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        make_token(b"short", "confirm", 1, "a@example.org", NOW)
    with pytest.raises(ValueError):
        make_token(KEY, "login", 1, "a@example.org", NOW)


@given(st.text(max_size=60))
def test_any_string_is_refused_cleanly(garbage: str) -> None:
    with pytest.raises(TokenError):
        read_token(KEY, garbage, "unsubscribe", NOW, who)


def test_signed_or_huge_numbers_are_refused_at_once() -> None:
    # int("-1", 36) and then base-36 spelling of a negative number once looped for ever
    for token in ("u-1.abc.AAAAAAAAAAAAAAAAAAAAAA", "u1.-5.AAAAAAAAAAAAAAAAAAAAAA", "u" + "z" * 90 + ".1.x"):
        with pytest.raises(TokenError, match="malformed"):
            read_token(KEY, token, "unsubscribe", NOW, who)
