"""Reading one file of the `files` source: its bytes decoded, its front matter (YAML, or the
plain `key: value` lines most of it is), its fields, its dates, and text pages saved from the
site (`来源:… 日期:…` lines)."""

from __future__ import annotations

import os
import re
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo


class Problem(Exception):
    """One file cannot be read; carries what to tell the user."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes, read through the OS: open() would add a buffered reader and five system
    calls (two fstat, an ioctl, two lseek) to each of 10,000 files a cold build reads."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, _READ_SIZE):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


_READ_SIZE = 1 << 16  # most articles in one read, then the empty read that says the file ended

_BOM = b"\xef\xbb\xbf"


def decode_text(data: bytes) -> tuple[str, bool]:
    """The text of a file, and whether it was UTF-8 (with or without BOM); else GB18030, which
    covers GBK and GB2312."""
    try:  # the utf-8-sig codec is Python code; this is the same in C
        return (data[3:] if data.startswith(_BOM) else data).decode("utf-8"), True
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030").removeprefix("\ufeff"), False
    except UnicodeDecodeError:
        raise Problem("neither UTF-8 nor GB18030 text", "save the file as UTF-8") from None


def utf8_tail(data: bytes, text: str, tail: str) -> bytes:
    """The UTF-8 bytes of `tail`, the end of `text` decoded from UTF-8 `data`: sliced from the
    file's bytes after the encoded length of what comes before it (a front matter's few hundred
    bytes), rather than the whole body encoded again to be hashed."""
    head = text[: len(text) - len(tail)]
    return data[(len(_BOM) if data.startswith(_BOM) else 0) + len(head.encode("utf-8")) :]


_OPENING = re.compile(r"---[ \t]*\r?\n")
# A line of its own, found from the newline before it: a search for a literal skips from one
# newline to the next, where `^` is tried at every character.
_CLOSING = re.compile(r"\n(?:---|\.\.\.)[ \t]*\r?$\n?", re.MULTILINE)


# What YAML refuses to read ("special characters are not allowed"): C0 controls but tab and the
# line ends, DEL, C1 controls but NEL. Word puts U+000B in for a manual line break.
_YAML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff]")


def _without_controls(block: str, notes: list[str]) -> str:
    """The front matter without the characters YAML refuses, each line that held one noted
    (line numbers of the file: the block starts on its second line)."""
    if _YAML_FORBIDDEN.search(block) is None:
        return block
    lines = block.split("\n")
    for number, line in enumerate(lines, start=2):
        found = sorted(set(_YAML_FORBIDDEN.findall(line)))
        if found:
            shown = ", ".join(f"U+{ord(c):04X}" for c in found)
            notes.append(f"front matter line {number}: removed control characters {shown}")
    return _YAML_FORBIDDEN.sub("", block)


def split_front_matter(text: str, notes: list[str] | None = None) -> tuple[dict[str, Any], str]:
    """YAML between two --- lines at the top; returns (meta, body). Found with two regex
    searches, so the body is never split into lines. Control characters YAML refuses are
    removed from the block first, each line that held one noted in `notes`."""
    opening = _OPENING.match(text)
    if opening is None:
        raise Problem("no front matter", "start the file with a --- line, the YAML keys, and ---")
    closing = _CLOSING.search(text, opening.end() - 1)  # from the opening line's newline
    if closing is None:
        raise Problem("front matter is not closed", "end the YAML block with a --- line")
    block, body = text[opening.end() : closing.start() + 1], text[closing.end() :]
    block = _without_controls(block, notes if notes is not None else [])
    simple = _plain_front_matter(block.replace("\r\n", "\n"))
    if simple is not None:
        return simple, body
    import yaml  # only for front matter the plain fast path declines

    try:
        meta = yaml.load(block, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except ValueError as exc:  # YAML's own date parsing: `date: 2024-13-01`
        raise Problem(f"front matter: {exc}", "write a real date, like 2024-05-01 09:30") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 2}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise Problem(
            f"front matter {where}{problem}", "quote values that contain ': ' or start with [ { * &"
        ) from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise Problem("front matter is not a set of `key: value` lines")
    return meta, body


# One `key: text` line. The value is left to YAML when it starts like YAML's other syntax
# (quotes, flow, comments, anchors, tags, block scalars, directives, lists) or holds a tab.
# Greedy, then its trailing spaces stripped: a lazy value tried the line's end at every character.
_PLAIN_LINE = re.compile(
    r"^([A-Za-z_][A-Za-z0-9_-]*):[ \t]+([^\s\"'\[\]{}&*!|>%@`#,?:~-][^\t\n]*)[ \t]*$", re.MULTILINE
)


# YAML 1.1 booleans and nulls, and anything that starts like a number (ints, octal, floats,
# sexagesimal): values the fast path leaves to YAML so both agree on their meaning. Each starts
# with one of _TYPED_FIRST (under IGNORECASE too: no other code point folds to these letters).
_YAML_TYPED = re.compile(
    r"(?i:y|n|yes|no|true|false|on|off|null|~)|[-+]?(?:\.?[0-9][0-9_:.]*(?:e[-+]?[0-9]+)?|\.inf|\.nan)"
)
_TYPED_FIRST = frozenset("+-.0123456789FNOTYfnoty~")


def _plain_front_matter(block: str) -> dict[str, Any] | None:
    """The common case, `key: text` lines only, without running YAML (8x faster for 10k files).

    None as soon as a line uses any YAML feature (quotes, lists, flow, comments, anchors,
    empty values, duplicates): YAML then reads the block, so both paths agree on meaning.
    Values stay text; dates, `draft` and ids are read from text anyway. `block` has `\n` line
    ends; one regex finds every line that is such a pair, and all of them must be.
    """
    pairs = _PLAIN_LINE.findall(block)
    if len(pairs) != block.count("\n") + (not block.endswith("\n") and block != ""):
        return None  # a line that is not `key: text` (a blank one too)
    meta: dict[str, Any] = {}
    for key, spaced in pairs:
        value = spaced.rstrip(" ")
        if ": " in value or " #" in value or key in meta:
            return None  # a mapping in the value, a comment, or a duplicate
        if value[0] in _TYPED_FIRST and _YAML_TYPED.fullmatch(value):
            return None  # a value YAML reads as a bool, null or number
        meta[key] = value
    return meta


def text_field(meta: dict[str, Any], key: str) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value).strip() or None
    raise Problem(f"`{key}` must be text, not {type(value).__name__}")


def string_list(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # one name, as most front matter gives it
        return (value.strip(),) if value.strip() else ()
    if isinstance(value, int):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise Problem(f"`{key}` must be a name or a list of names", f"write `{key}: [a, b]`")
    return tuple(str(v).strip() for v in value if str(v).strip())


def front_matter_categories(meta: dict[str, Any]) -> tuple[str, ...]:
    return string_list(meta.get("categories"), "categories") + string_list(meta.get("category"), "category")


def folder_of(key: str) -> str | None:
    parts = key.split("/")
    return parts[-2] if len(parts) > 1 else None


# --- dates -------------------------------------------------------------------------------------

_DATE = re.compile(
    r"^\s*(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[T\s]+(\d{1,2})[:：](\d{2})(?:[:：](\d{2})(?:\.\d+)?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)

# The shape nearly every front matter date has (`2024-05-01 09:30:00`, `2024-05-01`): a local
# time, found by a simpler pattern and read in a third of the time.
_LOCAL_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[ T]([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?)?")


def parse_date(value: Any, zone: ZoneInfo) -> datetime | None:
    """A front matter or page date as an aware datetime; a time without zone is in `zone`."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    if isinstance(value, date):
        return datetime.combine(value, time(0, 0), tzinfo=zone)
    if not isinstance(value, str):
        return None
    common = _LOCAL_DATE.fullmatch(value)
    if common is not None:  # what _date_text reads it as, without its optional parts
        year, month, day, hour, minute, second = map(int, common.groups("0"))
        try:
            return datetime(year, month, day, hour, minute, second, tzinfo=zone)
        except ValueError:
            return None
    return _date_text(value, zone)


