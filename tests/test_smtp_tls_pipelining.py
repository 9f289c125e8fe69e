"""PIPELINING over STARTTLS, against aiosmtpd with a test CA and AUTH: a message's final "." and
the next message's envelope go as two TLS writes, with no read between them (what a failed TLS
write had sent is unknown, so the message must be whole before the envelope is written), and a
connection lost while the envelope goes leaves the message taken once, its sending uncertain.

aiosmtpd reads pipelined commands but does not announce PIPELINING; the handler here adds it to
its EHLO answer, as Postfix and Exim announce it."""

from __future__ import annotations

import errno
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from test_smtp import Recorder, free_port, message, start_server, tls_contexts, transport

from publisher.transports import TransportError
from publisher.transports.smtp_wire import still_open


class PipeliningRecorder(Recorder):
    """Announces PIPELINING, and keeps the client address of each message's connection."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.peers.append(session.peer)  # (address, port): one a connection
        return await super().handle_DATA(server, session, envelope)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd's own EHLO does when no hook is given
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server(ca: trustme.CA) -> Iterator[tuple[Controller, PipeliningRecorder, ssl.SSLContext]]:
    recorder = PipeliningRecorder()
    controller, client_ctx = start_server(ca, recorder, free_port())  # STARTTLS required, AUTH
    try:
        yield controller, recorder, client_ctx
    finally:
        controller.stop()


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bytes]]:
    """The client's TLS socket calls, in order: ("write", bytes) and ("read", b"")."""
    calls: list[tuple[str, bytes]] = []
    sendall, recv_into = ssl.SSLSocket.sendall, ssl.SSLSocket.recv_into

    def recording_sendall(sock: ssl.SSLSocket, data: Any, flags: int = 0) -> None:
        calls.append(("write", bytes(data)))
        sendall(sock, data, flags)

    def recording_recv_into(sock: ssl.SSLSocket, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        calls.append(("read", b""))
        return recv_into(sock, buffer, nbytes, flags)

    monkeypatch.setattr(ssl.SSLSocket, "sendall", recording_sendall)
    monkeypatch.setattr(ssl.SSLSocket, "recv_into", recording_recv_into)
    return calls


def test_over_starttls_the_next_envelope_follows_the_final_dot_as_a_write_of_its_own(
    server: tuple[Controller, PipeliningRecorder, ssl.SSLContext], wire: list[tuple[str, bytes]]
) -> None:
    controller, recorder, client_ctx = server
    smtp = transport(controller, client_ctx)
    first, second, third = message(0), message(2), message(3)
    smtp.start(first, following=second)
    assert smtp.finish().provider_id == first.message_id
    smtp.start(second, following=third)
    smtp.finish()
    smtp.start(third)
    smtp.finish()
    smtp.close()
    assert [e.rcpt_tos for e in recorder.messages] == [
        ["reader0@example.com"],
        ["reader2@example.com"],
        ["reader3@example.com"],
    ]
    assert len(set(recorder.peers)) == 1  # one connection for all three
    for envelope, sent in zip(recorder.messages, (first, second, third), strict=True):
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert parsed["Message-ID"] == sent.message_id
        assert parsed.get_body(("plain",)).get_content() == "正文"  # type: ignore[union-attr]
    ends = [i for i, (kind, data) in enumerate(wire) if kind == "write" and data.endswith(b"\r\n.\r\n")]
    assert len(ends) == 3
    for end, following in zip(ends[:2], (second, third), strict=True):  # the envelope at once, no reply awaited
        kind, data = wire[end + 1]
        assert kind == "write" and data == (
            f"MAIL FROM:<{following.envelope_sender}>\r\nRCPT TO:<{following.recipient}>\r\nDATA\r\n".encode()
        )
    assert wire[ends[2] + 1][0] == "read"  # the last message: its answer, nothing sent ahead


def test_a_drop_while_the_envelope_goes_over_tls_leaves_the_message_taken_once_and_uncertain(
    server: tuple[Controller, PipeliningRecorder, ssl.SSLContext],
    wire: list[tuple[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The envelope's TLS write fails (an OSError raised in place of it: the message's write
    before it went whole). The server delivers the message: aiosmtpd handles its final "."
    before the end of the connection it reads after it."""
    controller, recorder, client_ctx = server
    recording = ssl.SSLSocket.sendall

    def lost_at_the_envelope(sock: ssl.SSLSocket, data: Any, flags: int = 0) -> None:
        if bytes(data).startswith(b"MAIL FROM:") and any(d.endswith(b"\r\n.\r\n") for _k, d in wire):
            raise OSError(errno.ECONNRESET, "Connection reset by peer")  # after the message went whole
        recording(sock, data, flags)

    monkeypatch.setattr(ssl.SSLSocket, "sendall", lost_at_the_envelope)
    smtp = transport(controller, client_ctx)
    with pytest.raises(TransportError) as lost:
        smtp.start(message(0), following=message(2))
    assert lost.value.uncertain and not lost.value.retryable
    smtp.close()
    deadline = time.monotonic() + 5
    while not recorder.messages and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e.rcpt_tos for e in recorder.messages] == [["reader0@example.com"]]  # once: the server had it whole


@pytest.mark.parametrize(("sent", "open_"), [(b"250 ok\r\n421 4.3.2 closing\r\n", False), (b"250 ok\r\n", True)])
def test_over_tls_a_line_read_already_into_smtplibs_buffer_is_not_silence(
    ca: trustme.CA, sent: bytes, open_: bool
) -> None:
    """A line the server sent after the reply smtplib read sits in smtplib's buffer, not in the
    socket: the connection is not taken as silent (`still_open`), over TLS as over TCP."""
    server_ctx, client_ctx = tls_contexts(ca)
    listener = socket.create_server(("127.0.0.1", 0))
    served: list[ssl.SSLSocket] = []

    def serve() -> None:
        conn, _ = listener.accept()
        tls = server_ctx.wrap_socket(conn, server_side=True)
        tls.sendall(sent)
        served.append(tls)  # kept open, silent

    thread = threading.Thread(target=serve)
    thread.start()
    connection = smtplib.SMTP()
    raw = socket.create_connection(listener.getsockname(), timeout=5)
    connection.sock = client_ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        thread.join(5)
        assert connection.getreply() == (250, b"ok")  # the 421, if sent, came with it
        assert still_open(connection) is open_
        assert connection.sock.gettimeout() == 5  # as it was
    finally:
        connection.close()
        for tls in served:
            tls.close()
        listener.close()
