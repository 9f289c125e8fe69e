"""SMTP: one verified TLS connection per batch, reconnect after a drop, replies mapped to errors."""

from __future__ import annotations

import smtplib
import socket
import ssl
from typing import Literal

from ..bounces.status import address_refused
from ..mail import Message
from . import Sent, TransportError
from .smtp_wire import envelope_replies, final_reply, hand_over, reply_text, send_body, still_open

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
            if mine and refusal is None and self._connection is not None and still_open(self._connection):
                answered, announced = False, send_body(self._connection, message, following)  # its DATA had 354
            elif mine and refusal is not None and not isinstance(refusal, smtplib.SMTPServerDisconnected):
                raise refusal  # its envelope was refused: the error it had in turn
            else:
                if ready is not None:  # another message's DATA is open, or the connection dropped or was closed
                    self._drop()
                connection = self._connect()
                try:
                    answered, announced = hand_over(connection, message, self.data_timeout, following)
                except smtplib.SMTPServerDisconnected:
                    # Dropped before the message was handed over (an idle connection the server
                    # closed, say): one fresh connection, one more try. (A drop or silence after
                    # the final "." of DATA is raised by `finish` as uncertain, never tried again.)
                    self._drop()
                    answered, announced = hand_over(self._connect(), message, self.data_timeout, following)
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
                final_reply(connection, self.data_timeout, reset=following is None)
            except TransportError:
                self._drop()
                raise
            except (smtplib.SMTPException, OSError) as exc:
                raise self._failed(exc) from exc
            if following is not None:
                try:
                    envelope_replies(connection, following.envelope_sender, following.recipient)
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
            error.bounced = address_refused(code, reply_text(reply))
            return error
        connected = self._connection is not None
        self._drop()
        return self._translate(exc, connected)

    def _translate(self, exc: Exception, connected: bool) -> TransportError:
        """smtplib's and the socket's exceptions as what the send engine needs to know."""
        where = f"{self.host}:{self.port}"
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return TransportError(
                f"{where} refused the login: {exc.smtp_code} {reply_text(exc.smtp_error)}",
                "check the username and the password's environment variable",
                retryable=False,
                broken=True,
            )
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return TransportError(
                f"{where} refused the sender {exc.sender}: {exc.smtp_code} {reply_text(exc.smtp_error)}",
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
            # Each write goes at once: over TLS a message and the next envelope are two writes,
            # and Nagle's rule held the envelope until the message's end was acknowledged.
            if connection.sock is not None:
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
        return TransportError(f"{self.host}:{self.port} {what}: {code} {reply_text(reply)}", hint, retryable=retryable)
