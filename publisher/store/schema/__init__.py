"""The store's tables, one MetaData for all of them (base.py), a module per aggregate, and the
few helpers every aggregate shares.

Change a table here only with a new revision in migrations/versions (docs/architecture.md).
Whatever order the modules load in, `metadata.sorted_tables` orders the tables by their foreign
keys, then by name: the DDL is the same as when they were one module."""

from __future__ import annotations

from .articles import (
    SITE_SCOPE,
    VALIDATOR_URL_BYTES,
    article_categories_table,
    article_renditions_table,
    articles_table,
    categories_table,
    dirty_table,
    folder_digests_table,
    http_validators_table,
    source_failures_table,
    source_health_table,
)
from .base import (
    META_KEY_LENGTH,
    NAMING_CONVENTION,
    TURNSTILE,
    aware_utc,
    meta_table,
    metadata,
    naive_utc,
    take_turnstile,
    upsert_into,
)
from .console import (
    admin_accounts_table,
    admin_audit_table,
    admin_login_failures_table,
    admin_recovery_codes_table,
    admin_sessions_table,
)
from .ledger import (
    deliveries_table,
    digests_table,
    mail_events_table,
    send_rates_table,
    suppressions_table,
)
from .readers import (
    signup_events_table,
    signup_requests_table,
    subscribers_table,
    used_form_tokens_table,
)

__all__ = [
    "META_KEY_LENGTH",
    "NAMING_CONVENTION",
    "SITE_SCOPE",
    "TURNSTILE",
    "VALIDATOR_URL_BYTES",
    "admin_accounts_table",
    "admin_audit_table",
    "admin_login_failures_table",
    "admin_recovery_codes_table",
    "admin_sessions_table",
    "article_categories_table",
    "article_renditions_table",
    "articles_table",
    "aware_utc",
    "categories_table",
    "deliveries_table",
    "digests_table",
    "dirty_table",
    "folder_digests_table",
    "http_validators_table",
    "mail_events_table",
    "meta_table",
    "metadata",
    "naive_utc",
    "send_rates_table",
    "signup_events_table",
    "signup_requests_table",
    "source_failures_table",
    "source_health_table",
    "subscribers_table",
    "suppressions_table",
    "take_turnstile",
    "upsert_into",
    "used_form_tokens_table",
]
