"""Web sources against a real HTTP server on loopback: charsets, politeness, conditional GETs,
and the `feed` source end to end (ingest twice: the second run costs one 304)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import Site
from feedcheck import parse_with_feedparser
from publisher.errors import SourceError
from publisher.model import ScopeRead
from publisher.sources.addresses import AddressGuard
from publisher.sources.charsets import decode_html
from publisher.sources.http import Fetcher, Validators

# The test servers are on loopback, which web sources refuse unless told (`allow_private`).
LOOPBACK = AddressGuard(allow_private=True)
TEXT = "高新區(qū)新聞：院長(zhǎng)出席科技創新大會"


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (f"<html><head></head><body>{TEXT}</body></html>".encode("gbk"), "text/html"),  # nothing declared
        (f"<html><body>{TEXT}</body></html>".encode("gbk"), "text/html; charset=utf-8"),  # header wrong
        (f'<meta charset="gbk"><p>{TEXT}</p>'.encode(), "text/html"),  # meta wrong: it is UTF-8
        (f'<meta http-equiv="Content-Type" content="text/html; charset=gb2312"><p>{TEXT}</p>'.encode("gb18030"), ""),
        (b"\xef\xbb\xbf" + TEXT.encode(), "text/html; charset=gbk"),  # a BOM decides
        (f'<meta charset="gb2312"><p>{TEXT}</p>'.encode("gb18030"), "text/html; charset=ISO-8859-1"),  # default
    ],
)
def test_chinese_pages_decode_whatever_they_declare(data: bytes, content_type: str) -> None:
    assert TEXT in decode_html(data, content_type)


def feed_toml(url: str, extra: str = "") -> str:
    """A `feed` source in the tech category, without politeness delays."""
    return f'[[sources]]\ntype = "feed"\nallow_private = true\nurl = "{url}"\ncategory = "tech"\ndelay = 0\n{extra}'


def cms_toml(url: str) -> str:
    """A `json` source named cms, reading the fields `api_items` writes."""
    return (
        f'[[sources]]\ntype = "json"\nallow_private = true\nname = "cms"\nurl = "{url}"\ncategory = "policy"\n'
        "delay = 0\n"
        '[sources.fields]\nlist = "items"\ntitle = "headline"\ndate = "published_at"\nbody = "html"'
    )


def memory_validators() -> Validators:
    kept: dict[str, Mapping[str, str]] = {}
    return Validators(lambda url: kept.get(url, {}), kept.update)


def test_conditional_get_retries_politeness_and_limits(httpserver: HTTPServer) -> None:
    seen: list[dict[str, str]] = []

    def page(request: Request) -> Response:
        seen.append(dict(request.headers))
        if request.headers.get("If-None-Match") == '"v1"':
            return Response(status=304)
        return Response("<p>正文</p>", headers={"ETag": '"v1"', "Content-Type": "text/html; charset=utf-8"})

    httpserver.expect_request("/robots.txt").respond_with_data("User-agent: *\nDisallow: /private/\n")
    httpserver.expect_request("/news/1.html").respond_with_handler(page)
    httpserver.expect_oneshot_request("/flaky").respond_with_data("busy", status=503)  # once, then:
    httpserver.expect_request("/flaky").respond_with_data("ok")
    httpserver.expect_request("/big").respond_with_data(b"x" * 5000)
    httpserver.expect_request("/gone").respond_with_data("no", status=404)
    waits: list[float] = []
    fetcher = Fetcher(
        "publisher/test (+https://www.example.org)", memory_validators(), delay=2.0, sleep=waits.append, guard=LOOPBACK
    )
    first = fetcher.get(httpserver.url_for("/news/1.html"))
    assert first.status == 200 and first.text() == "<p>正文</p>"
    fetcher.commit()  # as ingest does once the page is stored
    again = fetcher.get(httpserver.url_for("/news/1.html"))
    assert again.not_modified and seen[-1]["If-None-Match"] == '"v1"'
    assert seen[0]["User-Agent"].startswith("publisher/")
    # robots.txt, then the page 2 s later, then again 2 s after that (the sleeps are not real)
    assert [round(w) for w in waits[:2]] == [2, 4]
    assert fetcher.get(httpserver.url_for("/flaky")).content == b"ok"  # a 503 is retried
    with pytest.raises(SourceError, match="robots.txt"):
        fetcher.get(httpserver.url_for("/private/x.html"))
    with pytest.raises(SourceError, match="HTTP 404") as gone:
        fetcher.get(httpserver.url_for("/gone"))
    assert "check the URL" in gone.value.hint
    small = Fetcher("publisher/test", None, delay=0, max_bytes=1000, guard=LOOPBACK)
    with pytest.raises(SourceError, match="limit"):
        small.get(httpserver.url_for("/big"))


def test_validators_are_kept_only_after_commit(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/feed.xml").respond_with_data("x", headers={"ETag": '"e"'})
    validators = memory_validators()
    fetcher = Fetcher("publisher/test", validators, delay=0, guard=LOOPBACK)
    fetcher.get(httpserver.url_for("/feed.xml"))
    assert validators.get(httpserver.url_for("/feed.xml")) == {}  # the run did not store anything yet
    fetcher.commit()
    assert validators.get(httpserver.url_for("/feed.xml")) == {"ETag": '"e"'}


UPSTREAM = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>上游</title><link>https://other.example.org/</link><description>d</description>
{items}
</channel></rss>"""

