"""The command line: load settings, build the app, call one service, report. Nothing more.

`base` holds the root group and what every command shares; each other module in this package
adds its commands (or one command group) to `main` when imported, and every module here is
imported below, so a new command group is one new module. `run` is the program itself (the
console script): `main`, started without the cyclic garbage collector (base.run).
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import main, run

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["main", "run"]
