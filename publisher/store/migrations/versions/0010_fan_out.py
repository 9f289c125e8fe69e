"""Digest fan-out: `deliveries.chunk` (the chunk a delivery was planned in when fan-out is on;
one Procrastinate job sends a chunk) with its index, and, on PostgreSQL, Procrastinate's job
queue (its tables, types and functions, store/job_queue.py) in the store's own database, so a
chunk's delivery rows and its job are written in one transaction. SQLite stores get the column
only: they send in one process.

Revision ID: 0010_fan_out
Revises: 0009_renditions
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from publisher.store.job_queue import create_job_queue, drop_job_queue

revision = "0010_fan_out"
down_revision = "0009_renditions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("chunk", sa.Integer(), nullable=True))
    op.create_index("ix_deliveries_chunk", "deliveries", ["digest_id", "chunk"])
    create_job_queue(op.get_bind())


def downgrade() -> None:
    drop_job_queue(op.get_bind())
    op.drop_index("ix_deliveries_chunk", "deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("chunk")
