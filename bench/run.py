"""Benchmark: publisher against Hugo's feeds-only build and a bare feedgen floor.

For each corpus size (default 1k, 10k, 100k articles) this runs, each as its own
process so wall time and peak RSS are the whole process's:

* publisher: a cold build (fresh store and output), a rebuild with nothing
  changed, and a rebuild after one new article was added;
* the floor (bench/floor.py): front matter + feedgen, no store, no rendering;
* Hugo (bench/hugo_ref.py): the site's and each category's RSS feed, cold, when
  `hugo` is installed (without it the output says so and its aims are skipped);
* with --pelican, Pelican with only its site and category feeds on (1k and 10k only).

It prints one table and issue 16's aims 1 and 2 (bench/aims.py) with PASS/FAIL
and their ratios, and writes the same to bench/out/results.md and results.json.
Exit status: 0 when every tool ran (even if an aim failed: this is a report),
1 when a tool crashed or Hugo's feeds were wrong, 2 on a setup error.

Usage: python bench/run.py [--sizes 1000,10000,100000] [--pelican]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import aims  # noqa: E402  (bench/ is not a package)
import corpus  # noqa: E402
import hugo_ref  # noqa: E402
import pelican_ref  # noqa: E402

OUT_DIR = BENCH_DIR / "out"
RESULTS_MD = OUT_DIR / "results.md"
RESULTS_JSON = OUT_DIR / "results.json"

SITE_TITLE = "高新院"
SITE_URL = "https://www.example.org"
TIMEZONE = "Asia/Shanghai"
MAX_ITEMS = 50
WARMUP_SIZE = 50
CONTENDED = 0.3  # cores used by other processes during a run, above which it is flagged


# --------------------------------------------------------------------------
# Measuring one process
# --------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    peak_kb: int  # whole process tree: max(summed RSS samples, largest single ru_maxrss)
    returncode: int
    log: Path
    pss_kb: int = 0  # whole process tree, proportional set size (shared pages split)
    processes: int = 1  # most processes seen at once in the tree
    cpu_s: float = 0.0  # user + system CPU of the whole tree
    other_load: float | None = None  # cores busy with processes outside the tree, on average

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024


def _process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from the ppid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split(None, 2)[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; (0, 0) once it has gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"Pss:"):
                    pss = int(line.split()[1])
                    break
    except (OSError, ValueError, IndexError):
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                rss = pss = int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
        except (OSError, ValueError, IndexError):
            pass
    return rss, pss


class TreeSampler(threading.Thread):
    """Samples the summed memory of a process and its descendants (worker pools included).

    ru_maxrss alone is not enough: for a child that forks workers it is the peak of the
    largest single process, not of all of them together.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.rss_kb = self.pss_kb = 0
        self.processes = 1
        self._stop_event = threading.Event()
        self.enabled = os.path.isdir("/proc/self")

    def run(self) -> None:
        while self.enabled and not self._stop_event.is_set():
            pids = _process_tree(self.pid)
            total_rss = total_pss = 0
            for pid in pids:
                rss, pss = _memory_kb(pid)
                total_rss += rss
                total_pss += pss
            self.rss_kb = max(self.rss_kb, total_rss)
            self.pss_kb = max(self.pss_kb, total_pss)
            self.processes = max(self.processes, len(pids))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def child_env() -> dict[str, str]:
    """The environment of every measured process.

    Byte code is cached under bench/out/pycache (written by the warm-up, read by every measured
    run) so no run pays for compiling modules, even where PYTHONDONTWRITEBYTECODE is set.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPYCACHEPREFIX=str(OUT_DIR / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _busy_cpu_seconds() -> float | None:
    """CPU seconds spent by the whole machine so far (all cores), from /proc/stat."""
    try:
        with open("/proc/stat", "rb") as fh:
            fields = fh.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


QUIET_WAIT = 60.0  # seconds measure() may wait for other processes to leave the CPUs idle


def wait_for_quiet(limit: float) -> None:
    """Wait (up to ``limit`` s) until the rest of the machine uses < CONTENDED cores."""
    deadline = time.monotonic() + limit
    while True:
        b0, t0 = _busy_cpu_seconds(), time.monotonic()
        time.sleep(0.5)
        b1 = _busy_cpu_seconds()
        if b0 is None or b1 is None or (b1 - b0) / (time.monotonic() - t0) < CONTENDED:
            return
        if time.monotonic() > deadline:
            return


def measure(cmd: list[str], *, cwd: Path, log: Path) -> Run:
    """Run ``cmd`` to completion: wall time and the peak memory of its whole process tree."""
    log.parent.mkdir(parents=True, exist_ok=True)
    wait_for_quiet(QUIET_WAIT)  # module setting; --quiet-wait changes it
    with open(log, "wb") as fh:
        busy0, self0 = _busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env()
        )
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        sampler.stop()
        busy1, self1 = _busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF)
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped by wait4
    # ru_maxrss (KiB on Linux, bytes on macOS) is the largest single process of the tree.
    maxrss_kb = usage.ru_maxrss // 1024 if sys.platform == "darwin" else usage.ru_maxrss
    # CPU the rest of the machine used meanwhile (other users' jobs), in cores: a contended
    # measurement is flagged rather than silently reported.
    other = None
    if busy0 is not None and busy1 is not None and seconds > 0:
        ours = usage.ru_utime + usage.ru_stime + (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)
        other = max(0.0, (busy1 - busy0 - ours) / seconds)
    return Run(
        seconds,
        max(maxrss_kb, sampler.rss_kb),
        proc.returncode,
        log,
        pss_kb=max(sampler.pss_kb, 0),
        processes=sampler.processes,
        cpu_s=usage.ru_utime + usage.ru_stime,
        other_load=other,
    )


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def warm_page_cache(content: Path) -> None:
    """Read every file once so no tool pays for the first read from disk."""
    for dirpath, _, files in os.walk(content):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as fh:
                while fh.read(1 << 20):
                    pass


# --------------------------------------------------------------------------
# The publisher under test
# --------------------------------------------------------------------------


def toml_str(value: str) -> str:
    # A JSON string is a valid TOML basic string.
    return json.dumps(value, ensure_ascii=False)


def write_publisher_config(path: Path, content: Path, output: Path, db: Path) -> Path:
    lines = [
        "# Generated by bench/run.py",
        "[site]",
        f"title = {toml_str(SITE_TITLE)}",
        f"url = {toml_str(SITE_URL)}",
        'language = "zh-CN"',
        f"timezone = {toml_str(TIMEZONE)}",
        "",
        "[text]",
        'convert = "t2s"',
        "",
        "[feeds]",
        f"max_items = {MAX_ITEMS}",
        "",
        "[output]",
        f"dir = {toml_str(str(output))}",
        "",
        "[store]",
        f"url = {toml_str('sqlite:///' + str(db))}",
        "",
    ]
    for name in corpus.CATEGORIES:
        lines += ["[[categories]]", f"name = {toml_str(name)}", ""]
    lines += [
        "[[sources]]",
        'type = "files"',
        f"path = {toml_str(str(content))}",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def find_publisher_cli() -> str | None:
    candidate = Path(sys.executable).parent / "publisher"
    if candidate.exists():
        return str(candidate)
    return shutil.which("publisher")


def output_contains(output: Path, needle: str) -> bool:
    data = needle.encode("utf-8")
    for dirpath, _, files in os.walk(output):
        for name in files:
            try:
                if data in Path(dirpath, name).read_bytes():
                    return True
            except OSError:
                pass
    return False


def count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass
class Row:
    size: int
    tool: str
    colds: list[Run] = field(default_factory=list)
    unchanged: list[Run] = field(default_factory=list)
    plus_one: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    crashed: bool = False

    @property
    def cold(self) -> Run | None:
        """The fastest good cold run (None if there is none)."""
        good = [r for r in self.colds if r.ok]
        return min(good, key=lambda r: r.seconds) if good else (self.colds[0] if self.colds else None)

    def runs(self) -> list[Run]:
        return self.colds + self.unchanged + self.plus_one

    @property
    def peak_mb(self) -> float | None:
        runs = self.runs()
        return max(r.peak_mb for r in runs) if runs else None

    @property
    def peak_pss_mb(self) -> float | None:
        runs = self.runs()
        return max(r.pss_kb for r in runs) / 1024 if runs else None

    @property
    def max_processes(self) -> int:
        return max((r.processes for r in self.runs()), default=1)

    def contention_note(self) -> str | None:
        loads = [r.other_load for r in self.runs() if r.other_load is not None]
        busy = [x for x in loads if x > CONTENDED]
        if not busy:
            return None
        return (
            f"{len(busy)} of {len(loads)} runs shared the CPUs with other processes "
            f"(up to {max(busy):.2f} cores busy elsewhere): those timings are pessimistic"
        )

    def memory_note(self) -> str:
        return (
            f"peak RSS {self.peak_mb or 0:.0f} MB summed over up to {self.max_processes} "
            f"process(es); proportional (PSS) peak {self.peak_pss_mb or 0:.0f} MB"
        )

    @staticmethod
    def _best(runs: list[Run]) -> float | None:
        """The fastest of the runs: on a shared VM a slower run measures the neighbours."""
        good = [r.seconds for r in runs if r.ok]
        return min(good) if good and len(good) == len(runs) else None

    @property
    def cold_s(self) -> float | None:
        return self.cold.seconds if self.cold and self.cold.ok else None

    @property
    def unchanged_s(self) -> float | None:
        return self._best(self.unchanged)

    @property
    def plus_one_s(self) -> float | None:
        return self._best(self.plus_one)


def fmt_s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def fmt_ratio(num: float | None, den: float | None, digits: int = 1) -> str:
    if num is None or not den:
        return "—"
    return f"{num / den:.{digits}f}×"


def table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    header = ["size", "tool", "cold s", "unchanged s", "+1 article s", "peak MB", "cold/hugo", "cold/floor", "+1/floor"]
    floors = {r.size: r.cold_s for r in rows if r.tool == "floor"}
    hugos = {r.size: r.cold_s for r in rows if r.tool == "hugo"}
    body = []
    for r in rows:
        floor = floors.get(r.size)
        body.append(
            [
                f"{r.size:,}",
                r.tool + (" (crashed)" if r.crashed else ""),
                fmt_s(r.cold_s),
                fmt_s(r.unchanged_s),
                fmt_s(r.plus_one_s),
                "—" if r.peak_mb is None else f"{r.peak_mb:.0f}",
                fmt_ratio(r.cold_s, hugos.get(r.size), 2),
                fmt_ratio(r.cold_s, floor),
                fmt_ratio(r.plus_one_s, floor),
            ]
        )
    return header, body


def render_text(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i != 1 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(b) for b in body])


def render_md(header: list[str], body: list[list[str]]) -> str:
    out = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 1 else "---:" for i in range(len(header))) + "|",
    ]
    out += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(out)


def row_dict(r: Row) -> dict[str, object]:
    """One row as results.json keeps it (and as aims.feed_aims reads it)."""
    return {
        "size": r.size,
        "tool": r.tool,
        "crashed": r.crashed,
        "cold_s": r.cold_s,
        "unchanged_s": r.unchanged_s,
        "plus_one_s": r.plus_one_s,
        "cold_runs_s": [x.seconds for x in r.colds],
        "unchanged_runs_s": [x.seconds for x in r.unchanged],
        "plus_one_runs_s": [x.seconds for x in r.plus_one],
        "peak_mb": r.peak_mb,
        "peak_pss_mb": r.peak_pss_mb,
        "max_processes": r.max_processes,
        "cpu_s": [x.cpu_s for x in r.runs()],
        "other_load": [x.other_load for x in r.runs()],
        "notes": r.notes,
    }


def fmt_aim_ratio(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}"


def publisher_source_mtime() -> float | None:
    """Newest modification time among the publisher package's files (the code being measured)."""
    import importlib.util

    spec = importlib.util.find_spec("publisher")
    if spec is None or not spec.submodule_search_locations:
        return None
    newest = None
    for folder in spec.submodule_search_locations:
        for dirpath, _, files in os.walk(folder):
            for name in files:
                if name.endswith(".py"):
                    m = os.stat(os.path.join(dirpath, name)).st_mtime
                    newest = m if newest is None else max(newest, m)
    return newest


