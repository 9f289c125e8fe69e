"""Mail benchmark: render and send personalised digests against a bare smtplib floor.

The receiving end is Postfix's `smtp-sink` (Debian package postfix), which accepts and
discards mail in C, so the sender is what is measured. In one run, interleaved, best of
`--repeat`:

* the floor: smtplib sending ONE prebuilt digest N times over one connection (the message
  nearest the mean size of a sample of the same subscribers: no rendering, no ledger);
* publisher: `Newsletter.plan` + `send` of a scheduled digest to N subscribers through the
  SMTP transport, every message personalised (greeting, signed unsubscribe and preferences
  links), every delivery recorded before and after the send in SQLite;
* memory: the same plan and send to 2,000 and to 100,000 subscribers (`--memory-subscribers`),
  to show that peak memory does not grow with the list (the subscribers of these stores are
  written with one bulk insert, the faster set-up; planning and sending are the real ones).

Each measured step runs in its own process, so its peak RSS is its own. The content is one
week of a 13-category news site (80 articles; `--articles`). Subscribers choose 1 to 3
categories (a fifth choose none: everything), with a fixed seed.

Usage: python bench/mail.py [--subscribers 10000] [--articles 80] [--repeat 3]
                            [--memory-subscribers 2000,100000]
Writes bench/out/mail.md and bench/out/mail.json (rate_ratio, memory_ratio and the raw
figures, for bench/summary.py). Exit: 0 when everything ran (aims are reported, not
enforced), 1 when a step crashed, 2 when smtp-sink is missing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import smtplib
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import corpus  # noqa: E402  (bench/ is not a package)

OUT_DIR = BENCH_DIR / "out"
WORK = OUT_DIR / "mail"
RESULTS_MD = OUT_DIR / "mail.md"
RESULTS_JSON = OUT_DIR / "mail.json"
SEED = 20261129
AIM_RATE_OF_FLOOR = 0.8  # issue 16: at least 0.8 of the floor's messages per second
AIM_MEMORY_GROWTH = 1.25  # peak RSS at 100,000 subscribers within 1.25x of 2,000: flat


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    sink = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None)
    if sink is None:
        print("smtp-sink is missing: install Debian's postfix package (apt-get install postfix)", file=sys.stderr)
        sys.exit(2)
    port = free_port()
    command = [sink]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]  # smtp-sink refuses to run as root without a user to become
    proc = subprocess.Popen([*command, f"127.0.0.1:{port}", "1000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"smtp-sink did not start: {proc.stderr.read().decode() if proc.stderr else ''}")


def write_config(folder: Path, port: int) -> Path:
    lines = [
        "[site]", 'title = "高新院"', 'url = "https://www.example.org"', 'timezone = "Asia/Shanghai"',
        "[output]", f'dir = "{folder / "public"}"',
        "[store]", f'url = "sqlite:///{folder / "publisher.db"}"',
        "[text]", 'convert = "t2s"',
        "[mail]", 'transport = "smtp"',
        "[mail.smtp]", 'host = "127.0.0.1"', f"port = {port}", 'security = "none"',
        "[digest]", "messages_per_second = 0", 'postal_address = "云川市高新区创新大道 1 号 高新技术产业研究院"',
        'sender = "高新院 <newsletter@example.org>"',
    ]  # fmt: skip
    for name in corpus.CATEGORIES:
        lines += ["[[categories]]", f'name = "{name}"']
    lines += ["[[sources]]", 'type = "files"', f'path = "{folder.parent / "content"}"', 'name = "week"']
    path = folder / "publisher.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def prepare(articles: int, counts: list[int], port: int) -> dict[int, Path]:
    """One template store per subscriber count: a week's articles ingested, subscribers added."""
    from publisher.app import App
    from publisher.config import load_settings
    from publisher.model import BuildReport

    if WORK.exists():
        shutil.rmtree(WORK)
    content = WORK / "content"
    corpus.write_week(content, articles)
    templates = {}
    for count in counts:
        folder = WORK / f"template-{count}"
        folder.mkdir(parents=True)
        config = write_config(folder, port)
        app = App(load_settings(config))
        try:
            app.build(BuildReport())
            slugs = [c.slug for c in app.categories]
            add_subscribers(app.store.engine, slugs, count)
        finally:
            app.close()
        templates[count] = folder
    return templates


def add_subscribers(engine: Any, slugs: list[str], count: int) -> None:
    """`count` confirmed readers in one bulk insert (the set-up only: at 100,000 the store's
    own upsert, two statements a reader, would take minutes)."""
    from sqlalchemy import insert

    from publisher.store.schema import naive_utc, subscribers_table

    rng = random.Random(SEED)
    now = naive_utc(datetime.now(UTC))
    with engine.begin() as conn:
        for start in range(0, count, 10_000):  # 10,000 rows at a time: this process stays small
            rows = []
            for n in range(start, min(start + 10_000, count)):
                chosen = [] if rng.random() < 0.2 else rng.sample(slugs, rng.randint(1, 3))
                email = f"reader{n:06d}@example.com"
                rows.append({"email": email, "email_key": email, "name": f"读者{n}", "status": "confirmed",
                             "categories": json.dumps(chosen, ensure_ascii=False), "status_at": now,
                             "status_via": "bench", "created_at": now})  # fmt: skip
            conn.execute(insert(subscribers_table), rows)


