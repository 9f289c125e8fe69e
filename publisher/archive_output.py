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
from dataclasses import replace
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
from .editions import Edition
from .feeds import write_if_changed
from .model import Article, Category
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
        editions: Sequence[Edition] = (),
    ) -> None:
        self.store, self.look, self.categories, self.links = store, look, list(categories), links
        self.out, self.folder, self.clock, self.names = out_dir, out_dir / ARCHIVE_DIR, clock, names
        self.editions = [e for e in editions if e.folder]  # the other script's copy, if any

    def _copies(self) -> list[tuple[Edition | None, Look, ArchiveLinks]]:
        """The archive in the site's script (None), then in each other edition's: the same pages
        rendered with that edition's language and links, and converted as a whole."""
        copies: list[tuple[Edition | None, Look, ArchiveLinks]] = [(None, self.look, self.links)]
        for edition in self.editions:
            look = replace(self.look, site=replace(self.look.site, language=edition.language))
            links = ArchiveLinks(f"{self.links.base_url}/{edition.folder}", self.links.signup_url, edition.folder)
            copies.append((edition, look, links))
        return copies

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
        slug = self._slug_for(key, start, end, by, cadence)
        return None if slug is None else self.links.page_url(slug)

    def urls_for(self, key: str, start: datetime, end: datetime, by: str, cadence: str) -> dict[str | None, str]:
        """The digest's page in every script it is published in: None the site's own, then each
        other edition's script (`zh-Hant`); {} when it gets no page (see url_for)."""
        slug = self._slug_for(key, start, end, by, cadence)
        if slug is None:
            return {}
        return {edition.script if edition else None: links.page_url(slug) for edition, _look, links in self._copies()}

    def _slug_for(self, key: str, start: datetime, end: datetime, by: str, cadence: str) -> str | None:
        rows = self.store.archive_digests()
        taken = {r.slug for r in rows if r.slug}
        since = self.store.get_meta(ARCHIVE_SINCE)
        for row in rows:
            if row.digest.key == key:
                if since is not None and row.digest.created_at < datetime.fromisoformat(since):
                    return None
                return row.slug or self._name(row, taken)
        return free_slug(base_slug(start, end, by, cadence, self.look.site.timezone), taken)

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
        """The archive's files that changed, in every script, as paths under the output folder:
        the page of `only`, of every digest with `everything`, else the pages that are missing;
        then the index, the feed and the stylesheet (none before the first archived digest). A
        build (neither) whose archived digests are those the files were last written for, with
        none of the files missing, renders nothing: a changed look or setting is `everything`."""
        entries = self.entries()
        if not entries:
            return []
        signature = _signature(entries, [e.script for e in self.editions])
        if not everything and only is None and self.store.get_meta(ARCHIVE_SIGNATURE) == signature:
            if all((self.out / path).is_file() for path in self._paths(entries)):
                return []
        windows: dict[str, Sequence[Article]] = {}  # each digest's articles, read once for every copy

        def articles(entry: ArchiveEntry) -> Sequence[Article]:
            if entry.key not in windows:
                windows[entry.key] = self.store.articles_between(entry.start, entry.end, entry.by)
            return windows[entry.key]

        written = []
        for edition, look, links in self._copies():
            written += self._write_copy(edition, look, links, entries, articles, everything, only)
        self.store.set_meta(ARCHIVE_SIGNATURE, signature)
        if written:
            log.info("digest archive: wrote %s", ", ".join(written))
        return written

    def _write_copy(
        self,
        edition: Edition | None,
        look: Look,
        links: ArchiveLinks,
        entries: Sequence[ArchiveEntry],
        articles: Callable[[ArchiveEntry], Sequence[Article]],
        everything: bool,
        only: str | None,
    ) -> list[str]:
        def converted(data: bytes) -> bytes:
            return data if edition is None else edition.text(data.decode("utf-8")).encode("utf-8")

        def where(name: str) -> str:
            return f"{ARCHIVE_DIR}/{name}" if edition is None else edition.path(f"{ARCHIVE_DIR}/{name}")

        written = []
        for entry in entries:
            path = self.out / where(f"{entry.slug}/index.html")
            if everything or entry.key == only or not path.is_file():
                page = render_page(look, links, entry, self.categories, articles(entry), self.names)
                if write_if_changed(path, converted(page)):
                    written.append(where(f"{entry.slug}/index.html"))
        newest = sorted(entries, key=lambda e: (e.sent, e.slug), reverse=True)[:FEED_ENTRIES]
        in_feed = [(e, archive_sections(look, self.categories, articles(e))) for e in newest]
        files = {
            "index.html": converted(render_archive_index(look, links, entries, self.names)),
            FEED_FILE: converted(render_archive_feed(look, links, in_feed, self.names)),
            STYLESHEET: render_stylesheet(look),
        }
        for name, data in files.items():
            if write_if_changed(self.out / where(name), data):
                written.append(where(name))
        return written

    def _paths(self, entries: Sequence[ArchiveEntry]) -> list[str]:
        """Every file of the archive, in every script, under the output folder."""
        names = [*(f"{e.slug}/index.html" for e in entries), "index.html", FEED_FILE, STYLESHEET]
        own = [f"{ARCHIVE_DIR}/{n}" for n in names]
        return own + [e.path(path) for e in self.editions for path in own]

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


def _signature(entries: Sequence[ArchiveEntry], scripts: Sequence[str]) -> str:
    """What the archive's files were written for: each archived digest's address and window,
    and the other scripts it is copied in."""
    shape = [(e.key, e.slug, e.start.isoformat(), e.end.isoformat(), e.by, e.sent.isoformat()) for e in entries]
    return hashlib.sha256(json.dumps([shape, list(scripts)]).encode()).hexdigest()
