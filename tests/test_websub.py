"""WebSub against a hub on loopback that checks each request: every feed names the hubs and
itself (read back with feedparser, lxml and the Atom schema), the feed server's `Link` headers,
one `hub.mode=publish` per build that changed feeds with exactly the changed URLs and none
after an unchanged build, a hub answering 503 then 204 getting the URLs again, a refusal
dropped with its reason, a failing hub in /healthz and `publisher status`, and a build whose
exit code and files owe nothing to the hub."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from urllib.parse import parse_qs

import pytest
from flask import Flask
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import HEALTH_HEADERS, HEALTH_TOKEN, ROOT, Service, Site
from feedcheck import assert_json_feed, assert_matches_atom_schema, atom_schema, parse_with_feedparser, parse_xml
from publisher import websub
from publisher.app import App
from publisher.config import validate
from publisher.errors import ConfigError
from publisher.feeds import FEED_FILES
from publisher.model import BuildReport
from publisher.sources.addresses import AddressGuard
from publisher.store import Store
from publisher.web import create_app
from publisher.websub import HubPings

FEEDS = [f"{folder}{name}" for folder in ("", "gao-xin-yuan-xin-wen/", "policy/", "tech/")
         for name in ("rss.xml", "atom.xml", "feed.json")]  # fmt: skip
ATOM = "{http://www.w3.org/2005/Atom}"


class Hub:
    """A WebSub hub on loopback: each publish request it got (checked as it comes), and the
    statuses it answers in turn (the last one again and again)."""

    def __init__(self, server: HTTPServer, path: str = "/hub") -> None:
        self.server, self.url = server, server.url_for(path)
        self.pings: list[list[str]] = []  # the hub.url values of each request
        self.problems: list[str] = []
        self.answers: list[tuple[int, str]] = [(204, "")]
        self.delay = 0.0  # seconds before each answer
        self.lock = threading.Lock()
        server.expect_request(path).respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        form = parse_qs(request.get_data(as_text=True), keep_blank_values=True, strict_parsing=True)
        if request.method != "POST":
            self.problems.append(f"method {request.method}")
        if request.headers.get("Content-Type") != "application/x-www-form-urlencoded":
            self.problems.append(f"content type {request.headers.get('Content-Type')}")
        if form.get("hub.mode") != ["publish"] or set(form) != {"hub.mode", "hub.url"}:
            self.problems.append(f"form {form}")
        time.sleep(self.delay)
        with self.lock:
            self.pings.append(form.get("hub.url", []))
            status, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return Response(body, status=status)

    def wait_for(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.pings) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.pings) >= count, self.pings


@pytest.fixture
def hub(httpserver: HTTPServer) -> Hub:
    return Hub(httpserver)


def with_hub(site: Site, *hubs: str) -> Site:
    listed = ", ".join(f'"{h}"' for h in hubs)
    site.append_config(f"\n[websub]\nhubs = [{listed}]\ntimeout = 5\nallow_private = true\n")
    return site


def urls(*paths: str) -> set[str]:
    return {f"https://www.example.org/{path}" for path in paths}


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(websub, "FIRST_RETRY", 0.05)
    monkeypatch.setattr(websub, "LAST_RETRY", 0.2)


def waiting(site: Site) -> dict[str, list[str]]:
    store = Store(site.store_url)
    try:
        return {hub: [w.url for w in items] for hub, items in store.waiting_for_hubs().items()}
    finally:
        store.close()


# --- the feeds ------------------------------------------------------------------------------


def test_every_feed_names_each_hub_and_itself(site: Site, hub: Hub) -> None:
    second = "https://pubsubhubbub.appspot.com/"
    with_hub(site, hub.url, second)
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
    site.build()
    schema = atom_schema()
    for path in FEEDS:
        data, self_url = site.feed(path), f"https://www.example.org/{path}"
        if path.endswith(".json"):
            feed = assert_json_feed(data)
            assert feed["hubs"] == [{"type": "WebSub", "url": hub.url}, {"type": "WebSub", "url": second}]
            assert feed["feed_url"] == self_url
            continue
        links = parse_with_feedparser(data).feed.links
        assert [link.href for link in links if link.rel == "hub"] == [hub.url, second], path
        assert [link.href for link in links if link.rel == "self"] == [self_url], path
        root = parse_xml(data)
        channel = root if path.endswith("atom.xml") else root.find("channel")
        assert channel is not None
        rels = [
            (link.get("rel"), link.get("href")) for link in channel.iter(f"{ATOM}link") if link.getparent() is channel
        ]
        assert rels[:3] == [("self", self_url), ("hub", hub.url), ("hub", second)], path
        if path.endswith("rss.xml"):
            assert channel.findtext("link") == "https://www.example.org/"  # RSS <link>: still the site
        elif schema is not None:
            assert_matches_atom_schema(data, schema)


def test_without_hubs_the_feeds_are_as_before(make_site: Callable[..., Site]) -> None:
    plain, empty = make_site(), make_site()
    empty.append_config("\n[websub]\nhubs = []\n")
    for site in (plain, empty):
        site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
        site.build()
    for path in [*FEEDS, "index.html", "feeds.opml"]:
        assert plain.feed(path) == empty.feed(path), path
        assert b'rel="hub"' not in plain.feed(path) and b'"hubs"' not in plain.feed(path), path
    assert plain.app().render_signature() == empty.app().render_signature()


def test_adding_a_hub_rewrites_every_feed(site: Site, hub: Hub) -> None:
    site.build()
    with_hub(site, hub.url)
    report = site.build()
    assert sorted(p for p in report.written_paths if p.rsplit("/", 1)[-1] in FEED_FILES) == sorted(FEEDS)
    assert hub.url.encode() in site.feed("policy/atom.xml")


# --- the feed server's Link headers ---------------------------------------------------------


@pytest.fixture
def web(site: Site, hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setenv("PUBLISHER_HEALTH_TOKEN", HEALTH_TOKEN)
    with_hub(site, hub.url)
    site.build()
    app = site.app()
    try:
        yield create_app(app)
    finally:
        app.close()


def test_the_feed_server_links_each_feed_to_the_hubs_and_itself(web: Flask, hub: Hub) -> None:
    client = web.test_client()
    for path in ("rss.xml", "tech/atom.xml", "policy/feed.json"):
        answer = client.get(f"/{path}")
        assert answer.status_code == 200
        assert answer.headers["Link"] == f'<{hub.url}>; rel="hub", <https://www.example.org/{path}>; rel="self"'
        etag = answer.headers["ETag"]
        assert client.get(f"/{path}", headers={"If-None-Match": etag}).headers["Link"] == answer.headers["Link"]
    assert "Link" not in client.get("/index.html").headers
    assert "Link" not in client.get("/feeds.opml").headers


def test_the_digest_archives_feed_names_no_hub(web: Flask, site: Site) -> None:
    (site.out / "digests").mkdir()
    (site.out / "digests" / "atom.xml").write_bytes(site.feed("atom.xml"))  # not pinged: no hub for it
    answer = web.test_client().get("/digests/atom.xml")
    assert answer.status_code == 200 and "Link" not in answer.headers


def test_no_link_header_without_hubs(site: Site) -> None:
    site.build()
    app = site.app()
    try:
        answer = create_app(app).test_client().get("/atom.xml")
    finally:
        app.close()
    assert answer.status_code == 200 and "Link" not in answer.headers


# --- the pings ------------------------------------------------------------------------------


def test_one_ping_per_build_that_changed_feeds_with_every_changed_url(site: Site, hub: Hub) -> None:
    with_hub(site, hub.url)
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
    site.build()
    assert hub.pings == [sorted(urls(*FEEDS))] and hub.problems == []  # the first build writes every feed

    site.build()  # nothing changed
    time.sleep(0.3)
    assert len(hub.pings) == 1

    site.article("policy/b.md", "政策解读", date="2026-11-19 09:00")
    report = site.build()
    written = ["rss.xml", "atom.xml", "feed.json", "policy/rss.xml", "policy/atom.xml", "policy/feed.json"]
    assert sorted(report.written_paths) == sorted([*written, "policy/index.html"])  # the page is no feed: not pinged
    changed = urls(*written)
    assert len(hub.pings) == 2 and set(hub.pings[1]) == changed and len(hub.pings[1]) == len(changed)
    assert hub.problems == [] and waiting(site) == {}


@pytest.mark.parametrize("failing", ["clear_dirty", "publish_to_hubs"])
def test_a_build_cut_after_its_writes_leaves_the_ping_to_the_next(
    site: Site, hub: Hub, failing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feeds are on disk when the build dies before its marks go (`clear_dirty` raising,
    as a process killed there) or the store fails to keep the pings ("database is locked"):
    the next build finds the bytes unchanged and still pings the feeds of the scopes marked."""
    with_hub(site, hub.url)
    site.build()
    hub.wait_for(1)
    site.article("policy/b.md", "政策解读", date="2026-11-19 09:00")
    original = getattr(Store, failing)

    def fails_once(self: Store, *args: object) -> None:
        monkeypatch.setattr(Store, failing, original)
        raise RuntimeError("database is locked")

    monkeypatch.setattr(Store, failing, fails_once)
    try:
        site.build()
    except RuntimeError:
        assert failing == "clear_dirty"
    assert site.feed("policy/rss.xml").count("政策解读".encode()) >= 1
    report = site.build()  # nothing new on disk
    assert not [p for p in report.written_paths if p.rsplit("/", 1)[-1] in FEED_FILES]
    hub.wait_for(2)
    changed = urls("rss.xml", "atom.xml", "feed.json", "policy/rss.xml", "policy/atom.xml", "policy/feed.json")
    assert sorted(hub.pings[-1]) == sorted(changed) and waiting(site) == {}
    site.build()  # the marks are gone now: no more pings
    time.sleep(0.3)
    assert len(hub.pings) == 2 and hub.problems == []


