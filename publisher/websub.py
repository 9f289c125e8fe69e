"""WebSub (W3C Recommendation, 2018-01-23): telling the hubs that feeds changed.

Every feed names each `[websub] hubs` hub in a `rel="hub"` link beside its `rel="self"`
(publisher.feeds), and the feed server sends both as `Link` headers (publisher.web.feeds).
A build keeps each changed feed's URL waiting for each hub in the store (`keep_waiting`, before
it forgets what changed), and a thread of its own (`wake`) POSTs `hub.mode=publish` to each
configured hub with the URLs waiting for it (`hub.url` repeated, the form Google's hub and
websubhub.com take; at most `PING_BATCH` of them, several POSTs in turn when more wait), each
after claiming the hub in the store, so that two processes on one store never send the same
URLs. The hub's answer to each POST decides:

- 2xx: taken; those URLs stop waiting;
- 429, 5xx, no answer in `timeout` seconds, a connection that fails: tried again after a
  backoff (30 s, doubling, at most an hour; a `Retry-After` in seconds is honoured), by the
  thread while its process lives, else by the next build or `publisher run`'s start;
- anything else (a 4xx, a redirect): refused; logged with the first line of the hub's answer
  (of its first `ANSWER_LIMIT` bytes) and the URLs dropped, since asking again would be
  refused again.

The build never waits for a hub. `close` lets the round in flight end (each POST is cut at
`timeout`) and stops, so `publisher build` still tells the hubs before it exits; whatever a
hub did not take stays waiting in the store. As for a web source, a hub is reached only at a
public address unless `allow_private`, checked as the socket connects, without proxies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests

from . import __version__
from .sources.addresses import AddressGuard, AddressRefused, GuardedAdapter, OutOfTime, guarded
from .store import HubState, Store, Waiting

log = logging.getLogger(__name__)

FIRST_RETRY = 30.0  # seconds after a first failure; doubled after each one
LAST_RETRY = 3600.0  # seconds at most between two tries
PING_BATCH = 100  # hub.url values in one POST at most: more wait for the next POST
ANSWER_LIMIT = 4096  # bytes of a hub's answer read at most
CLAIM_MARGIN = 10.0  # seconds a claim on a hub outlasts the ping's `timeout`
USER_AGENT = f"publisher/{__version__} (WebSub publisher; +https://github.com/publisher-feeds/publisher)"


@dataclass(frozen=True, slots=True)
class Answer:
    """What one ping came to: `taken`, or why not and whether to try again (`retry_after`:
    the seconds a 429 or 503 asked for)."""

    taken: bool
    retry: bool = False
    reason: str = ""
    retry_after: float | None = None


def publish_body(urls: Sequence[str]) -> str:
    """The form a hub is sent: `hub.mode=publish` and one `hub.url` per feed."""
    return urlencode([("hub.mode", "publish"), *(("hub.url", url) for url in urls)])


def ping(hub: str, urls: Sequence[str], timeout: float, guard: AddressGuard) -> Answer:
    """POST one publish notification to `hub`, cut after `timeout` seconds in all."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": USER_AGENT}
    adapter = GuardedAdapter(guard)
    try:
        with guarded(requests.Session(), adapter) as session, adapter.cut_after(timeout):
            answer = session.post(hub, data=publish_body(urls), headers=headers, timeout=timeout,
                                  allow_redirects=False, stream=True)  # fmt: skip
            with answer:  # its first KiBs: enough for the line logged, and a hub may send no end
                head = answer.raw.read(ANSWER_LIMIT, decode_content=True)
            text = head.decode(answer.encoding or "utf-8", errors="replace")
    except AddressRefused as exc:
        return Answer(False, reason=f"{exc}; set [websub] allow_private = true for a hub of yours")
    except (requests.RequestException, OutOfTime, OSError) as exc:
        if adapter.expired:
            return Answer(False, retry=True, reason=f"no complete answer within {timeout:g} s")
        return Answer(False, retry=True, reason=f"{exc.__class__.__name__}: {exc}")
    if adapter.expired:
        return Answer(False, retry=True, reason=f"no complete answer within {timeout:g} s")
    status = answer.status_code
    if 200 <= status < 300:
        return Answer(True)
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")[:200]
    reason = f"HTTP {status}" + (f": {first_line}" if first_line else "")
    if status == 429 or status >= 500:
        wait = answer.headers.get("Retry-After", "")
        return Answer(False, retry=True, reason=reason, retry_after=float(wait) if wait.isdigit() else None)
    if 300 <= status < 400:
        reason += f" (moved to {answer.headers.get('Location', '?')}: configure that URL)"
    return Answer(False, reason=reason)


