"""End to end in a real browser: `publisher run`, Debian's chromium on a phone-sized screen, the
reader's whole path from the feeds page through sign-up, the e-mail in the outbox, confirming,
changing sections, to unsubscribing.

Playwright drives the system's chromium (`executable_path`); its own browser download is never
used. `make test` installs chromium when it can (Makefile, `.browser`); where it is missing or
will not start, this test skips and says why. Screenshots of every page go to tests/artifacts/.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from test_smtp import free_port

from conftest import ROOT, Service, Site, days_ago
from publisher.model import Subscriber, SubscriberStatus
from publisher.store import Store

ARTIFACTS = ROOT / "tests" / "artifacts"
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    # Without these chromium calls home at start-up, and a closed network refuses it.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EMAIL = "Reader.Browser@example.com"


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium", path="/usr/bin")
    if found is None:
        pytest.skip("Debian's chromium is not installed (`apt-get install chromium`; `make test` does it as root)")
    return found


@pytest.fixture
def browser_page() -> Iterator[Any]:
    executable = chromium_path()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed: `pip install -e '.[test]'`"
    )
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        except sync_api.Error as exc:  # the first line, and the browser's last words
            lines = [line for line in str(exc).splitlines() if line.strip() and not line.startswith("<launching>")]
            pytest.skip(f"Playwright could not launch {executable}: {' | '.join(lines[:1] + lines[-3:])}")
        try:
            context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale="zh-CN")
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def stored(site: Site, email: str) -> Subscriber:
    store = Store(site.store_url)
    try:
        subscriber = store.subscriber(email.lower())
    finally:
        store.close()
    assert subscriber is not None, email
    return subscriber


def newest_mail(outbox: Path) -> EmailMessage:
    """The newest e-mail in the outbox; the web sends sign-up mail from a background thread, so
    it may land a moment after the page that announced it."""
    deadline = time.monotonic() + 10
    while not list(outbox.glob("*.eml")) and time.monotonic() < deadline:
        time.sleep(0.05)
    files = sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    assert files, f"no .eml in {outbox} after 10 s"
    message = message_from_bytes(files[-1].read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "no text/plain part"
    return str(part.get_content())  # type: ignore[attr-defined]


class Camera:
    """Full-page screenshots, numbered in the order taken, and a phone-fit check on each page."""

    def __init__(self, page: Any) -> None:
        self.page, self.count = page, 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for old in [*ARTIFACTS.glob("[0-9][0-9]-*.png"), ARTIFACTS / "failed.png"]:  # no stale tail
            old.unlink(missing_ok=True)

    def shot(self, name: str) -> Path:
        self.count += 1
        path = ARTIFACTS / f"{self.count:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        widths = self.page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], f"{path.name}: the page is {widths[0]} px wide on a {widths[1]} px phone"
        return path


def test_reader_subscribes_confirms_changes_sections_and_unsubscribes_in_chromium(
    site: Site, browser_page: Any
) -> None:
    page = browser_page
    port = free_port()
    outbox = site.outbox
    site.write_config(
        site.mail_to_outbox()
        + f"""
