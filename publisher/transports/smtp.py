"""SMTP: one verified TLS connection per batch, reconnect after a drop, replies mapped to errors."""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from ..bounces.status import address_refused
from ..mail import Message
from . import Sent, TransportError

Security = Literal["starttls", "tls", "none"]


class SmtpTransport:
    """Submission over SMTP.

    `security`: "starttls" (port 587), "tls" (implicit TLS, port 465) or "none" (a local relay
    only). Certificates are verified by default (Python's smtplib does not verify without a
    context); `ssl_context` replaces the default, e.g. to trust a private CA. `timeout` bounds
    the connection and each reply but one: the reply to the final "." of DATA, which a relay may
    give only once it has scanned the message, waits `data_timeout` (RFC 5321 4.5.3.2.6: 10
    minutes), as silence there makes the delivery uncertain.
    """

    def __init__(
        self,
        host: str,
        port: int,
        security: Security = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        data_timeout: float = 600.0,
    ) -> None:
        if password is not None and not password.isascii():
            # smtplib encodes AUTH as ASCII (cpython #73936): fail at start-up, not mid-batch
            raise TransportError(
                "the SMTP password has non-ASCII characters, which Python's smtplib cannot send",
                "use an ASCII password (or an app password) for the mail account",
                retryable=False,
            )
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.timeout = username, password, timeout
        self.data_timeout = data_timeout
        self.context = ssl_context or ssl.create_default_context()
        self._connection: smtplib.SMTP | None = None
        self._in_flight: tuple[Message, bool] | None = None  # started, its answer not read yet
        # The next message's MAIL, RCPT and DATA, written after this one's final "." (RFC 2920):
        # `_announced` until `finish` reads their replies, then `_ready` with its refusal if any.
        self._announced: Message | None = None
        self._ready: tuple[Message, smtplib.SMTPException | None] | None = None

    def send(self, message: Message) -> Sent:
        """Hand `message` over and wait for the server's answer: `start`, then `finish`."""
        self.start(message)
        return self.finish()

    def start(self, message: Message, following: Message | None = None) -> None:
        """Hand `message` over, up to the final "." of DATA, without waiting for the answer:
        `finish` reads it, so the send engine builds the next message while the server reads
        this one. With `following` (the message the caller means to start next), a server that
        offers PIPELINING gets its MAIL, RCPT and DATA right after this one's final ".", and
        answers them with it: one round trip a message. Raises TransportError when `message`
        could not be handed over (nothing went out)."""
        try:
            ready, self._ready = self._ready, None
            mine = ready is not None and ready[0] is message  # its envelope went ahead
            refusal = ready[1] if ready is not None else None
            if mine and refusal is None:  # its DATA was answered 354
                assert self._connection is not None
                answered, announced = False, _send_body(self._connection, message, following)
            elif mine and refusal is not None and not isinstance(refusal, smtplib.SMTPServerDisconnected):
                raise refusal  # its envelope was refused: the error it had in turn
            else:
                if ready is not None:  # another message's DATA is open (or the connection dropped)
                    self._drop()
                connection = self._connect()
                try:
                    answered, announced = _hand_over(connection, message, self.data_timeout, following)
                except smtplib.SMTPServerDisconnected:
                    # Dropped before the message was handed over (an idle connection the server
                    # closed, say): one fresh connection, one more try. (A drop or silence after
                    # the final "." of DATA is raised by `finish` as uncertain, never tried again.)
                    self._drop()
                    answered, announced = _hand_over(self._connect(), message, self.data_timeout, following)
        except TransportError:
            self._drop()
            raise
        except (smtplib.SMTPException, OSError) as exc:
            raise self._failed(exc) from exc
        self._in_flight = (message, answered)
        self._announced = following if announced else None

    def finish(self) -> Sent:
        """The server's answer to the message `start` handed over: Sent, or TransportError
        (uncertain when no answer came: the server may have taken it). The replies to the
        following message's envelope, if it was written, are read after it and kept for its
        `start`: they are that message's, not this one's."""
        assert self._in_flight is not None, "finish() without start()"
        (message, answered), self._in_flight = self._in_flight, None
        following, self._announced = self._announced, None
        if not answered:
            connection = self._connection
            try:
                assert connection is not None
                # No RSET after a refusal while an envelope follows (the server would read it
                # as that message's text): the connection is dropped after a refusal anyway.
                _final_reply(connection, self.data_timeout, reset=following is None)
            except TransportError:
                self._drop()
                raise
            except (smtplib.SMTPException, OSError) as exc:
                raise self._failed(exc) from exc
            if following is not None:
                try:
                    _envelope_replies(connection, following.envelope_sender, following.recipient)
                except smtplib.SMTPException as exc:  # a drop too: `start` reconnects then
                    self._ready = (following, exc)
                else:
                    self._ready = (following, None)
        return Sent(provider_id=message.message_id)

    def _failed(self, exc: smtplib.SMTPException | OSError) -> TransportError:
        """The TransportError for `exc`; the connection dropped unless only the recipient was
        refused (then it stays good for the next message)."""
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            code, reply = next(iter(exc.recipients.values()))
            error = self._reply_error("recipient refused", code, reply)
            # A hard bounce only when the reply says the address is bad (5.1.1, "user unknown"):
            # a policy refusal (5.7.x) fails this delivery and marks nobody.
            error.bounced = address_refused(code, _text(reply))
            return error
        connected = self._connection is not None
        self._drop()
        return self._translate(exc, connected)

    def _translate(self, exc: Exception, connected: bool) -> TransportError:
        """smtplib's and the socket's exceptions as what the send engine needs to know."""
        where = f"{self.host}:{self.port}"
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return TransportError(
                f"{where} refused the login: {exc.smtp_code} {_text(exc.smtp_error)}",
                "check the username and the password's environment variable",
                retryable=False,
                broken=True,
            )
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return TransportError(
                f"{where} refused the sender {exc.sender}: {exc.smtp_code} {_text(exc.smtp_error)}",
                "check [digest] sender: the server must accept it as a sending address",
                retryable=400 <= exc.smtp_code < 500,
                broken=exc.smtp_code >= 500,
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            return self._reply_error("message refused", exc.smtp_code, exc.smtp_error)
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            # Never after the final "." (that is finish()'s uncertain error): nothing went out.
            return TransportError(f"{where} closed the connection before the message was handed over: {exc}",
                                  "the server's trouble; the message is tried again later", retryable=True)  # fmt: skip
        if isinstance(exc, ssl.SSLCertVerificationError):
            return TransportError(
                f"{where}: the server's TLS certificate did not verify: {exc.verify_message}",
                "fix the server's certificate, or trust its CA; verification is never turned off",
                retryable=False,
                broken=True,
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return TransportError(
                f"{where} does not offer {exc}",
                'check [mail.smtp] security ("starttls", "tls" or "none") and the port',
                retryable=False,
                broken=True,
            )
        if isinstance(exc, (ConnectionRefusedError, socket.gaierror)) or not connected:
            return TransportError(f"cannot connect to {where}: {exc}", "is the mail server up?", retryable=True)
        # A timeout or a reset before DATA was complete: the server cannot have taken the message
        # (only silence or a drop after the final "." is uncertain, raised by finish()).
        return TransportError(f"{where}: {exc}", "the message is tried again later", retryable=True)

    def close(self) -> None:
        open_data = self._ready is not None and self._ready[1] is None  # a DATA answered 354: QUIT would be text
        if self._in_flight is not None or self._announced is not None or open_data:
            self._drop()  # an answer not read: no QUIT, whose reply it would take for its own
        if self._connection is not None:
            try:
                self._connection.quit()
            except (smtplib.SMTPException, OSError):
                self._connection.close()
            self._connection = None

    def _connect(self) -> smtplib.SMTP:
        if self._connection is not None:
            return self._connection
        connection: smtplib.SMTP
        if self.security == "tls":
            connection = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.context)
        else:
            connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            connection.ehlo()
            if self.security == "starttls":
                connection.starttls(context=self.context)  # keyword: positional means certfile in 3.11
                connection.ehlo()
            if self.username:
                connection.login(self.username, self.password or "")
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _drop(self) -> None:
        self._in_flight = self._announced = self._ready = None  # the connection's, gone with it
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _reply_error(self, what: str, code: int, reply: bytes | str) -> TransportError:
        retryable = 400 <= code < 500
        hint = "the server asks to try later" if retryable else "permanent: the server will not take it"
        return TransportError(f"{self.host}:{self.port} {what}: {code} {_text(reply)}", hint, retryable=retryable)


def _hand_over(
    connection: smtplib.SMTP, message: Message, data_timeout: float, following: Message | None = None
) -> tuple[bool, bool]:
    """MAIL, RCPT, DATA and the message, up to its final "." (then `following`'s envelope, see
    `_send_body`): (whether the answer to it was read too, by smtplib's own path for a message
    that needs dot-stuffing, else `_final_reply` reads it; whether `following`'s envelope went).

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
    return False, _send_body(connection, message, following)


def _send_body(connection: smtplib.SMTP, message: Message, following: Message | None) -> bool:
    """The message and its final "." (a drop: not all went, nothing was taken); then, to a
    server that offers PIPELINING, `following`'s MAIL, RCPT and DATA in the same write (RFC
    2920 lets a message's content start a group of commands), when it can go that way (ASCII
    addresses, no dot-stuffing): True when they went."""
    ahead = (
        following is not None
        and following.dot_safe
        and not following.needs_smtputf8
        and connection.has_extn("pipelining")
    )
    envelope = (_envelope(following.envelope_sender, following.recipient),) if ahead and following else ()
    _send_pieces(connection, (*message.as_chunks(), b".\r\n", *envelope))
    return ahead


def _send_pieces(connection: smtplib.SMTP, pieces: tuple[bytes, ...]) -> None:
    """`pieces` written in order, as smtplib's `send` writes one (its errors too): gathered by
    one `sendmsg` call while the socket takes them all, else as many calls as it needs; over
    TLS (whose socket has no `sendmsg`) joined and written at once."""
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
            while left and sent >= len(left[0]):
                sent -= len(left.pop(0))
            if sent:
                left[0] = memoryview(left[0])[sent:]
    except OSError:
        connection.close()
        raise smtplib.SMTPServerDisconnected("Server not connected")  # noqa: B904  (as smtplib raises it)


def _final_reply(connection: smtplib.SMTP, data_timeout: float, reset: bool = True) -> None:
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
    _envelope_replies(connection, sender, recipient)


def _envelope(sender: str, recipient: str) -> bytes:
    return f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode("ascii")


def _envelope_replies(connection: smtplib.SMTP, sender: str, recipient: str) -> None:
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


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