class HubPings:
    """The pings of one process: what waits is in the store, one thread sends it."""

    def __init__(
        self,
        store: Store,
        hubs: Sequence[str],  # the configured ones: rows left for another are not sent
        timeout: float = 10.0,
        allow_private: bool = False,
        guard: AddressGuard | None = None,  # tests: another guard than AddressGuard(allow_private)
        retry: tuple[float, float] | None = None,  # the first wait and the longest (FIRST_RETRY, LAST_RETRY)
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.hubs, self.timeout, self.clock = store, tuple(hubs), timeout, clock
        self.retry = retry or (FIRST_RETRY, LAST_RETRY)
        self.guard = guard or AddressGuard(allow_private=allow_private)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._round = 0  # POSTs in the round in flight (none before the first): how long `close` may wait

    def keep_waiting(self, hubs: Sequence[str], urls: Sequence[str]) -> None:
        """Every URL waits for every hub in the store (hubs not in `hubs` are forgotten); `wake`
        sends them. A store error is raised: the caller keeps its own marks of what changed."""
        self.store.publish_to_hubs(hubs, urls)

    def wake(self) -> None:
        """Send what waits and is due, in the background (a build that changed nothing, or
        `publisher run`'s start, retries this way)."""
        with self._lock:
            if self._closing.is_set():
                return
            self._wake.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="publisher-websub", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                wait = self.deliver_due()
            except Exception as exc:  # noqa: BLE001 - the store failed: the next build tries again
                log.warning("WebSub: could not read or keep the pings waiting: %s", exc)
                wait = None
            with self._lock:
                if self._closing.is_set() or (wait is None and not self._wake.is_set()):
                    self._thread = None
                    return
            self._wake.wait(wait)
            with self._lock:
                if self._closing.is_set():  # woken by `close`: no new round
                    self._thread = None
                    return

    def deliver_due(self) -> float | None:
        """Ping each hub whose next try is due with all that waits for it, `PING_BATCH` URLs a
        POST (the next POST once the hub took one). A hub is claimed in the store before each
        POST and what waits read only then, so another process on the store never sends the
        same URLs too. Returns the seconds until the next hub is due (or let go by another
        process), None when nothing waits."""
        waiting = self._waiting()
        self._round = sum(-(-len(items) // PING_BATCH) for items in waiting.values())
        try:
            for hub in waiting:
                while self._deliver(hub):
                    pass
        finally:
            self._round = 0
        left = self._waiting()  # a build may have added some meanwhile
        if not left:
            return None
        now = self.clock()
        states = [self.store.hub_state(hub) for hub in left]
        tries = [max((m for m in (s.next_try, s.in_flight_until) if m is not None), default=now) for s in states]
        return min(max(0.0, (due - now).total_seconds()) for due in tries)

    def _waiting(self) -> dict[str, list[Waiting]]:
        """What waits for the configured hubs (a hub removed from the config is not pinged; its
        rows go at the next build that keeps URLs waiting)."""
        return {hub: items for hub, items in self.store.waiting_for_hubs().items() if hub in self.hubs}

    def _deliver(self, hub: str) -> bool:
        """One POST of what waits for `hub`, if it is due and no other process holds it; True
        when more may be sent to it now."""
        now = self.clock()
        if self.store.claim_hub(hub, now, now + timedelta(seconds=self.timeout + CLAIM_MARGIN)) is None:
            return False
        try:
            items = self.store.waiting_for(hub)[:PING_BATCH]
            if not items:
                self.store.release_hub(hub)
                return False
            urls = [item.url for item in items]
            answer = ping(hub, urls, self.timeout, self.guard)
        except BaseException:
            self.store.release_hub(hub)
            raise
        now = self.clock()
        if answer.taken:
            self.store.delivered_to_hub(items)
            self.store.release_hub(hub, lambda state: replace(state, attempts=0, next_try=None, last_success=now))
            log.info("WebSub: %s took %d feed URL(s)", hub, len(urls))
            return True
        if not answer.retry:
            self.store.delivered_to_hub(items)  # dropped: asking again would be refused again
            self.store.release_hub(hub, lambda state: replace(state, attempts=0, next_try=None,
                                   last_error=answer.reason, last_error_at=now, refused=True))  # fmt: skip
            log.warning("WebSub: %s refused the ping of %d feed URL(s): %s", hub, len(urls), answer.reason)
            return True  # the next part is a request of its own
        first, longest = self.retry

        def failed(state: HubState) -> HubState:
            wait = min(first * 2**state.attempts, longest)
            if answer.retry_after is not None:
                wait = max(wait, min(answer.retry_after, longest))
            return replace(state, attempts=state.attempts + 1, next_try=now + timedelta(seconds=wait),
                           last_error=answer.reason, last_error_at=now, refused=False)  # fmt: skip

        state = self.store.release_hub(hub, failed)
        wait = (state.next_try - now).total_seconds() if state.next_try else 0.0
        log.warning("WebSub: %s did not take %d feed URL(s) (%s); trying again in %g s", hub, len(urls),
                    answer.reason, wait)  # fmt: skip
        return False

    @property
    def closed(self) -> bool:
        return self._closing.is_set()

    def close(self) -> None:
        """Let the round in flight end (each ping is cut at `timeout`), then stop; what waits
        stays in the store. Waiting between rounds, the thread stops at once."""
        with self._lock:
            self._closing.set()
            self._wake.set()
            thread = self._thread
        if thread is not None:
            thread.join(self.timeout * self._round + 2)


def hubs_view(store: Store, hubs: Sequence[str]) -> dict[str, Any]:
    """`/healthz`'s and `publisher status`'s view of the configured hubs: `status` `degraded`
    while a hub's last ping failed (until one succeeds), and per hub its URLs waiting, its last
    success and its last error."""
    waiting = store.waiting_for_hubs()
    view: dict[str, Any] = {}
    for hub in hubs:
        state = store.hub_state(hub)
        error = None
        if state.last_error_at is not None:
            error = {"at": _moment(state.last_error_at), "error": state.last_error, "refused": state.refused,
                     "tries_failed": state.attempts}  # fmt: skip
        status = "degraded" if state.failing else "waiting" if waiting.get(hub) else "ok"
        view[hub] = {"status": status, "waiting": len(waiting.get(hub, [])),
                     "last_success": _moment(state.last_success), "last_error": error,
                     "next_try": _moment(state.next_try)}  # fmt: skip
    degraded = any(hub["status"] == "degraded" for hub in view.values())
    return {"status": "degraded" if degraded else "ok", "hubs": view}


def _moment(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")
