"""The root command group and what every command shares: consoles, exit codes, loading the app,
reporting errors and progress."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .. import __version__
from ..app import App
from ..config import DEFAULT_PATH, load_settings
from ..errors import ConfigError

out = Console(soft_wrap=True)  # no hard wrapping: paths in logs must stay whole
err = Console(stderr=True, soft_wrap=True)

EXIT_PROBLEMS = 1  # a source failed, or --strict found a bad item
EXIT_CONFIG = 2  # the configuration is invalid


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_PATH,
    envvar="PUBLISHER_CONFIG", show_default=True, help="The TOML configuration file.",
)  # fmt: skip
@click.option("-v", "--verbose", is_flag=True, help="Log every item, not just problems.")
@click.version_option(__version__, prog_name="publisher")
@click.pass_context
def main(ctx: click.Context, config_path: Path, verbose: bool) -> None:
    """Feeds (RSS, Atom, JSON Feed) and email digests for a news site."""
    handler: logging.Handler
    if err.is_terminal:
        handler = RichHandler(console=err, show_time=False, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:  # cron and CI logs: one plain line per message
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True)
    ctx.obj = config_path


def load_app(ctx: click.Context) -> App:
    """The app for the configuration that the root group was given; exit 2 when it is invalid."""
    try:
        return App(load_settings(ctx.find_root().obj))
    except ConfigError as exc:
        err.print(str(exc), markup=False, highlight=False)
        sys.exit(EXIT_CONFIG)


def config_path(ctx: click.Context) -> Path:
    """The configuration file the root group was given."""
    path: Path = ctx.find_root().obj
    return path


@contextmanager
def progress(label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A live count of items done; silent when stderr is not a terminal."""
    if not err.is_terminal:
        yield lambda _n: None
        return
    columns = (SpinnerColumn(), TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def fail(exc: Exception, code: int = EXIT_PROBLEMS) -> NoReturn:
    """Print `exc` and exit: 2 for a configuration problem, else `code`."""
    if isinstance(exc, ConfigError):
        err.print(str(exc), markup=False, highlight=False)
        sys.exit(EXIT_CONFIG)
    err.print(f"[bold red]error[/]: {escape(str(exc))}", highlight=False)
    sys.exit(code)


def print_problems(problems: list[str]) -> None:
    """One `skipped` line per unreadable item, on stderr."""
    for problem in problems:
        err.print(f"[yellow]skipped[/] {escape(problem)}", highlight=False)
