"""Category slugs made ahead, in a forked process, while the command loads the store.

A new category's slug is its name's pinyin (`text.slugify`), and pypinyin reads its phrase
dictionary (a 2.5 MB JSON file) whole the first time it is used: 0.15 s of a cold build's start,
on one core, while the other waits. A build forks a process for the slugs of its configured
categories right after the configuration is read and goes on loading SQLAlchemy and the store on
its own core; the store then asks for the slugs it has not stored yet (all of them in a new
store, none in an existing one) and gets them from that process.

The forked process only computes; it writes nothing but its answer to a pipe and ends with
`os._exit`. Whatever goes wrong with it (no fork on this platform, another thread running, the
process killed, an answer that does not parse), a slug is made here as before: the answer is
the same either way, only the time differs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Sequence

from .text import slugify


class SlugsAhead:
    """`slugify`, answered from a forked process started with the names most likely asked."""

    def __init__(self, names: Sequence[str]) -> None:
        self._made: dict[str, str] | None = None
        self._pid = 0
        self._answer = -1
        # fork is unsafe beside other threads (a lock held by one stays held in the child)
        if names and hasattr(os, "fork") and threading.active_count() == 1:
            self._start(list(dict.fromkeys(names)))

    def _start(self, names: list[str]) -> None:
        try:
            answer, written = os.pipe()
        except OSError:  # no descriptors left: the slugs are made here
            return
        try:
            pid = os.fork()
        except OSError:  # no process to be had (EAGAIN, ENOMEM): the slugs are made here
            os.close(answer)
            os.close(written)
            return
        if pid == 0:  # the forked process: compute, answer, end without running any exit handler
            code = 1
            try:
                os.close(answer)
                data = json.dumps({name: slugify(name) for name in names}).encode()
                with open(written, "wb") as pipe:
                    pipe.write(data)
                code = 0
            finally:
                os._exit(code)
        os.close(written)
        self._pid, self._answer = pid, answer

    def __call__(self, name: str) -> str:
        made = self._collect()
        slug = made.get(name)
        return slug if isinstance(slug, str) else slugify(name)

    def _collect(self) -> dict[str, str]:
        if self._made is None:
            self._made = {}
            if self._answer >= 0:
                with open(self._answer, "rb") as pipe:
                    data = pipe.read()
                self._answer = -1
                self._reap()
                with contextlib.suppress(ValueError):
                    made = json.loads(data)
                    if isinstance(made, dict):
                        self._made = made
        return self._made

    def close(self) -> None:
        """End the forked process if its answer was never asked for (the store had every slug)."""
        if self._answer >= 0:
            os.close(self._answer)
            self._answer = -1
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self._pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = 0
