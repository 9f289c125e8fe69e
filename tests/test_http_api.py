"""HTTP mail APIs against a local HTTP server that checks each provider's documented request."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from typing import Any

import pytest
import trustme
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from publisher.mail import Envelope, build_message
from publisher.transports import TransportError
from publisher.transports.http_api import HttpApiTransport

SUBJECT = "【高新院周报】第48期：政策解读与产业研究"
KEY = "key-123"
TOKEN = "d2s-k3xq7mbe5tnd0v2a"  # the delivery's token, which each provider must echo in its webhooks


def message() -> Any:
    envelope = Envelope(
        sender=Address("高新院新闻中心", addr_spec="news@example.org"),
        to=Address("张三", addr_spec="zhang@example.com"),
        subject=SUBJECT,
        date=datetime(2026, 11, 30, tzinfo=UTC),
        message_id_domain="www.example.org",
        list_id="高新院周报 <digest.www.example.org>",
        unsubscribe_url="https://www.example.org/unsubscribe/t",
        reply_to=Address("编辑部", addr_spec="editor@example.org"),
        message_id="<digest-1.sub-2@www.example.org>",
        extra_headers=(("X-Publisher-Delivery", TOKEN),),
    )
    return build_message(envelope, "纯文本正文", "<p>HTML 正文</p>")


def check_mailgun(request: Request) -> None:
    assert request.path == "/v3/mg.example.org/messages.mime"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
    assert request.form["to"] == "zhang@example.com"
    mime = message_from_bytes(request.files["message"].read(), policy=policy.default)
    assert mime["Subject"] == SUBJECT and mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert request.form["v:publisher_delivery"] == TOKEN and mime["X-Publisher-Delivery"] == TOKEN
    assert request.form["o:tracking"] == "no"  # no pixel, no rewritten link (docs/signup.md)


def check_sendgrid(request: Request) -> None:
    assert request.path == "/v3/mail/send" and request.headers["Authorization"] == f"Bearer {KEY}"
    body = request.get_json()
    assert body["personalizations"] == [{"to": [{"email": "zhang@example.com", "name": "张三"}]}]
    assert body["from"] == {"email": "news@example.org", "name": "高新院新闻中心"}
    assert body["reply_to"] == {"email": "editor@example.org", "name": "编辑部"}
    assert body["subject"] == SUBJECT
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert body["custom_args"] == {"publisher_delivery": TOKEN}
    tracking = body["tracking_settings"]
    assert not tracking["click_tracking"]["enable"] and not tracking["open_tracking"]["enable"]


def check_postmark(request: Request) -> None:
    assert request.path == "/email" and request.headers["X-Postmark-Server-Token"] == KEY
    body = request.get_json()
    assert body["From"] == '"高新院新闻中心" <news@example.org>' and body["To"] == '"张三" <zhang@example.com>'
    assert body["Subject"] == SUBJECT and body["TextBody"].startswith("纯文本正文") and "HTML" in body["HtmlBody"]
    assert {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"} in body["Headers"]
    assert body["MessageStream"] == "broadcast" and body["Metadata"] == {"publisher_delivery": TOKEN}
    assert body["TrackOpens"] is False and body["TrackLinks"] == "None"


def check_resend(request: Request) -> None:
    assert request.path == "/emails" and request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Idempotency-Key"] == "<digest-1.sub-2@www.example.org>"
    body = request.get_json()
    assert body["to"] == ["zhang@example.com"] and body["subject"] == SUBJECT
    assert body["from"] == '"高新院新闻中心" <news@example.org>'
    assert body["headers"]["List-Unsubscribe"] == "<https://www.example.org/unsubscribe/t>"
    assert body["tags"] == [{"name": "publisher_delivery", "value": TOKEN}]


PROVIDERS: dict[str, tuple[Any, Any, dict[str, str]]] = {
    # name: (request check, successful answer, options)
    "mailgun": (
        check_mailgun,
        Response(json.dumps({"id": "<mg-1@mg>", "message": "Queued"})),
        {"domain": "mg.example.org"},
    ),
    "sendgrid": (check_sendgrid, Response("", status=202, headers={"X-Message-Id": "sg-1"}), {}),
    "postmark": (check_postmark, Response(json.dumps({"MessageID": "pm-1", "ErrorCode": 0})), {}),
    "resend": (check_resend, Response(json.dumps({"id": "rs-1"})), {}),
}
IDS = {"mailgun": "<mg-1@mg>", "sendgrid": "sg-1", "postmark": "pm-1", "resend": "rs-1"}


class Script:
    """Answers each request with the next scripted response, checking every request."""

    def __init__(self, check: Any, answers: list[Any]) -> None:
        self.check, self.answers, self.seen = check, list(answers), 0
        self.failures: list[str] = []

    def __call__(self, request: Request) -> Response:
        try:
            self.check(request)
        except AssertionError as exc:  # reported by the test, not lost in the server's log
            self.failures.append(repr(exc))
            return Response(f"request check failed: {exc!r}", status=418)
        self.seen += 1
        answer = self.answers.pop(0)
        return answer if isinstance(answer, Response) else answer()


def transport(httpserver: HTTPServer, name: str, waits: list[float], **extra: Any) -> HttpApiTransport:
    options = PROVIDERS[name][2]
    return HttpApiTransport(name, KEY, base_url=httpserver.url_for(""), options=options, sleep=waits.append, **extra)


@pytest.mark.parametrize("name", PROVIDERS)
def test_200_sends_the_documented_request(httpserver: HTTPServer, name: str) -> None:
    check, ok, _ = PROVIDERS[name]
    script = Script(check, [ok])
    httpserver.expect_request("", method="POST").respond_with_handler(script)
    sent = transport(httpserver, name, []).send(message())
    assert sent.provider_id == IDS[name] and script.seen == 1


@pytest.mark.parametrize("name", PROVIDERS)
def test_400_is_permanent(httpserver: HTTPServer, name: str) -> None:
    check, _ok, _ = PROVIDERS[name]
    httpserver.expect_request("", method="POST").respond_with_handler(
        Script(check, [Response('{"message": "bad address"}', status=400)])
    )
    with pytest.raises(TransportError) as caught:
        transport(httpserver, name, []).send(message())
    assert not caught.value.retryable and "HTTP 400" in str(caught.value) and "bad address" in str(caught.value)


@pytest.mark.parametrize("name", PROVIDERS)
def test_429_waits_retry_after_then_sends(httpserver: HTTPServer, name: str) -> None:
    check, ok, _ = PROVIDERS[name]
    script = Script(check, [Response("slow down", status=429, headers={"Retry-After": "7"}), ok])
    httpserver.expect_request("", method="POST").respond_with_handler(script)
    waits: list[float] = []
    assert transport(httpserver, name, waits).send(message()).provider_id == IDS[name]
    assert waits == [7.0] and script.seen == 2


def test_retry_after_is_capped(httpserver: HTTPServer) -> None:
    check, ok, _ = PROVIDERS["resend"]
    httpserver.expect_request("", method="POST").respond_with_handler(
        Script(check, [Response("", status=429, headers={"Retry-After": "3600"}), ok])
    )
    waits: list[float] = []
    transport(httpserver, "resend", waits, retry_after_cap=30).send(message())
    assert waits == [30.0]


@pytest.mark.parametrize("name", PROVIDERS)
def test_503_is_not_taken_so_it_is_retried_with_backoff_then_gives_up_as_retryable(
    httpserver: HTTPServer, name: str
) -> None:
    check, _ok, _ = PROVIDERS[name]
    script = Script(check, [Response("down for maintenance", status=503)] * 3)
    httpserver.expect_request("", method="POST").respond_with_handler(script)
    waits: list[float] = []
    with pytest.raises(TransportError) as caught:
        transport(httpserver, name, waits, attempts=3).send(message())
    assert caught.value.retryable and not caught.value.uncertain and script.seen == 3 and waits == [0.5, 1.0]


@pytest.mark.parametrize("name", PROVIDERS)
def test_another_5xx_may_have_been_taken_so_only_resend_tries_again(httpserver: HTTPServer, name: str) -> None:
    check, ok, _ = PROVIDERS[name]
    script = Script(check, [Response("oops", status=500), ok])
    httpserver.expect_request("", method="POST").respond_with_handler(script)
    waits: list[float] = []
    if name == "resend":  # the same Idempotency-Key: Resend sends it once whatever happened
        assert transport(httpserver, name, waits).send(message()).provider_id == IDS[name]
        assert script.seen == 2 and waits == [0.5]
        return
    with pytest.raises(TransportError) as caught:
        transport(httpserver, name, waits).send(message())
    assert caught.value.uncertain and not caught.value.retryable and script.seen == 1 and waits == []


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_timeout_after_the_request_went_is_uncertain_but_resend_tries_again(name: str) -> None:
    check, ok, _ = PROVIDERS[name]

    def slow() -> Response:
        time.sleep(1.0)  # far past the 0.2 s timeout
        return Response("late", status=200)

    server = HTTPServer(threaded=True)  # a slow answer must not hold up the retry
    server.start()
    try:
        script = Script(check, [slow, ok])
        server.expect_request("", method="POST").respond_with_handler(script)
        waits: list[float] = []
        if name == "resend":
            assert transport(server, name, waits, timeout=0.2).send(message()).provider_id == IDS[name]
            assert waits == [0.5] and script.seen == 2
            return
        with pytest.raises(TransportError) as caught:
            transport(server, name, waits, timeout=0.2).send(message())
        assert (
            caught.value.uncertain and not caught.value.retryable and "after the request was sent" in str(caught.value)
        )
        assert script.seen == 1 and waits == []  # never sent twice
    finally:
        server.clear()
        server.stop()


def _dropping_server(
    tls: ssl.SSLContext | None = None, answer: Callable[[socket.socket], None] = lambda _conn: None
) -> tuple[socket.socket, list[bytes]]:
    """Reads each request whole (over TLS with `tls`), then gives `answer` the connection and
    closes it: by default without a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    requests_seen: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
                conn = tls.wrap_socket(conn, server_side=True) if tls is not None else conn
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))  # fmt: skip
                while len(body) < length:
                    body += conn.recv(65536)
                requests_seen.append(head)
                answer(conn)

    threading.Thread(target=serve, daemon=True).start()
    return listener, requests_seen


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_dropped_connection_after_the_request_went_is_uncertain_but_resend_tries_again(name: str) -> None:
    listener, seen = _dropping_server()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        api = HttpApiTransport(name, KEY, base_url=url, options=PROVIDERS[name][2], sleep=lambda _s: None, attempts=2)
        with pytest.raises(TransportError) as caught:
            api.send(message())
    finally:
        listener.close()
    if name == "resend":
        assert caught.value.retryable and not caught.value.uncertain and len(seen) == 2
    else:
        assert caught.value.uncertain and not caught.value.retryable and len(seen) == 1


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_refused_connection_or_a_tls_failure_is_certain_and_retryable(httpserver: HTTPServer, name: str) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{unused.getsockname()[1]}"  # nothing listens there
    plain = httpserver.url_for("").replace("http://", "https://")  # TLS to a server that speaks HTTP
    httpserver.expect_request("", method="POST").respond_with_data("not TLS")
    for url in (closed, plain):
        waits: list[float] = []
        api = HttpApiTransport(name, KEY, base_url=url, options=PROVIDERS[name][2], sleep=waits.append, attempts=2)
        with pytest.raises(TransportError) as caught:
            api.send(message())
        assert caught.value.retryable and not caught.value.uncertain, url
        assert waits == [0.5]  # tried again at once: it cannot have been sent


