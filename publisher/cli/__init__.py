"""The command line: load settings, build the app, call one service, report. Nothing more.

`base` holds the root group and what every command shares; each other module in this package
adds its commands (or one command group) to `main` when imported, and is imported when one of
them is asked for (`base.COMMAND_MODULES`), so a new command group is one new module and one
line there. `program` is the program itself (the console script, cli.entry): `main`, started
without the cyclic garbage collector (base.run), leaving without the interpreter's teardown.
Importing this package reads none of them (the program forks a build's process ahead before
click is read): each is read when it is first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import main, run
    from .entry import program

__all__ = ["main", "program", "run"]


def __getattr__(name: str) -> object:
    if name == "program":
        from .entry import program

        return program
    if name in ("main", "run"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