def checkout_commit() -> str | None:
    """The commit of the checkout the bench runs from (`make bench` installs it into
    .venv-bench), with -dirty when it has uncommitted changes; None outside a git checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", str(BENCH_DIR.parent), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def interpreter() -> str:
    """The interpreter the publisher runs on (this one: `make bench` runs both from .venv-bench)
    and whether its libpython is a shared library, which moves every figure by about a tenth
    (docs/performance.md, "Which Python"). Its sysconfig's configure arguments are not given: a
    distribution's describe its shared library's build, not the executable's."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        linked = "libpython: unknown"
    else:
        linked = "libpython shared" if "/libpython" in maps else "libpython linked in"
    return f"{sys.executable} -> {os.path.realpath(sys.executable)}, Python {platform.python_version()} ({linked})"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("publisher", "pelican", "markdown", "feedgen", "PyYAML", "SQLAlchemy"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}){mem}"


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def log_run(tool: str, label: str, r: Run) -> None:
    other = "" if r.other_load is None else f"  other load {r.other_load:4.2f} cores"
    flag = "  (contended)" if (r.other_load or 0) > CONTENDED else ""
    log(
        f"  {tool:<9} {label:<12} {r.seconds:7.2f} s  cpu {r.cpu_s:7.2f} s  {r.peak_mb:6.0f} MB"
        f"  x{r.processes}{other}  rc={r.returncode}{flag}"
    )


