"""Polite polling of API sources on a real loopback server: robots.txt once per site and run,
WordPress paging past a host's per_page cap, conditional GETs of API pages, and a failing
page reported with its URL while what was read before it, and the other sources, go through."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import Site
from feedcheck import parse_with_feedparser
from publisher.errors import SourceError
from publisher.model import ScopeRead, SourceItem
from publisher.sources.addresses import AddressGuard, IPAddress, SocketAddress, resolve_host
from publisher.sources.http import Fetcher, Validators, source_hosts
from publisher.sources.json_api import Fields, JsonSource, Paging
from publisher.sources.robots import NO_RULES, Robots, RobotsCache

LOOPBACK = AddressGuard(allow_private=True)


class Api:
    """A JSON list API (`/api/<name>?page=N`, three items a page) and a WordPress site that
    caps `per_page` at `cap`, with ETags, faults and every request counted."""

    def __init__(self, server: HTTPServer, cap: int = 1) -> None:
        self.server, self.cap = server, cap
        self.requests: list[str] = []
        self.not_modified: list[str] = []  # the requests answered 304
        self.numbers = [6, 5, 4, 3, 2, 1]
        self.posts = [2, 1]
        self.broken: set[str] = set()  # "/api/news?page=2", "wp page 2", ...
        self.link_only = False  # WordPress without X-WP-TotalPages: Link rel="next" only
        server.expect_request("/robots.txt").respond_with_handler(self.robots)
        server.expect_request("/wp-json/wp/v2/posts").respond_with_handler(self.wordpress)
        server.expect_request("/api/news").respond_with_handler(self.api)
        server.expect_request("/api/policy").respond_with_handler(self.api)

    def robots(self, request: Request) -> Response:
        self.requests.append("robots.txt")
        return Response("User-agent: *\nDisallow: /private/\n", content_type="text/plain")

    def api(self, request: Request) -> Response:
        page = int(request.args.get("page", "1"))
        asked = f"{request.path}?page={page}"
        self.requests.append(asked)
        if asked in self.broken:
            return Response("boom", status=500)
        chunk = self.numbers[(page - 1) * 3 : page * 3]
        items = [{"id": f"{request.path}/{n}", "title": f"第{n}号", "date": f"2026-11-{10 + n:02d}T09:00:00",
                  "content": f"<p>正文{n}</p>"} for n in chunk]  # fmt: skip
        return self._with_etag(asked, request, json.dumps({"items": items}, ensure_ascii=False))

    def wordpress(self, request: Request) -> Response:
        page = int(request.args["page"])
        self.requests.append(f"wp page {page}")
        if f"wp page {page}" in self.broken:
            return Response(json.dumps({"code": "rest_no_route", "message": "没有路由"}), status=404)
        per = min(int(request.args["per_page"]), self.cap)  # the host's cap, below what was asked
        pages = max(1, -(-len(self.posts) // per))
        if page > pages:
            return Response(json.dumps({"code": "rest_post_invalid_page_number"}), status=400)
        chunk = [_post(n) for n in self.posts[(page - 1) * per : page * per]]
        headers = {}
        if self.link_only and page < pages:
            base = self.server.url_for("/wp-json/wp/v2/posts")
            headers["Link"] = f'<{base}?page={page + 1}&per_page={per}>; rel="next"'
        elif not self.link_only:
            headers["X-WP-TotalPages"] = str(pages)
        return self._with_etag(f"wp page {page}", request, json.dumps(chunk, ensure_ascii=False), headers)

    def _with_etag(self, asked: str, request: Request, body: str, headers: dict[str, str] | None = None) -> Response:
        etag = f'"{abs(hash(body))}"'
        if request.headers.get("If-None-Match") == etag:
            self.not_modified.append(asked)
            return Response(status=304, headers={"ETag": etag})
        return Response(body, content_type="application/json", headers={"ETag": etag, **(headers or {})})


def _post(n: int) -> dict[str, object]:
    return {
        "id": n,
        "date_gmt": f"2026-11-{10 + n:02d}T09:00:00",
        "modified_gmt": f"2026-11-{10 + n:02d}T09:00:00",
        "link": f"https://blog.example.org/?p={n}",
        "title": {"rendered": f"博文{n}"},
        "content": {"rendered": f"<p>博文正文{n}</p>"},
    }


def json_toml(server: HTTPServer, name: str, category: str, max_pages: int = 5) -> str:
    url = server.url_for(f"/api/{name}") + "?page={page}"
    return (f'\n[[sources]]\ntype = "json"\nallow_private = true\nname = "{name}"\nurl = "{url}"\n'
            f'category = "{category}"\ndelay = 0\n[sources.fields]\nlist = "items"\n'
            f"[sources.paging]\nkind = \"page\"\nmax_pages = {max_pages}\n")  # fmt: skip


def wordpress_toml(server: HTTPServer) -> str:
    url = server.url_for("/")
    return f'\n[[sources]]\ntype = "wordpress"\nallow_private = true\nname = "blog"\nurl = "{url}"\n' + (
        'category = "tech"\ndelay = 0\n'
    )


def test_robots_txt_is_read_once_per_site_and_run(site: Site, httpserver: HTTPServer) -> None:
    api = Api(httpserver)
    site.append_config(json_toml(httpserver, "news", "高新院新闻") + json_toml(httpserver, "policy", "policy")
                       + wordpress_toml(httpserver))  # fmt: skip
    report = site.build()
    assert report.new == 6 + 6 + 2 and not (report.failed_sources or report.failed_parts), report
    assert api.requests.count("robots.txt") == 1  # three sources, one site
    api.requests.clear()
    site.build()
    assert api.requests.count("robots.txt") == 1  # once per run, not once for ever
    api.requests.clear()
    assert site.cli("check").exit_code == 0
    assert api.requests.count("robots.txt") == 1


def test_fetchers_on_many_threads_share_one_robots_txt(httpserver: HTTPServer) -> None:
    api = Api(httpserver)
    cache = RobotsCache()
    fetchers = [Fetcher("publisher/test", delay=0, guard=LOOPBACK, robots_cache=cache) for _ in range(8)]
    url = httpserver.url_for("/api/news") + "?page=1"
    threads = [threading.Thread(target=f.get, args=(url,)) for f in fetchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(api.requests) == {"robots.txt": 1, "/api/news?page=1": 8}
    # The same site however its URL is spelt; another port is another site.
    loaded: list[str] = []

    def load(site: str) -> Callable[[], tuple[Robots, bool]]:
        return lambda: (loaded.append(site), (NO_RULES, True))[1]

    assert cache.rules("HTTP://LOCALHOST:80/x", load("first")) is NO_RULES
    assert cache.rules("http://localhost/y", load("again")) is NO_RULES
    assert cache.rules("http://localhost:8081/z", load("other port")) is NO_RULES
    assert loaded == ["first", "other port"]


def test_wordpress_follows_total_pages_past_a_host_that_caps_per_page(site: Site, httpserver: HTTPServer) -> None:
    api = Api(httpserver, cap=1)
    site.append_config(wordpress_toml(httpserver))
    report = site.build()
    assert report.new == 2 and not (report.failed_sources or report.failed_parts), report
    assert [r for r in api.requests if r.startswith("wp")] == ["wp page 1", "wp page 2"]
    titles = [e.title for e in parse_with_feedparser(site.feed("tech/rss.xml")).entries]
    assert titles == ["博文2", "博文1"]


def test_wordpress_follows_a_link_header_to_the_last_page(site: Site, httpserver: HTTPServer) -> None:
    api = Api(httpserver, cap=1)
    api.link_only, api.posts = True, [3, 2, 1]
    site.append_config(wordpress_toml(httpserver))
    report = site.build()
    assert report.new == 3 and not (report.failed_sources or report.failed_parts), report
    # page 3 has no Link rel="next" and one post, fewer than asked: the end without asking for page 4
    assert [r for r in api.requests if r.startswith("wp")] == ["wp page 1", "wp page 2", "wp page 3"]


def test_wordpress_stops_cleanly_at_rest_post_invalid_page_number(site: Site, httpserver: HTTPServer) -> None:
    asked: list[str] = []

    def lying(request: Request) -> Response:
        asked.append(request.args["page"])
        if request.args["page"] == "1":  # says 3 pages, has 1
            body = json.dumps([_post(1)])
            return Response(body, content_type="application/json", headers={"X-WP-TotalPages": "3"})
        return Response(json.dumps({"code": "rest_post_invalid_page_number", "message": "x"}), status=400)

    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/wp-json/wp/v2/posts").respond_with_handler(lying)
    site.append_config(wordpress_toml(httpserver))
    report = site.build()
    assert report.new == 1 and not (report.failed_sources or report.failed_parts) and asked == ["1", "2"]


def test_a_second_poll_of_unchanged_api_pages_costs_one_304_each(site: Site, httpserver: HTTPServer) -> None:
    api = Api(httpserver, cap=1)
    site.append_config(json_toml(httpserver, "news", "高新院新闻") + wordpress_toml(httpserver))
    assert site.build().new == 6 + 2
    first_run = list(api.requests)
    assert first_run.count("/api/news?page=3") == 1  # page 3 was empty: the end
    api.requests.clear()
    second = site.build()
    assert (second.new, second.changed, second.failed_sources, second.failed_parts) == (0, 0, [], [])
    # The first page of each is all there is to ask: the API's says 304, nothing is new there
    # or beyond it. WordPress's first page is a new URL (`modified_after` the newest post
    # stored), read once in full; from then on it says 304 too.
    assert sorted(r for r in api.requests if r != "robots.txt") == ["/api/news?page=1", "wp page 1"]
    assert api.not_modified == ["/api/news?page=1"]
    api.requests.clear()
    assert site.build().new == 0
    assert sorted(r for r in api.requests if r != "robots.txt") == ["/api/news?page=1", "wp page 1"]
    assert api.not_modified == ["/api/news?page=1", "/api/news?page=1", "wp page 1"]

    api.numbers.insert(0, 7)  # page 1 changes, page 2 gets 4 from page 1 and says so
    api.requests.clear()
    third = site.build()
    assert third.new == 1
    assert [r for r in api.requests if r.startswith("/api")] == ["/api/news?page=1", "/api/news?page=2"]


def test_a_failing_later_page_keeps_the_earlier_pages_and_the_other_sources(site: Site, httpserver: HTTPServer) -> None:
    api = Api(httpserver, cap=1)
    api.broken = {"/api/news?page=2", "wp page 2"}
    site.append_config(json_toml(httpserver, "news", "高新院新闻") + json_toml(httpserver, "policy", "policy")
                       + wordpress_toml(httpserver))  # fmt: skip
    report = site.build()
    failed = "\n".join(report.failed_parts)
    assert len(report.failed_parts) == 2 and not report.failed_sources, failed
    assert "/api/news?page=2: HTTP 500" in failed and "&page=2: HTTP 404 (没有路由)" in failed
    # news: page 1's three items are stored; policy: all six; the blog: page 1's post
    assert report.new == 3 + 6 + 1
    policy = parse_with_feedparser(site.feed("policy/rss.xml")).entries
    assert len(policy) == 6

    # A failed walk keeps no validators: the next run reads its page 1 again instead of a 304,
    # and walks on to the page that failed although page 1 brings nothing new by then.
    api.broken.clear()
    api.requests.clear()
    again = site.build()
    assert api.not_modified == ["/api/policy?page=1"]
    assert again.new == 3 + 1 and not again.failed_parts, again  # news page 2's three, the blog's second post
    assert "/api/news?page=2" in api.requests and "wp page 2" in api.requests
    api.requests.clear()
    assert site.build().new == 0  # then back to the usual: each walk stops at its first page
    assert "/api/news?page=2" not in api.requests and "wp page 2" not in api.requests


def test_a_failing_first_page_is_the_part_failing_with_its_url(httpserver: HTTPServer) -> None:
    api = Api(httpserver)
    api.broken = {"/api/news?page=1"}
    kept: dict[str, Mapping[str, str]] = {}
    fetcher = Fetcher("publisher/test", Validators(lambda u: kept.get(u, {}), kept.update), delay=0, guard=LOOPBACK)
    url = httpserver.url_for("/api/news") + "?page={page}"
    source = JsonSource("news", url, Fields("items"), Paging(), None, fetcher, "Asia/Shanghai")
    results = list(source.fetch({}))
    page_one = url.replace("{page}", "1")
    assert results == [ScopeRead(url, page_one, f"{page_one}: HTTP 500 INTERNAL SERVER ERROR", results[0].hint)]
    assert "next run" in results[0].hint

    api.broken.clear()
    results = list(source.fetch({}))
    assert sum(isinstance(r, SourceItem) for r in results) == 6
    assert results[-1] == ScopeRead(url, page_one)  # read, after its items
    source.committed()
    assert sorted(kept) == [url.replace("{page}", str(n)) for n in (1, 2, 3)]


class RobotsSite:
    """A site whose robots.txt is behind `hops` redirects, the last one to another host name of
    the same server (`localhost` for `127.0.0.1`), or answers `status`; every request logged."""

    def __init__(self, server: HTTPServer, hops: int = 2, status: int = 200) -> None:
        self.server, self.hops, self.status = server, hops, status
        self.requests: list[str] = []
        server.expect_request(re.compile(r"/.*")).respond_with_handler(self.handle)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server.port}{path}"

    def handle(self, request: Request) -> Response:
        host = request.host.split(":")[0]
        self.requests.append(f"{host}{request.path}")
        if request.path == "/robots.txt" or request.path.startswith("/hop/"):
            hop = int(request.path.removeprefix("/hop/")) if request.path.startswith("/hop/") else 0
            if hop < self.hops:
                target = self.url(f"/hop/{hop + 1}", "localhost" if hop + 1 == self.hops else host)
                return Response(status=301 if hop % 2 else 302, headers={"Location": target})
            if self.status != 200:
                return Response("robots.txt is having a bad day", status=self.status)
            return Response("User-agent: *\nDisallow: /private/\n", content_type="text/plain")
        return Response("<p>正文</p>", content_type="text/html; charset=utf-8")


def robots_fetcher(robots: RobotsSite) -> Fetcher:
    """A fetcher whose source's host is 127.0.0.1 only: pages on localhost it may not read."""
    hosts = source_hosts([robots.url("/")])
    return Fetcher("publisher/test", delay=0, guard=LOOPBACK, hosts=hosts, retries=0)


