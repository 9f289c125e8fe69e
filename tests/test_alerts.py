"""`[alerts]` against a webhook on loopback: a DingTalk robot that checks its message's shape and
the "加签" signature as DingTalk computes it, told once when a source fails N runs in a row, not
again while it stays failed, and again after it read and failed N times more; a webhook that
is down fails no build and is tried again; WeCom's and the generic format's shapes; a digest
that pauses itself; the URL checked at `check` and at the start."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date
from typing import Any
from urllib.parse import parse_qs, quote

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import Site
from publisher.alerts import Alert, AlertError, Webhook
from publisher.errors import ConfigError
from publisher.mail import Message
from publisher.model import Subscriber, SubscriberStatus
from publisher.newsletter import Newsletter
from publisher.transports import Sent, TransportError

SECRET = "SEC" + "0123456789abcdef" * 4  # a DingTalk signing secret's shape


class Robot:
    """A group robot on loopback: what it was sent, and what it answers."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.received: list[tuple[dict[str, list[str]], dict[str, Any], dict[str, str]]] = []
        self.status = 200
        server.expect_request("/robot/send", method="POST").respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        self.received.append((parse_qs(request.query_string.decode()), json.loads(request.data), dict(request.headers)))
        if self.status != 200:
            return Response("down", status=self.status)
        return Response(json.dumps({"errcode": 0, "errmsg": "ok"}), content_type="application/json")


@pytest.fixture
def robot(httpserver: HTTPServer) -> Robot:
    return Robot(httpserver)


@pytest.fixture
def feed_site(site: Site, robot: Robot, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bool]]:
    """The site reads a loopback feed that answers 404 while `state["down"]`; alerts go to the robot."""
    state = {"down": True}
    feed = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>上游</title>'
        "<link>https://other.example.org/1.html</link><pubDate>Tue, 24 Nov 2026 08:00:00 +0800</pubDate>"
        "</item></channel></rss>"
    )

    def answer(_request: Request) -> Response:
        return Response("gone", status=404) if state["down"] else Response(feed, content_type="application/rss+xml")

    robot.server.expect_request("/robots.txt").respond_with_data("", status=404)
    robot.server.expect_request("/feed.xml").respond_with_handler(answer)
    monkeypatch.setenv("TEST_ALERT_URL", robot.server.url_for("/robot/send") + "?access_token=robot-token")
    monkeypatch.setenv("TEST_ALERT_SECRET", SECRET)
    site.append_config(
        f"""
[[sources]]
type = "feed"
name = "upstream"
allow_private = true
delay = 0
url = "{robot.server.url_for("/feed.xml")}"
category = "tech"

[alerts]
url_env = "TEST_ALERT_URL"
allow_private = true
format = "dingtalk"
secret_env = "TEST_ALERT_SECRET"
source_failures = 3
"""
    )
    yield state


def expected_sign(timestamp: str) -> str:
    """DingTalk's own recipe: base64(HMAC-SHA256(secret, "<timestamp>\\n<secret>"))."""
    digest = hmac.new(SECRET.encode(), f"{timestamp}\n{SECRET}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def test_a_source_failing_n_runs_alerts_once_until_it_reads_again(
    site: Site, robot: Robot, feed_site: dict[str, bool]
) -> None:
    site.build()
    site.build()
    assert robot.received == []  # two failures: under the threshold
    site.build()  # the third in a row
    assert len(robot.received) == 1
    query, body, _headers = robot.received[0]
    assert query["access_token"] == ["robot-token"]
    [timestamp], [sign] = query["timestamp"], query["sign"]  # parse_qs has URL-decoded the sign
    assert abs(int(timestamp) / 1000 - time.time()) < 60 and sign == expected_sign(timestamp)
    assert set(body) == {"msgtype", "markdown"} and body["msgtype"] == "markdown"
    assert set(body["markdown"]) == {"title", "text"}
    assert body["markdown"]["title"] == "publisher alert (高新院): source upstream failing"
    text = body["markdown"]["text"]
    assert text.startswith("#### publisher alert (高新院)") and "upstream failed 3 runs in a row" in text
    assert "HTTP 404" in text and robot.server.url_for("/feed.xml") in text

    site.build()
    site.build()
    assert len(robot.received) == 1  # still failing: no second alert

    feed_site["down"] = False
    site.build()  # it reads: the condition clears (no message)
    feed_site["down"] = True
    site.build()
    site.build()
    assert len(robot.received) == 1
    site.build()
    assert len(robot.received) == 2
    assert "failed 3 runs in a row" in robot.received[1][1]["markdown"]["text"]


