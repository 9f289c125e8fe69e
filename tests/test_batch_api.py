"""The providers' batch APIs against a local HTTP server that checks each documented request and
answers as the provider documents: per-recipient outcomes, 429 with Retry-After, 5xx, and an
answer lost after the call went."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from email.headerregistry import Address
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from test_http_api import KEY, Script, _dropping_server
from test_ses import KEY_ID, REGION, SECRET, FakeSes, aws_error, sent_ok
from werkzeug import Request, Response

from publisher.bounces.events import DELIVERY_HEADER
from publisher.mail import Envelope, Message, build_message
from publisher.transports import Sent, TransportError
from publisher.transports import ses as ses_api
from publisher.transports.batch import BATCH_APIS, BatchApiTransport, ConcurrentTransport
from publisher.transports.batch_templates import by_template
from publisher.transports.http_api import HttpApiTransport

NAMES = ["张三", "李四", "", "王五"]
OPTIONS = {"domain": "mg.example.org", "message_stream": "broadcast"}


def reader(n: int, name: str | None = None) -> Message:
    """Reader n's digest: their name in the greeting, their own links and delivery token."""
    name = NAMES[n % len(NAMES)] if name is None else name
    unsubscribe, preferences = (
        f"https://www.example.org/unsubscribe/u{n}tok",
        f"https://www.example.org/preferences/p{n}",
    )
    hello = f"{name}，您好" if name else "您好"
    envelope = Envelope(
        sender=Address("高新院新闻中心", addr_spec="news@example.org"),
        to=Address(name, addr_spec=f"r{n}@example.com"),
        subject="【高新院周报】第48期",
        date=datetime(2026, 11, 30, tzinfo=UTC),
        message_id_domain="www.example.org",
        list_id="高新院周报 <digest.www.example.org>",
        unsubscribe_url=unsubscribe,
        message_id=f"<digest-1.{n}@www.example.org>",
        extra_headers=((DELIVERY_HEADER, f"d1.token{n}"),),
        personal=(("name", name), ("unsubscribe", unsubscribe), ("preferences", preferences)),
    )
    text = f"{hello}\n本周文章\n退订：{unsubscribe}\n设置：{preferences}\n"
    html = f"<p>{hello}</p><p>本周文章</p><a href='{unsubscribe}'>退订</a><a href='{preferences}'>设置</a>"
    return build_message(envelope, text, html)


def batch(server: HTTPServer, name: str, waits: list[float], **extra: Any) -> BatchApiTransport:
    single = HttpApiTransport(name, KEY, base_url=server.url_for(""), options=OPTIONS, sleep=waits.append, **extra)
    return BatchApiTransport(single, BATCH_APIS[name])


def substituted(template: str, values: dict[str, str]) -> str:
    """What the provider makes of a template for one recipient."""
    return re.sub(r"%recipient\.(\w+)%", lambda m: values[m.group(1)], template)


# --- the documented requests --------------------------------------------------------------------


def check_postmark(request: Request) -> None:
    assert request.path == "/email/batch" and request.headers["X-Postmark-Server-Token"] == KEY
    body = request.get_json()
    assert isinstance(body, list) and 1 <= len(body) <= 500
    for message in body:
        assert message["MessageStream"] == "broadcast" and message["To"].rstrip(">").endswith("@example.com")
        assert message["Metadata"]["publisher_delivery"].startswith("d1.token")


def check_resend(request: Request) -> None:
    assert request.path == "/emails/batch" and request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["x-batch-validation"] == "permissive"
    assert request.headers["Idempotency-Key"].startswith("batch-")
    body = request.get_json()
    assert isinstance(body, list) and 1 <= len(body) <= 100
    assert all(len(m["to"]) == 1 and m["tags"][0]["name"] == "publisher_delivery" for m in body)


def check_mailgun(request: Request) -> None:
    """Multiple `to`, the template with %recipient.x% placeholders, recipient-variables keyed by
    plain address: each recipient's substituted message is the one rendered for them."""
    assert request.path == "/v3/mg.example.org/messages"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
    form = request.form
    variables = json.loads(form["recipient-variables"])
    to = form.getlist("to")
    assert 2 <= len(to) <= 1000 and len(variables) == len(to)
    assert form["h:List-Unsubscribe"] == "%recipient.list_unsubscribe%" and form["o:tracking"] == "no"
    assert form["v:publisher_delivery"] == "%recipient.delivery%" == form[f"h:{DELIVERY_HEADER}"]
    for address in to:
        plain = address.rsplit("<", 1)[-1].rstrip(">")
        n = int(plain[1:].split("@")[0])
        mine = reader(n)
        assert substituted(form["html"], variables[plain]) == mine.html
        assert substituted(form["text"], variables[plain]) == mine.text
        assert variables[plain]["list_unsubscribe"] == f"<{mine.envelope.unsubscribe_url}>"
        assert variables[plain]["delivery"] == f"d1.token{n}"


