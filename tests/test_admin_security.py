"""The console's acceptance list: every /admin route refuses a missing, expired or forged
session; every POST refuses a missing CSRF token, changing nothing; a viewer changes nothing;
10 bad passwords lock the account; the audit log records each change; the second factor.

The routes are read from the app's url_map, so pages added to the blueprint later are covered."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient

from admin_session import COOKIE, PASSWORD, admin_config, csrf_of, make_account, signed_in_client
from conftest import Site
from publisher.store import Store
from publisher.web import create_app


@pytest.fixture
def console_site(site: Site) -> Site:
    site.write_config(site.mail_to_outbox() + admin_config("http://127.0.0.1:9"))
    return site


def admin_routes(web: Flask) -> Iterator[tuple[str, str, str]]:
    """(endpoint, method, url) of every route of the admin blueprint, with placeholder values."""
    adapter = web.url_map.bind("localhost")
    for rule in web.url_map.iter_rules():
        if not rule.endpoint.startswith("admin.") or rule.endpoint == "admin.static":
            continue
        values = {name: 1 if type(rule._converters[name]).__name__ == "IntegerConverter" else "x"
                  for name in rule.arguments}  # fmt: skip
        url = adapter.build(rule.endpoint, values)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, url


def marked(web: Flask, endpoint: str, mark: str) -> bool:
    return bool(getattr(web.view_functions[endpoint], mark, False))


def store_state(site: Site) -> tuple[Any, ...]:
    """Everything a console POST could change: accounts, sessions, audit rows, subscribers."""
    store = Store(site.store_url)
    try:
        with store.engine.connect() as conn:
            tables = ("admin_accounts", "admin_sessions", "admin_audit", "admin_recovery_codes", "subscribers",
                      "digests", "deliveries", "suppressions")  # fmt: skip
            return tuple(tuple(map(tuple, conn.exec_driver_sql(f"SELECT * FROM {t}").all())) for t in tables)
    finally:
        store.close()


def test_the_admin_routes_are_many(console_site: Site) -> None:
    """The iteration below sees the pages (a guard against a test that checks nothing)."""
    routes = list(admin_routes(create_app(console_site.app())))
    assert len(routes) >= 15 and ("admin.accounts_page", "GET", "/admin/accounts") in routes


def test_every_route_refuses_a_missing_or_forged_session(console_site: Site) -> None:
    make_account(console_site)
    web = create_app(console_site.app())
    checked = 0
    for cookie in (None, "forged-" + "x" * 40, ""):
        client = web.test_client()
        if cookie is not None:
            client.set_cookie(COOKIE, cookie, path="/admin")
        token = csrf_of(client, "/admin/login")  # a valid pre-session token: only the session is missing
        for endpoint, method, url in admin_routes(web):
            if marked(web, endpoint, "_admin_public"):
                continue
            answer = client.open(url, method=method, data={"csrf": token})
            if method == "GET":
                assert answer.status_code == 303, (endpoint, url)
                assert answer.headers["Location"].startswith("/admin/login"), (endpoint, url)
            else:
                assert answer.status_code == 403, (endpoint, method, url)
            checked += 1
    assert checked >= 30


def test_an_expired_session_is_refused(console_site: Site) -> None:
    """Every route, each with a session that expired just before it: a POST carries the token the
    session's pages gave, so its 403 is the expiry's, not a missing token's."""
    web = signed_in_client(console_site).application
    for n, (endpoint, method, url) in enumerate(admin_routes(web)):
        if marked(web, endpoint, "_admin_public"):
            continue
        client = signed_in_client(console_site, f"admin{n}@example.org")
        token = csrf_of(client)
        console_site.clock_now += timedelta(minutes=31)  # [admin] idle_minutes = 30
        answer = client.open(url, method=method, data={"csrf": token})
        assert answer.status_code == (303 if method == "GET" else 403), (endpoint, method)
        if method == "GET":
            assert answer.headers["Location"] == f"/admin/login?next={quote(url, safe='/')}", endpoint