def _publisher_step(row: Row, cmd: list[str], pdir: Path, label: str) -> Run:
    r = measure(cmd, cwd=pdir, log=pdir / f"{label}.log")
    log_run("publisher", label, r)
    if not r.ok:
        row.crashed = True
        log(f"  publisher {label} failed (exit {r.returncode}); last lines of {r.log}:\n" + tail(r.log))
    return r


def _publisher_cmd(cli: str, content: Path, work: Path) -> tuple[list[str], Path]:
    pdir = work / "publisher"
    config = write_publisher_config(pdir / "publisher.toml", content, pdir / "public", pdir / "bench.db")
    return [cli, "--config", str(config), "build"], pdir


def publisher_cold(row: Row, cli: str, content: Path, work: Path) -> None:
    """One cold build: no store, no output."""
    cmd, pdir = _publisher_cmd(cli, content, work)
    shutil.rmtree(pdir / "public", ignore_errors=True)
    for db in pdir.glob("bench.db*"):
        db.unlink()
    row.colds.append(_publisher_step(row, cmd, pdir, f"cold-{len(row.colds) + 1}"))


def publisher_unchanged(row: Row, cli: str, content: Path, work: Path, repeat: int) -> None:
    """Rebuilds with nothing changed, on the last cold store."""
    cmd, pdir = _publisher_cmd(cli, content, work)
    row.notes.append(f"cold build wrote {count_files(pdir / 'public')} output files")
    for k in range(repeat):
        row.unchanged.append(_publisher_step(row, cmd, pdir, f"unchanged-{k + 1}"))
        if row.crashed:
            return