def check_sendgrid(request: Request) -> None:
    assert request.path == "/v3/mail/send" and request.headers["Authorization"] == f"Bearer {KEY}"
    body = request.get_json()
    assert 1 <= len(body["personalizations"]) <= 1000
    [text, html] = body["content"]
    for entry in body["personalizations"]:
        [to] = entry["to"]
        n = int(to["email"][1:].split("@")[0])
        mine = reader(n)
        values = {tag.removeprefix("%recipient.").removesuffix("%"): v for tag, v in entry["substitutions"].items()}
        assert substituted(html["value"], values) == mine.html and substituted(text["value"], values) == mine.text
        assert entry["headers"]["List-Unsubscribe"] == f"<{mine.envelope.unsubscribe_url}>"
        assert entry["custom_args"] == {"publisher_delivery": f"d1.token{n}"}
    assert not body["tracking_settings"]["open_tracking"]["enable"]


def ok(name: str, count: int) -> Response:
    if name == "postmark":
        return Response(json.dumps([{"ErrorCode": 0, "Message": "OK", "MessageID": f"pm-{i}"} for i in range(count)]))
    if name == "resend":
        return Response(json.dumps({"data": [{"id": f"rs-{i}"} for i in range(count)]}))
    if name == "mailgun":
        return Response(json.dumps({"id": "<batch-1@mg>", "message": "Queued. Thank you."}))
    return Response("", status=202, headers={"X-Message-Id": "sg-batch-1"})


CHECKS = {"postmark": check_postmark, "resend": check_resend, "mailgun": check_mailgun, "sendgrid": check_sendgrid}
NAMED = [0, 1, 3, 4, 5, 7]  # readers with a name: one template (the nameless greeting is another)


@pytest.mark.parametrize("name", CHECKS)
def test_a_batch_goes_in_one_documented_call_with_each_readers_id(httpserver: HTTPServer, name: str) -> None:
    messages = [reader(n) for n in NAMED]
    api = batch(httpserver, name, [])
    assert api.calls(messages) == [list(range(len(NAMED)))]
    script = Script(CHECKS[name], [ok(name, len(messages))])
    httpserver.expect_request("", method="POST").respond_with_handler(script)
    outcomes = api.send_batch(messages)
    assert script.failures == [] and script.seen == 1
    ids = [o.provider_id for o in outcomes if isinstance(o, Sent)]
    expected = {"postmark": [f"pm-{i}" for i in range(6)], "resend": [f"rs-{i}" for i in range(6)],
                "mailgun": ["<batch-1@mg>"] * 6, "sendgrid": ["sg-batch-1"] * 6}  # fmt: skip
    assert ids == expected[name]


def test_templates_group_readers_of_one_message_and_leave_the_rest_alone() -> None:
    odd = reader(9, name="<b>")  # a name HTML escapes: it cannot be put back exactly
    messages = [reader(0), reader(2), reader(1), odd, reader(6), reader(3)]
    assert by_template(messages, 1000) == [[3], [0, 2, 5], [1, 4]]
    assert by_template(messages, 2) == [[0, 2], [3], [1, 4], [5]]


def test_postmark_outcomes_per_message_an_inactive_address_is_a_hard_bounce(httpserver: HTTPServer) -> None:
    answers = [{"ErrorCode": 0, "Message": "OK", "MessageID": "pm-0"},
               {"ErrorCode": 406, "Message": "You tried to send to recipient(s) that have been marked as inactive."},
               {"ErrorCode": 300, "Message": "Invalid email request"},
               {"ErrorCode": 0, "Message": "OK", "MessageID": "pm-3"}]  # fmt: skip
    httpserver.expect_request("", method="POST").respond_with_handler(
        Script(check_postmark, [Response(json.dumps(answers))])
    )
    sent, dead, bad, also = batch(httpserver, "postmark", []).send_batch([reader(n) for n in range(4)])
    assert sent == Sent("pm-0") and also == Sent("pm-3")
    assert isinstance(dead, TransportError) and dead.bounced and not dead.retryable and "406" in str(dead)
    assert isinstance(bad, TransportError) and not bad.bounced and not bad.retryable


