"""`/metrics`, read back with prometheus_client's own text parser: its counters move as real
work is done (a build of a loopback site with one source down, a digest to aiosmtpd, a
provider's bounce through /hooks), the store's gauges equal the store, request labels are
route rules; it is refused without the operator's token from another machine; and
`publisher run` shows its scheduler's ingest job on its own /metrics."""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from typing import Any

import pytest
import requests
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer
from test_newsletter import Inbox
from test_smtp import free_port, smtp_on_loopback

from conftest import HEALTH_HEADERS, HEALTH_TOKEN, Service, Site, days_ago
from hook_signing import mailgun_event, mailgun_request
from publisher import metrics as metrics_module
from publisher.app import App
from publisher.bounces.events import DELIVERY_HEADER
from publisher.metrics import Metrics
from publisher.model import BuildReport, Subscriber, SubscriberStatus
from publisher.newsletter import Newsletter
from publisher.web import create_app

MAILGUN_KEY = "key-" + secrets.token_hex(16)
AFAR = {"REMOTE_ADDR": "203.0.113.9"}  # a client that is not this machine

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of the exposition, by name and sorted labels, through prometheus_client's parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; a KeyError when there is no such sample (so `== 0` means a zero)."""
    return samples[(name, tuple(sorted(labels.items())))]


def scrape(app: App) -> Samples:
    answer = create_app(app).test_client().get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(answer.text)


@pytest.fixture
def upstream(httpserver: HTTPServer) -> HTTPServer:
    """A loopback site: a feed with two items, and a feed that answers 500."""
    items = "".join(
        f"<item><title>上游{n}</title><link>https://other.example.org/{n}.html</link><guid>u{n}</guid>"
        f"<pubDate>{time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime(time.time() - 86400 * n))}</pubDate>"
        f"<description>正文{n}</description></item>"
        for n in (1, 2)
    )
    feed = f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'
    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/feed.xml").respond_with_data(feed, content_type="application/rss+xml")
    httpserver.expect_request("/down.xml").respond_with_data("oops", status=500)
    return httpserver


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box = Inbox()
    with smtp_on_loopback(box) as port:
        yield box, port


def configure(site: Site, upstream: HTTPServer, smtp_port: int) -> None:
    site.write_config(
        f"""
[mail]
transport = "smtp"
[mail.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
[digest]
messages_per_second = 0
postal_address = "云川市高新区创新大道 1 号"
[hooks.mailgun]
signing_key_env = "TEST_METRICS_MAILGUN_KEY"
[[sources]]
type = "feed"
name = "upstream"
allow_private = true
delay = 0
url = "{upstream.url_for("/feed.xml")}"
category = "tech"
[[sources]]
type = "feed"
name = "down"
allow_private = true
delay = 0
url = "{upstream.url_for("/down.xml")}"
category = "tech"
"""
    )


