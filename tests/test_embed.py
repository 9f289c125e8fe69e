"""The sign-up form on another site's page: `publisher embed`'s snippet on a second loopback
origin (pytest-httpserver), posting to our server (waitress) without our cookie; the form token
(single use, expiring on the injected clock), the honeypot, the limits; the JSON endpoint and
its CORS; the welcome mail and the consent it records."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from pytest_httpserver import HTTPServer
from test_smtp import free_port
from test_web import Server

from admin_session import COOKIE, signed_in_cookie
from conftest import Site
from publisher.model import SubscriberStatus
from publisher.store import Store
from publisher.store.form_tokens import token_digest

KEY = "embed-test-signing-key-0123456789"
CONSENT = "提交即表示您同意我们用这个邮箱地址给您发送所选栏目的新闻简报。每封邮件都有退订链接，您可以随时退订。"


class Ours(Server):
    """Our service, its embedded form allowed on `cms_origin`."""

    def __init__(self, site: Site, cms_origin: str, extra: str = "") -> None:
        super().__init__(site, f'subscribe_per_address = 2\nembed_origins = ["{cms_origin}"]\n{extra}')

    def messages(self, at_least: int = 0, settle: float = 0.0) -> list[EmailMessage]:
        """Every mail in the outbox, oldest first, waiting (a little) for `at_least`; `settle`
        seconds more to be sure no other is on its way."""
        deadline = time.monotonic() + 5
        while len(list(self.site.outbox.glob("*.eml"))) < at_least and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(settle)
        paths = sorted(self.site.outbox.glob("*.eml"))
        return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in paths]  # type: ignore[misc]

    def token(self) -> str:
        """A form token as the snippet's script gets it: the script, loaded by a <script> tag."""
        script = requests.get(f"{self.base}/embed.js", timeout=10)
        assert script.status_code == 200 and script.headers["Content-Type"].startswith("text/javascript")
        assert script.headers["Cache-Control"] == "no-store" and "Set-Cookie" not in script.headers
        found = re.search(r'"token": "([^"]+)"', script.text)
        assert found, script.text
        return found.group(1)

    def subscriber(self, email: str) -> Any:
        store = Store(self.site.store_url)
        try:
            return store.subscriber(email)
        finally:
            store.close()


def text_of(mail: EmailMessage) -> str:
    return mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def link_in(mail: EmailMessage, base: str, kind: str) -> str:
    found = re.search(rf"{re.escape(base)}/{kind}/\S+", text_of(mail))
    assert found, text_of(mail)
    return found.group(0)


@pytest.fixture
def cms(httpserver: HTTPServer) -> Iterator[tuple[HTTPServer, str]]:
    """The second origin: the CMS, reached as http://localhost:<port> (another site than
    127.0.0.1, so the browser treats every request to us as cross-site)."""
    yield httpserver, f"http://localhost:{httpserver.port}"


