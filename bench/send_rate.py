"""The fleet's send-rate bucket (store/send_rates.py) on PostgreSQL: what taking tokens costs.

`threads` threads (think: workers' chunks) each take one token per message from one bucket
whose rate is far above what they can reach, so nothing waits and the time is the take's own:
per take (one upsert and its commit) and per message with tokens taken in blocks
(`SendTokens`, the per-message path's taker). A throwaway database, dropped at the end.

Needs PostgreSQL: $PUBLISHER_TEST_POSTGRES (an admin URL) or the server on 127.0.0.1:5432.
Usage: python bench/send_rate.py [--threads 4] [--messages 2000]
Exit: 0 when it ran, 2 when no PostgreSQL answers.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fanout_plan import ADMIN, drop, throwaway_database  # noqa: E402  (bench/ is not a package)


def timed(threads: int, messages: int, take: object) -> float:
    """Messages a second that `threads` threads reach, each calling take() per message."""
    assert callable(take)

    def worker() -> None:
        for _ in range(messages):
            take()

    started = time.perf_counter()
    running = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    return threads * messages / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args(argv)
    try:
        url, admin = throwaway_database()
    except Exception as exc:  # noqa: BLE001 (any failure: no server to bench on)
        print(f"no PostgreSQL at {ADMIN.split('@')[-1]} ({type(exc).__name__})", file=sys.stderr)
        return 2
    from publisher.store import Store

    store = Store(url)
    try:
        rate = 1e9  # never waits: the take's own cost
        single = timed(1, args.messages, lambda: store.take_send_tokens("bench", 1, rate))
        print(f"1 thread, a take per message: {1000 / single:.2f} ms a take, {single:.0f} messages/s")
        shared = timed(args.threads, args.messages, lambda: store.take_send_tokens("bench", 1, rate))
        print(f"{args.threads} threads, a take per message: {shared:.0f} messages/s")
        blocks = getattr(store, "send_tokens", None)
        if blocks is not None:
            takers = threading.local()

            def take() -> None:
                if not hasattr(takers, "taker"):
                    takers.taker = blocks("bench", 200.0 * 1e6)
                takers.taker(1)

            reached = timed(args.threads, args.messages, take)
            print(f"{args.threads} threads, tokens in blocks of 50: {reached:.0f} messages/s")
    finally:
        store.close()
        drop(url, admin)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
