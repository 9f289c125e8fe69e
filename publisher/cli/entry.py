"""The `publisher` program, the console script: what it does around its command line.

A build (or an ingest) forks its process ahead (build_ahead.py) first, as soon as its
arguments name the command and its configuration file, before the command line's own modules
are read: click and rich, and the command's module, are 60 ms of a build's start on one core,
where the forked process walks the files sources and makes the slugs on the other. The build's
`load_app` then takes that process when it was forked for the file the command line reads
(`build_ahead.build_ahead`); one forked for another file is ended and the build forks its own,
and one never taken (arguments click refuses) is ended at exit. The program ends without the
interpreter's teardown (`leave`)."""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from pathlib import Path
from typing import NoReturn

# The commands whose app is loaded with the process ahead (cli.feeds._run)
AHEAD = frozenset({"build", "ingest"})
# What the root group and the commands above take that is followed by a value (`--config FILE`):
# every other option is a flag (-v, --strict, --retry-failed)
_WITH_VALUE = frozenset({"--config"})


def program() -> NoReturn:
    """`publisher`: the process ahead forked when the command is a build, then `base.run`,
    then `leave`. The cyclic collector is off from the start (base.run): the forked process
    makes pypinyin's dictionaries without it, as it did when forked by `load_app`."""
    gc.disable()
    _fork_ahead(sys.argv[1:])
    from .base import run

    try:
        run()  # click ends every command, error or not, by SystemExit
    except SystemExit as done:
        leave(done.code)
    leave(0)  # not reached: click's standalone mode always exits


def command_and_config(args: list[str]) -> tuple[str | None, str | None]:
    """The command `args` name (the first word that is no option nor an option's value) and the
    last --config given, before or after it, as click reads them; None for either not there,
    and no command when help or the version is asked for."""
    command: str | None = None
    config: str | None = None
    at = 0
    while at < len(args):
        arg = args[at]
        if arg == "--":
            break
        if arg in ("--help", "--version") or (arg.startswith("-") and not arg.startswith("--") and "h" in arg):
            return None, config  # -h, or a cluster of short flags with it (-vh)
        if arg in _WITH_VALUE:
            config = args[at + 1] if at + 1 < len(args) else None
            at += 2
            continue
        if arg.startswith("--config="):
            config = arg.removeprefix("--config=")
        elif not arg.startswith("-") and command is None:
            command = arg
        at += 1
    return command, config


def _fork_ahead(args: list[str]) -> None:
    """Fork the build's process ahead when `args` are a build's; nothing else (the command
    reports a configuration that is not there)."""
    command, given = command_and_config(args)
    if command not in AHEAD:
        return
    from ..build_ahead import fork_early
    from ..config_file import find_config
    from ..errors import ConfigError

    try:
        config = find_config(Path(given) if given is not None else None)
    except ConfigError:
        return
    fork_early(config)


def _watched() -> bool:
    """Whether a profiler, a debugger or a coverage tracer runs the program: through
    sys.setprofile or sys.settrace, or (cProfile from Python 3.12) sys.monitoring."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)
    return monitoring is not None and any(monitoring.get_tool(tool) is not None for tool in range(6))


def leave(code: int | str | None) -> NoReturn:
    """End the program with `code` as SystemExit would, without tearing the interpreter down:
    the exit handlers run (logging's, multiprocessing's, weakref finalizers such as temporary
    folders'), the standard streams are flushed, and the process exits. Tearing down every
    module and object one by one, which only frees memory the exit frees anyway, took 25 to 35
    ms of a build (docs/performance.md). Every file and the store are closed by the commands
    themselves before this. It leaves the usual way when a thread the interpreter would wait for
    (not a daemon) still runs, and when a profiler, a debugger or a coverage tracer runs it
    (`python -m cProfile`): they report after the program returns to them."""
    if _watched() or any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        raise SystemExit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # a message, said before the exit handlers run, as Python says it
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe: Python's own exit then says 120
            status = 120
    os._exit(status & 0xFF)
