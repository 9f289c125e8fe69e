"""The deliverability loop's tables: `mail_events` (what providers and bounce mailboxes said,
each kept once with its raw reason and delivery) and `suppressions` (the addresses no digest
goes to), and indexes on `deliveries.message_id` and `deliveries.provider_id`, by which an
event finds its delivery. New tables and indexes only: nothing existing changes.

Revision ID: 0004_deliverability
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_deliverability"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_message_id", "deliveries", ["message_id"])
    op.create_index("ix_deliveries_provider_id", "deliveries", ["provider_id"])
    op.create_table(
        "mail_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("occurred", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("digest_id", sa.Integer(), nullable=True),
        sa.Column("linked_by", sa.String(20), nullable=False),
        sa.Column("event_id", sa.String(300), nullable=True),
        sa.Column("outcome", sa.String(200), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name="fk_mail_events_delivery_id_deliveries", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["digest_id"], ["digests.id"], name="fk_mail_events_digest_id_digests", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_mail_events"),
        sa.UniqueConstraint("source", "event_id", name="uq_mail_events_source_event_id"),
    )
    op.create_index("ix_mail_events_count", "mail_events", ["email_key", "kind", "occurred"])
    op.create_index("ix_mail_events_delivery_id", "mail_events", ["delivery_id"])
    op.create_table(
        "suppressions",
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.Column("mail_event_id", sa.Integer(), nullable=True),
        sa.Column("lifted_at", sa.DateTime(), nullable=True),
        sa.Column("lifted_by", sa.String(100), nullable=True),
        sa.ForeignKeyConstraint(
            ["mail_event_id"], ["mail_events.id"], name="fk_suppressions_mail_event_id_mail_events", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("email_key", name="pk_suppressions"),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_table("mail_events")
    op.drop_index("ix_deliveries_provider_id", "deliveries")
    op.drop_index("ix_deliveries_message_id", "deliveries")
