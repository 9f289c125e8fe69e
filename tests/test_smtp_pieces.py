"""The SMTP transport's two steps and its gathered writes: `start` hands a message over in the
pieces it is made of (`Message.as_chunks`, one `sendmsg` while the socket takes them), `finish`
reads the server's answer to it."""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from typing import Any

import pytest
from test_smtp import Recorder, message, smtp_on_loopback

from publisher.transports import TransportError
from publisher.transports.smtp import SmtpTransport, _send_pieces


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
    _send_pieces(connection, pieces)
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
        _send_pieces(connection, (b"x" * 100_000, b".\r\n"))
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
