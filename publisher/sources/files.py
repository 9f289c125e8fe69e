"""The `files` source: Markdown and HTML with YAML front matter, and text pages saved from the site."""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from ..errors import SourceError
from ..model import Deferred, Folder, ItemProblem, SourceItem, Unchanged
from ..text import is_utf8, text_to_html
from . import Fetched, FolderFingerprints

SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".txt": "text"}
_SUFFIX_TUPLE = tuple(SUFFIXES)
FRONT_MATTER_KEYS = (
    "title", "date", "category", "categories", "id", "author", "summary", "url", "image", "tags",
    "updated", "draft",
)  # fmt: skip


class Problem(Exception):
    """One file cannot be read; carries what to tell the user."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


class FilesSource:
    """Reads a folder tree; a file's key is its path relative to the root, with / separators."""

    complete = True
    remote = False

    def __init__(
        self,
        name: str,
        root: Path,
        timezone: str,
        default_category: str | None = None,
        url_template: str | None = None,
    ) -> None:
        self.name = name
        self.root = root
        self.zone = ZoneInfo(timezone)
        self.default_category = default_category
        self.url_template = url_template

    def fetch(self, fingerprints: Mapping[str, str]) -> Iterator[Fetched]:
        if not self.root.is_dir():
            raise SourceError(
                f"source {self.name!r}: folder {self.root} does not exist",
                "create it or fix `path` in [[sources]]",
            )
        by_folder = fingerprints if isinstance(fingerprints, FolderFingerprints) else None
        for folder, prefix, files in self._walk():
            if isinstance(files, OSError):  # a sub-folder that cannot be listed: report it, keep what it held
                reason = f"cannot list this folder: {files.strerror or files}"
                yield ItemProblem(prefix, folder, reason, "check its permissions; its articles stay as they were")
                kept = tuple(key for key in fingerprints if key.startswith(prefix))
                if kept:
                    yield Unchanged(kept)
                continue
            if not is_utf8(prefix):  # nothing in here can be stored (or asked about): say so
                for name, _fingerprint in files:
                    yield _undecodable(folder, prefix, name, "folder")
                continue
            digest = _digest(files)
            if by_folder is not None and by_folder.digest(prefix) == digest:
                yield Folder(prefix, digest, len(files), tuple([prefix + name for name, _fingerprint in files]))
                continue
            known = by_folder.in_folder(prefix) if by_folder is not None else fingerprints
            unchanged: list[str] = []
            for name, fingerprint in files:
                key = prefix + name
                if known.get(key) == fingerprint:
                    unchanged.append(key)
                elif not is_utf8(name):
                    yield _undecodable(folder, prefix, name, "file")
                else:
                    path = os.path.join(folder, name)
                    yield Deferred(key, partial(self.read_or_problem, path, key, fingerprint), path)
            yield Folder(prefix, digest, len(files), tuple(unchanged))

    def read_or_problem(self, path: str, key: str, fingerprint: str | None) -> SourceItem | ItemProblem | None:
        """`read`, with a file's problems as a value (this runs in worker processes)."""
        try:
            return self.read(path, key, fingerprint)
        except Problem as problem:
            return ItemProblem(key, path, problem.reason, problem.hint)
        except OSError as exc:
            hint = "fix or remove the symbolic link" if exc.errno == errno.ELOOP else "check its permissions"
            return ItemProblem(key, path, f"cannot read: {exc.strerror or exc}", hint)
        except (ValueError, KeyError, TypeError, IndexError) as exc:  # a file odd in a way not foreseen
            return ItemProblem(key, path, f"cannot be read: {exc!r}", "check the file; report it if it looks fine")

    def _walk(self) -> Iterator[tuple[str, str, list[tuple[str, str]] | OSError]]:
        """(folder, key prefix, [(name, fingerprint)]) for every folder under the root, each
        folder's content files in name order, folders depth first in name order; hidden files
        and folders skipped. A fingerprint is the file's mtime and size. A sub-folder that
        cannot be listed comes with the error instead of its files (only the root fails the source).

        At 100,000 files every microsecond spent per file here is a tenth of a second of every
        build, and one stat per file is the least an incremental build can do. So: plain
        strings, one tuple per folder, and stat() by name through the open directory (an
        fstatat, no path resolution), which costs a third less than DirEntry.stat()."""
        stack = [(str(self.root), "")]
        while stack:
            folder, prefix = stack.pop()
            try:
                files, folders = _list_folder(folder)
            except OSError as exc:
                if not prefix:
                    raise SourceError(f"source {self.name!r}: cannot list {folder}: {exc}") from exc
                yield folder, prefix, exc
                continue
            yield folder, prefix, files
            stack.extend((os.path.join(folder, name), f"{prefix}{name}/") for name in reversed(folders))

    def read(self, path: str | Path, key: str, fingerprint: str | None = None) -> SourceItem | None:
        """Parse one file; None for a draft. Raises Problem for a file that cannot be used."""
        with open(path, "rb") as handle:
            text = _decode(handle.read())
        kind = SUFFIXES[os.path.splitext(path)[1].lower()]
        if kind == "text":
            return self._text_page(text, path, key, fingerprint)
        notes: list[str] = []
        meta, body = _split_front_matter(text, notes)
        if meta.get("draft") is True:
            return None
        title = meta.get("title")
        if not isinstance(title, str) or not title.strip():
            raise Problem("front matter has no `title`", "add `title: ...` between the --- lines")
        if "date" not in meta:
            raise Problem("front matter has no `date`", "add `date: 2024-05-01 09:30`")
        published = self._date(meta["date"], "date")
        updated = self._date(meta["updated"], "updated") if meta.get("updated") else None
        return SourceItem(
            source=self.name,
            key=key,
            title=title,
            content=body,
            markdown=kind == "markdown",
            published=published,
            updated=updated,
            categories=_categories(meta),
            location=str(path),
            url=_text_field(meta, "url") or self._url(key),
            author=_text_field(meta, "author"),
            summary=_text_field(meta, "summary"),
            image=_text_field(meta, "image"),
            tags=_string_list(meta.get("tags"), "tags"),
            explicit_id=_text_field(meta, "id"),
            fingerprint=fingerprint,
            folder=_folder(key),
            default_category=self.default_category,
            warnings=tuple(notes),
        )

    def _text_page(self, text: str, path: str | Path, key: str, fingerprint: str | None) -> SourceItem:
        page = parse_text_page(text)
        if page.date is None:
            raise Problem(
                "text page has no meta line with 日期",
                "pages need a line like `来源:高新院 日期:2023-12-04 点击:次` under the title",
            )
        return SourceItem(
            source=self.name,
            key=key,
            title=page.title,
            content=text_to_html("\n".join(page.paragraphs)),
            published=self._date(page.date, "日期"),
            location=str(path),
            url=self._url(key),
            author=page.origin,
            fingerprint=fingerprint,
            folder=_folder(key),
            default_category=self.default_category,
        )

    def _date(self, value: Any, field: str) -> datetime:
        parsed = parse_date(value, self.zone)
        if parsed is None:
            raise Problem(
                f"`{field}` {value!r} is not a date",
                "write it like 2024-05-01, 2024-05-01 09:30 or 2024-05-01T09:30:00+08:00",
            )
        return parsed

    def _url(self, key: str) -> str | None:
        if not self.url_template:
            return None
        stem_path = key.rsplit(".", 1)[0]
        return self.url_template.format(
            path=quote(stem_path, safe="/"), stem=quote(stem_path.rsplit("/", 1)[-1], safe="")
        )