def _date_text(value: str, zone: ZoneInfo) -> datetime | None:
    """A date as text in any of the forms _DATE allows."""
    match = _DATE.match(value)
    if not match:
        return None
    year, month, day, hour, minute, second, offset = match.groups()
    try:
        naive = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return None
    if offset is None:
        return naive.replace(tzinfo=zone)
    iso = offset if offset != "Z" else "+00:00"
    if ":" not in iso:
        iso = f"{iso[:3]}:{iso[3:]}"
    try:
        return datetime.fromisoformat(naive.isoformat() + iso)
    except ValueError:  # an offset past ±24:00
        return None


# --- text pages --------------------------------------------------------------------------------

_META = re.compile(r"(来源|來源|日期|点击|點擊)\s*[:：]")
_ORIGIN = re.compile(r"(?:来源|來源)\s*[:：]\s*(.*?)\s*(?=(?:日期|点击|點擊)\s*[:：]|$)")
_META_DATE = re.compile(r"日期\s*[:：]\s*(\S+(?:\s+\d{1,2}[:：]\d{2}(?:[:：]\d{2})?)?)")
_RELATED = re.compile(r"^\s*(相关文章推荐|相關文章推薦|相关阅读|相關閱讀)\s*[:：]?")


class TextPage:
    """The parts of a page saved as text: navigation and the related block are dropped."""

    def __init__(self, title: str, origin: str | None, date: str | None, paragraphs: list[str]):
        self.title = title
        self.origin = origin
        self.date = date
        self.paragraphs = paragraphs


def parse_text_page(text: str) -> TextPage:
    """Navigation lines (`- `), the title, the meta line, paragraphs, then 相关文章推荐."""
    lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    i = 0
    while i < len(lines) and (not lines[i] or lines[i].startswith("- ") or lines[i] == "-"):
        i += 1
    if i >= len(lines):
        raise Problem("text page is empty", "")
    title = lines[i]
    i += 1
    while i < len(lines) and not lines[i]:
        i += 1
    origin = date = None
    if i < len(lines) and _META.search(lines[i]):
        meta = lines[i]
        found_origin = _ORIGIN.search(meta)
        origin = found_origin.group(1) or None if found_origin else None
        found_date = _META_DATE.search(meta)
        date = found_date.group(1) if found_date else None
        i += 1
    paragraphs: list[str] = []
    for line in lines[i:]:
        if _RELATED.match(line):
            break
        if line:
            paragraphs.append(line)
    if not paragraphs:
        raise Problem("text page has a title but no body", "")
    return TextPage(title, origin, date, paragraphs)
