"""A web source's requests end in time (issue 17, item 4): `timeout` caps each read from the
socket only, so a loopback server that trickles its answer a byte at a time, each byte well
within the timeout, must still be cut at the request's `deadline`, and a source's whole run at
its `run_deadline`, with the URL in the report."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
import trustme

from conftest import Site
from publisher.errors import SourceError
from publisher.sources.addresses import AddressGuard
from publisher.sources.http import Fetcher, RunOutOfTime

LOOPBACK = AddressGuard(allow_private=True)  # the test server is on loopback
FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'


class Trickler:
    """A raw HTTP server on 127.0.0.1 that sends one byte every `pause` seconds: in the status
    line (`where="head"`), or in a body with or without a Content-Length."""

    def __init__(self, where: str, pause: float = 0.1, tls: ssl.SSLContext | None = None) -> None:
        self.where, self.pause, self.tls = where, pause, tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.served = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                conn.close()
                return
        with conn:
            conn.recv(65536)
            self.served += 1
            body = FEED * 1000
            if self.where == "head":
                head, slow = b"", b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 10_000
            else:
                length = f"Content-Length: {len(body)}\r\n".encode() if self.where == "sized body" else b""
                head, slow = b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n" + length + b"\r\n", body
            try:
                conn.sendall(head)
                for byte in slow:
                    if self.stopped.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(self.pause)
            except OSError:  # the client went away
                return

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.fixture
def trickler(request: pytest.FixtureRequest) -> Iterator[Trickler]:
    server = Trickler(getattr(request, "param", "sized body"))
    yield server
    server.close()


@pytest.mark.parametrize("trickler", ["head", "sized body", "unsized body"], indirect=True)
def test_a_trickling_answer_is_cut_at_the_deadline(trickler: Trickler) -> None:
    url = f"http://127.0.0.1:{trickler.port}/feed.xml"
    fetcher = Fetcher("publisher/test", delay=0, robots=False, timeout=(1, 1), deadline=1.5, guard=LOOPBACK)
    started = time.monotonic()
    with pytest.raises(SourceError) as late:
        fetcher.get(url)  # an answer without a length must not come back cut short either
    assert time.monotonic() - started < 5
    assert url in late.value.message and "`deadline` of 1.5 s" in late.value.message
    assert "raise `deadline`" in late.value.hint
    assert trickler.served == 1  # not tried again after the deadline


def test_a_run_ends_at_its_run_deadline(trickler: Trickler) -> None:
    fetcher = Fetcher("publisher/test", delay=0, robots=False, deadline=0.8, run_deadline=2.0, guard=LOOPBACK)
    url = f"http://127.0.0.1:{trickler.port}/feed.xml"
    started = time.monotonic()
    failures: list[SourceError] = []
    with pytest.raises(RunOutOfTime) as out:
        for _ in range(10):
            try:
                fetcher.get(url)
            except RunOutOfTime:
                raise
            except SourceError as exc:  # each request's own deadline: a per-item problem
                failures.append(exc)
    assert 1.8 < time.monotonic() - started < 5
    assert len(failures) == 2 and url in out.value.message and "`run_deadline` of 2 s" in out.value.message


def test_a_trickling_feed_fails_its_source_in_time(site: Site, trickler: Trickler) -> None:
    url = f"http://127.0.0.1:{trickler.port}/feed.xml"
    site.append_config(
        f'\n[[sources]]\ntype = "feed"\nurl = "{url}"\ncategory = "tech"\ndelay = 0\nrobots = false\n'
        "timeout = 1\ndeadline = 1.5\nallow_private = true  # the test server is on loopback\n"
    )
    started = time.monotonic()
    report = site.build()
    assert time.monotonic() - started < 10
    [failure] = report.failed_sources
    assert url in failure and "deadline" in failure


def test_an_html_source_stops_at_its_run_deadline(site: Site, trickler: Trickler) -> None:
    """A list page's own deadline fails its category only (and an article's, that article); the
    run's deadline stops the source: the second category's list page has 0.5 s left of it."""
    url = f"http://127.0.0.1:{trickler.port}/list.html"
    second = f"http://127.0.0.1:{trickler.port}/list_2.html"
    site.append_config(
        f"""
[[sources]]
type = "html"
delay = 0
robots = false
deadline = 1
run_deadline = 1.5
allow_private = true  # the test server is on loopback
[sources.list]
pages = {{ "高新院新闻" = ["{url}"], "tech" = ["{second}"] }}
links = "a"
"""
    )
    report = site.build()
    [failure] = report.failed_sources
    assert second in failure and "`run_deadline` of 1.5 s" in failure


def test_a_trickling_answer_over_tls_is_cut_too() -> None:
    """TLS takes the socket over: the deadline still reaches it (and the certificate is checked)."""
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("news.example.test").configure_cert(tls)
    server = Trickler("unsized body", tls=tls)
    try:
        guard = AddressGuard(allow_private=True, resolve=lambda _host, port: [(socket.AF_INET, ("127.0.0.1", port))])
        fetcher = Fetcher("publisher/test", delay=0, robots=False, timeout=(1, 1), deadline=1.5, guard=guard)
        with ca.cert_pem.tempfile() as ca_file:
            fetcher.session.verify = ca_file
            started = time.monotonic()
            with pytest.raises(SourceError, match="`deadline` of 1.5 s"):
                fetcher.get(f"https://news.example.test:{server.port}/feed.xml")
        assert time.monotonic() - started < 5 and server.served == 1
    finally:
        server.close()
