"""Scale-out bench: a digest planned and sent to a million generated readers by 1, 2 and 4
`publisher worker` processes through a loopback double of Postmark's batch API (issue 14).

One throwaway PostgreSQL database is prepared once (the week of a 13-category news site,
bench/corpus.py's 80 articles, ingested; `--readers` readers choosing 1 to 3 categories, a fifth
none, written with one bulk insert: bench/mail.py's set-up), and each run gets a copy of it
(CREATE DATABASE ... TEMPLATE). A run, for a number of workers:

1. plans the digest with `publisher digest send` in its own process (`[fanout]`: each chunk's
   deliveries written with its Procrastinate job in one transaction);
2. starts the workers (`publisher worker`, real processes, each with its own double of
   Postmark's `/email/batch`, tests/provider_double.py, so each worker's messages are counted;
   the doubles answer every `--throttle-every`-th call with 429 Retry-After 1 and every
   `--unavailable-every`-th with 503); with more than one worker, SIGKILLs the first once
   `--kill-at` of the readers have been sent;
3. waits for the digest to be done, stops the others (SIGTERM), and checks every reader got
   exactly one message: nobody twice in the doubles' logs, every reader missing from them
   `uncertain` in the ledger, at most one call's worth (500) uncertain per killed worker, the
   ledger's counts agree, every message its own delivery token.

It reports messages per second (overall, from the workers' start to the digest done, and each
worker's own while it ran), the database's size (pg_database_size, the deliveries table), each
process's peak RSS (VmHWM: sampled from /proc every half second, and read by the process itself
at its exit) and CPU seconds, and the machine's CPU the rest used (the doubles, PostgreSQL).

The send rate is set far above what the fleet reaches (`--rate`, 100,000 a second: the workers
still take their tokens from the store's bucket), `[mail] batch_size = 500` (Postmark's limit),
`[fanout] chunk = 1000`, `concurrency = 1`, `heartbeat = "2s"`, `stalled_after = "10s"` (the
killed worker's chunk is taken over after that), `[digest] retry_after = ["2s"]`.

Usage: python bench/scale.py [--readers 1000000] [--workers 1,2,4] [--quick]
Needs PostgreSQL ($PUBLISHER_TEST_POSTGRES or 127.0.0.1:5432, bench/postgres_site.py) and the
`postgres` extra. Writes bench/out/scale.md and .json. Exit: 0 when every run passed its checks,
1 when one failed or crashed, 2 when no PostgreSQL answers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import make_url

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))

from fleet import PostgresCpu, Proc, machine_busy  # noqa: E402
from mail import add_subscribers  # noqa: E402  (bench/ is not a package)
from postgres_site import drop, no_postgres, site_lines, throwaway_database, write_content  # noqa: E402
from provider_double import BATCH_LIMIT, PostmarkDouble  # noqa: E402

OUT_DIR = BENCH_DIR / "out"
WORK = OUT_DIR / "scale"
QUICK_READERS = 20_000


def prepare(readers: int, articles: int) -> tuple[str, object, float]:
    """The template database: the week ingested and `readers` readers; its URL, admin engine,
    and the seconds it took."""
    from publisher.app import App
    from publisher.config import load_settings
    from publisher.model import BuildReport

    started = time.perf_counter()
    content = WORK / "content"
    write_content(content, articles)
    url, admin = throwaway_database()
    folder = WORK / "template"
    folder.mkdir()
    config = folder / "publisher.toml"
    config.write_text("\n".join(site_lines(folder, url, content)) + "\n", encoding="utf-8")
    app = App(load_settings(config))
    try:
        app.build(BuildReport())
        add_subscribers(app.store.engine, [c.slug for c in app.categories], readers)
    finally:
        app.close()
        app.store.engine.dispose()
    return url, admin, time.perf_counter() - started


def write_config(folder: Path, url: str, api: str, args: argparse.Namespace) -> Path:
    lines = site_lines(folder, url, WORK / "content") + [
        "[mail]", 'transport = "postmark"', f"batch_size = {BATCH_LIMIT}",
        "[mail.postmark]", 'api_key_env = "POSTMARK_TOKEN"', f'base_url = "{api}"',
        "[digest]", f"messages_per_second = {args.rate}", 'retry_after = ["2s"]', "pause_after = 1000",
        'postal_address = "云川市高新区创新大道 1 号 高新技术产业研究院"',
        "[fanout]", "enabled = true", f"chunk = {args.chunk}", f"concurrency = {args.concurrency}",
        'heartbeat = "2s"', 'stalled_after = "10s"',
    ]  # fmt: skip
    path = folder / f"publisher-{api.rsplit(':', 1)[-1]}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def query(url: str, *statements: str) -> list[list[tuple[object, ...]]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [list(conn.execute(text(s)).all()) for s in statements]
    finally:
        engine.dispose()


def quiet(handle_error: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """The double's server's error handler, silent on the connection a SIGKILLed worker left."""

    def handle(request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            handle_error(request, client_address)

    return handle


def digest_status(url: str) -> str:
    rows = query(url, "select status from digests")[0]
    return str(rows[0][0]) if rows else ""


def run(template_url: str, workers: int, args: argparse.Namespace) -> dict[str, object]:
    """One run with `workers` workers (the first SIGKILLed mid-run when there are several)."""
    folder = WORK / f"run-{workers}"
    folder.mkdir()
    url, admin = throwaway_database(make_url(template_url).database)
    doubles = [PostmarkDouble(throttle_every=args.throttle_every, unavailable_every=args.unavailable_every)
               for _ in range(workers)]  # fmt: skip
    procs: list[Proc] = []
    try:
        for api in doubles:
            api.server.handle_error = quiet(api.server.handle_error)  # type: ignore[method-assign]
            api.__enter__()
        configs = [write_config(folder, url, api.url, args) for api in doubles]
        today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
        planner = Proc.start("planner", configs[0], "digest", "send", "--since", f"{today - timedelta(days=20)}",
                             "--until", f"{today}")  # fmt: skip
        procs.append(planner)
        while not planner.reap():
            planner.sample()
            time.sleep(0.2)
        plan_s = planner.ended - planner.started
        if planner.returncode != 0 or b"handed to the workers" not in (folder / "planner.out").read_bytes():
            raise RuntimeError(f"the plan failed ({planner.returncode}): {planner.errors()}")
        print(f"  planned in {plan_s:.1f} s (peak {planner.peak_mb:.0f} MB); sending with {workers} worker(s)",
              flush=True)  # fmt: skip

        busy, own_cpu, postgres, started = machine_busy(), time.process_time(), PostgresCpu(), time.monotonic()
        fleet = [Proc.start(f"worker{i + 1}", configs[i], "worker", "--name", f"worker{i + 1}") for i in range(workers)]
        procs += fleet
        killed: Proc | None = None
        at_kill, first = 0, 0.0
        deadline = started + args.timeout
        last_check = 0.0
        while True:
            for p in fleet:
                p.sample()
                p.reap()
            sent = sum(len(api.taken) for api in doubles)
            first = first or (time.monotonic() if sent else 0.0)
            if workers > 1 and killed is None and sent >= args.kill_at * args.readers:
                killed, at_kill = fleet[0], sent
                killed.popen.send_signal(signal.SIGKILL)
                killed.reap(block=True)
                print(f"  SIGKILLed {killed.name} after {killed.ended - started:.1f} s, {sent:,} sent", flush=True)
            if all(p.returncode is not None for p in fleet):
                raise RuntimeError(f"every worker ended: {fleet[-1].errors()}")
            now = time.monotonic()
            if now - last_check >= 1.0:
                last_check = now
                postgres.sample()
                if digest_status(url) == "done":
                    break
                if now > deadline:
                    raise RuntimeError(f"not done after {args.timeout} s: {sent:,} sent")
            time.sleep(0.25)
        elapsed = time.monotonic() - started
        postgres.sample()
        machine_s, doubles_s, postgres_s = machine_busy() - busy, time.process_time() - own_cpu, postgres.seconds()
        for p in fleet:
            if p.returncode is None:
                p.popen.send_signal(signal.SIGTERM)
        for p in fleet:
            p.reap(block=True)

        checks = check(url, doubles, args.readers, 1 if killed else 0)
        status, sizes = query(url, "select status, count(*) from deliveries group by status",
                              "select pg_database_size(current_database()), pg_total_relation_size('deliveries'),"
                              " pg_total_relation_size('subscribers')")  # fmt: skip
        worker_rows = []
        for p, api in zip(fleet, doubles, strict=True):
            ran = (p.ended if p is killed else started + elapsed) - p.started
            worker_rows.append({"name": p.name, "messages": len(api.taken), "seconds": ran,
                                "per_second": len(api.taken) / ran, "peak_mb": p.peak_mb, "cpu_s": p.cpu_s,
                                "cpu_ms_per_message": 1000 * p.cpu_s / max(1, len(api.taken)),
                                "killed": p is killed, "exit": p.returncode})  # fmt: skip
        workers_cpu = sum(p.cpu_s for p in fleet)
        return {
            "workers": workers, "plan_s": plan_s, "planner_peak_mb": planner.peak_mb, "planner_cpu_s": planner.cpu_s,
            "send_s": elapsed, "messages": sum(len(a.taken) for a in doubles),
            "per_second": sum(len(a.taken) for a in doubles) / elapsed, "at_kill": at_kill,
            "first_message_s": first - started,
            "calls": sum(a.calls for a in doubles), "throttled": sum(a.throttled for a in doubles),
            "unavailable": sum(a.unavailable for a in doubles), "worker_rows": worker_rows,
            "ledger": {str(s): int(n) for s, n in status}, "database_mb": sizes[0][0] / 2**20,
            "deliveries_mb": sizes[0][1] / 2**20, "subscribers_mb": sizes[0][2] / 2**20,
            "cpu": {"machine_s": machine_s, "workers_s": workers_cpu, "doubles_s": doubles_s, "postgres_s": postgres_s,
                    "others_s": machine_s - workers_cpu - doubles_s - postgres_s},
            "checks": checks,
        }  # fmt: skip
    finally:
        for p in procs:
            if p.returncode is None:
                p.popen.kill()
                p.reap(block=True)
        for api in doubles:
            api.__exit__(None, None, None)
        drop(url, admin)


def check(url: str, doubles: list[PostmarkDouble], readers: int, kills: int) -> dict[str, object]:
    """Every reader got exactly one message: the doubles' logs against the readers and the ledger."""
    digest, counts, uncertain = query(url, "select status from digests",
                                      "select status, count(*) from deliveries group by status",
                                      "select email_key from deliveries where status = 'uncertain'")  # fmt: skip
    taken = [pair for api in doubles for pair in api.taken]
    problems = [f"the double saw: {p}" for api in doubles for p in api.problems[:3]]
    return verdict(taken, readers, str(digest[0][0]), {str(s): int(n) for s, n in counts},  # type: ignore[call-overload]
                   {str(row[0]) for row in uncertain}, kills, problems)  # fmt: skip