ITEM = """<item><title>{title}</title><link>https://other.example.org/{n}.html</link>
<guid>https://other.example.org/{n}.html</guid><pubDate>Tue, 24 Nov 2026 08:00:00 +0800</pubDate>
<description><![CDATA[<p>{body}</p><script>alert(1)</script><a href="/rel/{n}">相关</a>]]></description></item>"""


def upstream(*numbers: int) -> str:
    items = "".join(ITEM.format(n=n, title=f"產業研究(yán jiū)第{n}期", body=f"正文{n}") for n in numbers)
    return UPSTREAM.format(items=items)


def test_the_feed_source_end_to_end(site: Site, httpserver: HTTPServer) -> None:
    calls: list[str | None] = []
    body = {"xml": upstream(1, 2)}

    def feed(request: Request) -> Response:
        calls.append(request.headers.get("If-None-Match"))
        etag = f'"{hash(body["xml"])}"'
        if request.headers.get("If-None-Match") == etag:
            return Response(status=304)
        return Response(body["xml"], headers={"ETag": etag, "Content-Type": "application/rss+xml"})

    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/feed.xml").respond_with_handler(feed)
    site.append_config(
        f"""
[[sources]]
type = "feed"
allow_private = true  # the test server is on loopback
url = "{httpserver.url_for("/feed.xml")}"
name = "other"
category = "tech"
delay = 0
"""
    )
    first = site.build()
    assert first.new == 2 and not first.failed_sources
    tech = parse_with_feedparser(site.feed("tech/rss.xml"))
    titles = [e.title for e in tech.entries]
    assert sorted(titles) == ["产业研究第1期", "产业研究第2期"]  # glosses gone, t2s applied
    html = tech.entries[0].content[0].value
    assert "<script" not in html and "https://other.example.org/rel/" in html  # cleaned, made absolute

    again = site.build()
    assert calls[-1] is not None and again.new == 0 and again.changed == 0  # one 304, nothing read

    body["xml"] = upstream(2, 3)  # item 1 left the feed's window, item 3 arrived
    third = site.build()
    assert third.new == 1 and third.withdrawn == 0  # leaving a feed is not being deleted

    body["xml"] = "<html>maintenance</html>"
    broken = site.build()
    assert broken.failed_sources and "not an RSS or Atom feed" in broken.failed_sources[0]
    assert len(parse_with_feedparser(site.feed("tech/rss.xml")).entries) == 3  # the last good feed stays