def test_a_session_ends_after_its_lifetime_however_busy(console_site: Site) -> None:
    client = signed_in_client(console_site)
    signed_in = console_site.clock_now
    while client.get("/admin/").status_code == 200:  # never idle for long: every 15 minutes
        console_site.clock_now += timedelta(minutes=15)
    assert timedelta(hours=12) < console_site.clock_now - signed_in <= timedelta(hours=12, minutes=15)


def test_every_post_refuses_a_missing_or_wrong_csrf_token_and_changes_nothing(console_site: Site) -> None:
    client = signed_in_client(console_site)
    make_account(console_site, "other@example.org", "editor")
    web = client.application
    before = store_state(console_site)
    posts = [(e, url) for e, method, url in admin_routes(web) if method == "POST"]
    assert len(posts) >= 10
    for endpoint, url in posts:
        for data in ({}, {"csrf": "not-the-token"}, {"csrf": ""}):
            answer = client.post(url, data=data | {"email": "x@example.org", "role": "admin", "password": PASSWORD})
            assert answer.status_code == 403, (endpoint, data)
    assert store_state(console_site) == before
    assert client.get("/admin/").status_code == 200  # still signed in: the refusals ended nothing


def test_a_viewer_cannot_change_anything(console_site: Site) -> None:
    client = signed_in_client(console_site, "viewer@example.org", "viewer")
    other = make_account(console_site, "other@example.org", "editor")
    web = client.application
    token = csrf_of(client)
    before = store_state(console_site)
    checked = 0
    for endpoint, method, url in admin_routes(web):
        if method != "POST" or marked(web, endpoint, "_admin_public") or marked(web, endpoint, "_admin_own_account"):
            continue
        url = url.replace("/1/", f"/{other}/")
        answer = client.post(url, data={"csrf": token, "email": "x@example.org", "role": "admin"})
        assert answer.status_code == 403, (endpoint, url)
        checked += 1
    assert checked >= 6
    assert store_state(console_site) == before
    assert client.get("/admin/").status_code == 200  # reading is fine
    assert client.get("/admin/accounts").status_code == 403  # admins' pages are not


def test_an_editor_cannot_manage_accounts(console_site: Site) -> None:
    client = signed_in_client(console_site, "editor@example.org", "editor")
    token = csrf_of(client)
    answer = client.post("/admin/accounts", data={"csrf": token, "email": "new@example.org", "role": "admin"})
    assert answer.status_code == 403
    assert client.get("/admin/audit").status_code == 403 and client.get("/admin/settings").status_code == 403


def login(client: FlaskClient, email: str, password: str) -> Any:
    return client.post(
        "/admin/login", data={"csrf": csrf_of(client, "/admin/login"), "email": email, "password": password}
    )


def audit_actions(site: Site, detail: bool = False) -> list[tuple[str, str, str, str]]:
    """(actor, action, target, address) of each audit row, oldest first; `detail`: the detail
    instead of the address."""
    store = Store(site.store_url)
    try:
        return [(e.actor, e.action, e.target, e.detail if detail else e.address)
                for e in reversed(store.audit_entries(1000))]  # fmt: skip
    finally:
        store.close()


def test_ten_bad_passwords_lock_the_account_for_a_while(console_site: Site) -> None:
    make_account(console_site, "admin@example.org")
    client = create_app(console_site.app()).test_client()
    for _ in range(9):
        assert login(client, "admin@example.org", "wrong password!").status_code == 403
    tenth = login(client, "admin@example.org", "wrong password!")
    assert tenth.status_code == 403 and "连续输错 10 次后账号会暂时锁定" in tenth.get_data(as_text=True)
    refused = login(client, "admin@example.org", PASSWORD)  # the right password, while locked
    assert refused.status_code == 403 and COOKIE not in refused.headers.get("Set-Cookie", "")
    assert ("admin@example.org", "account.locked", "admin@example.org", "127.0.0.1") in audit_actions(console_site)
    console_site.clock_now += timedelta(minutes=16)  # [admin] lockout_minutes = 15
    assert login(client, "admin@example.org", PASSWORD).status_code == 303


