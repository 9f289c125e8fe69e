"""Feeds in a browser: each category's page (`<slug>/index.html`) with its latest articles and
its feeds' addresses, read back with lxml; index.html linking each page; the pages written
with their feeds and only when their bytes change; the feed server giving `/<slug>/` under a
strict Content-Security-Policy, checked in Debian's chromium at a phone's width."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import waitress
from lxml import html as lxml_html
from test_browser import CHROMIUM_ARGS, chromium_path
from test_smtp import free_port
from waitress_thread import ServerThread

from conftest import ROOT, Site
from feedcheck import parse_with_feedparser

ARTICLE_URL = "https://www.example.org/zcjd/2026/a.html"
ARTIFACTS = ROOT / "tests" / "artifacts" / "feed-pages"
GOLDEN = ROOT / "tests" / "golden" / "pages" / "category.html"


def with_articles(site: Site) -> None:
    # 01:00 in Shanghai is the day before in UTC: the page must show the site's day
    site.article("policy/a.md", "区域经济政策解读", date="2026-05-07 01:00", url=ARTICLE_URL,
                 summary="高新区发展的新政策。")  # fmt: skip
    site.article("policy/b.md", "较早的政策", date="2026-05-01 09:00")
    site.article("tech/c.md", "科技创新", date="2026-05-02 09:00")


def page(site: Site, path: str) -> Any:
    return lxml_html.fromstring((site.out / path).read_bytes())


def test_a_category_page_lists_its_latest_articles_and_its_feeds(site: Site) -> None:
    with_articles(site)
    site.build()
    doc = page(site, "policy/index.html")
    assert doc.get("lang") == "zh-CN"
    assert doc.findtext(".//h1") == "政策解读"
    items = doc.findall(".//ol[@class='items']/li")
    assert [li.find(".//h3").text_content() for li in items] == ["区域经济政策解读", "较早的政策"]  # newest first
    first = items[0]
    assert first.find(".//h3/a").get("href") == ARTICLE_URL
    assert first.find(".//time").text == "2026-05-07"
    assert first.find(".//time").get("datetime") == "2026-05-07T01:00:00+08:00"
    assert first.findtext(".//p") == "高新区发展的新政策。"
    assert items[1].find(".//h3/a") is None  # no URL, no link that leads nowhere

    feeds = [f"https://www.example.org/policy/{name}" for name in ("rss.xml", "atom.xml", "feed.json")]
    alternates = doc.findall(".//head/link[@rel='alternate']")
    assert [(a.get("type"), a.get("href")) for a in alternates] == list(
        zip(["application/rss+xml", "application/atom+xml", "application/feed+json"], feeds, strict=True)
    )
    assert [code.text for code in doc.findall(".//section[@class='subscribe']//code")] == feeds
    links = {a.get("href") for a in doc.iter("a")}
    assert set(feeds) <= links
    assert "https://www.example.org/subscribe" in links  # the newsletter's sign-up page
    assert "https://www.example.org/" in links  # back to every feed
    assert "复制" in doc.findtext(".//section[@class='subscribe']/p")  # the copy-into-your-reader hint
    # what the page lists is what the feed holds
    feed = parse_with_feedparser(site.feed("policy/atom.xml"))
    assert [e.title for e in feed.entries] == [li.find(".//h3").text_content() for li in items]


def test_golden_default_look_of_a_category_page(site: Site) -> None:
    """UPDATE_GOLDEN=1 rewrites tests/golden/pages/category.html after a deliberate change."""
    with_articles(site)
    site.build()
    actual = (site.out / "policy" / "index.html").read_text(encoding="utf-8")
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(actual, encoding="utf-8", newline="")
    assert actual == GOLDEN.read_text(encoding="utf-8"), "the category page differs from its golden file"


def test_an_empty_category_has_a_page_saying_so(site: Site) -> None:
    with_articles(site)
    site.build()
    doc = page(site, "gao-xin-yuan-xin-wen/index.html")
    assert doc.find(".//ol") is None and "暂无文章" in doc.text_content()


def test_index_links_each_category_page(site: Site) -> None:
    with_articles(site)
    site.build()
    doc = page(site, "index.html")
    named = {a.text: a.get("href") for a in doc.findall(".//td[@class='name']/a")}
    assert named == {
        "高新院新闻": "https://www.example.org/gao-xin-yuan-xin-wen/",
        "政策解读": "https://www.example.org/policy/",
        "科技创新": "https://www.example.org/tech/",
    }
    for url in named.values():
        assert (site.out / url.removeprefix("https://www.example.org/") / "index.html").is_file()


def test_pages_follow_their_feeds_and_an_unchanged_build_writes_nothing(site: Site) -> None:
    with_articles(site)
    site.build()
    before = site.mtimes()
    assert site.build().written_paths == [] and site.mtimes() == before
    (site.out / "tech" / "index.html").unlink()  # a missing page is written again, alone
    assert site.build().written_paths == ["tech/index.html"]
    site.article("policy/d.md", "新政策", date="2026-06-01 10:00")
    report = site.build()
    assert "policy/index.html" in report.written_paths and "tech/index.html" not in report.written_paths
    assert "新政策" in (site.out / "policy" / "index.html").read_text(encoding="utf-8")


def test_an_english_site_gets_english_words(site: Site) -> None:
    text = site.config.read_text(encoding="utf-8").replace('language = "zh-CN"', 'language = "en"')
    site.config.write_text(text, encoding="utf-8")
    with_articles(site)
    site.build()
    doc = page(site, "policy/index.html")
    assert doc.get("lang") == "en" and "Latest articles" in doc.text_content()


def test_check_reports_a_broken_category_page_override_with_file_and_line(site: Site) -> None:
    folder = site.root / "theme"
    folder.mkdir()
    (folder / "category.html.j2").write_text("<h1>{{ category.name }}</h1>\n<p>{{ no_such_thing.x }}</p>\n", "utf-8")
    site.append_config(f'[theme]\ntemplates = "{folder}"\n')
    result = site.cli("check")
    assert result.exit_code != 0
    assert "theme (category pages)" in result.output and "category.html.j2, line 2" in result.output


# --- the feed server --------------------------------------------------------------------------


@contextmanager
def serving(site: Site) -> Iterator[str]:
    """`publisher serve`'s app under waitress on a loopback port: its base URL."""
    from publisher.web import create_app

    app = site.app()
    port = free_port()
    served = ServerThread(waitress.create_server(create_app(app), host="127.0.0.1", port=port, threads=2), app.close)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        served.stop()