def test_robots_txt_behind_redirects_to_another_host_is_followed_and_kept_for_the_host_asked(
    httpserver: HTTPServer,
) -> None:
    robots = RobotsSite(httpserver, hops=2)
    fetcher = robots_fetcher(robots)
    with pytest.raises(SourceError, match="robots.txt does not allow"):
        fetcher.get(robots.url("/private/x.html"))
    assert fetcher.get(robots.url("/news/1.html")).status == 200
    assert robots.requests == [
        "127.0.0.1/robots.txt",
        "127.0.0.1/hop/1",
        "localhost/hop/2",
        "127.0.0.1/news/1.html",
    ]  # fmt: skip  (once for the run, kept under 127.0.0.1: the host asked)


def test_robots_txt_behind_more_than_five_redirects_is_taken_as_missing(httpserver: HTTPServer) -> None:
    robots = RobotsSite(httpserver, hops=6)
    fetcher = robots_fetcher(robots)
    assert fetcher.get(robots.url("/private/x.html")).status == 200  # RFC 9309: unavailable, so allowed
    assert sum(1 for r in robots.requests if "/hop/" in r or r.endswith("robots.txt")) == 6  # five hops followed


def test_an_unreachable_robots_txt_allows_nothing_for_now_and_a_missing_one_everything(httpserver: HTTPServer) -> None:
    robots = RobotsSite(httpserver, hops=0, status=503)
    fetcher = robots_fetcher(robots)
    for path in ("/news/1.html", "/news/2.html"):
        with pytest.raises(SourceError, match=r"robots.txt could not be read \(HTTP 503") as refused:
            fetcher.get(robots.url(path))
        assert "next run" in refused.value.hint
    assert robots.requests == ["127.0.0.1/robots.txt"]  # asked once in the run, no page read

    robots.status, robots.requests = 404, []
    fresh = robots_fetcher(robots)  # the next run
    assert fresh.get(robots.url("/private/x.html")).status == 200  # a 4xx: no rules, all allowed
    assert robots.requests == ["127.0.0.1/robots.txt", "127.0.0.1/private/x.html"]


