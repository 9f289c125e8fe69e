"""The WSGI server of `publisher run` and `serve`: waitress, with limits that keep slow clients
from taking it down, the one proxy whose `X-Forwarded-For` it believes, and its per-request
queue warnings summarised.

waitress's defaults let 100 connections in and close an idle one after 120 s, checked every
30 s: 120 clients that connect and say nothing held every slot for two minutes, and /healthz
and the unsubscribe POST waited behind them in the kernel's backlog. Here an idle connection
goes after `[web] channel_timeout` seconds (checked every `CLEANUP_INTERVAL`), many more
connections fit (`[web] connection_limit`, polled with poll(), which has no 1,024 descriptor
ceiling as select() does), and the process may open that many files.

waitress 3 also closes an HTTP/1.1 connection after every answer without a body (a 304, a 204):
it keeps a connection open only when it can send a Content-Length, and those answers have none.
Feed readers poll with validators, so most of the feed server's answers are 304s, and each one
cost the reader a new TCP connection (on loopback under wrk, a third of the 304s' rate). Here
such an answer keeps the connection, unless the client asked to close it (`KeptAliveTask`).
"""

from __future__ import annotations

import logging
import resource
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import waitress
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask

if TYPE_CHECKING:
    from flask import Flask
    from waitress.server import MultiSocketServer

    from ..config import WebConfig

log = logging.getLogger(__name__)

THREADS = 8  # requests served at once; more wait in waitress's queue
CLEANUP_INTERVAL = 2  # seconds between two looks for idle connections
SPARE_FILES = 64  # descriptors beyond the connections: the store, templates, output files, logs


def create_server(web: Flask, settings: WebConfig, host: str, port: int) -> BaseWSGIServer | MultiSocketServer:
    """waitress serving `web` on host:port, configured from `[web]`."""
    options: dict[str, Any] = {
        "threads": THREADS,
        "connection_limit": settings.connection_limit,
        "channel_timeout": settings.channel_timeout,
        "cleanup_interval": min(CLEANUP_INTERVAL, settings.channel_timeout),
        "asyncore_use_poll": True,
        "ident": "publisher",
    }
    if settings.trust_proxy:
        # waitress drops X-Forwarded-For unless it comes from the proxy named here; from it,
        # the last address (the one the proxy appended) becomes the request's remote address.
        options |= {
            "trusted_proxy": settings.trusted_proxy,
            "trusted_proxy_count": 1,
            "trusted_proxy_headers": {"x-forwarded-for"},
        }
    allow_open_files(settings.connection_limit + SPARE_FILES)
    summarise_queue_warnings()
    server = waitress.create_server(web, host=host, port=port, **options)
    keep_alive_without_body(server)
    return server


class KeptAliveTask(WSGITask):  # type: ignore[misc]
    """A WSGI task whose bodiless HTTP/1.1 answers (304, 204) keep the connection, as RFC 9112
    allows: they end at their headers, so the client knows where the next answer starts."""

    _bodiless_keep = False

    def build_response_header(self) -> bytes:
        connection = self.request.headers.get("CONNECTION", "").lower()
        self._bodiless_keep = (
            not self.has_body and self.version == "1.1" and not self.close_on_finish and connection != "close"
        )
        try:
            header: bytes = super().build_response_header()
        finally:
            self._bodiless_keep = False
        return header

    def set_close_on_finish(self) -> None:
        if not self._bodiless_keep:  # waitress closes for want of a Content-Length: there is no body
            super().set_close_on_finish()


class KeptAliveChannel(HTTPChannel):  # type: ignore[misc]
    task_class = KeptAliveTask


def keep_alive_without_body(server: BaseWSGIServer | MultiSocketServer) -> None:
    """Every listening socket of `server` hands its connections to KeptAliveChannel."""
    for each in (server, *getattr(server, "map", {}).values()):
        if isinstance(each, BaseWSGIServer):
            each.channel_class = KeptAliveChannel


def serve_in_thread(server: BaseWSGIServer | MultiSocketServer, name: str) -> threading.Thread:
    """Run a second server (the console's own address) beside the main one, in a daemon
    thread: it ends with the process, whose main thread runs the first server's loop."""
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    return thread


def allow_open_files(wanted: int) -> None:
    """Raise this process's soft limit on open files to `wanted` (up to the hard limit), so
    the connection limit, not EMFILE, decides who waits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning(
            "only %d open files allowed (the hard limit): lower [web] connection_limit to %d or raise LimitNOFILE",
            hard,
            max(hard - SPARE_FILES, 1),
        )


class QueueWarningSummary(logging.Filter):
    """Lets one of waitress's "Task queue depth is N" warnings through a minute, saying how
    many it stands for and the deepest queue among them. Under load waitress logs one per
    request that waits for a thread, thousands a minute, which drowned every other line."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every, self.clock = every, clock
        self._lock = threading.Lock()
        self._next = float("-inf")
        self._held = 0
        self._deepest = 0

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        depth = args[0] if args and isinstance(args[0], int) else 0
        with self._lock:
            self._deepest = max(self._deepest, depth)
            now = self.clock()
            if now < self._next:
                self._held += 1
                return False
            held, deepest = self._held, self._deepest
            self._held, self._deepest, self._next = 0, 0, now + self.every
        record.msg = (
            "%d requests waiting for one of the %d threads (deepest since the last such line: %d;"
            " %d such lines held back; at most one a minute)"
        )
        record.args = (depth, THREADS, deepest, held)
        return True


def summarise_queue_warnings() -> None:
    """Install the summary on waitress's queue logger, once per process."""
    queue_logger = logging.getLogger("waitress.queue")
    if not any(isinstance(f, QueueWarningSummary) for f in queue_logger.filters):
        queue_logger.addFilter(QueueWarningSummary())