def test_resend_409_answers_by_their_name(httpserver: HTTPServer) -> None:
    check, ok, _ = PROVIDERS["resend"]
    busy = Response(json.dumps({"name": "concurrent_idempotent_requests", "statusCode": 409}), status=409)
    used = Response(json.dumps({"name": "invalid_idempotent_request", "statusCode": 409}), status=409)
    script = Script(check, [busy, ok, used])
    httpserver.expect_request("", method="POST").respond_with_handler(script)
    waits: list[float] = []
    assert transport(httpserver, "resend", waits).send(message()).provider_id == IDS["resend"]  # still running
    with pytest.raises(TransportError) as caught:  # an earlier try with another payload had this key
        transport(httpserver, "resend", waits).send(message())
    assert caught.value.uncertain and not caught.value.retryable and "invalid_idempotent_request" in str(caught.value)
    assert script.seen == 3


def test_one_reading_of_a_status_for_every_provider() -> None:
    from publisher.transports.api_providers import Refusal

    assert Refusal.from_status(429) == Refusal("", retryable=True, throttled=True)
    assert Refusal.from_status(503).retryable and not Refusal.from_status(503).uncertain
    assert Refusal.from_status(500).uncertain and not Refusal.from_status(500).retryable
    assert Refusal.from_status(502, idempotent=True) == Refusal("", retryable=True)
    assert Refusal.from_status(401).broken and Refusal.from_status(403).broken
    assert Refusal.from_status(422, "validation_error") == Refusal("validation_error", retryable=False)