def _list_folder(folder: str) -> tuple[list[tuple[str, str]], list[str]]:
    """A folder's content files with their fingerprints, and its subfolders, each in name
    order. Names starting with . or _ are skipped, a link to a folder is not followed (a link
    to a parent would loop), a file that vanishes between listing and stat is gone, and one that
    cannot be looked at (a link to itself) is listed, so that reading it reports it."""
    by_fd = os.scandir in os.supports_fd and os.stat in os.supports_dir_fd
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if by_fd else -1
    try:
        names: list[str] = []
        folders: list[str] = []
        with os.scandir(fd if by_fd else folder) as entries:
            for entry in entries:
                name = entry.name
                if name[0] in "._":
                    continue
                if name.lower().endswith(_SUFFIX_TUPLE):
                    try:
                        is_file = entry.is_file()  # from the listing's file type: no system call
                    except OSError:  # a link to itself, a loop of links: reading it says what
                        is_file = True
                    if is_file:
                        names.append(name)
                elif entry.is_dir(follow_symlinks=False):
                    folders.append(name)
        names.sort()
        folders.sort()
        stat = os.stat
        files: list[tuple[str, str]] = []
        for name in names:
            try:
                st = stat(name, dir_fd=fd) if by_fd else stat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            except OSError as exc:  # never matches a stored fingerprint: read, and reported
                files.append((name, f"unreadable:{exc.errno}"))
                continue
            files.append((name, f"{st.st_mtime_ns}:{st.st_size}"))
        return files, folders
    finally:
        if by_fd:
            os.close(fd)


