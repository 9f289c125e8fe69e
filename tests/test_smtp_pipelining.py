"""SMTP PIPELINING (RFC 2920): MAIL, RCPT and DATA go in one write to a server that offers it.

The server here answers a transaction's commands only once it has all three, so a client that
waited for each reply before the next command would hang until its timeout.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy

import pytest
from test_smtp import message

from publisher.transports import TransportError
from publisher.transports.smtp import SmtpTransport


class LineServer:
    """A scripted SMTP server on loopback, one connection at a time: greets, then hands each
    connection's `readline` to `_session` (a dropped connection ends the session quietly).
    `connections` counts them. Also the base of test_smtp_refusals.Scripted."""

    def __init__(self) -> None:
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn, conn.makefile("rb") as lines:
                conn.sendall(b"220 test\r\n")
                try:
                    self._session(conn, lines.readline)
                except OSError:
                    pass

    def _session(self, conn: socket.socket, read: Callable[[], bytes]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.listener.close()


class PipeliningServer(LineServer):
    """Refuses the addresses in `unknown` (550 5.1.1), and the messages to `refused` after their
    final "." (554 5.7.1); answers MAIL, RCPT and DATA only once it has all three."""

    def __init__(self, unknown: set[str], refused: frozenset[str] = frozenset()) -> None:
        self.unknown, self.messages, self.commands = unknown, list[tuple[str, bytes]](), list[str]()
        self.refused = refused
        super().__init__()

    def _session(self, conn: socket.socket, read: Callable[[], bytes]) -> None:
        while line := read().decode().rstrip("\r\n"):
            verb = line.split(":")[0].split(" ")[0].upper()
            self.commands.append(verb)
            if verb == "EHLO":
                conn.sendall(b"250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb in ("RSET", "NOOP"):
                conn.sendall(b"250 ok\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            elif verb == "MAIL":
                rcpt, data = read().decode().rstrip("\r\n"), read().decode().rstrip("\r\n")  # before any reply
                self.commands += [rcpt.split(":")[0], data]
                recipient = rcpt.split("<", 1)[1].rstrip(">")
                if recipient in self.unknown:
                    conn.sendall(b"250 ok\r\n550 5.1.1 user unknown\r\n554 5.5.1 no valid recipients\r\n")
                    continue
                conn.sendall(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
                body = b""
                while not body.endswith(b"\r\n.\r\n"):
                    if not (line_read := read()):
                        return  # dropped mid-message: nothing delivered
                    body += line_read
                if recipient in self.refused:
                    conn.sendall(b"554 5.7.1 no thanks\r\n")
                    continue
                self.messages.append((recipient, body[: -len(b".\r\n")]))
                conn.sendall(b"250 queued\r\n")


@pytest.fixture
def server() -> Iterator[PipeliningServer]:
    running = PipeliningServer({"reader1@example.com"})
    yield running
    running.close()


def test_mail_rcpt_and_data_go_in_one_write_and_the_message_arrives_whole(server: PipeliningServer) -> None:
    smtp = SmtpTransport("127.0.0.1", server.port, "none", timeout=3)
    sent = [smtp.send(message(n)) for n in (0, 2)]
    smtp.close()
    assert [recipient for recipient, _body in server.messages] == ["reader0@example.com", "reader2@example.com"]
    assert server.commands.count("EHLO") == 1  # one connection for both
    for (recipient, body), answer in zip(server.messages, sent, strict=True):
        parsed = message_from_bytes(body, policy=policy.default)
        assert parsed["Message-ID"] == answer.provider_id and parsed["To"].addresses[0].addr_spec == recipient
        assert parsed.get_body(("plain",)).get_content() == "正文"  # type: ignore[union-attr]


def test_a_refused_recipient_is_a_bounce_and_the_connection_goes_on(server: PipeliningServer) -> None:
    smtp = SmtpTransport("127.0.0.1", server.port, "none", timeout=3)
    with pytest.raises(TransportError) as refused:
        smtp.send(message(1))
    assert refused.value.bounced and not refused.value.retryable and "550 5.1.1" in str(refused.value)
    smtp.send(message(2))
    smtp.close()
    assert [recipient for recipient, _body in server.messages] == ["reader2@example.com"]
    assert server.commands.count("EHLO") == 1 and "RSET" in server.commands
