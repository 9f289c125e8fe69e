"""Fan-out planning bench: a digest planned for 200,000 readers on PostgreSQL with `[fanout]`
on, its peak memory against the same plan for 20,000 (issue 14: under 200 MB, flat in the
list's size).

Each plan runs in its own process (`Newsletter.plan` of the scheduled digest: the readers read a
batch at a time, each chunk's deliveries written with its Procrastinate job in one
transaction), so its peak RSS (VmHWM) is its own. The content is one week of a 13-category
news site (80 articles, bench/corpus.py); readers choose 1 to 3 categories (a fifth none:
everything), with mail.py's seed, and are written with one bulk insert (the set-up only).
Nothing is sent: the jobs wait in the queue for workers that this bench does not start.

Needs PostgreSQL: $PUBLISHER_TEST_POSTGRES (an admin URL, `postgresql+psycopg://postgres@host/postgres`)
or the server on 127.0.0.1:5432; a throwaway database per size, dropped at the end.

Usage: python bench/fanout_plan.py [--subscribers 20000,200000] [--chunk 1000]
Writes bench/out/fanout_plan.md and .json. Exit: 0 when it ran (the aim is reported, not
enforced), 1 when a step crashed, 2 when no PostgreSQL answers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from mail import add_subscribers, own_peak_mb  # noqa: E402  (bench/ is not a package)
from postgres_site import drop, no_postgres, site_lines, throwaway_database, write_content  # noqa: E402

OUT_DIR = BENCH_DIR / "out"
WORK = OUT_DIR / "fanout_plan"
AIM_MB = 200.0  # issue 14: the planning process under 200 MB at 200,000 readers


def write_config(folder: Path, url: str, chunk: int) -> Path:
    lines = site_lines(folder, url, WORK / "content") + [
        "[mail]", 'transport = "outbox"', "[mail.outbox]", f'dir = "{folder / "outbox"}"',
        "[digest]", 'postal_address = "云川市高新区创新大道 1 号 高新技术产业研究院"',
        "[fanout]", "enabled = true", f"chunk = {chunk}",
    ]  # fmt: skip
    path = folder / "publisher.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def prepare(url: str, count: int, chunk: int) -> Path:
    """A store on `url` with the week ingested and `count` readers; its configuration."""
    from publisher.app import App
    from publisher.config import load_settings
    from publisher.model import BuildReport

    folder = WORK / f"plan-{count}"
    folder.mkdir(parents=True)
    config = write_config(folder, url, chunk)
    app = App(load_settings(config))
    try:
        app.build(BuildReport())
        add_subscribers(app.store.engine, [c.slug for c in app.categories], count)
    finally:
        app.close()
    return config


def child_plan(config: Path) -> dict[str, float]:
    from sqlalchemy import text

    from publisher.app import App
    from publisher.config import load_settings
    from publisher.newsletter import Newsletter

    os.environ.setdefault("PUBLISHER_SECRET_KEY", "bench-signing-key-0123456789abcdef")
    app = App(load_settings(config))
    try:
        letters = Newsletter(app)
        cpu, started = time.process_time(), time.perf_counter()
        plan = letters.plan_scheduled()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        with app.store.engine.connect() as conn:
            jobs = conn.execute(text("select count(*) from procrastinate_jobs")).scalar_one()
            chunks = conn.execute(text("select count(distinct chunk) from deliveries")).scalar_one()
    finally:
        app.close()
    return {"plan_s": seconds, "cpu_s": cpu, "planned": plan.planned, "jobs": jobs, "chunks": chunks,
            "status": plan.digest.status == "sending"}  # fmt: skip


def measured(config: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(config)], capture_output=True, check=False
    )
    if proc.returncode != 0:
        print(proc.stderr.decode(errors="replace")[-3000:], file=sys.stderr)
        raise SystemExit(1)
    return dict(json.loads(proc.stdout.decode().strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", default="20000,200000")
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--articles", type=int, default=80)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child_plan(args.child) | {"peak_mb": own_peak_mb()}))
        return 0
    missing = no_postgres()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    if WORK.exists():
        shutil.rmtree(WORK)
    write_content(WORK / "content", args.articles)
    results = {}
    for count in [int(n) for n in args.subscribers.split(",")]:
        url, admin = throwaway_database()
        try:
            config = prepare(url, count, args.chunk)
            results[count] = result = measured(config)
        finally:
            drop(url, admin)
        print(f"{count} readers: planned {result['planned']:.0f} in {result['chunks']:.0f} chunks "
              f"({result['jobs']:.0f} jobs) in {result['plan_s']:.1f} s, peak {result['peak_mb']:.0f} MB",
              flush=True)  # fmt: skip
    sizes = sorted(results)
    small, large = results[sizes[0]], results[sizes[-1]]
    growth = large["peak_mb"] / small["peak_mb"]
    verdict = "PASS" if large["peak_mb"] < AIM_MB else "FAIL"
    lines = [
        f"# Fan-out planning ({datetime.now(UTC):%Y-%m-%d})", "",
        "| readers | chunks (jobs) | seconds | CPU s | peak MB |", "| --- | --- | --- | --- | --- |",
        *(f"| {n:,} | {r['chunks']:.0f} ({r['jobs']:.0f}) | {r['plan_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_mb']:.0f} |"
          for n, r in sorted(results.items())),
        "", f"{verdict}: {large['peak_mb']:.0f} MB at {sizes[-1]:,} (aim: under {AIM_MB:.0f}); "
        f"{growth:.2f}x the peak at {sizes[0]:,}",
    ]  # fmt: skip
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "fanout_plan.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (OUT_DIR / "fanout_plan.json").write_text(
        json.dumps({"results": {str(n): r for n, r in results.items()}, "growth": growth}, indent=2), encoding="utf-8"
    )
    print(lines[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