def test_failures_from_one_network_are_throttled(console_site: Site) -> None:
    console_site.append_config("failed_logins_per_client = 3\n")
    make_account(console_site, "admin@example.org")
    client = create_app(console_site.app()).test_client()
    for n in range(3):
        assert login(client, f"nobody{n}@example.org", "whatever it is").status_code == 403
    throttled = login(client, "admin@example.org", PASSWORD)
    assert throttled.status_code == 429 and COOKIE not in throttled.headers.get("Set-Cookie", "")
    console_site.clock_now += timedelta(minutes=61)
    assert login(client, "admin@example.org", PASSWORD).status_code == 303


def test_every_failure_says_the_same(console_site: Site) -> None:
    make_account(console_site, "admin@example.org")
    make_account(console_site, "off@example.org", disabled=True)
    client = create_app(console_site.app()).test_client()
    texts = set()
    for email, password in (("admin@example.org", "wrong one here"), ("nobody@example.org", PASSWORD),
                            ("off@example.org", PASSWORD)):  # fmt: skip
        answer = login(client, email, password)
        assert answer.status_code == 403
        texts.add(re.sub(r'value="[^"]*"', "", answer.get_data(as_text=True)))
    assert len(texts) == 1


def test_the_audit_log_records_each_change(console_site: Site) -> None:
    client = signed_in_client(console_site)
    token = csrf_of(client)
    added = client.post("/admin/accounts", data={"csrf": token, "email": "New@Example.org", "role": "viewer"})
    assert added.status_code == 200
    link = re.search(r'id="password-link">(http://127\.0\.0\.1:9/admin/password/[^<]+)<', added.get_data(as_text=True))
    assert link
    store = Store(console_site.store_url)
    new = store.account_by_email("new@example.org")
    store.close()
    assert new is not None and new.role == "viewer" and new.password_hash is None
    for path, data in (
        (f"/admin/accounts/{new.id}/role", {"role": "editor"}),
        (f"/admin/accounts/{new.id}/password-link", {}),
        (f"/admin/accounts/{new.id}/sessions", {}),
        (f"/admin/accounts/{new.id}/disable", {}),
        (f"/admin/accounts/{new.id}/enable", {}),
    ):
        assert client.post(path, data={"csrf": token} | data).status_code == 200, path
    actions = [(who, what, target) for who, what, target, address in audit_actions(console_site)]
    me = "admin@example.org"
    assert actions == [
        (me, "account.sign_in", me),
        (me, "account.add", "new@example.org"),
        (me, "account.role", "new@example.org"),
        (me, "account.password_link", "new@example.org"),
        (me, "account.revoke", "new@example.org"),
        (me, "account.disable", "new@example.org"),
        (me, "account.enable", "new@example.org"),
    ]
    assert {address for *_rest, address in audit_actions(console_site)} == {"127.0.0.1"}
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "account.role" in page and "viewer -&gt; editor" in page


