"""SMTP transport against a real SMTP server (aiosmtpd) with STARTTLS on a test CA and AUTH."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from publisher.mail import Envelope, build_message
from publisher.transports import TransportError
from publisher.transports.outbox import OutboxTransport
from publisher.transports.smtp import SmtpTransport

SUBJECT = (
    "【高新院周报】第48期：高新区新闻、政策解读、区域经济研究与一带一路沿线园区合作新进展汇总，"
    "以及智慧城市案例等十二项内容"
)


def free_port() -> int:  # Controller(port=0) does not work (aiosmtpd #276)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_on_loopback(handler: Any) -> Iterator[int]:
    """An aiosmtpd server on 127.0.0.1 answering with `handler` for the block: its port."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@dataclass
class Recorder:
    messages: list[Any] = field(default_factory=list)
    sessions: set[int] = field(default_factory=set)
    answer: str = "250 Message accepted for delivery"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.sessions.add(id(session))
        if self.answer.startswith("250"):
            self.messages.append(envelope)
        return self.answer


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"digest", b"s3cret")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_contexts(ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server's context with a certificate from `ca` for 127.0.0.1 and localhost, and a
    client's that trusts `ca`."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


def start_server(ca: trustme.CA, recorder: Recorder, port: int) -> tuple[Controller, ssl.SSLContext]:
    server_ctx, client_ctx = tls_contexts(ca)
    controller = Controller(
        recorder, hostname="127.0.0.1", port=port, tls_context=server_ctx, require_starttls=True,
        authenticator=authenticate, auth_required=True,
    )  # fmt: skip
    controller.start()
    return controller, client_ctx


@pytest.fixture
def server(ca: trustme.CA) -> Iterator[tuple[Controller, Recorder, ssl.SSLContext]]:
    recorder = Recorder()
    controller, client_ctx = start_server(ca, recorder, free_port())
    try:
        yield controller, recorder, client_ctx
    finally:
        controller.stop()


def message(n: int = 0, subject: str = SUBJECT) -> Any:
    envelope = Envelope(
        sender=Address("高新院新闻中心", addr_spec="news@example.org"),
        to=Address("张三", addr_spec=f"reader{n}@example.com"),
        subject=subject,
        date=datetime(2026, 11, 30, tzinfo=UTC),
        message_id_domain="www.example.org",
        list_id="高新院周报 <digest.www.example.org>",
        unsubscribe_url="https://www.example.org/unsubscribe/t",
    )
    return build_message(envelope, "正文", "<p>正文</p>")


def transport(controller: Controller, context: ssl.SSLContext, **changes: Any) -> SmtpTransport:
    options: dict[str, Any] = {"username": "digest", "password": "s3cret", "ssl_context": context, "timeout": 5}
    return SmtpTransport(controller.hostname, controller.port, **(options | changes))


def test_starttls_auth_and_a_long_chinese_subject_round_trip(server: Any) -> None:
    controller, recorder, context = server
    smtp = transport(controller, context)
    sent = smtp.send(message())
    smtp.close()
    assert sent.provider_id and sent.provider_id.endswith("@www.example.org>")
    [received] = recorder.messages
    assert received.rcpt_tos == ["reader0@example.com"]
    raw = received.original_content
    assert all(len(line) <= 78 for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n"))
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == SUBJECT and len(SUBJECT) >= 60
    assert parsed["To"].addresses[0].display_name == "张三"


def test_one_connection_for_a_batch(server: Any) -> None:
    controller, recorder, context = server
    smtp = transport(controller, context)
    for n in range(5):
        smtp.send(message(n))
    smtp.close()
    assert len(recorder.messages) == 5 and len(recorder.sessions) == 1


def test_certificates_are_verified_by_default(server: Any) -> None:
    controller, recorder, _context = server
    smtp = SmtpTransport(controller.hostname, controller.port, username="digest", password="s3cret", timeout=5)
    with pytest.raises(TransportError) as caught:
        smtp.send(message())
    assert not caught.value.retryable and "did not verify" in str(caught.value)
    assert recorder.messages == []


def test_a_wrong_password_is_permanent(server: Any) -> None:
    controller, _recorder, context = server
    with pytest.raises(TransportError) as caught:
        transport(controller, context, password="wrong").send(message())
    assert not caught.value.retryable and "refused the login: 535" in str(caught.value)


@pytest.mark.parametrize(("answer", "retryable"), [("451 4.3.0 Try again later", True), ("554 5.7.1 Rejected", False)])
def test_4xx_is_retryable_and_5xx_is_permanent(server: Any, answer: str, retryable: bool) -> None:
    controller, recorder, context = server
    recorder.answer = answer
    with pytest.raises(TransportError) as caught:
        transport(controller, context).send(message())
    assert caught.value.retryable is retryable and answer.split()[0] in str(caught.value)


def test_reconnects_after_the_server_drops_the_connection(ca: trustme.CA) -> None:
    recorder, port = Recorder(), free_port()
    first, context = start_server(ca, recorder, port)
    smtp = transport(first, context)
    smtp.send(message(1))
    first.stop()  # the server goes away (idle timeout, restart) and comes back on its port
    second, _ = start_server(ca, recorder, port)
    try:
        smtp.send(message(2))
        smtp.close()
    finally:
        second.stop()
    assert [m.rcpt_tos for m in recorder.messages] == [["reader1@example.com"], ["reader2@example.com"]]
    assert len(recorder.sessions) == 2


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_implicit_tls(ca: trustme.CA) -> None:
    server_ctx, client_ctx = tls_contexts(ca)
    recorder = Recorder()
    # aiosmtpd treats only STARTTLS sessions as TLS, so AUTH over implicit TLS needs this (#281)
    controller = Controller(
        recorder, hostname="127.0.0.1", port=free_port(), ssl_context=server_ctx,
        authenticator=authenticate, auth_required=True, auth_require_tls=False,
    )  # fmt: skip
    controller.start()
    try:
        smtp = transport(controller, client_ctx, security="tls")
        smtp.send(message())
        smtp.close()
    finally:
        controller.stop()
    assert len(recorder.messages) == 1


def test_a_server_that_never_answers_times_out_as_retryable() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    try:
        smtp = SmtpTransport("127.0.0.1", listener.getsockname()[1], security="none", timeout=0.5)
        with pytest.raises(TransportError) as caught:
            smtp.send(message())
        # No greeting: nothing was handed over, so the message is certainly not delivered.
        assert caught.value.retryable and not caught.value.uncertain
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


def test_non_ascii_passwords_fail_at_start_up() -> None:
    with pytest.raises(TransportError, match="non-ASCII"):
        SmtpTransport("127.0.0.1", 587, username="u", password="密码")


def test_outbox_writes_parseable_eml_files(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path / "outbox")
    sent = [outbox.send(message(n)) for n in range(2)]
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert [f.name for f in files] == [s.provider_id for s in sent]
    parsed = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert parsed["Subject"] == SUBJECT and b"\r\n" in files[0].read_bytes()


@pytest.mark.parametrize("in_the_way", ["the folder", "a folder above it"])
def test_an_outbox_whose_folder_is_a_file_is_a_broken_transport_saying_so(tmp_path: Path, in_the_way: str) -> None:
    """The outbox folder, or a folder above it, is a file: the send pauses, naming it."""
    blocker = tmp_path / "spool"
    blocker.write_text("not a folder")
    folder = blocker if in_the_way == "the folder" else blocker / "outbox"
    outbox = OutboxTransport(folder)
    with pytest.raises(TransportError) as failed:
        outbox.send(message(0))
    assert failed.value.broken and not failed.value.retryable
    assert f"a file stands at {folder} or at a folder above it: move or remove it" in failed.value.hint
    assert blocker.read_text() == "not a folder"


class Dropping(Recorder):
    """Drops the connection at `when` ("RCPT": before DATA; "DATA": after the final "."), or at
    "SILENT" reads the whole message and never answers it (answers in 3 s, past the client's
    0.5 s), at "SLOW" answers it in 1 s, as a relay that scans the message does."""

    def __init__(self, when: str) -> None:
        super().__init__()
        self.when = when
        self.rcpts = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.rcpts += 1
        if self.when == "RCPT":
            server.transport.close()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)  # the server has the whole message now
        if self.when == "DATA":
            server.transport.close()
        elif self.when == "SILENT":
            await asyncio.sleep(3)  # far past the client's 0.5 s
        elif self.when == "SLOW":
            await asyncio.sleep(1)
        return "250 OK"


@pytest.fixture
def dropping() -> Iterator[Any]:
    started: list[Controller] = []

    def start(when: str) -> tuple[Dropping, SmtpTransport]:
        handler = Dropping(when)
        controller = Controller(handler, hostname="127.0.0.1", port=free_port())
        controller.start()
        started.append(controller)
        data_timeout = 5 if when == "SLOW" else 0.5
        return handler, SmtpTransport(
            "127.0.0.1", controller.port, security="none", timeout=0.5, data_timeout=data_timeout
        )

    yield start
    for controller in started:
        controller.stop()


def test_a_drop_before_data_is_complete_is_a_certain_retryable_failure(dropping: Any) -> None:
    handler, smtp = dropping("RCPT")
    with pytest.raises(TransportError) as caught:
        smtp.send(message())
    # Tried on a fresh connection once, dropped again; the server never had the message.
    assert handler.rcpts == 2 and handler.messages == []
    assert (
        caught.value.retryable
        and not caught.value.uncertain
        and "before the message was handed over" in str(caught.value)
    )


@pytest.mark.parametrize("when", ["DATA", "SILENT"])
def test_a_drop_or_silence_after_the_final_dot_is_uncertain_and_not_sent_again(dropping: Any, when: str) -> None:
    handler, smtp = dropping(when)
    with pytest.raises(TransportError) as caught:
        smtp.send(message())
    assert len(handler.messages) == 1 and handler.rcpts == 1  # not sent again on a fresh connection
    assert caught.value.uncertain and not caught.value.retryable
    assert "no answer after the message was handed over" in str(caught.value)


def test_the_reply_after_the_final_dot_waits_data_timeout_not_timeout(dropping: Any) -> None:
    """A relay that scans the message before it answers the final "." (RFC 5321 4.5.3.2.6 gives
    it 10 minutes) took longer than `timeout`, so its delivery was made uncertain."""
    handler, smtp = dropping("SLOW")
    slow = message()
    assert smtp.send(slow).provider_id == slow.message_id
    assert len(handler.messages) == 1
