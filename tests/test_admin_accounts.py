"""`publisher admin` and the set-password link; the console on its own address."""

from __future__ import annotations

import re
from datetime import timedelta

import requests
from test_smtp import free_port

from admin_session import COOKIE, PASSWORD, admin_config, csrf_of, make_account, signed_in_cookie
from conftest import Service, Site
from publisher.store import Store
from publisher.web import create_app


def link_of(output: str) -> str:
    found = re.search(r"(https?://\S+/admin/password/\S+)", output)
    assert found, output
    return found.group(1)


def test_admin_add_prints_a_one_time_link_that_sets_the_password(site: Site) -> None:
    site.write_config(admin_config("http://127.0.0.1:9"))
    added = site.cli("admin", "add", "Boss@Example.org", "--role", "admin")
    assert added.exit_code == 0, added.output
    assert "added boss@example.org (admin)" in added.output
    path = link_of(added.output).removeprefix("http://127.0.0.1:9")
    client = create_app(site.app()).test_client()
    form = client.get(path)
    assert form.status_code == 200 and "boss@example.org" in form.get_data(as_text=True)
    assert client.get(path).status_code == 200  # a GET changes nothing: the link still works
    token = csrf_of(client, path)
    short = client.post(path, data={"csrf": token, "password": "short", "again": "short"})
    assert short.status_code == 400
    differ = client.post(path, data={"csrf": token, "password": PASSWORD, "again": PASSWORD + "!"})
    assert differ.status_code == 400
    assert client.post(path, data={"csrf": token, "password": PASSWORD, "again": PASSWORD}).status_code == 200
    assert client.get(path).status_code == 404  # used once
    again = client.post(path, data={"csrf": token, "password": "another password", "again": "another password"})
    assert again.status_code == 404
    login = client.post(
        "/admin/login",
        data={"csrf": csrf_of(client, "/admin/login"), "email": "boss@example.org", "password": PASSWORD},
    )
    assert login.status_code == 303

    listed = site.cli("admin", "list", "--format", "csv")
    assert listed.exit_code == 0 and "boss@example.org,admin,active,off," in listed.output
    store = Store(site.store_url)
    entries = [(e.actor, e.action, e.target) for e in reversed(store.audit_entries())]
    store.close()
    assert entries[:2] == [("cli", "account.add", "boss@example.org"),
                           ("boss@example.org", "account.set_password", "boss@example.org")]  # fmt: skip


def test_the_link_expires_after_a_day_and_a_new_one_voids_the_old(site: Site) -> None:
    site.write_config(admin_config("http://127.0.0.1:9"))
    first = link_of(site.cli("admin", "add", "ed@example.org", "--role", "editor").output)
    second = link_of(site.cli("admin", "reset", "ed@example.org").output)
    client = create_app(site.app()).test_client()
    assert client.get(first.removeprefix("http://127.0.0.1:9")).status_code == 404
    path = second.removeprefix("http://127.0.0.1:9")
    assert client.get(path).status_code == 200
    site.clock_now += timedelta(days=30)  # the CLI made it on the real clock; the app's is later still
    late = create_app(site.app()).test_client()
    assert late.get(path).status_code == 404


def test_admin_add_refuses_a_bad_address_a_role_or_a_second_account(site: Site) -> None:
    assert site.cli("admin", "add", "not an address", "--role", "admin").exit_code == 1
    assert site.cli("admin", "add", "a@example.org", "--role", "root").exit_code == 2
    assert site.cli("admin", "add", "a@example.org", "--role", "viewer").exit_code == 0
    twice = site.cli("admin", "add", "A@example.org", "--role", "admin")
    assert twice.exit_code == 1 and "publisher admin reset a@example.org" in twice.output
    assert site.cli("admin", "reset", "nobody@example.org").exit_code == 1


