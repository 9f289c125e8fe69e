"""`publisher admin`: the console's accounts from the command line: the first account (and
any other), the list, a new set-password link. Every change is in the console's audit log,
by "cli"."""

from __future__ import annotations

import click

from ..model import ROLES
from .base import EXIT_PROBLEMS, err, load_app, main, out
from .tables import FORMAT, Column, print_records

ACCOUNT_COLUMNS = (
    Column("email"),
    Column("role"),
    Column("state"),
    Column("second_factor", "second factor"),
    Column("created_at", "created", time=True),
)


@main.group()
def admin() -> None:
    """The console's accounts (/admin)."""


def _link(app: object, token: str) -> str:
    from ..web.admin import console_url, password_url

    return password_url(console_url(app), token)  # type: ignore[arg-type]


@admin.command("add")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), required=True, help="viewer reads; editor also manages "
              "subscribers and digests; admin also manages accounts.")  # fmt: skip
@click.pass_context
def admin_add(ctx: click.Context, email: str, role: str) -> None:
    """Add a console account and print its one-time set-password link (valid 24 hours)."""
    from ..accounts import open_password_link
    from ..store import AccountExists
    from ..subscriptions import normalize_email

    app = load_app(ctx)
    try:
        try:
            address = normalize_email(email).lower()
        except ValueError as exc:
            err.print(f"error: {email!r} is not an e-mail address: {exc}", highlight=False)
            raise SystemExit(EXIT_PROBLEMS) from exc
        now = app.clock()
        try:
            account = app.store.add_account(address, role, now)
        except AccountExists:
            err.print(f"error: {address} has an account already; `publisher admin reset {address}` "
                      "prints a new set-password link", highlight=False)  # fmt: skip
            raise SystemExit(EXIT_PROBLEMS) from None
        token = open_password_link(app.store, account, now)
        app.store.add_audit(now, "cli", "account.add", address, f"role {role}", "")
        out.print(f"added {address} ({role}); to choose a password, open within 24 hours:", highlight=False)
        out.print(_link(app, token), highlight=False, soft_wrap=True)
    finally:
        app.close()


@admin.command("reset")
@click.argument("email")
@click.option("--drop-totp", is_flag=True, help="Also turn the second factor off (a lost phone and recovery codes).")
@click.pass_context
def admin_reset(ctx: click.Context, email: str, drop_totp: bool) -> None:
    """Print a new one-time set-password link for an account, voiding the one before; the
    account is enabled and unlocked, and its sessions end."""
    from ..accounts import disable_totp, open_password_link

    app = load_app(ctx)
    try:
        account = app.store.account_by_email(email.strip())
        if account is None:
            err.print(f"error: no console account {email.strip()!r} (`publisher admin list`)", highlight=False)
            raise SystemExit(EXIT_PROBLEMS)
        now = app.clock()
        app.store.update_account(account.id, disabled=False, failed_logins=0, locked_until=None)
        app.store.end_sessions(account.id)
        if drop_totp:
            disable_totp(app.store, account)
        token = open_password_link(app.store, account, now)
        detail = "new set-password link" + (", second factor off" if drop_totp else "")
        app.store.add_audit(now, "cli", "account.reset", account.email, detail, "")
        out.print(f"{account.email}: to choose a new password, open within 24 hours:", highlight=False)
        out.print(_link(app, token), highlight=False, soft_wrap=True)
    finally:
        app.close()


@admin.command("list")
@FORMAT
@click.pass_context
def admin_list(ctx: click.Context, output_format: str) -> None:
    """The console's accounts: address, role, state (active, disabled, locked, no password
    yet), whether the second factor is on, and when each was added."""
    app = load_app(ctx)
    try:
        accounts = app.store.accounts()
        now = app.clock()
    finally:
        app.close()

    def state(disabled: bool, locked: bool, has_password: bool) -> str:
        return "disabled" if disabled else "locked" if locked else "active" if has_password else "no password yet"

    rows = [
        (a.email, a.role, state(a.disabled, a.locked(now), a.password_hash is not None),
         "on" if a.totp_enabled else "off", a.created_at)
        for a in accounts
    ]  # fmt: skip
    print_records(ACCOUNT_COLUMNS, rows, output_format, app.settings.site.timezone)
