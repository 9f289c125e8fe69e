"""The digest archive in the output folder: `digests/<slug>/index.html` per sent digest, the
index `digests/index.html`, the feed `digests/atom.xml` and `digests/archive.css`, rendered
from the store by publisher.archive and written only when their bytes differ (as the feeds).

A digest is archived once its sending started and reached the ledger: its status is past
`planning` (sending, paused or done; a paused one stays, its first mails link to it) and at
least one reader's delivery was planned; and it was opened once the archive was on: the meta
row `archive_since` holds the moment a build or a plan first ran with the archive on, so an
upgrade or turning the archive on later publishes no digest sent before (`publisher digest
archive --all` or `--since DAY` moves that moment back, deliberately). `Newsletter` writes a
digest's page as it plans it, before the first mail that links to it goes out; a build writes
what is missing (all of it when the output's shape changed), and renders nothing when the
archived digests are those its files were last written for (`archive_signature`), so
`publisher build` can always make the archive again from the store, at no cost when idle.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from .archive import (
    ARCHIVE_DIR,
    FEED_ENTRIES,
    FEED_FILE,
    STYLESHEET,
    ArchiveEntry,
    ArchiveLinks,
    ArchiveNames,
    archive_sections,
    base_slug,
    free_slug,
    render_archive_feed,
    render_archive_index,
    render_page,
    render_stylesheet,
)
from .digest import Look
from .feeds import write_if_changed
from .model import Category
from .store import ArchivedDigest, Store

log = logging.getLogger(__name__)

PUBLISHED = frozenset({"sending", "paused", "done"})
ARCHIVE_SINCE = "archive_since"  # the meta row: digests opened from then on are archived
ARCHIVE_SIGNATURE = "archive_signature"  # the meta row: the archived digests the files were written for


class Archive:
    """The archive of one App: the addresses of digests and the files of the sent ones."""

    def __init__(
        self,
        store: Store,
        look: Look,
        categories: Sequence[Category],
        links: ArchiveLinks,
        out_dir: Path,
        clock: Callable[[], datetime],
        names: ArchiveNames,
    ) -> None:
        self.store, self.look, self.categories, self.links = store, look, list(categories), links
        self.folder, self.clock, self.names = out_dir / ARCHIVE_DIR, clock, names

    def since(self) -> datetime:
        """The moment from which opened digests are archived: the first build or plan with the
        archive on sets it (`archive_since` in `meta`), later ones read it."""
        kept = self.store.get_meta(ARCHIVE_SINCE) or self.store.setdefault_meta(ARCHIVE_SINCE, self.clock().isoformat())
        return datetime.fromisoformat(kept)

    def publish_since(self, moment: datetime) -> list[str]:
        """Archive the digests opened from `moment` on as well (`digest archive --all/--since`):
        the operator's deliberate choice. Pages already written stay where they are."""
        self.store.set_meta(ARCHIVE_SINCE, moment.isoformat())
        return self.write(everything=True)

    def _archived(self, row: ArchivedDigest, since: datetime | None) -> bool:
        published = row.mailed and row.digest.status in PUBLISHED
        return published and (since is None or row.digest.created_at >= since)

    def url_for(self, key: str, start: datetime, end: datetime, by: str, cadence: str) -> str | None:
        """The page address of the digest with this key: given (and stored) the first time it
        is asked for, as the digest is planned, and read from the ledger ever after; for a
        window not opened yet (a preview) the address it would get now, not stored. None for a
        digest opened before the archive was on (resumed after the upgrade): it gets no page."""
        rows = self.store.archive_digests()
        taken = {r.slug for r in rows if r.slug}
        since = self.store.get_meta(ARCHIVE_SINCE)
        for row in rows:
            if row.digest.key == key:
                if since is not None and row.digest.created_at < datetime.fromisoformat(since):
                    return None
                return self.links.page_url(row.slug or self._name(row, taken))
        return self.links.page_url(free_slug(base_slug(start, end, by, cadence, self.look.site.timezone), taken))

    def entries(self) -> list[ArchiveEntry]:
        """The archived digests, oldest first; one sent before the addresses were stored (an
        upgrade) is given its address now, once, in the order the digests were opened."""
        since, rows = self.since(), self.store.archive_digests()
        taken = {r.slug for r in rows if r.slug}
        return [
            ArchiveEntry(r.digest.key, r.slug or self._name(r, taken), r.digest.start, r.digest.end, r.digest.by,
                         r.digest.created_at, r.cadence)
            for r in rows if self._archived(r, since)
        ]  # fmt: skip

    def publish(self, key: str) -> list[str]:
        """As a digest is planned: its page (when it is archived), the index and the feed."""
        return self.write(only=key)

    def write(self, everything: bool = False, only: str | None = None) -> list[str]:
        """The archive's files that changed, as paths under the output folder: the page of
        `only`, of every digest with `everything`, else the pages that are missing; then the
        index, the feed and the stylesheet (none before the first archived digest). A build
        (neither) whose archived digests are those the files were last written for, with none
        of the files missing, renders nothing: a changed look or setting is `everything`."""
        entries = self.entries()
        if not entries:
            return []
        signature = _signature(entries)
        if not everything and only is None and self.store.get_meta(ARCHIVE_SIGNATURE) == signature:
            if all((self.folder / path).is_file() for path in self._paths(entries)):
                return []
        written = []
        for entry in entries:
            path = self.folder / entry.slug / "index.html"
            if everything or entry.key == only or not path.is_file():
                articles = self.store.articles_between(entry.start, entry.end, entry.by)
                page = render_page(self.look, self.links, entry, self.categories, articles, self.names)
                if write_if_changed(path, page):
                    written.append(f"{ARCHIVE_DIR}/{entry.slug}/index.html")
        newest = sorted(entries, key=lambda e: (e.sent, e.slug), reverse=True)[:FEED_ENTRIES]
        in_feed = [
            (e, archive_sections(self.look, self.categories, self.store.articles_between(e.start, e.end, e.by)))
            for e in newest
        ]
        files = {
            "index.html": render_archive_index(self.look, self.links, entries, self.names),
            FEED_FILE: render_archive_feed(self.look, self.links, in_feed, self.names),
            STYLESHEET: render_stylesheet(self.look),
        }
        for name, data in files.items():
            if write_if_changed(self.folder / name, data):
                written.append(f"{ARCHIVE_DIR}/{name}")
        self.store.set_meta(ARCHIVE_SIGNATURE, signature)
        if written:
            log.info("digest archive: wrote %s", ", ".join(written))
        return written

    @staticmethod
    def _paths(entries: Sequence[ArchiveEntry]) -> list[str]:
        return [*(f"{e.slug}/index.html" for e in entries), "index.html", FEED_FILE, STYLESHEET]

    def _name(self, row: ArchivedDigest, taken: set[str]) -> str:
        """Give `row`'s digest its address: the first free one of its window's name."""
        base = base_slug(row.digest.start, row.digest.end, row.digest.by, row.cadence, self.look.site.timezone)
        while True:
            slug = free_slug(base, taken)
            kept = self.store.name_digest(row.digest.id, slug)
            taken.add(slug)
            if kept is not None:
                taken.add(kept)
                return kept


def _signature(entries: Sequence[ArchiveEntry]) -> str:
    """What the archive's files were written for: each archived digest's address and window."""
    shape = [(e.key, e.slug, e.start.isoformat(), e.end.isoformat(), e.by, e.sent.isoformat()) for e in entries]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()