def test_totp_sign_in_with_a_real_code_and_a_recovery_code_used_once(console_site: Site) -> None:
    client = signed_in_client(console_site)
    token = csrf_of(client)
    enrol = client.post("/admin/account/totp", data={"csrf": token}).get_data(as_text=True)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', enrol)
    assert secret and "otpauth://totp/" in enrol
    totp = pyotp.TOTP(secret.group(1))
    wrong = client.post("/admin/account/totp/confirm", data={"csrf": token, "current": PASSWORD, "code": "000000"})
    assert wrong.status_code == 400
    confirmed = client.post(
        "/admin/account/totp/confirm",
        data={"csrf": token, "current": PASSWORD, "code": totp.at(console_site.clock_now)},
    ).get_data(as_text=True)
    codes = re.findall(r"<code>([0-9a-f]{5}-[0-9a-f]{5})</code>", confirmed)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert client.get("/admin/account").get_data(as_text=True).count("<code>") == 0  # shown once
    client.post("/admin/logout", data={"csrf": csrf_of(client)})  # a new session since the second factor
    assert client.get("/admin/").status_code == 303

    # The password alone reaches only the code page.
    console_site.clock_now += timedelta(seconds=60)
    first = login(client, "admin@example.org", PASSWORD)
    assert first.status_code == 303 and first.headers["Location"].startswith("/admin/login/code")
    assert client.get("/admin/").status_code == 303
    code_token = csrf_of(client, "/admin/login/code")
    assert client.post("/admin/login/code", data={"csrf": code_token, "code": "123456"}).status_code == 403
    now_code = totp.at(console_site.clock_now)
    done = client.post("/admin/login/code", data={"csrf": code_token, "code": now_code})
    assert done.status_code == 303 and client.get("/admin/").status_code == 200
    client.post("/admin/logout", data={"csrf": csrf_of(client)})

    # The same code again (within its 30 seconds): refused.
    login(client, "admin@example.org", PASSWORD)
    code_token = csrf_of(client, "/admin/login/code")
    assert client.post("/admin/login/code", data={"csrf": code_token, "code": now_code}).status_code == 403
    # A recovery code works once.
    assert client.post("/admin/login/code", data={"csrf": code_token, "code": codes[3]}).status_code == 303
    assert client.get("/admin/").status_code == 200
    client.post("/admin/logout", data={"csrf": csrf_of(client)})
    login(client, "admin@example.org", PASSWORD)
    code_token = csrf_of(client, "/admin/login/code")
    assert client.post("/admin/login/code", data={"csrf": code_token, "code": codes[3]}).status_code == 403
    assert client.post("/admin/login/code", data={"csrf": code_token, "code": codes[4].upper()}).status_code == 303
    page = client.get("/admin/account").get_data(as_text=True)
    assert "8" in page and ("Recovery codes left: 8" in page or "剩余恢复码：8" in page)


