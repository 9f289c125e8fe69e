"""The baseline: the schema of publisher 0.1.0, written out as it was, unnamed constraints and all.

A store made by 0.1.0 has these tables and no alembic_version; `publisher db upgrade` checks
them and stamps it at this revision. Never change this file: it describes stores that exist.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "categories",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("slug", sa.String(100), nullable=False, unique=True),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "articles",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("key", sa.String(1000), nullable=False),
        sa.Column("fingerprint", sa.String(100)),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
        sa.Column("explicit_id", sa.String(500)),
        sa.Column("guid", sa.String(600), nullable=False, unique=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("published", sa.DateTime(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("url", sa.Text()),
        sa.Column("author", sa.Text()),
        sa.Column("image", sa.Text()),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("content_html", sa.Text(), nullable=False),
        sa.UniqueConstraint("source", "key", name="uq_articles_source_key"),
    )
    op.create_index("ix_articles_published", "articles", ["published"])
    op.create_index("ix_articles_state", "articles", ["source", "key", "fingerprint", "withdrawn"])
    op.create_table(
        "article_categories",
        sa.Column("article_id", sa.Integer(), sa.ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("category_slug", sa.String(100), primary_key=True),
        sa.Column("published", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_article_categories_feed", "article_categories", ["category_slug", "published", "article_id"])
    op.create_table("dirty_feeds", sa.Column("scope", sa.String(100), primary_key=True))
    op.create_table(
        "folder_digests",
        sa.Column("source", sa.String(200), primary_key=True),
        sa.Column("folder", sa.String(1000), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
    )
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_at", sa.DateTime(), nullable=False),
        sa.Column("status_via", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "digests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(100), nullable=False, unique=True),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("window_end", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("digest_id", sa.Integer(), sa.ForeignKey("digests.id", ondelete="CASCADE"), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("message_id", sa.String(300), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("provider_id", sa.String(300)),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("digest_id", "email_key", name="uq_deliveries_digest_subscriber"),
    )
    op.create_index("ix_deliveries_status", "deliveries", ["digest_id", "status"])
    op.create_table(
        "meta",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for table in ("meta", "deliveries", "digests", "subscribers", "folder_digests", "dirty_feeds",
                  "article_categories", "articles", "categories"):  # fmt: skip
        op.drop_table(table)
