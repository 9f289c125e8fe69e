"""The SMTP exchange of one message on an open connection (transports.smtp keeps the
connection and maps errors): the envelope, pipelined where the server offers it, the message
written in its pieces, the answer to its final ".", and smtplib's exceptions for each refusal."""

from __future__ import annotations

import select
import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from ..mail import Message
from . import TransportError


def hand_over(
    connection: smtplib.SMTP, message: Message, data_timeout: float, following: Message | None = None
) -> tuple[bool, bool]:
    """MAIL, RCPT, DATA and the message, up to its final "." (then `following`'s envelope, see
    `send_body`): (whether the answer to it was read too, by smtplib's own path for a message
    that needs dot-stuffing, else `final_reply` reads it; whether `following`'s envelope went).

    A server that offers PIPELINING (RFC 2920) gets MAIL, RCPT and DATA in one write and
    answers them together: one round trip instead of three. smtplib's `data()` runs two
    regular expressions over every message (line endings, then dot-stuffing), which costs as
    much as the rest of the send. Our messages are CRLF and dot-safe by construction (header
    lines start with a letter or a space, base64 lines never with "."), so when one C-speed
    search confirms no line starts with "." the bytes go out as they are; otherwise smtplib's
    own path does the stuffing. Replies are mapped to smtplib's exceptions exactly as
    `sendmail` maps them. The reply to the final "." waits `data_timeout`. The message goes
    out in its pieces (`Message.as_chunks`), gathered by the kernel: not joined, not copied.
    """
    options = ["SMTPUTF8"] if message.needs_smtputf8 else []
    sender, recipient = message.envelope_sender, message.recipient
    if options and not connection.has_extn("smtputf8"):
        raise smtplib.SMTPNotSupportedError("SMTPUTF8, needed for a non-ASCII address")
    dot_safe = message.dot_safe  # always with our serialiser
    if dot_safe and not options and connection.has_extn("pipelining"):
        _pipelined_envelope(connection, sender, recipient)
    else:
        code, reply = connection.mail(sender, options)
        if code != 250:
            _reset(connection, code)
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        code, reply = connection.rcpt(recipient)
        if code not in (250, 251):
            _reset(connection, code)
            raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
        if not dot_safe:
            try:  # smtplib sends and reads the reply in one call: a drop in it counts as uncertain
                with _waiting(connection, data_timeout):  # for the whole call, the "." reply in it
                    connection.data(message.as_bytes())  # smtplib's own stuffing; it raises SMTPDataError itself
            except smtplib.SMTPServerDisconnected as exc:
                raise _gone(connection, exc) from exc
            return True, False
        code, reply = connection.docmd("data")
        if code != 354:
            _reset(connection, code)
            raise smtplib.SMTPDataError(code, reply)
    return False, send_body(connection, message, following)


def send_body(connection: smtplib.SMTP, message: Message, following: Message | None) -> bool:
    """The message and its final "."; then, to a server that offers PIPELINING, `following`'s
    MAIL, RCPT and DATA in the same write (RFC 2920 lets a message's content start a group of
    commands), when it can go that way (ASCII addresses, no dot-stuffing): True when they went.
    A drop before the whole "." went is smtplib's SMTPServerDisconnected (nothing was taken,
    it may go again on a new connection); a drop after it, while the envelope went, is the
    uncertain TransportError of `_gone` (the server may have taken the message)."""
    ahead = (
        following is not None
        and following.dot_safe
        and not following.needs_smtputf8
        and connection.has_extn("pipelining")
    )
    pieces = (*message.as_chunks(), b".\r\n")
    if not ahead or following is None:
        send_pieces(connection, pieces)  # a drop: the "." went last, so did not go, nothing was taken
        return False
    envelope = _envelope(following.envelope_sender, following.recipient)
    handed = sum(map(len, pieces))  # the server has the whole message once these bytes went
    try:
        if isinstance(connection.sock, ssl.SSLSocket):  # what went of a failed TLS write is unknown
            send_pieces(connection, pieces)
            send_pieces(connection, (envelope,), handed)
        else:
            send_pieces(connection, (*pieces, envelope))
    except WrittenUpTo as exc:
        if exc.written >= handed:  # the final "." went, the envelope after it did not
            raise _gone(connection, exc) from exc  # the message may have been taken
        raise
    return True


