"""Slow clients (issue 17, items 7 and 19): 150 connections that say nothing, or trickle a header
a byte at a time, keep neither /healthz nor the unsubscribe POST from answering; a burst of
requests leaves one summary line in the log, not one warning per request.

The real `publisher run` on loopback, real sockets.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from test_serve_first import status_of, unsubscribe_link
from test_smtp import free_port

from conftest import Service, Site
from publisher.model import SubscriberStatus
from publisher.web.server import QueueWarningSummary

HALF_OPEN = 150


class HalfOpen:
    """`count` connections to host:port: half send nothing, half a request line and then one
    header byte a second, never finishing the request."""

    def __init__(self, port: int, count: int) -> None:
        self.sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
        self.trickling = self.sockets[::2]
        for sock in self.trickling:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stop.wait(1.0):
            for sock in self.trickling:
                try:
                    sock.sendall(b"X")
                except OSError:
                    pass  # closed by the server: that is its right

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def running(site: Site, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Service, str]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    site.write_config(site.mail_to_outbox() + f'\n[web]\npublic_url = "{base}"\n')
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
    link = unsubscribe_link(site, base, monkeypatch)
    service = Service(site.config, site.root, port)
    try:
        service.wait_until_serving()
        service.wait_until_built()
        yield service, link
    finally:
        assert service.stop() == 0, service.output()


def test_half_open_connections_keep_nothing_offline(site: Site, running: tuple[Service, str]) -> None:
    service, link = running
    port = int(service.base.rsplit(":", 1)[1])
    crowd = HalfOpen(port, HALF_OPEN)
    try:
        time.sleep(0.5)  # every one of them accepted or queued
        waits: list[float] = []
        for _ in range(6):  # for several seconds, with the crowd still there
            started = time.monotonic()
            health = requests.get(f"{service.base}/healthz", timeout=5)
            waits.append(time.monotonic() - started)
            assert health.status_code == 200, health.text
            time.sleep(0.5)
        page = requests.get(link, timeout=5)
        done = requests.post(link, data={"List-Unsubscribe": "One-Click"}, timeout=5)
    finally:
        crowd.close()
    assert max(waits) < 2, waits
    assert page.status_code == 200 and done.status_code == 200, done.text
    assert status_of(site, "reader@example.com") is SubscriberStatus.UNSUBSCRIBED


def test_a_burst_of_requests_logs_one_line_not_one_per_request(running: tuple[Service, str]) -> None:
    service, _link = running
    barrier = threading.Barrier(64)
    codes: list[int] = []

    def client() -> None:
        with requests.Session() as browser:
            barrier.wait(timeout=10)
            codes.extend(browser.get(f"{service.base}/rss.xml", timeout=30).status_code for _ in range(10))

    threads = [threading.Thread(target=client) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    log = service.stderr.read_text(errors="replace")
    assert codes == [200] * 640
    assert "Task queue depth" not in log
    # 64 clients on 8 threads queue, unless the answers come faster than they ask (a loaded
    # machine's scheduling decides): at most one summary line, never one per request. That the
    # summary is written once a minute is test_queue_warnings_are_summarised_once_a_minute's.
    assert log.count("requests waiting for one of the 8 threads") <= 1, log


def test_queue_warnings_are_summarised_once_a_minute() -> None:
    """The filter on waitress's own logger, with waitress's own dispatcher doing the logging."""
    from waitress.task import ThreadedTaskDispatcher

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    clock = [0.0]
    logger = logging.getLogger("waitress.queue")
    # A server an earlier test started in this process installed the summary on its real
    # clock: it would hold back every line within its minute before this one saw them.
    installed = [f for f in logger.filters if isinstance(f, QueueWarningSummary)]
    for earlier in installed:
        logger.removeFilter(earlier)
    summary, keep = QueueWarningSummary(clock=lambda: clock[0]), Keep(logging.WARNING)
    logger.addFilter(summary)
    logger.addHandler(keep)
    dispatcher = ThreadedTaskDispatcher()
    release = threading.Event()

    class Slow:
        def service(self) -> None:
            release.wait(5)

        def cancel(self) -> None:
            pass

        def defer(self) -> None:
            pass

    try:
        dispatcher.set_thread_count(2)
        for _ in range(30):
            dispatcher.add_task(Slow())
        clock[0] += 61
        dispatcher.add_task(Slow())
    finally:
        release.set()
        dispatcher.shutdown()
        logger.removeFilter(summary)
        logger.removeHandler(keep)
        for earlier in installed:
            logger.addFilter(earlier)
    lines = [record.getMessage() for record in records]
    assert len(lines) == 2, lines
    held = re.search(r"; (\d+) such lines held back", lines[1])
    assert held and int(held.group(1)) >= 20, lines  # 30 tasks for 2 threads: nearly every one waited