@dataclass
class SizeRun:
    """A size's publisher row, corpus and work folder, kept for the +1 round after every size."""

    row: Row
    content: Path
    work: Path


def publisher_plus_one(runs: list[SizeRun], cli: str, repeat: int) -> None:
    """Rebuilds after one new article each, the sizes taking turns: aim 2 divides the figure at
    100,000 by the one at 1,000, and measured minutes apart the machine's drift (this VM's
    CPU time for the same work moved by a third between runs) went straight into that ratio."""
    try:
        for k in range(repeat):
            for run in runs:
                row = run.row
                if row.crashed:
                    continue
                cmd, pdir = _publisher_cmd(cli, run.content, run.work)
                log(f"  {row.size:,} articles:")
                _, title = corpus.write_extra_article(run.content, k)
                row.plus_one.append(_publisher_step(row, cmd, pdir, f"plus-one-{k + 1}"))
                marker = title.split("：", 1)[0]
                if not row.crashed and not output_contains(pdir / "public", marker):
                    row.notes.append(f"new article {marker!r} not found in the output after +1 rebuild")
                    log(f"  warning: {marker!r} is not in the output of {row.size:,} after the +1 rebuild")
    finally:
        for run in runs:
            corpus.remove_extras(run.content)


def floor_cold(row: Row, content: Path, work: Path) -> None:
    out = work / "floor"
    shutil.rmtree(out / "public", ignore_errors=True)
    r = measure(
        [
            sys.executable,
            str(BENCH_DIR / "floor.py"),
            str(content),
            str(out / "public"),
            "--url",
            SITE_URL,
            "--title",
            SITE_TITLE,
            "--timezone",
            TIMEZONE,
            "--max-items",
            str(MAX_ITEMS),
        ],
        cwd=work,
        log=work / "floor.log",
    )
    log_run("floor", "cold", r)
    row.colds.append(r)
    if not r.ok:
        row.crashed = True
        log(f"  floor failed (exit {r.returncode}):\n" + tail(r.log))


