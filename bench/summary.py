"""The end of `make bench`: issue 16's four aims in one summary, and the last three runs.

Reads what the benches of this run wrote under bench/out/:

* results.json (bench/run.py): aim 1, the cold build against Hugo at 10k and 100k and the
  peak memory at 100k; aim 2, the one-article rebuild;
* mail.json (bench/mail.py): aim 3, the digest's rate against the smtplib floor and its memory;
* serving.json (bench/serving.py): aim 4, requests per second against nginx.

`make bench` first runs `summary.py --start`, which notes when the run began; a file older
than that is left out (that bench did not run this time, or crashed). Then the summary prints
each aim with PASS/FAIL and its ratios, appends the run to bench/out/history.jsonl (once per
`make bench`), and prints the last three runs side by side with whether every aim held in
all three: the issue's acceptance ("the four ratios hold in three consecutive runs").

Usage: python bench/summary.py [--start]
Exit: 0 (a report, also when an aim is missed), 1 when run.py's results are missing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import aims  # noqa: E402  (bench/ is not a package)

OUT_DIR = BENCH_DIR / "out"
STARTED = OUT_DIR / "bench-started.json"
HISTORY = OUT_DIR / "history.jsonl"
SOURCES = {"run": OUT_DIR / "results.json", "mail": OUT_DIR / "mail.json", "serving": OUT_DIR / "serving.json"}
NOT_RUN = {
    "run": "bench/run.py did not run or crashed",
    "mail": "the mail bench did not run (bench/mail.py: smtp-sink missing, or it failed; see its output above)",
    "serving": "the serving bench did not run (bench/serving.py failed; see its output above)",
}
AIM_NAMES = {"1": "cold build vs Hugo", "2": "+1 article rebuild", "3": "digest vs smtplib", "4": "serving vs nginx"}


def started_at() -> float | None:
    """When this `make bench` began (epoch seconds), if it noted it."""
    try:
        return float(json.loads(STARTED.read_text(encoding="utf-8"))["epoch"])
    except (OSError, ValueError, KeyError):
        return None


def load(name: str, since: float | None) -> tuple[dict[str, Any] | None, str]:
    """A bench's JSON, or None and why: missing, unreadable, or older than this run."""
    path = SOURCES[name]
    try:
        mtime = path.stat().st_mtime
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, NOT_RUN[name]
    if since is not None and mtime < since - 1:  # file times lag the clock by a tick
        stamp = dt.datetime.fromtimestamp(mtime, dt.UTC)
        return None, f"{NOT_RUN[name]}; {path.name} is from {stamp:%Y-%m-%d %H:%M} UTC, before this run"
    return dict(data), ""


def combine(key: str, verdicts: list[aims.Verdict]) -> dict[str, Any]:
    """One aim from its parts: PASS when every part passed, FAIL when one failed, else skipped."""
    results = {v.result for v in verdicts}
    result = "FAIL" if "FAIL" in results else "PASS" if results == {"PASS"} else "skipped"
    return {
        "aim": key,
        "result": result,
        "ratios": {v.key: None if v.ratio is None else round(v.ratio, 3) for v in verdicts},
        "details": [f"{v.result} {v.name}: {v.detail}" for v in verdicts],
    }


def four_aims(since: float | None) -> tuple[list[dict[str, Any]], bool]:
    """Issue 16's four aims from this run's files; and whether run.py's results were there."""
    run, why_run = load("run", since)
    mail, why_mail = load("mail", since)
    serving, why_serving = load("serving", since)
    if run is not None and not all("key" in v for v in run.get("aims", [None])):
        run, why_run = None, "results.json was written by an older bench/run.py, without issue 16's aims"
    if run is None:
        feed = [aims.Verdict(k, k, "skipped", None, why_run) for k in ("cold-10k", "cold-100k", "peak-100k")]
        plus = [aims.Verdict("plus-one", "plus-one", "skipped", None, why_run)]
    else:
        verdicts = [aims.Verdict(**v) for v in run["aims"]]
        feed = [v for v in verdicts if v.key in ("cold-10k", "cold-100k", "peak-100k")]
        plus = [v for v in verdicts if v.key == "plus-one"]
    return [
        combine("1", feed),
        combine("2", plus),
        combine("3", aims.digest_aims(mail, why_mail)),
        combine("4", aims.serving_aims(serving, why_serving)),
    ], run is not None