class WrittenUpTo(smtplib.SMTPServerDisconnected):
    """The connection failed while `send_pieces` wrote, after `written` bytes (on TLS, those of
    the writes before the failed one); it is closed."""

    def __init__(self, written: int) -> None:
        super().__init__(f"Server not connected (lost after {written} bytes)")
        self.written = written


def send_pieces(connection: smtplib.SMTP, pieces: tuple[bytes, ...], written: int = 0) -> None:
    """`pieces` written in order, as smtplib's `send` writes one (its errors too): gathered by
    one `sendmsg` call while the socket takes them all, else as many calls as it needs; over
    TLS (whose socket has no `sendmsg`) joined and written at once. A failure while writing is
    WrittenUpTo, counting from `written` (the bytes written before, by the caller)."""
    sock = connection.sock
    if sock is None:
        raise smtplib.SMTPServerDisconnected("please run connect() first")
    try:
        if isinstance(sock, ssl.SSLSocket):
            sock.sendall(b"".join(pieces))
            return
        left: list[bytes | memoryview] = list(pieces)
        while left:
            sent = sock.sendmsg(left)
            written += sent
            while left and sent >= len(left[0]):
                sent -= len(left.pop(0))
            if sent:
                left[0] = memoryview(left[0])[sent:]
    except OSError as exc:
        connection.close()
        raise WrittenUpTo(written) from exc


def still_open(connection: smtplib.SMTP) -> bool:
    """Whether the server kept its side of the connection silent while this process waited
    between messages with a DATA answered 354 (the next message's envelope sent ahead, see
    `send_body`): a server that closed it meanwhile (a restart, an idle timeout) or said
    anything (a 421) has not been given the message, which then goes on a new connection,
    as it would have with no envelope sent ahead."""
    sock = connection.sock
    if sock is None or (isinstance(sock, ssl.SSLSocket) and sock.pending()) or _read_already(connection):
        return False
    poller = select.poll()  # after the buffer: an end of file it met stays readable here
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)  # readable (an end of file, or bytes), hung up or failed: not open


def _read_already(connection: smtplib.SMTP) -> bool:
    """Whether smtplib's reader holds bytes the server sent after the replies read so far (a
    421 that came in the segment of the envelope's replies): a look at its buffer and, when it
    is empty, one read that never waits (an empty answer: nothing there, or an end of file,
    which the socket then still shows)."""
    reader, sock = connection.file, connection.sock
    if reader is None or sock is None:
        return False
    timeout = sock.gettimeout()
    sock.settimeout(0)  # an empty buffer is not filled by waiting (a plain socket's file answers b"")
    try:
        return bool(reader.peek(1))
    except ssl.SSLWantReadError:  # TLS: nothing to read
        return False
    except OSError:  # failed: not open
        return True
    finally:
        sock.settimeout(timeout)


def final_reply(connection: smtplib.SMTP, data_timeout: float, reset: bool = True) -> None:
    """The answer to a message's final ".", waiting `data_timeout`: silence or a drop now is
    uncertain (it may have been taken), a refusal is raised as smtplib's SMTPDataError (after
    an RSET unless not `reset`)."""
    try:
        with _waiting(connection, data_timeout):
            code, reply = connection.getreply()
    except smtplib.SMTPServerDisconnected as exc:
        raise _gone(connection, exc) from exc
    if code != 250:
        if reset:
            _reset(connection, code)
        raise smtplib.SMTPDataError(code, reply)


