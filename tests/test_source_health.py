"""Each source's and part's health, end to end on a loopback site: a category whose list page
404s is reported by `build` with its URL and hint while the others ingest, kept in the store,
shown by `publisher status` (exit 1) and `/healthz` (degraded, 200), and cleared once it reads.
The real `html` and `json` sources, with the validators and FailedItems the composition root
wires.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import HEALTH_HEADERS, HEALTH_TOKEN, Site, part_failures
from publisher.web import create_app

NEWS, POLICY, TECH = "高新院新闻", "政策解读", "科技创新"


class FixtureSite:
    """Three categories' list pages and their articles, and an upstream feed; `down` holds the
    paths answered 404, `broken` those answered 500."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.requests: list[str] = []
        self.down = {"/policy/list.html", "/news/2.html"}
        self.broken: set[str] = set()
        self.lists = {"/news/list.html": [1, 2], "/policy/list.html": [3], "/tech/list.html": [4]}
        server.expect_request("/robots.txt").respond_with_data("", status=404)
        server.expect_request(re.compile(r"/.*")).respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        path = request.path
        self.requests.append(path)
        if path in self.down:
            return Response("not here", status=404)
        if path in self.broken:
            return Response("oops", status=500)
        if path == "/feed.xml":
            item = (
                "<item><title>上游</title><link>https://other.example.org/1.html</link>"
                "<pubDate>Tue, 24 Nov 2026 08:00:00 +0800</pubDate><description>正文</description></item>"
            )
            feed = f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{item}</channel></rss>'
            return Response(feed, content_type="application/rss+xml")
        if path in self.lists:
            links = "".join(f'<a href="{n}.html">{n}</a>' for n in self.lists[path])
            return Response(f"<html><body>{links}</body></html>", content_type="text/html; charset=utf-8")
        number = path.rsplit("/", 1)[1].removesuffix(".html")
        page = (f'<html><body><h1>文章{number}</h1><div class="info">日期:2026-11-18</div>'
                f'<div class="content"><p>正文{number}。</p></div></body></html>')  # fmt: skip
        return Response(page, content_type="text/html; charset=utf-8")

    def url(self, path: str) -> str:
        return self.server.url_for(path)


@pytest.fixture
def fixture_site(site: Site, httpserver: HTTPServer) -> FixtureSite:
    """The site's config reads the loopback site through an `html` source named "site" and a
    `feed` source named "upstream"."""
    fixture = FixtureSite(httpserver)
    pages = ", ".join(
        f'"{category}" = ["{fixture.url(path)}"]'
        for category, path in ((NEWS, "/news/list.html"), (POLICY, "/policy/list.html"), (TECH, "/tech/list.html"))
    )
    site.append_config(
        f"""
[[sources]]
type = "html"
name = "site"
allow_private = true  # the test server is on loopback
delay = 0
[sources.list]
pages = {{ {pages} }}
links = "a"
[sources.article]
title = "h1"
body = "div.content"
meta = "div.info"

[[sources]]
type = "feed"
name = "upstream"
allow_private = true
delay = 0
url = "{fixture.url("/feed.xml")}"
category = "tech"
"""
    )
    return fixture


def status_json(site: Site) -> tuple[int, list[dict[str, Any]]]:
    result = site.cli("status", "--format", "json")
    return result.exit_code, json.loads(result.stdout)