@pytest.fixture
def ours(site: Site, cms: tuple[HTTPServer, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Ours]:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    running = Ours(site, cms[1])
    try:
        yield running
    finally:
        running.stop()


def cross_site_post(ours: Ours, cms_origin: str, data: dict[str, Any]) -> requests.Response:
    """The form's POST as a browser sends it from the CMS page: Origin and Referer of the CMS
    (the origin alone, the default referrer policy), no cookie, no redirect followed."""
    headers = {"Origin": cms_origin, "Referer": f"{cms_origin}/", "Sec-Fetch-Site": "cross-site"}
    return requests.post(f"{ours.base}/embed/subscribe", data=data, headers=headers, allow_redirects=False, timeout=10)


def answer_flag(response: requests.Response) -> str:
    assert response.status_code == 303, response.text
    [flag] = parse_qs(urlsplit(response.headers["Location"]).query)["publisher_signup"]
    return flag


# --- a real browser on the second origin --------------------------------------------------


def test_a_form_on_another_origin_signs_a_reader_up_in_a_browser(
    site: Site, ours: Ours, cms: tuple[HTTPServer, str]
) -> None:
    from test_browser import CHROMIUM_ARGS, chromium_path

    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    httpserver, origin = cms
    snippet = site.cli("embed")
    assert snippet.exit_code == 0, snippet.output
    assert f'action="{ours.base}/embed/subscribe"' in snippet.output and 'name="website"' in snippet.output
    assert "<span data-publisher-privacy>您的邮箱地址只用于发送这份简报" in snippet.output
    head = "<!DOCTYPE html><html><head><meta charset='utf-8'><title>新闻</title></head>"
    page_html = f"{head}<body><article>正文</article>{snippet.output}</body></html>"
    # The CMS's own CSP, as docs/signup.md tells its operators to write it.
    csp = f"default-src 'self'; script-src 'self' {ours.base}; form-action 'self' {ours.base}"
    httpserver.expect_request("/news/").respond_with_data(
        page_html, content_type="text/html; charset=utf-8", headers={"Content-Security-Policy": csp}
    )
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        except sync_api.Error as exc:
            pytest.skip(f"Playwright could not launch {executable}: {str(exc).splitlines()[0]}")
        try:
            context = browser.new_context(locale="zh-CN")
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{origin}/news/")
            page.wait_for_function("document.querySelector('input[name=token]').value !== ''")
            assert page.input_value("input[name=return_to]") == f"{origin}/news/"
            assert page.text_content("[data-publisher-consent]") == CONSENT
            assert "您的邮箱地址只用于发送这份简报" in (page.text_content("[data-publisher-privacy]") or "")
            page.fill("input[name=email]", "reader@example.com")
            page.check("input[name=category][value=tech]")
            page.click("button[type=submit]")
            page.wait_for_url(f"{origin}/news/?publisher_signup=sent")
            page.wait_for_function("document.querySelector('[data-publisher-status]').textContent !== ''")
            assert page.text_content("[data-publisher-status]") == "请查收邮件，按邮件中的链接完成订阅。"
            assert context.cookies(ours.base) == []  # no cookie of ours was made or needed
        finally:
            browser.close()

    [confirmation] = ours.messages(at_least=1)
    assert str(confirmation["To"]) == "reader@example.com"
    done = requests.post(link_in(confirmation, ours.base, "confirm"), timeout=10)
    assert done.status_code == 200 and ours.subscriber("reader@example.com").status is SubscriberStatus.CONFIRMED


# --- the same, request by request, as the browser sends them ---------------------------------


def test_the_embedded_form_signs_up_once_per_token_and_returns_to_the_page(
    site: Site, ours: Ours, cms: tuple[HTTPServer, str]
) -> None:
    _httpserver, origin = cms
    token = ours.token()
    page = f"{origin}/news/a.html?id=7&publisher_signup=used"  # an earlier answer's flag is replaced
    fields = {"email": "one@example.com", "name": "读者", "category": "tech", "website": "", "token": token}
    answer = cross_site_post(ours, origin, fields | {"return_to": page})
    assert answer_flag(answer) == "sent" and "Set-Cookie" not in answer.headers
    assert answer.headers["Location"] == f"{origin}/news/a.html?id=7&publisher_signup=sent"
    [confirmation] = ours.messages(at_least=1)
    assert confirmation["Subject"].startswith("请确认订阅")

    # The same token again (a replayed form, or a bot that kept it): refused, and no mail.
    again = cross_site_post(ours, origin, fields | {"email": "two@example.com", "return_to": page})
    assert answer_flag(again) == "used"
    # Expired: the clock moves past the token's two hours.
    late = ours.token()
    site.clock_now += timedelta(hours=2, seconds=1)
    expired = cross_site_post(ours, origin, fields | {"email": "three@example.com", "token": late, "return_to": page})
    assert answer_flag(expired) == "expired"
    # A forged token, and none at all (the page without its script).
    forged = late[:-4] + ("AAAA" if not late.endswith("AAAA") else "BBBB")
    assert answer_flag(cross_site_post(ours, origin, fields | {"token": forged, "return_to": page})) == "expired"
    assert answer_flag(cross_site_post(ours, origin, fields | {"token": "", "return_to": page})) == "expired"
    # The honeypot: a bot fills in every field.
    bot = fields | {"email": "bot@example.com", "website": "http://spam.example", "token": ours.token()}
    assert answer_flag(cross_site_post(ours, origin, bot | {"return_to": page})) == "refused"
    assert len(ours.messages(settle=0.3)) == 1  # only the first sign-up was mailed
    assert ours.subscriber("two@example.com") is None and ours.subscriber("bot@example.com") is None

    # The limits of /subscribe hold here too: 2 an hour per mailbox in this config (the first
    # sign-up was more than an hour ago on the clock).
    for expected in ("sent", "sent", "limited"):
        fresh = fields | {"email": "One@example.com", "token": ours.token(), "return_to": page}
        assert answer_flag(cross_site_post(ours, origin, fresh)) == expected


def test_a_limited_post_leaves_its_token_unspent(site: Site, ours: Ours, cms: tuple[HTTPServer, str]) -> None:
    """The limits come before the token is spent: posts answered `limited` write no row into
    used_form_tokens (a flood cannot fill it), and the token stays good for one sign-up."""
    from sqlalchemy import func, select

    from publisher.store.schema import used_form_tokens_table

    _httpserver, origin = cms
    page = f"{origin}/news/"
    fields = {"email": "same@example.com", "website": "", "return_to": page}
    assert [answer_flag(cross_site_post(ours, origin, fields | {"token": ours.token()})) for _ in range(2)] == [
        "sent",
        "sent",
    ]
    kept = ours.token()
    for _ in range(5):
        assert answer_flag(cross_site_post(ours, origin, fields | {"token": ours.token()})) == "limited"
    assert answer_flag(cross_site_post(ours, origin, fields | {"token": kept})) == "limited"
    store = Store(site.store_url)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(used_form_tokens_table)).scalar() == 2
    finally:
        store.close()
    site.clock_now += timedelta(minutes=61)  # the mailbox's hour is over: the kept token works once
    assert answer_flag(cross_site_post(ours, origin, fields | {"token": kept})) == "sent"
    assert answer_flag(cross_site_post(ours, origin, fields | {"token": kept})) == "used"


