"""Alibaba Cloud DirectMail against a loopback DirectMail that checks the ACS3-HMAC-SHA256
signature as Alibaba Cloud's gateway does and answers as it does.

The gateway's check below is written from the V3 signature document on its own, and both it
and the transport's signer reproduce the signature that document publishes for its example.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import Site
from publisher.bounces.events import DELIVERY_HEADER
from publisher.mail import Envelope, Message, build_message
from publisher.model import SubscriberStatus
from publisher.store.schema import deliveries_table as deliveries
from publisher.subscriptions import add
from publisher.transports import TransportError, aliyun
from publisher.transports.http_api import HttpApiTransport

KEY_ID, SECRET = "LTAI5tEXAMPLEkeyID", "EXAMPLEsecretEXAMPLEsecret1234"
SUBJECT = "【高新院周报】第48期：政策解读与产业研究"

# Alibaba Cloud's V3 signature document, its example: ECS RunInstances (query parameters,
# empty body) signed with the placeholder secret "YourAccessKeySecret".
DOC_HEADERS = {
    "host": "ecs.cn-shanghai.aliyuncs.com",
    "x-acs-action": "RunInstances",
    "x-acs-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "x-acs-date": "2023-10-26T09:01:01Z",
    "x-acs-signature-nonce": "d410180a5abf7fe235dd9b74aca91fc0",
    "x-acs-version": "2014-05-26",
}
DOC_QUERY = "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai"
DOC_SIGNATURE = "e521358f7776c97df52e6b2891a8bc73026794a071b50c3323388c4e0df64804"


def gateway_signature(
    method: str, path: str, query: str, headers: dict[str, str], signed: list[str], secret: str
) -> str:
    """The gateway's side, step by step as the document gives it: canonical request (method,
    URI, query, `name:value` lines of the signed headers, their names, the payload hash), then
    "ACS3-HMAC-SHA256\\n" + hex SHA-256 of it, signed with HMAC-SHA256 under the secret."""
    lines = "".join(f"{name}:{headers[name].strip()}\n" for name in signed)
    canonical = f"{method}\n{path}\n{query}\n{lines}\n{';'.join(signed)}\n{headers['x-acs-content-sha256']}"
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def test_both_sides_reproduce_the_documents_published_signature() -> None:
    names = sorted(DOC_HEADERS)
    assert gateway_signature("POST", "/", DOC_QUERY, DOC_HEADERS, names, "YourAccessKeySecret") == DOC_SIGNATURE
    auth = aliyun.authorization("POST", "/", DOC_QUERY, DOC_HEADERS, "YourAccessKeyId", "YourAccessKeySecret")
    assert auth == (
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;"
        f"x-acs-date;x-acs-signature-nonce;x-acs-version,Signature={DOC_SIGNATURE}"
    )


def test_percent_encoding_is_rfc_3986() -> None:
    assert aliyun.percent_encode(" ~/*-+") == "%20~%2F%2A-%2B"  # the SDK's own test case
    assert aliyun.percent_encode("政策 a&b=c") == "%E6%94%BF%E7%AD%96%20a%26b%3Dc"


# --- a loopback DirectMail -----------------------------------------------------------------------


def acs_error(status: int, code: str, message: str) -> Response:
    """Alibaba Cloud's OpenAPI error body."""
    request_id = str(uuid.uuid4()).upper()
    body = {
        "RequestId": request_id, "HostId": "dm.aliyuncs.com", "Code": code, "Message": message,
        "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product=Dm&requestId={request_id}",
    }  # fmt: skip
    return Response(json.dumps(body), status=status, content_type="application/json;charset=utf-8")


THROTTLED = acs_error(400, "Throttling.User", "Request was denied due to user flow control.")


def sent_ok(env_id: str = "600000113548046185") -> Response:
    body = {"EnvId": env_id, "RequestId": "2D086F6-3C09-4FF3-8F1F-B0E9A6B8A1F4"}
    return Response(json.dumps(body), content_type="application/json;charset=utf-8")


