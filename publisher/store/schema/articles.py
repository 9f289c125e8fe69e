"""The tables of what the feeds are made of: categories, articles, their renditions and
category rows, the feeds to write again, and what the sources' reads left behind (folder
digests, health, failed items, HTTP validators).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from .base import metadata

categories_table = Table(
    "categories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("slug", String(100), nullable=False, unique=True),
    Column("first_seen", DateTime, nullable=False),
)

articles_table = Table(
    "articles",
    metadata,
    Column("id", Integer, primary_key=True),
    # Small bookkeeping columns first, the article's text last.
    Column("source", String(200), nullable=False),
    Column("key", String(1000), nullable=False),
    Column("fingerprint", String(100)),
    Column("withdrawn", Boolean, nullable=False, default=False),
    Column("explicit_id", String(500)),
    Column("guid", String(600), nullable=False, unique=True),
    Column("content_hash", String(64), nullable=False),
    Column("body_hash", String(64), nullable=False),  # its rendition's key (model.Article.body_hash)
    Column("published", DateTime, nullable=False),
    Column("updated", DateTime, nullable=False),
    Column("first_seen", DateTime, nullable=False),
    Column("title", Text, nullable=False),
    Column("url", Text),
    Column("author", Text),
    Column("image", Text),
    Column("tags", Text, nullable=False, default="[]"),
    UniqueConstraint("source", "key", name="uq_articles_source_key"),
    Index("ix_articles_published", "published"),
    # Covers fingerprints() and live_ids(): an unchanged build reads this index, never the
    # articles' text.
    Index("ix_articles_state", "source", "key", "fingerprint", "withdrawn"),
)

# An article's body as the feeds show it, once rendered: valid while `body_hash` is the
# article's own (an edit or a change of the [text] rules gives the article a new one). A web
# source's articles get theirs as they are stored; a file's when a feed, page or digest first
# shows it, so a cold build of 100,000 files renders only the bodies its feeds show.
article_renditions_table = Table(
    "article_renditions",
    metadata,
    Column("article_id", Integer, ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    Column("body_hash", String(64), nullable=False),
    Column("summary", Text, nullable=False),
    Column("content_html", Text, nullable=False),
)

# One row per article and category while the article is live; `published` is copied here so
# that "the newest N of a category" is one index range scan.
article_categories_table = Table(
    "article_categories",
    metadata,
    Column("article_id", Integer, ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    Column("category_slug", String(100), primary_key=True),
    Column("published", DateTime, nullable=False),
    # "The newest N of a category" walks this index backwards and stops after N rows.
    Index("ix_article_categories_feed", "category_slug", "published", "article_id"),
)

# Feeds whose articles changed since they were last written: "" is the whole site, else a
# category slug. Marked in the ingest transaction, cleared once the feeds are written, so a
# crash between the two never leaves a feed stale.
dirty_table = Table(
    "dirty_feeds",
    metadata,
    Column("scope", String(100), primary_key=True),
)

SITE_SCOPE = ""

# Per source and folder, the digest of the folder's listing (names and fingerprints) when
# every item in it was last stored as listed: an unchanged folder is then skipped as a whole
# (see model.Folder). Written in the ingest transaction, with the articles it vouches for.
folder_digests_table = Table(
    "folder_digests",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("folder", String(1000), primary_key=True),
    Column("digest", String(64), nullable=False),
)

# A source's health, per part: "" is the source as a whole, else what the source calls the
# part (a category's name for html, the list URL for json, the site's URL for wordpress).
# `failures` counts the runs in a row whose read of the part failed: 0 when the last one read it.
source_health_table = Table(
    "source_health",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("scope", String(1000), primary_key=True),
    Column("last_success", DateTime),
    Column("items", Integer),  # what the part listed at its last success
    Column("last_error_at", DateTime),
    Column("last_error", Text),
    Column("last_error_url", Text),
    Column("last_hint", Text),
    Column("failures", Integer, nullable=False, default=0),
)

# A web source's items that failed (a 404 article, a page without a date), waiting with
# backoff before they are asked for again (sources/failed_items.py).
source_failures_table = Table(
    "source_failures",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("key", String(1000), primary_key=True),
    Column("url", Text, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("first_failed", DateTime, nullable=False),
    Column("last_failed", DateTime, nullable=False),
    Column("next_try", DateTime, nullable=False),
    Column("reason", Text, nullable=False),
)

# The ETag and Last-Modified a web source's page last came with, sent back as a conditional
# GET. A URL longer than VALIDATOR_URL_BYTES is not kept (it would not fit PostgreSQL's index).
VALIDATOR_URL_BYTES = 2000
http_validators_table = Table(
    "http_validators",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("url", String(VALIDATOR_URL_BYTES), primary_key=True),
    Column("etag", Text),
    Column("last_modified", Text),
)
