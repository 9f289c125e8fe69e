"""One HTTP layer for every web source: polite, incremental, bounded, and right about Chinese charsets.

- a requests Session with connect/read timeouts and retries with backoff on connection
  errors, 429 and 5xx, for GET only, honouring Retry-After up to a cap;
- conditional requests: the ETag and Last-Modified of each URL are kept (`Validators`) and sent
  back, so an unchanged page costs one 304; they are saved only after the ingest that used the
  page committed (`Fetcher.commit`), so a failed run never hides content behind a 304;
- a per-host delay between requests, a clear User-Agent, a size cap;
- robots.txt honoured, read once per site and run (robots.py's `RobotsCache`, which the
  composition root shares between every source of one ingest or check);
- bounded in time: `deadline` seconds for each request whole (a site that trickles its answer
  a byte at a time never holds an ingest: `timeout` caps each socket read only), `run_deadline`
  for all of a source's requests in one run;
- bounded in reach: only the source's `hosts`, redirects included, and only public addresses
  unless `allow_private` (addresses.py checks them as the socket connects);
- pages decoded by charsets.py's `decode_html`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.util.retry import Retry

from .. import __version__
from ..errors import SourceError
from .addresses import PUBLIC_ONLY, AddressGuard, AddressRefused, GuardedAdapter, OutOfTime, guarded
from .charsets import decode_html
from .robots import MAX_REDIRECTS, NO_RULES, Robots, RobotsCache, read_start, robots_answer

MAX_BYTES = 10 * 1024 * 1024
DEADLINE = 120.0  # seconds for one request, retries and redirects included
RUN_DEADLINE = 900.0  # seconds for all of a source's requests in one run


@dataclass
class Page:
    url: str  # after redirects
    status: int  # 200, or 304 (not modified: `content` is empty)
    content: bytes
    headers: Mapping[str, str]

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def text(self) -> str:
        return decode_html(self.content, self.headers.get("Content-Type", ""))


@dataclass
class Validators:
    """ETag / Last-Modified per URL of one source: `load(url)` gives what the store keeps for
    it ({} if nothing), `save({url: headers})` keeps what a run learnt, all at once."""

    load: Callable[[str], Mapping[str, str]]
    save: Callable[[Mapping[str, Mapping[str, str]]], None]
    pending: dict[str, dict[str, str]] = field(default_factory=dict)

    def get(self, url: str) -> dict[str, str]:
        return dict(self.load(url))

    def remember(self, url: str, headers: Mapping[str, str]) -> None:
        kept = {k: headers[k] for k in ("ETag", "Last-Modified") if headers.get(k)}
        if kept:
            self.pending[url] = kept

    def commit(self) -> None:
        if self.pending:
            self.save(dict(self.pending))
        self.pending.clear()


class HostNotAllowed(SourceError):
    """A URL (a redirect, a link on a list page) on a host the source does not allow."""


class RunOutOfTime(SourceError):
    """The source's run passed its `run_deadline`: the source stops, its last good feeds stay."""


def source_hosts(urls: Iterable[str], listed: Iterable[str] = ()) -> frozenset[str]:
    """The hosts a source may read: those of its configured URLs with their `www.` twins,
    and the `hosts` it lists (`*.example.org`: any host under example.org)."""
    hosts = {host.lower().rstrip(".").strip("[]") for host in listed}
    for url in urls:
        host = (urlsplit(url).hostname or "").rstrip(".")
        if host:
            bare = host.removeprefix("www.")
            hosts |= {host, bare, f"www.{bare}"}
    return frozenset(hosts)


def host_allowed(host: str, hosts: Collection[str]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == h or (h.startswith("*.") and host.endswith(h[1:])) for h in hosts)


class _Session(requests.Session):
    """A session that follows a redirect only to a host `check` lets through."""

    def __init__(self, check: Callable[[str, str], None]) -> None:
        super().__init__()
        self.check = check

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is not None:
            self.check(urljoin(resp.url, target), resp.url)
        return target


