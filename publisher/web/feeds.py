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
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import time
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from flask import Blueprint, Response, abort, redirect, request
from werkzeug.security import safe_join

from ..archive import ARCHIVE_DIR
from ..feeds import FEED_FILES
from ..scripts import SCRIPTS, path_segment
from .shared import current

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

feeds = Blueprint("feeds", __name__)


@feeds.get("/", defaults={"path": "index.html"})
@feeds.get("/<path:path>")
def output_file(path: str) -> Response:
    out_dir = current().out_dir
    if path.endswith("/"):
        path += "index.html"
    full = safe_join(str(out_dir), path)
    # No dotfiles (the writer's temporary files), nothing outside the folder via a symlink.
    if full is None or "\x00" in path or any(part.startswith(".") for part in path.split("/")):
        abort(404)
    # Any path the filesystem refuses (a name too long, a loop of links, bytes it cannot
    # encode) is a path that names no file: a 404, not a traceback.
    try:
        target = Path(full)
        if target.is_dir():
            if not path.endswith("index.html") and target.resolve().is_relative_to(out_dir):
                return redirect(f"{request.script_root}/{path.strip('/')}/", 301)  # type: ignore[return-value]
            target = target / "index.html"
        if not target.resolve().is_relative_to(out_dir) or not target.is_file():
            abort(404)
        stat = target.stat()
    except (OSError, ValueError):
        abort(404)
    media_type = media_type_of(target.name)
    gzipped = request.accept_encodings["gzip"] > 0 and any(k in media_type for k in COMPRESSIBLE)
    # One ETag per representation (RFC 9110 8.8.3): the gzip bytes are another one.
    etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}{"-gz" if gzipped else ""}"'
    response = Response(status=200, mimetype=None)
    response.headers["Content-Type"] = media_type
    response.headers["ETag"] = etag
    response.last_modified = datetime.fromtimestamp(stat.st_mtime, UTC)
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Vary"] = "Accept-Encoding"
    response.headers["X-Content-Type-Options"] = "nosniff"
    inside = target.relative_to(out_dir).as_posix()
    # The digest archive's feeds (each script's) are written outside the builds that ping the hubs: no hub for them.
    if target.name in FEED_FILES and not inside.startswith(ARCHIVES) and (links := current().app.links).hubs:
        self_url = links.of(quote(inside))
        announced = [*(f'<{hub}>; rel="hub"' for hub in links.hubs), f'<{self_url}>; rel="self"']
        response.headers["Link"] = ", ".join(announced)
    if _not_modified(etag, int(stat.st_mtime)):
        response.status_code = 304
        return response
    try:  # a rebuild may have replaced or removed it since the stat
        data = (_gzipped if gzipped else _read)(str(target), stat.st_mtime_ns, stat.st_size)
    except OSError:
        abort(404)
    if media_type.startswith("text/html"):
        response.headers["Content-Security-Policy"] = _policy(str(target), stat.st_mtime_ns, stat.st_size)
    if gzipped:
        response.headers["Content-Encoding"] = "gzip"
    if request.method != "HEAD":
        response.set_data(data)
    response.headers["Content-Length"] = str(len(data))
    return response


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


@lru_cache(maxsize=256)
def _policy(path: str, mtime_ns: int, size: int) -> str:
    """CSP for one HTML file: its `<style>` elements allowed by their SHA-256, nothing else inline."""
    hashes = [hashlib.sha256(css).digest() for css in _STYLE_ELEMENT.findall(_read(path, mtime_ns, size))]
    return CSP.format(styles="".join(f" 'sha256-{base64.b64encode(h).decode()}'" for h in hashes))


@lru_cache(maxsize=256)
def _read(path: str, _mtime_ns: int, _size: int) -> bytes:
    return Path(path).read_bytes()


@lru_cache(maxsize=256)
def _gzipped(path: str, mtime_ns: int, size: int) -> bytes:
    # mtime=0: the same bytes every time, so the compressed file has one ETag-worthy form.
    return gzip.compress(_read(path, mtime_ns, size), compresslevel=6, mtime=0)