def test_each_hub_gets_its_own_ping(site: Site, httpserver: HTTPServer) -> None:
    first, second = Hub(httpserver, "/one"), Hub(httpserver, "/two")
    with_hub(site, first.url, second.url)
    site.build()
    assert len(first.pings) == len(second.pings) == 1 and set(first.pings[0]) == set(second.pings[0]) == urls(*FEEDS)


def test_a_hub_answering_503_then_204_gets_the_urls_again(site: Site, hub: Hub, quick_retries: None) -> None:
    with_hub(site, hub.url)
    hub.answers = [(503, "busy"), (204, "")]
    app = site.app()
    try:
        app.build(BuildReport())
        hub.wait_for(2)
    finally:
        app.close()
    assert hub.pings[0] == hub.pings[1] == sorted(urls(*FEEDS)) and hub.problems == []
    assert waiting(site) == {}
    state = Store(site.store_url).hub_state(hub.url)
    assert state.last_success is not None and state.attempts == 0 and not state.failing


def test_a_hub_that_is_down_fails_no_build_and_gets_the_urls_at_the_next(site: Site, hub: Hub) -> None:
    with_hub(site, hub.url)
    hub.answers = [(500, "down")]
    built = site.cli("build")
    assert built.exit_code == 0, built.output
    assert all((site.out / path).is_file() for path in FEEDS)
    assert len(hub.pings) == 1  # `build` tried once before it exited; the URLs wait in the store
    assert waiting(site) == {hub.url: sorted(urls(*FEEDS))}
    status = site.cli("status")
    assert status.exit_code == 1 and f"WebSub hub {hub.url}: degraded, 12 feed URL(s) waiting" in status.output
    assert "HTTP 500: down" in status.output

    hub.answers = [(204, "")]
    store = Store(site.store_url)
    pings = HubPings(store, [hub.url], timeout=5, guard=AddressGuard(allow_private=True))
    try:  # as the next build or `publisher run`'s start does, once the hub's next try is due
        assert pings.deliver_due() is not None and len(hub.pings) == 1  # not due yet: 30 s after the failure
        pings.clock = lambda: websub.datetime.now(websub.UTC) + websub.timedelta(seconds=31)
        assert pings.deliver_due() is None
    finally:
        pings.close()
        store.close()
    assert len(hub.pings) == 2 and set(hub.pings[1]) == urls(*FEEDS) and waiting(site) == {}
    assert site.cli("status").exit_code == 0


