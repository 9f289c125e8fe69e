"""Spent form tokens: the embeddable sign-up form's tokens (web/embed.py) are good for one
sign-up each. The table keeps the SHA-256 of every token spent until the token expires, so a
replayed form is refused in every process sharing the store, and the table never outgrows the
tokens still alive."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .schema import naive_utc, used_form_tokens_table


def token_digest(token: str) -> str:
    """What the store keeps of a token: its SHA-256, hex (never the token itself)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class FormTokenStore:
    """The Store's spent form tokens (`used_form_tokens`)."""

    engine: Engine

    def spend_form_token(self, token: str, expires: datetime, now: datetime) -> bool:
        """Mark `token` (valid until `expires`) spent; False when it was spent before (a replay).
        Rows of tokens expired by `now` go first: an expired token is refused by its own date."""
        t = used_form_tokens_table.c
        with self.engine.begin() as conn:
            conn.execute(delete(used_form_tokens_table).where(t.expires < naive_utc(now)))
        try:
            with self.engine.begin() as conn:
                row = {"digest": token_digest(token), "expires": naive_utc(expires)}
                conn.execute(insert(used_form_tokens_table).values(**row))
        except IntegrityError:
            return False
        return True
