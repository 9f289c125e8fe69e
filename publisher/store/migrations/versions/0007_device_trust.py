"""The console's trusted browsers: `admin_accounts.trust_generation`, which the trusted-browser
cookie is signed over (one more each time all of an account's sessions end, so ending them also
ends every browser's trust, and a routine rehash of the password no longer does), and
`admin_login_failures.device` (the SHA-256 of the cookie a failed sign-in carried: a trusted
browser's own wrong passwords use up its pass through the lockout). New columns only; cookies
made before the upgrade pass nothing until their browser signs in again.

Revision ID: 0007_device_trust
Revises: 0006_admin
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_device_trust"
down_revision = "0006_admin"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("admin_accounts", sa.Column("trust_generation", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("admin_login_failures", sa.Column("device", sa.String(64), nullable=True))
    op.create_index("ix_admin_login_failures_device", "admin_login_failures", ["device", "at"])


def downgrade() -> None:
    op.drop_index("ix_admin_login_failures_device", "admin_login_failures")
    with op.batch_alter_table("admin_login_failures") as batch:
        batch.drop_column("device")
    with op.batch_alter_table("admin_accounts") as batch:
        batch.drop_column("trust_generation")