def test_a_hub_refusing_the_ping_is_not_asked_again_and_says_why(
    site: Site, hub: Hub, quick_retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    with_hub(site, hub.url)
    hub.answers = [(400, "\nhub.url must be https\nmore text")]
    with caplog.at_level(logging.WARNING, logger="publisher.websub"):
        site.build()
    time.sleep(0.3)
    assert len(hub.pings) == 1 and waiting(site) == {}
    assert f"{hub.url} refused the ping of 12 feed URL(s): HTTP 400: hub.url must be https" in caplog.text
    assert "more text" not in caplog.text


def test_a_failing_hub_shows_in_healthz(web: Flask, site: Site, hub: Hub, quick_retries: None) -> None:
    report = web.test_client().get("/healthz", headers=HEALTH_HEADERS).get_json()
    assert report["status"] == "ok" and report["websub"]["hubs"][hub.url]["status"] == "ok"

    hub.answers = [(503, "over capacity")]
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
    site.build()
    answer = web.test_client().get("/healthz", headers=HEALTH_HEADERS)
    report = answer.get_json()
    assert answer.status_code == 200 and report["status"] == "degraded"
    shown = report["websub"]["hubs"][hub.url]
    assert shown["status"] == "degraded" and shown["waiting"] == 6
    assert shown["last_error"]["error"] == "HTTP 503: over capacity" and shown["last_error"]["refused"] is False
    public = web.test_client().get("/healthz").get_json()
    assert public["status"] == "degraded" and public["websub"]["hubs"][hub.url]["status"] == "degraded"
    assert "over capacity" not in str(public)

    hub.answers = [(204, "")]
    time.sleep(0.1)  # the hub's next try is due (0.05 s after the failure, in this test)
    site.build()  # nothing changed: the waiting URLs are tried again, and taken
    report = web.test_client().get("/healthz", headers=HEALTH_HEADERS).get_json()
    assert report["status"] == "ok" and report["websub"]["hubs"][hub.url]["status"] == "ok"


def test_a_url_published_again_during_a_ping_keeps_waiting(store: Store) -> None:
    hub = "https://hub.example/"
    store.publish_to_hubs([hub], ["https://a.example/rss.xml", "https://a.example/atom.xml"])
    sent = store.waiting_for_hubs()[hub]
    assert [w.url for w in sent] == ["https://a.example/atom.xml", "https://a.example/rss.xml"]
    store.publish_to_hubs([hub], ["https://a.example/rss.xml"])  # changed again while the ping is in flight
    store.delivered_to_hub(sent)
    assert [w.url for w in store.waiting_for_hubs()[hub]] == ["https://a.example/rss.xml"]
    store.set_hub_state(replace(store.hub_state(hub), attempts=2, last_error="HTTP 503"))
    assert store.hub_state(hub).attempts == 2
    store.publish_to_hubs(["https://other.example/"], ["https://a.example/rss.xml"])  # the hub was replaced
    assert list(store.waiting_for_hubs()) == ["https://other.example/"]
    assert store.hub_state(hub).attempts == 0  # forgotten with it


def test_1100_urls_go_in_posts_of_100_and_stop_waiting(store: Store, hub: Hub) -> None:
    many = [f"https://www.example.org/c{i:04}/atom.xml" for i in range(1100)]
    store.publish_to_hubs([hub.url], many)
    pings = HubPings(store, [hub.url], timeout=5, guard=AddressGuard(allow_private=True))
    try:
        assert pings.deliver_due() is None
    finally:
        pings.close()
    assert [len(sent) for sent in hub.pings] == [100] * 11 and sorted(sum(hub.pings, [])) == many
    assert store.waiting_for_hubs() == {} and hub.problems == []


def test_1100_urls_taken_at_once_stop_waiting(store: Store) -> None:
    many = [f"https://www.example.org/c{i:04}/atom.xml" for i in range(1100)]
    store.publish_to_hubs(["https://hub.example/"], many)
    store.delivered_to_hub(store.waiting_for_hubs()["https://hub.example/"])
    assert store.waiting_for_hubs() == {}


def test_two_processes_on_one_store_ping_a_hub_once(store: Store, hub: Hub) -> None:
    """`publisher run` and a `publisher build` waking at once: the one that claims the hub
    pings it; the other finds the hub held, then nothing waiting."""
    hub.delay = 0.5
    store.publish_to_hubs([hub.url], [f"https://www.example.org/{path}" for path in FEEDS])
    other = Store(store.engine.url.render_as_string(hide_password=False))
    both = [HubPings(opened, [hub.url], timeout=5, guard=AddressGuard(allow_private=True)) for opened in (store, other)]
    start = threading.Barrier(2)
    left: list[float | None] = []

    def deliver(pings: HubPings) -> None:
        start.wait()
        left.append(pings.deliver_due())

    threads = [threading.Thread(target=deliver, args=(pings,)) for pings in both]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert all(pings.deliver_due() is None for pings in both)  # and again, after
    finally:
        for pings in both:
            pings.close()
        other.close()
    assert len(hub.pings) == 1 and sorted(hub.pings[0]) == sorted(urls(*FEEDS)) and hub.problems == []
    assert store.waiting_for_hubs() == {} and store.hub_state(hub.url).in_flight_until is None
    assert None in left


def test_two_builds_keeping_the_same_urls_at_once_both_succeed(store: Store) -> None:
    """Each build keeps its URLs waiting in one statement per part (an upsert): on PostgreSQL,
    a DELETE then an INSERT of the same keys by two transactions at once fails one of them."""
    hubs, feeds = ["https://hub.example/", "https://other.example/"], [f"https://www.example.org/{p}" for p in FEEDS]
    other = Store(store.engine.url.render_as_string(hide_password=False))
    start, failed = threading.Barrier(2), []

    def keep(opened: Store) -> None:
        start.wait()
        for _ in range(30):
            try:
                opened.publish_to_hubs(hubs, feeds)
                opened.set_hub_state(replace(opened.hub_state(hubs[0]), attempts=1))
            except Exception as exc:  # noqa: BLE001 - what the test counts
                failed.append(exc)

    threads = [threading.Thread(target=keep, args=(opened,)) for opened in (store, other)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        other.close()
    assert failed == []
    assert {hub: [w.url for w in items] for hub, items in store.waiting_for_hubs().items()} == {
        hub: sorted(feeds) for hub in hubs
    }


def test_a_hub_no_longer_configured_is_not_pinged(store: Store, httpserver: HTTPServer) -> None:
    """`publisher run`'s start sends what waited: not to a hub removed from the config since."""
    removed, kept = Hub(httpserver, "/removed"), Hub(httpserver, "/kept")
    store.publish_to_hubs([removed.url, kept.url], ["https://www.example.org/rss.xml"])
    pings = HubPings(store, [kept.url], timeout=5, guard=AddressGuard(allow_private=True))
    try:
        assert pings.deliver_due() is None
    finally:
        pings.close()
    assert removed.pings == [] and kept.pings == [["https://www.example.org/rss.xml"]]


def test_close_waits_for_pings_in_flight_only(store_url: str, hub: Hub, quick_retries: None) -> None:
    """`close` waits `timeout` per POST of the round in flight, and only a couple of seconds
    for a thread with none (here one held up in the store)."""

    class SlowStore(Store):
        def waiting_for_hubs(self) -> dict[str, list[websub.Waiting]]:
            time.sleep(3.5)
            return super().waiting_for_hubs()

    store = SlowStore(store_url)
    pings = HubPings(store, [hub.url], timeout=5, guard=AddressGuard(allow_private=True))
    pings.wake()
    started = time.monotonic()
    pings.close()
    assert time.monotonic() - started < 3
    while pings._thread is not None and time.monotonic() - started < 10:  # let it end before the store goes
        time.sleep(0.05)
    store.close()


def test_a_hub_answer_without_end_is_read_only_as_far_as_its_first_kib(httpserver: HTTPServer) -> None:
    def endless(_request: Request) -> Response:
        def body() -> Iterator[bytes]:
            yield b"topic not allowed\n" + b"x" * 8192
            for _ in range(200):
                time.sleep(0.05)
                yield b"x" * 65536

        return Response(body(), status=403)

    httpserver.expect_request("/hub").respond_with_handler(endless)
    started = time.monotonic()
    answer = websub.ping(httpserver.url_for("/hub"), ["https://www.example.org/rss.xml"], 3, AddressGuard(True))
    assert (answer.taken, answer.retry) == (False, False) and answer.reason == "HTTP 403: topic not allowed"
    assert time.monotonic() - started < 2


def test_a_hub_at_a_loopback_address_is_reached_only_with_allow_private(hub: Hub) -> None:
    answer = websub.ping(hub.url, ["https://www.example.org/rss.xml"], 5, AddressGuard())
    assert not answer.taken and not answer.retry and "loopback" in answer.reason and "allow_private" in answer.reason
    assert hub.pings == []


# --- configuration --------------------------------------------------------------------------


BASE = {"site": {"title": "t", "url": "https://www.example.org"}, "categories": [{"name": "a"}],
        "sources": [{"type": "files", "path": "content"}]}  # fmt: skip


@pytest.mark.parametrize(
    ("hubs", "allow_private", "expected"),
    [
        (["hub.example.org"], False, "websub.hubs[0]: 'hub.example.org' is not an absolute http(s) URL"),
        (["https://hub.example.org/a b"], False, "has characters a URL may not hold"),
        (['https://hub.example.org/">'], False, "has characters a URL may not hold"),
        (["https://hub.example.org/", "https://hub.example.org/"], False,
         "websub.hubs[1]: 'https://hub.example.org/' is already websub.hubs[0]"),
        (["http://127.0.0.1:8000/hub"], False, "its host is a loopback address"),
        (["http://192.168.1.5/hub"], False, "its host is a private address"),
        (["https://pubsubhubbub.appspot.com/", "https://me:s3cret@hub.example.org/"], False,
         "websub.hubs[1]: holds a user name or password, which every feed would publish"),
        (["https://token@hub.example.org/"], False, "websub.hubs[0]: holds a user name or password"),
    ],
)  # fmt: skip
def test_hubs_are_checked_with_their_key(hubs: list[str], allow_private: bool, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        validate(BASE | {"websub": {"hubs": hubs, "allow_private": allow_private}})
    assert expected in str(raised.value) and "s3cret" not in str(raised.value)


def test_a_private_hub_with_allow_private_is_fine() -> None:
    settings = validate(BASE | {"websub": {"hubs": ["http://127.0.0.1:8000/hub"], "allow_private": True}})
    assert App(settings).links.hubs == ("http://127.0.0.1:8000/hub",)


def run_until_built(site: Site, hub: Hub, pings: int) -> dict[str, object]:
    """`publisher run` (this checkout's) until its first build ended and the hub got `pings` in
    all; its /healthz then."""
    from test_smtp import free_port

    service = Service(site.config, site.root, free_port(), env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        service.wait_until_serving()
        service.wait_until_built()
        hub.wait_for(pings)
        time.sleep(0.3)  # and no more
        report: dict[str, object] = service.health().json()
    finally:
        assert service.stop() == 0, service.output()
    return report


def test_publisher_run_pings_after_its_builds_and_sends_what_waited_at_its_start(site: Site, hub: Hub) -> None:
    with_hub(site, hub.url)
    run_until_built(site, hub, 1)
    assert len(hub.pings) == 1 and set(hub.pings[0]) == urls(*FEEDS)  # its first build's, from its job

    hub.answers = [(503, "down")]
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
    assert site.cli("build").exit_code == 0 and len(hub.pings) == 2  # the six URLs wait in the store
    store = Store(site.store_url)
    try:  # the hub's next try is due now (as if its 30 s had passed)
        store.set_hub_state(replace(store.hub_state(hub.url), next_try=None))
    finally:
        store.close()
    hub.answers = [(204, "")]
    report = run_until_built(site, hub, 3)
    written = urls("rss.xml", "atom.xml", "feed.json", "tech/rss.xml", "tech/atom.xml", "tech/feed.json")
    assert len(hub.pings) == 3 and set(hub.pings[2]) == written and hub.problems == []
    assert report["websub"] == {
        "status": "ok",
        "hubs": {hub.url: {**report["websub"]["hubs"][hub.url], "status": "ok"}},
    }
    assert waiting(site) == {}
