"""The signed-in account's own page: its password and its second factor (TOTP)."""

from __future__ import annotations

from flask import Response, request

from ...accounts import (
    LOCK_AFTER,
    change_password,
    disable_totp,
    enable_totp,
    new_totp_secret,
    password_matches,
    totp_uri,
)
from ...store import Account
from ..shared import current
from . import admin
from .auth import (
    admin_state,
    audit,
    current_account,
    end_session,
    now,
    open_session,
    own_account,
    see_other,
    set_device_cookie,
    set_session_cookie,
)
from .layout import admin_words, render_admin


def _page(status: int = 200, **context: object) -> Response:
    account = current_account()
    assert account is not None
    fresh = current().app.store.account(account.id) or account
    defaults: dict[str, object] = {"error": "", "notice": "", "enrol": None, "codes": None}
    left = current().app.store.recovery_codes_left(fresh.id) if fresh.totp_enabled else 0
    return render_admin("account.html.j2", status, me=fresh, codes_left=left, **(defaults | context))


@admin.get("/account")
def account_page() -> Response:
    return _page()


@admin.post("/account/password")
@own_account
def account_password() -> Response:
    account = current_account()
    assert account is not None
    words = admin_words()["account"]
    new = request.form.get("password", "")
    if new != request.form.get("again", ""):
        return _page(400, error=admin_words()["password"]["mismatch"])
    try:
        changed = change_password(current().app.store, account, request.form.get("current", ""), new)
    except ValueError as exc:
        return _page(400, error=admin_words()["password"]["weak"].format(reason=str(exc)))
    if not changed:
        return _wrong_password(account)
    ended, session_id = _sign_in_anew(account)
    audit("account.password", account.email, f"{ended} session(s) ended")
    return _with_session(_page(notice=words["password_changed"]), session_id)


def _wrong_password(account: Account, **context: object) -> Response:
    """A wrong password typed to confirm a change counts as a sign-in's does: 10 in a row lock
    the account and sign all its browsers out, so a session left open (or stolen) is no way to
    guess the password without limit. `context`: more for the page shown again."""
    store = current().app.store
    audit("account.password_check_failed", account.email, "wrong password")
    if store.count_bad_password(account.id, LOCK_AFTER, admin_state().limits.lockout, now()):
        ended = store.end_sessions(account.id)
        audit("account.locked", account.email, f"10 bad passwords in a row; {ended} session(s) ended")
        response = see_other("/admin/login")
        end_session(response)
        return response
    return _page(403, error=admin_words()["account"]["wrong_password"], **context)


def _sign_in_anew(account: Account) -> tuple[int, str]:
    """After a change of the account's password or second factor: every browser signed in as
    it is signed out and trusted no more, and this one goes on under a new session id (a
    session id someone else learnt before the change is worth nothing after it). (sessions
    ended, the new id)"""
    ended = current().app.store.end_sessions(account.id)
    return ended, open_session(account, verified=True)


def _with_session(response: Response, session_id: str) -> Response:
    """`response` with the new session's cookie, and this browser trusted again (the change
    voided every trusted-browser cookie of the account, its own too)."""
    account = current_account()
    assert account is not None
    set_session_cookie(response, session_id)
    set_device_cookie(response, account)
    return response


@admin.post("/account/totp")
@own_account
def account_totp_start() -> Response:
    """A new secret to enrol (kept, not yet in force, until a code from it is typed)."""
    account = current_account()
    assert account is not None
    if account.totp_enabled:
        return _page()
    secret = new_totp_secret()
    current().app.store.update_account(account.id, totp_secret=secret)
    return _page(enrol=_enrolment(secret, account.email))


def _enrolment(secret: str, email: str) -> dict[str, str]:
    """The secret to enrol, as typed into an authenticator app and as its otpauth:// URI."""
    issuer = f"{current().app.settings.site.title} publisher"
    return {"secret": secret, "uri": totp_uri(secret, email, issuer)}


@admin.post("/account/totp/confirm")
@own_account
def account_totp_confirm() -> Response:
    """Turning the second factor on needs the password and a code from the app: a session left
    open (or stolen) cannot enrol an authenticator of its own and lock the owner out."""
    account = current_account()
    assert account is not None
    store = current().app.store
    fresh = store.account(account.id)
    if fresh is None or fresh.totp_enabled or not fresh.totp_secret:
        return _page()
    enrol = _enrolment(fresh.totp_secret, fresh.email)
    if not password_matches(fresh.password_hash, request.form.get("current", "")):
        return _wrong_password(fresh, enrol=enrol)
    codes = enable_totp(store, fresh, fresh.totp_secret, request.form.get("code", ""), now())
    if codes is None:
        return _page(400, error=admin_words()["login"]["bad_code"], enrol=enrol)
    ended, session_id = _sign_in_anew(account)
    audit("account.totp_on", account.email, f"{ended} session(s) ended")
    return _with_session(_page(codes=codes), session_id)


@admin.post("/account/totp/off")
@own_account
def account_totp_off() -> Response:
    """Turning the second factor off needs the password again."""

    account = current_account()
    assert account is not None
    if not password_matches(account.password_hash, request.form.get("current", "")):
        return _wrong_password(account)
    disable_totp(current().app.store, account)
    ended, session_id = _sign_in_anew(account)
    audit("account.totp_off", account.email, f"{ended} session(s) ended")
    return _with_session(_page(notice=admin_words()["account"]["totp_off_done"]), session_id)
