"""Web sources reach their own hosts and public addresses only (issue 17, item 3: SSRF).

Tests target loopback only. 127.0.0.1 plays the public site; a second loopback address,
127.0.0.2, plays an intranet host, through `AddressGuard.refuse` (a hook the configuration
cannot reach) and a server there that holds a secret: the secret must never be read.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme

from conftest import Site
from feedcheck import parse_with_feedparser
from publisher.errors import SourceError
from publisher.sources.addresses import AddressGuard, IPAddress, SocketAddress, resolve_host, why_refused
from publisher.sources.http import Fetcher, host_allowed, source_hosts

PUBLIC, INTRANET = "127.0.0.1", "127.0.0.2"


class Server(ThreadingHTTPServer):
    """Answers `pages` (path -> (status, headers, body)) and notes every path asked for."""

    def __init__(self, host: str, port: int, pages: dict[str, tuple[int, dict[str, str], str]]) -> None:
        self.pages, self.asked = pages, []
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.asked.append(self.path)
        status, headers, body = self.server.pages.get(self.path, (404, {}, "not here"))
        data = body.encode()
        self.send_response(status)
        for name, value in {"Content-Type": "text/html; charset=utf-8", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        pass


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    """The public site on 127.0.0.1 and the intranet host on 127.0.0.2, on the same port."""
    for _ in range(20):
        public = Server(PUBLIC, 0, {})
        try:
            intranet = Server(INTRANET, public.port, {"/secret.html": (200, {}, SECRET)})
            break
        except OSError:  # the port is taken on 127.0.0.2: try another
            public.server_close()
    else:
        pytest.skip("no port free on both 127.0.0.1 and 127.0.0.2")
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (public, intranet)]
    for thread in threads:
        thread.start()
    yield public, intranet
    for server in (public, intranet):
        server.shutdown()
        server.server_close()


SECRET = "<html><head><title>x</title></head><body><h1>秘密</h1><div class='info'>日期：2026-11-01</div></body></html>"


def intranet_is_private(address: IPAddress) -> str | None:
    """The test's world: 127.0.0.2 is an intranet address, 127.0.0.1 a public one."""
    return "private (in this test)" if str(address) == INTRANET else None