def verdict(taken: list[tuple[str, str]], readers: int, digest: str, ledger: dict[str, int], uncertain: set[str],
            kills: int, problems: list[str]) -> dict[str, object]:  # fmt: skip
    """The check of one run: `taken` the (recipient, delivery token) of every message the
    provider took, the readers reader000000@example.com on, the digest's status, its deliveries
    by status, the uncertain addresses, and how many workers were killed. Passed when nobody got
    two, everyone missing is uncertain, at most one call's worth is uncertain per kill, the
    ledger says sent for the rest, and each message is its own delivery."""
    per_reader = Counter(to for to, _token in taken)
    everyone = {f"reader{n:06d}@example.com" for n in range(readers)}
    twice = sum(1 for n in per_reader.values() if n > 1)
    missing, strangers = everyone - set(per_reader), set(per_reader) - everyone
    expected = {"sent": readers - len(uncertain), **({"uncertain": len(uncertain)} if uncertain else {})}
    problems = [
        *([f"the digest is {digest}, not done"] if digest != "done" else []),
        *([f"{twice} readers got two messages or more"] if twice else []),
        *([f"{len(missing - uncertain)} readers got nothing and are not uncertain"] if missing - uncertain else []),
        *([f"{len(strangers)} messages to no reader"] if strangers else []),
        *([f"{len(uncertain)} uncertain: more than {kills} call(s) of {BATCH_LIMIT}"]
          if len(uncertain) > kills * BATCH_LIMIT else []),
        *([f"the ledger has {ledger}, not {expected}"] if ledger != expected else []),
        *(["a delivery token was taken twice"] if len({t for _to, t in taken}) != len(taken) else []),
        *problems,
    ]  # fmt: skip
    return {"exactly_once": readers - len(missing) - twice, "uncertain": len(uncertain),
            "uncertain_received": len(uncertain - missing), "twice": twice, "problems": problems,
            "passed": not problems}  # fmt: skip