class Fetcher:
    """GET with everything above. One per source and run, used by one thread at a time (a
    deadline cuts all of its connections); `validators` None: no conditional GETs; `hosts`
    None: any host (App always passes the source's); `guard`: which addresses; `robots_cache`:
    the run's, shared with the other sources' fetchers (None: one of its own)."""

    def __init__(
        self,
        user_agent: str,
        validators: Validators | None = None,
        delay: float = 1.0,
        timeout: tuple[float, float] = (10.0, 30.0),
        robots: bool = True,
        max_bytes: int = MAX_BYTES,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        hosts: Collection[str] | None = None,
        guard: AddressGuard = PUBLIC_ONLY,
        deadline: float = DEADLINE,
        run_deadline: float = RUN_DEADLINE,
        robots_cache: RobotsCache | None = None,
    ) -> None:
        self.user_agent, self.validators, self.delay, self.timeout = user_agent, validators, delay, timeout
        self.robots, self.max_bytes, self.sleep = robots, max_bytes, sleep
        self.hosts, self.guard, self.deadline, self.run_deadline = hosts, guard, deadline, run_deadline
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=0.5,
            backoff_max=30,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"GET", "HEAD"}),
            respect_retry_after_header=True,
            retry_after_max=60,
            raise_on_status=False,
        )
        self.adapter = GuardedAdapter(guard, max_retries=retry)
        self.session = _Session(self._check_host)
        # robots.txt's redirects are followed one by one to any host (RFC 9309), the guard still checking
        self.robots_session = requests.Session()
        for session in (self.session, self.robots_session):
            guarded(session, self.adapter).headers["User-Agent"] = user_agent
        self._last: dict[str, float] = {}
        self.robots_cache = robots_cache if robots_cache is not None else RobotsCache()
        self._lock = threading.Lock()
        self._started: float | None = None  # the run's first request

    def get(
        self, url: str, conditional: bool = True, remember: bool | None = None, accept: Collection[int] = ()
    ) -> Page:
        """The page at `url`; SourceError with the URL and what to do when it cannot be had.
        `conditional`: send the stored validators; `remember` (default: the same): keep the
        answer's for next time (pages read again later, such as a feed or an article);
        `accept`: error statuses (400, say) whose answer the caller reads instead of failing."""
        try:
            return self._get(url, conditional, remember, accept)
        except AddressRefused as exc:
            raise SourceError(
                f"{url}: {exc}; web sources read public addresses only",
                "if this is your own intranet site, set `allow_private = true` on this source",
            ) from exc

    def _get(self, url: str, conditional: bool, remember: bool | None, accept: Collection[int]) -> Page:
        self._check_host(url)
        self._check_address(url)
        if self.robots and not self._allowed(url):
            raise SourceError(
                f"{url}: the site's robots.txt does not allow {self.user_agent.split()[0]} to read it",
                "ask the site's operator, or (for your own site) set `robots = false` on this source",
            )
        headers = {}
        if conditional and self.validators is not None:
            stored = self.validators.get(url)
            if "ETag" in stored:
                headers["If-None-Match"] = stored["ETag"]
            if "Last-Modified" in stored:
                headers["If-Modified-Since"] = stored["Last-Modified"]
        self._wait_turn(url)
        try:
            with (
                self._timed(url),
                self.session.get(url, headers=headers, timeout=self.timeout, stream=True) as response,
            ):
                if response.status_code == 304:
                    return Page(response.url, 304, b"", response.headers)
                if response.status_code >= 400 and response.status_code not in accept:
                    raise SourceError(
                        f"{url}: HTTP {response.status_code} {response.reason}",
                        status_hint(response.status_code),
                        status=response.status_code,
                    )
                content = self._read(url, response)
                if (conditional if remember is None else remember) and response.status_code < 400:
                    self.remember(url, response.headers)
                return Page(response.url, response.status_code, content, response.headers)
        except requests.RequestException as exc:
            raise SourceError(
                f"{url}: {_reason(exc)}", "check the URL and that the site is up; the last good feeds stay"
            ) from exc

    @contextmanager
    def _timed(self, url: str) -> Iterator[None]:
        """One request, its retries and redirects, within `deadline` seconds and what is left
        of `run_deadline`; past that its connections are cut, and it fails naming the URL."""
        now = time.monotonic()
        self._started = now if self._started is None else self._started
        left = self.run_deadline - (now - self._started)
        budget = min(self.deadline, left)
        if budget <= 0:
            raise self._late(url, budget, left)
        self.adapter.reset()
        try:
            with self.adapter.cut_after(budget):
                yield
        except SourceError:
            raise
        except Exception as exc:  # a cut connection shows as any of requests', urllib3's or ssl's errors
            if self.adapter.expired:
                raise self._late(url, budget, left) from exc
            raise
        if self.adapter.expired:  # an answer without a length just ends where it was cut
            raise self._late(url, budget, left)

    def _late(self, url: str, budget: float, left: float) -> SourceError:
        if budget < self.deadline or left <= 0:
            return RunOutOfTime(
                f"{url}: the source's run took more than its `run_deadline` of {self.run_deadline:g} s",
                "the site is slow or the source reads many pages: raise `run_deadline` on this source, "
                "or lower its max_pages; the next run tries again and the last good feeds stay",
            )
        return SourceError(
            f"{url}: no complete answer within the `deadline` of {self.deadline:g} s",
            "the site is slow or sends its answer a little at a time: raise `deadline` on this source "
            "if it is only slow",
        )

    def _check_host(self, url: str, redirected_from: str | None = None) -> None:
        host = urlsplit(url).hostname or ""
        if self.hosts is not None and not host_allowed(host, self.hosts):
            via = f" (a redirect from {redirected_from})" if redirected_from else ""
            raise HostNotAllowed(
                f"{url}: {host} is not one of this source's hosts{via}",
                f"if the source may read from {host}, add it to `hosts` on this source",
            )

    def _check_address(self, url: str) -> None:
        """Refuse early a host that resolves to no allowed address (the connection checks again)."""
        parts = urlsplit(url)
        if self.guard.allow_private:
            return
        try:
            self.guard.addresses(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        except (OSError, ValueError):
            pass  # no address, or a bad port: the request itself reports it

    def remember(self, url: str, headers: Mapping[str, str]) -> None:
        """Keep the validators of an answer to `url` (once `commit` is called): for a caller
        that knows only at the end of its walk whether the pages it read may answer 304."""
        if self.validators is not None:
            self.validators.remember(url, headers)

    def commit(self) -> None:
        """The ingest that used these pages committed: keep their validators for next time."""
        if self.validators is not None:
            self.validators.commit()

    def close(self) -> None:
        self.session.close()
        self.robots_session.close()

    def _read(self, url: str, response: requests.Response) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise SourceError(f"{url}: {declared} bytes is more than the {self.max_bytes}-byte limit", "")
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > self.max_bytes:
                raise SourceError(f"{url}: more than the {self.max_bytes}-byte limit", "is this the right URL?")
            chunks.append(chunk)
        return b"".join(chunks)

    def _wait_turn(self, url: str) -> None:
        """At most one request per `delay` seconds to a host."""
        host = urlsplit(url).netloc
        with self._lock:
            wait = self._last.get(host, -1e9) + self.delay - time.monotonic()
            self._last[host] = time.monotonic() + max(wait, 0.0)
        if wait > 0:
            self.sleep(wait)

    def _allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        robots = self.robots_cache.rules(url, lambda: self._load_robots(origin))
        if robots.unreachable:
            raise SourceError(
                f"{url}: the site's robots.txt could not be read ({robots.unreachable}), and until it can "
                "nothing is read from the site (RFC 9309)",
                "the next run asks again; check that the site is up, the last good feeds stay",
            )
        return robots.allows(self.user_agent.split("/")[0], url)

    def _load_robots(self, origin: str) -> tuple[Robots, bool]:
        """(robots, shared), following up to five redirects to any host (RFC 9309; the address
        guard still applies: a redirect to an address it refuses makes robots.txt unreachable,
        not the page's request refused). Not shared: what this fetcher's own limits made of it
        (its run out of time); another source may do better."""
        url = origin + "/robots.txt"
        for hop in range(MAX_REDIRECTS + 1):
            self._wait_turn(url)
            try:
                with (
                    self._timed(url),
                    self.robots_session.get(url, timeout=self.timeout, allow_redirects=False, stream=True) as response,
                ):
                    content = b"" if response.is_redirect else read_start(response.iter_content(64 * 1024))
            except OutOfTime:
                return NO_RULES, False
            except requests.RequestException as exc:
                return Robots(unreachable=_reason(exc)), True
            except AddressRefused as exc:
                if hop == 0:  # the site's own host: its pages are refused as well, and say so
                    raise
                return Robots(unreachable=f"robots.txt redirected to {exc.host}, a {exc.kind} address"), True
            target = response.headers.get("Location") if response.is_redirect else None
            if target is None:
                return robots_answer(response.status_code, content, response.headers.get("Content-Type", "")), True
            url = urljoin(url, target)
        return NO_RULES, True  # more than five redirects: unavailable, as a 4xx


def user_agent(site_url: str) -> str:
    return f"publisher/{__version__} (+{site_url}; feed and newsletter publisher)"


def status_hint(status: int) -> str:
    return {
        400: "the site refused the request: check the URL and its query",
        401: "the page needs a login: publisher reads public pages only",
        403: "the site refuses us: ask its operator to allow the User-Agent",
        404: "check the URL in the config",
        410: "the page is gone: remove or change this URL",
        429: "the site asks us to slow down: raise `delay` on this source",
    }.get(status, "the site had a problem; the next run tries again and the last good feeds stay")


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.exceptions.SSLError):
        return "its TLS certificate did not verify (certificates are always checked)"
    # After the retries, a timeout arrives as a ConnectionError wrapping urllib3's MaxRetryError.
    if isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(exc).lower():
        return "no answer in time"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "cannot connect"
    return str(exc)
