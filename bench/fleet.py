"""The processes bench/scale.py starts and watches: a `publisher` command (its output in files,
its peak RSS and CPU), PostgreSQL's CPU, and the machine's.

A process's peak RSS is its VmHWM, sampled from /proc/<pid>/status while it runs and written by
the process itself at its exit (atexit; a SIGKILLed one has only its samples). Not ru_maxrss:
Linux carries the parent's peak across fork and exec (bench/mail.py's own_peak_mb). Its CPU is
from wait4's resource usage, exact for a killed one too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from postgres_site import peak_mb
from provider_double import TOKEN

# The CLI, with the process's /proc status written at its exit (its peak RSS, VmHWM).
CLI = (
    "import atexit, os, sys\n"
    "def peak():\n"
    "    with open('/proc/self/status') as f, open(os.environ['BENCH_STATUS_FILE'], 'w') as out:\n"
    "        out.write(f.read())\n"
    "atexit.register(peak)\n"
    "from publisher.cli import main\n"
    "sys.exit(main())\n"
)


@dataclass
class Proc:
    """A `publisher` process of the bench: its output in files, its peak and CPU from /proc."""

    name: str
    popen: subprocess.Popen[bytes]
    folder: Path
    started: float = field(default_factory=time.monotonic)
    ended: float = 0.0
    peak_mb: float = 0.0
    cpu_s: float = 0.0
    returncode: int | None = None

    @classmethod
    def start(cls, name: str, config: Path, *args: str) -> Proc:
        folder = config.parent
        env = {**os.environ, "PUBLISHER_SECRET_KEY": "scale-bench-signing-key-0123456789", "POSTMARK_TOKEN": TOKEN,
               "BENCH_STATUS_FILE": str(folder / f"{name}.status"), "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
        with open(folder / f"{name}.out", "wb") as out, open(folder / f"{name}.err", "wb") as err:
            popen = subprocess.Popen([sys.executable, "-c", CLI, "--config", str(config), *args],
                                     env=env, stdout=out, stderr=err)  # fmt: skip
        return cls(name, popen, folder)

    def sample(self) -> None:
        if self.returncode is None:
            try:
                self.peak_mb = max(self.peak_mb, peak_mb(Path(f"/proc/{self.popen.pid}/status").read_text()))
            except OSError:
                pass

    def reap(self, block: bool = False) -> bool:
        """True once it has ended (its CPU from wait4, its own last peak when it exited itself)."""
        if self.returncode is not None:
            return True
        pid, status, usage = os.wait4(self.popen.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return False
        self.ended, self.returncode = time.monotonic(), os.waitstatus_to_exitcode(status)
        self.popen.returncode = self.returncode
        self.cpu_s = usage.ru_utime + usage.ru_stime
        status_file = self.folder / f"{self.name}.status"
        if status_file.exists():
            self.peak_mb = max(self.peak_mb, peak_mb(status_file.read_text()))
        return True

    def errors(self) -> str:
        return (self.folder / f"{self.name}.err").read_text(errors="replace")[-3000:]


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class PostgresCpu:
    """CPU seconds PostgreSQL's processes used since it was made: each `postgres` process's
    utime+stime in /proc, sampled (a backend that ends between two samples loses its last second)."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.sample(first=True)

    def sample(self, first: bool = False) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
            if name.startswith("postgres"):
                pid, used = int(stat.parent.name), (int(rest[11]) + int(rest[12])) / tick
                self.last[pid] = used
                if first:
                    self.first[pid] = used

    def seconds(self) -> float:
        return sum(used - self.first.get(pid, 0.0) for pid, used in self.last.items())
