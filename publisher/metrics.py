"""What the service counts, for `/metrics` (Prometheus text format, prometheus_client).

One `Metrics` per App, with a registry of its own (never prometheus_client's global one), so
tests and several Apps in one process never share a counter. The services call its methods
where the work happens (ingest, the feed writer, the send engine, the bounce recorder, the
scheduler's listener, the web's request hooks); `StoreGauges` reads what is cheap to count
from the store when `/metrics` is asked. Labels take values from bounded sets only: outcomes,
configured sources and their parts, job ids, Flask's route rules (never a raw path).

`publisher run` shares its App's Metrics with the scheduler's jobs (`jobs.share_metrics`), so
one `/metrics` shows the web, the ingests and the digests; `publisher serve` shows its web
requests, the mail events its hooks hear, and the store's gauges.

prometheus_client is imported, and the registry made, when the registry is first asked for
(a scrape, `watch`, a job's lateness); what was counted before is counted into it then. A
command that is never scraped (`publisher build`) never imports it: 25 ms of its start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from . import __version__
from .model import WHOLE_SOURCE_LABEL

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

UNMATCHED_ROUTE = "(unmatched)"  # a request no route matched (a 404 of a random path)
SEND_RATE_WINDOW = 60.0  # seconds over which the send rate is measured
LATENESS_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)

# Each counter the services count into (its attribute on _Registry), and how many labels it takes
Counted = Literal[
    "ingest_runs", "articles", "source_errors", "feed_writes", "deliveries", "mail_events", "job_runs",
    "web_requests", "alerts",
]  # fmt: skip
_LABELS: dict[Counted, int] = {
    "ingest_runs": 1, "articles": 1, "source_errors": 2, "feed_writes": 0, "deliveries": 1, "mail_events": 2,
    "job_runs": 2, "web_requests": 3, "alerts": 2,
}  # fmt: skip


class Metrics:
    """The counters of one App, in its own registry (made when first asked for: above)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._sends: deque[float] = deque()
        self._sends_lock = threading.Lock()
        self._watching = False
        self._lock = threading.Lock()  # the registry made once; the counts before it kept whole
        self._made: _Registry | None = None
        self._before: dict[tuple[Counted, tuple[str, ...]], float] = {}  # (counter, labels) -> amount
        self._last_ingest: float | None = None  # Unix time

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry().registry

    def _registry(self) -> _Registry:
        with self._lock:
            if self._made is None:
                made = _Registry(self._send_rate)
                for (name, labels), amount in self._before.items():
                    made.count(name, labels, amount)
                if self._last_ingest is not None:
                    made.last_ingest.set(self._last_ingest)
                self._before.clear()
                self._made = made
            return self._made

    def _count(self, name: Counted, labels: tuple[str, ...] = (), amount: float = 1) -> None:
        """Counted into the registry, or kept until it is made; refused here, as the registry
        would refuse it (a count kept and refused later would fail every scrape after)."""
        if amount < 0:
            raise ValueError(f"metrics: {name} counts up, not by {amount}")
        if len(labels) != _LABELS[name]:
            raise ValueError(f"metrics: {name} takes {_LABELS[name]} label(s), not {len(labels)}")
        made = self._made
        if made is None:
            with self._lock:
                made = self._made
                if made is None:
                    key = (name, labels)
                    self._before[key] = self._before.get(key, 0) + amount
                    return
        made.count(name, labels, amount)

    # --- what the services call -----------------------------------------------------------

    def ingest_ran(self, outcome: str, new: int, changed: int, withdrawn: int) -> None:
        self._count("ingest_runs", (outcome,))
        with self._lock:
            made = self._made
            if made is None:
                self._last_ingest = time.time()
        if made is not None:
            made.last_ingest.set_to_current_time()
        for change, count in (("new", new), ("changed", changed), ("withdrawn", withdrawn)):
            self._count("articles", (change,), count)

    def ingest_failed(self) -> None:
        self._count("ingest_runs", ("error",))

    def source_failed(self, source: str, part: str) -> None:
        self._count("source_errors", (source, part or WHOLE_SOURCE_LABEL))

    def feeds_written(self, count: int) -> None:
        self._count("feed_writes", (), count)

    def delivered(self, outcome: str) -> None:
        """One delivery's outcome: sent, uncertain, failed, skipped or retried."""
        self._count("deliveries", (outcome,))
        if outcome in ("sent", "uncertain"):
            now = self._monotonic()
            with self._sends_lock:
                self._sends.append(now)
                self._forget_sends(now)

    def mail_event(self, kind: str, source: str) -> None:
        self._count("mail_events", (kind, source))

    def job_ran(self, job: str, outcome: str) -> None:
        self._count("job_runs", (job, outcome))

    def job_late(self, job: str, seconds: float) -> None:
        """Observed into the registry, made now if it is not yet (the scheduler's, a service's)."""
        self._registry().job_lateness.labels(job).observe(max(0.0, seconds))

    def web_request(self, route: str | None, method: str, status: int) -> None:
        self._count("web_requests", (route or UNMATCHED_ROUTE, method, str(status)))

    def alert_posted(self, event: str, outcome: str) -> None:
        self._count("alerts", (event, outcome))

    def watch(self, read: Callable[[], StoreCounts]) -> None:
        """The store's gauges, read at each scrape (added once, however many web apps ask)."""
        if not self._watching:
            self._watching = True
            self.registry.register(cast("Collector", StoreGauges(read)))

    # --- the send rate ----------------------------------------------------------------------

    def _forget_sends(self, now: float) -> None:
        while self._sends and self._sends[0] < now - SEND_RATE_WINDOW:
            self._sends.popleft()

    def _send_rate(self) -> float:
        now = self._monotonic()
        with self._sends_lock:
            self._forget_sends(now)
            return len(self._sends) / SEND_RATE_WINDOW


