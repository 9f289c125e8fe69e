"""The `files` source: Markdown and HTML with YAML front matter, and text pages saved from the site.

This module walks the folders; `file_formats.py` reads one file."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator, Mapping
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from ..errors import SourceError
from ..model import Deferred, Folder, ItemProblem, SourceItem, Unchanged
from ..text import is_utf8, text_to_html
from . import Fetched, FolderFingerprints
from .file_formats import (
    Problem,
    decode_text,
    folder_of,
    front_matter_categories,
    parse_date,
    parse_text_page,
    read_bytes,
    split_front_matter,
    string_list,
    text_field,
    utf8_tail,
)

SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".txt": "text"}
_SUFFIX_TUPLE = tuple(SUFFIXES)
FRONT_MATTER_KEYS = (
    "title", "date", "category", "categories", "id", "author", "summary", "url", "image", "tags",
    "updated", "draft",
)  # fmt: skip


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

    def read_again(self, key: str) -> Deferred:
        """The item under `key`, to read again: its body is rendered when a feed first shows it."""
        path = os.path.join(self.root, *key.split("/"))
        return Deferred(key, partial(self.read_or_problem, path, key, None), path)

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
        data = read_bytes(path)
        text, utf8 = decode_text(data)
        kind = SUFFIXES[os.path.splitext(path)[1].lower()]
        if kind == "text":
            return self._text_page(text, path, key, fingerprint)
        notes: list[str] = []
        meta, body = split_front_matter(text, notes)
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
            content_utf8=utf8_tail(data, text, body) if utf8 else None,
            markdown=kind == "markdown",
            published=published,
            updated=updated,
            categories=front_matter_categories(meta),
            location=str(path),
            url=text_field(meta, "url") or self._url(key),
            author=text_field(meta, "author"),
            summary=text_field(meta, "summary"),
            image=text_field(meta, "image"),
            tags=string_list(meta.get("tags"), "tags"),
            explicit_id=text_field(meta, "id"),
            fingerprint=fingerprint,
            folder=folder_of(key),
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
            folder=folder_of(key),
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


__all__ = ["FilesSource", "parse_date", "parse_text_page"]
