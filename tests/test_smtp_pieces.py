"""The SMTP transport's two steps and its gathered writes: `start` hands a message over in the
pieces it is made of (`Message.as_chunks`, one `sendmsg` while the socket takes them), `finish`
reads the server's answer to it; with `following`, a server that offers PIPELINING gets the next
message's envelope right after this one's final ".", and answers it with this one's answer."""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_smtp import Recorder, message, smtp_on_loopback
from test_smtp_pipelining import PipeliningServer

from publisher.transports import TransportError, smtp_wire
from publisher.transports.smtp import SmtpTransport
from publisher.transports.smtp_wire import send_pieces


def test_pieces_arrive_whole_and_in_order_through_partial_writes() -> None:
    """A reader slower than the writer: `sendmsg` takes part of the pieces at a time, and what
    it left (a piece's tail, the pieces after it) goes next."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ours.settimeout(10)
    pieces = tuple(bytes([65 + n % 26]) * (1000 + 7919 * n) for n in range(40)) + (b".\r\n",)
    received = bytearray()

    def read_slowly() -> None:
        while chunk := theirs.recv(3000):
            received.extend(chunk)
            time.sleep(0.0005)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    connection = smtplib.SMTP()
    connection.sock = ours
    calls = []
    real_sendmsg = ours.sendmsg

    class Counting:  # the socket, its sendmsg calls counted
        def __getattr__(self, name: str) -> Any:
            return getattr(ours, name)

        def sendmsg(self, buffers: list[Any]) -> int:
            calls.append(len(buffers))
            return real_sendmsg(buffers)

    connection.sock = Counting()  # type: ignore[assignment]
    send_pieces(connection, pieces)
    ours.shutdown(socket.SHUT_WR)
    reader.join(10)
    ours.close()
    theirs.close()
    assert bytes(received) == b"".join(pieces)
    assert len(calls) > 1  # partial writes happened, and were carried on


def test_a_lost_socket_while_writing_is_smtplibs_disconnection() -> None:
    ours, theirs = socket.socketpair()
    theirs.close()
    connection = smtplib.SMTP()
    connection.sock = ours
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send_pieces(connection, (b"x" * 100_000, b".\r\n"))
    assert connection.sock is None  # closed, as smtplib's send closes it


@pytest.mark.parametrize(("answer", "retryable"), [("451 4.3.0 Try again later", True), ("554 5.7.1 Rejected", False)])
def test_the_answer_to_the_final_dot_comes_from_finish(answer: str, retryable: bool) -> None:
    recorder = Recorder(answer=answer)
    with smtp_on_loopback(recorder) as port:
        smtp = SmtpTransport("127.0.0.1", port, security="none", timeout=5)
        smtp.start(message(0))  # handed over: the refusal is not read yet
        with pytest.raises(TransportError) as caught:
            smtp.finish()
        assert caught.value.retryable is retryable and answer[:3] in str(caught.value)
        recorder.answer = "250 OK"
        sent = message(1)
        smtp.start(sent)
        assert smtp.finish().provider_id == sent.message_id
        smtp.close()
    [received] = recorder.messages
    assert received.original_content == sent.as_bytes()  # the pieces, byte for byte


def test_closing_with_a_message_in_flight_sends_no_quit() -> None:
    """An answer never read is never taken for QUIT's: the connection is just closed (the
    delivery stays `sending`, so the next run makes it uncertain)."""
    recorder = Recorder()
    with smtp_on_loopback(recorder) as port:
        smtp = SmtpTransport("127.0.0.1", port, security="none", timeout=5)
        smtp.start(message(0))
        smtp.close()
        smtp.start(message(1))  # a fresh connection
        smtp.finish()
        smtp.close()
    assert len(recorder.sessions) == 2


@pytest.fixture
def pipelining() -> Iterator[PipeliningServer]:
    running = PipeliningServer({"reader1@example.com"})
    yield running
    running.close()


def received(server: PipeliningServer) -> list[str]:
    return [recipient for recipient, _body in server.messages]


def test_the_next_envelope_goes_with_the_last_message_and_its_replies_come_with_its_answer(
    pipelining: PipeliningServer,
) -> None:
    smtp = SmtpTransport("127.0.0.1", pipelining.port, "none", timeout=3)
    first, second, third = message(0), message(2), message(3)
    smtp.start(first, following=second)
    assert smtp.finish().provider_id == first.message_id
    assert pipelining.commands[-3:] == ["MAIL", "RCPT TO", "DATA"]  # answered already: read with first's answer
    smtp.start(second, following=third)  # its DATA was answered: the body goes at once
    smtp.finish()
    smtp.start(third)
    smtp.finish()
    smtp.close()
    assert received(pipelining) == ["reader0@example.com", "reader2@example.com", "reader3@example.com"]
    assert pipelining.commands.count("EHLO") == 1 and pipelining.commands.count("MAIL") == 3


def test_a_refusal_of_the_envelope_sent_ahead_is_the_next_starts_error(pipelining: PipeliningServer) -> None:
    smtp = SmtpTransport("127.0.0.1", pipelining.port, "none", timeout=3)
    unknown = message(1)
    smtp.start(message(0), following=unknown)
    smtp.finish()  # the first is sent; the refusal is the next message's
    with pytest.raises(TransportError) as refused:
        smtp.start(unknown)
    assert refused.value.bounced and "550 5.1.1" in str(refused.value)
    smtp.send(message(2))  # the connection goes on
    smtp.close()
    assert received(pipelining) == ["reader0@example.com", "reader2@example.com"]
    assert pipelining.commands.count("EHLO") == 1


def test_another_message_than_the_one_announced_goes_on_a_new_connection(pipelining: PipeliningServer) -> None:
    """The announced one was not sent after all (another sender claimed it): its DATA is open,
    so the connection is dropped, and nothing reaches its reader."""
    smtp = SmtpTransport("127.0.0.1", pipelining.port, "none", timeout=3)
    smtp.start(message(0), following=message(2))
    smtp.finish()
    smtp.send(message(3))
    smtp.start(message(4), following=message(5))
    smtp.finish()
    smtp.close()  # with a DATA open: no QUIT (the server would take it for the message's text)
    assert received(pipelining) == ["reader0@example.com", "reader3@example.com", "reader4@example.com"]
    assert pipelining.commands.count("EHLO") == 2 and "QUIT" not in pipelining.commands


def test_a_refused_message_with_an_envelope_ahead_sends_no_rset_and_the_next_goes_anew() -> None:
    server = PipeliningServer(set(), refused=frozenset({"reader0@example.com"}))
    try:
        smtp = SmtpTransport("127.0.0.1", server.port, "none", timeout=3)
        following = message(2)
        smtp.start(message(0), following=following)
        with pytest.raises(TransportError) as refused:
            smtp.finish()
        assert not refused.value.retryable and "554 5.7.1" in str(refused.value)
        smtp.start(following)
        smtp.finish()
        smtp.close()
        assert received(server) == ["reader2@example.com"] and "RSET" not in server.commands
        assert server.commands.count("EHLO") == 2
    finally:
        server.close()


class _CutAfterTheDot:
    """A socket whose connection breaks once the kernel has taken a message up to its final
    ".": the next envelope written after it is lost."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.cut = sock, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    def sendmsg(self, buffers: list[bytes | memoryview]) -> int:
        if self.cut:
            raise BrokenPipeError(32, "Broken pipe")
        if len(buffers) > 1 and bytes(buffers[-1]).startswith(b"MAIL FROM"):
            self.cut = True
            return self.sock.sendmsg(buffers[:-1])  # up to and with ".\r\n": a partial write
        return self.sock.sendmsg(buffers)