def figure(aim: dict[str, Any]) -> str:
    """An aim's verdict and ratios in a few characters, for the side-by-side table."""
    ratios = "/".join("—" if r is None else f"{r:.2f}" for r in aim["ratios"].values())
    return f"{aim['result']} {ratios}"


def record(since: float | None, results: list[dict[str, Any]], history: list[dict[str, Any]]) -> str:
    """Record this `make bench` run in history.jsonl: one line per run, the last summary of it wins."""
    if since is None:
        return "not recorded in history.jsonl: no `make bench` start noted (bench/summary.py --start)"
    started = dt.datetime.fromtimestamp(since, dt.UTC).isoformat(timespec="seconds")
    entry = {"started": started, "aims": {a["aim"]: {"result": a["result"], "ratios": a["ratios"]} for a in results}}
    replaced = any(h.get("started") == started for h in history)
    history[:] = [h for h in history if h.get("started") != started] + [entry]
    HISTORY.write_text("".join(json.dumps(h) + "\n" for h in history), encoding="utf-8")
    return f"{'updated' if replaced else 'recorded'} in {HISTORY}"


def read_history() -> list[dict[str, Any]]:
    try:
        lines = HISTORY.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def side_by_side(history: list[dict[str, Any]]) -> list[str]:
    """The last three recorded runs, one column each, and whether every aim held in all three."""
    last = history[-3:]
    if not last:
        return ["no run recorded yet"]
    heads = [h["started"][5:16].replace("T", " ") for h in last]
    cells = {key: [figure({"aim": key, **h["aims"][key]}) if key in h["aims"] else "—" for h in last]
             for key in AIM_NAMES}  # fmt: skip
    width = max(len(c) for row in [*cells.values(), heads] for c in row)
    lines = [f"{'last runs (UTC)':<24}" + "  ".join(h.ljust(width) for h in heads)]
    lines += [f"{k} {AIM_NAMES[k]:<22}" + "  ".join(c.ljust(width) for c in row) for k, row in cells.items()]
    held = len(last) == 3 and all(h["aims"].get(k, {}).get("result") == "PASS" for h in last for k in AIM_NAMES)
    why = "" if len(last) == 3 else f" (only {len(last)} run{'s' if len(last) > 1 else ''} recorded)"
    lines.append(f"held in three consecutive runs: {'yes' if held else 'no'}{why}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", action="store_true", help="note that a `make bench` run begins now")
    args = ap.parse_args(argv)
    if args.start:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        STARTED.write_text(json.dumps({"epoch": now.timestamp(), "started": now.isoformat()}) + "\n")
        return 0
    since = started_at()
    results, have_run = four_aims(since)
    history = read_history()
    note = record(since, results, history)
    began = "" if since is None else f" (make bench began {dt.datetime.fromtimestamp(since, dt.UTC):%H:%M} UTC)"
    print(f"\n== issue 16: the four aims{began}")
    for aim in results:
        ratios = ", ".join(f"{k} {'—' if r is None else f'{r:.2f}'}" for k, r in aim["ratios"].items())
        print(f"{aim['result']:<7} aim {aim['aim']}, {AIM_NAMES[aim['aim']]}: {ratios}")
        for detail in aim["details"]:
            print(f"          {detail}")
    print()
    print("\n".join(side_by_side(history)))
    print(note)
    return 0 if have_run else 1


if __name__ == "__main__":
    raise SystemExit(main())
