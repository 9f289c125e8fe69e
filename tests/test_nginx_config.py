"""config/nginx.conf, the nginx set in front of the feed server (docs/operations.md): every route
of the web app still reaches publisher through it, and nginx, run for real on loopback with the
file as bench/serving.py runs it, answers a feed as publisher does and passes the rest on."""

from __future__ import annotations

import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import requests
from waitress_thread import ServerThread

from conftest import Site
from publisher.config import WebConfig
from publisher.web import create_app
from publisher.web.server import create_server

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "config" / "nginx.conf"
HUB = "https://pubsubhubbub.appspot.com/"


def bench_serving() -> ModuleType:
    """bench/serving.py, whose nginx_config() turns the shipped file into a runnable one."""
    spec = importlib.util.spec_from_file_location("bench_serving", ROOT / "bench" / "serving.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def static_patterns() -> list[re.Pattern[str]]:
    """The regular expressions of the locations nginx answers itself (not proxied)."""
    found = re.findall(
        r'^    location ~ "?(.+?)"? \{\n(?:(?!\n    \}).)*?(?:try_files|return 404)', CONF.read_text(), re.M | re.S
    )
    assert len(found) == 2, found  # the dotfiles, the files that are not HTML
    return [re.compile(p) for p in found]


def test_every_route_of_the_web_app_goes_to_publisher(site: Site) -> None:
    site.write_config(site.mail_to_outbox() + f'\n[websub]\nhubs = ["{HUB}"]\n')
    app = site.app()
    try:
        rules = [r.rule for r in create_app(app).url_map.iter_rules() if not r.endpoint.startswith("feeds.")]
    finally:
        app.close()
    assert "/subscribe" in rules and "/healthz" in rules and any(r.startswith("/admin") for r in rules)
    for rule in rules:
        sample = re.sub(r"<(?:[^:>]+:)?[^>]+>", "a1", rule)
        caught = [p.pattern for p in static_patterns() if p.search(sample)]
        assert not caught, f"{rule} ({sample}) would be answered by nginx itself through {caught}, not publisher"
    # and the feeds' names are answered by nginx: the point of the file
    for feed in ("/rss.xml", "/tech/atom.xml", "/zh-hant/policy/feed.json", "/feeds.opml", "/digests/atom.xml"):
        assert any(p.search(feed) for p in static_patterns()), feed
    assert not any(p.search(page) for p in static_patterns() for page in ("/", "/tech/", "/index.html"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def nginx_and_publisher(site: Site, tmp_path: Path) -> Iterator[tuple[str, str]]:
    nginx = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if nginx is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light): config/nginx.conf not run")
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
    site.write_config(site.mail_to_outbox())
    site.build()  # then served with the shipped file's hub and address (a build would ping the hub)
    site.write_config(site.mail_to_outbox() + f'\n[websub]\nhubs = ["{HUB}"]\n')
    text = site.config.read_text().replace("[output]\n", '[output]\nbase_url = "https://news.example.org"\n')
    site.config.write_text(text)
    app = site.app()
    server = create_server(create_app(app), WebConfig(), "127.0.0.1", 0)
    served = ServerThread(server, app.close)
    work, port = tmp_path / "nginx", free_port()
    work.mkdir()
    conf = work / "nginx.conf"
    conf.write_text(bench_serving().nginx_config(CONF.read_text(), site.out, port, server.effective_port, work))
    tested = subprocess.run([nginx, "-t", "-q", "-p", str(work), "-c", str(conf)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stderr
    proc = subprocess.Popen([nginx, "-p", str(work), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{server.effective_port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        served.stop()


def test_nginx_answers_a_feed_as_publisher_does(nginx_and_publisher: tuple[str, str], site: Site) -> None:
    nginx, publisher = nginx_and_publisher
    for path in ("/tech/rss.xml", "/atom.xml", "/tech/feed.json", "/feeds.opml"):
        ours = requests.get(publisher + path, headers={"Accept-Encoding": "gzip"}, timeout=10)
        theirs = requests.get(nginx + path, headers={"Accept-Encoding": "gzip"}, timeout=10)
        assert theirs.status_code == 200 and theirs.content == ours.content == site.feed(path.lstrip("/"))
        for name in ("Content-Type", "Link", "Cache-Control", "Vary", "X-Content-Type-Options", "Content-Encoding"):
            same = (theirs.headers.get(name) or "").replace(" ", "") == (ours.headers.get(name) or "").replace(" ", "")
            assert same, (path, name, theirs.headers.get(name), ours.headers.get(name))
        again = requests.get(nginx + path, headers={"If-None-Match": theirs.headers["ETag"]}, timeout=10)
        assert again.status_code == 304
    link = requests.get(nginx + "/tech/rss.xml", timeout=10).headers["Link"]
    assert link.endswith('<https://news.example.org/tech/rss.xml>; rel="self"')
    for script in ("", "zh-hant/"):  # the digest archive's feeds are announced to no hub, by either server
        (site.out / script / "digests").mkdir(parents=True)
        (site.out / script / "digests" / "atom.xml").write_bytes(site.feed("atom.xml"))
        for server in (nginx, publisher):
            archived = requests.get(f"{server}/{script}digests/atom.xml", timeout=10)
            assert archived.status_code == 200 and "Link" not in archived.headers, (server, script)


def test_nginx_passes_pages_and_routes_to_publisher_and_hides_what_publisher_hides(
    nginx_and_publisher: tuple[str, str], site: Site, tmp_path: Path
) -> None:
    nginx, _publisher = nginx_and_publisher
    page = requests.get(nginx + "/tech/", timeout=10)
    assert page.status_code == 200 and "'sha256-" in page.headers["Content-Security-Policy"]  # publisher's policy
    assert requests.get(nginx + "/healthz", timeout=10).status_code == 200
    assert requests.get(nginx + "/subscribe", timeout=10).status_code == 200
    (site.out / ".rss.xml.1.tmp").write_text("half written")
    (tmp_path / "secret.xml").write_text("<secret/>")
    (site.out / "outside.xml").symlink_to(tmp_path / "secret.xml")
    for hidden in ("/.rss.xml.1.tmp", "/outside.xml", "/../publisher.toml", "/nothing.xml"):
        assert requests.get(nginx + hidden, timeout=10).status_code == 404, hidden