def test_check_reports_what_a_web_source_shows(site: Site, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/feed.xml").respond_with_data(upstream(7, 8), content_type="application/rss+xml")
    url = httpserver.url_for("/feed.xml")
    site.append_config("\n" + feed_toml(url))
    result = site.cli("check")
    assert result.exit_code == 0, result.output
    assert "2 item(s)" in result.output and "產業研究(yán jiū)第7期" in result.output
    httpserver.clear()
    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/feed.xml").respond_with_data("gone", status=404)
    failed = site.cli("check")
    assert failed.exit_code == 1 and "HTTP 404" in failed.output


LIST = """<html><head><meta http-equiv="Content-Type" content="text/html; charset=gb2312">
<title>高新院新闻</title></head><body><ul class="list">{items}</ul>{next}</body></html>"""

ARTICLE = """<html><head><meta charset="gb2312"><title>{title}</title></head><body>
<div class="nav"><a href="/">首页</a> - <a href="/news/">高新院新闻</a></div>
<h1>{title}</h1>
<div class="info">來源:高新院 achie.org 日期:2023-12-{day:02d} 點擊:次</div>
<div class="content"><p>高新區(qū)第{n}期：院長(zhǎng)出席會議。</p><img src="../img/{n}.jpg"></div>
<div class="related">相關文章推薦: ...</div>
</body></html>"""


class FixtureSite:
    """A GBK news site: two list pages (the second by a next link) and their article pages."""

    def __init__(self, server: HTTPServer, numbers: list[int]) -> None:
        self.server, self.requests = server, []
        self.numbers = numbers
        self.missing: set[int] = set()  # answered 404
        self.blank: set[int] = set()  # answered 200 with nothing
        server.expect_request("/robots.txt").respond_with_data("User-agent: *\nAllow: /\n")
        server.expect_request(re.compile(r"/news/.*")).respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        self.requests.append(request.path)
        path = request.path
        if path in ("/news/list_1.html", "/news/list_2.html"):
            page = 1 if path.endswith("1.html") else 2
            chunk = self.numbers[(page - 1) * 3 : page * 3]
            items = "".join(f'<li><a href="/news/{n}.html">文章{n}</a></li>' for n in chunk)
            more = '<a class="next" href="list_2.html">下一页</a>' if page == 1 and len(self.numbers) > 3 else ""
            return Response(LIST.format(items=items, next=more).encode("gb18030"), content_type="text/html")
        number = int(path.rsplit("/", 1)[1].split(".")[0])
        if number in self.missing:
            return Response("not here", status=404)
        if number in self.blank:
            return Response(b"", content_type="text/html")
        html = ARTICLE.format(title=f"高新院動態第{number}期", n=number, day=number)
        # No charset in the header: the page's own meta (gb2312) and the bytes (GB18030) decide.
        return Response(html.encode("gb18030"), content_type="text/html")


def html_source(site: Site, server: HTTPServer, body: bool = True) -> None:
    body_line = 'body = "div.content"\n' if body else ""
    site.append_config(
        f"""
[[sources]]
type = "html"
allow_private = true  # the test server is on loopback
name = "site"
delay = 0
[sources.list]
pages = {{ "高新院新闻" = ["{server.url_for("/news/list_1.html")}"] }}
links = "ul.list li a"
next = "a.next"
max_pages = 5
[sources.article]
title = "h1"
{body_line}meta = "div.info"
date = '日期[:：]\\s*(\\d{{4}}-\\d{{2}}-\\d{{2}})'
source = '來源[:：]\\s*(\\S+)'
"""
    )


def test_the_html_source_reads_a_gbk_site_incrementally(site: Site, httpserver: HTTPServer) -> None:
    fixture = FixtureSite(httpserver, [5, 4, 3, 2, 1])
    html_source(site, httpserver)
    first = site.build()
    assert first.new == 5 and not first.failed_sources and not first.problems, first.problems
    feed = parse_with_feedparser(site.feed("gao-xin-yuan-xin-wen/rss.xml"))
    titles = [e.title for e in feed.entries]
    assert titles[:5] == [f"高新院动态第{n}期" for n in (5, 4, 3, 2, 1)]  # t2s, newest first by date
    entry = feed.entries[0]
    content = entry.content[0].value
    assert "高新区第5期：院长出席会议。" in content and "相关文章" not in content and "首页" not in content
    assert f"{httpserver.url_for('/img/5.jpg')}" in content  # relative image made absolute
    assert entry.author == "高新院" and entry.published.startswith("Tue, 05 Dec 2023")

    fixture.requests.clear()
    fixture.numbers.insert(0, 6)  # one new article on top of the list
    second = site.build()
    assert second.new == 1 and second.changed == 0
    # List page 1 had one new link (read), so page 2 was looked at; it had none: the walk stopped.
    assert fixture.requests == ["/news/list_1.html", "/news/6.html", "/news/list_2.html"]
    assert "/news/5.html" not in fixture.requests  # stored articles are never fetched again


def test_the_html_source_finds_the_body_without_a_selector(site: Site, httpserver: HTTPServer) -> None:
    FixtureSite(httpserver, [1])
    html_source(site, httpserver, body=False)
    report = site.build()
    assert report.new == 1, report.problems
    content = parse_with_feedparser(site.feed("gao-xin-yuan-xin-wen/rss.xml")).entries[0].content[0].value
    assert "院长出席会议" in content


def test_a_wrong_selector_is_reported_with_the_url(site: Site, httpserver: HTTPServer) -> None:
    FixtureSite(httpserver, [1, 2])
    html_source(site, httpserver)
    text = site.config.read_text(encoding="utf-8").replace('links = "ul.list li a"', 'links = "div.nothing a"')
    site.config.write_text(text, encoding="utf-8")
    report = site.build()
    # the category failed (named, with its URL), not the source: no whole-source error
    [failed] = report.failed_parts
    assert not report.failed_sources
    assert failed.startswith("site (高新院新闻) http://") and "/news/list_1.html: no article links" in failed
    assert report.new == 0
    [scope] = scope_reads(site, "site")
    assert scope.scope == "高新院新闻" and scope.url.endswith("/news/list_1.html")
    assert scope.error is not None and "div.nothing a" in scope.error and "[sources.list] links" in scope.hint


def scope_reads(site: Site, name: str) -> list[ScopeRead]:
    """What the source `name` says of each of its parts, read as a first ingest would."""
    app = site.app()
    try:
        [source] = [s for s in app.sources if s.name == name]
        return [r for r in source.fetch({}) if isinstance(r, ScopeRead)]
    finally:
        app.close()


def api_items(numbers: list[int]) -> list[dict[str, object]]:
    return [
        {
            "id": n,
            "headline": f"政策解讀第{n}號",
            "published_at": f"2026-11-{10 + n:02d}T09:00:00",
            "html": f"<p>正文{n}</p><script>x()</script>",
            "channel": {"slug": "policy"},
            "link": f"https://cms.example.org/a/{n}",
            "writer": {"name": "编辑部"},
        }  # fmt: skip
        for n in numbers
    ]


def test_the_json_source_pages_and_stops_when_nothing_is_new(site: Site, httpserver: HTTPServer) -> None:
    numbers = [6, 5, 4, 3, 2, 1]
    asked: list[str] = []

    def api(request: Request) -> Response:
        page = int(request.args.get("page", "1"))
        asked.append(f"page {page}")
        chunk = numbers[(page - 1) * 3 : page * 3]
        body = {"data": {"items": api_items(chunk), "total": len(numbers)}}
        return Response(
            json.dumps(body, ensure_ascii=False).encode("gbk"), content_type="application/json; charset=gbk"
        )

    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/api/articles").respond_with_handler(api)
    site.append_config(
        f"""
[[sources]]
type = "json"
allow_private = true  # the test server is on loopback
name = "cms"
url = "{httpserver.url_for("/api/articles")}?page={{page}}"
category = "tech"
delay = 0
[sources.fields]
list = "data.items"
title = "headline"
date = "published_at"
body = "html"
url = "link"
category = "channel.slug"
author = "writer.name"
[sources.paging]
kind = "page"
max_pages = 5
"""
    )
    first = site.build()
    assert first.new == 6 and not first.failed_sources, first.problems
    assert asked == ["page 1", "page 2", "page 3"]  # page 3 came back empty: the end
    policy = parse_with_feedparser(site.feed("policy/rss.xml"))
    newest = policy.entries[0]
    assert newest.title == "政策解读第6号" and newest.link == "https://cms.example.org/a/6"
    assert newest.author == "编辑部" and "<script" not in newest.content[0].value
    assert newest.published == "Mon, 16 Nov 2026 09:00:00 +0800"  # no zone in the API: the site's

    asked.clear()
    numbers.insert(0, 7)
    second = site.build()
    assert second.new == 1 and asked == ["page 1", "page 2"]  # page 2 had nothing new: stop


def test_a_json_answer_of_the_wrong_shape_is_reported(site: Site, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/api").respond_with_json({"results": []})
    url = httpserver.url_for("/api")
    site.append_config(f'\n[[sources]]\ntype = "json"\nallow_private = true\nurl = "{url}"\ncategory = "tech"\n'
                       'delay = 0\n[sources.fields]\nlist = "data.items"\n'
                       '[sources.paging]\nkind = "none"\n')  # fmt: skip
    report = site.build()
    assert report.failed_parts and "data.items" in report.failed_parts[0] and not report.failed_sources


def wp_post(n: int, wp_category: str, modified: str) -> dict[str, object]:
    """A post as /wp-json/wp/v2/posts?_embed=1 returns it (the fields we read, and some we don't)."""
    return {
        "id": n,
        "date": f"2026-11-{10 + n:02d}T17:00:00",
        "date_gmt": f"2026-11-{10 + n:02d}T09:00:00",
        "modified_gmt": modified,
        "link": f"https://blog.example.org/?p={n}",
        "title": {"rendered": f"政策&#8220;解读&#8221;第{n}篇"},
        "content": {"rendered": f"<p>正文{n}</p><script>x()</script>", "protected": False},
        "excerpt": {"rendered": "<p>摘要</p>"},
        "_embedded": {
            "author": [{"id": 1, "name": "编辑部"}],
            "wp:featuredmedia": [{"source_url": f"https://blog.example.org/{n}.jpg"}],
            "wp:term": [[{"taxonomy": "category", "slug": wp_category, "name": "x"}], [{"taxonomy": "post_tag"}]],
        },
    }


def test_the_wordpress_source(site: Site, httpserver: HTTPServer) -> None:
    posts = [wp_post(3, "zhengce", "2026-11-20T01:00:00"), wp_post(2, "tech", "2026-11-19T01:00:00"),
             wp_post(1, "unmapped", "2026-11-18T01:00:00")]  # fmt: skip
    queries: list[dict[str, str]] = []

    def api(request: Request) -> Response:
        query = dict(request.args)
        queries.append(query)
        assert query["_embed"] == "1" and query["orderby"] == "modified" and query["order"] == "desc"
        after = query.get("modified_after", "")
        chosen = [p for p in posts if str(p["modified_gmt"]) > after]
        page, per = int(query["page"]), int(query["per_page"])
        chunk = chosen[(page - 1) * per : page * per]
        pages = max(1, -(-len(chosen) // per))
        if page > pages:
            return Response(json.dumps({"code": "rest_post_invalid_page_number"}), status=400)
        return Response(json.dumps(chunk), content_type="application/json", headers={"X-WP-TotalPages": str(pages)})

    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/wp-json/wp/v2/posts").respond_with_handler(api)
    site.append_config(
        f"""
[[sources]]
type = "wordpress"
allow_private = true  # the test server is on loopback
url = "{httpserver.url_for("/")}"
categories = {{ "zhengce" = "政策解读" }}
category = "高新院新闻"
delay = 0
"""
    )
    first = site.build()
    assert first.new == 3 and not first.failed_sources, first.problems
    policy = parse_with_feedparser(site.feed("policy/rss.xml")).entries
    assert [e.title for e in policy] == ["政策“解读”第3篇"]  # by the table: zhengce -> 政策解读
    assert [e.title for e in parse_with_feedparser(site.feed("tech/rss.xml")).entries] == [
        "政策“解读”第2篇"
    ]  # same slug
    news = parse_with_feedparser(site.feed("gao-xin-yuan-xin-wen/rss.xml")).entries
    assert [e.title for e in news] == ["政策“解读”第1篇"]  # unmapped: the source's category
    assert policy[0].author == "编辑部" and "<script" not in policy[0].content[0].value

    queries.clear()
    posts.insert(0, wp_post(4, "tech", "2026-11-21T01:00:00"))
    second = site.build()
    # the newest stored modification, a day earlier (WordPress compares it with its local time)
    assert second.new == 1 and second.changed == 0 and queries[0]["modified_after"] == "2026-11-19T01:00:00"


class AllKinds:
    """One loopback server with all four kinds of web source, and switches to break each."""

    def __init__(self, server: HTTPServer, site: Site) -> None:
        self.server, self.site = server, site
        self.html = FixtureSite(server, [3, 2, 1])
        self.requests: list[str] = []
        self.fault: set[str] = set()
        self.feed_xml = upstream(1, 2)
        server.expect_request("/feed.xml").respond_with_handler(self.feed)
        server.expect_request("/api").respond_with_handler(self.api)
        server.expect_request("/wp-json/wp/v2/posts").respond_with_handler(self.wordpress)
        html_source(site, server)
        site.append_config(
            f"""
{feed_toml(server.url_for("/feed.xml"), "timeout = 0.5")}
{cms_toml(server.url_for("/api") + "?page={page}")}
[[sources]]
type = "wordpress"
allow_private = true  # the test server is on loopback
name = "blog"
url = "{server.url_for("/")}"
category = "tech"
delay = 0
"""
        )

    def feed(self, request: Request) -> Response:
        self.requests.append("feed")
        if "timeout" in self.fault:
            import time

            time.sleep(1.0)  # longer than the source's timeout, on every retry
        if "500" in self.fault:
            return Response("boom", status=500)
        etag = f'"{hash(self.feed_xml)}"'
        if request.headers.get("If-None-Match") == etag:
            return Response(status=304)
        return Response(self.feed_xml, headers={"ETag": etag, "Content-Type": "application/rss+xml"})

    def api(self, request: Request) -> Response:
        self.requests.append(f"api page {request.args['page']}")
        if "json" in self.fault:
            return Response("{not json", content_type="application/json")
        items = api_items([12, 11]) if request.args["page"] == "1" else []
        return Response(json.dumps({"items": items}), content_type="application/json")

    def wordpress(self, request: Request) -> Response:
        self.requests.append(f"wordpress page {request.args['page']}")
        after = request.args.get("modified_after", "")
        posts = [p for p in [wp_post(15, "tech", "2026-11-20T01:00:00")] if str(p["modified_gmt"]) > after]
        return Response(json.dumps(posts), content_type="application/json", headers={"X-WP-TotalPages": "1"})


def output_bytes(site: Site) -> dict[str, bytes]:
    return {p.relative_to(site.out).as_posix(): p.read_bytes() for p in site.out.rglob("*") if p.is_file()}


def test_all_kinds_ingest_twice_and_the_second_run_fetches_only_first_pages(site: Site, httpserver: HTTPServer) -> None:
    fixture = AllKinds(httpserver, site)
    first = site.build()
    assert first.new == 3 + 2 + 2 + 1 and not first.failed_sources, (first.failed_sources, first.problems)
    fixture.requests.clear()
    fixture.html.requests.clear()
    before = output_bytes(site)
    second = site.build()
    assert (second.new, second.changed, second.withdrawn) == (0, 0, 0)
    assert fixture.html.requests == ["/news/list_1.html"]  # no article page, no second list page
    assert sorted(fixture.requests) == ["api page 1", "feed", "wordpress page 1"]  # the feed: a 304
    assert output_bytes(site) == before


def test_faults_are_reported_and_the_last_good_feeds_stay_byte_identical(site: Site, httpserver: HTTPServer) -> None:
    fixture = AllKinds(httpserver, site)
    assert not site.build().failed_sources
    before = output_bytes(site)
    fixture.fault |= {"500", "json"}
    fixture.html.numbers[:0] = [99, 4]  # a new article, and a link to an article that 404s (99)
    fixture.html.missing = {99}
    report = site.build()
    failed, failed_parts = "\n".join(report.failed_sources), "\n".join(report.failed_parts)
    assert "feed.xml: HTTP 500" in failed and "/api?page=1: the answer is not JSON" in failed_parts
    assert any("/news/99.html" in p and "HTTP 404" in p for p in report.problems), report.problems
    assert report.new == 1  # the good new article went through; the others stay as they were
    after = output_bytes(site)
    assert {k: v for k, v in after.items() if not k.startswith("gao-xin-yuan-xin-wen/") and k not in (
        "rss.xml", "atom.xml", "feed.json")} == {k: v for k, v in before.items() if not k.startswith(
        "gao-xin-yuan-xin-wen/") and k not in ("rss.xml", "atom.xml", "feed.json")}  # fmt: skip

    fixture.fault = {"timeout"}
    slow = site.build()
    assert any("feed.xml: no answer in time" in f for f in slow.failed_sources), slow.failed_sources

    fixture.fault = set()
    unchanged = output_bytes(site)
    text = site.config.read_text(encoding="utf-8").replace('links = "ul.list li a"', 'links = "ul.news li a"')
    site.config.write_text(text, encoding="utf-8")  # the site's new layout: the selector finds nothing
    layout = site.build()
    [failed] = layout.failed_parts  # the html source's one category failed, named with its URL
    assert not layout.failed_sources
    assert failed.startswith("site (高新院新闻) ") and "list_1.html: no article links match" in failed
    [scope] = scope_reads(site, "site")
    assert scope.error is not None and "ul.news li a" in scope.error and scope.url.endswith("list_1.html")
    assert output_bytes(site) == unchanged


def test_an_endless_next_chain_stops_at_max_pages_and_says_so(site: Site, httpserver: HTTPServer) -> None:
    def endless(request: Request) -> Response:
        page = int(request.path.rsplit("_", 1)[1].split(".")[0])
        items = "".join(f'<li><a href="/art/{page}-{i}.html">x</a></li>' for i in range(2))
        html = f'<ul class="list">{items}</ul><a class="next" href="list_{page + 1}.html">下一页</a>'
        return Response(html, content_type="text/html; charset=utf-8")

    article = '<h1>标题</h1><div class="info">日期:2023-12-04</div><div class="content"><p>正文</p></div>'
    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request(re.compile(r"/news/list_\d+\.html")).respond_with_handler(endless)
    httpserver.expect_request(re.compile(r"/art/.*")).respond_with_data(article, content_type="text/html")
    html_source(site, httpserver)
    report = site.build()
    assert report.new == 5 * 2  # max_pages = 5
    assert any("stopped after 5 list pages" in w and "max_pages" in w for w in report.warnings), report.warnings
    assert report.skipped == 0 and not report.problems  # a warning, no item skipped


def test_a_date_without_a_zone_is_the_sites_in_every_format(site: Site, httpserver: HTTPServer) -> None:
    FixtureSite(httpserver, [4])  # its meta line says 日期:2023-12-04, nothing more
    html_source(site, httpserver)
    assert site.build().new == 1
    rss = parse_with_feedparser(site.feed("gao-xin-yuan-xin-wen/rss.xml")).entries[0]
    assert rss.published == "Mon, 04 Dec 2023 00:00:00 +0800"
    atom = site.feed("gao-xin-yuan-xin-wen/atom.xml").decode()
    assert "<published>2023-12-04T00:00:00+08:00</published>" in atom
    item = json.loads(site.feed("gao-xin-yuan-xin-wen/feed.json"))["items"][0]
    assert item["date_published"] == "2023-12-04T00:00:00+08:00"


def test_check_reaches_each_web_source_once(site: Site, httpserver: HTTPServer) -> None:
    fixture = AllKinds(httpserver, site)
    result = site.cli("check")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("source ")]
    assert len(lines) == 4 and "source site: html, 1 category" in lines
    assert 'title "h1" matched 1 element: 高新院動態第3期' in result.output
    assert any("cms: 2 item(s)" in line for line in lines) and any("blog: 1 item(s)" in line for line in lines)
    assert fixture.html.requests == ["/news/list_1.html", "/news/3.html"]  # the first list page and article
    assert sorted(fixture.requests) == ["api page 1", "feed", "wordpress page 1"]
    assert site.build().new == 8  # check stored nothing, and kept no validators: the build reads it all


def test_one_broken_byte_does_not_turn_a_utf8_page_into_gbk() -> None:
    page = f'<meta charset="utf-8"><p>{TEXT * 20}</p>'.encode() + b"\xe9\xab"  # a cut-off character
    text = decode_html(page, "text/html")
    assert TEXT in text and text.endswith("\ufffd")


def test_duplicate_guids_blank_pages_and_odd_charsets_do_not_break_a_build(site: Site, httpserver: HTTPServer) -> None:
    doubled = UPSTREAM.format(items=ITEM.format(n=1, title="甲", body="a") + ITEM.format(n=1, title="乙", body="b"))
    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/feed.xml").respond_with_data(doubled, content_type="application/rss+xml")
    httpserver.expect_request("/api").respond_with_data(
        json.dumps({"items": api_items([1])}), content_type="application/json; charset=utf8mb4"
    )
    articles = FixtureSite(httpserver, [3, 2, 1])
    articles.blank = {3}  # an empty answer where article 3 should be
    html_source(site, httpserver)
    site.append_config(
        f"""
{feed_toml(httpserver.url_for("/feed.xml"))}
{cms_toml(httpserver.url_for("/api"))}
[sources.paging]
kind = "none"
"""
    )
    report = site.build()
    assert not report.failed_sources, report.failed_sources
    assert report.new == 1 + 1 + 2  # the feed's first copy, the API item, articles 2 and 1
    assert any("/news/3.html" in p and "empty or not HTML" in p for p in report.problems), report.problems


def test_a_renamed_feed_source_reads_its_feed_again_despite_stored_validators(
    site: Site, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)

    def feed(request: Request) -> Response:
        if request.headers.get("If-None-Match") == '"same"':
            return Response(status=304)
        return Response(upstream(1, 2), headers={"ETag": '"same"', "Content-Type": "application/rss+xml"})

    httpserver.expect_request("/feed.xml").respond_with_handler(feed)
    base = site.config.read_text(encoding="utf-8")
    source = "\n" + feed_toml(httpserver.url_for("/feed.xml"))
    site.config.write_text(base + source + 'name = "before"\n', encoding="utf-8")
    assert site.build().new == 2
    site.config.write_text(base + source + 'name = "after"\n', encoding="utf-8")
    assert site.build().new == 2  # not hidden behind the old name's 304


def test_wordpress_without_a_total_pages_header_stops_at_a_short_page(site: Site, httpserver: HTTPServer) -> None:
    asked: list[str] = []

    def api(request: Request) -> Response:
        asked.append(request.args["page"])
        if request.args["page"] != "1":
            return Response(json.dumps({"code": "rest_post_invalid_page_number"}), status=400)
        return Response(json.dumps([wp_post(1, "tech", "2026-11-18T01:00:00")]), content_type="application/json")

    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/wp-json/wp/v2/posts").respond_with_handler(api)
    url = httpserver.url_for("/")
    site.append_config(f'\n[[sources]]\ntype = "wordpress"\nallow_private = true\nurl = "{url}"\ndelay = 0\n')
    report = site.build()
    assert report.new == 1 and not report.failed_sources and asked == ["1"]
