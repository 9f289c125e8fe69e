"""The output folder over HTTP: feeds, index.html, feeds.opml, category pages, the digest
archive, with validators and gzip.

Each file gets its media type, an `ETag` and `Last-Modified` from the file, a 304 on
`If-None-Match` / `If-Modified-Since`, and gzip when the client accepts it. A folder is served
as its index.html (`/policy/`; `/policy` redirects there, so the page's address is its
folder's, as on any static host). Dotfiles (the writer's temporary files) and anything outside
the folder, via a symlink too, are a 404. An HTML file gets a strict Content-Security-Policy
(`CSP`): no script at all, styles from the folder or from the file's own `<style>` elements,
allowed by their hashes.
A feed, with `[websub] hubs`, also says where it is announced: `Link` headers naming each hub
(`rel="hub"`) and the feed's own public URL (`rel="self"`), as WebSub asks of a publisher.

Feed readers poll: most requests are a 304 for a file that has not changed. So what a file's
answer needs (validators, headers, its bytes and their gzip) is worked out once per version of
the file (`ServedFiles`, held to `CACHE_BYTES`), and a request costs one `lstat` per folder level
below the output folder. Even so a Python server answers about a thirtieth as many 304s as nginx
(docs/performance.md): docs/operations.md says how to put nginx in front (config/nginx.conf).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import re
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

from flask import Blueprint, Response, abort, current_app, redirect, request
from werkzeug.security import safe_join

from ..archive import ARCHIVE_DIR
from ..feeds import FEED_FILES
from ..scripts import SCRIPTS, path_segment
from .shared import WebState, current

ARCHIVES = (f"{ARCHIVE_DIR}/", *(f"{path_segment(s)}/{ARCHIVE_DIR}/" for s in SCRIPTS))  # the archive in each script

MEDIA_TYPES = {
    "rss.xml": "application/rss+xml; charset=utf-8",
    "atom.xml": "application/atom+xml; charset=utf-8",
    "feed.json": "application/feed+json; charset=utf-8",
    ".opml": "text/x-opml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = ("xml", "json", "html", "opml", "css", "text/plain")
# The pages in the output folder (index.html, the digest archive) are static and public: they
# run nothing, so nothing may run in them, whatever an article's markup or a theme tries.
CSP = (
    "default-src 'none'; img-src 'self' https: data:; style-src 'self'{styles}; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
_STYLE_ELEMENT = re.compile(rb"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)
CACHE_BYTES = 64 * 1024 * 1024  # the files' bytes and gzip kept in memory, per app
CACHE_FILES = 4096  # versions of files whose headers are kept (a few hundred bytes each)
ENTRY_BYTES = 512  # what an entry's headers are counted as
CACHE_EXTENSION = "publisher.feeds"

feeds = Blueprint("feeds", __name__)


@feeds.get("/", defaults={"path": "index.html"})
@feeds.get("/<path:path>")
def output_file(path: str) -> Response:
    state = current()
    out_dir = str(state.out_dir)
    if path.endswith("/"):
        path += "index.html"
    full = safe_join(out_dir, path)
    # No dotfiles (the writer's temporary files), nothing outside the folder via a symlink.
    if full is None or "\x00" in path or any(part.startswith(".") for part in path.split("/")):
        abort(404)
    # Any path the filesystem refuses (a name too long, a loop of links, bytes it cannot
    # encode) is a path that names no file: a 404, not a traceback.
    try:
        found = find_inside(out_dir, full)
        if found is not None and stat.S_ISDIR(found.st_mode):
            if not path.endswith("index.html"):
                return redirect(f"{request.script_root}/{path.strip('/')}/", 301)  # type: ignore[return-value]
            full += "/index.html"
            found = find_inside(out_dir, full)
    except (OSError, ValueError):
        abort(404)
    if found is None or not stat.S_ISREG(found.st_mode):
        abort(404)
    entry = served_files().version(full, found, lambda: _describe(state, full, found))
    gzipped = entry.compressible and request.accept_encodings["gzip"] > 0
    headers = entry.gzip_headers if gzipped else entry.headers
    if _not_modified(entry.gzip_etag if gzipped else entry.etag, entry.mtime):
        return Response(status=304, headers=headers)
    try:  # a rebuild may have replaced or removed it since the stat
        data = served_files().payload(entry, gzipped)
        if entry.html and entry.policy is None:
            entry.policy = _policy(served_files().payload(entry, False))
    except OSError:
        abort(404)
    answer = Response(data, 200, headers=headers)
    if entry.policy is not None:
        answer.headers["Content-Security-Policy"] = entry.policy
    return answer


def find_inside(out_dir: str, full: str) -> os.stat_result | None:
    """The stat of what `full` names inside the folder `out_dir` (a resolved path), None when
    it lies outside through a symlink. Without a link on the way this is one `lstat` a level
    below the folder, no `realpath`: what a static server pays. Raises OSError when it is missing."""
    found, walked = None, out_dir
    for part in full[len(out_dir) :].split("/"):
        if not part:
            continue
        walked += "/" + part
        found = os.lstat(walked)
        if stat.S_ISLNK(found.st_mode):  # a link: where it leads, as a whole, must be inside
            real = os.path.realpath(full)
            return os.stat(real) if Path(real).is_relative_to(out_dir) else None
    return found if found is not None else os.stat(out_dir)


@dataclass(eq=False, slots=True)
class Served:
    """What one version of one output file is answered with, worked out once: its headers (for
    the file as it is and as gzip), its bytes when they are asked for, its CSP when HTML."""

    path: str
    version: tuple[int, int, int]  # st_mtime_ns, st_size, st_ino: a rewrite is a new file (rename)
    mtime: int  # whole seconds, for If-Modified-Since
    etag: str
    gzip_etag: str  # one ETag per representation (RFC 9110 8.8.3): the gzip bytes are another one
    compressible: bool
    html: bool
    headers: list[tuple[str, str]]
    gzip_headers: list[tuple[str, str]]
    body: bytes | None = None
    zipped: bytes | None = None
    policy: str | None = None
    weight: int = ENTRY_BYTES


def _describe(state: WebState, full: str, found: os.stat_result) -> Served:
    name = full[full.rfind("/") + 1 :]
    media_type = media_type_of(name)
    common = [
        ("Last-Modified", formatdate(found.st_mtime, usegmt=True)),
        ("Cache-Control", "public, max-age=300"),
        ("Vary", "Accept-Encoding"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    inside = full[len(str(state.out_dir)) :].lstrip("/")
    # The digest archive's feeds (each script's) are written outside the builds that ping the hubs: no hub for them.
    if name in FEED_FILES and not inside.startswith(ARCHIVES) and (links := state.app.links).hubs:
        self_url = links.of(quote(inside))
        announced = [*(f'<{hub}>; rel="hub"' for hub in links.hubs), f'<{self_url}>; rel="self"']
        common.append(("Link", ", ".join(announced)))
    etag = f'"{found.st_mtime_ns:x}-{found.st_size:x}"'
    gzip_etag = f'{etag[:-1]}-gz"'
    return Served(
        path=full,
        version=(found.st_mtime_ns, found.st_size, found.st_ino),
        mtime=int(found.st_mtime),
        etag=etag,
        gzip_etag=gzip_etag,
        compressible=any(k in media_type for k in COMPRESSIBLE),
        html=media_type.startswith("text/html"),
        headers=[("Content-Type", media_type), ("ETag", etag), *common],
        gzip_headers=[("Content-Type", media_type), ("ETag", gzip_etag), *common, ("Content-Encoding", "gzip")],
    )


@dataclass(eq=False)
class ServedFiles:
    """The `Served` entries of one app, newest use last, one per file: a new version replaces
    the old. Held to `limit` bytes (the files' bytes and gzip, and ENTRY_BYTES an entry) and
    `files` entries; a file bigger than an eighth of the limit is read on each request instead."""

    limit: int = CACHE_BYTES
    files: int = CACHE_FILES
    _entries: OrderedDict[str, Served] = field(default_factory=OrderedDict)
    _bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def version(self, path: str, found: os.stat_result, describe: Callable[[], Served]) -> Served:
        """The entry for this version of the file at `path`, made by `describe` when new."""
        version = (found.st_mtime_ns, found.st_size, found.st_ino)
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None and entry.version == version:
                self._entries.move_to_end(path)
                return entry
        entry = describe()
        with self._lock:
            old = self._entries.pop(path, None)
            self._bytes += entry.weight - (old.weight if old is not None else 0)
            self._entries[path] = entry
            self._trim()
        return entry

    def payload(self, entry: Served, gzipped: bool) -> bytes:
        """The file's bytes, or their gzip, kept with the entry while the limit allows."""
        if (gzipped and entry.zipped is not None) or (not gzipped and entry.body is not None):
            return entry.zipped if gzipped else entry.body  # type: ignore[return-value]
        body = entry.body if entry.body is not None else Path(entry.path).read_bytes()
        # mtime=0: the same bytes every time, so the compressed file has one ETag-worthy form.
        zipped = gzip.compress(body, compresslevel=6, mtime=0) if gzipped else None
        if len(body) <= self.limit // 8:
            with self._lock:
                added = (len(body) if entry.body is None else 0) + (len(zipped) if zipped is not None else 0)
                entry.body, entry.zipped = body, zipped if zipped is not None else entry.zipped
                if self._entries.get(entry.path) is entry:
                    entry.weight += added
                    self._bytes += added
                    self._trim()
        return zipped if zipped is not None else body

    @property
    def size(self) -> int:
        return self._bytes

    def _trim(self) -> None:
        while self._entries and (self._bytes > self.limit or len(self._entries) > self.files):
            _path, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.weight


def served_files() -> ServedFiles:
    """This app's ServedFiles, made at its first file."""
    cache: ServedFiles = current_app.extensions.setdefault(CACHE_EXTENSION, ServedFiles())
    return cache


def media_type_of(name: str) -> str:
    """The Content-Type of an output file, by its name, then by its suffix."""
    if name in MEDIA_TYPES:
        return MEDIA_TYPES[name]
    suffix = name[name.rfind(".") :] if "." in name else ""
    return MEDIA_TYPES.get(suffix, "application/octet-stream")


def _not_modified(etag: str, mtime: int) -> bool:
    """RFC 9110: If-None-Match wins when present; else If-Modified-Since (whole seconds)."""
    match = request.headers.get("If-None-Match")
    if match is not None:
        tags = [tag.strip().removeprefix("W/") for tag in match.split(",")]
        return "*" in tags or etag in tags
    since = request.if_modified_since
    if since is None or since.timestamp() > time.time():  # a date in the future is ignored
        return False
    return mtime <= int(since.timestamp())


def _policy(html: bytes) -> str:
    """CSP for one HTML file: its `<style>` elements allowed by their SHA-256, nothing else inline."""
    hashes = [hashlib.sha256(css).digest() for css in _STYLE_ELEMENT.findall(html)]
    return CSP.format(styles="".join(f" 'sha256-{base64.b64encode(h).decode()}'" for h in hashes))
