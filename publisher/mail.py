"""E-mail messages: bytes that every mail system accepts, written without the email package.

Python's own folding of non-ASCII headers can put two encoded-words side by side with no
space between (`?==?`, cpython #144156) or emit an empty one (#136052); Yahoo rejects such
mail with "554 Invalid Subject header". And building a 70 KB multipart digest through
`EmailMessage` costs about 6 ms, more than sending it. So a `Message` is serialised here, in
one pass: non-ASCII Subject, display names and List-Id phrases as base64 encoded-words holding
whole characters, one word per line, every header line within 78 characters where the line
can be broken at all; both bodies base64 in 76-column lines; CRLF throughout. CR or LF in any
header value is refused, so nothing from an article can inject a header. The tests read every
message back with Python's parser.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import lru_cache

from .config import is_loopback

MAX_LINE = 78
_WORD_OVERHEAD = len("=?utf-8?b??=")
# RFC 5322 `specials`: an ASCII display name holding one of them is sent as a quoted string.
_SPECIALS = set('()<>[]:;@\\,."')


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


def _needs_encoding(text: str, room: int = MAX_LINE - 1) -> bool:
    # ASCII that looks like an encoded-word must be encoded too, or a reader would decode it;
    # so must a word too long for any line, which encoded-words can split.
    return not text.isascii() or "=?" in text or any(len(word) > room for word in text.split(" "))


def _fold_ascii(name: str, value: str) -> str:
    """An ASCII header, broken at spaces so that lines stay within 78 columns where possible:
    a word too long for the first line starts the next one (`List-Unsubscribe:` then
    ` <https://…>`, as Python's own folder does); a word longer than a line stays whole."""
    lines, line = [], f"{name}:"
    for part in value.split(" "):
        if len(line) + 1 + len(part) > MAX_LINE and line.strip():
            lines.append(line)
            line = ""
        line += " " + part
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


@lru_cache(maxsize=1024)
def _unstructured(name: str, value: str) -> str:
    if not _needs_encoding(value, MAX_LINE - len(name) - 2):
        return _fold_ascii(name, value)
    return f"{name}: " + "\r\n ".join(encoded_words(value, MAX_LINE - len(name) - 2)) + "\r\n"


@lru_cache(maxsize=4096)
def _phrase(name: str, phrase: str) -> str:
    """A display name (or List-Id phrase) as it goes on the wire, to follow `name: `."""
    if _needs_encoding(phrase):
        return "\r\n ".join(encoded_words(phrase, MAX_LINE - len(name) - 2))
    if any(c in _SPECIALS for c in phrase):
        return '"' + phrase.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return phrase


def _angle(name: str, phrase: str, inside: str) -> str:
    """`name: phrase <inside>`, the bracketed part on its own line when the line would be long."""
    if not phrase:
        return f"{name}: <{inside}>\r\n" if name.lower().startswith("list-") else f"{name}: {inside}\r\n"
    head = f"{name}: {_phrase(name, phrase)}"
    last = head.rsplit("\r\n", 1)[-1]
    joint = " " if len(last) + len(inside) + 3 <= MAX_LINE else "\r\n "
    return f"{head}{joint}<{inside}>\r\n"


def addr_spec(address: Address) -> str:
    """The address with an internationalised domain in its ASCII form (IDNA 2008 with UTS 46,
    as email-validator and browsers use: Python's own "idna" codec is IDNA 2003 and turns
    faß.de into fass.de, another domain)."""
    domain = address.domain
    if not domain.isascii():
        import idna

        domain = idna.encode(domain, uts46=True).decode("ascii")
    return f"{address.username}@{domain}"


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
    extra_headers: tuple[tuple[str, str], ...] = ()  # e.g. ("X-Publisher-Test", "yes")
    # The envelope sender (SMTP's MAIL FROM, where bounces go; the receiver's Return-Path),
    # e.g. "bounces+<token>@example.org" ([bounces] return_path); None: the From address.
    return_path: str | None = None
    # The reader's own strings in the bodies, named (their name, their links): a batch API that
    # substitutes per recipient (transports/batch.py) sends one body with placeholders for them.
    personal: tuple[tuple[str, str], ...] = ()


Parts = tuple[str, str, str]  # (head, middle, foot): see build_message


@dataclass(frozen=True, slots=True)
class Message:
    """One e-mail: multipart/alternative, plain text first, HTML last (the preferred one)."""

    envelope: Envelope
    text: str
    html: str
    message_id: str
    text_parts: Parts | None = field(default=None, repr=False, compare=False)
    html_parts: Parts | None = field(default=None, repr=False, compare=False)
    _bytes: list[bytes] = field(default_factory=list, repr=False, compare=False)
    _chunks: list[tuple[bytes, ...]] = field(default_factory=list, repr=False, compare=False)

    @property
    def envelope_sender(self) -> str:
        """SMTP's MAIL FROM: the envelope's return path when it has one, else the From address."""
        return self.envelope.return_path or addr_spec(self.envelope.sender)

    @property
    def recipient(self) -> str:
        return addr_spec(self.envelope.to)

    @property
    def needs_smtputf8(self) -> bool:
        """A non-ASCII local part (用户@example.org) can only travel with SMTPUTF8."""
        e = self.envelope
        return not all(a.username.isascii() for a in (e.to, e.sender, e.reply_to) if a is not None)

    @property
    def list_headers(self) -> dict[str, str]:
        """List-Id and the one-click pair, unfolded, for HTTP APIs that take header values."""
        e = self.envelope
        return {
            "List-Id": e.list_id,
            "List-Unsubscribe": _unsubscribe_targets(e),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            **dict(e.extra_headers),
        }

    def as_bytes(self) -> bytes:
        """The message as it goes on the wire: CRLF, 7-bit unless an address needs SMTPUTF8."""
        if not self._bytes:
            self._bytes.append(b"".join(self.as_chunks()))
        return self._bytes[0]

    def as_chunks(self) -> tuple[bytes, ...]:
        """`as_bytes` in the pieces it is made of, not joined (written on first use, then kept):
        the header lines first, then the bodies, whose middles are the base64 a digest's readers
        share (kept once for all of them: a transport that writes the pieces copies nothing)."""
        if not self._chunks:
            self._chunks.append(_serialise(self))
        return self._chunks[0]

    @property
    def dot_safe(self) -> bool:
        """No line starts with "." (SMTP's DATA needs no dot-stuffing). Only a header line could:
        every body line is base64, a boundary line starts with "--" and a part's header with
        "Content-"; header lines start with their name or a folding space, so this holds for
        every message made here, and the header block (the first piece) is what is checked."""
        headers = self.as_chunks()[0]
        return b"\n." not in headers and not headers.startswith(b".")

    def parsed(self) -> EmailMessage:
        """The message as Python's parser reads it (tests, previews; slow)."""
        parsed = message_from_bytes(self.as_bytes(), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


def build_message(envelope: Envelope, text: str | Parts, html: str | Parts) -> Message:
    """Check the envelope (no line breaks in any header value, https for one-click) and make
    the message; its bytes are written on first use.

    A body may come as (head, middle, foot) with head and middle each a multiple of 57 UTF-8
    bytes: then the middle's base64 is computed once and shared by every message that has
    the same middle (a digest's articles), and only head and foot are encoded per message.
    """
    e = envelope
    values = [e.subject, e.list_id, e.unsubscribe_url, e.unsubscribe_mailto or "", e.message_id or ""]
    values += [e.return_path or ""]
    values += [part for pair in e.extra_headers for part in pair]
    values += [a.display_name for a in (e.sender, e.to, e.reply_to) if a is not None]
    for value in values:
        _no_controls(value)
    if not e.unsubscribe_url.startswith("https://") and not is_loopback(e.unsubscribe_url):
        raise ValueError("List-Unsubscribe needs an https URL (RFC 8058)")
    if e.unsubscribe_mailto is not None and not e.unsubscribe_mailto.startswith("mailto:"):
        raise ValueError("the unsubscribe mailto must start with mailto:")
    for name, _value in e.extra_headers:
        if not name.isascii() or not name.replace("-", "").isalnum():
            raise ValueError(f"not a header name: {name!r}")
    if e.return_path is not None and (
        not e.return_path.isascii() or e.return_path.count("@") != 1 or " " in e.return_path
    ):
        raise ValueError(f"not an envelope sender: {e.return_path!r}")
    message_id = e.message_id or make_msgid(domain=e.message_id_domain)
    text_parts = text if isinstance(text, tuple) else None
    html_parts = html if isinstance(html, tuple) else None
    return Message(envelope, "".join(text), "".join(html), message_id, text_parts=text_parts, html_parts=html_parts)


def _unsubscribe_targets(e: Envelope) -> str:
    targets = [f"<{e.unsubscribe_url}>"]
    if e.unsubscribe_mailto:
        targets.append(f"<{e.unsubscribe_mailto}>")
    return ", ".join(targets)


@lru_cache(maxsize=16)
def _list_id(list_id: str) -> str:
    phrase, _, rest = list_id.rpartition("<")
    if not rest.endswith(">") or not phrase and not list_id.startswith("<"):
        return _unstructured("List-Id", list_id)
    return _angle("List-Id", phrase.strip(), rest[:-1])


def _mailbox(name: str, address: Address) -> str:
    return _mailbox_line(name, address.display_name, addr_spec(address))


@lru_cache(maxsize=64)
def _mailbox_line(name: str, display_name: str, spec: str) -> str:
    """`name: display name <spec>`, cached: the From and Reply-To lines are every message's."""
    return _angle(name, display_name, spec) if display_name else f"{name}: {spec}\r\n"


@lru_cache(maxsize=256)
def _line_slices(lines: int) -> list[slice]:
    """The slices of `lines` 76-column lines; the last one may run past the end (slicing stops
    there), so every length with that many lines shares one list: a reader's own parts vary in
    length by a few bytes, and a cache by length missed for most of them."""
    return [slice(i, i + 76) for i in range(0, 76 * lines, 76)]


def _base64_lines(data: bytes) -> bytes:
    """base64 in 76-column CRLF lines (what base64.encodebytes does, with fewer Python steps)."""
    if not data:
        return b""
    encoded = binascii.b2a_base64(data, newline=False)
    return b"\r\n".join(map(encoded.__getitem__, _line_slices((len(encoded) + 75) // 76))) + b"\r\n"


@lru_cache(maxsize=512)
def _shared_base64(middle: str) -> bytes:
    """The base64 of a middle that many messages share (a str's hash is computed only once)."""
    data = middle.encode("utf-8")
    if len(data) % 57:
        raise ValueError("a shared middle part must be a multiple of 57 bytes")
    return _base64_lines(data)


_PART_HEADS = {
    subtype: f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'.encode()
    for subtype in ("plain", "html")
}


def _body(data: str, parts: Parts | None, subtype: str) -> list[bytes]:
    head = _PART_HEADS[subtype]
    if parts is None:
        return [head, _base64_lines(data.encode("utf-8"))]
    first = parts[0].encode("utf-8")
    if len(first) % 57:
        raise ValueError("a head part must be a multiple of 57 bytes")
    return [head, _base64_lines(first), _shared_base64(parts[1]), _base64_lines(parts[2].encode())]


@lru_cache(maxsize=64)
def _date(date: datetime) -> str:
    """The Date header's value; a send's messages made in the same second share one."""
    return format_datetime(date)


def _serialise(message: Message) -> tuple[bytes, ...]:
    e = message.envelope
    head = [_mailbox("From", e.sender), _mailbox("To", e.to)]
    if e.reply_to is not None:
        head.append(_mailbox("Reply-To", e.reply_to))
    head.append(_unstructured("Subject", e.subject))
    head.append(f"Date: {_date(e.date.replace(microsecond=0))}\r\n")
    head.append(f"Message-ID: {message.message_id}\r\n")
    head.append(_list_id(e.list_id))
    head.append(_fold_ascii("List-Unsubscribe", _unsubscribe_targets(e)))
    head.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    for name, value in e.extra_headers:
        head.append(_unstructured(name, value))
    # The boundary is a function of the Message-ID, so a retried message is byte for byte the
    # same; "=_" can never start a base64 line, so no body line can look like it.
    boundary = "=_" + hashlib.sha256(message.message_id.encode("utf-8")).hexdigest()[:32]
    head.append(f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n')
    mark = f"--{boundary}\r\n".encode("ascii")
    header_bytes = "".join(head).encode("utf-8")  # UTF-8 only in an SMTPUTF8 address
    return (
        header_bytes,
        mark,
        *_body(message.text, message.text_parts, "plain"),
        mark,
        *_body(message.html, message.html_parts, "html"),
        f"--{boundary}--\r\n".encode("ascii"),
    )


def _no_controls(value: str) -> None:
    """No header value may hold CR or LF (header injection) or any other control character."""
    if not value.isprintable() and any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        kind = "a line break" if "\r" in value or "\n" in value else "a control character"
        raise ValueError(f"header value contains {kind}: {value!r}")