@pytest.mark.parametrize(
    ("code", "message", "meaning"),
    [
        (400, "Sender signature not found", "broken"),
        (401, "Sender signature not confirmed", "broken"),
        (413, "Account may not send", "broken"),
        (10, "Bad or missing API token", "broken"),
        (100, "Maintenance", "retryable"),
        (429, "Rate limit exceeded", "retryable"),
        (406, "You tried to send to recipient(s) that have been marked as inactive.", "bounced"),
        (300, "Invalid email request", "refused"),
    ],
)
def test_postmark_error_codes_per_message_mean_what_its_table_says(
    httpserver: HTTPServer, code: int, message: str, meaning: str
) -> None:
    """Postmark's API error codes: the account's (the call handed back, the digest paused),
    try later, the address dead, or this message refused."""
    answers = [{"ErrorCode": 0, "Message": "OK", "MessageID": "pm-0"}, {"ErrorCode": code, "Message": message}]
    httpserver.expect_request("", method="POST").respond_with_handler(
        Script(check_postmark, [Response(json.dumps(answers))])
    )
    sent, failed = batch(httpserver, "postmark", []).send_batch([reader(0), reader(1)])
    assert sent == Sent("pm-0") and isinstance(failed, TransportError) and str(code) in str(failed)
    flags = {"broken": failed.broken, "retryable": failed.retryable, "bounced": failed.bounced}
    assert [name for name, on in flags.items() if on] == ([] if meaning == "refused" else [meaning])
    assert not failed.uncertain


def test_resend_refuses_the_invalid_ones_by_index_and_sends_the_rest(httpserver: HTTPServer) -> None:
    answer = {"data": [{"id": "rs-0"}, {"id": "rs-2"}], "errors": [{"index": 1, "message": "Invalid `to` field."}]}
    httpserver.expect_request("", method="POST").respond_with_handler(
        Script(check_resend, [Response(json.dumps(answer))])
    )
    first, refused, third = batch(httpserver, "resend", []).send_batch([reader(n) for n in range(3)])
    assert first == Sent("rs-0") and third == Sent("rs-2")
    assert isinstance(refused, TransportError) and "Invalid `to` field" in str(refused) and not refused.retryable


@pytest.mark.parametrize("name", ["mailgun", "sendgrid"])
def test_a_call_refused_whole_is_sent_one_at_a_time_so_one_bad_address_fails_alone(
    httpserver: HTTPServer, name: str
) -> None:
    messages = [reader(n) for n in (0, 1, 3)]
    single = {
        "mailgun": Response(json.dumps({"id": "<one@mg>"})),
        "sendgrid": Response("", 202, {"X-Message-Id": "one"}),
    }
    refused = Response(json.dumps({"message": "'to' parameter is not a valid address"}), status=400)
    answers = [refused, single[name], Response('{"message": "bad address"}', status=400), single[name]]
    script = Script(lambda _request: None, answers)
    httpserver.expect_request("", method="POST").respond_with_handler(script)
    first, bad, last = batch(httpserver, name, []).send_batch(messages)
    assert isinstance(first, Sent) and isinstance(last, Sent) and script.seen == 4
    assert isinstance(bad, TransportError) and not bad.retryable and not bad.uncertain


@pytest.mark.parametrize("name", CHECKS)
def test_429_waits_retry_after_then_the_whole_call_goes(httpserver: HTTPServer, name: str) -> None:
    messages = [reader(n) for n in (0, 1)]
    answers = [Response('{"message": "slow down"}', status=429, headers={"Retry-After": "7"}), ok(name, 2)]
    script = Script(CHECKS[name], answers)
    httpserver.expect_request("", method="POST").respond_with_handler(script)
    waits: list[float] = []
    outcomes = batch(httpserver, name, waits).send_batch(messages)
    assert all(isinstance(o, Sent) for o in outcomes) and waits == [7.0] and script.seen == 2


@pytest.mark.parametrize("name", CHECKS)
def test_a_5xx_may_have_been_taken_so_the_call_is_uncertain_but_resend_tries_again(
    httpserver: HTTPServer, name: str
) -> None:
    messages = [reader(n) for n in (0, 1)]
    script = Script(CHECKS[name], [Response("oops", status=500), ok(name, 2)])
    httpserver.expect_request("", method="POST").respond_with_handler(script)
    api = batch(httpserver, name, [])
    if name == "resend":  # the batch's Idempotency-Key: Resend sends it once whatever happened
        assert all(isinstance(o, Sent) for o in api.send_batch(messages)) and script.seen == 2
        return
    with pytest.raises(TransportError) as caught:
        api.send_batch(messages)
    assert caught.value.uncertain and not caught.value.retryable and script.seen == 1


