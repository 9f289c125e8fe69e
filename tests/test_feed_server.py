"""The feed server's fast path (publisher/web/feeds.py, web/server.py): each version of a file
worked out once and kept within a byte limit, links followed only to inside the folder, and a
304 that keeps the reader's connection open. The speed itself is measured by bench/serving.py."""

from __future__ import annotations

import gzip
import http.client
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from waitress_thread import ServerThread

from conftest import Site
from publisher.config import WebConfig
from publisher.web import create_app
from publisher.web.feeds import find_inside, served_files
from publisher.web.server import create_server


@pytest.fixture
def web(site: Site) -> Iterator[Flask]:
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
    site.build()
    app = site.app()
    try:
        yield create_app(app)
    finally:
        app.close()


def test_a_rewritten_file_is_served_anew_at_once(web: Flask, site: Site) -> None:
    client = web.test_client()
    first = client.get("/tech/rss.xml", headers={"Accept-Encoding": "gzip"})
    assert first.status_code == 200 and gzip.decompress(first.data) == site.feed("tech/rss.xml")
    # The same size and the same second: a build writes a new file and renames it over the old.
    feed = site.out / "tech" / "rss.xml"
    new = site.out / "tech" / "new.tmp"
    new.write_bytes(feed.read_bytes().replace(b"<rss", b"<RSS", 1))
    stamp = feed.stat()
    os.utime(new, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    new.replace(feed)
    again = client.get("/tech/rss.xml", headers={"Accept-Encoding": "gzip"})
    assert again.status_code == 200 and gzip.decompress(again.data) == feed.read_bytes()  # not the kept bytes
    assert b"<RSS" in client.get("/tech/rss.xml", headers={"Accept-Encoding": "identity"}).data


def test_links_are_followed_only_to_inside_the_folder(web: Flask, site: Site, tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_text("<secret/>")
    (site.out / "outside.xml").symlink_to(secret)
    (site.out / "away").symlink_to(tmp_path, target_is_directory=True)
    (site.out / "inside.xml").symlink_to(site.out / "tech" / "rss.xml")
    (site.out / "also").symlink_to(site.out / "tech", target_is_directory=True)
    client = web.test_client()
    assert client.get("/outside.xml").status_code == 404
    assert client.get("/away/secret.xml").status_code == 404
    assert client.get("/away/").status_code == 404
    assert client.get("/inside.xml").data == site.feed("tech/rss.xml")
    assert client.get("/also/rss.xml").data == site.feed("tech/rss.xml")
    assert find_inside(str(site.out), str(site.out / "away" / "secret.xml")) is None


def test_the_cache_keeps_to_its_byte_limit(web: Flask, site: Site) -> None:
    with web.app_context():
        cache = served_files()
        cache.limit, cache.files = 40_000, 20
    for n in range(30):
        (site.out / f"f{n}.txt").write_bytes(b"x" * 3000 + str(n).encode())
    client = web.test_client()
    for n in range(30):
        assert client.get(f"/f{n}.txt", headers={"Accept-Encoding": "identity"}).data.endswith(str(n).encode())
    assert 0 < cache.size <= 40_000 and len(cache._entries) <= 20
    big = site.out / "big.txt"  # above an eighth of the limit: read each time, never kept
    big.write_bytes(b"y" * 6000)
    assert client.get("/big.txt", headers={"Accept-Encoding": "gzip"}).status_code == 200
    assert cache.size <= 40_000 and all(e.body is None for p, e in cache._entries.items() if p.endswith("big.txt"))


def test_a_304_keeps_the_connection_open(site: Site) -> None:
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
    site.build()
    app = site.app()
    server = create_server(create_app(app), WebConfig(), "127.0.0.1", 0)
    served = ServerThread(server, app.close)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
        connection.request("GET", "/tech/atom.xml")
        first = connection.getresponse()
        first.read()
        etag = first.getheader("ETag")
        socket_before = connection.sock
        for _ in range(3):
            connection.request("GET", "/tech/atom.xml", headers={"If-None-Match": str(etag)})
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 304 and answer.getheader("Connection") is None
            assert connection.sock is socket_before  # the same connection, not a new one
        connection.request("GET", "/tech/atom.xml", headers={"Connection": "close"})
        closing = connection.getresponse()
        closing.read()
        assert closing.status == 200 and closing.getheader("Connection") == "close"
        connection.close()
    finally:
        served.stop()
