"""The sources' own state in the store (SourceStateStore), on SQLite and PostgreSQL: each part's
health, failed items waiting with backoff, and HTTP validators, long URLs included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from publisher.model import ScopeRead
from publisher.sources.addresses import AddressGuard
from publisher.sources.failed_items import FailedItem, FailedItems
from publisher.sources.http import Fetcher, Validators
from publisher.store import Store

T0 = datetime(2026, 11, 20, 8, 0, 0, 123456, tzinfo=UTC)


def parts(store: Store, source: str) -> dict[str, tuple[object, ...]]:
    return {
        p.scope: (p.last_success, p.items, p.last_error_at, p.last_error, p.last_error_url, p.last_hint, p.failures)
        for p in store.source_health()
        if p.source == source
    }


def test_health_keeps_each_parts_last_success_and_last_error(store: Store) -> None:
    later, latest = T0 + timedelta(minutes=15), T0 + timedelta(minutes=30)
    news, policy = "高新院新闻", "政策解读"
    store.record_health("site", [ScopeRead(news, "https://a/news/"), ScopeRead("", "")], T0, {news: 5, "": 5})
    assert parts(store, "site") == {
        "": (T0, 5, None, None, None, None, 0),
        news: (T0, 5, None, None, None, None, 0),
    }
    failed = ScopeRead(policy, "https://a/policy/list.html", "https://a/policy/list.html: HTTP 404", "check the URL")
    store.record_health("site", [ScopeRead(news, "https://a/news/"), failed], later, {news: 6})
    store.record_health("site", [failed], latest)
    found = parts(store, "site")
    assert found[policy] == (None, None, latest, failed.error, failed.url, "check the URL", 2)  # two runs in a row
    assert found[news] == (later, 6, None, None, None, None, 0)
    # A part read again keeps its last error as history, and is no longer failing.
    store.record_health("site", [ScopeRead(policy, "https://a/policy/list.html")], latest, {policy: 3})
    [policy_now] = [p for p in store.source_health() if p.scope == policy]
    assert not policy_now.failing and policy_now.last_error_at == latest and policy_now.last_success == latest
    # Read twice in one run (two list pages): it failed if either read failed.
    twice = [ScopeRead(news, "u"), ScopeRead(news, "v", "v: HTTP 500"), ScopeRead(news, "w")]
    store.record_health("site", twice, latest)
    assert parts(store, "site")[news][3:5] == ("v: HTTP 500", "v")
    # A run that reports every part forgets the parts it did not name (a category taken out).
    store.record_health("site", [ScopeRead(news, "u"), ScopeRead("", "")], latest, every_part=True)
    assert set(parts(store, "site")) == {"", news}


def test_health_of_sources_lists_the_configured_ones_in_order(store: Store) -> None:
    store.record_health("b", [ScopeRead("", "", "b is down")], T0)
    store.record_health("a", [ScopeRead("", "")], T0)
    store.record_health("gone", [ScopeRead("", "")], T0)
    store.save_failed_items("a", [FailedItem("k", "https://a/k", 1, T0, T0, T0, "HTTP 404")], [])
    found = store.health_of_sources(["b", "a", "new"])
    assert [(s.name, s.failing, s.failed_items, len(s.parts)) for s in found] == [
        ("b", True, 0, 1), ("a", False, 1, 1), ("new", False, 0, 0),
    ]  # fmt: skip
    store.save_http_validators("gone", {"https://gone/x": {"ETag": '"g"'}})
    store.forget_sources_except(["a", "b"])
    assert {p.source for p in store.source_health()} == {"a", "b"}
    assert store.http_validators("gone", "https://gone/x") == {} and store.failed_item_counts() == {"a": 1}


def test_failed_items_round_trip_through_failed_items(store: Store) -> None:
    clock = [T0]
    save = lambda upserts, cleared: store.save_failed_items("site", upserts, cleared)  # noqa: E731
    run = FailedItems(store.failed_items("site"), lambda: clock[0], save)
    run.failed("https://a/1.html", "https://a/1.html", "HTTP 404")
    run.failed("https://a/2.html", "https://a/2.html", "no date")
    run.commit()
    clock[0] = T0 + timedelta(minutes=5)
    second = FailedItems(store.failed_items("site"), lambda: clock[0], save)
    assert second.known("https://a/1.html") and not second.waiting("https://a/1.html")  # the next run tries again
    second.failed("https://a/1.html", "https://a/1.html", "HTTP 404 again")
    second.succeeded("https://a/2.html")
    second.commit()
    kept = store.failed_items("site")
    assert list(kept) == ["https://a/1.html"]
    item = kept["https://a/1.html"]
    assert (item.failures, item.first_failed, item.last_failed, item.reason) == (2, T0, clock[0], "HTTP 404 again")
    assert item.next_try == clock[0] + timedelta(hours=1)  # aware UTC, microseconds kept
    assert store.failed_item_counts() == {"site": 1}
    too_long = "https://a/" + "字" * 400  # 1,210 bytes: left out, the rest is kept
    store.save_failed_items("site", [FailedItem(too_long, too_long, 1, T0, T0, T0, "x")], [])
    assert too_long not in store.failed_items("site")
    assert store.forget_failed_items("site", "https://a/1.html") == 1 and store.failed_items("site") == {}


def test_validators_of_long_urls_are_kept_and_sent_back(store: Store, httpserver: HTTPServer) -> None:
    """A list page's URL of 300 characters: 0.2.0 kept validators in meta (100 characters), which
    PostgreSQL refused; now the second request is a conditional GET answered 304."""
    long_path = "/news/" + "a" * 290 + ".html"
    sent: list[str | None] = []

    def page(request: Request) -> Response:
        sent.append(request.headers.get("If-None-Match"))
        if request.headers.get("If-None-Match") == '"v1"':
            return Response(status=304)
        return Response("<p>x</p>", headers={"ETag": '"v1"', "Last-Modified": "Tue, 24 Nov 2026 08:00:00 GMT"})

    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request(long_path).respond_with_handler(page)
    url = httpserver.url_for(long_path)
    assert len(url) > 300

    def fetcher() -> Fetcher:
        validators = Validators(
            lambda u: store.http_validators("site", u), lambda kept: store.save_http_validators("site", kept)
        )
        return Fetcher("publisher/test", validators, delay=0, guard=AddressGuard(allow_private=True))

    first = fetcher()
    assert first.get(url).status == 200
    first.commit()
    assert store.http_validators("site", url) == {"ETag": '"v1"', "Last-Modified": "Tue, 24 Nov 2026 08:00:00 GMT"}
    assert store.http_validators("other", url) == {}  # each source keeps its own
    assert fetcher().get(url).not_modified and sent == [None, '"v1"']
    # A URL too long for the table's key is read in full each time, and saving it fails nothing.
    huge = "https://www.example.org/" + "b" * 2100
    store.save_http_validators("site", {huge: {"ETag": '"h"'}, url: {"ETag": '"v2"'}})
    assert store.http_validators("site", huge) == {} and store.http_validators("site", url) == {"ETag": '"v2"'}


def test_a_source_named_after_a_long_feed_url_keeps_its_reading_signature(store: Store) -> None:
    """A feed source's default name is its URL's host and path (up to 200 characters): its
    `reading-signature:<name>` overflowed meta's key of 100 characters on PostgreSQL."""
    name = "news.example.org/" + "/".join(["regional-economic-research"] * 7)[:183]
    assert len(name) == 200
    store.set_meta(f"reading-signature:{name}", "0" * 64)
    assert store.get_meta(f"reading-signature:{name}") == "0" * 64
