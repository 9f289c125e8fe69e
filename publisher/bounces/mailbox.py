"""The bounce mailbox: read a dedicated mailbox over IMAP or POP3, turn what it holds into
`MailEvent`s, and clear away what was read.

One poll: connect (TLS verified by default: implicit TLS or STARTTLS; plain text only when the
configuration allows it), read up to `max_messages` messages, hand each one's events to
`record` (which links them to their deliveries and applies the rules), and only then move
(IMAP) or delete the message. A message that is none of the shapes `reports` reads stays
where it is for a person to read: over IMAP it gets the keyword `$PublisherLeft` and later
polls skip it; over POP3, which has no flags, its UIDL is remembered in `left` (the caller
keeps that set between polls). A failure to record leaves the message for the next poll;
each event carries an id, so reading it twice records it once.
"""

from __future__ import annotations

import imaplib
import logging
import poplib
import re
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from ..errors import PublisherError
from .events import MailEvent
from .recorder import RecordReport
from .reports import read_report

log = logging.getLogger(__name__)

Protocol_ = Literal["imap", "pop3"]
Security = Literal["tls", "starttls", "none"]
LEFT_KEYWORD = "$PublisherLeft"


class MailboxError(PublisherError):
    """The mailbox could not be reached or read: nothing in it was changed by this poll."""


@dataclass(frozen=True)
class MailboxAccess:
    """Where the mailbox is and how to reach it (from `[bounces.mailbox]`)."""

    protocol: Protocol_
    host: str
    port: int
    username: str
    password: str
    security: Security = "tls"
    folder: str = "INBOX"  # IMAP only
    processed: Literal["move", "delete"] = "move"  # move: IMAP only
    processed_folder: str = "Processed"
    timeout: float = 30.0
    max_messages: int = 500
    ssl_context: ssl.SSLContext | None = None  # None: the system's CAs, verified

    @property
    def where(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port}"


@dataclass
class PollReport:
    processed: int = 0  # read, recorded, moved or deleted
    left: int = 0  # not a bounce or complaint we read: left in the mailbox by this poll
    left_before: int = 0  # left by earlier polls, still there and skipped
    by_kind: Counter[str] = field(default_factory=Counter)  # events: hard, soft, complaint
    by_shape: Counter[str] = field(default_factory=Counter)  # messages: dsn, arf, qmail, exim
    duplicates: int = 0  # events recorded by an earlier poll (a message read again)
    strangers: int = 0  # events naming nobody of ours
    unlinked: int = 0  # events without our token or Message-ID (or with a forged token): kept, changing nobody
    suppressed: list[str] = field(default_factory=list)  # addresses the rules suppressed now
    unsubscribed: list[str] = field(default_factory=list)  # readers the rules unsubscribed now


class Mailbox(Protocol):
    """What a poll needs of a mailbox, whichever protocol it speaks."""

    def unread(self) -> Iterator[tuple[str, bytes]]:
        """(key, the message's bytes) for each message not left by an earlier poll."""

    def done(self, key: str) -> None:
        """The message was read: move or delete it."""

    def leave(self, key: str) -> None:
        """The message was not understood: leave it, and skip it next time."""

    def left_before(self) -> int: ...


def poll(
    mailbox: Mailbox,
    record: Callable[[list[MailEvent]], RecordReport],
    source: str,
    now: datetime,
    return_path: str = "",
) -> PollReport:
    """Read what is waiting; record each message's events, then clear it away.
    `return_path`: `[bounces] return_path`, whose VERP addresses name a delivery."""
    report = PollReport(left_before=mailbox.left_before())
    for key, raw in mailbox.unread():
        reading = read_report(raw, source, now, return_path)
        if reading is None:
            mailbox.leave(key)
            report.left += 1
            continue
        recorded = record(list(reading.events))
        mailbox.done(key)
        report.duplicates += recorded.duplicates
        report.strangers += recorded.strangers
        report.unlinked += recorded.unlinked
        report.suppressed += recorded.suppressed
        report.unsubscribed += recorded.unsubscribed
        report.processed += 1
        report.by_shape[reading.shape] += 1
        report.by_kind.update(event.kind.value for event in reading.events)
    return report


def _context(access: MailboxAccess) -> ssl.SSLContext:
    return access.ssl_context or ssl.create_default_context()