def test_the_answer_keeps_the_pages_own_query_as_it_is(ours: Ours, cms: tuple[HTTPServer, str]) -> None:
    """A CMS's address is returned to byte for byte: only an older flag comes out."""
    _httpserver, origin = cms
    fields = {"email": "", "website": ""}  # bad_email: nothing is spent, each post is answered at once
    for page, back in (
        ("/page.php?/news/12", "/page.php?/news/12&publisher_signup=bad_email"),
        ("/news/", "/news/?publisher_signup=bad_email"),
        ("/a?x=%E6%96%B0&publisher_signup=sent&y=a+b#top", "/a?x=%E6%96%B0&y=a+b&publisher_signup=bad_email"),
        ("/a?publisher_signup=used", "/a?publisher_signup=bad_email"),
        ("/a?my_publisher_signup=1", "/a?my_publisher_signup=1&publisher_signup=bad_email"),
    ):
        answer = cross_site_post(ours, origin, fields | {"token": ours.token(), "return_to": origin + page})
        assert answer.status_code == 303 and answer.headers["Location"] == origin + back


def test_the_answer_goes_back_only_to_a_configured_origin(ours: Ours, cms: tuple[HTTPServer, str]) -> None:
    _httpserver, origin = cms
    fields = {"email": "x@example.com", "website": ""}
    for elsewhere in (
        "https://evil.example/phish",
        f"{origin}.evil.example/",
        "javascript:alert(1)",
        "//evil.example/",
        # userinfo and backslash tricks: URL parsers and browsers disagree on where the host is
        f"{origin}@evil.example/",
        f"http://user@{origin.split('//', 1)[1]}/",
        f"http://evil.example\\@{origin.split('//', 1)[1]}/",
        f"{origin}\\@evil.example/",
        f"http://evil.example\\.{origin.split('//', 1)[1]}/",
        f"{origin}\\evil.example/",
        "/\\evil.example/",
    ):
        answer = cross_site_post(ours, origin, fields | {"token": ours.token(), "return_to": elsewhere})
        assert answer.status_code in (200, 429) and "Location" not in answer.headers
        assert "evil" not in answer.text
    for broken in (f"{origin}/\r\nX: y", f"{origin}/新闻/"):
        answer = cross_site_post(ours, origin, fields | {"token": ours.token(), "return_to": broken})
        assert answer.status_code in (200, 429) and "Location" not in answer.headers


def test_the_form_posted_from_a_foreign_origin_is_refused(ours: Ours, cms: tuple[HTTPServer, str]) -> None:
    """With embed_origins set, a browser's post from any other page does nothing: no mail, the
    token not spent (it can still sign up from the configured page), our own 403 page."""
    _httpserver, origin = cms
    token = ours.token()
    fields = {"email": "victim@example.com", "website": "", "token": token, "return_to": f"{origin}/news/"}
    for stranger in ("http://evil.example", "null"):
        answer = cross_site_post(ours, stranger, fields)
        assert answer.status_code == 403 and "Location" not in answer.headers
    assert ours.subscriber("victim@example.com") is None and ours.messages(settle=0.3) == []
    assert answer_flag(cross_site_post(ours, origin, fields)) == "sent"  # the configured page still works
    # Our own origin (the form on our own site) and a client with no Origin at all are let through.
    own = requests.post(
        f"{ours.base}/embed/subscribe",
        data=fields | {"email": "own@example.com", "token": ours.token()},
        headers={"Origin": ours.base},
        allow_redirects=False,
        timeout=10,
    )
    assert answer_flag(own) == "sent"


