"""What `/metrics` and the alerts read and keep: the store's counts at a scrape, a digest's
bounce and complaint rates, and the alerts raised (one meta row each, so two processes never
send the same alert twice)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import delete, distinct, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ..metrics import StoreCounts
from ..model import SubscriberStatus
from .schema import (
    articles_table,
    deliveries_table,
    digests_table,
    mail_events_table,
    meta_table,
    source_health_table,
    subscribers_table,
    suppressions_table,
)

UNFINISHED = ("planning", "sending", "paused")  # a digest's states before done: a gauge each, 0 too
ALERT_PREFIX = "alert:"  # meta rows of the alerts raised, by a hash of their condition


@dataclass(frozen=True, slots=True)
class DigestRates:
    """A digest's deliveries that went out, and those a hard bounce or a complaint names."""

    key: str
    sent: int  # sent or uncertain
    bounced: int  # deliveries with a hard bounce
    complained: int  # deliveries with a complaint


def alert_key(condition: str) -> str:
    """The meta key of a condition (a source's name and part may be long: hashed)."""
    return ALERT_PREFIX + hashlib.sha256(condition.encode()).hexdigest()[:40]


class WatchStore:
    """The Store's counts for metrics and its memory of alerts raised."""

    engine: Engine

    def store_counts(self) -> StoreCounts:
        s, a, d, h = subscribers_table.c, articles_table.c, digests_table.c, source_health_table.c
        unfinished = d.status.in_(UNFINISHED)
        with self.engine.connect() as conn:
            subscribers = conn.execute(select(s.status, func.count()).group_by(s.status)).all()
            articles = {bool(w): n for w, n in conn.execute(select(a.withdrawn, func.count()).group_by(a.withdrawn))}
            digests = conn.execute(select(d.status, func.count()).where(unfinished).group_by(d.status)).all()
            suppressed = conn.execute(
                select(func.count()).select_from(suppressions_table).where(suppressions_table.c.lifted_at.is_(None))
            ).scalar_one()
            failing = conn.execute(select(h.source, h.scope, h.failures).where(h.failures > 0)).all()
        return StoreCounts(
            subscribers=dict.fromkeys((e.value for e in SubscriberStatus), 0) | {str(k): n for k, n in subscribers},
            articles={"live": articles.get(False, 0), "withdrawn": articles.get(True, 0)},
            unfinished_digests=dict.fromkeys(UNFINISHED, 0) | {str(status): count for status, count in digests},
            suppressed=suppressed,
            failing_parts=sorted((row.source, row.scope, row.failures) for row in failing),
        )

    def digest_rates(self, digest_id: int) -> DigestRates:
        x, e = deliveries_table.c, mail_events_table.c
        with self.engine.connect() as conn:
            key = conn.execute(select(digests_table.c.key).where(digests_table.c.id == digest_id)).scalar_one()
            sent = conn.execute(
                select(func.count()).where(x.digest_id == digest_id, x.status.in_(("sent", "uncertain")))
            ).scalar_one()
            named = select(e.kind, func.count(distinct(e.delivery_id))).where(
                e.digest_id == digest_id, e.delivery_id.is_not(None), e.kind.in_(("hard", "complaint"))
            )
            kinds = {str(kind): count for kind, count in conn.execute(named.group_by(e.kind))}
        return DigestRates(key, sent, kinds.get("hard", 0), kinds.get("complaint", 0))

    # --- alerts raised --------------------------------------------------------------------

    def raise_alert(self, condition: str, note: str) -> bool:
        """Keep `condition` as raised; False when it already was (its alert went out before)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(meta_table).values(key=alert_key(condition), value=note))
        except IntegrityError:
            return False
        return True

    def clear_alert(self, condition: str) -> bool:
        """Forget `condition`; True when it was raised."""
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(meta_table).where(meta_table.c.key == alert_key(condition))).rowcount)

    def alert_raised(self, condition: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(select(meta_table.c.key).where(meta_table.c.key == alert_key(condition))).first()
        return found is not None