class FakeDirectMail:
    """Checks each request as the gateway does (a known AccessKey, a date within 15 minutes, a
    nonce never seen, the body's hash, every x-acs- header signed, the signature recomputed),
    then answers with the next answer."""

    def __init__(self, answers: list[Response] | Callable[[dict[str, str]], Response], token: str = "") -> None:
        self.answers, self.token = answers if callable(answers) else list(answers), token
        self.nonces: set[str] = set()
        self.accepted: list[dict[str, str]] = []
        self.refused: list[str] = []

    def __call__(self, request: Request) -> Response:
        refusal = self._verify(request)
        if refusal is not None:
            self.refused.append(json.loads(refusal.get_data())["Code"])
            return refusal
        form = request.form.to_dict()
        self.accepted.append(form)
        return self.answers(form) if callable(self.answers) else self.answers.pop(0)

    def _verify(self, request: Request) -> Response | None:
        scheme, _, rest = request.headers.get("Authorization", "").partition(" ")
        fields = dict(part.split("=", 1) for part in rest.split(",") if "=" in part)
        if scheme != "ACS3-HMAC-SHA256" or not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
            return acs_error(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        if fields["Credential"] != KEY_ID:
            return acs_error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        headers = {name.lower(): value for name, value in request.headers.items()}
        when = datetime.strptime(headers.get("x-acs-date", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if abs(datetime.now(UTC) - when) > timedelta(minutes=15):
            return acs_error(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        nonce = headers.get("x-acs-signature-nonce", "")
        if not nonce or nonce in self.nonces:
            return acs_error(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self.nonces.add(nonce)
        signed = fields["SignedHeaders"].split(";")
        must = {"host"} | {name for name in headers if name.startswith("x-acs-")}
        body = request.get_data()
        if (
            not must <= set(signed)
            or signed != sorted(signed)
            or headers.get("x-acs-content-sha256") != hashlib.sha256(body).hexdigest()
            or (self.token and headers.get("x-acs-security-token") != self.token)
        ):
            return acs_error(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        expected = gateway_signature(
            request.method, request.path, request.query_string.decode(), headers, signed, SECRET
        )
        if not hmac.compare_digest(expected, fields["Signature"]):
            return acs_error(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")
        if (headers.get("x-acs-action"), headers.get("x-acs-version")) != ("SingleSendMail", "2015-11-23"):
            return acs_error(
                404, "InvalidApi.NotFound", "Specified api is not found, please check your url and method."
            )
        return None


def message(reply_to: bool = True) -> Message:
    envelope = Envelope(
        sender=Address("高新院新闻中心", addr_spec="news@example.org"),
        to=Address("张三", addr_spec="zhang+weekly@例子.中国"),
        subject=SUBJECT,
        date=datetime(2026, 11, 30, tzinfo=UTC),
        message_id_domain="www.example.org",
        list_id="高新院周报 <digest.www.example.org>",
        unsubscribe_url="https://www.example.org/unsubscribe/t",
        reply_to=Address("编辑部", addr_spec="editor@example.org") if reply_to else None,
        message_id="<digest-1.sub-2@www.example.org>",
        extra_headers=((DELIVERY_HEADER, "d7.x1y2z3"),),
    )
    return build_message(envelope, "纯文本正文 a+b=c & 100%", "<p>HTML 正文 &amp; more</p>")


def transport(server: HTTPServer, waits: list[float], secret: str = SECRET, **options: str) -> HttpApiTransport:
    settings = {"access_key_id": KEY_ID, "security_token": "", **options}
    return HttpApiTransport(aliyun.PROVIDER, secret, server.url_for(""), settings, sleep=waits.append)


def serve(httpserver: HTTPServer, fake: FakeDirectMail) -> FakeDirectMail:
    httpserver.expect_request("/", method="POST").respond_with_handler(fake)
    return fake


def test_single_send_mail_sends_the_documented_parameters_and_keeps_the_env_id(httpserver: HTTPServer) -> None:
    fake = serve(httpserver, FakeDirectMail([sent_ok()]))
    mail = message()
    assert transport(httpserver, []).send(mail).provider_id == "600000113548046185" and not fake.refused
    (form,) = fake.accepted
    headers = json.loads(form.pop("Headers"))
    assert form == {
        "AccountName": "news@example.org",
        "AddressType": "1",
        "ToAddress": "zhang+weekly@xn--fsqu00a.xn--fiqs8s",  # IDNA, as DirectMail takes it
        "FromAlias": "高新院新闻中心",
        "Subject": SUBJECT,
        "HtmlBody": mail.html,
        "TextBody": mail.text,
        "ReplyToAddress": "false",
        "ReplyAddress": "editor@example.org",
        "ReplyAddressAlias": "编辑部",
        "ClickTrace": "0",
        "UnSubscribeLinkType": "disabled",
    }
    assert headers == {
        "Message-ID": "<digest-1.sub-2@www.example.org>",
        "List-Unsubscribe": "<https://www.example.org/unsubscribe/t>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "X-User-Notify-Publisher-Delivery": "d7.x1y2z3",  # what EventBridge passes on with the events
    }


def test_without_a_reply_to_no_reply_address_is_sent(httpserver: HTTPServer) -> None:
    fake = serve(httpserver, FakeDirectMail([sent_ok()]))
    transport(httpserver, []).send(message(reply_to=False))
    assert "ReplyAddress" not in fake.accepted[0] and fake.accepted[0]["ReplyToAddress"] == "false"


def test_sts_credentials_send_their_token_signed(httpserver: HTTPServer) -> None:
    fake = serve(httpserver, FakeDirectMail([sent_ok()], token="CAIS+EXAMPLE/token=="))
    transport(httpserver, [], security_token="CAIS+EXAMPLE/token==").send(message())
    assert len(fake.accepted) == 1 and not fake.refused


def test_throttling_under_http_400_waits_and_tries_again_with_a_fresh_nonce(httpserver: HTTPServer) -> None:
    fake = serve(httpserver, FakeDirectMail([THROTTLED, THROTTLED, sent_ok("second")]))
    waits: list[float] = []
    assert transport(httpserver, waits).send(message()).provider_id == "second"
    assert waits == [1.0, 2.0] and len(fake.accepted) == 3 and len(fake.nonces) == 3 and not fake.refused


def test_throttling_to_the_last_attempt_is_temporary(httpserver: HTTPServer) -> None:
    serve(httpserver, FakeDirectMail([THROTTLED] * 4))
    with pytest.raises(TransportError) as caught:
        transport(httpserver, []).send(message())
    error = caught.value
    assert error.retryable and not error.broken and not error.uncertain and "Throttling.User" in str(error)


def test_a_malformed_address_fails_that_message_only(httpserver: HTTPServer) -> None:
    serve(
        httpserver, FakeDirectMail([acs_error(400, "InvalidToAddress", "The specified toAddress is wrongly formed.")])
    )
    with pytest.raises(TransportError) as caught:
        transport(httpserver, []).send(message())
    error = caught.value
    assert not error.retryable and not error.broken and not error.bounced and "InvalidToAddress" in str(error)


def test_an_address_directmail_knows_as_invalid_is_a_bounce(httpserver: HTTPServer) -> None:
    serve(
        httpserver, FakeDirectMail([acs_error(400, "InvalidToAddress.Spam", "Sendmail rejected by invalid address.")])
    )
    with pytest.raises(TransportError) as caught:
        transport(httpserver, []).send(message())
    assert caught.value.bounced and not caught.value.retryable and not caught.value.broken


def test_a_wrong_secret_is_refused_by_the_signature_check_and_stops_the_digest(httpserver: HTTPServer) -> None:
    fake = serve(httpserver, FakeDirectMail([]))
    with pytest.raises(TransportError) as caught:
        transport(httpserver, [], secret="not-the-secret").send(message())
    error = caught.value
    assert fake.refused == ["SignatureDoesNotMatch"] and not fake.accepted
    assert error.broken and not error.retryable and "AccessKey" in error.hint


def test_an_unknown_access_key_stops_the_digest(httpserver: HTTPServer) -> None:
    fake = serve(httpserver, FakeDirectMail([]))
    with pytest.raises(TransportError) as caught:
        transport(httpserver, [], access_key_id="LTAI5tUNKNOWN").send(message())
    assert fake.refused == ["InvalidAccessKeyId.NotFound"] and caught.value.broken
    assert "HTTP 404 InvalidAccessKeyId.NotFound" in str(caught.value)


@pytest.mark.parametrize(
    "code, words",
    [
        ("Forbidden.RiskControl", "This operation is forbidden by Aliyun RiskControl system."),  # any 403
        ("InvalidMailAddress.NotFound", "The specified mailAddress does not exist."),
        ("InvalidFromAlias.Malformed", "The specified fromAlias is wrongly formed."),
        ("InvalidSendMail.Spam", "Sendmail rejected by spam filter."),
    ],
)
def test_a_sender_directmail_will_not_use_stops_the_digest(httpserver: HTTPServer, code: str, words: str) -> None:
    status = 404 if code.endswith("NotFound") else 403 if code.startswith("Forbidden") else 400
    serve(httpserver, FakeDirectMail([acs_error(status, code, words)]))
    with pytest.raises(TransportError) as caught:
        transport(httpserver, []).send(message())
    assert caught.value.broken and code in str(caught.value)


def test_the_gateway_check_refuses_what_it_must(httpserver: HTTPServer) -> None:
    """The fake is strict where Alibaba Cloud is: a replayed nonce, a body changed after signing."""
    fake = serve(httpserver, FakeDirectMail([sent_ok(), sent_ok()]))
    signed = aliyun.PROVIDER.sign
    assert signed is not None
    request = aliyun.PROVIDER.build(message(), SECRET, {})
    one = signed(request, httpserver.url_for("/"), SECRET, {"access_key_id": KEY_ID})
    post = requests.post
    assert post(httpserver.url_for("/"), headers=one.headers, data=one.body).ok
    replay = post(httpserver.url_for("/"), headers=one.headers, data=one.body)
    two = signed(request, httpserver.url_for("/"), SECRET, {"access_key_id": KEY_ID})
    tampered = post(httpserver.url_for("/"), headers=two.headers, data=(two.body or b"").replace(b"zhang", b"wang"))
    assert (replay.status_code, replay.json()["Code"]) == (400, "SignatureNonceUsed")
    assert tampered.json()["Code"] == "IncompleteSignature" and fake.refused == [
        "SignatureNonceUsed",
        "IncompleteSignature",
    ]


def test_a_digest_through_directmail_end_to_end(
    site: Site, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`publisher digest send` with [mail.aliyun]: each reader a call; an address DirectMail
    keeps as invalid marks its reader bounced; the others' EnvIds are kept; a wrong secret then
    pauses the next digest with nobody's attempt used."""

    def answer(form: dict[str, str]) -> Response:
        if form["ToAddress"] == "r1@example.org":
            return acs_error(400, "InvalidToAddress.Spam", "Sendmail rejected by invalid address.")
        return sent_ok("env-" + form["ToAddress"].split("@")[0])

    fake = serve(httpserver, FakeDirectMail(answer))
    monkeypatch.setenv("PUBLISHER_TEST_DM_ID", KEY_ID)
    monkeypatch.setenv("PUBLISHER_TEST_DM_SECRET", SECRET)
    site.append_config(
        '\n[mail]\ntransport = "aliyun"\n[mail.aliyun]\naccess_key_id_env = "PUBLISHER_TEST_DM_ID"\n'
        f'access_key_secret_env = "PUBLISHER_TEST_DM_SECRET"\nbase_url = "{httpserver.url_for("")}"\n'
    )
    site.article("高新院新闻/a.md", "第一篇")
    site.build()
    app = site.app()
    try:
        for i in range(3):
            add(app.store, f"r{i}@example.org", "", (), SubscriberStatus.CONFIRMED, site.clock_now, app.offered)
    finally:
        app.close()
    result = site.cli("digest", "send", "--since", "2026-01-01", "--until", "2026-12-31")
    assert result.exit_code == 1 and "now sent 2, uncertain 0, failed 1" in result.output, result.output
    assert sorted(form["ToAddress"] for form in fake.accepted) == [f"r{i}@example.org" for i in range(3)]
    app = site.app()
    try:
        with app.store.engine.connect() as conn:
            rows = conn.execute(deliveries.select().order_by(deliveries.c.id)).all()
        assert sorted((r.email_key, r.status, r.provider_id) for r in rows) == [
            ("r0@example.org", "sent", "env-r0"),
            ("r1@example.org", "failed", None),
            ("r2@example.org", "sent", "env-r2"),
        ]
        bounced = app.store.subscriber("r1@example.org")
        assert bounced is not None and bounced.status == SubscriberStatus.BOUNCED
    finally:
        app.close()
    monkeypatch.setenv("PUBLISHER_TEST_DM_SECRET", "a-wrong-secret")
    result = site.cli("digest", "send", "--since", "2026-02-01", "--until", "2026-12-31")
    assert result.exit_code == 1 and "paused" in result.output and "SignatureDoesNotMatch" in result.output
    assert fake.refused == ["SignatureDoesNotMatch"]  # one refusal, then the digest stopped
