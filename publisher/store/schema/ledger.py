"""The delivery ledger's tables (digests, deliveries), what providers and mailboxes said of
them (mail events, suppressions), and the fleet's send rate.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from .base import metadata

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

# The fleet's send rate (store/send_rates.py): one token bucket per transport, PostgreSQL only.
send_rates_table = Table(
    "send_rates",
    metadata,
    Column("transport", String(40), primary_key=True),
    Column("tokens", Float, nullable=False),  # below 0: taken ahead, paid back as time passes
    Column("refilled_at", Float, nullable=False),  # the database's clock, in seconds since the epoch
)
