"""The store's schema: `publisher db status` and `publisher db upgrade` (docs/operations.md,
Upgrading). The only commands that open a store at another schema revision than the code's."""

from __future__ import annotations

import sys

import click

from ..errors import ConfigError, StoreError, StoreSchemaError
from .base import EXIT_CONFIG, EXIT_PROBLEMS, config_path, fail, main, out, started


@main.group()
def db() -> None:
    """The store's schema revision: status, and upgrade after installing a new publisher."""


@db.command("status")
@click.pass_context
def db_status(ctx: click.Context) -> None:
    """Print the store's and the code's schema revisions, and whether an upgrade is needed."""
    from ..store.migrate import shown_url, status
    from ..store.revision import HEAD

    url = _store_url(ctx)
    try:
        state = status(url)
    except StoreError as exc:
        fail(exc)
    out.print(f"store: {shown_url(url)}", highlight=False)
    out.print(f"store revision: {state.label}", highlight=False)
    out.print(f"code revision:  {HEAD}", highlight=False)
    if state.current:
        out.print("up to date", highlight=False)
    elif state.empty:
        out.print(f"no store yet: the first command creates it at revision {HEAD}", highlight=False)
    elif state.behind:
        out.print("upgrade needed: back up the store, then `publisher db upgrade`", highlight=False)
    else:
        out.print("the store is ahead: it was made by a newer publisher; install that version", highlight=False)
    if state.behind or state.ahead:
        sys.exit(EXIT_PROBLEMS)


@db.command("upgrade")
@click.option("--no-backup", is_flag=True, help="SQLite: do not copy the store first (you made your own backup).")
@click.pass_context
def db_upgrade(ctx: click.Context, no_backup: bool) -> None:
    """Migrate the store to this publisher's schema revision (SQLite: after copying it)."""
    upgrade_store(_store_url(ctx), backup=not no_backup)


def _store_url(ctx: click.Context) -> str:
    """[store] url of the configuration (exit 2 when it is invalid); the theme is not needed."""
    from ..config import load_settings

    try:
        url = load_settings(config_path(ctx)).store.url
    except ConfigError as exc:
        fail(exc)
    started()  # an upgrade of a large store runs with the collector on
    return url


def upgrade_store(url: str, backup: bool = True, command: str = "publisher db upgrade") -> None:
    """Upgrade the store at `url` and say what was done; exit 2 when a newer publisher made
    it (the refusal names `command`), 1 when it cannot be upgraded. Shared with `publisher run
    --upgrade`."""
    from ..store.migrate import shown_url, upgrade
    from ..store.revision import SchemaState

    try:
        done = upgrade(url, backup=backup)
    except StoreSchemaError as exc:  # made by a newer publisher
        fail(exc.refused_by(command), EXIT_CONFIG)
    except StoreError as exc:
        fail(exc)
    if done.backup is not None:
        out.print(f"backed up the store to {done.backup}", highlight=False)
    if done.before == SchemaState(None).label:  # a new store: nothing was upgraded
        out.print(f"created {shown_url(url)} at revision {done.after}", highlight=False)
    elif done.changed:
        out.print(f"upgraded {shown_url(url)} from revision {done.before} to {done.after}", highlight=False)
    else:
        out.print(f"{shown_url(url)} is at revision {done.after}: nothing to upgrade", highlight=False)