def test_resend_5xx_until_the_attempts_run_out_is_uncertain_not_left_for_another_key(httpserver: HTTPServer) -> None:
    messages = [reader(n) for n in (0, 1)]
    script = Script(check_resend, [Response("oops", status=500)] * 2 + [Response("{}", status=429)])
    httpserver.expect_request("", method="POST").respond_with_handler(script)
    single = HttpApiTransport("resend", KEY, base_url=httpserver.url_for(""), sleep=lambda _s: None, attempts=3)
    with pytest.raises(TransportError) as caught:
        BatchApiTransport(single, BATCH_APIS["resend"]).send_batch(messages)
    assert caught.value.uncertain and not caught.value.retryable and script.seen == 3
    # a single message's key is its Message-ID, which a later call carries again: retryable
    script = Script(lambda _r: None, [Response("oops", status=500)] * 3)
    httpserver.clear()
    httpserver.expect_request("", method="POST").respond_with_handler(script)
    with pytest.raises(TransportError) as caught:
        single.send(messages[0])
    assert caught.value.retryable and not caught.value.uncertain


@pytest.mark.parametrize("name", CHECKS)
def test_an_answer_lost_after_the_call_went_is_uncertain_for_the_whole_call(name: str) -> None:
    listener, seen = _dropping_server()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        single = HttpApiTransport(name, KEY, base_url=url, options=OPTIONS, sleep=lambda _s: None, attempts=2)
        with pytest.raises(TransportError) as caught:
            BatchApiTransport(single, BATCH_APIS[name]).send_batch([reader(n) for n in (0, 1)])
    finally:
        listener.close()
    if name == "resend":  # tried again under its key within the call, then uncertain: the next
        # call would carry other members under another key, so a retry could send it twice
        assert caught.value.uncertain and not caught.value.retryable and len(seen) == 2
    else:
        assert caught.value.uncertain and not caught.value.retryable and len(seen) == 1


def test_resend_answer_naming_a_message_it_was_not_sent_is_uncertain(httpserver: HTTPServer) -> None:
    answer = {"data": [{"id": "rs-0"}], "errors": [{"index": 5, "message": "Invalid `to` field."}]}
    httpserver.expect_request("", method="POST").respond_with_json(answer)
    with pytest.raises(TransportError) as caught:
        batch(httpserver, "resend", []).send_batch([reader(0), reader(1)])
    assert caught.value.uncertain and not caught.value.retryable


def test_postmark_answer_that_is_not_one_result_per_message_is_uncertain(httpserver: HTTPServer) -> None:
    httpserver.expect_request("", method="POST").respond_with_json([{"ErrorCode": 0, "MessageID": "pm-0"}])
    with pytest.raises(TransportError) as caught:
        batch(httpserver, "postmark", []).send_batch([reader(0), reader(1)])
    assert caught.value.uncertain


# --- SES: one signed call per reader, made at once -----------------------------------------------


def test_ses_sends_each_reader_in_a_call_of_its_own_at_once_with_its_own_outcome() -> None:
    server = HTTPServer(threaded=True)
    server.start()
    fake = FakeSes([])
    answers = {
        "r2@example.com": aws_error(400, "MessageRejected", "Email address is not verified."),
        "r4@example.com": aws_error(429, "TooManyRequestsException", "Maximum sending rate exceeded."),
    }

    def answer(request: Request) -> Response:
        refusal = fake._verify(request)  # the SigV4 check, made by botocore
        if refusal is not None:
            return refusal
        [to] = json.loads(request.get_data())["Destination"]["ToAddresses"]
        return answers.get(to) or sent_ok(f"ses-{to}")

    server.expect_request("/v2/email/outbound-emails", method="POST").respond_with_handler(answer)
    options = {"region": REGION, "access_key_id": KEY_ID, "session_token": "", "configuration_set": ""}
    api = ConcurrentTransport(
        lambda: HttpApiTransport(ses_api.PROVIDER, SECRET, server.url_for(""), options, attempts=1), threads=4
    )
    try:
        messages = [reader(n) for n in range(6)]
        assert api.calls(messages) == [[0, 1, 2, 3], [4, 5]]
        outcomes = api.send_batch(messages)
    finally:
        api.close()
        server.clear()
        server.stop()
    assert [o.provider_id for o in outcomes if isinstance(o, Sent)] == [f"ses-r{n}@example.com" for n in (0, 1, 3, 5)]
    rejected, throttled = outcomes[2], outcomes[4]
    assert isinstance(rejected, TransportError) and not rejected.retryable and "MessageRejected" in str(rejected)
    assert isinstance(throttled, TransportError) and throttled.retryable
