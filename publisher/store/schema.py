"""The store's tables, one MetaData for all of them, and the few helpers every aggregate shares.

Change a table here only with a new revision in migrations/versions (docs/architecture.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    update,
)
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

# Every constraint and index has a name, so a migration can drop or alter it on SQLite (batch
# mode) and PostgreSQL alike (Alembic's "The Importance of Naming Constraints"). Names given
# explicitly below predate this convention and are kept.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)

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

subscribers_table = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),  # as normalised by email-validator
    Column("email_key", String(320), nullable=False, unique=True),  # lower-cased: one row per address
    Column("name", String(200), nullable=False, default=""),
    Column("categories", Text, nullable=False, default="[]"),  # JSON list of slugs; [] = all
    Column("status", String(20), nullable=False),
    Column("status_at", DateTime, nullable=False),
    Column("status_via", String(100), nullable=False),
    Column("created_at", DateTime, nullable=False),
    # What the reader chose to receive: a script ("zh-Hans", "zh-Hant"; NULL is the site's own)
    # and a cadence (a name in `[digest] cadences`).
    Column("script", String(20)),
    Column("cadence", String(20), nullable=False, server_default="weekly"),
    # The proof of consent: the words the reader was shown, when the link was followed and from
    # which network (IPv4 /24, IPv6 /64; never the whole address). NULL for readers added by
    # the operator, who answers for their consent.
    Column("consent_text", Text),
    Column("consent_at", DateTime),
    Column("consent_network", String(100)),
)

# The subscribe form's budgets, shared by every process and kept over a restart: one row per
# sign-up request let through, under the normalised mailbox ("address") and the client's
# network ("client"); rows older than the longest window are pruned as new ones arrive.
signup_events_table = Table(
    "signup_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("scope", String(20), nullable=False),
    Column("key", String(320), nullable=False),
    Column("at", DateTime, nullable=False),
    Index("ix_signup_events_lookup", "scope", "key", "at"),
    Index("ix_signup_events_at", "at"),
)

# What a sign-up asked for (the address as typed, a name, categories), unconfirmed: the
# confirmation link names the request, and only following it writes this into `subscribers`.
# Until then a second request, by anyone, changes nothing a reader sees. Pruned after the
# link's lifetime.
signup_requests_table = Table(
    "signup_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email_key", String(320), nullable=False),
    Column("email", String(320), nullable=False),
    Column("name", String(200), nullable=False),
    Column("categories", Text, nullable=False),  # JSON list of slugs; [] = all
    Column("created_at", DateTime, nullable=False),
    Column("script", String(20)),  # as on subscribers
    Column("cadence", String(20), nullable=False, server_default="weekly"),
    Column("consent_text", Text),  # the words beside the form the reader sent
    Index("ix_signup_requests_email_key", "email_key"),
    Index("ix_signup_requests_created_at", "created_at"),
    sqlite_autoincrement=True,  # ids are never reused: an old link must not name a new request
)

# The embeddable sign-up form's tokens that were used: a token is signed and expires, and one
# seen here is refused again until it would have expired anyway (then the row is pruned).
used_form_tokens_table = Table(
    "used_form_tokens",
    metadata,
    Column("digest", String(64), primary_key=True),  # SHA-256 of the token
    Column("expires", DateTime, nullable=False),
    Index("ix_used_form_tokens_expires", "expires"),
)

# The delivery ledger: one digest per window key, one delivery per digest and subscriber.
digests_table = Table(
    "digests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(100), nullable=False, unique=True),  # a second run of a window creates nothing
    Column("window_start", DateTime, nullable=False),
    Column("window_end", DateTime, nullable=False),
    Column("status", String(20), nullable=False),  # planning | sending | paused | done
    Column("created_at", DateTime, nullable=False),
    # Which `[digest] cadences` entry this digest is for; its readers are those of that cadence.
    Column("cadence", String(20), nullable=False, server_default="weekly"),
    # The address of its public page (`/digests/<slug>/`), fixed when it is first given, so a
    # link in a sent mail never moves; NULL until the archive names it (or with the archive off).
    Column("archive_slug", String(100), unique=True),
)

deliveries_table = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("digest_id", Integer, ForeignKey("digests.id", ondelete="CASCADE"), nullable=False),
    Column("email_key", String(320), nullable=False),
    Column("message_id", String(300), nullable=False),  # the same on every attempt
    # pending | sending (the transport was called, no answer recorded) | sent | failed | skipped
    # | uncertain (it may have reached the reader: no answer after it was handed over, or a crash
    # mid-send; never sent again by itself, store.retries says how `last_error` tells the kinds)
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("provider_id", String(300)),
    Column("updated_at", DateTime, nullable=False),
    # The digest's chunk this delivery was planned in when fan-out is on (one Procrastinate job
    # sends a chunk, publisher.fanout); None: planned for one process.
    Column("chunk", Integer),
    UniqueConstraint("digest_id", "email_key", name="uq_deliveries_digest_subscriber"),
    Index("ix_deliveries_status", "digest_id", "status"),
    Index("ix_deliveries_chunk", "digest_id", "chunk"),
)

# How an event finds its delivery by our Message-ID (a DSN or ARF report quotes it) or the
# provider's id for the message (its webhooks name it).
Index("ix_deliveries_message_id", deliveries_table.c.message_id)
Index("ix_deliveries_provider_id", deliveries_table.c.provider_id)

# What providers and bounce mailboxes said (publisher.bounces): every event kept once with its
# raw reason and the delivery it refers to; a provider re-sending an event (the same event_id
# from the same source) is kept once.
mail_events_table = Table(
    "mail_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(20), nullable=False),  # hard | soft | complaint | unsubscribe
    Column("email_key", String(320), nullable=False),  # lower-cased; the delivery's address when linked
    Column("source", String(40), nullable=False),  # mailgun, ses, imap, ...
    Column("reason", Text, nullable=False),
    Column("occurred", DateTime, nullable=False),  # as the event dates it
    Column("received_at", DateTime, nullable=False),
    Column("delivery_id", Integer, ForeignKey("deliveries.id", ondelete="SET NULL")),
    Column("digest_id", Integer, ForeignKey("digests.id", ondelete="SET NULL")),
    Column("linked_by", String(20), nullable=False),  # token | message_id | provider_id | address | unlinked | unknown
    Column("event_id", String(300)),  # the provider's id of the event
    Column("outcome", String(200), nullable=False),  # what the rules did, for `bounces list`
    Column("raw", Text, nullable=False),
    UniqueConstraint("source", "event_id"),  # NULLs are distinct: events without an id are all kept
    Index("ix_mail_events_count", "email_key", "kind", "occurred"),
    Index("ix_mail_events_delivery_id", "delivery_id"),
)

# The addresses no digest goes to (a bounce or complaint rule's `suppress`), checked when a
# digest is planned and when an address signs up again. A lifted suppression keeps its row
# with `lifted_at` (events before it no longer count towards a rule).
suppressions_table = Table(
    "suppressions",
    metadata,
    Column("email_key", String(320), primary_key=True),
    Column("kind", String(20), nullable=False),  # the event kind that suppressed it
    Column("reason", Text, nullable=False),
    Column("since", DateTime, nullable=False),
    Column("mail_event_id", Integer, ForeignKey("mail_events.id", ondelete="SET NULL")),
    Column("lifted_at", DateTime),  # None: suppressed now
    Column("lifted_by", String(100)),  # "re-subscribed", "operator"
)

# The console's accounts (web/admin): a role, an argon2 password hash (None until the account's
# set-password link is followed), an optional TOTP secret, and the one set-password link that
# is open (its token's SHA-256, never the token). `failed_logins` counts bad passwords in a row;
# at the lockout threshold the account is locked until `locked_until`. `trust_generation` grows
# by one each time all the account's sessions end (a new password, the second factor on or off,
# a reset, an admin's "end sessions"): the trusted-browser cookie is signed over it.
admin_accounts_table = Table(
    "admin_accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),  # lower-cased
    Column("role", String(20), nullable=False),  # viewer | editor | admin
    Column("password_hash", Text),
    Column("totp_secret", String(64)),  # base32; a second factor once totp_enabled
    Column("totp_enabled", Boolean, nullable=False, default=False),
    Column("totp_last_step", Integer),  # the last TOTP time step used: a code works once
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", DateTime),
    Column("password_token_hash", String(64)),
    Column("password_token_expires", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("trust_generation", Integer, nullable=False, default=0, server_default="0"),
    sqlite_autoincrement=True,  # an id is never reused: an old audit row names one account only
)

# An account's one-time recovery codes (the second factor's spare keys), SHA-256 of each.
admin_recovery_codes_table = Table(
    "admin_recovery_codes",
    metadata,
    Column("account_id", Integer, ForeignKey("admin_accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("code_hash", String(64), primary_key=True),
    Column("used_at", DateTime),
)

# Signed-in browsers: the SHA-256 of the cookie's random id (a stolen table opens no session),
# the account, when it began and was last used (absolute and idle expiry), whether the second
# factor was given, and the address it began from.
admin_sessions_table = Table(
    "admin_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("account_id", Integer, ForeignKey("admin_accounts.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False),
    Column("verified", Boolean, nullable=False),  # False: the password was right, the code is awaited
    Column("address", String(100), nullable=False),
    Index("ix_admin_sessions_account_id", "account_id"),
)

# Every sign-in attempt that failed, by the address typed, the client's network (IPv4 /24,
# IPv6 /64) and the trusted-browser cookie it carried (its SHA-256), for the console's rate
# limits; pruned after a day (or the lockout's span, if longer).
admin_login_failures_table = Table(
    "admin_login_failures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("network", String(100), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("device", String(64)),
    Index("ix_admin_login_failures_email", "email", "at"),
    Index("ix_admin_login_failures_network", "network", "at"),
    Index("ix_admin_login_failures_device", "device", "at"),
)

# Every change made through the console or `publisher admin`: who (the account's address, kept
# as text so the row outlives the account), what, to what, when, from where.
admin_audit_table = Table(
    "admin_audit",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime, nullable=False),
    Column("actor", String(320), nullable=False),  # an account's address, or "cli"
    Column("action", String(100), nullable=False),  # "account.add", "subscriber.erase", ...
    Column("target", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("address", String(100), nullable=False),  # the client's address; "" from the CLI
    Index("ix_admin_audit_at", "at"),
)

# The fleet's send rate (store/send_rates.py): one token bucket per transport, PostgreSQL only.
send_rates_table = Table(
    "send_rates",
    metadata,
    Column("transport", String(40), primary_key=True),
    Column("tokens", Float, nullable=False),  # below 0: taken ahead, paid back as time passes
    Column("refilled_at", Float, nullable=False),  # the database's clock, in seconds since the epoch
)

META_KEY_LENGTH = 300  # "reading-signature:" and a source's name of up to 200 characters
meta_table = Table(
    "meta",
    metadata,
    Column("key", String(META_KEY_LENGTH), primary_key=True),
    Column("value", Text, nullable=False),
)


TURNSTILE = "turnstile"  # the meta row that orders ingest commits and digest windows


def take_turnstile(conn: Connection) -> None:
    """Take the turnstile row (a write: SQLite's write lock, a row lock elsewhere) until commit."""
    m = meta_table.c
    if not conn.execute(update(meta_table).where(m.key == TURNSTILE).values(value=m.value)).rowcount:
        conn.execute(insert(meta_table).values(key=TURNSTILE, value=""))


def upsert_into(conn: Connection, table: Table) -> PostgresInsert | SqliteInsert:
    """An INSERT into `table` that can take ON CONFLICT, in the dialect of `conn`. Only the
    dialect in use is imported: PostgreSQL's costs every command on SQLite 30 to 60 ms."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgres_insert

        return postgres_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def naive_utc(moment: datetime) -> datetime:
    """How the store keeps a moment: naive, in UTC."""
    if moment.tzinfo is UTC:  # an article's dates: a cold build of 100,000 stores 300,000 of them
        return moment.replace(tzinfo=None)
    return moment.astimezone(UTC).replace(tzinfo=None)


def aware_utc(moment: datetime) -> datetime:
    """A moment read from the store, aware again (UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