def fresh_copy(template: Path, label: str) -> Path:
    target = WORK / f"run-{label}"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(template, target)
    config = target / "publisher.toml"
    config.write_text(config.read_text(encoding="utf-8").replace(str(template), str(target)), encoding="utf-8")
    return config


# --- the measured steps, each run as `python bench/mail.py --child STEP CONFIG N` -------------


def child_send(config: Path) -> dict[str, float]:
    from publisher.app import App
    from publisher.config import load_settings
    from publisher.newsletter import Newsletter

    os.environ.setdefault("PUBLISHER_SECRET_KEY", "bench-signing-key-0123456789abcdef")
    app = App(load_settings(config))
    try:
        letters = Newsletter(app)
        cpu, started = time.process_time(), time.perf_counter()
        plan = letters.plan(letters.scheduled_window(app.clock()))
        planned = time.perf_counter()
        report = letters.send(plan.digest, app.transport())
        done = time.perf_counter()
        cpu = time.process_time() - cpu
    finally:
        app.close()
    return {"plan_s": planned - started, "send_s": done - planned, "sent": report.sent, "failed": report.failed,
            "work_cpu_s": cpu}  # fmt: skip


def child_floor(config: Path, count: int) -> dict[str, float]:
    """The message nearest the mean size of 200 subscribers' digests, sent `count` times over
    one connection (the mean, not the median: readers of every category get big digests)."""
    from publisher.app import App
    from publisher.config import load_settings
    from publisher.model import SubscriberStatus
    from publisher.newsletter import Newsletter

    os.environ.setdefault("PUBLISHER_SECRET_KEY", "bench-signing-key-0123456789abcdef")
    app = App(load_settings(config))
    try:
        letters = Newsletter(app)
        window = letters.scheduled_window(app.clock())
        renderer = letters.renderer(window)
        sample = []
        for subscriber in itertools.islice(app.store.each_subscriber(SubscriberStatus.CONFIRMED), 200):
            draft = renderer.draft(subscriber.categories)
            if draft is not None:
                sample.append(letters.message(renderer, draft, subscriber, None).as_bytes())
        smtp = app.settings.mail.smtp
        assert smtp is not None
    finally:
        app.close()
    sample.sort(key=len)
    mean = sum(map(len, sample)) / len(sample)
    message = min(sample, key=lambda m: abs(len(m) - mean))
    connection = smtplib.SMTP(smtp.host, smtp.port, timeout=30)
    connection.ehlo()
    cpu, started = time.process_time(), time.perf_counter()
    for _ in range(count):
        connection.sendmail("newsletter@example.org", ["reader@example.com"], message)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    connection.quit()
    sizes = [len(m) for m in sample]
    return {"send_s": seconds, "sent": count, "size": len(message), "min_size": sizes[0], "max_size": sizes[-1],
            "work_cpu_s": cpu}  # fmt: skip


def run_child(step: str, config: Path, count: int) -> dict[str, float]:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", step, str(config), str(count)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        print(stderr.decode(errors="replace")[-3000:], file=sys.stderr)
        raise SystemExit(1)
    return dict(json.loads(stdout.decode().strip().splitlines()[-1]))