def hugo_cold(row: Row, hugo: str, content: Path, work: Path) -> None:
    """One cold Hugo build (fresh output and cache folders), then a check of its feeds against
    the corpus and the floor's feeds of this round (bench/hugo_ref.py)."""
    hdir = work / "hugo"
    site = hugo_ref.write_site(
        hdir / "site", site_title=SITE_TITLE, site_url=SITE_URL, timezone=TIMEZONE, max_items=MAX_ITEMS
    )
    for folder in (hdir / "public", hdir / "cache"):
        shutil.rmtree(folder, ignore_errors=True)
    cmd = hugo_ref.command(hugo, site, content, hdir / "public", hdir / "cache")
    r = measure(cmd, cwd=hdir, log=hdir / f"cold-{len(row.colds) + 1}.log")
    log_run("hugo", "cold", r)
    row.colds.append(r)
    if not r.ok:
        row.crashed = True
        log(f"  hugo failed (exit {r.returncode}):\n" + tail(r.log))
        return
    problems = hugo_ref.check_output(
        hdir / "public", content, timezone=TIMEZONE, max_items=MAX_ITEMS, floor=work / "floor" / "public"
    )
    if problems:
        row.crashed = True
        row.notes += [f"wrong feeds: {p}" for p in problems]
        log("  hugo's feeds are wrong:\n    " + "\n    ".join(problems))
    elif len(row.colds) == 1:
        feeds = sorted(p.relative_to(hdir / "public").as_posix() for p in (hdir / "public").rglob("*.xml"))
        row.notes.append(
            f"wrote {len(feeds)} RSS feeds, checked: item counts, newest first, rendered HTML, "
            "front-matter dates in Asia/Shanghai, the same articles as the floor's feeds"
        )


def pelican_cold(row: Row, content: Path, work: Path) -> None:
    pdir = work / "pelican"
    settings = pelican_ref.write_settings(
        pdir / "pelicanconf.py",
        content,
        site_title=SITE_TITLE,
        site_url=SITE_URL,
        timezone=TIMEZONE,
        max_items=MAX_ITEMS,
    )
    shutil.rmtree(pdir / "public", ignore_errors=True)
    r = measure(
        pelican_ref.command(sys.executable, content, settings, pdir / "public"), cwd=pdir, log=pdir / "pelican.log"
    )
    log_run("pelican", "cold", r)
    row.colds.append(r)
    if not r.ok:
        row.crashed = True
        log(f"  pelican failed (exit {r.returncode}):\n" + tail(r.log))


def bench_size(
    cli: str, size: int, content: Path, work: Path, cold_n: int, repeat: int, hugo: str | None, with_pelican: bool
) -> list[Row]:
    """Every tool at one size. Cold runs interleave the tools (publisher, floor, Hugo, Pelican),
    so drift in the machine's speed hits them alike; then the publisher's unchanged rebuilds
    (its +1 rebuilds come in one round for every size: publisher_plus_one)."""
    publisher, floor = Row(size, "publisher"), Row(size, "floor")
    hugo_row = Row(size, "hugo") if hugo else None
    pelican = Row(size, "pelican") if with_pelican else None
    for _ in range(cold_n):
        if not publisher.crashed:
            publisher_cold(publisher, cli, content, work)
        if not floor.crashed:
            floor_cold(floor, content, work)
        if hugo and hugo_row is not None and not hugo_row.crashed:
            hugo_cold(hugo_row, hugo, content, work)
        if pelican is not None and not pelican.crashed:
            pelican_cold(pelican, content, work)
    if not publisher.crashed:
        publisher_unchanged(publisher, cli, content, work, repeat)
    if pelican is not None and not pelican.crashed:
        pelican.notes.append(f"wrote {count_files(work / 'pelican' / 'public')} feed files")
    return [r for r in (publisher, floor, hugo_row, pelican) if r is not None]