def _pipelined_envelope(connection: smtplib.SMTP, sender: str, recipient: str) -> None:
    """MAIL, RCPT and DATA in one write, then their three replies (RFC 2920), read in order and
    each acted on as the unpipelined path does: the first refusal is what is raised. The replies
    after a refusal are still read, to keep the connection in step for the next message; but a
    421 (the server is closing), or a drop after a refusal was read, closes the connection and
    raises that refusal, as the unpipelined path would have (no reconnect, no second try). The
    addresses are ASCII and checked already (no parsing as smtplib's `mail` does). A server that
    says 354 to DATA although it refused the sender or the recipient gets an empty message ended
    at once, which it cannot deliver."""
    connection.send(_envelope(sender, recipient))
    envelope_replies(connection, sender, recipient)


def _envelope(sender: str, recipient: str) -> bytes:
    return f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode("ascii")


def envelope_replies(connection: smtplib.SMTP, sender: str, recipient: str) -> None:
    """The replies to a pipelined MAIL, RCPT and DATA, as `_pipelined_envelope` says."""
    refusal: smtplib.SMTPException | None = None
    code = 0
    for verb in ("MAIL", "RCPT", "DATA"):
        code, reply = _next_reply(connection, refusal)
        refusal = refusal or _refusal(verb, code, reply, sender, recipient)
        if code == 421 and refusal is not None:  # closing: what it refused first is the answer
            connection.close()
            raise refusal
    if refusal is None:
        return
    if code == 354:  # nobody to take it: end the empty message, then refuse
        connection.send(b".\r\n")
        code, _reply = _next_reply(connection, refusal)
    _reset(connection, code)
    raise refusal


def _next_reply(connection: smtplib.SMTP, refusal: smtplib.SMTPException | None) -> tuple[int, bytes]:
    """The next reply of a pipelined envelope. A drop after a refusal was read closes the
    connection and raises that refusal; before any, the drop is raised (send() reconnects)."""
    try:
        return connection.getreply()
    except smtplib.SMTPServerDisconnected:
        if refusal is None:
            raise
        connection.close()
        raise refusal from None


def _refusal(verb: str, code: int, reply: bytes, sender: str, recipient: str) -> smtplib.SMTPException | None:
    """The exception the unpipelined path raises for this reply to `verb`; None when accepted."""
    if verb == "MAIL":
        return smtplib.SMTPSenderRefused(code, reply, sender) if code != 250 else None
    if verb == "RCPT":
        return smtplib.SMTPRecipientsRefused({recipient: (code, reply)}) if code not in (250, 251) else None
    return smtplib.SMTPDataError(code, reply) if code != 354 else None


@contextmanager
def _waiting(connection: smtplib.SMTP, seconds: float) -> Iterator[None]:
    """The connection's socket waits `seconds` for each read within, then as long as before."""
    sock = connection.sock
    before = sock.gettimeout() if sock is not None else None
    if sock is not None:
        sock.settimeout(seconds)
    try:
        yield
    finally:
        if sock is not None and connection.sock is sock:  # still open
            sock.settimeout(before)


def _gone(connection: smtplib.SMTP, exc: Exception) -> TransportError:
    """No answer after the final "." of DATA (silence past the timeout, or a drop): the server
    may have taken the message, so it is never sent again by itself; the send engine records
    the delivery as uncertain."""
    connection.close()
    return TransportError(
        f"no answer after the message was handed over: {exc}",
        "it may have been delivered: `publisher digest failures` lists it, `digest retry --all` sends it again",
        retryable=False,
        uncertain=True,
    )


def _reset(connection: smtplib.SMTP, code: int) -> None:
    """RSET after a refusal, as sendmail does; a 421 means the server is closing anyway."""
    if code == 421:
        connection.close()
    else:
        try:
            connection.rset()
        except smtplib.SMTPServerDisconnected:
            pass


def reply_text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
