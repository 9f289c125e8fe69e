"""Amazon SES v2 against a loopback SES that checks SigV4 as AWS does and answers as it does.

The signer is checked three ways: AWS's published SigV4 test suite, botocore's signer on an
SES request, and the loopback server, which recomputes every signature with botocore from the
request it received (and is itself checked by botocore's own SES v2 client).
"""

from __future__ import annotations

import base64
import hmac
import json
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.headerregistry import Address
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from publisher.bounces.events import DELIVERY_HEADER
from publisher.mail import Envelope, Message, build_message
from publisher.transports import TransportError, ses
from publisher.transports.http_api import HttpApiTransport

KEY_ID, SECRET, REGION = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "eu-west-1"
SUBJECT = "【高新院周报】第48期：政策解读与产业研究"

# --- AWS's SigV4 test suite (aws-sig-v4-test-suite: AKIDEXAMPLE, 2015-08-30T12:36:00Z) -------------

SUITE = ses.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
STS_TOKEN = (
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwth"
    "Ax7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXA"
    "kiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
)
VECTORS = [
    # name, method, query, headers besides Host and X-Amz-Date, body, the suite's signature
    ("get-vanilla", "GET", [], {}, b"", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("post-vanilla", "POST", [], {}, b"", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    (
        "post-vanilla-query", "POST", [("Param1", "value1")], {}, b"",
        "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    ),
    (
        "get-vanilla-query-order-key-case", "GET", [("Param2", "value2"), ("Param1", "value1")], {}, b"",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
    (
        "post-header-key-case", "POST", [], {"My-Header1": "value1"}, b"",
        "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
    ),
    (
        "post-header-value-case", "POST", [], {"My-Header1": "VALUE1"}, b"",
        "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
    ),
    (
        "get-header-value-trim", "GET", [], {"My-Header1": " value1", "My-Header2": '"a   b   c"'}, b"",
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    ),
    (
        "post-x-www-form-urlencoded", "POST", [], {"Content-Type": "application/x-www-form-urlencoded"},
        b"Param1=value1", "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
    ),
    (
        "post-sts-header-before", "POST", [], {"X-Amz-Security-Token": STS_TOKEN}, b"",
        "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
    ),
]  # fmt: skip


@pytest.mark.parametrize("name, method, query, headers, body, signature", VECTORS, ids=[v[0] for v in VECTORS])
def test_sigv4_matches_the_aws_test_suite(
    name: str, method: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes, signature: str
) -> None:
    when = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)
    headers = {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z", **headers}
    auth = ses.authorization(method, "/", query, headers, body, SUITE, "us-east-1", "service", when)
    signed = ";".join(sorted(h.lower() for h in headers))
    assert auth == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


@pytest.mark.parametrize("token", ["", "IQoJb3JpZ2luX2VjEXAMPLE//token+/="])
def test_sigv4_matches_botocore_on_an_ses_request(token: str) -> None:
    url = f"https://email.{REGION}.amazonaws.com/v2/email/outbound-emails"
    payload = json.dumps({"Content": {"Raw": {"Data": "TUlNRQ=="}}, "FromEmailAddress": "新闻@example.org"}).encode()
    theirs = AWSRequest(method="POST", url=url, data=payload, headers={"Content-Type": "application/json"})
    SigV4Auth(BotoCredentials(KEY_ID, SECRET, token or None), "ses", REGION).add_auth(theirs)
    when = datetime.strptime(theirs.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    headers = {"Host": f"email.{REGION}.amazonaws.com", "X-Amz-Date": theirs.headers["X-Amz-Date"]}
    headers["Content-Type"] = "application/json"
    if token:
        headers["X-Amz-Security-Token"] = token
    ours = ses.authorization(
        "POST", "/v2/email/outbound-emails", [], headers, payload, ses.Credentials(KEY_ID, SECRET, token), REGION,
        "ses", when,
    )  # fmt: skip
    assert ours == theirs.headers["Authorization"]


# --- a loopback SES v2 -----------------------------------------------------------------------------


def aws_error(status: int, code: str, message: str) -> Response:
    """SES v2's error shape (REST-JSON): the code in x-amzn-ErrorType, the words in `message`."""
    return Response(
        json.dumps({"message": message}), status=status, content_type="application/json",
        headers={"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazonaws.sesv2/"},
    )  # fmt: skip


class FakeSes:
    """Checks each request as SES does (a known key, a date within 5 minutes, the signature
    recomputed by botocore from the request as received), then answers with the next answer."""

    def __init__(self, answers: list[Response], token: str = "") -> None:
        self.answers, self.token = list(answers), token
        self.accepted: list[dict[str, Any]] = []
        self.refused: list[str] = []

    def __call__(self, request: Request) -> Response:
        refusal = self._verify(request)
        if refusal is not None:
            self.refused.append(refusal.headers["x-amzn-ErrorType"].split(":")[0])
            return refusal
        self.accepted.append(json.loads(request.get_data()))
        return self.answers.pop(0)

    def _verify(self, request: Request) -> Response | None:
        auth = request.headers.get("Authorization", "")
        fields = dict(part.strip().split("=", 1) for part in auth.removeprefix("AWS4-HMAC-SHA256 ").split(","))
        key_id, day, region, service, _ = fields["Credential"].split("/")
        if key_id != KEY_ID:
            return aws_error(
                403, "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        stamp = request.headers["X-Amz-Date"]
        when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if abs(datetime.now(UTC) - when) > timedelta(minutes=5) or not stamp.startswith(day):
            return aws_error(403, "InvalidSignatureException", f"Signature expired: {stamp} is now earlier than …")
        if (region, service) != (REGION, "ses") or request.path != "/v2/email/outbound-emails":
            return aws_error(403, "SignatureDoesNotMatch", "Credential should be scoped to a valid region.")
        if self.token and request.headers.get("X-Amz-Security-Token") != self.token:
            return aws_error(
                403, "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        signed = fields["SignedHeaders"].split(";")
        if not {"host", "x-amz-date"} <= set(signed) or (self.token and "x-amz-security-token" not in signed):
            return aws_error(403, "SignatureDoesNotMatch", "Host and X-Amz-Date must be signed.")
        again = AWSRequest(
            method=request.method, url=f"http://{request.headers['Host']}{request.path}", data=request.get_data(),
            headers={h: request.headers[h] for h in signed if h != "host"},
        )  # fmt: skip
        again.context["timestamp"] = stamp
        signer = SigV4Auth(BotoCredentials(KEY_ID, SECRET, self.token or None), service, region)
        expected = signer.signature(signer.string_to_sign(again, signer.canonical_request(again)), again)
        if not hmac.compare_digest(expected, fields["Signature"]):
            return aws_error(
                403, "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method. Consult the service documentation for details.",
            )  # fmt: skip
        return None


def sent_ok(message_id: str = "0100018c1d2e3f4a-5b6c7d8e-EXAMPLE-000000") -> Response:
    return Response(json.dumps({"MessageId": message_id}), content_type="application/json")


def message(delivery: str = "d7.x1y2z3") -> Message:
    envelope = Envelope(
        sender=Address("高新院新闻中心", addr_spec="news@example.org"),
        to=Address("张三", addr_spec="zhang@example.com"),
        subject=SUBJECT,
        date=datetime(2026, 11, 30, tzinfo=UTC),
        message_id_domain="www.example.org",
        list_id="高新院周报 <digest.www.example.org>",
        unsubscribe_url="https://www.example.org/unsubscribe/t",
        message_id="<digest-1.sub-2@www.example.org>",
        extra_headers=((DELIVERY_HEADER, delivery),),
    )
    return build_message(envelope, "纯文本正文", "<p>HTML 正文</p>")


def transport(server: HTTPServer, waits: list[float], secret: str = SECRET, **options: str) -> HttpApiTransport:
    settings = {"region": REGION, "access_key_id": KEY_ID, "session_token": "", "configuration_set": "", **options}
    return HttpApiTransport(ses.PROVIDER, secret, server.url_for(""), settings, sleep=waits.append)


def serve(httpserver: HTTPServer, fake: FakeSes) -> FakeSes:
    httpserver.expect_request("/v2/email/outbound-emails", method="POST").respond_with_handler(fake)
    return fake


def test_the_whole_message_goes_as_raw_content_and_the_message_id_comes_back(httpserver: HTTPServer) -> None:
    fake = serve(httpserver, FakeSes([sent_ok()]))
    sent = transport(httpserver, [], configuration_set="digest").send(message())
    assert sent.provider_id == "0100018c1d2e3f4a-5b6c7d8e-EXAMPLE-000000" and not fake.refused
    (body,) = fake.accepted
    assert body["Destination"] == {"ToAddresses": ["zhang@example.com"]}
    assert body["FromEmailAddress"] == "news@example.org" and body["ConfigurationSetName"] == "digest"
    mime = message_from_bytes(base64.b64decode(body["Content"]["Raw"]["Data"]), policy=policy.default)
    assert mime["Subject"] == SUBJECT and mime[DELIVERY_HEADER] == "d7.x1y2z3"
    assert mime["List-Unsubscribe"] == "<https://www.example.org/unsubscribe/t>"
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mime["Message-ID"] == "<digest-1.sub-2@www.example.org>"


def test_temporary_credentials_send_their_session_token_signed(httpserver: HTTPServer) -> None:
    fake = serve(httpserver, FakeSes([sent_ok()], token="FwoGZXIvYXdzEXAMPLE/token+=="))
    assert transport(httpserver, [], session_token="FwoGZXIvYXdzEXAMPLE/token+==").send(message()).provider_id
    assert len(fake.accepted) == 1 and not fake.refused


def test_throttling_waits_and_each_attempt_is_signed_afresh(httpserver: HTTPServer) -> None:
    throttled = aws_error(429, "TooManyRequestsException", "Too Many Requests")
    fake = serve(httpserver, FakeSes([throttled, throttled, sent_ok("second")]))
    waits: list[float] = []
    assert transport(httpserver, waits).send(message()).provider_id == "second"
    assert waits == [1.0, 2.0] and len(fake.accepted) == 3 and not fake.refused


def test_throttling_to_the_last_attempt_is_temporary(httpserver: HTTPServer) -> None:
    serve(httpserver, FakeSes([aws_error(429, "TooManyRequestsException", "Too Many Requests")] * 4))
    with pytest.raises(TransportError) as caught:
        transport(httpserver, []).send(message())
    error = caught.value
    assert error.retryable and not error.broken and not error.uncertain and "TooManyRequestsException" in str(error)


@pytest.mark.parametrize(
    "code, words",
    [
        ("BadRequestException", "Illegal address"),
        ("MessageRejected", "Email address is not verified. The following identities failed the check: zhang@…"),
    ],
)
def test_an_address_ses_refuses_fails_that_message_only(httpserver: HTTPServer, code: str, words: str) -> None:
    serve(httpserver, FakeSes([aws_error(400, code, words)]))
    with pytest.raises(TransportError) as caught:
        transport(httpserver, []).send(message())
    error = caught.value
    assert not error.retryable and not error.broken and not error.bounced
    assert f"HTTP 400 {code}" in str(error) and words[:15] in str(error)


def test_a_wrong_secret_is_refused_by_the_signature_check_and_stops_the_digest(httpserver: HTTPServer) -> None:
    fake = serve(httpserver, FakeSes([]))
    with pytest.raises(TransportError) as caught:
        transport(httpserver, [], secret="not-the-secret").send(message())
    error = caught.value
    assert fake.refused == ["SignatureDoesNotMatch"] and not fake.accepted
    assert error.broken and not error.retryable and "access key" in error.hint and "SignatureDoesNotMatch" in str(error)


def test_an_unknown_key_id_stops_the_digest(httpserver: HTTPServer) -> None:
    fake = serve(httpserver, FakeSes([]))
    with pytest.raises(TransportError) as caught:
        transport(httpserver, [], access_key_id="AKIAUNKNOWN0EXAMPLE").send(message())
    assert fake.refused == ["UnrecognizedClientException"] and caught.value.broken


@pytest.mark.parametrize(
    "status, code",
    [
        (400, "SendingPausedException"),
        (400, "AccountSuspendedException"),
        (400, "MailFromDomainNotVerifiedException"),
        (403, "OptInRequired"),  # a 403 whatever its code
    ],
)
def test_an_account_that_cannot_send_stops_the_digest(httpserver: HTTPServer, status: int, code: str) -> None:
    serve(httpserver, FakeSes([aws_error(status, code, "The message can't be sent.")]))
    with pytest.raises(TransportError) as caught:
        transport(httpserver, []).send(message())
    assert caught.value.broken and code in str(caught.value)


def test_the_loopback_ses_answers_as_botocore_expects(httpserver: HTTPServer) -> None:
    """botocore's own SES v2 client, signing with its signer, is accepted by the fake, reads its
    MessageId and reads its errors as the codes the transport maps."""
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import ClientError

    answers = [sent_ok("boto-1"), aws_error(429, "TooManyRequestsException", "Too Many Requests")]
    fake = serve(httpserver, FakeSes(answers))

    def client(secret: str) -> Any:
        return botocore.session.get_session().create_client(
            "sesv2", region_name=REGION, endpoint_url=httpserver.url_for(""), aws_access_key_id=KEY_ID,
            aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1}),
        )  # fmt: skip

    raw = {"Raw": {"Data": message().as_bytes()}}
    assert client(SECRET).send_email(Content=raw)["MessageId"] == "boto-1"
    for secret, code in ((SECRET, "TooManyRequestsException"), ("wrong", "SignatureDoesNotMatch")):
        with pytest.raises(ClientError) as caught:
            client(secret).send_email(Content=raw)
        assert caught.value.response["Error"]["Code"] == code
    assert len(fake.accepted) == 2 and fake.refused == ["SignatureDoesNotMatch"]
