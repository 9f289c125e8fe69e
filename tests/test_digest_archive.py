"""The digest archive end to end: a digest sent through `publisher digest send` (the outbox
transport) gets its public page, which the feed server serves under a strict CSP, which holds
none of the tokens the readers' mails hold, and which each mail's "View in browser" link
reaches; the index and the Atom feed list it; `[digest] archive = false` makes neither."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import requests
import waitress
from lxml import html as lxml_html
from test_bounces import app_on, readers
from test_browser import browser_page  # noqa: F401  (a fixture)
from test_digest_render import mailing  # noqa: F401  (a fixture)
from test_smtp import free_port
from waitress_thread import ServerThread

from conftest import Site, days_ago
from feedcheck import assert_matches_atom_schema, atom_schema, parse_with_feedparser
from publisher.archive import base_slug, free_slug
from publisher.digest import explicit_window
from publisher.model import BuildReport, Subscriber, SubscriberStatus
from publisher.newsletter import Newsletter
from publisher.store import Store
from publisher.web import create_app

KEY = "archive-test-signing-key-0123456789"
TITLES = ("《人才十条》政策要点解读", "科技成果转化与产业政策联动", "高新院开放日", "研发费用加计扣除怎么用？")


class FeedServer:
    """The site's web app (the output folder at /) under waitress on a loopback port."""

    def __init__(self, site: Site, port: int) -> None:
        self.app = site.app()
        self.served = ServerThread(
            waitress.create_server(create_app(self.app), host="127.0.0.1", port=port, threads=2), self.app.close
        )

    def stop(self) -> None:
        self.served.stop()


def archive_site(site: Site, port: int, archive: bool = True) -> Site:
    """Four articles in three categories, two readers (one of one category, one of all),
    the output folder served at the loopback port, mail to the outbox."""
    base = f"http://127.0.0.1:{port}"
    site.write_config(
        site.mail_to_outbox()
        + f'[web]\npublic_url = "{base}"\n[digest]\nmessages_per_second = 0\narchive = {str(archive).lower()}\n'
    )
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace("[output]\n", f'[output]\nbase_url = "{base}"\n', 1), encoding="utf-8")
    site.clock_now = datetime.now(UTC) - timedelta(hours=1)
    site.article("policy/a.md", TITLES[0], date=days_ago(2))
    site.article("tech/shared.md", TITLES[1], date=days_ago(3), categories="[policy, tech]")
    site.article("news.md", TITLES[2], date=days_ago(5))
    site.article("tech/b.md", TITLES[3], date=days_ago(4))
    site.build()
    now = datetime.now(UTC)
    readers = [
        Subscriber("policy@example.com", "政策读者", ("policy",), SubscriberStatus.CONFIRMED, now, "cli", now),
        Subscriber("all@example.com", "全部读者", (), SubscriberStatus.CONFIRMED, now, "cli", now),
    ]
    store = Store(site.store_url)
    try:
        store.save_subscribers(readers)
    finally:
        store.close()
    return site


@pytest.fixture
def served(site: Site, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Site, str]]:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    port = free_port()
    archive_site(site, port)
    result = site.cli("digest", "send")
    assert result.exit_code == 0, result.output
    server = FeedServer(site, port)
    try:
        yield site, f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def mails(site: Site) -> list[EmailMessage]:
    return [
        message_from_bytes(p.read_bytes(), policy=policy.default)  # type: ignore[misc]
        for p in sorted(site.outbox.glob("*.eml"))
    ]


def parts(mail: EmailMessage) -> tuple[str, str]:
    text, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def view_links(mail: EmailMessage) -> tuple[str, str]:
    """The "View in browser" link of the mail's text part and of its HTML part."""
    text, html = parts(mail)
    in_text = re.search(r"^View in browser: (\S+)$|^在浏览器中查看：(\S+)$", text, re.MULTILINE)
    assert in_text, text
    anchors = [a for a in lxml_html.fromstring(html).iter("a") if a.text_content().strip() == "在浏览器中查看"]
    assert len(anchors) == 1, html
    return in_text.group(1) or in_text.group(2), str(anchors[0].get("href"))


