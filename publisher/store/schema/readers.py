"""The tables of the readers: subscribers, the sign-up form's budgets and requests, and the
embeddable form's used tokens.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, String, Table, Text

from .base import metadata

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

# What a sign-up asked for (the address as typed, a name, categories), kept apart: the
# confirmation link names the request, and only following it writes this into `subscribers`.
# Until then a second request, by anyone, changes nothing a reader sees. Following it marks it
# and the address's other requests `confirmed_at`: their links then only show the reader that
# they are subscribed. Pruned after the link's lifetime.
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
    Column("confirmed_at", DateTime),  # when the address was confirmed, by this link or another's
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
