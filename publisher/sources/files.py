"""The `files` source: Markdown and HTML with YAML front matter, and text pages saved from the site.

This module turns the folders walked (`walk.py`) into items; `file_formats.py` reads one file."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
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
from .walk import PARALLEL_FROM, WalkedFolder, WalkPool, walk

if TYPE_CHECKING:
    from ..config import FilesSourceConfig

SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".txt": "text"}
CONTENT_SUFFIXES = tuple(SUFFIXES)  # what the walk lists (walk.py)
FRONT_MATTER_KEYS = (
    "title", "date", "category", "categories", "id", "author", "summary", "url", "image", "tags",
    "updated", "draft",
)  # fmt: skip


def files_source(
    config: FilesSourceConfig,
    timezone: str,
    workers: WalkPool | None = None,
    walked_ahead: Callable[[str], Sequence[WalkedFolder]] | None = None,
) -> FilesSource:
    """The source a `[[sources]]` table of type `files` configures (a build's reads ahead make
    the same, build_ahead.py)."""
    return FilesSource(
        name=config.source_name,
        root=Path(config.path),
        timezone=timezone,
        default_category=config.default_category,
        url_template=config.url_template,
        workers=workers,
        walked_ahead=walked_ahead,
    )


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
        workers: WalkPool | None = None,
        parallel_from: int = PARALLEL_FROM,
        walked_ahead: Callable[[str], Sequence[WalkedFolder]] | None = None,
    ) -> None:
        self.name = name
        self.root = root
        self.zone = ZoneInfo(timezone)
        self.default_category = default_category
        self.url_template = url_template
        self.workers = workers  # the build's pool: big folders are stat'ed there (walk.py)
        self.parallel_from = parallel_from
        self.walked_ahead = walked_ahead  # a build's: the folders of a root walked ahead (build_ahead.py)

    def __getstate__(self) -> dict[str, Any]:
        """What a worker needs to read a file (each `Deferred` read carries its source): not the
        pool, nor the folders walked ahead."""
        return {**self.__dict__, "workers": None, "walked_ahead": None}

    def fetch(self, fingerprints: Mapping[str, str]) -> Iterator[Fetched]:
        if not self.root.is_dir():
            raise SourceError(
                f"source {self.name!r}: folder {self.root} does not exist",
                "create it or fix `path` in [[sources]]",
            )
        by_folder = fingerprints if isinstance(fingerprints, FolderFingerprints) else None
        root = str(self.root)
        ahead = self.walked_ahead(root) if self.walked_ahead is not None else ()
        for folder, prefix, listing in walk(root, CONTENT_SUFFIXES, self.workers, self.parallel_from, ahead):
            if isinstance(listing, OSError):  # a sub-folder that cannot be listed: report it, keep what it held
                if not prefix:
                    raise SourceError(f"source {self.name!r}: cannot list {folder}: {listing}") from listing
                reason = f"cannot list this folder: {listing.strerror or listing}"
                yield ItemProblem(prefix, folder, reason, "check its permissions; its articles stay as they were")
                kept = tuple(key for key in fingerprints if key.startswith(prefix))
                if kept:
                    yield Unchanged(kept)
                continue
            if not is_utf8(prefix):  # nothing in here can be stored (or asked about): say so
                for name, _fingerprint in listing.files():
                    yield _undecodable(folder, prefix, name, "folder")
                continue
            digest = listing.digest()
            if by_folder is not None and by_folder.digest(prefix) == digest:
                yield Folder(prefix, digest, len(listing), listing.keys(prefix))
                continue
            known = by_folder.in_folder(prefix) if by_folder is not None else fingerprints
            unchanged: list[str] = []
            for name, fingerprint in listing.files():
                key = prefix + name
                if known.get(key) == fingerprint:
                    unchanged.append(key)
                elif not is_utf8(name):
                    yield _undecodable(folder, prefix, name, "file")
                else:
                    path = os.path.join(folder, name)
                    yield Deferred(key, partial(self.read_or_problem, path, key, fingerprint), path, fingerprint)
            yield Folder(prefix, digest, len(listing), tuple(unchanged))

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


def _undecodable(folder: str, prefix: str, name: str, part: str) -> ItemProblem:
    shown = os.path.join(folder, name).encode("utf-8", "backslashreplace").decode()
    return ItemProblem(prefix + name, shown, f"the {part} name is not valid UTF-8", f"rename the {part}")


__all__ = ["FilesSource", "parse_date", "parse_text_page"]
