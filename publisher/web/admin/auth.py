"""Who is signed in to the console, and what they may do: sessions, CSRF, roles, the audit log.

- **Sessions** are random 256-bit ids in the `publisher_admin` cookie (HttpOnly, SameSite=Strict,
  Path=/admin, Secure unless the console's URL is plain http on a loopback address), kept in the
  store as their SHA-256 only. Server-side rather than a signed cookie, so an admin can end
  anyone's sessions (and a disabled account or a new password ends them at once). A session ends
  after `[admin] idle_minutes` unused and `[admin] session_hours` after sign-in, whichever is first.
- **Every request** to the blueprint passes `guard` first: a route needs a signed-in account
  (the second factor given, when it is set) unless marked `@public`; a POST needs the form's
  `csrf` token (bound to the session: an HMAC of its id under the site's signing key; before
  sign-in, an HMAC of the random value in the console's own `publisher_admin_form` cookie, Secure
  as the session's, so a console reached over an SSH tunnel beside https reader pages works) and
  an editor or admin unless marked
  `@own_account` (what any account may do to itself: sign out, its password, its second factor).
  So a page added later is closed to strangers and read-only to viewers without doing anything.
- **A trusted browser**: a full sign-in (or a password chosen by the one-time link, or a change
  of password or second factor on "My account") also sets `publisher_admin_device`
  (Path=/admin/login, 90 days): the account's id, the time and a random nonce (each browser's
  cookie its own), signed with the site's key over the account's trust generation. That grows
  each time all the account's sessions end (a new password, the second factor on or off,
  `publisher admin reset`, an admin's "end sessions"), voiding every such cookie; a rehash of
  the same password does not. A browser carrying it passes its account's lockout (not the
  per-network limit) until it has typed 10 wrong passwords or codes itself within the
  lockout's span: 10 wrong passwords typed by someone else lock strangers out, never the
  account's owner (OWASP's device cookies), and a stolen cookie buys 10 guesses, not more.
- `requires(role)` raises the bar per route; `audit(...)` records a change.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from flask import Response, current_app, g, request
from markupsafe import Markup

from ...accounts import LoginLimits, TrustedDevice, role_at_least, sha256
from ...store import Account, AdminSession
from ..shared import client_address, current

COOKIE = "publisher_admin"
COOKIE_PATH = "/admin"
FORM_COOKIE = "publisher_admin_form"  # before sign-in: what the forms' CSRF token is bound to
FORM_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32), nothing else
DEVICE_COOKIE = "publisher_admin_device"
DEVICE_COOKIE_PATH = "/admin/login"  # the sign-in form and its second step
DEVICE_LIFETIME = timedelta(days=90)
TOUCH_EVERY = timedelta(minutes=1)  # last_seen is written at most this often
ADMIN_EXTENSION = "publisher_admin"

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class AdminState:
    """The console's settings for one Flask app."""

    idle: timedelta
    lifetime: timedelta
    secure_cookie: bool
    limits: LoginLimits
    base_url: str  # where the console is reached (links printed by `publisher admin`)


def admin_state() -> AdminState:
    state: AdminState = current_app.extensions[ADMIN_EXTENSION]
    return state


def now() -> datetime:
    return current().app.clock()


# --- marking views


def public(view: View) -> View:
    """Open without a session (sign-in, set-password): CSRF still applies to its POST."""
    view._admin_public = True  # type: ignore[attr-defined]
    return view


def own_account(view: View) -> View:
    """A POST any signed-in account may make, viewers too: it changes only that account."""
    view._admin_own_account = True  # type: ignore[attr-defined]
    return view


def requires(role: str) -> Callable[[View], View]:
    """The route needs an account of `role` or above ("viewer" < "editor" < "admin"); 403 else."""

    def decorate(view: View) -> View:
        view._admin_role = role  # type: ignore[attr-defined]
        return view

    return decorate


def _marked(name: str) -> Any:
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(view, name, None)


# --- the session


def current_account() -> Account | None:
    """The signed-in account (second factor given), or None."""
    account: Account | None = g.get("admin_account")
    return account if g.get("admin_verified") else None


def pending_account() -> Account | None:
    """An account whose password was right and whose second factor is awaited."""
    account: Account | None = g.get("admin_account")
    return account if account is not None and not g.get("admin_verified") else None


