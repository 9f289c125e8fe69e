"""`publisher run` serves first: a source whose server never answers keeps nothing offline.

The real process, a real loopback server that accepts connections and never says a word, a
real subscriber added with the CLI and a real unsubscribe link.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from test_smtp import free_port

from conftest import Service, Site
from publisher.model import SubscriberStatus
from publisher.store import Store
from publisher.tokens import make_token

KEY = "service-test-signing-key-0123456789"  # what conftest.Service gives the process


class SilentServer:
    """Accepts every connection on loopback and never answers; counts the connections."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _address = self.listener.accept()
            except OSError:
                return  # closed
            self.accepted.append(connection)

    def close(self) -> None:
        self.listener.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def unsubscribe_link(site: Site, base: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A subscriber added with the CLI, and their unsubscribe link as a digest would carry it."""
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    assert site.cli("subscribers", "add", "reader@example.com").exit_code == 0
    store = Store(site.store_url)
    try:
        reader = store.subscriber("reader@example.com")
    finally:
        store.close()
    assert reader is not None and reader.id is not None and reader.status is SubscriberStatus.CONFIRMED
    expires = datetime.now(UTC) + timedelta(days=9)
    return f"{base}/unsubscribe/{make_token(KEY.encode(), 'unsubscribe', reader.id, reader.email, expires)}"


def status_of(site: Site, email: str) -> SubscriberStatus:
    store = Store(site.store_url)
    try:
        found = store.subscriber(email)
    finally:
        store.close()
    assert found is not None
    return found.status


def served_with(site: Site, source: str) -> tuple[int, str]:
    """The site's config with mail to its outbox, its pages on a free loopback port, and one more
    source (TOML keys) on a loopback test server, in the 科技创新 category: (port, base URL)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    site.write_config(
        site.mail_to_outbox()
        + f'\n[web]\npublic_url = "{base}"\n[[sources]]\n{source}'
        + 'category = "科技创新"\nallow_private = true  # the test server is on loopback\n'
    )
    return port, base


def test_a_source_that_never_answers_keeps_nothing_offline(
    site: Site, silent: SilentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, base = served_with(site, f'type = "feed"\nurl = "http://127.0.0.1:{silent.port}/feed.xml"\n')
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
    unsubscribe = unsubscribe_link(site, base, monkeypatch)

    started = time.monotonic()
    service = Service(site.config, site.root, port)
    try:
        health = _first_answer(service, f"{base}/healthz", started + 5)
        while not silent.accepted and time.monotonic() < started + 5:
            time.sleep(0.02)
        assert silent.accepted, f"the source was not being read\n{service.output()}"
        page = requests.get(unsubscribe, timeout=5)  # while the source hangs
        done = requests.post(unsubscribe, timeout=5)
        within = time.monotonic() - started
        later = requests.get(f"{base}/healthz", timeout=5).json()
        stopping = time.monotonic()
    finally:
        code = service.stop()  # fails the test if it takes more than 10 s
    stopped_in = time.monotonic() - stopping

    assert within < 5, f"{within:.1f} s\n{service.output()}"
    assert health.status_code == 200, health.text
    assert health.json()["scheduler"]["ingest"].startswith("running since "), health.json()
    assert health.json()["last_ingest"] is None  # the first one is still running
    assert later["scheduler"]["ingest"].startswith("running since "), later
    assert page.status_code == 200 and "reader@example.com" in page.text
    assert done.status_code == 200, done.text
    assert status_of(site, "reader@example.com") is SubscriberStatus.UNSUBSCRIBED
    assert stopped_in < 10 and code == 0, service.output()
    assert "stopping without the ingest running since" in service.output()


class HalfAnsweringApi(ThreadingHTTPServer):
    """A JSON API whose first page lists `items` articles at once and whose second never comes."""

    daemon_threads = True

    def __init__(self, items: int) -> None:
        self.items, self.hanging, self.release = items, threading.Event(), threading.Event()
        super().__init__(("127.0.0.1", 0), _ApiHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _ApiHandler(BaseHTTPRequestHandler):
    server: HalfAnsweringApi

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if "page=1" not in self.path:
            self.server.hanging.set()
            self.server.release.wait(60)
            return
        listing = [
            {"id": f"n{i}", "title": f"新闻 {i}", "date": "2026-11-18 09:00", "content": f"<p>正文 {i}。</p>",
             "url": f"https://www.example.org/n/{i}.html"}
            for i in range(self.server.items)
        ]  # fmt: skip
        body = json.dumps(listing).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def test_a_source_that_hangs_after_many_items_does_not_hold_the_write_lock(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More items than the store writes in one batch, then a page that never comes: the items
    read so far must not be written (so locking the database) before the source is done."""
    api = HalfAnsweringApi(items=1500)
    url = f"http://127.0.0.1:{api.server_address[1]}/api?page={{page}}"
    port, base = served_with(site, f'type = "json"\nurl = "{url}"\ndelay = 0\nrobots = false\n')
    unsubscribe = unsubscribe_link(site, base, monkeypatch)
    service = Service(site.config, site.root, port)
    try:
        service.wait_until_serving()
        assert api.hanging.wait(30), service.output()
        time.sleep(0.5)
        done = requests.post(unsubscribe, timeout=5)
    finally:
        service.stop()
        api.release.set()
        api.shutdown()
        api.server_close()
    assert done.status_code == 200, done.text
    assert status_of(site, "reader@example.com") is SubscriberStatus.UNSUBSCRIBED


def _first_answer(service: Service, url: str, deadline: float) -> requests.Response:
    """The first answer from `url`, asked again until `deadline` (monotonic)."""
    while True:
        try:
            return requests.get(url, timeout=max(0.1, deadline - time.monotonic()))
        except requests.ConnectionError:
            if time.monotonic() > deadline or service.process.poll() is not None:
                pytest.fail(f"no answer from {url} in time\n{service.output()}")
            time.sleep(0.05)
