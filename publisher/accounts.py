"""The console's accounts: roles, passwords (argon2), set-password links, sign-in with its
lockout and rate limits, the TOTP second factor and its recovery codes. The web door
(web/admin) and the CLI (`publisher admin`) call these; the store keeps hashes only.

A sign-in is refused, saying only "wrong address or password", for a wrong password, an
unknown or disabled address, or an account without a password yet; 10 bad passwords (or
codes) in a row lock the account for `[admin] lockout_minutes`, and a client network (IPv4
/24, IPv6 /64) with `[admin] failed_logins_per_client` failures in the hour is refused before
any password is checked.

The web door answers a locked account's sign-in as it answers a wrong password (the same words,
a password checked all the same), so the lockout does not tell which addresses have accounts.
A right password does not clear the count while the second factor is still due: only a full
sign-in does, so whoever has the password cannot guess codes without end.

The lockout does not hold for a browser the account signed in from before (`TrustedDevice`: the
web door's device cookie), so someone guessing from elsewhere can lock the account for
strangers, never for its owner; but only until that browser has typed 10 wrong passwords or
codes itself within the lockout's span (its failures are counted under its cookie's hash).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .model import ROLES
from .signup import client_network
from .store import Account, Store

LOCK_AFTER = 10  # bad passwords or codes in a row that lock an account
PASSWORD_LINK_LIFETIME = timedelta(hours=24)
MIN_PASSWORD = 10  # characters
MAX_PASSWORD = 1024
RECOVERY_CODES = 10
FAILURES_KEPT = timedelta(days=1)

# argon2-cffi's defaults (RFC 9106's second recommendation); a hash made with other parameters
# is made again at the next sign-in (check_needs_rehash).
HASHER = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified when the address is unknown, so a wrong address costs as long as a wrong
    password. Made at first use, not at import: hashing takes a tenth of a second, which every
    command (a build too) paid when it was made as the module loaded."""
    return HASHER.hash("not a password of anyone's")


def role_at_least(role: str, wanted: str) -> bool:
    return ROLES.index(role) >= ROLES.index(wanted)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def password_problem(password: str, email: str) -> str | None:
    """Why a new password will not do, or None."""
    if len(password) < MIN_PASSWORD:
        return f"at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"at most {MAX_PASSWORD} characters"
    if password.strip().lower() == email.lower():
        return "not the address itself"
    return None


def open_password_link(store: Store, account: Account, now: datetime) -> str:
    """A new one-time set-password token for `account` (voiding the one before), valid
    PASSWORD_LINK_LIFETIME; only its hash is kept."""
    token = secrets.token_urlsafe(32)
    store.set_password_token(account.id, sha256(token), now + PASSWORD_LINK_LIFETIME)
    return token


def account_for_link(store: Store, token: str, now: datetime) -> Account | None:
    """The account a set-password token opens, if it is the open one and unexpired."""
    if not token or len(token) > 100:
        return None
    found = store.account_by_password_token(sha256(token), now)
    return found if found is not None and not found.disabled else None


def set_password_by_link(store: Store, token: str, password: str, now: datetime) -> Account | None:
    """Keep `password` for the link's account, closing the link and ending its sessions; None
    when the link is not open (used, expired, replaced). ValueError: the password will not do."""
    account = account_for_link(store, token, now)
    if account is None:
        return None
    problem = password_problem(password, account.email)
    if problem:
        raise ValueError(problem)
    if not store.set_password(account.id, HASHER.hash(password), sha256(token)):
        return None
    store.end_sessions(account.id)
    return account


def change_password(store: Store, account: Account, current: str, new: str) -> bool:
    """An account's own change: False when `current` is wrong. ValueError: `new` will not do."""
    if not password_matches(account.password_hash, current):
        return False
    problem = password_problem(new, account.email)
    if problem:
        raise ValueError(problem)
    store.set_password(account.id, HASHER.hash(new))
    return True


def password_matches(stored: str | None, password: str) -> bool:
    try:
        return HASHER.verify(stored or _dummy_hash(), password[:MAX_PASSWORD]) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class Outcome(Enum):
    SIGNED_IN = "signed in"  # the password was right and no second factor is set
    NEEDS_CODE = "needs code"  # the password was right; the TOTP code or a recovery code next
    REFUSED = "refused"  # wrong address or password (which, never said)
    LOCKED = "locked"  # the account is locked (now, or by this attempt)
    THROTTLED = "throttled"  # too many failures from the client's network


@dataclass(frozen=True, slots=True)
class SignIn:
    outcome: Outcome
    account: Account | None = None
    locked_now: bool = False  # this attempt locked the account (the audit log says so)


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """`[admin]`'s lockout and per-network budget."""

    lockout: timedelta
    per_client_hour: int

    @property
    def failures_kept(self) -> timedelta:
        return max(FAILURES_KEPT, self.lockout)


@dataclass(frozen=True, slots=True)
class TrustedDevice:
    """A browser that signed in fully to `account_id` before (the web door's device cookie,
    checked there). It passes that account's lockout until it has itself typed LOCK_AFTER
    wrong passwords or codes within the lockout's span: a stolen cookie buys ten guesses."""

    account_id: int
    key: str  # the SHA-256 of its cookie, under which its own failures are counted


def passes_lockout(
    store: Store, account: Account, trusted: TrustedDevice | None, limits: LoginLimits, now: datetime
) -> bool:
    """Whether `trusted` may sign in to `account` although it is locked."""
    if trusted is None or trusted.account_id != account.id:
        return False
    return store.login_failures(device=trusted.key, since=now - limits.lockout) < LOCK_AFTER