class _Registry:
    """The registry and its counters, made when first asked for (`Metrics._registry`)."""

    def __init__(self, send_rate: Callable[[], float]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector

        self.registry = CollectorRegistry()
        r = self.registry
        self.ingest_runs = Counter("publisher_ingest_runs", "Ingest runs, by outcome (ok, partial, error)",
                                   ["outcome"], registry=r)  # fmt: skip
        self.last_ingest = Gauge("publisher_last_ingest_timestamp_seconds", "When the last ingest ended (Unix time)",
                                 registry=r)  # fmt: skip
        self.articles = Counter("publisher_article_changes", "Articles stored by ingests: new, changed, withdrawn",
                                ["change"], registry=r)  # fmt: skip
        self.source_errors = Counter("publisher_source_errors", "Failed reads of a source or of one of its parts",
                                     ["source", "part"], registry=r)  # fmt: skip
        self.feed_writes = Counter("publisher_feed_writes", "Feed, index and OPML files written (their bytes changed)",
                                   registry=r)  # fmt: skip
        self.deliveries = Counter("publisher_deliveries", "Digest deliveries, by outcome", ["outcome"], registry=r)
        self.mail_events = Counter("publisher_mail_events", "Bounces, complaints and unsubscribes recorded",
                                   ["kind", "source"], registry=r)  # fmt: skip
        self.job_runs = Counter("publisher_scheduler_job_runs", "Scheduler job runs, by outcome (ok, error, missed)",
                                ["job", "outcome"], registry=r)  # fmt: skip
        self.job_lateness = Histogram("publisher_scheduler_job_lateness_seconds",
                                      "How long after its scheduled time a job started (or was given up: missed)",
                                      ["job"], buckets=LATENESS_BUCKETS, registry=r)  # fmt: skip
        self.web_requests = Counter("publisher_web_requests", "Web requests, by route rule, method and status",
                                    ["route", "method", "status"], registry=r)  # fmt: skip
        self.alerts = Counter("publisher_alerts", "Alerts posted to the [alerts] webhook, by event and outcome",
                              ["event", "outcome"], registry=r)  # fmt: skip
        # Each outcome's series exists from the start at 0, so a rate over it starts from a sample.
        for outcome in ("ok", "partial", "error"):
            self.ingest_runs.labels(outcome)
        for change in ("new", "changed", "withdrawn"):
            self.articles.labels(change)
        for outcome in ("sent", "uncertain", "failed", "skipped", "retried"):
            self.deliveries.labels(outcome)
        Gauge("publisher_build_info", "The running version", ["version"], registry=r).labels(__version__).set(1)
        rate = Gauge("publisher_send_rate_messages_per_second",
                     f"Digest messages sent per second over the last {SEND_RATE_WINDOW:.0f} s", registry=r)  # fmt: skip
        rate.set_function(send_rate)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    def count(self, name: Counted, labels: tuple[str, ...], amount: float) -> None:
        counter = getattr(self, name)
        (counter.labels(*labels) if labels else counter).inc(amount)


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """What the store holds now, read at a scrape (store.gauges)."""

    subscribers: Mapping[str, int]  # status -> readers
    articles: Mapping[str, int]  # live | withdrawn -> articles
    unfinished_digests: Mapping[str, int]  # planning | sending | paused -> digests
    suppressed: int
    failing_parts: Iterable[tuple[str, str, int]]  # (source, part, runs in a row that failed)


class StoreGauges:
    """The store's gauges, read when `/metrics` is asked; a store that cannot be read makes
    `publisher_store_up` 0 (logged) instead of failing the scrape. A collector as the registry
    takes one (`collect`, `describe`), without prometheus_client's base class, which would
    import the library with this module."""

    def __init__(self, read: Callable[[], StoreCounts]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("publisher_store_up", "1 when the store answered this scrape's reads, else 0")
        try:
            counts = self.read()
        except Exception as exc:  # noqa: BLE001 - a scrape reports, it does not fail
            log.warning("/metrics: the store could not be read: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield _family("publisher_subscribers", "Readers by status", "status", counts.subscribers)
        yield _family("publisher_articles_stored", "Articles in the store, live or withdrawn", "state", counts.articles)
        yield _family("publisher_digests_unfinished", "Digests planning, sending or paused", "status",
                      counts.unfinished_digests)  # fmt: skip
        yield GaugeMetricFamily("publisher_suppressed_addresses", "Addresses on the suppression list",
                                value=counts.suppressed)  # fmt: skip
        failing = GaugeMetricFamily("publisher_source_failing_runs",
                                    "Runs in a row whose read of a source or part failed (parts failing now only)",
                                    labels=["source", "part"])  # fmt: skip
        for source, part, runs in counts.failing_parts:
            failing.add_metric([source, part or WHOLE_SOURCE_LABEL], runs)
        yield failing

    def describe(self) -> Iterable[Metric]:
        return []  # not described at registration: the store is read only when scraped


def _family(name: str, documentation: str, label: str, values: Mapping[str, int]) -> GaugeMetricFamily:
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(values.items()):
        family.add_metric([value], count)
    return family