class ImapMailbox:
    """One IMAP session on one folder; use it as a context manager."""

    def __init__(self, access: MailboxAccess) -> None:
        self.access = access
        self._imap: imaplib.IMAP4 | None = None
        self._moved: list[str] = []
        self._deleted: list[str] = []

    def __enter__(self) -> ImapMailbox:
        a = self.access
        try:
            if a.security == "tls":
                imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(a.host, a.port, ssl_context=_context(a), timeout=a.timeout)
            else:
                imap = imaplib.IMAP4(a.host, a.port, timeout=a.timeout)
                if a.security == "starttls":
                    imap.starttls(ssl_context=_context(a))
            self._imap = imap
            imap.login(a.username, a.password)
            status, data = imap.select(_quote(a.folder))
            if status != "OK":
                raise MailboxError(f"{a.where}: cannot open the folder {a.folder!r}: {_said(data)}",
                                   "check [bounces.mailbox] folder")  # fmt: skip
            if a.processed == "move":
                imap.create(_quote(a.processed_folder))  # "already exists" is fine
        except (imaplib.IMAP4.error, OSError) as exc:
            self.close()
            raise _explained(a, exc) from exc
        except MailboxError:
            self.close()
            raise
        return self

    def __exit__(self, kind: object, error: BaseException | None, _traceback: object) -> None:
        """Clear what was recorded, even when a later message failed (it stays for next time);
        a connection that failed mid-poll is said as a MailboxError."""
        try:
            if self._imap is not None:
                self._clear()
        except (imaplib.IMAP4.error, OSError, MailboxError) as failed:
            if error is None:
                raise _explained(self.access, failed) from failed
            log.warning("%s: could not clear the messages read before the failure: %s", self.access.where, failed)
        finally:
            self.close()
        if isinstance(error, (imaplib.IMAP4.error, OSError)):
            raise _explained(self.access, error) from error

    @property
    def imap(self) -> imaplib.IMAP4:
        assert self._imap is not None, "use ImapMailbox as a context manager"
        return self._imap

    def _search(self, criterion: str) -> list[str]:
        status, data = self.imap.uid("SEARCH", criterion)
        if status != "OK" or not data or not data[0]:
            return []
        return [uid.decode() for uid in data[0].split()]

    def left_before(self) -> int:
        return len(self._search(f"KEYWORD {LEFT_KEYWORD}"))

    def unread(self) -> Iterator[tuple[str, bytes]]:
        uids = self._search(f"UNDELETED UNKEYWORD {LEFT_KEYWORD}")[: self.access.max_messages]
        for uid in uids:
            status, data = self.imap.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((item[1] for item in data if isinstance(item, tuple)), None) if status == "OK" else None
            if raw is None:
                log.warning("%s: message %s could not be fetched: %s", self.access.where, uid, _said(data))
                continue
            yield uid, raw

    def done(self, key: str) -> None:
        (self._moved if self.access.processed == "move" else self._deleted).append(key)

    def leave(self, key: str) -> None:
        status, data = self.imap.uid("STORE", key, "+FLAGS", f"({LEFT_KEYWORD})")
        if status != "OK":  # a server without keywords: the message is read again next time
            log.warning("%s: cannot mark message %s as left: %s", self.access.where, key, _said(data))

    def _clear(self) -> None:
        """Move or delete what was read, in one command each (MOVE, else COPY and delete)."""
        if self._moved:
            uids = ",".join(self._moved)
            if "MOVE" in self.imap.capabilities:
                status, data = self.imap.uid("MOVE", uids, _quote(self.access.processed_folder))
            else:
                status, data = self.imap.uid("COPY", uids, _quote(self.access.processed_folder))
                if status == "OK":
                    self._deleted.extend(self._moved)
            if status != "OK":
                folder = self.access.processed_folder
                raise MailboxError(f"{self.access.where}: cannot move read messages to {folder!r}: {_said(data)}",
                                   'check [bounces.mailbox] processed_folder, or set processed = "delete"')  # fmt: skip
        if self._deleted:
            self.imap.uid("STORE", ",".join(self._deleted), "+FLAGS", "(\\Deleted)")
            self.imap.expunge()
        self._moved, self._deleted = [], []

    def close(self) -> None:
        if self._imap is None:
            return
        try:
            if self._imap.state == "SELECTED":
                self._imap.close()
            self._imap.logout()
        except (imaplib.IMAP4.error, OSError):
            self._imap.shutdown()
        self._imap = None