def own_peak_mb() -> float:
    """This process's peak RSS since it started its program (VmHWM). Not ru_maxrss: Linux
    carries the parent's peak across fork and exec into the child's, so a parent grown while
    preparing 100,000 readers would show as every child's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the best there is


def measured(step: str, config: Path, count: int) -> dict[str, float]:
    """run_child with the child's own peak RSS (VmHWM, read by the child at its end) and CPU."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", step, str(config), str(count)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        print(stderr.decode(errors="replace")[-3000:], file=sys.stderr)
        raise SystemExit(1)
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    result["cpu_s"] = usage.ru_utime + usage.ru_stime  # its own CPU: steadier than the clock on a shared machine
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=10_000, help="readers of the rate runs")
    ap.add_argument("--articles", type=int, default=80)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved floor and publisher runs")
    ap.add_argument("--memory-subscribers", default="2000,100000", help="small,large: the memory runs' readers")
    ap.add_argument("--child", nargs=3, metavar=("STEP", "CONFIG", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        step, config, count = args.child
        result = child_send(Path(config)) if step == "send" else child_floor(Path(config), int(count))
        print(json.dumps(result | {"peak_mb": own_peak_mb()}))
        return 0

    big = args.subscribers
    small, large = (int(n) for n in args.memory_subscribers.split(","))
    sink, port = start_sink()
    load_before = os.getloadavg()
    try:
        print(f"preparing: {args.articles} articles, {small}, {big} and {large} subscribers", file=sys.stderr)
        templates = prepare(args.articles, sorted({small, big, large}), port)
        floors, ours, smalls = [], [], []
        for attempt in range(args.repeat):
            floors.append(measured("floor", fresh_copy(templates[big], "floor"), big))
            ours.append(measured("send", fresh_copy(templates[big], "big"), big))
            f, o = floors[-1], ours[-1]
            print(
                f"run {attempt + 1}: floor {f['sent'] / f['send_s']:.0f}/s; publisher "
                f"{o['sent'] / (o['plan_s'] + o['send_s']):.0f}/s (plan {o['plan_s']:.1f} s), "
                f"peak {o['peak_mb']:.0f} MB",
                file=sys.stderr,
            )
        # Once each: at 100,000 it sends for minutes. The rate of these runs is reported too.
        smalls.append(measured("send", fresh_copy(templates[small], "small"), small))
        largest = measured("send", fresh_copy(templates[large], "large"), large)
        print(f"memory: peak {smalls[0]['peak_mb']:.0f} MB at {small}, {largest['peak_mb']:.0f} MB at {large}",
              file=sys.stderr)  # fmt: skip
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(WORK, ignore_errors=True)  # gigabytes of stores at 100,000

    def rate(r: dict[str, float]) -> float:
        return r["sent"] / (r["plan_s"] + r["send_s"])

    floor_rates = [r["sent"] / r["send_s"] for r in floors]
    our_rates = [rate(r) for r in ours]
    floor, best = floors[floor_rates.index(max(floor_rates))], ours[our_rates.index(max(our_rates))]
    floor_rate, our_rate = max(floor_rates), max(our_rates)
    peak_small = min(r["peak_mb"] for r in smalls)
    ratio, growth = our_rate / floor_rate, largest["peak_mb"] / peak_small
    failed = sum(int(r["failed"]) for r in [*ours, *smalls, largest])
    load_after = os.getloadavg()
    lines = [
        f"# Mail benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, best of {args.repeat})",
        "",
        f"{args.articles} articles in the week, {big} subscribers; receiver: Postfix smtp-sink on loopback.",
        f"Floor message: the one nearest the mean size of 200 personalised digests, {floor['size'] / 1000:.0f} KB "
        f"(range {floor['min_size'] / 1000:.0f}-{floor['max_size'] / 1000:.0f} KB).",
        f"Load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; runs (floor, publisher "
        f"messages/s): " + ", ".join(f"{f:.0f}/{o:.0f}" for f, o in zip(floor_rates, our_rates, strict=True)) + ".",
        "",
        "| | messages/s | seconds | peak MB |",
        "|---|---:|---:|---:|",
        f"| floor: smtplib, one prebuilt message x {big} | {floor_rate:.0f} | {floor['send_s']:.1f} | "
        f"{floor['peak_mb']:.0f} |",
        f"| publisher: plan + render + send + ledger, {big} | {our_rate:.0f} | "
        f"{best['plan_s'] + best['send_s']:.1f} (plan {best['plan_s']:.1f}) | {min(r['peak_mb'] for r in ours):.0f} |",
        f"| publisher, {small} subscribers | | | {peak_small:.0f} |",
        f"| publisher, {large} subscribers | {rate(largest):.0f} | "
        f"{largest['plan_s'] + largest['send_s']:.1f} (plan {largest['plan_s']:.1f}) | {largest['peak_mb']:.0f} |",
        "",
        f"- rate: {ratio:.2f}x the floor (aim >= {AIM_RATE_OF_FLOOR}): "
        f"{'PASS' if ratio >= AIM_RATE_OF_FLOOR else 'FAIL'}",
        f"- memory: {growth:.2f}x from {small} to {large} subscribers (aim <= {AIM_MEMORY_GROWTH}, flat): "
        f"{'PASS' if growth <= AIM_MEMORY_GROWTH else 'FAIL'}",
        f"- failed deliveries: {failed}",
    ]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    RESULTS_MD.write_text("\n".join(lines) + "\n", encoding="utf-8")
    figures = {
        "rate_ratio": round(ratio, 3),
        "memory_ratio": round(growth, 3),
        "subscribers": big,
        "memory_subscribers": [small, large],
        "floor_rate": round(floor_rate, 1),
        "publisher_rate": round(our_rate, 1),
        "run_ratios": [round(o / f, 3) for f, o in zip(floor_rates, our_rates, strict=True)],
        "floor_runs": floors,
        "publisher_runs": ours,
        "memory_runs": {str(small): smalls, str(large): largest},
        "peak_mb": {str(small): peak_small, str(large): largest["peak_mb"]},
        "loadavg": {"before": load_before, "after": load_after},
        "failed": failed,
        "aims": {"rate_ratio": AIM_RATE_OF_FLOOR, "memory_ratio": AIM_MEMORY_GROWTH},
    }
    RESULTS_JSON.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