def test_a_drop_after_the_final_dot_while_the_next_envelope_goes_is_uncertain_not_sent_twice(
    pipelining: PipeliningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp = SmtpTransport("127.0.0.1", pipelining.port, "none", timeout=3)
    connect = smtp._connect

    def cut_after_the_dot() -> smtplib.SMTP:
        connection = connect()
        if not isinstance(connection.sock, _CutAfterTheDot):
            connection.sock = _CutAfterTheDot(connection.sock)  # type: ignore[assignment]
        return connection

    monkeypatch.setattr(smtp, "_connect", cut_after_the_dot)
    with pytest.raises(TransportError) as lost:
        smtp.start(message(0), following=message(2))
    assert lost.value.uncertain and not lost.value.retryable
    smtp.close()
    deadline = time.monotonic() + 3
    while not pipelining.messages and time.monotonic() < deadline:
        time.sleep(0.01)
    assert received(pipelining) == ["reader0@example.com"]  # once: the server had it whole


class _TakesOneThen(PipeliningServer):
    """Takes the first message and answers the envelope sent ahead after it, adding `said` in
    the same write; then closes in silence (`closes`: a restart, an idle timeout) or waits in
    silence, taking nothing more, while the sender waits between messages."""

    def __init__(self, said: bytes = b"", closes: bool = True) -> None:
        self.said, self.closes = said, closes
        super().__init__(set())

    def _session(self, conn: socket.socket, read: Callable[[], bytes]) -> None:
        if self.messages:  # a later connection: as usual
            return super()._session(conn, read)
        read()  # EHLO
        conn.sendall(b"250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        for _ in range(3):  # MAIL, RCPT, DATA
            read()
        conn.sendall(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
        body = b""
        while not body.endswith(b"\r\n.\r\n"):
            body += read()
        self.messages.append(("reader0@example.com", body))
        for _ in range(3):  # the envelope that came after the "."
            read()
        conn.sendall(b"250 queued\r\n250 ok\r\n250 ok\r\n354 go ahead\r\n" + self.said)
        if self.closes:
            conn.shutdown(socket.SHUT_RDWR)
            return None
        while read():  # whatever comes now is neither taken nor answered
            pass
        return None


def test_a_message_whose_open_data_the_server_closed_meanwhile_goes_on_a_new_connection() -> None:
    server = _TakesOneThen()
    try:
        smtp = SmtpTransport("127.0.0.1", server.port, "none", timeout=3)
        following = message(2)
        smtp.start(message(0), following=following)
        smtp.finish()
        deadline = time.monotonic() + 3  # the close reaches this side (the sender paces meanwhile)
        while smtp._connection is not None and smtp._connection.sock is not None:
            if time.monotonic() > deadline or not smtp_wire.still_open(smtp._connection):
                break
            time.sleep(0.01)
        smtp.start(following)  # not written into the closed connection, whose answer would be uncertain
        assert smtp.finish().provider_id == following.message_id
        smtp.close()
        assert received(server) == ["reader0@example.com", "reader2@example.com"]
    finally:
        server.close()


def test_a_421_read_with_the_envelope_replies_sends_the_message_on_a_new_connection() -> None:
    """The 421 comes in the segment the replies are read from: it sits in smtplib's buffer."""
    server = _TakesOneThen(said=b"421 4.3.2 shutting down\r\n", closes=False)
    try:
        smtp = SmtpTransport("127.0.0.1", server.port, "none", timeout=3)
        following = message(2)
        smtp.start(message(0), following=following)
        smtp.finish()
        smtp.start(following)  # not into the connection the server said it is closing
        assert smtp.finish().provider_id == following.message_id
        smtp.close()
        assert received(server) == ["reader0@example.com", "reader2@example.com"]
        assert server.connections == 2
    finally:
        server.close()


def test_each_write_goes_at_once(pipelining: PipeliningServer) -> None:
    """Over TLS a message and the next envelope are two writes: with Nagle's rule the envelope
    waited for the message's end to be acknowledged, a round trip a message."""
    smtp = SmtpTransport("127.0.0.1", pipelining.port, "none", timeout=3)
    connection = smtp._connect()
    assert connection.sock is not None
    assert connection.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    smtp.close()
