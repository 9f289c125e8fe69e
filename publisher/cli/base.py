"""The root command group and what every command shares: consoles, exit codes, loading the app,
reporting errors and progress."""

from __future__ import annotations

import gc
import importlib
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.console import Console
from rich.text import Text

from .. import __version__
from ..errors import (
    FILE_REFUSED,
    ConfigError,
    OutputError,
    PublisherError,
    StoreError,
    StoreSchemaError,
    ThemeError,
)

if TYPE_CHECKING:  # imported where used: `publisher --help` and every command start without them
    from ..app import App

# No hard wrapping: paths in logs must stay whole. No markup: what is printed holds readers'
# names, titles and paths, and `[/bold]` in one must not crash a command nor `[link=…]` make a
# link; styles come from `labelled` (rich Text), never from markup in a string. No emoji codes
# either: `:smile:` in a value is printed as written (and rich's table of them is not loaded).
out = Console(soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, soft_wrap=True, markup=False, emoji=False)

EXIT_PROBLEMS = 1  # a source failed, or --strict found a bad item
EXIT_CONFIG = 2  # the configuration is invalid, or the store's schema is not this code's


@dataclass
class GlobalOptions:
    """The options every command takes, wherever they were typed: `publisher -v build` and
    `publisher build -v` mean the same; the last one given wins."""

    config: Path | None  # None: config_file.find_config looks in the usual places
    verbose: bool = False
    store_url: str = ""  # of the loaded configuration, to name the store in errors


def _options(ctx: click.Context) -> GlobalOptions:
    options = ctx.find_root().obj  # set by main(), which click runs before parsing a subcommand
    assert isinstance(options, GlobalOptions)
    return options


def _configure_logging(verbose: bool) -> None:
    handler: logging.Handler
    if err.is_terminal:
        from rich.logging import RichHandler

        handler = RichHandler(console=err, show_time=False, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:  # cron and CI logs: one plain line per message
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True)