def report(results: list[dict[str, object]], args: argparse.Namespace, prepare_s: float) -> list[str]:
    lines = [
        f"# Scale-out: {args.readers:,} readers ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores)", "",
        f"Set: messages_per_second = {args.rate:,} (above the fleet's speed), [mail] batch_size = {BATCH_LIMIT}, "
        f"[fanout] chunk = {args.chunk}, concurrency = {args.concurrency}; the doubles answer one call in "
        f"{args.throttle_every} with 429 (Retry-After 1) and one in {args.unavailable_every} with 503. "
        f"Set-up (ingest, {args.readers:,} readers inserted): {prepare_s:.0f} s.", "",
        "| workers | plan s | planner MB | send s (to 1st message) | msg/s | per worker: msg/s (peak MB, CPU ms/msg) "
        "| calls (429, 503) | uncertain (received) | database MB (deliveries) "
        "| CPU s: workers, doubles, PostgreSQL, other | check |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for r in results:
        rows, c, cpu = r["worker_rows"], r["checks"], r["cpu"]
        assert isinstance(rows, list) and isinstance(c, dict) and isinstance(cpu, dict)
        each = "; ".join(f"{w['per_second']:,.0f}{' (killed)' if w['killed'] else ''} ({w['peak_mb']:.0f} MB, "
                         f"{w['cpu_ms_per_message']:.2f})" for w in rows)  # fmt: skip
        verdict = "PASS" if c["passed"] else "FAIL: " + "; ".join(c["problems"])
        lines.append(
            f"| {r['workers']} | {r['plan_s']:.1f} | {r['planner_peak_mb']:.0f} | "
            f"{r['send_s']:.1f} ({r['first_message_s']:.1f}) | {r['per_second']:,.0f} | {each} | "
            f"{r['calls']:,} ({r['throttled']}, {r['unavailable']}) | {c['uncertain']} ({c['uncertain_received']}) | "
            f"{r['database_mb']:,.0f} ({r['deliveries_mb']:,.0f}) | {cpu['workers_s']:.0f}, {cpu['doubles_s']:.0f}, "
            f"{cpu['postgres_s']:.0f}, {cpu['others_s']:.0f} | {verdict} |"
        )  # fmt: skip
    return lines


def write_results(results: list[dict[str, object]], args: argparse.Namespace, prepare_s: float) -> list[str]:
    lines = report(results, args, prepare_s)
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "scale.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = {"readers": args.readers, "settings": {k: v for k, v in vars(args).items() if k != "quick"}, "runs": results}
    (OUT_DIR / "scale.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=1_000_000)
    parser.add_argument("--workers", default="1,2,4", help="the runs' numbers of workers")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK_READERS:,} readers")
    parser.add_argument("--rate", type=int, default=100_000, help="[digest] messages_per_second")
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--articles", type=int, default=80)
    parser.add_argument("--kill-at", type=float, default=0.3, help="the share sent when a worker is SIGKILLed")
    parser.add_argument("--throttle-every", type=int, default=0, help="0: about 20 a run (at least every 7th call)")
    parser.add_argument("--unavailable-every", type=int, default=0, help="0: about 13 a run (at least every 11th)")
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds a run may take (0: from --readers)")
    args = parser.parse_args(argv)
    if args.quick:
        args.readers = min(args.readers, QUICK_READERS)
    args.timeout = args.timeout or 120 + args.readers / 50
    calls = -(-args.readers // BATCH_LIMIT)
    args.throttle_every = args.throttle_every or max(7, calls // 20)
    args.unavailable_every = args.unavailable_every or max(11, calls // 13)
    missing = no_postgres()
    if missing:
        print(f"bench/scale.py skipped: {missing}", file=sys.stderr)
        return 2
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    print(f"preparing {args.readers:,} readers ...", flush=True)
    template, admin, prepare_s = prepare(args.readers, args.articles)
    results: list[dict[str, object]] = []
    lines: list[str] = []
    try:
        for workers in [int(n) for n in args.workers.split(",")]:
            print(f"{workers} worker(s):", flush=True)
            try:
                results.append(result := run(template, workers, args))
            except RuntimeError as exc:
                print(f"  FAILED: {exc}", file=sys.stderr)
                return 1
            print(f"  {result['messages']:,} messages in {result['send_s']:.1f} s: {result['per_second']:,.0f}/s; "
                  f"checks {'PASS' if result['checks']['passed'] else result['checks']['problems']}",  # type: ignore[index]
                  flush=True)  # fmt: skip
            lines = write_results(results, args, prepare_s)  # after each run: a long one stopped keeps the rest
    finally:
        drop(template, admin)
    print("\n".join(lines))
    return 0 if all(r["checks"]["passed"] for r in results) else 1  # type: ignore[index]


if __name__ == "__main__":
    sys.exit(main())