class Pop3Mailbox:
    """One POP3 session; deletions take effect at QUIT, so a failed poll deletes nothing."""

    def __init__(self, access: MailboxAccess, left: set[str]) -> None:
        self.access = access
        self.left = left  # UIDLs left by earlier polls; updated in place
        self._pop: poplib.POP3 | None = None
        self._numbers: dict[str, int] = {}

    def __enter__(self) -> Pop3Mailbox:
        a = self.access
        try:
            if a.security == "tls":
                pop: poplib.POP3 = poplib.POP3_SSL(a.host, a.port, timeout=a.timeout, context=_context(a))
            else:
                pop = poplib.POP3(a.host, a.port, timeout=a.timeout)
                if a.security == "starttls":
                    pop.stls(context=_context(a))
            self._pop = pop
            pop.user(a.username)
            pop.pass_(a.password)
            _response, listing, _size = pop.uidl()
            for line in listing:
                number, uidl = line.decode("ascii", "replace").split(" ", 1)
                self._numbers[uidl.strip()] = int(number)
        except (poplib.error_proto, OSError, ValueError) as exc:
            self._abandon()
            raise _explained(a, exc) from exc
        self.left &= set(self._numbers)  # forget what a person has since removed
        return self

    def __exit__(self, kind: object, error: BaseException | None, _traceback: object) -> None:
        """QUIT commits the deletions of what was recorded, even when a later message failed;
        a connection that failed mid-poll is said as a MailboxError."""
        try:
            if self._pop is not None:
                self._pop.quit()
                self._pop = None
        except (poplib.error_proto, OSError) as failed:
            if error is None:
                raise _explained(self.access, failed) from failed
            log.warning("%s: could not delete the messages read before the failure: %s", self.access.where, failed)
        finally:
            self._abandon()
        if isinstance(error, (poplib.error_proto, OSError)):
            raise _explained(self.access, error) from error

    def left_before(self) -> int:
        return len(self.left)

    def unread(self) -> Iterator[tuple[str, bytes]]:
        assert self._pop is not None, "use Pop3Mailbox as a context manager"
        waiting = [(n, uidl) for uidl, n in sorted(self._numbers.items(), key=lambda i: i[1]) if uidl not in self.left]
        for number, uidl in waiting[: self.access.max_messages]:
            _response, lines, _size = self._pop.retr(number)
            yield uidl, b"\r\n".join(lines) + b"\r\n"

    def done(self, key: str) -> None:
        assert self._pop is not None
        self._pop.dele(self._numbers[key])

    def leave(self, key: str) -> None:
        self.left.add(key)

    def _abandon(self) -> None:
        """Close without QUIT: POP3 then keeps every message, marked for deletion or not."""
        if self._pop is not None:
            try:
                self._pop.close()
            except OSError:
                pass
            self._pop = None


def _explained(access: MailboxAccess, exc: BaseException) -> MailboxError:
    """A library's or the socket's exception as what the operator can act on."""
    if isinstance(exc, MailboxError):
        return exc
    where = access.where
    if isinstance(exc, ssl.SSLCertVerificationError):
        return MailboxError(
            f"{where}: the server's TLS certificate did not verify: {exc.verify_message}",
            "fix the server's certificate, or trust its CA; verification is never turned off",
        )
    if isinstance(exc, ssl.SSLError):
        return MailboxError(f"{where}: TLS failed: {exc}",
                            'check [bounces.mailbox] security ("tls" for 993/995, "starttls" for 143/110)')  # fmt: skip
    if isinstance(exc, (ConnectionRefusedError, socket.gaierror, TimeoutError)):
        return MailboxError(f"cannot connect to {where}: {exc}", "check [bounces.mailbox] host and port")
    text = str(exc)
    if re.search(r"auth|login|password|credential", text, re.I):
        return MailboxError(f"{where} refused the login of {access.username!r}: {text}",
                            "check [bounces.mailbox] username and the password's environment variable")  # fmt: skip
    return MailboxError(f"{where}: {text}", "is the mailbox server up and the account able to read it?")


def _quote(folder: str) -> str:
    """A folder name as an IMAP quoted string (imaplib sends arguments as they are)."""
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(data: Iterable[object] | None) -> str:
    parts = [d.decode("utf-8", "replace") if isinstance(d, bytes) else str(d) for d in data or []]
    return " ".join(parts) or "no answer"
