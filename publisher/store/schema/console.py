"""The console's tables: accounts, recovery codes, sessions, failed sign-ins and the audit
log.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, ForeignKey, Index, Integer, String, Table, Text

from .base import metadata

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