def test_a_failing_category_is_reported_kept_and_shown_until_it_reads(site: Site, fixture_site: FixtureSite) -> None:
    policy_list = fixture_site.url("/policy/list.html")
    built = site.cli("build")
    assert built.exit_code == 1, built.output
    said = " ".join(built.stderr.split())
    assert f"part failed: site ({POLICY}) {policy_list}: HTTP 404 NOT FOUND" in said, said
    assert "hint: check the URL" in said and "source failed" not in said
    assert "`publisher status` shows each part" in said
    assert site.feed("tech/rss.xml").count(b"<item>") == 2  # tech's article and the feed's: the others ingested

    code, rows = status_json(site)
    assert code == 1
    by_part = {(row["source"], row["part"]): row for row in rows}
    assert list(by_part) == [  # as configured, each source's parts by name
        ("content", ""), ("site", ""), ("site", POLICY), ("site", TECH), ("site", NEWS), ("upstream", ""),
    ]  # fmt: skip
    failed = by_part[("site", POLICY)]
    assert (failed["state"], failed["last_success"], failed["url"]) == ("failed", None, policy_list)
    assert failed["error"] == f"{policy_list}: HTTP 404 NOT FOUND" and failed["hint"].startswith("check the URL")
    assert failed["last_error_at"].endswith("+08:00") and failed["failed_items"] is None  # the site's zone
    assert by_part[("site", "")]["failed_items"] == 1  # /news/2.html, waiting for its retry
    assert {row["state"] for key, row in by_part.items() if key != ("site", POLICY)} == {"ok"}
    assert all(row["last_success"] for key, row in by_part.items() if key != ("site", POLICY))

    table = site.cli("status")
    assert table.exit_code == 1
    lines = table.stdout.splitlines()
    assert lines[0].split()[:5] == ["source", "part", "state", "last", "success"] and "(Asia/Shanghai)" in lines[0]
    [policy_line] = [line for line in lines if POLICY in line]
    assert "failed" in policy_line and "never" in policy_line and policy_list in policy_line
    assert any(line.startswith("site") and "(the source)" in line for line in lines)
    assert lines[-1] == "3 source(s); 1 part(s) failed at their last run; 1 failed item(s) waiting"

    # The category's page is back: it reads. The article that 404ed waits an hour (a 404 seldom
    # heals sooner): the next runs do not ask for it.
    fixture_site.down.discard("/policy/list.html")
    fixture_site.requests.clear()
    again = site.cli("build")
    assert again.exit_code == 0, again.output
    assert "/policy/3.html" in fixture_site.requests and "/news/2.html" not in fixture_site.requests
    fixture_site.requests.clear()
    assert site.cli("build").exit_code == 0
    assert "/news/list.html" in fixture_site.requests and "/news/2.html" not in fixture_site.requests
    code, rows = status_json(site)
    assert code == 0
    policy = next(row for row in rows if row["part"] == POLICY)
    assert policy["state"] == "ok" and policy["last_success"] and policy["url"] == policy_list  # the last error stays
    assert site.cli("status").stdout.splitlines()[-1].startswith("3 source(s); 0 part(s) failed")


def test_a_whole_source_failure_is_kept_with_its_url_and_a_removed_source_forgotten(
    site: Site, fixture_site: FixtureSite
) -> None:
    fixture_site.down.clear()
    assert site.cli("build").exit_code == 0
    fixture_site.broken.add("/feed.xml")
    failed = site.cli("build")
    assert failed.exit_code == 1 and "source failed:" in failed.stderr
    code, rows = status_json(site)
    upstream = next(row for row in rows if row["source"] == "upstream")
    assert code == 1 and upstream["state"] == "failed" and upstream["url"] == fixture_site.url("/feed.xml")
    assert "HTTP 500" in upstream["error"] and upstream["last_success"]  # it read before
    # Taken out of the configuration: its health goes with the next ingest.
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text[: text.index('[[sources]]\ntype = "feed"')], encoding="utf-8")
    assert site.cli("build").exit_code == 0
    app = site.app()
    try:
        assert {part.source for part in app.store.source_health()} == {"site", "content"}
    finally:
        app.close()
    code, rows = status_json(site)
    assert code == 0 and {row["source"] for row in rows} == {"content", "site"}


