"""The console's accounts, their sessions, sign-in failures and the audit log (web/admin).

Secrets are kept as hashes only: passwords as argon2 (made by publisher.accounts), the
set-password link's token, session ids and recovery codes as SHA-256 (each is 256 random bits,
so a fast hash is enough). The TOTP secret is kept as it is: checking a code needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import IntegrityError

from .schema import (
    admin_accounts_table,
    admin_audit_table,
    admin_login_failures_table,
    admin_recovery_codes_table,
    admin_sessions_table,
    aware_utc,
    naive_utc,
)


@dataclass(frozen=True, slots=True)
class Account:
    """A console account. `password_hash` None: its set-password link was not followed yet."""

    id: int
    email: str
    role: str
    password_hash: str | None
    totp_secret: str | None
    totp_enabled: bool
    disabled: bool
    failed_logins: int
    locked_until: datetime | None
    created_at: datetime
    trust_generation: int  # one more each time all its sessions end; trusted browsers are signed over it

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


@dataclass(frozen=True, slots=True)
class AdminSession:
    """A signed-in browser, found by the hash of its cookie."""

    id_hash: str
    account_id: int
    created_at: datetime
    last_seen: datetime
    verified: bool
    address: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: str
    address: str


def _account(row: Row[tuple[object, ...]]) -> Account:
    r = row._mapping
    locked = r["locked_until"]
    return Account(
        r["id"], r["email"], r["role"], r["password_hash"], r["totp_secret"], bool(r["totp_enabled"]),
        bool(r["disabled"]), r["failed_logins"], aware_utc(locked) if locked else None, aware_utc(r["created_at"]),
        r["trust_generation"],
    )  # fmt: skip


class AccountExists(ValueError):
    """An account with this address is there already."""


class AccountStore:
    """The Store's console accounts, sessions, sign-in failures and audit log."""

    engine: Engine

    # --- accounts

    def add_account(self, email: str, role: str, now: datetime) -> Account:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(admin_accounts_table).values(
                        email=email.lower(), role=role, totp_enabled=False, disabled=False, failed_logins=0,
                        created_at=naive_utc(now), trust_generation=0,
                    )
                )  # fmt: skip
        except IntegrityError as exc:
            raise AccountExists(email) from exc
        found = self.account_by_email(email)
        assert found is not None
        return found

    def account_by_email(self, email: str) -> Account | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(admin_accounts_table).where(admin_accounts_table.c.email == email.lower())
            ).first()
        return _account(row) if row else None

    def account(self, account_id: int) -> Account | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(admin_accounts_table).where(admin_accounts_table.c.id == account_id)).first()
        return _account(row) if row else None

    def accounts(self) -> list[Account]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(admin_accounts_table).order_by(admin_accounts_table.c.email)).all()
        return [_account(row) for row in rows]

    def has_accounts(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(admin_accounts_table)).scalar_one() > 0

    def update_account(self, account_id: int, **values: object) -> None:
        """Set columns of one account (role, disabled, password_hash, totp_*, ...)."""
        for key in ("locked_until", "password_token_expires"):
            moment = values.get(key)
            if isinstance(moment, datetime):
                values[key] = naive_utc(moment)
        with self.engine.begin() as conn:
            conn.execute(update(admin_accounts_table).where(admin_accounts_table.c.id == account_id).values(**values))

    def set_password_token(self, account_id: int, token_hash: str, expires: datetime) -> None:
        """The account's one open set-password link (a new one voids the one before)."""
        self.update_account(account_id, password_token_hash=token_hash, password_token_expires=expires)

    def account_by_password_token(self, token_hash: str, now: datetime) -> Account | None:
        a = admin_accounts_table.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(admin_accounts_table).where(
                    a.password_token_hash == token_hash, a.password_token_expires > naive_utc(now)
                )
            ).first()
        return _account(row) if row else None

    def set_password(self, account_id: int, password_hash: str, token_hash: str | None = None) -> bool:
        """Keep a new password hash, closing the set-password link, unlocking the account and
        voiding its trusted browsers; with `token_hash`, only while that link is still the open
        one (False: used already)."""
        a = admin_accounts_table.c
        query = update(admin_accounts_table).where(a.id == account_id)
        if token_hash is not None:
            query = query.where(a.password_token_hash == token_hash)
        values = {"password_hash": password_hash, "password_token_hash": None, "password_token_expires": None,
                  "failed_logins": 0, "locked_until": None, "trust_generation": a.trust_generation + 1}  # fmt: skip
        with self.engine.begin() as conn:
            return bool(conn.execute(query.values(**values)).rowcount)

    def count_bad_password(self, account_id: int, lock_after: int, lock_for: timedelta, now: datetime) -> bool:
        """One more bad password (or second-factor code) in a row; at `lock_after` of them the
        account is locked for `lock_for` and the count starts again. True: it locked now."""
        a = admin_accounts_table.c
        with self.engine.begin() as conn:
            conn.execute(
                update(admin_accounts_table).where(a.id == account_id).values(failed_logins=a.failed_logins + 1)
            )
            locked = conn.execute(
                update(admin_accounts_table)
                .where(a.id == account_id, a.failed_logins >= lock_after)
                .values(failed_logins=0, locked_until=naive_utc(now + lock_for))
            ).rowcount
        return bool(locked)

    def use_totp_step(self, account_id: int, step: int) -> bool:
        """Take TOTP time step `step` for the account: False when it (or a later one) was used
        already, so a code seen over a shoulder cannot be typed again."""
        a = admin_accounts_table.c
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    update(admin_accounts_table)
                    .where(a.id == account_id, or_(a.totp_last_step.is_(None), a.totp_last_step < step))
                    .values(totp_last_step=step)
                ).rowcount
            )

    def set_recovery_codes(self, account_id: int, code_hashes: list[str]) -> None:
        """The account's recovery codes, replacing any before."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(admin_recovery_codes_table).where(admin_recovery_codes_table.c.account_id == account_id)
            )
            if code_hashes:
                conn.execute(
                    insert(admin_recovery_codes_table),
                    [{"account_id": account_id, "code_hash": h, "used_at": None} for h in code_hashes],
                )

    def use_recovery_code(self, account_id: int, code_hash: str, now: datetime) -> bool:
        """Spend one unused recovery code; False when it is not one, or was used."""
        r = admin_recovery_codes_table.c
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    update(admin_recovery_codes_table)
                    .where(r.account_id == account_id, r.code_hash == code_hash, r.used_at.is_(None))
                    .values(used_at=naive_utc(now))
                ).rowcount
            )

    def recovery_codes_left(self, account_id: int) -> int:
        r = admin_recovery_codes_table.c
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count())
                .select_from(admin_recovery_codes_table)
                .where(r.account_id == account_id, r.used_at.is_(None))
            ).scalar_one()

    # --- sign-in failures (the rate limits)

    def record_login_failure(
        self, email: str, network: str, now: datetime, keep: timedelta, device: str | None = None
    ) -> None:
        """A failed sign-in: the address typed, the client's network and the trusted-browser
        cookie's hash (`device`), if one came; rows older than `keep` go."""
        f = admin_login_failures_table.c
        with self.engine.begin() as conn:
            conn.execute(delete(admin_login_failures_table).where(f.at < naive_utc(now - keep)))
            conn.execute(
                insert(admin_login_failures_table).values(
                    email=email.lower(), network=network, at=naive_utc(now), device=device
                )
            )

    def login_failures(
        self, *, email: str | None = None, network: str | None = None, device: str | None = None, since: datetime
    ) -> int:
        """Failed sign-ins since `since` for an address typed, from a client network, or by a
        trusted browser (its cookie's hash)."""
        f = admin_login_failures_table.c
        where = [f.at > naive_utc(since)]
        if email is not None:
            where.append(f.email == email.lower())
        elif device is not None:
            where.append(f.device == device)
        else:
            where.append(f.network == network)
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(admin_login_failures_table).where(and_(*where))
            ).scalar_one()

    # --- sessions

    def add_session(self, id_hash: str, account_id: int, now: datetime, verified: bool, address: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(admin_sessions_table).values(
                    id_hash=id_hash, account_id=account_id, created_at=naive_utc(now), last_seen=naive_utc(now),
                    verified=verified, address=address[:100],
                )
            )  # fmt: skip

    def admin_session(self, id_hash: str) -> AdminSession | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(admin_sessions_table).where(admin_sessions_table.c.id_hash == id_hash)).first()
        if row is None:
            return None
        return AdminSession(
            row.id_hash, row.account_id, aware_utc(row.created_at), aware_utc(row.last_seen), bool(row.verified),
            row.address,
        )  # fmt: skip

    def touch_session(self, id_hash: str, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(admin_sessions_table)
                .where(admin_sessions_table.c.id_hash == id_hash)
                .values(last_seen=naive_utc(now))
            )

    def end_session(self, id_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(admin_sessions_table).where(admin_sessions_table.c.id_hash == id_hash))

    def end_sessions(self, account_id: int) -> int:
        """End every session of an account (revoked, disabled, reset, a new password, the second
        factor on or off), and every browser's trust with them (a new trust generation); how
        many sessions."""
        a = admin_accounts_table.c
        query = delete(admin_sessions_table).where(admin_sessions_table.c.account_id == account_id)
        with self.engine.begin() as conn:
            conn.execute(
                update(admin_accounts_table).where(a.id == account_id).values(trust_generation=a.trust_generation + 1)
            )
            return conn.execute(query).rowcount

    def session_count(self, account_id: int) -> int:
        s = admin_sessions_table.c
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(admin_sessions_table).where(s.account_id == account_id)
            ).scalar_one()

    def prune_sessions(self, idle_since: datetime, created_before: datetime) -> None:
        """Sessions past their idle or absolute expiry."""
        s = admin_sessions_table.c
        with self.engine.begin() as conn:
            conn.execute(
                delete(admin_sessions_table).where(
                    or_(s.last_seen < naive_utc(idle_since), s.created_at < naive_utc(created_before))
                )
            )

    # --- the audit log

    def add_audit(self, at: datetime, actor: str, action: str, target: str, detail: str, address: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(admin_audit_table).values(
                    at=naive_utc(at), actor=actor, action=action, target=target, detail=detail, address=address[:100]
                )
            )

    def audit_entries(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        """The newest entries first; `before_id` pages back."""
        t = admin_audit_table.c
        query = select(admin_audit_table).order_by(t.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(t.id < before_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [AuditEntry(r.id, aware_utc(r.at), r.actor, r.action, r.target, r.detail, r.address) for r in rows]