def _undecodable(folder: str, prefix: str, name: str, part: str) -> ItemProblem:
    shown = os.path.join(folder, name).encode("utf-8", "backslashreplace").decode()
    return ItemProblem(prefix + name, shown, f"the {part} name is not valid UTF-8", f"rename the {part}")


def _digest(files: list[tuple[str, str]]) -> str:
    """What a folder's listing sums up to: its names and fingerprints, in order."""
    listing = "\n".join([f"{name}\t{fingerprint}" for name, fingerprint in files])
    return hashlib.blake2b(listing.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def _decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030, which covers GBK and GB2312."""
    try:  # the utf-8-sig codec is Python code; this is the same in C
        return (data[3:] if data.startswith(b"\xef\xbb\xbf") else data).decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise Problem("neither UTF-8 nor GB18030 text", "save the file as UTF-8") from None


_OPENING = re.compile(r"---[ \t]*\r?\n")
_CLOSING = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?$\n?", re.MULTILINE)


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


def _split_front_matter(text: str, notes: list[str] | None = None) -> tuple[dict[str, Any], str]:
    """YAML between two --- lines at the top; returns (meta, body). Found with two regex
    searches, so the body is never split into lines. Control characters YAML refuses are
    removed from the block first, each line that held one noted in `notes`."""
    opening = _OPENING.match(text)
    if opening is None:
        raise Problem("no front matter", "start the file with a --- line, the YAML keys, and ---")
    closing = _CLOSING.search(text, opening.end())
    if closing is None:
        raise Problem("front matter is not closed", "end the YAML block with a --- line")
    block, body = text[opening.end() : closing.start()], text[closing.end() :]
    block = _without_controls(block, notes if notes is not None else [])
    lines = block.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    simple = _plain_front_matter(lines)
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


_PLAIN_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*):[ \t]+([^\s\"'\[\]{}&*!|>%@`#,?:~-][^\t]*?)[ \t]*")


# YAML 1.1 booleans and nulls, and anything that starts like a number (ints, octal, floats,
# sexagesimal): values the fast path leaves to YAML so both agree on their meaning.
_YAML_TYPED = re.compile(
    r"(?i:y|n|yes|no|true|false|on|off|null|~)|[-+]?(?:\.?[0-9][0-9_:.]*(?:e[-+]?[0-9]+)?|\.inf|\.nan)"
)


def _plain_front_matter(lines: list[str]) -> dict[str, Any] | None:
    """The common case, `key: text` lines only, without running YAML (8x faster for 10k files).

    None as soon as a line uses any YAML feature (quotes, lists, flow, comments, anchors,
    empty values, duplicates): YAML then reads the block, so both paths agree on meaning.
    Values stay text; dates, `draft` and ids are read from text anyway.
    """
    meta: dict[str, Any] = {}
    for line in lines:
        match = _PLAIN_LINE.fullmatch(line)
        if match is None or ": " in match.group(2) or " #" in match.group(2):
            return None
        key, value = match.groups()
        if key in meta or _YAML_TYPED.fullmatch(value):
            return None  # a duplicate, or a value YAML reads as a bool, null or number
        meta[key] = value
    return meta


def _text_field(meta: dict[str, Any], key: str) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value).strip() or None
    raise Problem(f"`{key}` must be text, not {type(value).__name__}")


def _string_list(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, int)):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise Problem(f"`{key}` must be a name or a list of names", f"write `{key}: [a, b]`")
    return tuple(str(v).strip() for v in value if str(v).strip())


def _categories(meta: dict[str, Any]) -> tuple[str, ...]:
    return _string_list(meta.get("categories"), "categories") + _string_list(meta.get("category"), "category")


def _folder(key: str) -> str | None:
    parts = key.split("/")
    return parts[-2] if len(parts) > 1 else None


# --- dates -------------------------------------------------------------------------------------

_DATE = re.compile(
    r"^\s*(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[T\s]+(\d{1,2})[:：](\d{2})(?:[:：](\d{2})(?:\.\d+)?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)


def parse_date(value: Any, zone: ZoneInfo) -> datetime | None:
    """A front matter or page date as an aware datetime; a time without zone is in `zone`."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    if isinstance(value, date):
        return datetime.combine(value, time(0, 0), tzinfo=zone)
    if not isinstance(value, str):
        return None
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