def test_counters_move_as_the_work_is_done(
    site: Site, upstream: HTTPServer, inbox: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    box, port = inbox
    monkeypatch.setenv("TEST_METRICS_MAILGUN_KEY", MAILGUN_KEY)
    configure(site, upstream, port)
    site.article("policy/a.md", "《人才十条》政策要点解读", date=days_ago(2))
    app = site.app()
    try:
        before = scrape(app)
        assert value(before, "publisher_ingest_runs_total", outcome="partial") == 0
        assert value(before, "publisher_build_info", version=__import__("publisher").__version__) == 1

        report = BuildReport()
        app.build(report)
        built = scrape(app)
        assert value(built, "publisher_ingest_runs_total", outcome="partial") == 1  # one source is down
        assert value(built, "publisher_article_changes_total", change="new") == report.new == 3
        assert value(built, "publisher_feed_writes_total") == report.feeds_written > 0
        assert value(built, "publisher_source_errors_total", source="down", part="(the source)") == 1
        assert value(built, "publisher_source_failing_runs", source="down", part="(the source)") == 1
        assert value(built, "publisher_articles_stored", state="live") == 3
        assert value(built, "publisher_last_ingest_timestamp_seconds") > time.time() - 60
        assert value(built, "publisher_store_up") == 1

        now = app.clock()
        readers = ("a@example.com", "b@example.com")
        app.store.save_subscribers(
            Subscriber(e, "", (), SubscriberStatus.CONFIRMED, now, "import", now) for e in readers
        )
        letters = Newsletter(app)
        plan = letters.plan_scheduled()
        sent = letters.send(plan.digest, app.transport())
        assert sent.sent == 2 and len(box.received) == 2
        mailed = scrape(app)
        assert value(mailed, "publisher_deliveries_total", outcome="sent") == 2
        assert value(mailed, "publisher_send_rate_messages_per_second") == pytest.approx(2 / 60)
        assert value(mailed, "publisher_subscribers", status="confirmed") == 2
        assert value(mailed, "publisher_digests_unfinished", status="sending") == 0

        # A provider's hard bounce of a's message, through the real hook.
        message = message_from_bytes(
            box.raw[[r for r, _ in box.received].index("a@example.com")], policy=policy.default
        )
        token = str(message[DELIVERY_HEADER])
        hook = mailgun_request(MAILGUN_KEY, mailgun_event("a@example.com", when=time.time(), token=token), time.time())
        web = create_app(app)
        client = web.test_client()
        assert client.post("/hooks/mailgun", data=hook.body, headers=dict(hook.headers)).status_code == 200
        assert client.get("/no/such/feed/" + secrets.token_hex(4)).status_code == 404
        assert client.put("/hooks/mailgun").status_code == 405
        bounced = parse(client.get("/metrics").text)
        assert value(bounced, "publisher_mail_events_total", kind="hard", source="mailgun") == 1
        assert value(bounced, "publisher_suppressed_addresses") == len(app.store.suppressed_keys()) == 1
        by_status = {s.value: len(app.store.subscribers(s)) for s in SubscriberStatus}
        for status, count in by_status.items():
            assert value(bounced, "publisher_subscribers", status=status) == count
        route = value(bounced, "publisher_web_requests_total", route="/hooks/<provider>", method="POST", status="200")
        assert route == 1
        assert value(bounced, "publisher_web_requests_total", route="/<path:path>", method="GET", status="404") == 1
        assert value(bounced, "publisher_web_requests_total", route="(unmatched)", method="PUT", status="405") == 1
        labels = {dict(key[1]).get("route") for key in bounced if key[0] == "publisher_web_requests_total"}
        assert not any(label and "such" in label for label in labels)  # never the raw path
    finally:
        app.close()


def test_two_apps_in_one_process_count_apart(make_site: Any) -> None:
    first, second = make_site(), make_site()
    first.article("a.md", "一")
    apps = [first.app(), second.app()]
    try:
        apps[0].build(BuildReport())
        assert value(scrape(apps[0]), "publisher_ingest_runs_total", outcome="ok") == 1
        assert value(scrape(apps[1]), "publisher_ingest_runs_total", outcome="ok") == 0
    finally:
        for app in apps:
            app.close()


def test_only_the_token_this_machine_or_public_reads_it(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER_HEALTH_TOKEN", HEALTH_TOKEN)
    app = site.app()
    try:
        client = create_app(app).test_client()
        refused = client.get("/metrics", environ_base=AFAR)
        assert refused.status_code == 403 and "publisher_" not in refused.text
        wrong = client.get("/metrics", environ_base=AFAR, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 403
        assert client.get("/metrics", environ_base=AFAR, headers=HEALTH_HEADERS).status_code == 200
        assert client.get("/metrics").status_code == 200  # 127.0.0.1, as a local Prometheus
        forwarded = client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
        assert forwarded.status_code == 403  # a proxy on this machine forwarded someone else's request
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    finally:
        app.close()
    site.append_config("\n[metrics]\npublic = true\n")
    app = site.app()
    try:
        assert create_app(app).test_client().get("/metrics", environ_base=AFAR).status_code == 200
    finally:
        app.close()
    site.write_config("\n[metrics]\nenabled = false\n")
    app = site.app()
    try:
        assert create_app(app).test_client().get("/metrics").status_code == 404
    finally:
        app.close()


def test_publisher_run_shows_its_scheduler_jobs_on_its_metrics(site: Site) -> None:
    site.article("a.md", "一", date=days_ago(1))
    port = free_port()
    service = Service(site.config, site.root, port, env={**os.environ})
    try:
        service.wait_until_serving()
        service.wait_until_built()
        deadline, samples = time.monotonic() + 30, {}
        while time.monotonic() < deadline:
            answer = requests.get(f"{service.base}/metrics", headers=HEALTH_HEADERS, timeout=10)
            samples = parse(answer.text)
            if value(samples, "publisher_scheduler_job_runs_total", job="ingest", outcome="ok"):
                break
            time.sleep(0.1)
        assert value(samples, "publisher_scheduler_job_runs_total", job="ingest", outcome="ok") == 1, service.output()
        assert value(samples, "publisher_ingest_runs_total", outcome="ok") == 1  # the job's App counted here
        assert value(samples, "publisher_article_changes_total", change="new") == 1
        assert value(samples, "publisher_scheduler_job_lateness_seconds_count", job="ingest") == 1
        assert re.search(r"^process_resident_memory_bytes \d", answer.text, re.M)
    finally:
        assert service.stop() == 0


def test_counts_made_before_the_registry_are_in_it_and_none_is_lost_meanwhile(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry is made when first asked for (a scrape): what was counted before is in
    it, and of the counts other threads make while it is made (made slowly here, so that
    they wait for it), none is lost and none is counted twice."""
    made_slowly = metrics_module._Registry.__init__

    def slowly(self: Any, send_rate: Any) -> None:
        time.sleep(0.05)
        made_slowly(self, send_rate)

    monkeypatch.setattr(metrics_module._Registry, "__init__", slowly)
    metrics = Metrics()
    metrics.ingest_ran("ok", 3, 1, 0)
    metrics.feeds_written(5)
    metrics.source_failed("news", "")
    metrics.web_request(None, "GET", 404)
    stop = threading.Event()
    counted = [0] * 4

    def count(n: int) -> None:
        while not stop.is_set():
            metrics.delivered("sent")
            counted[n] += 1

    threads = [threading.Thread(target=count, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    while min(counted) < 100:
        time.sleep(0.001)
    registry = metrics.registry  # made while the threads count
    time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join()
    samples = parse(generate_latest(registry).decode())
    assert value(samples, "publisher_deliveries_total", outcome="sent") == sum(counted)
    assert value(samples, "publisher_ingest_runs_total", outcome="ok") == 1
    assert value(samples, "publisher_article_changes_total", change="new") == 3
    assert value(samples, "publisher_article_changes_total", change="withdrawn") == 0
    assert value(samples, "publisher_feed_writes_total") == 5
    assert value(samples, "publisher_source_errors_total", source="news", part="(the source)") == 1
    assert value(samples, "publisher_web_requests_total", route="(unmatched)", method="GET", status="404") == 1
    assert value(samples, "publisher_last_ingest_timestamp_seconds") == pytest.approx(time.time(), abs=60)
    # The series made ahead at 0 are there, made late or not
    assert value(samples, "publisher_ingest_runs_total", outcome="partial") == 0
    assert value(samples, "publisher_deliveries_total", outcome="failed") == 0
    metrics.ingest_failed()
    samples = parse(generate_latest(registry).decode())
    assert value(samples, "publisher_ingest_runs_total", outcome="error") == 1


def test_a_count_the_registry_would_refuse_is_refused_when_made() -> None:
    """Refused at the call, before the registry is made as after: kept, it would fail every
    scrape once the registry were made."""
    metrics = Metrics()
    with pytest.raises(ValueError, match="feed_writes counts up, not by -1"):
        metrics.feeds_written(-1)
    with pytest.raises(ValueError, match="web_requests takes 3 label"):
        metrics._count("web_requests", ("/", "GET"))
    samples = parse(generate_latest(metrics.registry).decode())
    assert value(samples, "publisher_feed_writes_total") == 0
    with pytest.raises(ValueError, match="feed_writes counts up, not by -2"):
        metrics.feeds_written(-2)


def test_the_label_counts_checked_are_the_counters_own() -> None:
    made = metrics_module._Registry(lambda: 0.0)
    assert {name: len(getattr(made, name)._labelnames) for name in metrics_module._LABELS} == metrics_module._LABELS
