"""robots.txt: read once per site (scheme, host and port) and run, shared by the fetchers of
every source one ingest or check reads (`RobotsCache`), and what an answer to it means."""

from __future__ import annotations

import threading
from collections.abc import Callable
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from .charsets import decode_html


class RobotsCache:
    """The robots.txt rules of each site (scheme, host, port) for one run, shared by the
    fetchers of every source the run reads, so a site several sources read is asked once.
    Thread-safe: a fetcher asking for a site whose rules another is loading waits for them."""

    def __init__(self) -> None:
        self._rules: dict[tuple[str, str, int], RobotFileParser | None] = {}
        self._loading: dict[tuple[str, str, int], threading.Lock] = {}
        self._lock = threading.Lock()

    def rules(self, url: str, load: Callable[[], tuple[RobotFileParser | None, bool]]) -> RobotFileParser | None:
        """The rules for `url`'s site; `load` gives (rules, shared): an answer that says
        something about the site only (not about the asking source's limits) is kept."""
        site = _site(url)
        with self._lock:
            loading = self._loading.setdefault(site, threading.Lock())
        with loading:
            if site in self._rules:
                return self._rules[site]
            rules, shared = load()
            if shared:
                self._rules[site] = rules
            return rules


def _site(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").rstrip("."), port or (443 if scheme == "https" else 80)


def parse_robots(content: bytes, content_type: str) -> RobotFileParser:
    """The rules of a robots.txt file as read (its first 500 KB)."""
    rules = RobotFileParser()
    rules.parse(decode_html(content[:500_000], content_type).splitlines())
    return rules
