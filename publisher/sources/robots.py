"""robots.txt: read once per site (scheme, host and port) and run, shared by the fetchers of
every source one ingest or check reads (`RobotsCache`), and what an answer to it means, as
RFC 9309 says (2.3.1): up to five redirects are followed, to any host, and the rules are kept
for the site asked; a 4xx (or more redirects) means there are no rules, everything is allowed;
a 5xx or no answer at all means nothing may be read from the site for now (this run)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from .charsets import decode_html

MAX_REDIRECTS = 5  # RFC 9309 2.3.1.2: follow at least five; past them, robots.txt is unavailable
MAX_BYTES = 500 * 1024  # RFC 9309 2.5: parse at least 500 KiB; what follows is never read


@dataclass(frozen=True)
class Robots:
    """What a site's robots.txt says for this run: its `rules`; none (a 4xx: all allowed); or
    `unreachable` (why: a 5xx, no answer), which allows nothing until the next run asks again."""

    rules: RobotFileParser | None = None
    unreachable: str = ""

    def allows(self, agent: str, url: str) -> bool:
        if self.unreachable:
            return False
        return self.rules is None or self.rules.can_fetch(agent, url)


NO_RULES = Robots()


class RobotsCache:
    """The robots.txt rules of each site (scheme, host, port) for one run, shared by the
    fetchers of every source the run reads, so a site several sources read is asked once.
    Thread-safe: a fetcher asking for a site whose rules another is loading waits for them."""

    def __init__(self) -> None:
        self._rules: dict[tuple[str, str, int], Robots] = {}
        self._loading: dict[tuple[str, str, int], threading.Lock] = {}
        self._lock = threading.Lock()

    def rules(self, url: str, load: Callable[[], tuple[Robots, bool]]) -> Robots:
        """The rules for `url`'s site, kept under that site whatever host a redirect led to;
        `load` gives (robots, shared): an answer that says something about the site only (not
        about the asking source's limits) is kept."""
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


def robots_answer(status: int, content: bytes, content_type: str) -> Robots:
    """What a final (not redirected) answer to a robots.txt request means; `content`: its first
    `MAX_BYTES` at most (`read_start`)."""
    if status >= 500:
        return Robots(unreachable=f"HTTP {status}")
    if status >= 400:
        return NO_RULES
    rules = RobotFileParser()
    rules.parse(decode_html(content, content_type).splitlines())
    return Robots(rules)


def read_start(chunks: Iterable[bytes]) -> bytes:
    """The first `MAX_BYTES` of a robots.txt answer read in `chunks`; the rest is never read,
    so a robots.txt (or a redirect's target) that never ends cannot hold the run."""
    start = bytearray()
    for chunk in chunks:
        start += chunk
        if len(start) >= MAX_BYTES:
            break
    return bytes(start[:MAX_BYTES])