def test_robots_txt_redirected_to_a_refused_address_allows_nothing_from_the_site_for_the_run(
    httpserver: HTTPServer,
) -> None:
    """The guard refuses the redirect's host: robots.txt cannot be had, so nothing is read from
    the site for the run (RFC 9309), asked once, and each page's error says so (not that the
    page's host is private, nor to set allow_private)."""
    robots = RobotsSite(httpserver, hops=2)  # the last hop to localhost, an intranet host here

    def resolve(host: str, port: int) -> list[tuple[int, SocketAddress]]:
        return resolve_host("127.0.0.2" if host == "localhost" else host, port)

    def refuse(address: IPAddress) -> str | None:
        return "private" if str(address) == "127.0.0.2" else None

    guard = AddressGuard(refuse=refuse, resolve=resolve)
    fetcher = Fetcher("publisher/test", delay=0, guard=guard, hosts=source_hosts([robots.url("/")]), retries=0)
    for path in ("/news/1.html", "/news/2.html"):
        with pytest.raises(SourceError) as refused:
            fetcher.get(robots.url(path))
        assert refused.value.message.startswith(
            f"{robots.url(path)}: the site's robots.txt could not be read "
            "(robots.txt redirected to localhost, a private address)"
        ), refused.value.message
        assert "allow_private" not in refused.value.hint
    assert robots.requests == ["127.0.0.1/robots.txt", "127.0.0.1/hop/1"]  # once in the run, no page read


def test_robots_txt_is_read_up_to_500_kib_and_no_further(httpserver: HTTPServer) -> None:
    """RFC 9309 asks parsers to read at least 500 KiB: a robots.txt that never ends is read that
    far and its rules kept, not until the request's deadline."""

    def endless() -> Iterator[bytes]:
        yield b"User-agent: *\nDisallow: /private/\n"
        while True:
            yield b"# " + b"-" * 1021 + b"\n"

    httpserver.expect_request("/robots.txt").respond_with_handler(
        lambda _request: Response(endless(), content_type="text/plain")
    )
    httpserver.expect_request("/news/1.html").respond_with_data("<p>正文</p>", content_type="text/html")
    fetcher = Fetcher("publisher/test", delay=0, guard=LOOPBACK, retries=0, deadline=10)
    assert fetcher.get(httpserver.url_for("/news/1.html")).status == 200
    with pytest.raises(SourceError, match="robots.txt does not allow"):
        fetcher.get(httpserver.url_for("/private/x.html"))
