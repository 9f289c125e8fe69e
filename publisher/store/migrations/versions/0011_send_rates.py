"""The fleet's send rate: `send_rates`, one token bucket per transport, which every sender on a
PostgreSQL store takes its tokens from (store/send_rates.py), so `[digest] messages_per_second`
is the rate of all workers together. SQLite stores get the table and leave it empty: they send
from one process, paced in it.

Revision ID: 0011_send_rates
Revises: 0010_fan_out
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_send_rates"
down_revision = "0010_fan_out"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_rates",
        sa.Column("transport", sa.String(40), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("refilled_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("transport", name="pk_send_rates"),
    )


def downgrade() -> None:
    op.drop_table("send_rates")
