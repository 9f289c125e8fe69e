"""bench/scale.py's check that every reader got exactly one message (`verdict`): what it must
refuse, and the run it must pass. The run itself (a million readers, real workers) is the bench's;
tests/test_batch_fanout.py runs the same path with 5,000."""

from __future__ import annotations

from typing import Any

import pytest
from test_bench_aims import bench_module

scale = bench_module("scale")
READERS = 1200


def taken(numbers: range | list[int]) -> list[tuple[str, str]]:
    return [(f"reader{n:06d}@example.com", f"token{n}") for n in numbers]


def judged(sent: list[tuple[str, str]], uncertain: set[str], kills: int, ledger: dict[str, Any]) -> list[str]:
    """The problems `verdict` finds; the ledger agrees with `uncertain` unless `ledger` says otherwise."""
    counts = {"sent": READERS - len(uncertain), **({"uncertain": len(uncertain)} if uncertain else {})}
    result = scale.verdict(sent, READERS, ledger.get("digest", "done"), ledger.get("counts", counts), uncertain,
                           kills, [])  # fmt: skip
    assert result["passed"] == (not result["problems"])
    return list(result["problems"])


def test_a_killed_call_s_readers_uncertain_and_everyone_else_once_passes() -> None:
    """The killed worker's call in flight: 500 uncertain, of whom 300 reached the provider."""
    uncertain = {f"reader{n:06d}@example.com" for n in range(500, 1000)}
    sent = taken([n for n in range(READERS) if not 800 <= n < 1000])
    result = scale.verdict(sent, READERS, "done", {"sent": 700, "uncertain": 500}, uncertain, 1, [])
    assert result["passed"], result["problems"]
    assert (result["uncertain"], result["uncertain_received"], result["exactly_once"]) == (500, 300, 1000)


@pytest.mark.parametrize(
    ("sent", "uncertain", "kills", "ledger", "problem"),
    [
        (taken(list(range(READERS)) + [7]), set(), 0, {}, "1 readers got two messages"),
        (taken(range(1, READERS)), set(), 0, {}, "1 readers got nothing and are not uncertain"),
        (taken(range(READERS + 1)), set(), 0, {}, "1 messages to no reader"),
        (taken(range(READERS)), {f"reader{n:06d}@example.com" for n in range(501)}, 1, {}, "501 uncertain"),
        (taken(range(READERS)), {"reader000001@example.com"}, 0, {}, "1 uncertain: more than 0 call(s)"),
        (taken(range(READERS)), set(), 0, {"counts": {"sent": READERS - 1, "pending": 1}}, "the ledger has"),
        (taken(range(READERS)), set(), 0, {"digest": "paused"}, "the digest is paused"),
        (taken(range(READERS - 1)) + [("reader001199@example.com", "token0")], set(), 0, {}, "token was taken twice"),
    ],
    ids=["twice", "missing", "stranger", "too-many-uncertain", "uncertain-without-kill", "ledger", "not-done", "token"],
)
def test_the_check_refuses(sent: list[tuple[str, str]], uncertain: set[str], kills: int, ledger: dict[str, Any],
                           problem: str) -> None:  # fmt: skip
    problems = judged(sent, uncertain, kills, ledger)
    assert any(problem in p for p in problems), problems
