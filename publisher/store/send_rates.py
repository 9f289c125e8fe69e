"""The fleet's send rate: a token bucket per transport in the `send_rates` table, on PostgreSQL.

Every sender (each `publisher worker` and its chunks, a `publisher run`) takes its tokens from
one row with one atomic upsert, so `[digest] messages_per_second` is the rate of them all. The
bucket refills by the time passed on the database's own clock (the machines' clocks never
meet), holds at most one second of sending, and may go below zero: a taker gets its tokens at
once and waits until the debt is paid back (`-tokens / rate`), so takers are served in the
order the row lock serves them and none waits longer than the tokens taken before it. SQLite
stores send from one process and pace it there (delivery.Sender)."""

from __future__ import annotations

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
            send_rates.tokens
                + GREATEST(0, extract(epoch FROM clock_timestamp()) - send_rates.refilled_at) * :rate
        ) - :n,
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
            tokens = float(conn.execute(_TAKE, params).scalar_one())
        return max(0.0, -tokens) / per_second