def profile_cold(cli: str, size: int) -> int:
    """Cold build under cProfile (sorted by cumulative time), saved to bench/out/."""
    content = corpus.ensure_corpus(size)
    work = OUT_DIR / f"profile-{size}"
    shutil.rmtree(work, ignore_errors=True)
    config = write_publisher_config(work / "publisher.toml", content, work / "public", work / "bench.db")
    report = OUT_DIR / f"profile-{size}.txt"
    with open(report, "w", encoding="utf-8") as fh:
        rc = subprocess.call(
            [sys.executable, "-m", "cProfile", "-s", "cumtime", cli, "--config", str(config), "build"],
            cwd=work,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )
    lines = report.read_text(encoding="utf-8").splitlines()
    start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
    print("\n".join(lines[max(0, start - 4) : start + 41]))
    print(f"\nfull profile: {report}")
    return 0 if rc == 0 else 1


def main(argv: list[str] | None = None) -> int:
    global QUIET_WAIT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="comma-separated corpus sizes (default: %(default)s)")
    ap.add_argument("--pelican", action="store_true", help="also run the Pelican reference (1k and 10k)")
    ap.add_argument(
        "--pelican-max", type=int, default=10_000, help="largest size Pelican is run at (default: %(default)s)"
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="unchanged and +1 rebuilds per size; the fastest is reported (default: %(default)s)",
    )
    ap.add_argument(
        "--cold-repeat",
        type=int,
        default=3,
        help="cold builds per tool at sizes up to 10k, interleaved; the fastest is reported (default: %(default)s)",
    )
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=QUIET_WAIT,
        metavar="S",
        help="before each run, wait up to S seconds for other processes to go idle (default: %(default)s)",
    )
    ap.add_argument(
        "--publisher", metavar="PATH", help="the publisher CLI to run (default: the one next to this Python)"
    )
    ap.add_argument(
        "--profile", type=int, metavar="SIZE", help="only profile a cold publisher build of SIZE articles with cProfile"
    )
    args = ap.parse_args(argv)
    QUIET_WAIT = args.quiet_wait

    try:
        # each size once: its +1 rebuilds share its store and corpus with the round (publisher_plus_one)
        sizes = list(dict.fromkeys(int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()))
    except ValueError:
        ap.error(f"--sizes must be comma-separated integers, not {args.sizes!r}")
    if not sizes or min(sizes) < 1 or args.repeat < 1:
        ap.error("sizes and --repeat must be positive")

    cli = args.publisher or find_publisher_cli()
    if cli is None:
        log(
            "publisher CLI not found next to this Python or on PATH; "
            "run `pip install -e '.[test,bench]'` (make bench does)"
        )
        return 2
    if args.profile:
        return profile_cold(cli, args.profile)
    run_pelican = args.pelican
    if run_pelican and subprocess.call([sys.executable, "-c", "import pelican"], stderr=subprocess.DEVNULL) != 0:
        log(
            "Pelican is not installed for this Python; install the bench extra "
            "(`pip install -e '.[test,bench]'`) or leave out --pelican"
        )
        return 2
    hugo = hugo_ref.find_hugo()
    hugo_missing = None if hugo else "hugo is not installed (Debian: apt-get install hugo): its aims are skipped"
    hugo_info: dict[str, object] = {"installed": False, "skipped": hugo_missing}
    if hugo:
        work = OUT_DIR / "run-SIZE" / "hugo"
        sample = hugo_ref.command(hugo, work / "site", OUT_DIR / "corpus-SIZE" / "content", work / "public",
                                  work / "cache")  # fmt: skip
        hugo_info = {"installed": True, "version": hugo_ref.version(hugo), "command": " ".join(sample)}
        log(f"Hugo: {hugo_info['version']}\n  command: {hugo_info['command']}")
    else:
        log(hugo_missing or "")

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    # Warm-up, not measured: every tool once on a tiny corpus, which fills the byte-code
    # cache (bench/out/pycache) and the page cache for the tools' own files.
    log("== warm-up (50 articles, not reported)")
    warm = OUT_DIR / "warmup"
    shutil.rmtree(warm, ignore_errors=True)
    warm_content = corpus.ensure_corpus(WARMUP_SIZE)
    warm_rows = bench_size(cli, WARMUP_SIZE, warm_content, warm, 1, 1, hugo, run_pelican)
    publisher_plus_one([SizeRun(r, warm_content, warm) for r in warm_rows if r.tool == "publisher"], cli, 1)
    if any(r.crashed for r in warm_rows):
        log("a tool failed on the warm-up corpus; see the logs above")

    started = dt.datetime.now().astimezone()
    code_mtime = publisher_source_mtime()
    rows: list[Row] = []
    size_runs: list[SizeRun] = []
    for size in sizes:
        log(f"== {size:,} articles")
        t0 = time.perf_counter()
        content = corpus.ensure_corpus(size)
        log(f"  corpus ready in {time.perf_counter() - t0:.1f} s: {content}")
        warm_page_cache(content)
        work = OUT_DIR / f"run-{size}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        # above 10k one cold run each keeps the whole benchmark near ten minutes
        cold_n = args.cold_repeat if size <= 10_000 else 1
        with_pelican = run_pelican and size <= args.pelican_max
        at_size = bench_size(cli, size, content, work, cold_n, args.repeat, hugo, with_pelican)
        rows += at_size
        size_runs += [SizeRun(r, content, work) for r in at_size if r.tool == "publisher"]
    log("== +1 rebuilds, the sizes taking turns")
    publisher_plus_one(size_runs, cli, args.repeat)

    header, body = table(rows)
    row_dicts = [row_dict(r) for r in rows]
    verdicts = aims.feed_aims(row_dicts, hugo_missing)
    print()
    print(render_text(header, body))
    print()
    print(f"Hugo: {hugo_info['version']}; {hugo_info['command']}" if hugo else f"Hugo: {hugo_missing}")
    for v in verdicts:
        print(v.line())
    code_note = []
    if code_mtime is not None:
        stamp = dt.datetime.fromtimestamp(code_mtime).astimezone()
        commit = checkout_commit()
        at = f"; the checkout at {commit}" if commit else ""
        code_note.append(f"publisher installed {stamp:%Y-%m-%d %H:%M:%S %Z} (newest file in the package){at}.")
        after = publisher_source_mtime()
        if after is not None and after > code_mtime:
            code_note.append("WARNING: the publisher's source changed during this run; the figures mix versions.")
            log(code_note[-1])
    for r in rows:
        if r.runs():
            r.notes.append(r.memory_note())
            contention = r.contention_note()
            if contention:
                r.notes.append(contention)
    notes = [f"{r.size:,} {r.tool}: {n}" for r in rows for n in r.notes]
    for n in notes:
        print(f"note  {n}")

    vers = versions()
    vers["hugo"] = str(hugo_info.get("version", "not installed"))
    md = [
        "# Benchmark results",
        "",
        f"Run {started:%Y-%m-%d %H:%M %Z} on {machine()}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
        f"Python: {interpreter()}.",
        *code_note,
        (
            f"Every time is the fastest of its runs ({args.cold_repeat} cold runs per tool up to 10k, "
            f"interleaved; {args.repeat} unchanged and +1 runs); peak MB is the "
            "largest peak RSS of any run of that tool at that size. Ratios are against Hugo's "
            "and the floor's cold builds at the same size, measured in the same run."
        ),
        f"Hugo: `{hugo_info['command']}` ({hugo_info['version']})." if hugo else f"Hugo: {hugo_missing}.",
        "",
        render_md(header, body),
        "",
        "## Aims",
        "",
        "| aim | result | ratio | detail |",
        "|---|---|---:|---|",
        *[f"| {v.name} | **{v.result}** | {fmt_aim_ratio(v.ratio)} | {v.detail} |" for v in verdicts],
        "",
    ]
    if notes:
        md += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    RESULTS_MD.write_text("\n".join(md), encoding="utf-8")
    RESULTS_JSON.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "machine": machine(),
                "versions": vers,
                "interpreter": interpreter(),
                "repeat": args.repeat,
                "hugo": hugo_info,
                "pelican": run_pelican,
                "rows": row_dicts,
                "aims": [dataclasses.asdict(v) for v in verdicts],
            },
            ensure_ascii=False,
            indent=2,
        ),
        encoding="utf-8",
    )
    print(f"\nwritten: {RESULTS_MD}")
    return 1 if any(r.crashed for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
