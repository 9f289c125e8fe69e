"""Signing in and out of the console, and the set-password link `publisher admin add` prints.

Sign-in is two steps when the account has a second factor: the password opens a session that
is not yet verified (it reaches only the code page), the TOTP code or a recovery code verifies
it, under a new session id. Every failure says the same thing; see publisher.accounts.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Response, request

from ...accounts import Outcome, SignIn, account_for_link, check_code, check_password, set_password_by_link
from ..shared import client_address, current
from . import admin
from .auth import (
    admin_state,
    audit,
    current_account,
    end_session,
    now,
    own_account,
    pending_account,
    public,
    safe_next,
    see_other,
    set_device_cookie,
    start_session,
    trusted_device,
)
from .layout import admin_words, render_admin


def _login_page(status: int = 200, error: str = "", email: str = "") -> Response:
    return render_admin("login.html.j2", status, error=error, email=email, next=request.args.get("next", ""))


@admin.get("/login")
@public
def login_form() -> Response:
    if current_account() is not None:
        return see_other("/admin/")
    return _login_page()


@admin.post("/login")
@public
def login() -> Response:
    words = admin_words()
    email = request.form.get("email", "").strip()[:320]
    password, limits = request.form.get("password", ""), admin_state().limits
    result = check_password(current().app.store, email, password, client_address(), limits, now(), trusted_device())
    if result.outcome is Outcome.THROTTLED:  # not audited: its network's failures were, up to the limit
        return _login_page(429, words["login"]["throttled"], email)
    _failed_sign_in(result, email, "wrong password")
    if result.outcome in (Outcome.LOCKED, Outcome.REFUSED) or result.account is None:
        # A lock says what a wrong password says, or 10 tries would tell which addresses have
        # an account; the words say that 10 wrong passwords lock one.
        return _login_page(403, words["login"]["refused"], email)
    verified = result.outcome is Outcome.SIGNED_IN
    target = safe_next(request.form.get("next"))
    response = see_other(target if verified else "/admin/login/code?" + urlencode({"next": target}))
    start_session(response, result.account, verified)
    if verified:
        set_device_cookie(response, result.account)
        audit("account.sign_in", email, actor=result.account.email)
    return response


@admin.route("/login/code", methods=["GET", "POST"])
@public
def login_code() -> Response:
    """The second step: the authenticator's code, or a recovery code."""
    account = pending_account()
    if account is None:
        return see_other("/admin/login")
    words = admin_words()
    if request.method == "GET":
        return render_admin("code.html.j2", error="", next=request.args.get("next", ""))
    code, limits = request.form.get("code", ""), admin_state().limits
    result = check_code(current().app.store, account, code, client_address(), limits, now(), trusted_device())
    _failed_sign_in(result, account.email, "wrong second-factor code")
    if result.outcome is not Outcome.SIGNED_IN:
        key = {Outcome.THROTTLED: "throttled", Outcome.LOCKED: "locked"}.get(result.outcome, "bad_code")
        status = 429 if result.outcome is Outcome.THROTTLED else 403
        page = render_admin("code.html.j2", status, error=words["login"][key], next=request.form.get("next", ""))
        if result.outcome is Outcome.LOCKED:  # the half-signed-in session ends with the lock
            end_session(page)
        return page
    response = see_other(safe_next(request.form.get("next")))
    start_session(response, account, verified=True)  # a new id once verified
    set_device_cookie(response, account)
    audit("account.sign_in", account.email, "with a second factor", actor=account.email)
    return response


def _failed_sign_in(result: SignIn, email: str, what: str) -> None:
    """A refused sign-in to an account in the audit log (by whoever typed `email`), and a
    lockout it caused. Not an address without an account (any number of them can be typed, so
    they are only counted for the limits, in admin_login_failures), nor a try while the account
    is locked (its lockout is the row): so the log grows by at most 11 rows per account per
    lockout, however many networks are guessing."""
    refused = result.outcome is Outcome.REFUSED or result.locked_now
    if result.account is None or not refused:
        return
    audit("account.sign_in_failed", email, what, actor="(not signed in)")
    if result.locked_now:
        audit("account.locked", email, "10 bad passwords or codes in a row", actor=email)


@admin.post("/logout")
@own_account
def logout() -> Response:
    response = see_other("/admin/login")
    end_session(response)
    return response


@admin.route("/password/<token>", methods=["GET", "POST"])
@public
def set_password(token: str) -> Response:
    """The one-time link `publisher admin add` and the accounts page give: choose a password.
    A GET changes nothing; the POST uses the link up and signs nobody in."""
    words = admin_words()
    store = current().app.store
    account = account_for_link(store, token, now())
    if account is None:
        return render_admin("notice.html.j2", 404, title=words["password"]["expired"], body="")
    if request.method == "GET":
        return render_admin("password.html.j2", email=account.email, error="")
    password = request.form.get("password", "")
    if password != request.form.get("again", ""):
        return render_admin("password.html.j2", 400, email=account.email, error=words["password"]["mismatch"])
    try:
        done = set_password_by_link(store, token, password, now())
    except ValueError as exc:
        error = words["password"]["weak"].format(reason=str(exc))
        return render_admin("password.html.j2", 400, email=account.email, error=error)
    if done is None:
        return render_admin("notice.html.j2", 404, title=words["password"]["expired"], body="")
    audit("account.set_password", done.email, "by the set-password link", actor=done.email)
    response = render_admin("notice.html.j2", title=words["password"]["done"], body="", sign_in=True)
    # Whoever held the one-time link is the account's owner: this browser passes its lockout
    # from now on, so nobody can keep a new (or reset) account locked before its first sign-in.
    set_device_cookie(response, done)
    return response
