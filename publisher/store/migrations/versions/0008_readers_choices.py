"""What readers choose and what they agreed to: `subscribers.script` and `.cadence` (简体 or
繁體, weekly or daily; every reader so far keeps the site's script and the weekly digest), the
proof of consent (`consent_text`, `consent_at`, `consent_network`, empty for readers who signed
up before: nothing was recorded then, and nothing is made up), the same choices on
`signup_requests` until the link is followed, `digests.cadence` (every digest so far was the
weekly one), `digests.archive_slug` (the public page's address, fixed once given; digests
sent before have none until the archive names them), and `used_form_tokens`, the embeddable form's tokens already spent.

Revision ID: 0008_readers_choices
Revises: 0007_device_trust
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from publisher.store.migrations.signup_ids import drop_signup_request_columns

revision = "0008_readers_choices"
down_revision = "0007_device_trust"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscribers", sa.Column("script", sa.String(20), nullable=True))
    op.add_column("subscribers", sa.Column("cadence", sa.String(20), nullable=False, server_default="weekly"))
    op.add_column("subscribers", sa.Column("consent_text", sa.Text(), nullable=True))
    op.add_column("subscribers", sa.Column("consent_at", sa.DateTime(), nullable=True))
    op.add_column("subscribers", sa.Column("consent_network", sa.String(100), nullable=True))
    op.add_column("signup_requests", sa.Column("script", sa.String(20), nullable=True))
    op.add_column("signup_requests", sa.Column("cadence", sa.String(20), nullable=False, server_default="weekly"))
    op.add_column("signup_requests", sa.Column("consent_text", sa.Text(), nullable=True))
    op.add_column("digests", sa.Column("cadence", sa.String(20), nullable=False, server_default="weekly"))
    with op.batch_alter_table("digests") as batch:
        batch.add_column(sa.Column("archive_slug", sa.String(100), nullable=True))
        batch.create_unique_constraint("uq_digests_archive_slug", ["archive_slug"])
    op.create_table(
        "used_form_tokens",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("expires", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_used_form_tokens"),
    )
    op.create_index("ix_used_form_tokens_expires", "used_form_tokens", ["expires"])


def downgrade() -> None:
    op.drop_index("ix_used_form_tokens_expires", "used_form_tokens")
    op.drop_table("used_form_tokens")
    with op.batch_alter_table("digests") as batch:
        batch.drop_constraint("uq_digests_archive_slug", type_="unique")
        batch.drop_column("archive_slug")
        batch.drop_column("cadence")
    drop_signup_request_columns("consent_text", "cadence", "script")
    with op.batch_alter_table("subscribers") as batch:
        for name in ("consent_network", "consent_at", "consent_text", "cadence", "script"):
            batch.drop_column(name)