def test_a_webhook_that_is_down_fails_no_build_and_is_tried_again(
    site: Site, robot: Robot, feed_site: dict[str, bool], caplog: pytest.LogCaptureFixture
) -> None:
    robot.status = 503
    site.article("policy/a.md", "《人才十条》政策要点解读", date="2026-11-10 09:00")
    for run in range(3):
        report = site.build()
        assert report.failed_sources and report.new == (run == 0)  # the build went on: the files source's article
    assert len(robot.received) == 1 and "not sent (tried again at the next check)" in caplog.text
    robot.status = 200
    site.build()  # still failing: the alert that did not go out goes now
    assert len(robot.received) == 2
    site.build()
    assert len(robot.received) == 2


def test_wecom_markdown_and_the_signed_generic_json(
    site: Site, robot: Robot, feed_site: dict[str, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = site.config.read_text(encoding="utf-8")
    site.config.write_text(config.replace('format = "dingtalk"', 'format = "wecom"'), encoding="utf-8")
    for _ in range(3):
        site.build()
    [(query, body, _)] = robot.received
    assert "sign" not in query and body["msgtype"] == "markdown" and set(body["markdown"]) == {"content"}
    assert body["markdown"]["content"].startswith("**publisher alert (高新院): source upstream failing**\n> ")

    feed_site["down"] = False
    site.build()
    feed_site["down"] = True
    site.config.write_text(config.replace('format = "dingtalk"', 'format = "generic"'), encoding="utf-8")
    for _ in range(3):
        site.build()
    _, body, headers = robot.received[-1]
    assert body["event"] == "source_failing" and body["details"]["source"] == "upstream"
    assert body["details"]["failures"] == 3 and body["site"] == "高新院"
    raw = json.dumps(body, ensure_ascii=False).encode()
    stamp = headers["X-Publisher-Timestamp"]
    signed = hmac.new(SECRET.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    assert headers["X-Publisher-Signature"] == f"sha256={signed}"


class RefusedLogin:
    """A transport whose server refuses our login: nothing can go (broken)."""

    def send(self, message: Message) -> Sent:
        raise TransportError("535 authentication failed", "check the password", retryable=False, broken=True)

    def close(self) -> None:
        pass


def test_a_digest_that_pauses_itself_alerts_once(site: Site, robot: Robot, feed_site: dict[str, bool]) -> None:
    feed_site["down"] = False
    site.append_config(site.mail_to_outbox())
    site.article("policy/a.md", "《人才十条》政策要点解读", date="2026-11-10 09:00")
    site.build()
    app = site.app()
    try:
        now = app.clock()
        app.store.save_subscribers([Subscriber("a@example.com", "", (), SubscriberStatus.CONFIRMED, now, "t", now)])
        letters = Newsletter(app)
        plan = letters.plan(letters.window(date(2026, 11, 1), date(2026, 11, 19)))
        assert letters.send(plan.digest, RefusedLogin()).paused
        assert letters.send(app.store.digest(plan.digest.id), RefusedLogin()).paused  # resumed, paused again
    finally:
        app.close()
    bodies = [body["markdown"]["text"] for _, body, _ in robot.received]
    assert len(bodies) == 2  # paused, resumed (cleared), paused again
    assert all("535 authentication failed" in text and "publisher digest resume" in text for text in bodies)


def test_the_webhook_url_is_checked_at_check_and_at_the_start(
    site: Site, robot: Robot, feed_site: dict[str, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_ALERT_URL", "http://robot.example.org/robot/send?access_token=x")
    checked = site.cli("check")
    assert checked.exit_code == 2 and "alerts.url_env" in checked.stderr and "not an https URL" in checked.stderr
    monkeypatch.delenv("TEST_ALERT_URL")
    app = site.app()
    try:
        with pytest.raises(ConfigError, match="TEST_ALERT_URL is not set"):
            app.alert_webhook()
        assert app.alerts is None  # the work goes on without alerts
    finally:
        app.close()
    assert site.cli("run", "--port", "0").exit_code == 2


def test_a_digest_whose_bounces_cross_the_rate_alerts_once(
    site: Site, robot: Robot, feed_site: dict[str, bool], tmp_path: Any
) -> None:
    from email import message_from_bytes, policy

    from publisher.bounces.events import DELIVERY_HEADER, EventKind, MailEvent
    from publisher.transports.outbox import OutboxTransport

    feed_site["down"] = False
    site.append_config(site.mail_to_outbox())
    config = site.config.read_text(encoding="utf-8")
    site.config.write_text(config.replace("source_failures = 3", "source_failures = 3\nmin_sent = 3"), encoding="utf-8")
    site.article("policy/a.md", "《人才十条》政策要点解读", date="2026-11-10 09:00")
    site.build()
    app = site.app()
    try:
        now = app.clock()
        emails = ("a@example.com", "b@example.com", "c@example.com")
        app.store.save_subscribers(Subscriber(e, "", (), SubscriberStatus.CONFIRMED, now, "t", now) for e in emails)
        letters = Newsletter(app)
        plan = letters.plan(letters.window(date(2026, 11, 1), date(2026, 11, 19)))
        assert letters.send(plan.digest, OutboxTransport(tmp_path / "sent")).sent == 3
        tokens = {}
        for path in (tmp_path / "sent").glob("*.eml"):
            mail = message_from_bytes(path.read_bytes(), policy=policy.default)
            tokens[mail["To"].addresses[0].addr_spec] = str(mail[DELIVERY_HEADER])

        def bounce(email: str, kind: EventKind) -> None:
            event = MailEvent(kind, email, "mailgun", "550 5.1.1 no such user", now, delivery_token=tokens[email])
            app.record_mail_events([event])

        bounce("a@example.com", EventKind.SOFT_BOUNCE)  # soft bounces are not counted
        app.close_watch()
        assert robot.received == []
        bounce("a@example.com", EventKind.HARD_BOUNCE)  # 1 of 3: over 5 %
        bounce("b@example.com", EventKind.HARD_BOUNCE)  # still over: told once
    finally:
        app.close()
    [(_, body, _)] = robot.received
    assert body["markdown"]["title"] == f"publisher alert (高新院): digest {plan.digest.key}: hard bounces at 33.33%"
    assert "1 hard bounces of 3 sent (33.33%; the limit is 5.00%)" in body["markdown"]["text"]


def test_a_private_webhook_needs_allow_private(
    site: Site, robot: Robot, feed_site: dict[str, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = site.config.read_text(encoding="utf-8")
    site.config.write_text(config.replace("allow_private = true\nformat", "format"), encoding="utf-8")
    checked = site.cli("check")
    assert checked.exit_code == 2 and "alerts.allow_private" in checked.stderr and "loopback" in checked.stderr
    # A name is judged as it connects: the loopback robot, reached without allow_private, is not.
    url = robot.server.url_for("/robot/send") + "?access_token=robot-token"
    with pytest.raises(AlertError, match="loopback address.*allow_private"):
        Webhook(url, "dingtalk").post(ALERT)
    assert robot.received == []
    Webhook(url, "dingtalk", allow_private=True).post(ALERT)
    assert len(robot.received) == 1


ALERT = Alert("source_failing", "source x failing", ("x failed 3 runs in a row",))


def test_a_failed_post_names_the_host_never_the_robots_token() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed once the with ends: nothing listens there
    webhook = Webhook(f"http://127.0.0.1:{port}/robot/send?access_token=TOKEN-abc123", "dingtalk", allow_private=True)
    with pytest.raises(AlertError) as failed:
        webhook.post(ALERT)
    assert f"127.0.0.1:{port}" in str(failed.value) and "TOKEN-abc123" not in str(failed.value)


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/open-apis/bot/v2/hook/PATHTOKEN-0123456789", "PATHTOKEN"),  # the token is the path's last segment
        ("/hook/TOK|EN^abc-0123456789", "EN^abc"),  # requests sends it percent-encoded: TOK%7CEN%5Eabc
        ("/hook/令牌TOKEN0123456789", "TOKEN0123"),
        ("/robot/send?access_token=TOK EN|x-0123456789", "EN|x"),
    ],
)
def test_a_failed_post_never_logs_a_token_in_the_path_or_query(path: str, token: str) -> None:
    """Slack- and Feishu-style webhooks carry their secret in the path, DingTalk's in the query;
    requests' messages quote the URL as sent, percent-encoded."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    webhook = Webhook(f"http://127.0.0.1:{port}{path}", "generic", allow_private=True)
    with pytest.raises(AlertError) as failed:
        webhook.post(ALERT)
    said = str(failed.value)
    assert f"127.0.0.1:{port}" in said
    assert token not in said and quote(token) not in said and "0123456789" not in said, said


def test_a_proxy_in_the_environment_does_not_take_the_post_past_the_guard(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HTTP_PROXY set, requests would hand the post to the proxy, whose connection the
    address guard never sees: a webhook on a private address went through. The proxy here is a
    loopback server that would take anything; the webhook's address is never connected to."""
    proxied: list[str] = []
    httpserver.expect_request("").respond_with_handler(lambda r: proxied.append(r.url) or Response("{}"))
    monkeypatch.setenv("HTTP_PROXY", httpserver.url_for("/"))
    monkeypatch.setenv("http_proxy", httpserver.url_for("/"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    webhook = Webhook("http://10.0.0.1/latest/meta-data/", "generic")
    with pytest.raises(AlertError, match="allow_private"):
        webhook.post(ALERT)
    assert proxied == []


def test_a_webhook_answering_a_little_at_a_time_is_cut_at_the_timeout() -> None:
    """Each byte comes well within the timeout, the whole answer far after it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    stop = threading.Event()

    def drip() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            body = b'{"errcode": 0}' + b" " * 100
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
            for byte in body:
                if stop.wait(0.05):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/robot/send"
        with pytest.raises(AlertError, match="no complete answer within 0.5 s"):
            Webhook(url, "dingtalk", timeout=0.5, allow_private=True).post(ALERT)
    finally:
        stop.set()
        thread.join(10)
        server.close()
