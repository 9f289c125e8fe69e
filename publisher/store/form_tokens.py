"""Spent one-time keys: the embeddable sign-up form's tokens (web/embed.py), good for one
sign-up each, and the mail providers' webhook requests (web/hooks.py, each accepted once). The
table keeps the SHA-256 of every key spent until it expires, so a replay is refused in every
process sharing the store, and the table never outgrows the keys still alive."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .schema import naive_utc, used_form_tokens_table


def token_digest(token: str) -> str:
    """What the store keeps of a key: its SHA-256, hex (never the key itself)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class FormTokenStore:
    """The Store's spent one-time keys (`used_form_tokens`)."""

    engine: Engine

    def spend_once(self, key: str, expires: datetime, now: datetime) -> bool:
        """Mark `key` spent until `expires`; False when it is spent already (in any process).
        Rows of keys expired by `now` go first: past its expiry a key is refused by its own date
        (a stale token, a stale webhook), so its row is no longer needed."""
        t = used_form_tokens_table.c
        with self.engine.begin() as conn:
            conn.execute(delete(used_form_tokens_table).where(t.expires < naive_utc(now)))
        try:
            with self.engine.begin() as conn:
                row = {"digest": token_digest(key), "expires": naive_utc(expires)}
                conn.execute(insert(used_form_tokens_table).values(**row))
        except IntegrityError:
            return False
        return True

    def unspend(self, key: str) -> None:
        """`key` is not spent after all (a webhook whose events could not be recorded: the
        provider's retry must pass)."""
        with self.engine.begin() as conn:
            conn.execute(delete(used_form_tokens_table).where(used_form_tokens_table.c.digest == token_digest(key)))