def test_the_cookie_is_httponly_strict_and_secure_on_https(site: Site) -> None:
    make_account(site)
    for url, secure in (("https://admin.example.org", True), ("http://127.0.0.1:8081", False)):
        site.write_config(admin_config(url))
        client = create_app(site.app()).test_client()
        answer = login(client, "admin@example.org", PASSWORD)
        cookie = answer.headers["Set-Cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Path=/admin" in cookie and ("Secure" in cookie) is secure


def test_no_console_until_an_account_exists(console_site: Site) -> None:
    client = create_app(console_site.app()).test_client()
    answer = client.get("/admin/login")
    assert answer.status_code == 404 and "publisher admin add" in answer.get_data(as_text=True)
    make_account(console_site)
    assert client.get("/admin/login").status_code == 200


def test_the_console_can_be_turned_off(console_site: Site) -> None:
    make_account(console_site)
    console_site.append_config("enabled = false\n")
    assert create_app(console_site.app()).test_client().get("/admin/login").status_code == 404


def test_a_disabled_account_is_signed_out_at_once(console_site: Site) -> None:
    editor = signed_in_client(console_site, "editor@example.org", "editor")
    admin = signed_in_client(console_site, "admin@example.org", "admin")
    store = Store(console_site.store_url)
    target = store.account_by_email("editor@example.org")
    store.close()
    assert target is not None and editor.get("/admin/").status_code == 200
    answer = admin.post(f"/admin/accounts/{target.id}/disable", data={"csrf": csrf_of(admin)})
    assert answer.status_code == 200
    assert editor.get("/admin/").status_code == 303
    assert login(editor, "editor@example.org", PASSWORD).status_code == 403


def test_an_old_hash_is_made_again_with_todays_parameters(console_site: Site) -> None:
    from argon2 import PasswordHasher

    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    make_account(console_site)
    store = Store(console_site.store_url)
    account = store.account_by_email("admin@example.org")
    assert account is not None
    store.update_account(account.id, password_hash=old)
    client = create_app(console_site.app()).test_client()
    assert login(client, "admin@example.org", PASSWORD).status_code == 303
    renewed = store.account(account.id)
    store.close()
    assert renewed is not None and renewed.password_hash != old and "m=65536" in (renewed.password_hash or "")


def test_a_form_sent_over_http_to_an_https_console_says_why_it_is_refused(site: Site) -> None:
    """A trial over http of a console whose address is https: the browser keeps the Secure
    cookie the form's token is bound to, and a bare 'Forbidden' left the operator guessing."""
    site.write_config(site.mail_to_outbox() + admin_config("https://news.example.org"))
    make_account(site)
    client = create_app(site.app()).test_client()
    token = csrf_of(client, "/admin/login")
    client.delete_cookie("publisher_admin_form", path="/admin")  # a Secure cookie is never sent over http
    answer = client.post("/admin/login", data={"csrf": token, "email": "admin@example.org", "password": PASSWORD})
    assert answer.status_code == 403
    assert "Secure" in answer.get_data(as_text=True) and "admin.public_url" in answer.get_data(as_text=True)
    client.get("/admin/login")  # the cookie back, with a token that is not its own: a plain refusal
    forged = client.post("/admin/login", data={"csrf": "0" * 64, "email": "admin@example.org"})
    assert forged.status_code == 403 and forged.get_data(as_text=True) == "Forbidden\n"
    over_https = client.post(
        "/admin/login", data={"csrf": token, "email": "admin@example.org"}, base_url="https://news.example.org"
    )
    assert over_https.status_code == 403 and over_https.get_data(as_text=True) == "Forbidden\n"  # nothing more


def test_a_console_on_loopback_http_beside_https_reader_pages_signs_in(site: Site) -> None:
    """The readers' pages at https (web.public_url), the console reached over an SSH tunnel at
    http://127.0.0.1 (admin.public_url): the sign-in form's token was kept in the readers'
    session cookie, Secure for their https pages, so a browser never sent it back to the
    console over http and every sign-in was refused."""
    site.write_config(site.mail_to_outbox() + '\n[web]\npublic_url = "https://news.example.org"\n' + admin_config(
        "http://127.0.0.1:9"
    ))  # fmt: skip
    make_account(site)
    client = create_app(site.app()).test_client()
    token = csrf_of(client, "/admin/login")
    client.delete_cookie("session")  # the readers' Secure cookie: a browser keeps it from http
    form_cookie = client.get_cookie("publisher_admin_form", path="/admin")
    assert form_cookie is not None and not form_cookie.secure  # the console's own, for its http address
    answer = client.post("/admin/login", data={"csrf": token, "email": "admin@example.org", "password": PASSWORD})
    assert answer.status_code == 303 and client.get("/admin/").status_code == 200


def test_a_form_from_another_origin_is_refused_even_with_our_cookie_and_token(console_site: Site) -> None:
    """A sibling subdomain is same-site: SameSite=Strict lets its posts carry our cookies, and it
    can plant a form cookie for the parent domain with a token it made for it (login CSRF)."""
    make_account(console_site)
    client = create_app(console_site.app()).test_client()
    token = csrf_of(client, "/admin/login")
    data = {"csrf": token, "email": "admin@example.org", "password": PASSWORD}
    for headers in ({"Origin": "https://evil.example.org"}, {"Sec-Fetch-Site": "same-site"},
                    {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"}):  # fmt: skip
        assert client.post("/admin/login", data=data, headers=headers).status_code == 403, headers
    client.set_cookie("publisher_admin_form", "planted;by|a-sibling", path="/admin")
    assert client.post("/admin/login", data=data).status_code == 403  # not a value we make
    client.delete_cookie("publisher_admin_form", path="/admin")
    token = csrf_of(client, "/admin/login")
    same = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    answer = client.post("/admin/login", data=data | {"csrf": token}, headers=same)
    assert answer.status_code == 303
