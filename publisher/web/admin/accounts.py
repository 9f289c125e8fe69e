"""Admins manage accounts: list, add with a role, change a role, disable and enable, open a new
set-password link, end an account's sessions. Every change is in the audit log."""

from __future__ import annotations

from flask import Response, request

from ...accounts import open_password_link
from ...model import ROLES
from ...store import Account, AccountExists
from ...subscriptions import normalize_email
from ..shared import current
from . import admin, password_url
from .auth import admin_state, audit, current_account, now, requires
from .layout import admin_words, render_admin


def _page(status: int = 200, error: str = "", notice: str = "", link: str = "") -> Response:
    store = current().app.store
    rows = [(a, store.session_count(a.id)) for a in store.accounts()]
    return render_admin(
        "accounts.html.j2", status, rows=rows, roles=ROLES, error=error, notice=notice, link=link, moment=now()
    )


def password_link(account: Account) -> str:
    token = open_password_link(current().app.store, account, now())
    return password_url(admin_state().base_url, token)


@admin.get("/accounts")
@requires("admin")
def accounts_page() -> Response:
    return _page()


@admin.post("/accounts")
@requires("admin")
def account_add() -> Response:
    words = admin_words()["accounts"]
    role = request.form.get("role", "")
    try:
        email = normalize_email(request.form.get("email", "")).lower()
    except ValueError:
        return _page(400, error=words["bad_email"])
    if role not in ROLES:
        return _page(400, error=words["bad_role"])
    try:
        account = current().app.store.add_account(email, role, now())
    except AccountExists:
        return _page(400, error=words["exists"].format(email=email))
    audit("account.add", email, f"role {role}")
    return _page(notice=words["added"].format(email=email), link=password_link(account))


def _target(account_id: int) -> Account | None:
    return current().app.store.account(account_id)


def _not_self(target: Account) -> bool:
    me = current_account()
    return me is not None and me.id != target.id


@admin.post("/accounts/<int:account_id>/role")
@requires("admin")
def account_role(account_id: int) -> Response:
    words = admin_words()["accounts"]
    target, role = _target(account_id), request.form.get("role", "")
    if target is None or role not in ROLES:
        return _page(400, error=words["bad_role"])
    if not _not_self(target):
        return _page(400, error=words["not_yourself"])
    current().app.store.update_account(target.id, role=role)
    audit("account.role", target.email, f"{target.role} -> {role}")
    return _page(notice=words["changed"].format(email=target.email))


@admin.post("/accounts/<int:account_id>/disable")
@requires("admin")
def account_disable(account_id: int) -> Response:
    words = admin_words()["accounts"]
    target = _target(account_id)
    if target is None or not _not_self(target):
        return _page(400, error=words["not_yourself"])
    store = current().app.store
    store.update_account(target.id, disabled=True)
    ended = store.end_sessions(target.id)
    audit("account.disable", target.email, f"{ended} session(s) ended")
    return _page(notice=words["changed"].format(email=target.email))


@admin.post("/accounts/<int:account_id>/enable")
@requires("admin")
def account_enable(account_id: int) -> Response:
    target = _target(account_id)
    if target is None:
        return _page(404)
    current().app.store.update_account(target.id, disabled=False, failed_logins=0, locked_until=None)
    audit("account.enable", target.email)
    return _page(notice=admin_words()["accounts"]["changed"].format(email=target.email))


@admin.post("/accounts/<int:account_id>/password-link")
@requires("admin")
def account_password_link(account_id: int) -> Response:
    """A new one-time set-password link for a forgotten password (the old password stays
    until the link is used)."""
    target = _target(account_id)
    if target is None:
        return _page(404)
    link = password_link(target)
    audit("account.password_link", target.email)
    return _page(notice=admin_words()["accounts"]["link_made"].format(email=target.email), link=link)


@admin.post("/accounts/<int:account_id>/sessions")
@requires("admin")
def account_revoke(account_id: int) -> Response:
    """End every session of the account (its browsers must sign in again)."""
    target = _target(account_id)
    if target is None:
        return _page(404)
    ended = current().app.store.end_sessions(target.id)
    audit("account.revoke", target.email, f"{ended} session(s) ended")
    return _page(notice=admin_words()["accounts"]["revoked"].format(email=target.email, count=ended))