def _load_session() -> None:
    g.admin_account, g.admin_session, g.admin_verified = None, None, False
    cookie = request.cookies.get(COOKIE, "")
    if not cookie or len(cookie) > 100:
        return
    store, state, moment = current().app.store, admin_state(), now()
    id_hash = sha256(cookie)
    found = store.admin_session(id_hash)
    if found is None:
        return
    if moment - found.last_seen > state.idle or moment - found.created_at > state.lifetime:
        store.end_session(id_hash)
        return
    account = store.account(found.account_id)
    if account is None or account.disabled or account.password_hash is None:
        store.end_session(id_hash)
        return
    if moment - found.last_seen > TOUCH_EVERY:
        store.touch_session(id_hash, moment)
    g.admin_account, g.admin_session, g.admin_verified = account, found, found.verified


def start_session(response: Response, account: Account, verified: bool) -> None:
    """A new session for `account` (any session this browser had is ended), as a cookie on
    `response`."""
    set_session_cookie(response, open_session(account, verified))


def open_session(account: Account, verified: bool) -> str:
    """A new session for `account`, ending the one this browser had; the rest of this request
    (its forms' CSRF tokens) sees the new one. Its id, for `set_session_cookie`."""
    old: AdminSession | None = g.get("admin_session")
    store = current().app.store
    if old is not None:
        store.end_session(old.id_hash)
    state, moment = admin_state(), now()
    store.prune_sessions(moment - state.idle, moment - state.lifetime)
    session_id = secrets.token_urlsafe(32)
    address = client_address()
    store.add_session(sha256(session_id), account.id, moment, verified, address)
    g.admin_session = AdminSession(sha256(session_id), account.id, moment, moment, verified, address[:100])
    g.admin_account, g.admin_verified = account, verified
    return session_id


def set_session_cookie(response: Response, session_id: str) -> None:
    state = admin_state()
    response.set_cookie(
        COOKIE, session_id, max_age=int(state.lifetime.total_seconds()), path=COOKIE_PATH,
        secure=state.secure_cookie, httponly=True, samesite="Strict",
    )  # fmt: skip


def end_session(response: Response) -> None:
    found: AdminSession | None = g.get("admin_session")
    if found is not None:
        current().app.store.end_session(found.id_hash)
    state = admin_state()
    response.delete_cookie(COOKIE, path=COOKIE_PATH, secure=state.secure_cookie, httponly=True, samesite="Strict")


# --- the trusted browser


def _device_mac(account: Account, issued: int, nonce: str) -> str:
    key = current().letters.signing_key
    message = f"admin device {account.id} {issued} {nonce} {account.trust_generation}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def set_device_cookie(response: Response, account: Account) -> None:
    """This browser signed in fully as `account`: it passes the account's lockout from now on."""
    account = current().app.store.account(account.id) or account  # its generation as this request left it
    issued, nonce = int(now().timestamp()), secrets.token_hex(8)
    state = admin_state()
    response.set_cookie(
        DEVICE_COOKIE, f"{account.id}.{issued}.{nonce}.{_device_mac(account, issued, nonce)}",
        max_age=int(DEVICE_LIFETIME.total_seconds()), path=DEVICE_COOKIE_PATH, secure=state.secure_cookie,
        httponly=True, samesite="Strict",
    )  # fmt: skip


def trusted_device() -> TrustedDevice | None:
    """The browser's device cookie if it vouches for an account (signed, not older than
    DEVICE_LIFETIME, made under the account's present trust generation), or None."""
    cookie = request.cookies.get(DEVICE_COOKIE, "")[:200]
    parts = cookie.split(".")
    if len(parts) != 4 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    account = current().app.store.account(int(parts[0]))
    issued = int(parts[1])
    if account is None or account.password_hash is None or now().timestamp() - issued > DEVICE_LIFETIME.total_seconds():
        return None
    if not hmac.compare_digest(parts[3], _device_mac(account, issued, parts[2])):
        return None
    return TrustedDevice(account.id, sha256(cookie))


# --- CSRF


def csrf_token() -> str:
    """The token every form of this browser carries: bound to its session once signed in, to
    its `publisher_admin_form` cookie before (made here when the browser has none)."""
    found: AdminSession | None = g.get("admin_session")
    if found is not None:
        return _mac(f"admin csrf {found.id_hash}")
    if "admin_form_cookie" not in g:
        sent = request.cookies.get(FORM_COOKIE, "")
        g.admin_form_cookie = sent if FORM_COOKIE_VALUE.fullmatch(sent) else secrets.token_urlsafe(32)
        g.admin_form_cookie_new = g.admin_form_cookie != sent
    return _mac(f"admin form {g.admin_form_cookie}")


def set_form_cookie(response: Response) -> Response:
    """The blueprint's after_request: leaves the cookie a form's token was made for."""
    if g.get("admin_form_cookie_new"):
        response.set_cookie(
            FORM_COOKIE, g.admin_form_cookie, path=COOKIE_PATH,
            secure=admin_state().secure_cookie, httponly=True, samesite="Strict",
        )  # fmt: skip
    return response