def test_the_json_endpoint_answers_configured_origins_with_cors(ours: Ours, cms: tuple[HTTPServer, str]) -> None:
    _httpserver, origin = cms
    api, other = f"{ours.base}/embed/api/subscribe", "http://127.0.0.2:8000"
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    allowed = requests.options(api, headers=preflight | {"Origin": origin}, timeout=10)
    assert allowed.status_code == 204 and allowed.headers["Access-Control-Allow-Origin"] == origin
    assert allowed.headers["Access-Control-Allow-Methods"] == "POST"
    assert "content-type" in allowed.headers["Access-Control-Allow-Headers"].lower()
    refused = requests.options(api, headers=preflight | {"Origin": other}, timeout=10)
    assert not any(h.lower().startswith("access-control-") for h in refused.headers)

    token_answer = requests.get(f"{ours.base}/embed/token", headers={"Origin": origin}, timeout=10)
    assert token_answer.headers["Access-Control-Allow-Origin"] == origin
    token = token_answer.json()["token"]
    # The words a JSON integrator's form must show verbatim, as the embedded form shows them.
    assert token_answer.json()["consent"] == CONSENT
    assert "您的邮箱地址只用于发送这份简报" in token_answer.json()["privacy"]
    script = requests.get(f"{ours.base}/embed.js", timeout=10).text
    assert json.dumps(token_answer.json()["privacy"]) in script  # embed.js fills the form's privacy line
    elsewhere = requests.get(f"{ours.base}/embed/token", headers={"Origin": other}, timeout=10)
    assert "Access-Control-Allow-Origin" not in elsewhere.headers

    body = {"email": "json@example.com", "category": ["tech"], "token": token, "website": ""}
    sent = requests.post(api, json=body, headers={"Origin": origin}, timeout=10)
    assert sent.status_code == 200 and sent.json()["ok"] is True and sent.json()["status"] == "sent"
    assert sent.headers["Access-Control-Allow-Origin"] == origin and "Origin" in sent.headers["Vary"]
    replayed = requests.post(api, json=body, headers={"Origin": origin}, timeout=10)
    assert replayed.status_code == 409 and replayed.json() == {
        "ok": False,
        "status": "used",
        "message": "这份表单已经提交过了。请刷新页面后重新提交。",
    }
    fresh = requests.get(f"{ours.base}/embed/token", timeout=10).json()["token"]
    stranger = requests.post(api, json=body | {"token": fresh}, headers={"Origin": other}, timeout=10)
    assert stranger.status_code == 403 and "Access-Control-Allow-Origin" not in stranger.headers
    bad = requests.post(
        api, json=body | {"email": "not an address", "token": fresh}, headers={"Origin": origin}, timeout=10
    )
    assert bad.status_code == 400 and bad.json()["status"] == "bad_email" and bad.json()["detail"]
    honey = requests.post(
        api, json=body | {"website": "x", "token": ours.token()}, headers={"Origin": origin}, timeout=10
    )
    assert honey.status_code == 400 and honey.json()["status"] == "refused"
    shapeless = requests.post(
        api, data="[1, 2]", headers={"Origin": origin, "Content-Type": "application/json"}, timeout=10
    )
    assert shapeless.status_code == 400 and shapeless.json()["status"] == "bad_request"
    [mail] = ours.messages(at_least=1, settle=0.3)
    assert str(mail["To"]) == "json@example.com"
    assert json.loads(sent.text)["message"] == "请查收邮件，按邮件中的链接完成订阅。"


