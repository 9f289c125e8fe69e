"""One exception tree; every error carries a hint that tells the user what to do."""

from __future__ import annotations

import errno
import re


class PublisherError(Exception):
    """Base error: `message` says what went wrong, `hint` says how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(PublisherError):
    """The configuration is invalid; `problems` lists every (key path, message, fix)."""

    def __init__(self, path: str, problems: list[tuple[str, str, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}: {len(problems)} problem(s) in the configuration"]
        for key, message, fix in problems:
            lines.append(f"  {key}: {message}" + (f"\n      fix: {fix}" if fix else ""))
        super().__init__("\n".join(lines))

    def __str__(self) -> str:
        return self.message


class ContentError(PublisherError):
    """One content item (a file, a page) cannot be read; the rest still goes through."""

    def __init__(self, location: str, message: str, hint: str = "") -> None:
        super().__init__(f"{location}: {message}", hint)
        self.location = location


class SourceError(PublisherError):
    """A whole source failed (folder missing, server down); its last good articles stay.
    `url`: the address that failed, for `publisher status` and `/healthz`; by default the URL
    the message starts with (`https://…/list_1.html: HTTP 404 Not Found`), else "". `status`:
    the HTTP status when the failure was the server's answer."""

    def __init__(self, message: str, hint: str = "", url: str = "", status: int | None = None) -> None:
        super().__init__(message, hint)
        found = _LEADING_URL.match(message)
        self.url = url or (found.group(1) if found else "")
        self.status = status


_LEADING_URL = re.compile(r"(https?://\S+?):(?:\s|$)")


class StoreError(PublisherError):
    """The store cannot be opened or written."""


class StoreSchemaError(StoreError):
    """The store's schema is not the one this code was written for: behind (`publisher db
    upgrade`) or ahead (made by a newer publisher). Nothing was read or written."""

    def __init__(self, url: str, stored: str, code: str, ahead: bool, command: str = "") -> None:
        self.url, self.stored, self.code, self.ahead, self.command = url, stored, code, ahead, command
        who = f"`{command}` refused the store" if command else "refused the store"
        if ahead:
            message = (
                f"{who} at {url}: its schema is at revision {stored}, which this publisher does not know "
                f"(its newest is {code}): the store was made by a newer publisher"
            )
            hint = "install that newer publisher, or restore the backup made before its `publisher db upgrade`"
        else:
            message = f"{who} at {url}: its schema is at revision {stored}, this publisher needs revision {code}"
            hint = (
                "back up the store, then run `publisher db upgrade` (or start the service with "
                "`publisher run --upgrade`); see docs/operations.md, Upgrading"
            )
        super().__init__(message, hint)

    def refused_by(self, command: str) -> StoreSchemaError:
        """The same refusal, naming the command that refused."""
        return StoreSchemaError(self.url, self.stored, self.code, self.ahead, command)


class ThemeError(PublisherError):
    """A template or message catalogue of the operator's theme is broken; names file and line."""


class OutputError(PublisherError):
    """A file could not be written (a full disk, a quota, permissions): names the file and what to do."""

    def __init__(self, path: object, exc: OSError, kept: str = "") -> None:
        """`kept`: what stays as it was, e.g. "the files written before keep their last content"."""
        self.path, self.exc, self.kept = path, exc, kept
        hint = disk_advice(exc, path) + (f"; {kept}" if kept else "")
        super().__init__(f"cannot write {path}: {exc.strerror or exc}", hint)

    def __reduce__(self) -> tuple[type[OutputError], tuple[object, OSError, str]]:
        """Pickled as made: a build's worker process that writes feeds raises it to the build."""
        return type(self), (self.path, self.exc, self.kept)


# A full disk, a quota or a file-size limit: freeing space (not retrying sooner) is the remedy.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# What an operator can act on when writing a file fails: space, permissions, a failing disk.
FILE_REFUSED = DISK_FULL | {errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO}


def disk_advice(exc: OSError, path: object) -> str:
    """What to do about `exc` writing `path`."""
    if exc.errno in DISK_FULL:
        return f"free space on the disk that holds {path} (or raise its quota or file-size limit), then run again"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"let the user publisher runs as write where {path} is (owner, mode, a read-only mount)"
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):  # making its folder: a file has that name
        return f"a file stands at {path} or at a folder above it: move or remove it"
    if exc.errno == errno.EISDIR:
        return f"a folder is where {path} goes: move or remove it"
    return f"check the disk and the folder that hold {path}"