def _config_given(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        _options(ctx).config = value


def _verbose_given(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        _options(ctx).verbose = True
        _configure_logging(verbose=True)


_CONFIG_HELP = (
    "The TOML configuration file [default: $PUBLISHER_CONFIG, else ./publisher.toml, else config/publisher.toml]."
)
_VERBOSE_HELP = "Log every item, not just problems."


class _TakesGlobalOptions(click.Command):
    """A subcommand that also takes the root's `--config` and `-v`, typed after its name. The root
    group has run by then (its callback sets up GlobalOptions), so these only override."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params += [
            click.Option(["--config"], type=click.Path(path_type=Path), expose_value=False, callback=_config_given,
                         help=_CONFIG_HELP),
            click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, callback=_verbose_given,
                         help=_VERBOSE_HELP),
        ]  # fmt: skip


class Command(_TakesGlobalOptions):
    """Every leaf command: `publisher build`, `publisher digest send`."""


class Group(_TakesGlobalOptions, click.Group):
    """Every command group under the root (`publisher digest`); its commands are Commands."""

    command_class = Command
    group_class = type  # groups within it are Groups too


# Each command of `publisher` and the modules of this package that define it and its subcommands:
# a command imports only its own (`publisher build` 20 ms sooner); `publisher --help` and a name
# that is none of them import all.
# tests/test_cli.py holds this to what the modules define.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "admin": ("admin",),
    "backup": ("backup",),
    "bounces": ("bounces", "mailbox"),
    "build": ("feeds",),
    "check": ("feeds",),
    "db": ("db",),
    "digest": ("digest", "digest_report"),
    "embed": ("embed",),
    "ingest": ("feeds",),
    "init": ("init",),
    "run": ("service",),
    "serve": ("service",),
    "status": ("status",),
    "subscribers": ("subscribers",),
    "theme": ("theme",),
    "worker": ("worker",),
}


class RootGroup(click.Group):
    """`publisher` itself: every command and group added to it takes the global options too,
    and is defined when it is asked for (COMMAND_MODULES). What reaches it unexplained from the
    store or the disk (a full disk, a store locked too long or damaged) is said in one line
    naming the store or file and what to do, never a traceback."""

    command_class = Command
    group_class = Group

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        # A name not there is most likely a typo: with every command defined, click says which
        # one was meant ("Did you mean 'build'?").
        modules = COMMAND_MODULES.get(cmd_name) or {m for found in COMMAND_MODULES.values() for m in found}
        for module in sorted(modules):
            importlib.import_module(f"{__package__}.{module}")  # its decorators add it to `main`
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PublisherError as exc:  # explained already, and not caught by its command
            fail(exc)
        except OSError as exc:
            if exc.errno not in FILE_REFUSED:
                raise
            fail(OutputError(exc.filename or "a file", exc))
        except Exception as exc:
            # a store's error can only come from a command that imported SQLAlchemy: a command
            # that uses no store (`init`, `theme export`) does not import it to be told so
            dbapi = sys.modules.get("sqlalchemy.exc")
            if dbapi is None or not isinstance(exc, dbapi.DBAPIError):
                raise
            from ..store import store_failure

            fail(store_failure(exc, _options(ctx).store_url))


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(path_type=Path), help=_CONFIG_HELP)
@click.option("-v", "--verbose", is_flag=True, help=_VERBOSE_HELP)
@click.version_option(__version__, prog_name="publisher")
@click.pass_context
def main(ctx: click.Context, config: Path | None, verbose: bool) -> None:
    """Feeds (RSS, Atom, JSON Feed) and email digests for a news site."""
    _configure_logging(verbose)
    ctx.obj = GlobalOptions(config, verbose)


def run() -> None:
    """The `publisher` program (the console script, cli.entry, calls it): `main`, started without
    the cyclic garbage collector. A start makes some 80,000 objects that live as long as the
    process (modules, the configuration's models, the store's tables); collecting among them
    while they were made, and again at exit, took a third of an unchanged build. `started` turns it on again, with them
    frozen out of every later collection (and so never copied by a forked worker's collections).
    Tests call `main` in-process, where the collector stays as it is."""
    gc.disable()
    main()


# Objects made (less those freed) between two collections of the youngest generation: 700 by
# default. A build's articles and rows make no cycles: in a cold build of 10,000 articles its
# main process ran 87 young and 8 middle collections, which freed 458 objects in 22 ms of CPU;
# at 50,000, 31 and 3, in 4 ms (workers forked from it inherit this). In `publisher run`,
# garbage in cycles (and a socket or connection it holds) waits longer to be freed, and each
# young collection takes a few ms.
YOUNG_COLLECTION = 50_000


def started() -> None:
    """The command's start is over (see `run`): what it made is frozen, and the collector runs
    again (`publisher run` serves for weeks), its youngest generation collected less often
    (YOUNG_COLLECTION). Nothing when the collector runs already."""
    if not gc.isenabled():
        gc.freeze()
        gc.set_threshold(YOUNG_COLLECTION, *gc.get_threshold()[1:])
        gc.enable()


def load_app(ctx: click.Context, store: bool = True, ahead: bool = False) -> App:
    """The app for the configuration the command was given; exit 2 when it is invalid or its
    theme has a broken override (named with file and line now, not when a digest renders).
    With `store`, its store is opened now, so a store this publisher must not use (one that
    needs `publisher db upgrade`, or one made by a newer publisher) is refused before any work.
    With `ahead` (a build), a process is forked as soon as the configuration file is known,
    before it is validated, which walks the files sources, makes the categories' pinyin slugs
    and, into a new SQLite store, reads the first files while this one validates the settings,
    imports the app and opens the store (build_ahead.py)."""
    helper = None
    try:
        path = config_path(ctx)
        if ahead:  # forked before the settings are validated: that is a fifth of the start
            from ..build_ahead import build_ahead

            helper = build_ahead(path)
        try:
            from ..config import load_settings

            settings = load_settings(path)
            if helper is not None:
                helper.told(settings)
            from ..app import App

            app = App(settings, ahead=helper)
            app.theme  # noqa: B018 - compiles the theme's overrides
        except BaseException:
            if helper is not None:
                helper.close()  # its process ended and reaped, not left for the exit
            raise
    except ConfigError as exc:
        err.print(str(exc), highlight=False)
        sys.exit(EXIT_CONFIG)
    except ThemeError as exc:
        err.print(labelled("theme error:", "bold red", str(exc)), highlight=False)
        sys.exit(EXIT_CONFIG)
    _options(ctx).store_url = app.settings.store.url
    if store:
        try:
            open_store(ctx, app)
        except BaseException:  # a store refused or not opened: exit 2 or 1, after closing
            app.close()  # the build's forked process too (build_ahead.py)
            raise
    started()
    return app


def open_store(ctx: click.Context, app: App) -> None:
    """Open the app's store: exit 2 naming the command when its schema is not this code's (as
    for a bad configuration: running again cannot help, so systemd does not restart), 1 when
    it cannot be opened."""
    try:
        app.store  # noqa: B018 - opening it checks its schema revision
    except StoreSchemaError as exc:
        fail(exc.refused_by(" ".join(["publisher", *ctx.command_path.split()[1:]])), EXIT_CONFIG)
    except StoreError as exc:
        fail(exc)


def config_path(ctx: click.Context) -> Path:
    """The configuration file the command was given (before or after its name), else the one
    found where config_file.find_config looks; exit 2 when there is none."""
    from ..config_file import find_config

    try:
        return find_config(_options(ctx).config)
    except ConfigError as exc:
        err.print(str(exc), highlight=False)
        sys.exit(EXIT_CONFIG)


@contextmanager
def progress(label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A live count of items done; silent when stderr is not a terminal."""
    if not err.is_terminal:
        yield lambda _n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn(label, markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def fail(exc: Exception, code: int = EXIT_PROBLEMS) -> NoReturn:
    """Print `exc` and exit: 2 for a configuration problem, else `code`."""
    if isinstance(exc, ConfigError):
        err.print(str(exc), highlight=False)
        sys.exit(EXIT_CONFIG)
    err.print(labelled("error:", "bold red", str(exc)), highlight=False)
    sys.exit(code)


def print_problems(problems: list[str]) -> None:
    """One `skipped` line per unreadable item, on stderr."""
    for problem in problems:
        err.print(labelled("skipped", "yellow", problem), highlight=False)


def labelled(label: str, style: str, text: str = "") -> Text:
    """`label` in `style`, then `text` exactly as it is: never read as markup, whoever wrote it."""
    return Text.assemble((label, style), " " if text else "", text)
