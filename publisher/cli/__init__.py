"""The command line: load settings, build the app, call one service, report. Nothing more.

`base` holds the root group and what every command shares; each other module in this package
adds its commands (or one command group) to `main` when imported, and is imported when one of
them is asked for (`base.COMMAND_MODULES`), so a new command group is one new module and one
line there. `program` is the program itself (the console script): `main`, started without the
cyclic garbage collector (base.run), leaving without the interpreter's teardown (base.leave).
"""

from __future__ import annotations

from .base import main, program, run

__all__ = ["main", "program", "run"]
