"""A refusal maps to the same error with PIPELINING as without, also when the server closes the
connection after it: same retryable/broken/bounced/uncertain, same reply, same number of
connections (a refusal is never turned into a drop that send() reconnects for and sends again).

The scripted server answers MAIL, RCPT and DATA from a table, with or without PIPELINING, and can
close the connection right after one of its replies."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from test_smtp import message
from test_smtp_pipelining import LineServer

from publisher.transports import TransportError
from publisher.transports.smtp import SmtpTransport


class Scripted(LineServer):
    """Answers MAIL/RCPT/DATA from `replies`; closes right after the reply to `close_after`.
    With `pipelining`, it advertises PIPELINING and reads the three commands before answering."""

    def __init__(self, replies: dict[str, bytes], close_after: str | None, pipelining: bool) -> None:
        self.replies, self.close_after, self.pipelining = replies, close_after, pipelining
        self.delivered, self.commands = 0, list[str]()
        super().__init__()

    def _answer(self, conn: socket.socket, verb: str) -> bool:
        default = {"MAIL": b"250 ok", "RCPT": b"250 ok", "DATA": b"354 go"}[verb]
        conn.sendall(self.replies.get(verb, default) + b"\r\n")
        return verb == self.close_after

    def _session(self, conn: socket.socket, read: Callable[[], bytes]) -> None:
        while line := read().decode().rstrip("\r\n"):
            verb = line.split(":")[0].split(" ")[0].upper()
            self.commands.append(verb)
            if verb == "EHLO":
                extra = b"250-PIPELINING\r\n" if self.pipelining else b""
                conn.sendall(b"250-test\r\n" + extra + b"250 8BITMIME\r\n")
            elif verb in ("RSET", "NOOP"):
                conn.sendall(b"250 ok\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            elif verb in ("MAIL", "RCPT", "DATA"):
                if self.pipelining and verb == "MAIL":
                    self.commands += [read().decode().split(":")[0].strip(), read().decode().strip()]
                    verbs = ["MAIL", "RCPT", "DATA"]
                else:
                    verbs = [verb]
                for v in verbs:
                    if self._answer(conn, v):
                        return  # closes
                if verbs[-1] == "DATA" and self.replies.get("DATA", b"354").startswith(b"354"):
                    body = b""
                    while not body.endswith(b"\r\n.\r\n") and body != b".\r\n":
                        chunk = read()
                        if not chunk:
                            return
                        body += chunk
                    if body != b".\r\n":
                        self.delivered += 1
                    conn.sendall(b"250 queued\r\n")

    def close(self) -> None:
        self.listener.close()


def attempt(
    replies: dict[str, bytes], close_after: str | None, pipelining: bool
) -> tuple[TransportError | None, Scripted]:
    server = Scripted(replies, close_after, pipelining)
    smtp = SmtpTransport("127.0.0.1", server.port, "none", timeout=2)
    try:
        smtp.send(message(1))
        error = None
    except TransportError as exc:
        error = exc
    smtp.close()
    server.close()
    return error, server


def describe(error: TransportError | None) -> tuple[object, ...]:
    assert error is not None
    return (error.retryable, error.broken, error.bounced, error.uncertain)


CLOSED_AFTER_A_REFUSAL = {
    "sender refused 5xx, then closed": ({"MAIL": b"554 5.7.1 sender blocked"}, "MAIL"),
    "421 to MAIL (closing)": ({"MAIL": b"421 4.7.0 too many connections, closing"}, "MAIL"),
    "421 to RCPT (closing)": ({"RCPT": b"421 4.7.0 rate limited, closing"}, "RCPT"),
    "5.1.1 to RCPT, then closed": ({"RCPT": b"550 5.1.1 user unknown", "DATA": b"554 no valid recipients"}, "DATA"),
}


@pytest.mark.parametrize("case", list(CLOSED_AFTER_A_REFUSAL))
def test_a_refusal_then_a_close_maps_as_without_pipelining_on_one_connection(case: str) -> None:
    replies, close_after = CLOSED_AFTER_A_REFUSAL[case]
    old, old_server = attempt(replies, close_after, pipelining=False)
    new, new_server = attempt(replies, close_after, pipelining=True)
    assert describe(new) == describe(old)
    assert str(new).split(" ", 1)[1] == str(old).split(" ", 1)[1]  # the server's reply, not "closed"
    assert new_server.connections == old_server.connections == 1  # no reconnect and second send


def test_354_after_a_refused_recipient_delivers_nothing_and_is_a_bounce() -> None:
    error, server = attempt({"RCPT": b"550 5.1.1 user unknown", "DATA": b"354 go"}, None, pipelining=True)
    assert error is not None and error.bounced and server.delivered == 0
    assert "RSET" in server.commands


CONNECTION_KEPT = {
    "sender refused 5xx (connection kept)": ({"MAIL": b"553 5.7.1 sender not allowed"}, None),
    "sender refused 4xx (connection kept)": ({"MAIL": b"451 4.3.0 try later"}, None),
    "DATA refused after RCPT accepted": ({"DATA": b"451 4.3.0 queue full"}, None),
    "5.7.1 policy refusal of RCPT": ({"RCPT": b"550 5.7.1 relaying denied", "DATA": b"503 no recipients"}, None),
}


@pytest.mark.parametrize("case", list(CONNECTION_KEPT))
def test_a_refusal_on_a_kept_connection_maps_as_without_pipelining(case: str) -> None:
    replies, close_after = CONNECTION_KEPT[case]
    old, _ = attempt(replies, close_after, pipelining=False)
    new, server = attempt(replies, close_after, pipelining=True)
    assert describe(new) == describe(old) and str(new).split(" ", 1)[1] == str(old).split(" ", 1)[1]
