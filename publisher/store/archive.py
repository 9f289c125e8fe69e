"""What the digest archive reads from the ledger: every digest with its cadence and whether its
sending reached the ledger (a delivery planned), in one query."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.engine import Engine

from .ledger import DigestRow, _digest_row
from .schema import deliveries_table, digests_table


@dataclass(frozen=True, slots=True)
class ArchivedDigest:
    """A digest as the archive sees it: `mailed` when at least one reader's delivery was planned."""

    digest: DigestRow
    cadence: str
    mailed: bool


class ArchiveStore:
    """The Store's reads for the digest archive (publisher.archive)."""

    engine: Engine

    def archive_digests(self) -> list[ArchivedDigest]:
        """Every digest, oldest first: the archive's slugs count collisions in this order, so a
        later digest never changes an earlier one's address."""
        d, x = digests_table.c, deliveries_table.c
        mailed = exists().where(x.digest_id == d.id).label("mailed")
        query = select(digests_table, mailed).order_by(d.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [ArchivedDigest(_digest_row(r), r.cadence or "weekly", bool(r.mailed)) for r in rows]
