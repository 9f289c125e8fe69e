"""The console end to end in Debian's chromium (as tests/test_browser.py drives it): `publisher
run` on loopback with a slow SMTP sink (aiosmtpd), an operator signing in with a password and a
TOTP code, the dashboard's numbers read against the store's own, the sources page and ingest
now, a digest paused mid-send and resumed, a reader's categories edited.

Screenshots at 400 and 1280 px wide go to tests/artifacts/console/ (printed at the end; the
folder is ignored by git and kept between runs until the next run of this test).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from test_browser import CHROMIUM_ARGS, chromium_path
from test_newsletter import Inbox, add_readers, mailing_site
from test_smtp import free_port, smtp_on_loopback

from admin_session import PASSWORD, admin_config, make_account
from conftest import ROOT, Service, Site, days_ago
from publisher.store import DigestRow, Store, weeks_ending

ARTIFACTS = ROOT / "tests" / "artifacts" / "console"
WIDTHS = {"phone": {"width": 400, "height": 860}, "desktop": {"width": 1280, "height": 900}}
OPERATOR = "operator@example.org"
READERS = 40


@pytest.fixture
def chromium() -> Iterator[Any]:
    executable = chromium_path()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed: `pip install -e '.[test]'`"
    )
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        except sync_api.Error as exc:
            lines = [line for line in str(exc).splitlines() if line.strip() and not line.startswith("<launching>")]
            pytest.skip(f"Playwright could not launch {executable}: {' | '.join(lines[:1] + lines[-3:])}")
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def smtp_sink() -> Iterator[tuple[Inbox, int]]:
    """An SMTP server on loopback that takes a quarter of a second per message, so a digest to a
    few dozen readers is being sent for long enough to pause it."""
    box = Inbox(delay=0.25)
    with smtp_on_loopback(box) as port:
        yield box, port


class Camera:
    """Full-page screenshots of one page at each width, and a check that nothing is wider than
    the window (tables scroll inside their own box)."""

    def __init__(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for old in ARTIFACTS.glob("*.png"):
            old.unlink()
        self.count = 0

    def shoot(self, page: Any, name: str) -> None:
        for label, size in WIDTHS.items():
            page.set_viewport_size(size)
            self.count += 1
            path = ARTIFACTS / f"{self.count:02d}-{name}-{label}.png"
            page.screenshot(path=str(path), full_page=True)
            wide, window = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert wide <= window, f"{path.name}: the page is {wide} px wide in a {window} px window"


def sign_in(page: Any, base: str, secret: str) -> None:
    """The password, then the TOTP code of the moment, through the console's own forms."""
    import pyotp

    page.goto(f"{base}/admin/")
    assert "/admin/login" in page.url
    page.fill("#email", OPERATOR)
    page.fill("#password", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_load_state()
    assert "/admin/login/code" in page.url, page.content()
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("form button[type=submit]")
    page.wait_for_load_state()
    assert page.url.rstrip("/").endswith("/admin"), page.url


def wait_for(
    site: Site, done: Callable[[tuple[DigestRow, dict[str, int]] | None], bool], what: str, timeout: float = 60
) -> tuple[DigestRow, dict[str, int]]:
    """The newest digest and its deliveries by status, once `done` says so."""
    deadline = time.monotonic() + timeout
    while True:
        store = Store(site.store_url)
        try:
            row = store.last_digest()
            seen = (row, store.delivery_counts(row.id)) if row is not None else None
        finally:
            store.close()
        if done(seen):
            assert seen is not None
            return seen
        assert time.monotonic() < deadline, f"not {what} within {timeout} s: {seen}"
        time.sleep(0.1)


def table(page: Any, table_id: str) -> list[list[str]]:
    """A table's body as the reader sees it: a list of cells per row."""
    rows = page.locator(f"table#{table_id} tbody tr")
    return [[cell.strip() for cell in rows.nth(n).locator("th, td").all_inner_texts()] for n in range(rows.count())]


def test_an_operator_signs_in_with_totp_and_reads_the_stores_numbers_on_the_dashboard(
    site: Site, chromium: Any, smtp_sink: tuple[Inbox, int]
) -> None:
    import pyotp

    inbox, smtp_port = smtp_sink
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    mailing_site(site, smtp_port, extra=f'[web]\npublic_url = "{base}"\n' + admin_config(base))
    site.article("policy/a.md", "《人才十条》政策要点解读", date=days_ago(2))
    site.article("tech/shared.md", "科技成果转化与产业政策联动", date=days_ago(9), categories="[policy, tech]")
    site.article("news.md", "高新院开放日", date=days_ago(16))
    add_readers(site, READERS)
    secret = pyotp.random_base32()
    make_account(site, OPERATOR, "editor", totp_secret=secret, totp_enabled=True)
    camera = Camera()
    service = Service(site.config, site.root, port)
    try:
        service.wait_until_serving()
        service.wait_until_built()
        context = chromium.new_context(viewport=WIDTHS["desktop"], locale="zh-CN")
        page = context.new_page()
        page.set_default_timeout(15_000)
        sign_in(page, base, secret)

        # The dashboard's tables say what the store says, read here directly.
        store = Store(site.store_url)
        try:
            weeks = weeks_ending(datetime.now(UTC), ZoneInfo("Asia/Shanghai"), 12)
            subscribers = store.subscriber_weeks(weeks)
            categories = {c.slug: c.counts for c in store.category_weeks(weeks)}
            health = store.source_health()
        finally:
            store.close()
        page.click("#growth-heading ~ details summary")
        shown = table(page, "subscriber-weeks")
        assert shown == [
            [w.week.label, *(str(n) for n in (w.confirmed, w.pending, w.unsubscribed, w.bounced, w.net, w.list_size))]
            for w in subscribers
        ]
        assert sum(int(row[1]) for row in shown) == READERS and shown[-1][-1] == str(
            READERS
        )  # every reader confirmed this week
        page.click("#articles-heading ~ details summary")
        by_name = {row[0]: [int(n) for n in row[1:]] for row in table(page, "category-weeks")}
        assert by_name["政策解读"] == list(categories["policy"]) and sum(by_name["政策解读"]) == 2
        assert by_name["科技创新"] == list(categories["tech"]) and sum(by_name["科技创新"]) == 1
        sources = table(page, "source-health")
        assert [row[2] for row in sources] == ["正常" for _ in health] and len(sources) == len(health)
        assert page.locator("svg[role=img]").count() == 2 + 3  # growth, changes, a chart per category
        camera.shoot(page, "dashboard")

        page.goto(f"{base}/admin/sources")
        feeds = {row[0]: row[1] for row in table(page, "feeds")}
        assert feeds["rss.xml"] == "3" and feeds["policy/rss.xml"] == "2"
        camera.shoot(page, "sources")
        page.click("#ingest-now")
        page.wait_for_load_state()
        assert page.locator("#ingest-state").inner_text() != ""
        camera.shoot(page, "sources-ingesting")

        # Send the digest to the slow sink, pause it mid-send, then resume it.
        page.goto(f"{base}/admin/digests")
        page.click("#digest-send button[value=send]")
        page.wait_for_load_state()
        digest = wait_for(site, lambda d: d is not None and d[1].get("sent", 0) >= 3, "3 messages sent")
        page.goto(f"{base}/admin/digests/{digest[0].id}")
        page.click("#digest-control button[value=pause]")
        page.wait_for_load_state()
        paused, counts = wait_for(site, lambda d: d is not None and d[0].status == "paused", "the digest paused")
        time.sleep(1.5)  # the message in hand, at most, goes out after the pause
        received = len(inbox.received)
        time.sleep(1.5)
        assert len(inbox.received) == received, "the sink kept receiving after the pause"
        assert counts.get("pending", 0) + counts.get("sending", 0) > 0
        camera.shoot(page, "digest-paused")
        page.click("#digest-control button[value=resume]")
        page.wait_for_load_state()
        done, counts = wait_for(site, lambda d: d is not None and d[0].status == "done", "the digest done", 120)
        assert received < counts.get("sent", 0) == len(inbox.received) and len({r for r, _ in inbox.received}) == len(
            inbox.received
        )

        # The dashboard's digest row is the store's report of it.
        page.goto(f"{base}/admin/")
        store = Store(site.store_url)
        try:
            (report,) = store.digest_reports(1)
        finally:
            store.close()
        row = table(page, "digests")[0]
        assert row[1:10] == [
            report.status,
            *(
                str(n)
                for n in (
                    report.planned,
                    report.sent,
                    report.failed,
                    report.uncertain,
                    report.skipped,
                    report.waiting,
                    report.bounced,
                    report.complained,
                )
            ),
        ]
        assert report.sent == len(inbox.received) and report.time_to_send is not None
        camera.shoot(page, "dashboard-after-digest")

        # Edit a reader: tick one category only.
        store = Store(site.store_url)
        try:
            reader = store.subscriber("reader0000@example.com")
        finally:
            store.close()
        assert reader is not None and reader.categories == ()
        page.goto(f"{base}/admin/subscribers/{reader.id}")
        page.check("#subscriber-categories input[name=category][value=tech]")
        page.click("#subscriber-categories button[value=categories]")
        page.wait_for_load_state()
        assert page.locator("[role=status]").count() == 1
        camera.shoot(page, "subscriber-edited")
        store = Store(site.store_url)
        try:
            edited = store.subscriber("reader0000@example.com")
        finally:
            store.close()
        assert edited is not None and edited.categories == ("tech",)
        context.close()
    finally:
        service.stop()
    print(f"console screenshots: {ARTIFACTS}")
    assert sorted(p.name for p in ARTIFACTS.glob("*.png"))[:2] == ["01-dashboard-phone.png", "02-dashboard-desktop.png"]
    assert isinstance(ARTIFACTS, Path)
