"""Bodies rendered when shown: `articles.content_html` and `.summary` move to
`article_renditions` (one row per article whose body has been rendered, valid while its
`body_hash` is the article's), and `articles.body_hash` names the rendition an article needs.

Every stored article keeps its rendition: its body hash becomes its old content hash, so the
feeds are written from the same HTML until the article's file changes. Content hashes are now
of the body as the source gave it (normalize.content_hash); an article still holding the old
kind (body hash equal to content hash) is compared by it when it is next read, its body rendered
for that once (source_pass.SourcePass._compare_before_0009), so an unchanged one keeps its updated
stamp.

Revision ID: 0009_renditions
Revises: 0008_readers_choices
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_renditions"
down_revision = "0008_readers_choices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "article_renditions",
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("content_html", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"], ["articles.id"], name="fk_article_renditions_article_id_articles", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("article_id", name="pk_article_renditions"),
    )
    op.execute(
        "INSERT INTO article_renditions (article_id, body_hash, summary, content_html)"
        " SELECT id, content_hash, summary, content_html FROM articles"
    )
    with op.batch_alter_table("articles") as batch:
        batch.add_column(sa.Column("body_hash", sa.String(64), nullable=False, server_default=""))
    op.execute("UPDATE articles SET body_hash = content_hash")
    with op.batch_alter_table("articles") as batch:
        batch.alter_column("body_hash", server_default=None)
        batch.drop_column("summary")
        batch.drop_column("content_html")


def downgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.add_column(sa.Column("summary", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("content_html", sa.Text(), nullable=False, server_default=""))
    op.execute(
        "UPDATE articles SET summary = r.summary, content_html = r.content_html"
        " FROM article_renditions AS r WHERE r.article_id = articles.id AND r.body_hash = articles.body_hash"
    )
    # An article never rendered has no body in the older schema: its file is read again.
    op.execute(
        "UPDATE articles SET fingerprint = NULL WHERE NOT EXISTS (SELECT 1 FROM article_renditions AS r"
        " WHERE r.article_id = articles.id AND r.body_hash = articles.body_hash)"
    )
    op.execute("DELETE FROM folder_digests")
    with op.batch_alter_table("articles") as batch:
        batch.drop_column("body_hash")
    op.drop_table("article_renditions")
