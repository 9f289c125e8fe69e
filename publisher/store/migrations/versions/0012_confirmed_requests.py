"""Confirmation links keep working until they expire: `signup_requests.confirmed_at`, when the
request's address was confirmed (through its own link or another request's). Such a request
confirms nothing any more: its link shows the reader that they are subscribed, so a second
click, a reload, a click on another web process or on the link of an earlier sign-up mail is
no longer told "link not valid". It is pruned with the others after the link's lifetime.
Requests made before this revision are all unconfirmed: confirmed ones were deleted then.

Revision ID: 0012_confirmed_requests
Revises: 0011_send_rates
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from publisher.store.migrations.signup_ids import drop_signup_request_columns

revision = "0012_confirmed_requests"
down_revision = "0011_send_rates"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("signup_requests", sa.Column("confirmed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    # The code before this revision would let such a link confirm again, with the request's choices.
    op.execute(sa.text("DELETE FROM signup_requests WHERE confirmed_at IS NOT NULL"))
    drop_signup_request_columns("confirmed_at")
