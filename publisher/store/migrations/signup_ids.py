"""Dropping columns of `signup_requests` in a downgrade without ever giving an id again.

A confirmation link names its request by id, so ids are never reused (the table is SQLite's
AUTOINCREMENT, a sequence on PostgreSQL). SQLite drops a column by copying the table: the
copy must be AUTOINCREMENT too, and start after the highest id ever given, which the copied
rows alone do not tell once the newest requests were deleted or pruned."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

_SEQUENCE = sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'signup_requests'")


def drop_signup_request_columns(*names: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        for name in names:
            op.drop_column("signup_requests", name)
        return
    given = bind.execute(_SEQUENCE).scalar()
    with op.batch_alter_table("signup_requests", table_kwargs={"sqlite_autoincrement": True}) as batch:
        for name in names:
            batch.drop_column(name)
    if given is not None:
        op.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'signup_requests'"))
        op.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('signup_requests', :seq)").bindparams(seq=given)
        )
