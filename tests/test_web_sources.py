"""Web sources against a real HTTP server on loopback: charsets, politeness, conditional GETs,
and the `feed` source end to end (ingest twice: the second run costs one 304)."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import Site
from feedcheck import parse_with_feedparser
from publisher.errors import SourceError
from publisher.sources.http import Fetcher, Validators, decode_html

TEXT = "高新區(qū)新聞：院長(zhǎng)出席科技創新大會"


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (f"<html><head></head><body>{TEXT}</body></html>".encode("gbk"), "text/html"),  # nothing declared
        (f"<html><body>{TEXT}</body></html>".encode("gbk"), "text/html; charset=utf-8"),  # header wrong
        (f'<meta charset="gbk"><p>{TEXT}</p>'.encode(), "text/html"),  # meta wrong: it is UTF-8
        (f'<meta http-equiv="Content-Type" content="text/html; charset=gb2312"><p>{TEXT}</p>'.encode("gb18030"), ""),
        (b"\xef\xbb\xbf" + TEXT.encode(), "text/html; charset=gbk"),  # a BOM decides
    ],
)
def test_chinese_pages_decode_whatever_they_declare(data: bytes, content_type: str) -> None:
    assert TEXT in decode_html(data, content_type)


def memory_validators() -> Validators:
    kept: dict[str, str] = {}
    return Validators(kept.get, kept.__setitem__)


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
    fetcher = Fetcher("publisher/test (+https://www.example.org)", memory_validators(), delay=2.0, sleep=waits.append)
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
    small = Fetcher("publisher/test", None, delay=0, max_bytes=1000)
    with pytest.raises(SourceError, match="limit"):
        small.get(httpserver.url_for("/big"))


def test_validators_are_kept_only_after_commit(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/feed.xml").respond_with_data("x", headers={"ETag": '"e"'})
    validators = memory_validators()
    fetcher = Fetcher("publisher/test", validators, delay=0)
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
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(
        text
        + f"""
[[sources]]
type = "feed"
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
    assert broken.failed_sources and "not a feed" in broken.failed_sources[0]
    assert len(parse_with_feedparser(site.feed("tech/rss.xml")).entries) == 3  # the last good feed stays


def test_check_reports_what_a_web_source_shows(site: Site, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/feed.xml").respond_with_data(upstream(7, 8), content_type="application/rss+xml")
    text = site.config.read_text(encoding="utf-8")
    url = httpserver.url_for("/feed.xml")
    site.config.write_text(text + f'\n[[sources]]\ntype = "feed"\nurl = "{url}"\ncategory = "tech"\ndelay = 0\n')
    result = site.cli("check")
    assert result.exit_code == 0, result.output
    assert "2 item(s)" in result.output and "產業研究(yán jiū)第7期" in result.output
    httpserver.clear()
    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/feed.xml").respond_with_data("gone", status=404)
    failed = site.cli("check")
    assert failed.exit_code == 1 and "HTTP 404" in failed.output