def test_healthz_is_degraded_while_a_part_fails_and_tells_why_only_with_the_token(
    site: Site, fixture_site: FixtureSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLISHER_HEALTH_TOKEN", HEALTH_TOKEN)
    assert site.cli("build").exit_code == 1
    app = site.app()
    try:
        client = create_app(app).test_client()
        public = client.get("/healthz")
        detailed = client.get("/healthz", headers=HEALTH_HEADERS)
    finally:
        app.close()
    assert public.status_code == 200 and detailed.status_code == 200  # the site's 404 is not our outage
    body = public.get_json()
    assert body["status"] == "degraded" and (body["database"], body["output"]) == ("ok", "ok")
    assert body["sources"]["site"]["status"] == "degraded" and body["sources"]["upstream"]["status"] == "ok"
    assert set(body["sources"]["site"]) == {"status", "last_success", "last_error_at"}
    assert body["sources"]["site"]["last_error_at"] and body["sources"]["site"]["last_success"]
    assert "404" not in public.text and "/policy/" not in public.text and POLICY not in public.text

    details = detailed.get_json()
    assert details["status"] == "degraded" and details["last_ingest"]["failed_parts"] == 1
    site_health = details["sources"]["site"]
    assert site_health["failed_items"] == 1 and site_health["last_error"] is None  # the source as a whole read
    error = site_health["parts"][POLICY]["last_error"]
    assert site_health["parts"][POLICY]["status"] == "failed" and error["runs_failed"] == 1
    assert error["url"] == fixture_site.url("/policy/list.html") and "HTTP 404" in error["error"]
    assert error["hint"].startswith("check the URL")
    assert site_health["parts"][NEWS] == {
        "status": "ok", "last_success": site_health["last_success"], "items": 2, "last_error": None,
    }  # fmt: skip

    fixture_site.down.discard("/policy/list.html")
    assert site.cli("build").exit_code == 0
    app = site.app()
    try:
        healthy = create_app(app).test_client().get("/healthz")
    finally:
        app.close()
    assert healthy.status_code == 200 and healthy.get_json()["status"] == "ok"


def test_health_writes_never_fail_an_ingest(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
    site.build()
    site.sql("DROP TABLE source_health")  # every health write now fails
    site.article("tech/b.md", "又一条", date="2026-11-19 09:00")
    with caplog.at_level(logging.WARNING):
        report = site.build()
    assert report.new == 1 and not report.failed_sources
    assert "source 'content': could not record its health" in caplog.text
    assert b"\xe5\x8f\x88\xe4\xb8\x80\xe6\x9d\xa1" in site.feed("tech/rss.xml")  # 又一条 is published


def test_a_json_sources_failing_list_url_is_a_failed_part(site: Site, httpserver: HTTPServer) -> None:
    """The real `json` source (no stand-in): its list URL whose first page answers 500 is a
    failed part with the page's URL, the other source ingests, and reading it again clears it."""
    from test_web_sources import api_items, cms_toml

    broken = {"yes": True}

    def api(request: Request) -> Response:
        if broken["yes"] and request.args.get("page") == "1":
            return Response("down for maintenance", status=500)
        numbers = [2, 1] if request.args.get("page") == "1" else []
        return Response(json.dumps({"items": api_items(numbers)}), content_type="application/json")

    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/api").respond_with_handler(api)
    template = httpserver.url_for("/api") + "?page={page}"
    site.append_config("\n" + cms_toml(template) + "\n")
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
    built = site.cli("build")
    page_one = template.replace("{page}", "1")
    assert built.exit_code == 1 and f"part failed: cms ({template}) {page_one}: HTTP 500" in built.stderr, built.output
    code, rows = status_json(site)
    cms = {row["part"]: row for row in rows if row["source"] == "cms"}
    assert code == 1 and cms[""]["state"] == "ok" and cms[template]["state"] == "failed"
    assert cms[template]["url"] == template.replace("{page}", "1") and "HTTP 500" in cms[template]["error"]
    assert all(row["state"] == "ok" for row in rows if row["source"] == "content")

    broken["yes"] = False
    assert site.cli("build").exit_code == 0
    code, rows = status_json(site)
    cms = {row["part"]: row for row in rows if row["source"] == "cms"}
    assert code == 0 and cms[template]["state"] == "ok" and cms[template]["last_success"]
    app = site.app()
    try:
        [part] = [p for s in app.source_health() if s.name == "cms" for p in s.parts if p.scope == template]
        assert part.items == 2 and part.failures == 0 and part.last_error_url == template.replace("{page}", "1")
    finally:
        app.close()


def failed_json(site: Site) -> list[dict[str, Any]]:
    result = site.cli("status", "--failed", "--format", "json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_failed_items_are_listed_retried_on_demand_and_forgotten_once_no_list_shows_them(
    site: Site, fixture_site: FixtureSite
) -> None:
    """`publisher status --failed` lists each failed item (source, URL, error, attempts, next
    try); `publisher ingest --retry-failed` asks for every one now, walking the list pages in
    full, and forgets those no list page shows any more (nothing else would ever retry them)."""
    fixture_site.down.discard("/policy/list.html")
    assert site.cli("build").exit_code == 0
    [row] = failed_json(site)
    news_2 = fixture_site.url("/news/2.html")
    assert (row["source"], row["what"], row["url"], row["attempts"]) == ("site", "article", news_2, 1)
    assert "HTTP 404" in row["error"] and row["next_try"] > row["last_failed"]  # a 404 waits an hour
    table = site.cli("status", "--failed")
    assert news_2 in table.stdout and table.stdout.splitlines()[-1] == "1 failed item(s) waiting"

    fixture_site.requests.clear()
    assert site.cli("ingest").exit_code == 0
    assert "/news/2.html" not in fixture_site.requests  # within its hour
    retried = site.cli("ingest", "--retry-failed")
    assert retried.exit_code == 0, retried.output
    assert "/news/2.html" in fixture_site.requests and "/news/list.html" in fixture_site.requests
    [row] = failed_json(site)
    assert row["attempts"] == 2

    fixture_site.lists["/news/list.html"] = [1]  # 2 dropped off the list: no run would ask for it again
    fixture_site.requests.clear()
    assert site.cli("ingest", "--retry-failed").exit_code == 0
    assert "/news/2.html" not in fixture_site.requests and failed_json(site) == []  # forgotten
    code, rows = status_json(site)
    assert code == 0 and next(r for r in rows if (r["source"], r["part"]) == ("site", ""))["failed_items"] == 0


def test_check_and_build_word_a_failing_json_list_url_and_wordpress_page_the_same_way(
    site: Site, httpserver: HTTPServer
) -> None:
    from test_web_sources import cms_toml

    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/api").respond_with_data("down for maintenance", status=500)
    httpserver.expect_request("/wp-json/wp/v2/posts").respond_with_json(
        {"code": "rest_no_route", "message": "没有路由"}, status=404
    )
    template = httpserver.url_for("/api") + "?page={page}"
    wordpress = (
        f'\n[[sources]]\ntype = "wordpress"\nallow_private = true\nname = "blog"\nurl = "{httpserver.url_for("/")}"\n'
        'category = "tech"\ndelay = 0\n'
    )
    site.append_config("\n" + cms_toml(template) + "\n" + wordpress)

    checked, built = site.cli("check"), site.cli("build")
    assert checked.exit_code == built.exit_code == 1
    said = part_failures(built.stderr)
    assert len(said) == 2 and said == part_failures(checked.stderr), (checked.stderr, built.stderr)
    assert said[0].startswith(f"part failed: cms ({template}) {template.replace('{page}', '1')}: HTTP 500")
    assert said[1].startswith("part failed: blog ") and "没有路由" in said[1]
    assert "source failed" not in checked.stderr


def test_failed_walks_wait_for_the_next_run_and_are_forgotten_once_their_url_left_the_config(
    site: Site, httpserver: HTTPServer
) -> None:
    """A json or wordpress walk that failed past page 1 resumes at the next run (`status
    --failed` says so, not a backoff time) from the same first page; once the source's URL
    changes (the site moved to https, say), its run forgets it, or it would wait for good."""
    from test_polite_polling import Api, json_toml, wordpress_toml

    api = Api(httpserver, cap=1)
    api.broken = {"/api/news?page=2", "wp page 2"}
    news, blog = json_toml(httpserver, "news", NEWS), wordpress_toml(httpserver)
    site.append_config(news + blog)
    assert site.cli("build").exit_code == 1
    walks = sorted((row["source"], row["what"], row["next_try"]) for row in failed_json(site))
    assert walks == [("blog", "list page", "next run"), ("news", "list page", "next run")]  # not a backoff time
    assert site.cli("status", "--failed").stdout.count("next run") == 2

    moved = blog.replace(httpserver.url_for("/"), httpserver.url_for("/").replace("localhost", "127.0.0.1"))
    assert moved != blog
    site.write_config(news.replace("/api/news", "/api/policy") + moved)
    api.broken.clear()
    rebuilt = site.cli("build")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert failed_json(site) == []
    code, rows = status_json(site)
    assert code == 0 and all(row["failed_items"] in (0, None) for row in rows), rows
