"""WebSub's memory in the `meta` table: the feed URLs each hub still has to be told about, and
how its last pings went (publisher.websub sends them).

One row per (hub, feed URL) waiting, so a build adding URLs and a ping taking them away never
write the same row: a URL published again while a ping carrying it is in flight gets a new
token, and the ping's delivery removes only the rows whose token it sent. One row per hub for
its state (attempts, the next try, the last error and success), written by the pings alone.
Nothing here is lost when a process stops: a URL stays waiting until a hub took it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.engine import Engine

from .schema import meta_table

PENDING_PREFIX = "websub:pending:"  # + hub hash + ":" + URL hash; value {"hub", "url", "token"}
HUB_PREFIX = "websub:hub:"  # + hub hash; value: HubState as JSON
DELETE_BATCH = 100  # rows one DELETE names at most


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Waiting:
    """A feed URL a hub has not taken yet; `token` changes each time it is published."""

    hub: str
    url: str
    token: str

    @property
    def key(self) -> str:
        return f"{PENDING_PREFIX}{_hash(self.hub)}:{_hash(self.url)}"


@dataclass(frozen=True, slots=True)
class HubState:
    """How a hub's pings went: `attempts` failed in a row, when the next may go, the last error
    (`refused`: the hub said no, a 4xx; the URLs were dropped) and the last ping it took."""

    hub: str
    attempts: int = 0
    next_try: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    refused: bool = False
    last_success: datetime | None = None

    @property
    def failing(self) -> bool:
        """The last ping failed (none has succeeded since)."""
        return self.last_error_at is not None and (self.last_success is None or self.last_success < self.last_error_at)

    def as_json(self) -> str:
        def moment(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return json.dumps({"hub": self.hub, "attempts": self.attempts, "next_try": moment(self.next_try),
                           "last_error": self.last_error, "last_error_at": moment(self.last_error_at),
                           "refused": self.refused, "last_success": moment(self.last_success)})  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> HubState:
        raw = json.loads(text)

        def moment(key: str) -> datetime | None:
            return datetime.fromisoformat(raw[key]) if raw.get(key) else None

        return cls(raw["hub"], int(raw.get("attempts", 0)), moment("next_try"), raw.get("last_error"),
                   moment("last_error_at"), bool(raw.get("refused")), moment("last_success"))  # fmt: skip


class WebSubStore:
    """The Store's part that remembers WebSub pings (a mixin over the Store's engine)."""

    engine: Engine

    def publish_to_hubs(self, hubs: Sequence[str], urls: Iterable[str]) -> None:
        """Each of `urls` waits for each of `hubs` (a fresh token each); hubs no longer in
        `hubs` are forgotten with what waited for them."""
        urls = sorted(set(urls))
        rows = [Waiting(hub, url, uuid.uuid4().hex) for hub in hubs for url in urls]
        kept = [_hash(hub) for hub in hubs]
        m = meta_table.c
        with self.engine.begin() as conn:
            for prefix in (PENDING_PREFIX, HUB_PREFIX):
                others = and_(m.key.startswith(prefix, autoescape=True),
                              *(~m.key.startswith(prefix + h, autoescape=True) for h in kept))  # fmt: skip
                conn.execute(delete(meta_table).where(others))
            if rows:
                conn.execute(delete(meta_table).where(m.key.in_([row.key for row in rows])))
                conn.execute(insert(meta_table), [{"key": row.key, "value": _waiting_json(row)} for row in rows])

    def waiting_for_hubs(self) -> dict[str, list[Waiting]]:
        """Every URL waiting, by hub, in URL order."""
        m = meta_table.c
        with self.engine.connect() as conn:
            values = conn.execute(select(m.value).where(m.key.startswith(PENDING_PREFIX, autoescape=True))).scalars()
            found = [Waiting(**json.loads(value)) for value in values]
        by_hub: dict[str, list[Waiting]] = {}
        for waiting in sorted(found, key=lambda w: (w.hub, w.url)):
            by_hub.setdefault(waiting.hub, []).append(waiting)
        return by_hub

    def delivered_to_hub(self, taken: Sequence[Waiting]) -> None:
        """The hub took these: their rows go, unless published again since (another token)."""
        if not taken:
            return
        m = meta_table.c
        sent = [and_(m.key == w.key, m.value == _waiting_json(w)) for w in taken]
        with self.engine.begin() as conn:  # in parts: SQLite refuses an expression 1,000 deep
            for start in range(0, len(sent), DELETE_BATCH):
                conn.execute(delete(meta_table).where(or_(*sent[start : start + DELETE_BATCH])))

    def hub_state(self, hub: str) -> HubState:
        with self.engine.connect() as conn:
            value = conn.execute(select(meta_table.c.value).where(meta_table.c.key == HUB_PREFIX + _hash(hub)))
            text = value.scalar_one_or_none()
        return HubState.from_json(text) if text else HubState(hub)

    def set_hub_state(self, state: HubState) -> None:
        key = HUB_PREFIX + _hash(state.hub)
        with self.engine.begin() as conn:
            conn.execute(delete(meta_table).where(meta_table.c.key == key))
            conn.execute(insert(meta_table).values(key=key, value=state.as_json()))


def _waiting_json(waiting: Waiting) -> str:
    return json.dumps({"hub": waiting.hub, "url": waiting.url, "token": waiting.token}, sort_keys=True)
