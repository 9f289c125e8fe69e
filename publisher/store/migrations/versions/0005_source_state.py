"""The sources' own state: `source_health` (each source's and each part's last success and last
error, for `publisher status` and `/healthz`), `source_failures` (items that failed, waiting
with backoff) and `http_validators` (the ETag and Last-Modified of the pages web sources read).

The validators were kept in `meta` under `http:<source>:<url>`, whose key of 100 characters
could not hold a longer URL on PostgreSQL: those rows are moved to `http_validators`. The key
grows to 300 characters for `reading-signature:<source>`, which a source named after a long
feed URL (up to 200 characters) overflowed on PostgreSQL too; SQLite rebuilds the small table.

Revision ID: 0005_source_state
Revises: 0004_deliverability
Create Date: 2026-12-03
"""

from __future__ import annotations

import json
import re

import sqlalchemy as sa
from alembic import op

revision = "0005_source_state"
down_revision = "0004_deliverability"
branch_labels = None
depends_on = None

# The naming convention as 0002 applied it, for SQLite's rebuild of `meta`.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# How 0.2.0 keyed a validator in `meta` (sources/http.py's Validators then).
_META_KEY = re.compile(r"http:(.*?):(https?://.+)", re.S)
_META = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.Text))


def upgrade() -> None:
    op.create_table(
        "source_health",
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("scope", sa.String(1000), nullable=False),
        sa.Column("last_success", sa.DateTime(), nullable=True),
        sa.Column("items", sa.Integer(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_url", sa.Text(), nullable=True),
        sa.Column("last_hint", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", "scope", name="pk_source_health"),
    )
    op.create_table(
        "source_failures",
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("key", sa.String(1000), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failed", sa.DateTime(), nullable=False),
        sa.Column("last_failed", sa.DateTime(), nullable=False),
        sa.Column("next_try", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("source", "key", name="pk_source_failures"),
    )
    validators = op.create_table(
        "http_validators",
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("etag", sa.Text(), nullable=True),
        sa.Column("last_modified", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("source", "url", name="pk_http_validators"),
    )
    assert validators is not None
    bind = op.get_bind()
    moved = bind.execute(sa.select(_META.c.key, _META.c.value).where(_META.c.key.like("http:%"))).all()
    rows = []
    for key, value in moved:
        found = _META_KEY.fullmatch(key)
        try:
            kept = json.loads(value)
        except ValueError:
            continue  # unreadable: the page is read in full once, and its validators kept anew
        if found and isinstance(kept, dict):
            source, url = found.groups()
            etag, modified = kept.get("ETag"), kept.get("Last-Modified")
            if isinstance(etag, str) or isinstance(modified, str):
                rows.append({"source": source, "url": url, "etag": etag, "last_modified": modified})
    if rows:
        op.bulk_insert(validators, rows)
    if moved:
        bind.execute(sa.delete(_META).where(_META.c.key.like("http:%")))
    with op.batch_alter_table("meta", naming_convention=NAMING) as batch:
        batch.alter_column("key", existing_type=sa.String(100), type_=sa.String(300), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("meta", naming_convention=NAMING) as batch:
        batch.alter_column("key", existing_type=sa.String(300), type_=sa.String(100), existing_nullable=False)
    op.drop_table("http_validators")
    op.drop_table("source_failures")
    op.drop_table("source_health")