def test_the_feed_server_serves_a_category_page_under_a_strict_policy(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "feed-pages-test-key-0123456789")
    with_articles(site)
    site.build()
    with serving(site) as base:
        moved = requests.get(f"{base}/policy", allow_redirects=False, timeout=10)
        assert moved.status_code == 301 and moved.headers["Location"].endswith("/policy/")
        answer = requests.get(f"{base}/policy/", timeout=10)
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "text/html; charset=utf-8"
        assert answer.content == (site.out / "policy" / "index.html").read_bytes()
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        policy = dict(p.strip().split(" ", 1) for p in answer.headers["Content-Security-Policy"].split(";"))
        assert policy["default-src"] == "'none'" and "script-src" not in policy
        assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
        style = lxml_html.fromstring(answer.content).find(".//style").text.encode()
        digest = base64.b64encode(hashlib.sha256(style).digest()).decode()
        assert policy["style-src"].split() == ["'self'", f"'sha256-{digest}'"]  # the page's own style, by hash
        index = requests.get(f"{base}/", timeout=10)
        assert "'unsafe-inline'" not in index.headers["Content-Security-Policy"]
        # the feeds stay plain XML, no stylesheet: what a reader app expects
        feed = requests.get(f"{base}/policy/rss.xml", timeout=10)
        assert feed.headers["Content-Type"].startswith("application/rss+xml") and b"xml-stylesheet" not in feed.content
        assert "Content-Security-Policy" not in feed.headers


# --- in a browser -----------------------------------------------------------------------------


@pytest.fixture
def chromium() -> Iterator[Any]:
    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        except sync_api.Error as exc:
            pytest.skip(f"Playwright could not launch {executable}: {str(exc).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.parametrize("scripts", [False, True])
def test_a_category_page_in_chromium_has_no_policy_violation_and_fits_a_phone(
    site: Site, chromium: Any, monkeypatch: pytest.MonkeyPatch, scripts: bool
) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "feed-pages-test-key-0123456789")
    paths = ["/policy/", "/"]
    if scripts:  # the 简体/繁體 switch too
        text = site.config.read_text(encoding="utf-8")
        site.config.write_text(text.replace("max_items = 50\n", 'max_items = 50\nscripts = ["zh-Hant"]\n'), "utf-8")
        paths = ["/zh-hant/policy/", "/zh-hant/"]
    site.article("policy/long.md", "长标题" * 40, date="2026-05-08 09:00", url=ARTICLE_URL + "?" + "x" * 200)
    with_articles(site)
    site.build()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with serving(site) as base:
        context = chromium.new_context(viewport={"width": 400, "height": 800}, locale="zh-CN")
        browser_page = context.new_page()
        problems: list[str] = []

        def heard(message: Any) -> None:
            if message.type in ("error", "warning") and not message.location.get("url", "").endswith("favicon.ico"):
                problems.append(message.text)

        browser_page.on("console", heard)
        browser_page.on("pageerror", lambda e: problems.append(str(e)))
        for path in paths:
            browser_page.goto(base + path)
            browser_page.wait_for_load_state("load")
            # a style the policy refused would leave the page unstyled: the list loses its bullets only by CSS
            if path.endswith("/policy/"):
                assert browser_page.evaluate("getComputedStyle(document.querySelector('ol.items')).listStyleType")\
                    == "none"  # fmt: skip
            widths = browser_page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert widths[0] <= widths[1], f"{path} is {widths[0]} px wide on a {widths[1]} px screen"
            name = path.strip("/").replace("/", "-") or "index"
            browser_page.screenshot(path=str(ARTIFACTS / f"{name}-400.png"), full_page=True)
        assert problems == [], problems  # a Content-Security-Policy violation is logged as an error
        context.close()


def test_no_feed_carries_a_stylesheet(site: Site) -> None:
    with_articles(site)
    site.build()
    for path in Path(site.out).rglob("*.xml"):
        assert b"<?xml-stylesheet" not in path.read_bytes(), path
