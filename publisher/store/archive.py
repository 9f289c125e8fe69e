"""What the digest archive reads from and keeps in the ledger: every digest with its cadence,
its page's address once given (`digests.archive_slug`) and whether its sending reached the
ledger (a delivery planned), in one query; and the address, stored once."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .ledger import DigestRow, _digest_row
from .schema import deliveries_table, digests_table


@dataclass(frozen=True, slots=True)
class ArchivedDigest:
    """A digest as the archive sees it: `mailed` when at least one reader's delivery was
    planned; `slug` its page's address, None until the archive names it."""

    digest: DigestRow
    cadence: str
    mailed: bool
    slug: str | None = None


class ArchiveStore:
    """The Store's reads and the one write for the digest archive (publisher.archive_output)."""

    engine: Engine

    def archive_digests(self) -> list[ArchivedDigest]:
        """Every digest, oldest first (the order digests without an address are named in)."""
        d, x = digests_table.c, deliveries_table.c
        mailed = exists().where(x.digest_id == d.id).label("mailed")
        query = select(digests_table, mailed).order_by(d.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [ArchivedDigest(_digest_row(r), r.cadence or "weekly", bool(r.mailed), r.archive_slug) for r in rows]

    def name_digest(self, digest_id: int, slug: str) -> str | None:
        """Give the digest the address `slug` unless it has one already, and return the one it
        has now; None when another digest holds `slug` (another process named one first: try
        the next free name)."""
        d = digests_table.c
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(digests_table).where(d.id == digest_id, d.archive_slug.is_(None)).values(archive_slug=slug)
                )
                kept = conn.execute(select(d.archive_slug).where(d.id == digest_id)).scalar_one()
        except IntegrityError:
            return None
        return str(kept)
