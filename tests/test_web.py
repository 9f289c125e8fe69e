"""The web app under waitress on a loopback port: feeds with validators, the subscription flows."""

from __future__ import annotations

import gzip
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import requests
import waitress
from test_smtp import free_port
from waitress_thread import ServerThread

from conftest import HEALTH_HEADERS, HEALTH_TOKEN, Site
from publisher.model import SubscriberStatus
from publisher.store import Store
from publisher.tokens import make_token
from publisher.web import create_app

KEY = "web-test-signing-key-0123456789"


class Server:
    """The service (create_app under waitress) on one loopback port, mail to the outbox; `web`:
    the `[web]` keys besides public_url."""

    def __init__(self, site: Site, web: str = "subscribe_per_address = 3") -> None:
        self.site = site
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        site.write_config(
            site.mail_to_outbox()
            + f"""
[web]
public_url = "{self.base}"
{web}
"""
        )
        site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
        site.build()
        self.app = site.app()
        self.served = ServerThread(
            waitress.create_server(create_app(self.app), host="127.0.0.1", port=self.port, threads=4), self.app.close
        )

    def stop(self) -> None:
        self.served.stop()

    def mails(self, at_least: int = 0) -> list[tuple[str, str]]:
        """(subject, text) of every mail in the outbox, oldest first; sign-up mail is sent in
        the background, so wait (a little) for `at_least` of them."""
        deadline = time.monotonic() + 5
        while len(list(self.site.outbox.glob("*.eml"))) < at_least and time.monotonic() < deadline:
            time.sleep(0.02)
        found = []
        for path in sorted(self.site.outbox.glob("*.eml")):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            found.append((str(message["Subject"]), message.get_body(("plain",)).get_content()))  # type: ignore[union-attr]
        return found

    def link(self, kind: str, nth: int = 1) -> str:
        """The link of `kind` in the `nth` mail (waiting for it)."""
        _subject, text = self.mails(at_least=nth)[nth - 1]
        match = re.search(rf"{re.escape(self.base)}/{kind}/\S+", text)
        assert match, text
        return match.group(0)

    def status(self, email: str) -> SubscriberStatus:
        store = Store(self.site.store_url)
        try:
            found = store.subscriber(email)
            assert found is not None
            return found.status
        finally:
            store.close()


@pytest.fixture
def server(site: Site, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    monkeypatch.setenv("PUBLISHER_HEALTH_TOKEN", HEALTH_TOKEN)
    running = Server(site)
    try:
        yield running
    finally:
        running.stop()


def subscribe(
    server: Server, email: str, *categories: str, session: requests.Session | None = None
) -> requests.Response:
    browser = session or requests.Session()
    form = browser.get(f"{server.base}/subscribe", timeout=10)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert form.status_code == 200 and csrf
    data = [("csrf", csrf.group(1)), ("email", email), ("name", "读者")] + [("category", c) for c in categories]
    return browser.post(f"{server.base}/subscribe", data=data, timeout=10)


def test_feeds_have_types_validators_304s_and_gzip(server: Server) -> None:
    plain = {"Accept-Encoding": "identity"}
    first = requests.get(f"{server.base}/tech/atom.xml", headers=plain, timeout=10)
    assert first.status_code == 200 and first.headers["Content-Type"].startswith("application/atom+xml")
    assert requests.get(f"{server.base}/rss.xml", timeout=10).headers["Content-Type"].startswith("application/rss+xml")
    assert (
        requests.get(f"{server.base}/feed.json", timeout=10).headers["Content-Type"].startswith("application/feed+json")
    )
    index = requests.get(f"{server.base}/", timeout=10)
    assert index.status_code == 200 and "text/html" in index.headers["Content-Type"] and "atom.xml" in index.text
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert (
        requests.get(f"{server.base}/tech/atom.xml", headers=plain | {"If-None-Match": etag}, timeout=10).status_code
        == 304
    )
    again = requests.get(f"{server.base}/tech/atom.xml", headers=plain | {"If-Modified-Since": modified}, timeout=10)
    assert again.status_code == 304 and again.content == b""
    stale = requests.get(f"{server.base}/tech/atom.xml", headers=plain | {"If-None-Match": '"other"'}, timeout=10)
    assert stale.status_code == 200
    raw = requests.get(f"{server.base}/tech/atom.xml", headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10)
    assert raw.headers["Content-Encoding"] == "gzip" and raw.headers["ETag"] != etag  # its own representation
    zipped = {"Accept-Encoding": "gzip", "If-None-Match": raw.headers["ETag"]}
    assert requests.get(f"{server.base}/tech/atom.xml", headers=zipped, timeout=10).status_code == 304
    assert gzip.decompress(raw.raw.read()) == Path(server.site.out / "tech" / "atom.xml").read_bytes()
    for sneaky in ("/../publisher.toml", "/%2e%2e/publisher.toml", "/nothing.xml"):
        assert requests.get(server.base + sneaky, timeout=10).status_code == 404


def test_subscribe_confirm_preferences_unsubscribe(server: Server) -> None:
    answer = subscribe(server, "Reader@Example.com", "policy", "tech")
    assert answer.status_code == 200 and "请查收邮件" in answer.text
    assert server.status("reader@example.com") is SubscriberStatus.PENDING
    confirm = server.link("confirm")
    page = requests.get(confirm, timeout=10)  # a mail scanner following the link confirms nothing
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert server.status("reader@example.com") is SubscriberStatus.PENDING
    done = requests.post(confirm, timeout=10)
    assert done.status_code == 200 and "订阅成功" in done.text
    assert server.status("reader@example.com") is SubscriberStatus.CONFIRMED

    preferences = re.search(r'href="([^"]+/preferences/[^"]+)"', done.text)
    assert preferences
    saved = requests.post(
        preferences.group(1).replace("&amp;", "&"), data={"category": ["tech"], "action": "save"}, timeout=10
    )
    assert saved.status_code == 200 and "已保存" in saved.text
    store = Store(server.site.store_url)
    try:
        reader = store.subscriber("reader@example.com")
        assert reader is not None and reader.categories == ("tech",)
    finally:
        store.close()
    gone = requests.post(preferences.group(1), data={"action": "unsubscribe"}, timeout=10)
    assert gone.status_code == 200 and server.status("reader@example.com") is SubscriberStatus.UNSUBSCRIBED


def test_the_answer_reveals_nothing_about_who_is_subscribed(server: Server) -> None:
    new = subscribe(server, "first@example.com")
    requests.post(server.link("confirm"), timeout=10)
    again = subscribe(server, "first@example.com")
    assert again.status_code == new.status_code == 200 and again.text == new.text
    subjects = [subject for subject, _text in server.mails(at_least=3)]
    assert [s[:4] for s in subjects] == ["请确认订", "欢迎订阅", "管理您的"]  # the mail tells the owner


def test_one_click_unsubscribe_needs_no_cookie_and_is_idempotent(server: Server) -> None:
    subscribe(server, "one@example.com")
    requests.post(server.link("confirm"), timeout=10)
    store = Store(server.site.store_url)
    try:
        reader = store.subscriber("one@example.com")
        assert reader is not None and reader.id is not None
    finally:
        store.close()
    token = make_token(KEY.encode(), "unsubscribe", reader.id, "one@example.com", datetime.now(UTC) + timedelta(days=9))
    url = f"{server.base}/unsubscribe/{token}"
    looked = requests.get(url, timeout=10)
    assert looked.status_code == 200 and server.status("one@example.com") is SubscriberStatus.CONFIRMED
    for _ in range(2):  # RFC 8058: a plain form POST, no cookies; mail systems may retry it
        first = requests.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10)
        assert first.status_code == 200 and not first.cookies
    assert server.status("one@example.com") is SubscriberStatus.UNSUBSCRIBED


