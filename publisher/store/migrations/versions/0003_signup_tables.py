"""The subscribe form's tables: `signup_events` (the rate limits' counts, shared by every
process and kept over a restart) and `signup_requests` (what a sign-up asked for, unconfirmed
until its link is followed). New tables only: nothing existing changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signup_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("key", sa.String(320), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_signup_events"),
    )
    op.create_index("ix_signup_events_lookup", "signup_events", ["scope", "key", "at"])
    op.create_index("ix_signup_events_at", "signup_events", ["at"])
    op.create_table(
        "signup_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_signup_requests"),
        sqlite_autoincrement=True,  # ids are never reused: an old link must not name a new request
    )
    op.create_index("ix_signup_requests_email_key", "signup_requests", ["email_key"])
    op.create_index("ix_signup_requests_created_at", "signup_requests", ["created_at"])


def downgrade() -> None:
    op.drop_table("signup_requests")
    op.drop_table("signup_events")
