"""The fleet's send rate: a token bucket per transport in the `send_rates` table, on PostgreSQL.

Every sender (each `publisher worker` and its chunks, a `publisher run`) takes its tokens from
one row with one atomic upsert, so `[digest] messages_per_second` is the rate of them all. The
bucket refills by the time passed on the database's own clock (the machines' clocks never
meet), holds at most one second of sending, and may go below zero: a taker gets its tokens at
once and waits until the debt is paid back (`-tokens / rate`), so takers are served in the
order the row lock serves them and none waits longer than the tokens taken before it. SQLite
stores send from one process and pace it there (delivery.Sender).

A take's commit is asynchronous (`synchronous_commit = off`): a bucket update lost in a crash
costs at most a moment's extra sending, and the flush to disk cost 2 ms a take. A sender sending
one message at a time takes its tokens in blocks (`SendTokens`: up to a second's worth, 50 at
most) and spends them paced as the bucket would have paced them one by one; what it has not
spent when its run ends goes back."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import Engine

# One statement under the row's lock: refill by the time passed, take `n`, keep the new state.
_TAKE = text(
    """
    INSERT INTO send_rates (transport, tokens, refilled_at)
    VALUES (:transport, :burst - :n, extract(epoch FROM clock_timestamp()))
    ON CONFLICT (transport) DO UPDATE SET
        tokens = LEAST(
            :burst,
            LEAST(
                :burst,
                send_rates.tokens
                    + GREATEST(0, extract(epoch FROM clock_timestamp()) - send_rates.refilled_at) * :rate
            ) - :n
        ),
        refilled_at = GREATEST(send_rates.refilled_at, extract(epoch FROM clock_timestamp()))
    RETURNING tokens
    """
)


class SendRateStore:
    engine: Engine

    def take_send_tokens(self, transport: str, count: int, per_second: float) -> float:
        """Take `count` tokens from `transport`'s bucket (refilled at `per_second`, holding one
        second's worth): the seconds to wait before sending them (0 when they were there)."""
        burst = max(1.0, per_second)
        params = {"transport": transport[:40], "n": float(count), "burst": burst, "rate": per_second}
        with self.engine.begin() as conn:
            conn.execute(_ASYNC_COMMIT)
            tokens = float(conn.execute(_TAKE, params).scalar_one())
        return max(0.0, -tokens) / per_second

    def send_tokens(self, transport: str, per_second: float) -> SendTokens:
        """A sender's taker from `transport`'s bucket, in blocks (see the module's docstring)."""
        return SendTokens(lambda n: self.take_send_tokens(transport, n, per_second), per_second)


_ASYNC_COMMIT = text("SET LOCAL synchronous_commit = off")
BLOCK_MOST = 50  # tokens a take reserves at most for the messages after it


class SendTokens:
    """Tokens taken from a bucket in blocks of up to min(rate, BLOCK_MOST) and spent here:
    `take(n)` gives the seconds to wait before sending n messages, the same wait a take of
    exactly n would give (the bucket pays a block's i-th token (block - i) / rate before its
    last), so the fleet's rate holds; `give_back` returns what is left when the sender stops."""

    def __init__(self, take: Callable[[int], float], per_second: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._take, self.per_second, self.monotonic = take, per_second, monotonic
        self.block = max(1, min(int(per_second), BLOCK_MOST))
        self.reserve = 0  # tokens taken and not yet spent
        self.last_paid = 0.0  # monotonic time the last of them is paid for

    def __call__(self, count: int) -> float:
        if count > self.reserve:
            need = count - self.reserve
            taken = max(need, self.block)
            self.last_paid = self.monotonic() + self._take(taken)
            self.reserve += taken
        self.reserve -= count
        return max(0.0, self.last_paid - self.reserve / self.per_second - self.monotonic())

    def give_back(self) -> None:
        if self.reserve:
            self._take(-self.reserve)
            self.reserve = 0
