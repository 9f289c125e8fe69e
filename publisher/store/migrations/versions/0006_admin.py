"""The operator's console: `admin_accounts` (roles, argon2 password hashes, the TOTP second
factor, lockout, the open set-password link), `admin_recovery_codes`, `admin_sessions` (signed-in
browsers, by the hash of their cookie), `admin_login_failures` (the sign-in rate limits) and
`admin_audit` (every change, who, what, when, from where). New tables only.

Revision ID: 0006_admin
Revises: 0005_source_state
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_admin"
down_revision = "0005_source_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("totp_secret", sa.String(64), nullable=True),
        sa.Column("totp_enabled", sa.Boolean(), nullable=False),
        sa.Column("totp_last_step", sa.Integer(), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("password_token_hash", sa.String(64), nullable=True),
        sa.Column("password_token_expires", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin_accounts"),
        sa.UniqueConstraint("email", name="uq_admin_accounts_email"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "admin_recovery_codes",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["admin_accounts.id"], name="fk_admin_recovery_codes_account_id_admin_accounts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "code_hash", name="pk_admin_recovery_codes"),
    )  # fmt: skip
    op.create_table(
        "admin_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("address", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["admin_accounts.id"], name="fk_admin_sessions_account_id_admin_accounts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id_hash", name="pk_admin_sessions"),
    )  # fmt: skip
    op.create_index("ix_admin_sessions_account_id", "admin_sessions", ["account_id"])
    op.create_table(
        "admin_login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("network", sa.String(100), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin_login_failures"),
    )
    op.create_index("ix_admin_login_failures_email", "admin_login_failures", ["email", "at"])
    op.create_index("ix_admin_login_failures_network", "admin_login_failures", ["network", "at"])
    op.create_table(
        "admin_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("address", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin_audit"),
    )
    op.create_index("ix_admin_audit_at", "admin_audit", ["at"])


def downgrade() -> None:
    op.drop_table("admin_audit")
    op.drop_table("admin_login_failures")
    op.drop_table("admin_sessions")
    op.drop_table("admin_recovery_codes")
    op.drop_table("admin_accounts")