def _mac(text: str) -> str:
    return hmac.new(current().letters.signing_key, text.encode(), hashlib.sha256).hexdigest()


def csrf_field() -> Markup:
    """The hidden input every console form needs."""
    return Markup('<input type="hidden" name="csrf" value="{}">').format(csrf_token())


def _csrf_ok() -> bool:
    if not _same_origin():
        return False
    if g.get("admin_session") is None and not FORM_COOKIE_VALUE.fullmatch(request.cookies.get(FORM_COOKIE, "")):
        return False  # no cookie of ours: a token from another browser proves nothing
    sent = request.form.get("csrf", "")
    return hmac.compare_digest(sent.encode(), csrf_token().encode())


def _same_origin() -> bool:
    """The browser says the form came from this console's own pages. A sibling subdomain is
    same-site (SameSite=Strict lets its requests carry our cookies, and it can plant a form
    cookie of its own for the parent domain), so it is refused here: by `Sec-Fetch-Site` when
    the browser sends it (every current one does), else by `Origin` against the Host asked for
    (what nginx passes on). The console's pages are sent with `Referrer-Policy: no-referrer`,
    under which a browser's own forms say `Origin: null`: that alone proves nothing either way."""
    fetched_from = request.headers.get("Sec-Fetch-Site")
    if fetched_from is not None:
        return fetched_from in ("same-origin", "none")
    origin = request.headers.get("Origin", "null")
    return origin == "null" or urlsplit(origin).netloc == request.host


# --- the guard every request passes


def see_other(path: str) -> Response:
    """A 303 to a path of the console (after a POST, or to the sign-in page)."""
    return Response("", 303, headers={"Location": path})


def refused(status: int = 403) -> Response:
    """A plain refusal: nothing about the console shown."""
    return Response("Forbidden\n" if status == 403 else "Not Found\n", status, mimetype="text/plain")


def guard() -> Response | None:
    """The blueprint's before_request (see the module's docstring)."""
    if request.endpoint == "admin.static":
        return None
    _load_session()
    if current_account() is None and not current().app.store.has_accounts():  # a session proves one
        return Response(
            "Not Found: the console has no account yet; run `publisher admin add EMAIL --role admin`\n",
            404,
            mimetype="text/plain",
        )
    posting = request.method not in ("GET", "HEAD", "OPTIONS")
    if not _marked("_admin_public"):
        account = current_account()
        if account is None:
            if posting:
                return refused()
            return see_other(_login_url())
        if posting and not _marked("_admin_own_account") and not role_at_least(account.role, "editor"):
            return refused()
        wanted = _marked("_admin_role")
        if wanted and not role_at_least(account.role, wanted):
            return refused()
    if posting and not _csrf_ok():
        return _form_refused()
    return None


def _form_refused() -> Response:
    """A form without its token. When no cookie of the console's came back, over plain http,
    from a page of its own, to a console whose cookies are Secure, the browser kept them (https
    only): say so. Any other refusal (a wrong or stale token, another site's form) is bare."""
    cookies = request.cookies
    came_back = FORM_COOKIE in cookies or COOKIE in cookies or g.get("admin_session") is not None
    if came_back or not admin_state().secure_cookie or request.is_secure or not _same_origin():
        return refused()
    words = (
        "Forbidden: the form's cookie did not come back. The console's cookies are Secure (sent over "
        "https only) because its address (admin.public_url, else web.public_url) is https: open the "
        "console at that https address, or for a trial on this machine over http set "
        'admin.public_url = "http://127.0.0.1:PORT".\n'
    )
    return Response(words, 403, mimetype="text/plain")


def _login_url() -> str:
    path = request.full_path.rstrip("?")
    wanted = path.startswith("/admin/") and path != "/admin/login"
    return "/admin/login" + (f"?next={quote(path, safe='/')}" if wanted else "")  # its own ? and & kept


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a path under /admin only, never another site."""
    if target and target.startswith("/admin/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return "/admin/"


# --- the audit log


def audit(action: str, target: str = "", detail: str = "", actor: str | None = None) -> None:
    """Record a change made by the signed-in account: `action` as "thing.verb" ("account.add",
    "subscriber.erase"), `target` what it changed (an address, a digest id), `detail` anything
    more (the new role). `actor`: who, when nobody is signed in yet (a sign-in, a lockout)."""
    account: Account | None = g.get("admin_account")
    if actor is None:
        actor = account.email if account is not None else "(not signed in)"
    current().app.store.add_audit(now(), actor, action, target, detail, client_address())