def intranet_guard(resolve: Any = resolve_host, allow_private: bool = False) -> AddressGuard:
    return AddressGuard(allow_private=allow_private, refuse=intranet_is_private, resolve=resolve)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "224.0.0.251",
     "0.0.0.0", "240.0.0.1", "255.255.255.255", "::1", "::", "fc00::1", "fd12::1", "fe80::1", "fec0::1", "ff02::1",
     "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "2002:a00:1::1", "64:ff9b::a9fe:a9fe",
     "::7f00:1"],
)  # fmt: skip
def test_every_kind_of_non_public_address_is_refused(address: str) -> None:
    assert why_refused(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert why_refused(ipaddress.ip_address(address)) is None


def test_loopback_is_refused_unless_the_source_allows_private(servers: tuple[Server, Server]) -> None:
    public, _ = servers
    public.pages["/feed.xml"] = (200, {}, "<rss/>")
    url = f"http://{PUBLIC}:{public.port}/feed.xml"
    with pytest.raises(SourceError) as refused:
        Fetcher("publisher/test", delay=0, robots=False).get(url)  # the guard as configured by default
    assert url in refused.value.message and "127.0.0.1" in refused.value.message
    assert "loopback" in refused.value.message and "allow_private = true" in refused.value.hint
    assert public.asked == []
    allowed = Fetcher("publisher/test", delay=0, robots=False, guard=AddressGuard(allow_private=True))
    assert allowed.get(url).content == b"<rss/>"


def test_an_intranet_address_is_refused_and_a_public_one_read(servers: tuple[Server, Server]) -> None:
    public, intranet = servers
    public.pages["/news.html"] = (200, {}, "public news")
    fetcher = Fetcher("publisher/test", delay=0, robots=False, guard=intranet_guard())
    assert fetcher.get(f"http://{PUBLIC}:{public.port}/news.html").content == b"public news"
    with pytest.raises(SourceError, match=r"127\.0\.0\.2, a private \(in this test\) address") as refused:
        fetcher.get(f"http://{INTRANET}:{intranet.port}/secret.html")
    assert "allow_private" in refused.value.hint
    assert intranet.asked == []


def test_dns_rebinding_is_caught_where_the_socket_connects(servers: tuple[Server, Server]) -> None:
    """The first answer for the name is public, the one at connect time the intranet: refused."""
    public, intranet = servers
    answers = [PUBLIC, INTRANET]

    def rebinding(host: str, port: int) -> list[tuple[int, SocketAddress]]:
        assert host == "news.example.test"
        address = answers.pop(0) if len(answers) > 1 else answers[0]
        return resolve_host(address, port)

    url = f"http://news.example.test:{public.port}/secret.html"
    with pytest.raises(SourceError, match=r"news\.example\.test resolves to 127\.0\.0\.2") as refused:
        Fetcher("publisher/test", delay=0, robots=False, guard=intranet_guard(rebinding)).get(url)
    assert url in refused.value.message
    assert intranet.asked == [] and public.asked == []
    # The same names with private addresses allowed do reach it: the refusal above is the guard's.
    answers[:] = [INTRANET]
    fetcher = Fetcher("publisher/test", delay=0, robots=False, guard=intranet_guard(rebinding, allow_private=True))
    assert fetcher.get(url).content == SECRET.encode()


def test_redirects_go_to_the_sources_hosts_and_public_addresses_only(servers: tuple[Server, Server]) -> None:
    public, intranet = servers
    secret = f"http://{INTRANET}:{intranet.port}/secret.html"
    public.pages["/go"] = (302, {"Location": secret}, "")
    start = f"http://{PUBLIC}:{public.port}/go"
    own_host = Fetcher("publisher/test", delay=0, robots=False, hosts=source_hosts([start]), guard=intranet_guard())
    with pytest.raises(SourceError, match=r"127\.0\.0\.2 is not one of this source's hosts") as elsewhere:
        own_host.get(start)
    assert secret in elsewhere.value.message and start in elsewhere.value.message
    assert "add it to `hosts`" in elsewhere.value.hint
    both = source_hosts([start], [INTRANET])
    listed = Fetcher("publisher/test", delay=0, robots=False, hosts=both, guard=intranet_guard())
    with pytest.raises(SourceError, match="private"):
        listed.get(start)  # a listed host is still checked for its address
    assert intranet.asked == []


def test_hosts_default_to_the_configured_ones_and_their_www_twins() -> None:
    hosts = source_hosts(["https://news.example.org/feed.xml", "https://www.example.com/a"], ["*.cdn.example.net"])
    assert {"news.example.org", "www.news.example.org", "example.com", "www.example.com"} <= hosts
    assert host_allowed("img.cdn.example.net", hosts) and not host_allowed("cdn.example.net.evil.org", hosts)
    assert not host_allowed("example.org", hosts) and not host_allowed("evil.org", hosts)
    assert host_allowed("::1", source_hosts([], ["[::1]"])) and host_allowed(
        "新闻.example.cn", source_hosts([], ["新闻.example.cn"])
    )


LIST = """<html><body><ul class="list">
<li><a href="/own.html">本站</a></li><li><a href="{secret}">外站</a></li></ul></body></html>"""
OWN = (
    "<html><body><h1>本站新闻</h1><div class='info'>日期：2026-11-02</div><div class='content'>正文</div></body></html>"
)


def html_site(site: Site, url: str, extra: str = "") -> None:
    site.append_config(
        f"""
[[sources]]
type = "html"
name = "site"
delay = 0
robots = false
allow_private = true  # the test servers are on loopback: the hosts list is what is tested
{extra}
[sources.list]
pages = {{ "高新院新闻" = ["{url}"] }}
links = "ul.list li a"
[sources.article]
body = "div.content"
meta = "div.info"
"""
    )


def test_an_html_list_page_is_followed_only_to_the_sources_hosts(site: Site, servers: tuple[Server, Server]) -> None:
    public, intranet = servers
    secret = f"http://{INTRANET}:{intranet.port}/secret.html"
    public.pages["/list.html"] = (200, {}, LIST.format(secret=secret))
    public.pages["/own.html"] = (200, {}, OWN)
    html_site(site, f"http://{PUBLIC}:{public.port}/list.html")
    report = site.build()
    assert report.new == 1 and not report.failed_sources
    assert intranet.asked == [] and not report.problems  # left out, not a problem of that article
    titles = [e.title for e in parse_with_feedparser(site.feed("gao-xin-yuan-xin-wen/rss.xml")).entries]
    assert titles == ["本站新闻"]


def test_a_listed_host_is_followed(site: Site, servers: tuple[Server, Server]) -> None:
    public, intranet = servers
    intranet.pages["/secret.html"] = (200, {}, OWN.replace("本站新闻", "合作站新闻"))
    public.pages["/list.html"] = (200, {}, LIST.format(secret=f"http://{INTRANET}:{intranet.port}/secret.html"))
    public.pages["/own.html"] = (200, {}, OWN)
    html_site(site, f"http://{PUBLIC}:{public.port}/list.html", f'hosts = ["{INTRANET}"]')
    report = site.build()
    assert report.new == 2 and not report.problems and intranet.asked == ["/secret.html"]


def test_a_feed_that_redirects_elsewhere_fails_naming_the_key(site: Site, servers: tuple[Server, Server]) -> None:
    public, intranet = servers
    public.pages["/feed.xml"] = (301, {"Location": f"http://{INTRANET}:{intranet.port}/secret.html"}, "")
    url = f"http://{PUBLIC}:{public.port}/feed.xml"
    site.append_config(
        f'\n[[sources]]\ntype = "feed"\nurl = "{url}"\ncategory = "tech"\ndelay = 0\nallow_private = true\n'
    )
    report = site.build()
    [failure] = report.failed_sources
    assert url in failure and "not one of this source's hosts" in failure and "`hosts`" in failure
    assert intranet.asked == []


def test_check_says_which_key_lets_a_loopback_source_through(site: Site, servers: tuple[Server, Server]) -> None:
    public, _ = servers
    url = f"http://{PUBLIC}:{public.port}/feed.xml"
    site.append_config(f'\n[[sources]]\ntype = "feed"\nurl = "{url}"\ncategory = "tech"\ndelay = 0\n')
    result = site.cli("check")
    assert "loopback" in result.output and "allow_private = true" in result.output, result.output
    assert public.asked == []


def test_a_host_entry_must_be_a_host(site: Site) -> None:
    site.append_config(
        '\n[[sources]]\ntype = "feed"\nurl = "https://example.org/feed.xml"\ncategory = "tech"\n'
        'hosts = ["https://cdn.example.org/"]\n'
    )
    result = site.cli("check")
    assert result.exit_code == 2 and "sources[1].hosts" in result.output and "not a host name" in result.output


def test_tls_is_verified_for_the_host_name_not_the_address_connected_to() -> None:
    """The guard connects to the address it checked; TLS still sends and verifies the name."""
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("news.example.test").configure_cert(tls)
    names: list[str | None] = []
    tls.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
    listener = socket.create_server((PUBLIC, 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            try:
                with tls.wrap_socket(conn, server_side=True) as secure:
                    secure.recv(65536)
                    secure.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            except (OSError, ssl.SSLError):
                conn.close()

    threading.Thread(target=serve, daemon=True).start()

    def to_public(host: str, port: int) -> list[tuple[int, SocketAddress]]:
        return resolve_host(PUBLIC, port)

    try:
        with ca.cert_pem.tempfile() as ca_file:
            fetcher = Fetcher("publisher/test", delay=0, robots=False, guard=intranet_guard(to_public))
            fetcher.session.verify = ca_file
            assert fetcher.get(f"https://news.example.test:{port}/").content == b"ok"
            assert names == ["news.example.test"]
            with pytest.raises(SourceError, match="certificate"):  # the certificate is not for this name
                fetcher.get(f"https://other.example.test:{port}/")
    finally:
        listener.close()
