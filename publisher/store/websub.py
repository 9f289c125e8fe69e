"""WebSub's memory in the `meta` table: the feed URLs each hub still has to be told about, and
how its last pings went (publisher.websub sends them).

One row per (hub, feed URL) waiting, so a build adding URLs and a ping taking them away never
write the same row: a URL published again while a ping carrying it is in flight gets a new
token, and the ping's delivery removes only the rows whose token it sent. One row per hub for
its state (attempts, the next try, the last error and success), written by the pings alone.
Nothing here is lost when a process stops: a URL stays waiting until a hub took it.

Two processes on one store (`publisher run` and a `publisher build`) ping a hub one at a time:
a process claims the hub first (`claim_hub`: `in_flight_until` set in its state row by an
UPDATE that names the value it read, so of two claiming at once one wins), reads what waits
only then, and lets the claim go with the hub's new state (`release_hub`). A claim left by a
process that died ends at its `in_flight_until`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Executable

from .locks import in_key_order
from .schema import meta_table, upsert_into

PENDING_PREFIX = "websub:pending:"  # + hub hash + ":" + URL hash; value {"hub", "url", "token"}
HUB_PREFIX = "websub:hub:"  # + hub hash; value: HubState as JSON
DELETE_BATCH = 100  # rows one DELETE names at most
UPSERT_BATCH = 500  # rows one INSERT holds at most (SQLite takes 32,766 parameters)


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
    (`refused`: the hub said no, a 4xx; the URLs were dropped), the last ping it took, and
    until when a process pinging it holds it (`in_flight_until`)."""

    hub: str
    attempts: int = 0
    next_try: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    refused: bool = False
    last_success: datetime | None = None
    in_flight_until: datetime | None = None

    def free(self, now: datetime) -> bool:
        """Its next try is due and no process holds it."""
        return all(moment is None or moment <= now for moment in (self.next_try, self.in_flight_until))

    @property
    def failing(self) -> bool:
        """The last ping failed (none has succeeded since)."""
        return self.last_error_at is not None and (self.last_success is None or self.last_success < self.last_error_at)

    def as_json(self) -> str:
        def moment(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return json.dumps({"hub": self.hub, "attempts": self.attempts, "next_try": moment(self.next_try),
                           "last_error": self.last_error, "last_error_at": moment(self.last_error_at),
                           "refused": self.refused, "last_success": moment(self.last_success),
                           "in_flight_until": moment(self.in_flight_until)})  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> HubState:
        raw = json.loads(text)

        def moment(key: str) -> datetime | None:
            return datetime.fromisoformat(raw[key]) if raw.get(key) else None

        return cls(raw["hub"], int(raw.get("attempts", 0)), moment("next_try"), raw.get("last_error"),
                   moment("last_error_at"), bool(raw.get("refused")), moment("last_success"),
                   moment("in_flight_until"))  # fmt: skip


class WebSubStore:
    """The Store's part that remembers WebSub pings (a mixin over the Store's engine)."""

    engine: Engine

    def publish_to_hubs(self, hubs: Sequence[str], urls: Iterable[str]) -> None:
        """Each of `urls` waits for each of `hubs` (a fresh token each); hubs no longer in
        `hubs` are forgotten with what waited for them."""
        urls = sorted(set(urls))
        rows = sorted((Waiting(hub, url, uuid.uuid4().hex) for hub in hubs for url in urls), key=lambda w: w.key)
        kept = [_hash(hub) for hub in hubs]
        m = meta_table.c
        with self.engine.begin() as conn:
            for prefix in (PENDING_PREFIX, HUB_PREFIX):
                others = and_(m.key.startswith(prefix, autoescape=True),
                              *(~m.key.startswith(prefix + h, autoescape=True) for h in kept))  # fmt: skip
                conn.execute(delete(meta_table).where(in_key_order(conn, m.key, others)))
            for start in range(0, len(rows), UPSERT_BATCH):  # one statement: no DELETE then INSERT to race
                values = [{"key": row.key, "value": _waiting_json(row)} for row in rows[start : start + UPSERT_BATCH]]
                conn.execute(_meta_upsert(conn, values))

    def waiting_for(self, hub: str) -> list[Waiting]:
        """The URLs waiting for `hub`, in URL order."""
        m = meta_table.c
        prefix = f"{PENDING_PREFIX}{_hash(hub)}:"
        with self.engine.connect() as conn:
            values = conn.execute(select(m.value).where(m.key.startswith(prefix, autoescape=True))).scalars()
            return sorted((Waiting(**json.loads(value)) for value in values), key=lambda w: w.url)

    def claim_hub(self, hub: str, now: datetime, until: datetime) -> HubState | None:
        """The hub's state, now held by this process until `until`; None when its next try is
        not due or another process holds it (the one whose UPDATE came first)."""
        key = HUB_PREFIX + _hash(hub)
        with self.engine.connect() as conn:
            text = conn.execute(select(meta_table.c.value).where(meta_table.c.key == key)).scalar_one_or_none()
        state = HubState.from_json(text) if text else HubState(hub)
        if not state.free(now):
            return None
        claimed = replace(state, in_flight_until=until)
        return claimed if self._swap_hub_state(key, text, claimed) else None

    def release_hub(self, hub: str, change: Callable[[HubState], HubState] = lambda state: state) -> HubState:
        """Let this process's claim on `hub` go, its state as `change` makes it of the state
        read now (not of the one claimed: whatever else wrote it meanwhile stands)."""
        key = HUB_PREFIX + _hash(hub)
        while True:
            with self.engine.connect() as conn:
                text = conn.execute(select(meta_table.c.value).where(meta_table.c.key == key)).scalar_one_or_none()
            state = replace(change(HubState.from_json(text) if text else HubState(hub)), in_flight_until=None)
            if self._swap_hub_state(key, text, state):
                return state

    def _swap_hub_state(self, key: str, was: str | None, state: HubState) -> bool:
        """Write `state` if the row still holds `was` (None: no row); False if it changed."""
        m = meta_table.c
        if was is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(meta_table).values(key=key, value=state.as_json()))
            except IntegrityError:
                return False  # made meanwhile
            return True
        with self.engine.begin() as conn:
            changed = update(meta_table).where(m.key == key, m.value == was).values(value=state.as_json())
            return conn.execute(changed).rowcount == 1

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
        # In key order, part after part, as a build writes them: the two wait in turn
        sent = [and_(m.key == w.key, m.value == _waiting_json(w)) for w in sorted(taken, key=lambda w: w.key)]
        with self.engine.begin() as conn:  # in parts: SQLite refuses an expression 1,000 deep
            for start in range(0, len(sent), DELETE_BATCH):
                part = or_(*sent[start : start + DELETE_BATCH])
                conn.execute(delete(meta_table).where(in_key_order(conn, m.key, part)))

    def hub_state(self, hub: str) -> HubState:
        with self.engine.connect() as conn:
            value = conn.execute(select(meta_table.c.value).where(meta_table.c.key == HUB_PREFIX + _hash(hub)))
            text = value.scalar_one_or_none()
        return HubState.from_json(text) if text else HubState(hub)

    def set_hub_state(self, state: HubState) -> None:
        with self.engine.begin() as conn:
            conn.execute(_meta_upsert(conn, [{"key": HUB_PREFIX + _hash(state.hub), "value": state.as_json()}]))


def _waiting_json(waiting: Waiting) -> str:
    return json.dumps({"hub": waiting.hub, "url": waiting.url, "token": waiting.token}, sort_keys=True)


def _meta_upsert(conn: Connection, values: list[dict[str, str]]) -> Executable:
    """INSERT these `meta` rows, a key already there taking the new value (two processes writing
    one key at once: the later value stands, neither fails)."""
    added = upsert_into(conn, meta_table)
    added = added.values(values)
    return added.on_conflict_do_update(index_elements=[meta_table.c.key], set_={"value": added.excluded.value})