def test_the_console_on_its_own_address(site: Site) -> None:
    """`[admin] listen`: the console on a second port of `publisher serve`; the public port
    has no /admin."""
    public_port, console_port = free_port(), free_port()
    console = f"http://127.0.0.1:{console_port}"
    listen = f'listen = "127.0.0.1:{console_port}"\n[web]\npublic_url = "http://127.0.0.1:{public_port}"\n'
    site.write_config(admin_config(console) + listen)
    site.build()
    make_account(site)
    service = Service(site.config, site.root, public_port, command="serve")
    try:
        service.wait_until_serving()
        assert f"console: {console}/admin/" in service.stdout.read_text()
        assert requests.get(f"{service.base}/admin/login", timeout=10).status_code == 404
        assert requests.get(f"{console}/admin/login", timeout=10).status_code == 200
        assert requests.get(f"{console}/", allow_redirects=False, timeout=10).headers["Location"] == "/admin/"
        browser = requests.Session()
        token = re.search(r'name="csrf" value="([^"]+)"', browser.get(f"{console}/admin/login", timeout=10).text)
        assert token
        answer = browser.post(
            f"{console}/admin/login",
            data={"csrf": token.group(1), "email": "admin@example.org", "password": PASSWORD},
            allow_redirects=False, timeout=10,
        )  # fmt: skip
        assert answer.status_code == 303
        page = requests.get(f"{console}/admin/accounts", cookies={COOKIE: answer.cookies[COOKIE]}, timeout=10)
        assert page.status_code == 200 and "admin@example.org" in page.text
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    finally:
        assert service.stop() == 0, service.output()


def test_the_test_helper_signs_in_on_a_real_server(site: Site) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    site.write_config(site.mail_to_outbox() + f'[web]\npublic_url = "{base}"\n')
    site.build()
    service = Service(site.config, site.root, port, command="serve")
    try:
        service.wait_until_serving()
        assert f"console: {base}/admin/" in service.stdout.read_text()
        cookie = signed_in_cookie(base, site, role="viewer")
        page = requests.get(f"{base}/admin/", cookies={COOKIE: cookie}, timeout=10)
        assert page.status_code == 200 and "admin@example.org" in page.text
        css = requests.get(f"{base}/admin/static/admin.css", timeout=10)
        assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    finally:
        assert service.stop() == 0, service.output()


def test_a_new_password_signs_out_the_other_browsers(site: Site) -> None:
    from admin_session import signed_in_client

    site.write_config(admin_config("http://127.0.0.1:9"))
    here = signed_in_client(site)
    there = create_app(site.app()).test_client()
    answer = there.post(
        "/admin/login",
        data={"csrf": csrf_of(there, "/admin/login"), "email": "admin@example.org", "password": PASSWORD},
    )
    assert answer.status_code == 303 and there.get("/admin/").status_code == 200
    token = csrf_of(here)
    new = {"csrf": token, "password": "a new passphrase", "again": "a new passphrase"}
    assert here.post("/admin/account/password", data=new | {"current": "not it at all"}).status_code == 403
    changed = here.post("/admin/account/password", data=new | {"current": PASSWORD})
    assert changed.status_code == 200 and "publisher_admin=" in changed.headers["Set-Cookie"]
    assert there.get("/admin/").status_code == 303  # signed out
    assert here.get("/admin/").status_code == 200  # this browser goes on, with a new session
    # The page's forms carry the new session's token: signing out with it works.
    token = re.search(r'name="csrf" value="([^"]+)"', changed.get_data(as_text=True))
    assert token and here.post("/admin/logout", data={"csrf": token.group(1)}).status_code == 303
    assert here.get("/admin/").status_code == 303


def test_the_pages_are_in_english_for_an_english_site(site: Site) -> None:
    from admin_session import make_account

    site.write_config(admin_config("http://127.0.0.1:9"))
    make_account(site)
    chinese = create_app(site.app()).test_client().get("/admin/login").get_data(as_text=True)
    assert 'lang="zh-CN"' in chinese and "登录后台" in chinese
    site.config.write_text(site.config.read_text().replace('language = "zh-CN"', 'language = "en"'))
    english = create_app(site.app()).test_client().get("/admin/login").get_data(as_text=True)
    assert 'lang="en"' in english and "Sign in to the console" in english and "登录" not in english