def test_forged_expired_and_misused_tokens_are_refused(server: Server) -> None:
    subscribe(server, "two@example.com")
    confirm = server.link("confirm")
    token = confirm.rsplit("/", 1)[1]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert requests.post(f"{server.base}/confirm/{forged}", timeout=10).status_code == 404
    assert requests.post(f"{server.base}/unsubscribe/{token}", timeout=10).status_code == 404  # a confirm token
    sid = int(token.split(".")[0][1:], 36)
    expired = make_token(KEY.encode(), "confirm", sid, "two@example.com", server.site.clock_now - timedelta(minutes=1))
    assert requests.post(f"{server.base}/confirm/{expired}", timeout=10).status_code == 404
    assert server.status("two@example.com") is SubscriberStatus.PENDING


def test_csrf_and_rate_limits(server: Server) -> None:
    bare = requests.post(f"{server.base}/subscribe", data={"email": "x@example.com"}, timeout=10)
    assert bare.status_code == 400 and not server.site.outbox.exists()
    browser = requests.Session()
    codes = [subscribe(server, "same@example.com", session=browser).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]  # three per address and hour
    assert len(server.mails(at_least=3)) == 3
    assert subscribe(server, "not an address").status_code == 400


def test_healthz(server: Server) -> None:
    health = requests.get(f"{server.base}/healthz", headers=HEALTH_HEADERS, timeout=10)
    body = health.json()
    assert health.status_code == 200 and body["status"] == "ok" and body["database"] == "ok"
    assert body["last_ingest"]["new"] == 1 and body["last_digest"] is None
    assert body["scheduler"] == {"state": "off"}


def test_a_stranger_cannot_undo_an_unsubscribe(server: Server) -> None:
    subscribe(server, "left@example.com", "tech")
    old_link = server.link("confirm")
    requests.post(old_link, timeout=10)
    store = Store(server.site.store_url)
    try:
        reader = store.subscriber("left@example.com")
        assert reader is not None and reader.id is not None
        token = make_token(
            KEY.encode(), "unsubscribe", reader.id, "left@example.com", datetime.now(UTC) + timedelta(days=9)
        )
        server.site.clock_now += timedelta(minutes=5)
        requests.post(f"{server.base}/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}, timeout=10)
        server.site.clock_now += timedelta(minutes=5)
        subscribe(server, "left@example.com", "policy")  # anybody can type the address
        after = store.subscriber("left@example.com")
        assert after is not None and after.status is SubscriberStatus.UNSUBSCRIBED and after.categories == ("tech",)
        assert requests.post(old_link, timeout=10).status_code == 404  # an old link cannot undo it
        assert server.status("left@example.com") is SubscriberStatus.UNSUBSCRIBED
        new_link = server.link("confirm", nth=3)  # (2: the welcome) only the owner, by the new link, can
        assert requests.post(new_link, timeout=10).status_code == 200
        assert server.status("left@example.com") is SubscriberStatus.CONFIRMED
    finally:
        store.close()