class ResendContract:
    """Resend's documented idempotency: a key seen with the same payload within 24 hours gets
    the first answer and sends nothing; with another payload, 409 invalid_idempotent_request."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[bytes, str]] = {}  # key: (payload, email id)
        self.emails: list[str] = []  # what was sent

    def __call__(self, request: Request) -> Response:
        key, payload = request.headers["Idempotency-Key"], request.get_data()
        if key in self.first:
            if self.first[key][0] != payload:
                body = {"statusCode": 409, "name": "invalid_idempotent_request", "message": "key used"}
                return Response(json.dumps(body), status=409)
            return Response(json.dumps({"id": self.first[key][1]}))
        self.emails.append(f"rs-{len(self.emails) + 1}")
        self.first[key] = (payload, self.emails[-1])
        return Response(json.dumps({"id": self.emails[-1]}))


def test_a_later_try_of_a_resend_delivery_meets_its_first_request(
    httpserver: HTTPServer, site: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first request was taken but its answer lost; the try an hour later, from a new
    process, rebuilds the message: the same bytes and key, so Resend answers with the first
    e-mail's id and sends nothing (before, its links were signed anew: 409, uncertain)."""
    from datetime import timedelta

    from test_newsletter import add_readers, mailing_site

    from publisher.newsletter import Newsletter

    contract = ResendContract()
    httpserver.expect_request("/emails", method="POST").respond_with_handler(contract)
    monkeypatch.setenv("RESEND_KEY", KEY)
    mailing_site(site, 25)
    config = site.config.read_text(encoding="utf-8").replace('transport = "smtp"', 'transport = "resend"')
    site.config.write_text(
        config + f'[mail.resend]\napi_key_env = "RESEND_KEY"\nbase_url = "{httpserver.url_for("")}"\n'
    )
    add_readers(site, 1)
    site.clock_now = datetime.now(UTC)

    def send_first_delivery() -> str | None:
        app = site.app()
        try:
            letters = Newsletter(app)
            [digest] = app.store.digests() or [letters.plan_scheduled().digest]
            [delivery] = app.store.next_deliveries(digest.id, 10)
            message = letters.builder(digest)(delivery)
            assert message is not None
            transport = app.transport()
            try:
                return transport.send(message).provider_id
            finally:
                transport.close()
        finally:
            app.close()

    assert send_first_delivery() == "rs-1"
    site.clock_now += timedelta(hours=1)
    assert send_first_delivery() == "rs-1" and contract.emails == ["rs-1"]