def test_the_embedded_form_carries_the_readers_script_and_cadence(
    site: Site, cms: tuple[HTTPServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snippet offers what /subscribe offers, and the embedded form's choices reach the
    reader as the subscribe page's do (one reading, account.reader_form)."""
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    _httpserver, origin = cms
    offer = '\n[digest]\ncadences = ["weekly", "daily"]\nscripts = ["zh-Hans", "zh-Hant"]\n'
    running = Ours(site, origin, offer)
    try:
        snippet = site.cli("embed").output
        assert 'name="script" value="zh-Hant"' in snippet and 'name="cadence" value="daily"' in snippet
        fields = {"email": "hk@example.com", "script": "zh-Hant", "cadence": "daily", "website": ""}
        answer = cross_site_post(running, origin, fields | {"token": running.token(), "return_to": f"{origin}/"})
        assert answer_flag(answer) == "sent"
        [confirmation] = running.messages(at_least=1)
        assert requests.post(link_in(confirmation, running.base, "confirm"), timeout=10).status_code == 200
        reader = running.subscriber("hk@example.com")
        assert (reader.script, reader.cadence, reader.status) == ("zh-Hant", "daily", SubscriberStatus.CONFIRMED)
        _confirmation, welcome = running.messages(at_least=2)
        assert welcome["Subject"] == "歡迎訂閱高新院週報"  # in the reader's script, as their digests are
        assert "歡迎訂閱" in text_of(welcome) and f"{running.base}/unsubscribe/" in text_of(welcome)
    finally:
        running.stop()


# --- welcome and consent -------------------------------------------------------------------


def test_confirming_sends_the_welcome_and_records_the_consent(
    site: Site, ours: Ours, cms: tuple[HTTPServer, str]
) -> None:
    _httpserver, origin = cms
    fields = {"email": "Welcome@Example.com", "category": "tech", "website": "", "token": ours.token()}
    assert answer_flag(cross_site_post(ours, origin, fields | {"return_to": f"{origin}/"})) == "sent"
    [confirmation] = ours.messages(at_least=1)
    assert "您的邮箱地址只用于发送这份简报" in text_of(confirmation)  # the privacy line in every mail
    site.clock_now += timedelta(minutes=3)
    assert requests.post(link_in(confirmation, ours.base, "confirm"), timeout=10).status_code == 200
    confirmation_mail, welcome = ours.messages(at_least=2)
    assert welcome["Subject"] == "欢迎订阅高新院周报" and str(welcome["To"]) == "Welcome@example.com"
    text = text_of(welcome)
    assert "科技创新" in text and f"{ours.base}/unsubscribe/" in text and f"{ours.base}/preferences/" in text
    assert welcome["List-Unsubscribe"]

    reader = ours.subscriber("welcome@example.com")
    assert reader.consent is not None
    assert (reader.consent.text, reader.consent.at, reader.consent.network) == (
        CONSENT,
        site.clock_now,
        "127.0.0.0/24",
    )
    exported = site.cli("subscribers", "export")
    [row] = list(csv.DictReader(io.StringIO(exported.output)))
    assert (row["consent_text"], row["consent_at"], row["consent_network"]) == (
        CONSENT,
        site.clock_now.isoformat(),
        "127.0.0.0/24",
    )
    # The console's page of the reader shows it.
    cookie = signed_in_cookie(ours.base, site, role="viewer")
    console = requests.get(f"{ours.base}/admin/subscribers/{reader.id}", cookies={COOKIE: cookie}, timeout=10)
    shown = re.search(r'<dd id="subscriber-consent">(.*?)</dd>', console.text, re.DOTALL)
    assert console.status_code == 200 and shown, console.text
    assert "127.0.0.0/24" in shown.group(1) and CONSENT in shown.group(1)
    # Following the link again sends no second welcome.
    assert requests.post(link_in(confirmation_mail, ours.base, "confirm"), timeout=10).status_code in (200, 404)
    assert len(ours.messages(settle=0.3)) == 2


def slowed(store: Store, name: str, seconds: float = 0.3) -> None:
    """The real store's `name` method, answering `seconds` late: two requests at once both read
    the reader before either writes, as they may under load."""
    real = getattr(store, name)

    def late(*args: Any) -> Any:
        found = real(*args)
        time.sleep(seconds)
        return found

    setattr(store, name, late)


def test_two_clicks_at_once_on_a_confirm_link_send_one_welcome(ours: Ours, cms: tuple[HTTPServer, str]) -> None:
    _httpserver, origin = cms
    fields = {"email": "twice@example.com", "category": "tech", "website": "", "token": ours.token()}
    assert answer_flag(cross_site_post(ours, origin, fields | {"return_to": f"{origin}/"})) == "sent"
    [confirmation] = ours.messages(at_least=1)
    link = link_in(confirmation, ours.base, "confirm")
    slowed(ours.app.store, "subscriber")
    answers: list[int] = []
    clicks = [
        threading.Thread(target=lambda: answers.append(requests.post(link, timeout=10).status_code)) for _ in "12"
    ]
    for click in clicks:
        click.start()
    for click in clicks:
        click.join()
    assert answers == [200, 200]
    assert [m["Subject"] for m in ours.messages(at_least=2, settle=0.5)][1:] == ["欢迎订阅高新院周报"]


def test_two_confirmations_at_once_of_an_imported_reader_are_one(store_url: str) -> None:
    """subscriptions.confirm (the import's link): of two at once, only one is told it confirmed."""
    from publisher.model import Subscriber
    from publisher.subscriptions import confirm

    now = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    store = Store(store_url)
    try:
        store.save_subscribers([Subscriber("imp@example.com", "", (), SubscriberStatus.PENDING, now, "import", now)])
        found = store.subscriber("imp@example.com")
        assert found is not None and found.id is not None
        slowed(store, "subscriber_by_id")
        told: list[bool] = []
        runs = [threading.Thread(target=lambda: told.append(confirm(store, found.id, now, now)[1])) for _ in "12"]
        for run in runs:
            run.start()
        for run in runs:
            run.join()
        assert sorted(told) == [False, True]
        again = store.subscriber("imp@example.com")
        assert again is not None and again.status is SubscriberStatus.CONFIRMED
    finally:
        store.close()


def test_a_failed_welcome_leaves_the_confirmation(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SMTP to a closed loopback port: the welcome cannot go, the reader stays confirmed."""
    from publisher.signup import request_subscription
    from publisher.tokens import make_token
    from publisher.web import create_app

    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    site.write_config(f'\n[mail]\ntransport = "smtp"\n[mail.smtp]\nhost = "127.0.0.1"\nport = {free_port()}\n'
                      'security = "none"\n[web]\npublic_url = "http://127.0.0.1:8080"\n')  # fmt: skip
    app = site.app()
    try:
        _reader, request = request_subscription(
            app.store, "late@example.com", "", (), site.clock_now, app.offered.default, consent_text="我同意"
        )
        assert request is not None
        token = make_token(KEY.encode(), "signup", request.id, "late@example.com", site.clock_now + timedelta(days=7))
        with caplog.at_level(logging.ERROR, logger="publisher.web.account"):
            answer = (
                create_app(app).test_client().post(f"/confirm/{token}", environ_base={"REMOTE_ADDR": "2001:db8::7"})
            )
            deadline = time.monotonic() + 10
            while "welcome e-mail" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
        assert answer.status_code == 200 and "订阅成功" in answer.get_data(as_text=True)
        assert "could not send the welcome e-mail to subscriber #" in caplog.text
        reader = app.store.subscriber("late@example.com")
        assert reader is not None and reader.status is SubscriberStatus.CONFIRMED
        assert reader.consent is not None and (reader.consent.text, reader.consent.network) == (
            "我同意",
            "2001:db8::/64",
        )
    finally:
        app.close()


def test_the_subscribe_page_shows_the_configured_consent_and_privacy(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    from publisher.web import create_app

    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    site.write_config(
        site.mail_to_outbox()
        + '\n[theme]\nconsent = "订阅即同意接收邮件。"\nprivacy = "我们保护您的隐私。"\n'
        + 'privacy_url = "https://www.example.org/privacy"\n'
    )
    app = site.app()
    try:
        client = create_app(app).test_client()
        page = client.get("/subscribe").get_data(as_text=True)
        assert "订阅即同意接收邮件。" in page and "我们保护您的隐私。" in page
        assert '<a href="https://www.example.org/privacy">隐私政策</a>' in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf
        client.post("/subscribe", data={"csrf": csrf.group(1), "email": "p@example.com"})
        request = app.store.signup_request(1)
        assert request is not None and request.consent_text == "订阅即同意接收邮件。"
    finally:
        app.close()


# --- the store ------------------------------------------------------------------------------


def test_a_form_token_is_spent_once_and_forgotten_after_it_expires(store_url: str) -> None:
    from sqlalchemy import select

    from publisher.store.schema import used_form_tokens_table

    now = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    store = Store(store_url)
    try:
        assert store.spend_once("f1.abc.token", now + timedelta(hours=2), now)
        assert not store.spend_once("f1.abc.token", now + timedelta(hours=2), now + timedelta(minutes=5))
        assert store.spend_once("f2.abc.token", now + timedelta(hours=2), now)
        store.spend_once("f3.abc.token", now + timedelta(hours=5), now + timedelta(hours=3))  # prunes 1 and 2
        with store.engine.connect() as conn:
            kept = conn.execute(select(used_form_tokens_table.c.digest)).scalars().all()
        assert kept == [token_digest("f3.abc.token")] and len(kept[0]) == 64  # the digest, never the token
    finally:
        store.close()