def personal_secrets(mail: EmailMessage) -> list[str]:
    """Every token a reader's mail holds: the signed unsubscribe and preferences links' tokens,
    the delivery token, the Message-ID and the reader's address."""
    text, _html = parts(mail)
    tokens = re.findall(r"/(?:unsubscribe|preferences)/([A-Za-z0-9._~-]+)", text + str(mail["List-Unsubscribe"]))
    assert len(set(tokens)) >= 2, text
    delivery = str(mail["X-Publisher-Delivery"])
    assert delivery and delivery != "None"
    return [*set(tokens), delivery, str(mail["Message-ID"]).strip("<>"), str(mail["To"].addresses[0].addr_spec)]


def test_a_sent_digests_page_is_served_under_csp_with_every_category_and_no_token(served: tuple[Site, str]) -> None:
    site, base = served
    sent = mails(site)
    assert len(sent) == 2
    links = {link for mail in sent for link in view_links(mail)}
    assert len(links) == 1  # both readers' mails, text and HTML, link the one page
    (link,) = links
    assert re.fullmatch(rf"{re.escape(base)}/digests/\d{{4}}-w\d{{2}}/", link), link

    page = requests.get(link, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    policy_header = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy_header and "style-src 'self';" in policy_header  # no inline style at all
    assert "script" not in page.text.lower() and " style=" not in page.text and "<style" not in page.text
    for title in TITLES:  # the policy reader's mail holds one category; the page holds all three
        assert title in page.text
    for name in ("高新院新闻", "政策解读", "科技创新"):
        assert f"<h2>{name}</h2>" in page.text
    for mail in sent:
        for secret in personal_secrets(mail):
            assert secret not in page.text, secret
    assert "/unsubscribe/" not in page.text and "/preferences/" not in page.text
    assert f'href="{base}/subscribe"' in page.text  # a sign-up link instead

    stylesheet = requests.get(f"{link}../archive.css", timeout=10)
    assert stylesheet.status_code == 200 and stylesheet.headers["Content-Type"].startswith("text/css")


def test_the_index_and_the_atom_feed_list_the_sent_digest(served: tuple[Site, str]) -> None:
    site, base = served
    link, _html_link = view_links(mails(site)[0])
    index = requests.get(f"{base}/digests/", timeout=10)
    assert index.status_code == 200 and "Content-Security-Policy" in index.headers
    assert f'href="{link}"' in index.text

    feed = requests.get(f"{base}/digests/atom.xml", timeout=10)
    assert feed.headers["Content-Type"].startswith("application/atom+xml")
    parsed = parse_with_feedparser(feed.content)
    assert [entry.link for entry in parsed.entries] == [link]
    assert all(title in parsed.entries[0].content[0].value for title in TITLES)
    schema = atom_schema()
    if schema is not None:
        assert_matches_atom_schema(feed.content, schema)


def test_a_build_makes_the_archive_again_from_the_store_and_rewrites_nothing_unchanged(
    served: tuple[Site, str],
) -> None:
    site, _base = served
    folder = site.out / "digests"
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    assert len(before) == 4  # the page, the index, the feed, the stylesheet
    site.build()
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before
    pages = list(folder.glob("*/index.html"))
    kept = {p: p.read_bytes() for p in before}
    for path in before:
        path.unlink()
    site.build()
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == kept
    assert len(pages) == 1


def test_archive_off_makes_no_pages_and_no_link(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    archive_site(site, free_port(), archive=False)
    result = site.cli("digest", "send")
    assert result.exit_code == 0, result.output
    sent = mails(site)
    assert len(sent) == 2
    for mail in sent:
        text, html = parts(mail)
        assert "/digests/" not in text + html and "在浏览器中查看" not in text + html
    site.build()
    assert not (site.out / "digests").exists()


def test_a_digest_planned_for_nobody_gets_no_page(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    archive_site(site, free_port())
    for email in ("policy@example.com", "all@example.com"):
        result = site.cli("subscribers", "remove", email)
        assert result.exit_code == 0, result.output
    assert site.cli("digest", "send").exit_code == 0
    site.build()
    assert not (site.out / "digests").exists()


def test_slugs_name_the_week_the_day_or_the_window_and_number_a_second_of_one_name() -> None:
    monday = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai, ISO week 48
    zone = "Asia/Shanghai"
    assert base_slug(monday - timedelta(days=7), monday, "ingested", "weekly", zone) == "2026-w48"
    assert base_slug(monday - timedelta(days=1), monday, "ingested", "daily", zone) == "2026-11-23"
    late = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)  # Monday 01:00 in Shanghai: week 49 there
    assert base_slug(monday, late, "ingested", "weekly", zone) == "2026-w49"
    window = explicit_window(datetime(2026, 11, 1).date(), datetime(2026, 11, 30).date(), zone)
    assert base_slug(window.start, window.end, "published", "weekly", zone) == "2026-11-01-to-2026-11-30"
    assert free_slug("2026-w48", {"2026-w47"}) == "2026-w48"
    assert free_slug("2026-w48", {"2026-w48", "2026-w48-2", "2026-w48-4"}) == "2026-w48-3"


def test_an_explicit_window_digest_links_its_own_page(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    archive_site(site, free_port())
    today = datetime.now(UTC).astimezone().date()
    since, until = today - timedelta(days=10), today + timedelta(days=1)
    result = site.cli("digest", "send", "--since", str(since), "--until", str(until))
    assert result.exit_code == 0, result.output
    (link,) = {link for mail in mails(site) for link in view_links(mail)}
    slug = f"{since}-to-{until}"
    assert link.endswith(f"/digests/{slug}/")
    assert all(title in (site.out / "digests" / slug / "index.html").read_text("utf-8") for title in TITLES)


def csp_violations(page: Any, url: str) -> list[str]:
    """Load `url` in the browser; every CSP violation it reports (events and console errors)."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None)
    page.add_init_script(  # injected by the browser itself: a page's CSP does not apply to it
        "document.addEventListener('securitypolicyviolation',"
        " e => (window.__csp = window.__csp || []).push(e.violatedDirective + ' ' + e.blockedURI), true);"
    )
    response = page.goto(url, wait_until="load")
    assert response is not None and response.status == 200
    page.wait_for_timeout(300)  # violation reports are dispatched asynchronously
    return seen + list(page.evaluate("window.__csp || []"))


def test_the_page_passes_its_csp_in_chromium(served: tuple[Site, str], browser_page: Any) -> None:  # noqa: F811
    site, base = served
    link, _html_link = view_links(mails(site)[0])
    assert csp_violations(browser_page, link) == []
    # The stylesheet applied under the policy: the page is the 600 px card of archive.css.
    assert browser_page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth") == "600px"
    assert browser_page.locator("h2").all_inner_texts() == ["高新院新闻", "政策解读", "科技创新"]
    assert csp_violations(browser_page, f"{base}/digests/") == []
    assert csp_violations(browser_page, f"{base}/") == []  # index.html's <style>, allowed by its hash
    # The same check sees a violation when there is one: an inline style in the served folder.
    (site.out / "digests" / "control.html").write_text('<!DOCTYPE html><p style="color: red">x</p>', "utf-8")
    assert any("style-src" in v or "style" in v for v in csp_violations(browser_page, f"{base}/digests/control.html"))


def test_check_renders_an_archive_override_and_names_its_file_and_line(site: Site) -> None:
    folder = site.root / "theme"
    assert site.cli("theme", "export", str(folder)).exit_code == 0
    page = folder / "digest_archive.html.j2"
    edited = page.read_text("utf-8").replace("<h1>{{ date_label }}</h1>", "<h1>{{ issue_number }}</h1>")
    page.write_text(edited, "utf-8")
    site.append_config(f'[theme]\ntemplates = "{folder}"\n')
    result = site.cli("check")
    assert result.exit_code == 1, result.output
    assert "theme (digest archive)" in result.output and "'issue_number' is undefined" in result.output


GOLDEN = Path(__file__).parent / "golden" / "archive"


def test_golden_archive_files(mailing: Site) -> None:  # noqa: F811
    """The page, index, feed and stylesheet of a planned digest as readers see them;
    UPDATE_GOLDEN=1 rewrites tests/golden/archive/ after a deliberate change."""
    app = mailing.app()
    try:
        now = app.clock()
        reader = Subscriber("zhang@example.com", "张三", ("policy",), SubscriberStatus.CONFIRMED, now, "cli", now)
        app.store.save_subscribers([reader])
        plan = Newsletter(app).plan_scheduled()
        assert plan.planned == 1
    finally:
        app.close()
    folder = mailing.out / "digests"
    actual = {p.relative_to(folder).as_posix(): p.read_text("utf-8") for p in folder.rglob("*") if p.is_file()}
    assert sorted(actual) == ["2026-w49/index.html", "archive.css", "atom.xml", "index.html"]
    assert "张三" not in actual["2026-w49/index.html"]  # the reader's name is theirs alone
    if os.environ.get("UPDATE_GOLDEN"):
        for name, text in actual.items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_text(text, encoding="utf-8", newline="")
    for name, text in actual.items():
        assert text == (GOLDEN / name).read_text("utf-8"), f"archive/{name} differs (UPDATE_GOLDEN=1 to accept)"


def test_digests_of_one_week_are_numbered_in_opening_order_on_both_stores(
    site: Site,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    site.clock_now = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)  # Friday 16:00 in Shanghai, ISO week 47
    site.article("policy/a.md", TITLES[0], date="2026-11-18 09:00")
    app = app_on(site, store_url, site.mail_to_outbox())
    try:
        app.build(BuildReport())
        readers(app, "reader@example.com")
        letters = Newsletter(app)
        assert letters.plan_scheduled().planned == 1
        site.clock_now += timedelta(hours=2)
        site.article("tech/b.md", TITLES[3], date="2026-11-20 09:00")
        app.build(BuildReport())
        assert letters.plan_scheduled().planned == 1
        site.clock_now += timedelta(hours=1)
        empty = letters.plan_scheduled()  # nothing new: nobody is mailed, so no page
        assert empty.planned == 0
        archive = app.archive
        assert archive is not None
        assert [e.slug for e in archive.entries()] == ["2026-w47", "2026-w47-2"]
        assert letters.archive_url(empty.digest) == "https://www.example.org/digests/2026-w47-3/"  # kept for it
        site.clock_now += timedelta(hours=1)
        upcoming = letters.scheduled_window(app.clock())  # not opened: the address it would get
        assert letters.archive_url(upcoming) == "https://www.example.org/digests/2026-w47-4/"
    finally:
        app.close()
    pages = sorted(p.parent.name for p in (site.out / "digests").glob("*/index.html"))
    assert pages == ["2026-w47", "2026-w47-2"]
    second = (site.out / "digests" / "2026-w47-2" / "index.html").read_text("utf-8")
    assert TITLES[3] in second and TITLES[0] not in second  # each page holds its own window


def test_a_given_address_is_kept_when_the_zone_changes_and_an_old_digest_is_named_once(
    site: Site,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The page a mail links to never moves: its slug is stored as the digest is planned and
    read from the ledger after, whatever `[site] timezone` says later; a digest sent before
    addresses were stored gets one, once, and keeps it."""
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    site.clock_now = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)  # Monday 04:00 in Shanghai: week 48 there, 47 in UTC
    site.article("policy/a.md", TITLES[0], date="2026-11-20 09:00")
    app = app_on(site, store_url, site.mail_to_outbox())
    try:
        app.build(BuildReport())
        readers(app, "reader@example.com")
        plan = Newsletter(app).plan_scheduled()
        assert plan.planned == 1
        assert Newsletter(app).archive_url(plan.digest) == "https://www.example.org/digests/2026-w48/"
        assert [r.slug for r in app.store.archive_digests()] == ["2026-w48"]
    finally:
        app.close()
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace('timezone = "Asia/Shanghai"', 'timezone = "UTC"'), encoding="utf-8")
    app = site.app()
    try:
        assert app.settings.site.timezone == "UTC"
        archive = app.archive
        assert archive is not None
        assert Newsletter(app).archive_url(plan.digest) == "https://www.example.org/digests/2026-w48/"
        assert [e.slug for e in archive.entries()] == ["2026-w48"]
        with app.store.engine.begin() as conn:  # as a digest sent before the upgrade: no address yet
            conn.exec_driver_sql("UPDATE digests SET archive_slug = NULL")
        assert [e.slug for e in archive.entries()] == ["2026-w47"]  # named now, in the zone of now
        text = site.config.read_text(encoding="utf-8")
        site.config.write_text(text.replace('timezone = "UTC"', 'timezone = "Asia/Shanghai"'), encoding="utf-8")
    finally:
        app.close()
    app = site.app()
    try:
        archive = app.archive
        assert archive is not None
        assert [e.slug for e in archive.entries()] == ["2026-w47"]  # once given, kept
    finally:
        app.close()


def test_a_page_that_cannot_be_written_stops_no_mail_and_the_next_build_writes_it(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The output's digests/ is a file, not a folder: looking for the page raises
    NotADirectoryError (no PublisherError); the deliveries were planned, so the mails go out."""
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    archive_site(site, free_port())
    (site.out / "digests").write_text("in the way", encoding="utf-8")
    result = site.cli("digest", "send")
    assert result.exit_code == 0, result.output
    sent = mails(site)
    assert len(sent) == 2
    (link,) = {link for mail in sent for link in view_links(mail)}
    logged = caplog.text + result.output
    assert "its archive page was not written under" in logged and "publisher build" in logged, result.output
    (site.out / "digests").unlink()
    site.build()
    slug = link.rstrip("/").rsplit("/", 1)[1]
    assert (site.out / "digests" / slug / "index.html").is_file()


def test_turning_the_archive_on_later_publishes_no_digest_sent_before_until_asked(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an upgrade does too (`archive` defaults to true): digests opened before the archive
    was first on stay unpublished; `digest archive --all` publishes them deliberately."""
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    archive_site(site, free_port(), archive=False)
    assert site.cli("digest", "send").exit_code == 0
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace("archive = false", "archive = true"), encoding="utf-8")
    site.clock_now = datetime.now(UTC)  # the build's clock: after the digest was sent
    site.build()
    assert not list((site.out / "digests").glob("*/index.html"))
    result = site.cli("digest", "archive")
    assert result.exit_code == 0, result.output
    assert "the archive holds the digests opened since" in result.output
    assert not list((site.out / "digests").glob("*/index.html"))
    result = site.cli("digest", "archive", "--all")
    assert result.exit_code == 0, result.output
    assert "1970-01-01" in result.output
    (page,) = (site.out / "digests").glob("*/index.html")
    assert all(title in page.read_text("utf-8") for title in TITLES)
    assert page.parent.name in (site.out / "digests" / "index.html").read_text("utf-8")
    result = site.cli("digest", "archive", "--all", "--since", "2026-01-01")
    assert result.exit_code != 0 and "not both" in result.output


def test_a_build_with_no_new_digest_renders_no_archive_file_and_reads_no_window(
    served: tuple[Site, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index, the feed and the stylesheet are rendered again only when a digest was added or
    changed, a file is missing, or the site's shape changed: not at every build."""
    site, _base = served
    windows: list[object] = []
    between = Store.articles_between

    def counted(self: Store, *args: Any) -> Any:
        windows.append(args)
        return between(self, *args)

    monkeypatch.setattr(Store, "articles_between", counted)
    site.build()
    assert windows == []
    (site.out / "digests" / "atom.xml").unlink()
    site.build()
    assert (site.out / "digests" / "atom.xml").is_file() and len(windows) == 1  # the one digest, for the feed


def test_a_daily_and_a_weekly_digest_of_one_day_are_titled_by_their_cadence(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    site.write_config(site.mail_to_outbox() + '[digest]\ncadences = ["weekly", "daily"]\nmessages_per_second = 0\n')
    site.clock_now = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)  # Thursday 09:00 in Shanghai
    site.article("policy/a.md", TITLES[0], date="2026-12-02 18:00")
    app = site.app()
    try:
        app.build(BuildReport())
        now = app.clock()
        app.store.save_subscribers([
            Subscriber("weekly@example.com", "", (), SubscriberStatus.CONFIRMED, now, "cli", now, cadence="weekly"),
            Subscriber("daily@example.com", "", (), SubscriberStatus.CONFIRMED, now, "cli", now, cadence="daily"),
        ])  # fmt: skip
        letters = Newsletter(app)
        assert letters.plan_scheduled("weekly").planned == 1
        assert letters.plan_scheduled("daily").planned == 1
    finally:
        app.close()
    folder = site.out / "digests"
    index = lxml_html.fromstring((folder / "index.html").read_bytes())
    rows = [a.text_content() for a in index.cssselect("ul.issues a")]
    assert sorted(rows) == ["高新院周报 · 2026年12月3日", "高新院日报 · 2026年12月3日"], rows
    assert "往期高新院简报" in index.findtext(".//h1")  # both cadences: the whole list's name
    daily = lxml_html.fromstring((folder / "2026-12-03" / "index.html").read_bytes())
    assert daily.findtext(".//title") == "高新院日报 · 2026年12月3日"
    assert [a.text_content() for a in daily.cssselect("p.signup a")] == ["订阅高新院日报"]
    assert "周报" not in (folder / "2026-12-03" / "index.html").read_text("utf-8")
    feed = parse_with_feedparser((folder / "atom.xml").read_bytes())
    assert sorted(e.title for e in feed.entries) == sorted(rows)


def test_a_traditional_reader_is_linked_to_the_page_in_traditional(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """`[digest] scripts` offers both: the archive is written in the other script too, under
    `zh-hant/digests/`, and each mail links to the page in its reader's script."""
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    port = free_port()
    archive_site(site, port)
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace("[digest]\n", '[digest]\nscripts = ["zh-Hans", "zh-Hant"]\n', 1), "utf-8")
    now = datetime.now(UTC)
    store = Store(site.store_url)
    try:
        store.save_subscribers([
            Subscriber("hant@example.com", "", (), SubscriberStatus.CONFIRMED, now, "cli", now, script="zh-Hant"),
        ])  # fmt: skip
    finally:
        store.close()
    result = site.cli("digest", "send")
    assert result.exit_code == 0, result.output
    links = {}
    for mail in mails(site):
        text_part, html_part = parts(mail)
        hrefs = {str(a.get("href")) for a in lxml_html.fromstring(html_part).iter("a")}
        (link,) = [h for h in hrefs if "/digests/" in h]
        assert link in text_part
        links[mail["To"].addresses[0].addr_spec] = link
    base = f"http://127.0.0.1:{port}"
    slug = links["all@example.com"].removeprefix(f"{base}/digests/").strip("/")
    assert links["policy@example.com"] == f"{base}/digests/{slug}/"
    assert links["hant@example.com"] == f"{base}/zh-hant/digests/{slug}/"
    hant = site.app().scripts.convert(TITLES[0], "zh-Hant")
    assert hant != TITLES[0]
    server = FeedServer(site, port)
    try:
        page = requests.get(links["hant@example.com"], timeout=10)
        assert page.status_code == 200, page.text
        tree = lxml_html.fromstring(page.content)
        assert tree.get("lang") == "zh-Hant" and hant in page.text and TITLES[0] not in page.text
        assert all(f"{base}/zh-hant/digests/" in str(a.get("href")) for a in tree.cssselect("footer a")[:2])
        feed = requests.get(f"{base}/zh-hant/digests/atom.xml", timeout=10)
        assert feed.status_code == 200
        own = parse_with_feedparser(requests.get(f"{base}/digests/atom.xml", timeout=10).content)
        other = parse_with_feedparser(feed.content)
        assert {e.id for e in own.entries}.isdisjoint(e.id for e in other.entries)
        assert other.entries[0].link == links["hant@example.com"]
    finally:
        server.stop()
