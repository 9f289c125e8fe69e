"""Signing in to the console in tests: an account made in the store, signed in through the
real sign-in form, as a Flask test client or as a cookie for a real server.

    client = signed_in_client(site, role="editor")     # a flask.testing.FlaskClient
    client.get("/admin/")
    client.post("/admin/…", data={"csrf": csrf_of(client), ...})

    cookie = signed_in_cookie(base_url, site, role="viewer")   # a server already running
    requests.get(f"{base_url}/admin/", cookies={COOKIE: cookie})

The site's config must let the cookie travel over plain http: its console URL (`[admin]
public_url`, else `[web] public_url`) on 127.0.0.1, as `admin_config(base)` writes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pyotp

from publisher.accounts import HASHER
from publisher.store import Store
from publisher.web.admin.auth import COOKIE

if TYPE_CHECKING:
    from flask.testing import FlaskClient

    from conftest import Site

__all__ = ["COOKIE", "PASSWORD", "admin_config", "csrf_of", "make_account", "signed_in_client", "signed_in_cookie",
           "turn_second_factor_on"]  # fmt: skip

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def admin_config(base: str) -> str:
    """TOML for a console reached at `base` (http://127.0.0.1:PORT): cookies without Secure."""
    return f'\n[admin]\npublic_url = "{base}"\n'


def make_account(site: Site, email: str = "admin@example.org", role: str = "admin", **columns: Any) -> int:
    """An account with PASSWORD (and any other columns, e.g. totp_secret=..., totp_enabled=True);
    its id."""
    store = Store(site.store_url)
    try:
        account = store.add_account(email, role, site.clock_now)
        store.update_account(account.id, password_hash=HASHER.hash(PASSWORD), **columns)
        return account.id
    finally:
        store.close()


def csrf_of(client: FlaskClient, path: str = "/admin/account") -> str:
    """The CSRF token of the client's session, read from a page's form."""
    found = _CSRF.search(client.get(path).get_data(as_text=True))
    assert found, f"no form token on {path}"
    return found.group(1)


def signed_in_client(site: Site, email: str = "admin@example.org", role: str = "admin") -> FlaskClient:
    """A Flask test client signed in (through /admin/login) as a new account of `role`."""
    from publisher.web import create_app

    make_account(site, email, role)
    client = create_app(site.app()).test_client()
    login = client.get("/admin/login").get_data(as_text=True)
    token = _CSRF.search(login)
    assert token, login
    answer = client.post("/admin/login", data={"csrf": token.group(1), "email": email, "password": PASSWORD})
    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/", answer.get_data(as_text=True)
    return client


def signed_in_cookie(base: str, site: Site, email: str = "admin@example.org", role: str = "admin") -> str:
    """The session cookie of a new account of `role`, signed in on the server at `base`."""
    import requests

    make_account(site, email, role)
    browser = requests.Session()
    login = browser.get(f"{base}/admin/login", timeout=10)
    token = _CSRF.search(login.text)
    assert login.status_code == 200 and token, login.text
    answer = browser.post(
        f"{base}/admin/login", data={"csrf": token.group(1), "email": email, "password": PASSWORD},
        allow_redirects=False, timeout=10,
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    cookie = answer.cookies.get(COOKIE)
    assert cookie, answer.headers
    return cookie


def turn_second_factor_on(site: Site, browser: FlaskClient) -> str:
    """As its owner does on My account: enrol, then confirm with a code and the password; the
    TOTP secret."""
    token = csrf_of(browser)
    enrol = browser.post("/admin/account/totp", data={"csrf": token}).get_data(as_text=True)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', enrol)
    assert secret
    code = pyotp.TOTP(secret.group(1)).at(site.clock_now)
    on = browser.post("/admin/account/totp/confirm", data={"csrf": token, "current": PASSWORD, "code": code})
    assert on.status_code == 200 and "<code>" in on.get_data(as_text=True)
    return secret.group(1)