[digest]
postal_address = "云川市高新区创新大道 1 号"
[web]
public_url = "http://127.0.0.1:{port}"
"""
    )
    site.article("policy/a.md", "《人才十条》政策要点解读", date=days_ago(2))
    site.article("tech/shared.md", "科技成果转化与产业政策联动", date=days_ago(3), categories="[policy, tech]")
    site.article("news.md", "高新院开放日", date=days_ago(5))
    camera = Camera(page)
    service = Service(site.config, site.root, port)
    try:
        service.wait_until_serving()
        service.wait_until_built()
        base = service.base

        # The feeds page that `publisher run` built (in the background: it serves first).
        response = page.goto(f"{base}/")
        assert response is not None and response.status == 200
        assert page.locator("h1").inner_text().startswith("高新院")
        camera.shot("index")

        # Sign up: two sections out of three.
        response = page.goto(f"{base}/subscribe")
        assert response is not None and response.status == 200
        page.fill("#email", EMAIL)
        page.fill("#name", "浏览器读者")
        page.check("input[name=category][value=policy]")
        page.check("input[name=category][value=tech]")
        camera.shot("subscribe")
        page.click("form button[type=submit]")
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == "请查收邮件"
        assert EMAIL.lower() in page.locator("main").inner_text().lower()
        camera.shot("check-your-inbox")
        pending = stored(site, EMAIL)
        assert pending.status is SubscriberStatus.PENDING
        assert pending.categories == () and pending.name == ""  # nothing saved before the owner confirms

        # The confirmation e-mail, as the outbox transport wrote it.
        mail = newest_mail(outbox)
        assert EMAIL.lower() in str(mail["To"]).lower()
        links = re.findall(rf"{re.escape(base)}/confirm/\S+", text_of(mail))
        assert len(links) == 1, text_of(mail)
        unsubscribe_link = re.search(rf"<({re.escape(base)}/unsubscribe/[^>]+)>", str(mail["List-Unsubscribe"]))

        # The link shows a button and changes nothing (mail scanners follow links) ...
        response = page.goto(links[0])
        assert response is not None and response.status == 200
        assert page.locator("h1").inner_text() == "确认订阅"
        shown = page.locator("dl.details").inner_text()  # what confirming saves
        assert EMAIL in shown and "浏览器读者" in shown and "政策解读" in shown
        camera.shot("confirm")
        assert stored(site, EMAIL).status is SubscriberStatus.PENDING
        # ... the button confirms.
        page.click("form button[type=submit]")
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == "订阅成功"
        camera.shot("confirmed")
        assert stored(site, EMAIL).status is SubscriberStatus.CONFIRMED

        # Preferences: the sections chosen at sign-up are ticked; swap one and save.
        page.click("a:text('管理订阅')")
        page.wait_for_load_state()
        assert "/preferences/" in page.url
        assert page.is_checked("input[name=category][value=policy]")
        assert page.is_checked("input[name=category][value=tech]")
        assert not page.is_checked("input[name=category][value=gao-xin-yuan-xin-wen]")
        camera.shot("preferences")
        page.uncheck("input[name=category][value=tech]")
        page.check("input[name=category][value=gao-xin-yuan-xin-wen]")
        page.click("button[name=action][value=save]")
        page.wait_for_load_state()
        assert page.locator("[role=status]").inner_text() == "已保存"
        assert page.is_checked("input[name=category][value=policy]")
        assert page.is_checked("input[name=category][value=gao-xin-yuan-xin-wen]")
        assert not page.is_checked("input[name=category][value=tech]")
        camera.shot("preferences-saved")
        saved = stored(site, EMAIL)
        assert saved.status is SubscriberStatus.CONFIRMED
        assert set(saved.categories) == {"policy", "gao-xin-yuan-xin-wen"}

        # Unsubscribe from the preferences page.
        page.click("button[name=action][value=unsubscribe]")
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == "已退订"
        camera.shot("unsubscribed")
        assert stored(site, EMAIL).status is SubscriberStatus.UNSUBSCRIBED

        # The mail's List-Unsubscribe link still works afterwards: a page with a button, idempotent.
        if unsubscribe_link is not None:
            response = page.goto(unsubscribe_link.group(1))
            assert response is not None and response.status == 200
            assert page.locator("h1").inner_text() == "退订"
            camera.shot("unsubscribe-link")
            page.click("form button[type=submit]")
            page.wait_for_load_state()
            assert page.locator("h1").inner_text() == "已退订"
            camera.shot("unsubscribe-link-again")
            assert stored(site, EMAIL).status is SubscriberStatus.UNSUBSCRIBED
    except BaseException:
        if not page.is_closed():
            page.screenshot(path=str(ARTIFACTS / "failed.png"), full_page=True)
        raise
    finally:
        status = service.stop()
    assert status == 0, service.output()