def check_password(
    store: Store,
    email: str,
    password: str,
    client: str,
    limits: LoginLimits,
    now: datetime,
    trusted: TrustedDevice | None = None,
) -> SignIn:
    """The first step of a sign-in. `trusted`: the browser's device cookie, if it has one."""
    network = client_network(client)
    if store.login_failures(network=network, since=now - timedelta(hours=1)) >= limits.per_client_hour:
        return SignIn(Outcome.THROTTLED)
    typed = email.strip()[:320]
    account = store.account_by_email(typed)
    usable = account is not None and not account.disabled
    # Checked even when the account is locked, so a lock answers as slowly as a wrong password.
    matches = password_matches(account.password_hash if usable and account else None, password)
    device = trusted.key if trusted is not None else None
    if (
        account is not None
        and usable
        and account.locked(now)
        and not passes_lockout(store, account, trusted, limits, now)
    ):
        store.record_login_failure(typed, network, now, limits.failures_kept, device)
        return SignIn(Outcome.LOCKED, account)
    if not (matches and usable):
        store.record_login_failure(typed, network, now, limits.failures_kept, device)
        if account is not None and usable:
            locked = store.count_bad_password(account.id, LOCK_AFTER, limits.lockout, now)
            if locked:
                return SignIn(Outcome.LOCKED, account, locked_now=True)
        return SignIn(Outcome.REFUSED, account if usable else None)
    assert account is not None and account.password_hash is not None
    if HASHER.check_needs_rehash(account.password_hash):
        store.update_account(account.id, password_hash=HASHER.hash(password))
    if account.totp_enabled:
        # The count of bad passwords and codes runs on until the code is right too: were it
        # cleared here, whoever has the password could guess codes without ever being locked.
        return SignIn(Outcome.NEEDS_CODE, account)
    store.update_account(account.id, failed_logins=0)
    return SignIn(Outcome.SIGNED_IN, account)


def check_code(
    store: Store,
    account: Account,
    code: str,
    client: str,
    limits: LoginLimits,
    now: datetime,
    trusted: TrustedDevice | None = None,
) -> SignIn:
    """The second step: a TOTP code (each used once) or an unused recovery code. `trusted`: as
    for check_password."""
    network = client_network(client)
    if store.login_failures(network=network, since=now - timedelta(hours=1)) >= limits.per_client_hour:
        return SignIn(Outcome.THROTTLED)
    fresh = store.account(account.id)
    if fresh is None or fresh.disabled:
        return SignIn(Outcome.REFUSED)
    if fresh.locked(now) and not passes_lockout(store, fresh, trusted, limits, now):
        return SignIn(Outcome.LOCKED, fresh)
    if code_matches(store, fresh, code, now):
        store.update_account(fresh.id, failed_logins=0)
        return SignIn(Outcome.SIGNED_IN, fresh)
    device = trusted.key if trusted is not None else None
    store.record_login_failure(fresh.email, network, now, limits.failures_kept, device)
    locked = store.count_bad_password(fresh.id, LOCK_AFTER, limits.lockout, now)
    return SignIn(Outcome.LOCKED if locked else Outcome.REFUSED, fresh, locked_now=locked)


def code_matches(store: Store, account: Account, code: str, now: datetime) -> bool:
    """`code` is the account's current TOTP code (not used before) or one of its unused
    recovery codes (spent now)."""
    import pyotp

    typed = "".join(code.split())
    if typed.isdigit() and len(typed) == 6 and account.totp_secret:
        totp = pyotp.TOTP(account.totp_secret)
        for drift in (0, -1, 1):  # one step either way: a phone's clock a little off
            at = now + timedelta(seconds=30 * drift)
            if secrets.compare_digest(totp.at(at), typed):
                return store.use_totp_step(account.id, totp.timecode(at))
        return False
    if len(typed) > 40:
        return False
    return store.use_recovery_code(account.id, sha256(normal_recovery_code(typed)), now)


def normal_recovery_code(code: str) -> str:
    return code.replace("-", "").lower()


def new_totp_secret() -> str:
    import pyotp

    return pyotp.random_base32()


def totp_uri(secret: str, email: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app takes (typed in, or as a QR code)."""
    import pyotp

    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def enable_totp(store: Store, account: Account, secret: str, code: str, now: datetime) -> list[str] | None:
    """Turn the second factor on once `code` shows the app has `secret`: the ten recovery
    codes (shown once, kept hashed). None when the code is wrong."""
    import pyotp

    totp = pyotp.TOTP(secret)
    typed = "".join(code.split())
    steps = [now + timedelta(seconds=30 * d) for d in (0, -1, 1)]
    matched = next((at for at in steps if secrets.compare_digest(totp.at(at), typed)), None)
    if matched is None:
        return None
    codes = [secrets.token_hex(5) for _ in range(RECOVERY_CODES)]  # 40 bits each, as "1a2b3-c4d5e"
    # The step of the code typed is used up (it may be the next one, from a phone a little ahead).
    last_step = max(totp.timecode(now), totp.timecode(matched))
    store.update_account(account.id, totp_secret=secret, totp_enabled=True, totp_last_step=last_step)
    store.set_recovery_codes(account.id, [sha256(c) for c in codes])
    return [f"{c[:5]}-{c[5:]}" for c in codes]


def disable_totp(store: Store, account: Account) -> None:
    store.update_account(account.id, totp_secret=None, totp_enabled=False, totp_last_step=None)
    store.set_recovery_codes(account.id, [])
