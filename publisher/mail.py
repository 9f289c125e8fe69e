"""E-mail messages: headers that every mail system accepts, and the one-click unsubscribe pair.

Python's own folding of non-ASCII headers can put two encoded-words side by side with no
space between (`?==?`, cpython #144156) or emit an empty one (#136052); Yahoo rejects such
mail with "554 Invalid Subject header". Non-ASCII Subject and display names are therefore
encoded here: whole characters per encoded-word, one word per line, every line within 78
characters, and CR/LF refused outright so no header value can inject another header.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, make_msgid
from typing import Any

MAX_LINE = 78
_WORD_OVERHEAD = len("=?utf-8?b??=")
# Headers whose non-ASCII text is encoded here rather than by the email package.
_UNSTRUCTURED = {"subject"}
_MAILBOX = {"from", "to", "reply-to", "sender"}


def encoded_words(text: str, first_room: int) -> list[str]:
    """`text` as RFC 2047 base64 encoded-words, each holding whole characters.

    The first word fits in `first_room` columns, every other one in a continuation line
    (one leading space), all within 78 characters.
    """
    words: list[str] = []
    room = first_room
    chunk = b""
    for char in text:
        data = char.encode("utf-8")
        if chunk and _encoded_length(chunk + data) > room:
            words.append(_word(chunk))
            chunk, room = b"", MAX_LINE - 1
        chunk += data
    if chunk or not words:
        words.append(_word(chunk))
    return words


def _encoded_length(data: bytes) -> int:
    return _WORD_OVERHEAD + 4 * ((len(data) + 2) // 3)


def _word(data: bytes) -> str:
    return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="


class MailPolicy(EmailPolicy):
    """policy.SMTP (CRLF, 78 columns) with its own folding for non-ASCII Subject and names."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        # Keep a Subject we will encode as the plain text it is: the header factory would decode
        # anything in it that looks like an encoded-word.
        if name.lower() in _UNSTRUCTURED and isinstance(value, str) and self._ours(name, value):
            _no_line_breaks(value)
            return name, value
        return super().header_store_parse(name, value)

    def fold(self, name: str, value: Any) -> str:
        return "".join(self._our_fold(name, value)) if self._ours(name, value) else super().fold(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        if self._ours(name, value):
            return "".join(self._our_fold(name, value)).encode("ascii")
        return super().fold_binary(name, value)

    @staticmethod
    def _ours(name: str, value: Any) -> bool:
        lowered = name.lower()
        text = str(value)
        # ASCII that looks like an encoded-word ("=?...?=") must be encoded too, or a reader
        # would decode it.
        needs_encoding = not text.isascii() or "=?" in text
        if lowered in _UNSTRUCTURED:
            return needs_encoding
        if lowered in _MAILBOX:  # names on ASCII addresses (SMTPUTF8 addresses stay Python's)
            addresses = getattr(value, "addresses", ())
            return needs_encoding and all(a.addr_spec.isascii() for a in addresses)
        return False

    def _our_fold(self, name: str, value: Any) -> Iterator[str]:
        lowered = name.lower()
        if lowered in _UNSTRUCTURED:
            words = encoded_words(str(value), MAX_LINE - len(name) - 2)
            yield f"{name}: " + "\r\n ".join(words) + "\r\n"
            return
        parts = []
        for address in value.addresses:
            addr = address.addr_spec
            if not address.display_name:
                parts.append(addr)
                continue
            words = encoded_words(address.display_name, MAX_LINE - len(name) - 2)
            parts.append("\r\n ".join(words) + f"\r\n <{addr}>")
        yield f"{name}: " + ",\r\n ".join(parts) + "\r\n"


POLICY = MailPolicy(linesep="\r\n", max_line_length=MAX_LINE, cte_type="7bit")


@dataclass(frozen=True, slots=True)
class Envelope:
    """What every message of the list carries besides its content."""

    sender: Address
    to: Address
    subject: str
    date: datetime  # aware
    message_id_domain: str  # the site's domain, never the machine's name
    list_id: str  # e.g. "高新院周报 <digest.www.example.org>"
    unsubscribe_url: str  # https, with a signed token: what List-Unsubscribe-Post points to
    unsubscribe_mailto: str | None = None
    reply_to: Address | None = None
    message_id: str | None = None  # stable id to reuse across retries; made when absent


def build_message(envelope: Envelope, text: str, html: str) -> EmailMessage:
    """multipart/alternative with the plain text first and the HTML last (the preferred one)."""
    for value in (envelope.subject, envelope.list_id, envelope.unsubscribe_url, envelope.unsubscribe_mailto or ""):
        _no_line_breaks(value)
    for address in (envelope.sender, envelope.to, envelope.reply_to):
        if address is not None:
            _no_line_breaks(address.display_name)
    if not envelope.unsubscribe_url.startswith("https://"):
        raise ValueError("List-Unsubscribe needs an https URL (RFC 8058)")
    msg = EmailMessage(policy=POLICY)
    msg["Subject"] = envelope.subject
    msg["From"] = envelope.sender
    msg["To"] = envelope.to
    if envelope.reply_to is not None:
        msg["Reply-To"] = envelope.reply_to
    msg["Date"] = format_datetime(envelope.date)
    msg["Message-ID"] = envelope.message_id or make_msgid(domain=envelope.message_id_domain)
    msg["List-Id"] = envelope.list_id
    targets = [f"<{envelope.unsubscribe_url}>"]
    if envelope.unsubscribe_mailto:
        targets.append(f"<{envelope.unsubscribe_mailto}>")
    msg["List-Unsubscribe"] = ", ".join(targets)
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def _no_line_breaks(value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"header value contains a line break: {value!r}")