def test_a_request_that_cannot_be_made_is_not_uncertain(httpserver: HTTPServer) -> None:
    """A key with a line break in it (a stray newline in the environment) fails before anything
    is sent: the provider cannot have the message."""
    script = Script(check_postmark, [])
    httpserver.expect_request("", method="POST").respond_with_handler(script)
    api = HttpApiTransport("postmark", "key\nX-Injected: 1", base_url=httpserver.url_for(""), sleep=lambda _s: None)
    with pytest.raises(TransportError) as caught:
        api.send(message())
    assert not caught.value.uncertain and script.seen == 0


def test_a_200_whose_body_cannot_be_read_is_uncertain_and_posted_once(httpserver: HTTPServer) -> None:
    """Postmark answering 200 with a broken gzip body took the message: it was posted 4 times in
    one try (a ContentDecodingError counted as unsent), then re-queued."""
    garbled = Response(b"not gzip at all", status=200, headers={"Content-Encoding": "gzip"})
    script = Script(check_postmark, [garbled] * 4)
    httpserver.expect_request("", method="POST").respond_with_handler(script)
    with pytest.raises(TransportError) as caught:
        transport(httpserver, "postmark", []).send(message())
    error = str(caught.value)
    assert caught.value.uncertain and not caught.value.retryable and script.seen == 1
    assert "HTTP 200" in error and "could not be read" in error and "no answer" not in error


def test_a_tls_error_once_the_request_went_is_uncertain_and_posted_once(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TLS error while reading the answer (here: bytes that are not TLS) may follow the provider
    taking the message; a failed handshake (the test above) cannot."""
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    listener, seen = _dropping_server(server_tls, lambda conn: os.write(conn.fileno(), b"HTTP/1.1 200 OK\r\n\r\n"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))  # it wins over session.verify
    try:
        url = f"https://127.0.0.1:{listener.getsockname()[1]}"
        api = HttpApiTransport("postmark", KEY, base_url=url, sleep=lambda _s: None)
        with pytest.raises(TransportError) as caught:
            api.send(message())
    finally:
        listener.close()
    assert caught.value.uncertain and not caught.value.retryable and len(seen) == 1, caught.value


@pytest.mark.parametrize("name", ["mailgun", "postmark", "resend"])
def test_a_2xx_whose_json_is_not_an_object_is_sent_without_an_id(httpserver: HTTPServer, name: str) -> None:
    """The provider took the message; an answer that is a JSON list has no id to read. It raised
    AttributeError out of send, after the message had gone, and ended the send run."""
    httpserver.expect_request("", method="POST").respond_with_json(["queued"])
    sent = transport(httpserver, name, []).send(message())
    assert sent.provider_id is None
