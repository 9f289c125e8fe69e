"""The console's lockout under a second review: someone who has the password cannot guess the
second factor without end; a trusted browser (the device cookie that passes its account's
lockout) loses its trust when the account's sessions are all ended, keeps it through a rehash,
and has a failure budget of its own."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
from flask.testing import FlaskClient
from test_admin_security import audit_actions, console_site, login

from admin_session import PASSWORD, csrf_of, make_account, signed_in_client, turn_second_factor_on
from conftest import Site
from publisher.store import Store
from publisher.web import create_app

__all__ = ["console_site"]  # the fixture, used by name


def wrong_code(secret: str, site: Site) -> str:
    right = pyotp.TOTP(secret).at(site.clock_now)
    return next(code for code in ("000000", "111111") if code != right)


def send_code(client: FlaskClient, code: str) -> int:
    token = csrf_of(client, "/admin/login/code")
    return client.post("/admin/login/code", data={"csrf": token, "code": code}).status_code


def test_the_right_password_with_wrong_codes_locks_the_account(console_site: Site) -> None:
    """The password step used to clear the count of bad tries, so a right password and one
    wrong code, again and again, never reached ten (and each wrote an audit row)."""
    secret = pyotp.random_base32()
    make_account(console_site, "two@example.org", totp_secret=secret, totp_enabled=True)
    attacker = create_app(console_site.app()).test_client()
    for n in range(10):
        assert login(attacker, "two@example.org", PASSWORD).status_code == 303, n  # the code page next
        assert send_code(attacker, wrong_code(secret, console_site)) == 403, n
    # The tenth locked the account and ended the half-signed-in session: the right code is no use.
    right = pyotp.TOTP(secret).at(console_site.clock_now)
    answer = attacker.post("/admin/login/code", data={"csrf": csrf_of(attacker, "/admin/login"), "code": right})
    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/login"
    assert attacker.get("/admin/").status_code == 303
    for _ in range(15):
        assert login(attacker, "two@example.org", PASSWORD).status_code == 403  # locked, and for a newcomer
    assert login(create_app(console_site.app()).test_client(), "two@example.org", PASSWORD).status_code == 403
    actions = [what for _who, what, _target, _detail in audit_actions(console_site, detail=True)]
    assert actions == ["account.sign_in_failed"] * 10 + ["account.locked"]


STRANGER = {"REMOTE_ADDR": "198.51.100.7"}  # another network than the owner's 127.0.0.1


def trusted_browser(site: Site, email: str = "admin@example.org") -> FlaskClient:
    """A browser that signed in fully as `email` (an account made already), then out."""
    browser = create_app(site.app()).test_client()
    assert login(browser, email, PASSWORD).status_code == 303
    browser.post("/admin/logout", data={"csrf": csrf_of(browser)})
    return browser


def lock_from_elsewhere(site: Site, email: str = "admin@example.org") -> None:
    """Ten wrong passwords from a stranger's network: `email` is locked for a new browser."""
    stranger = create_app(site.app()).test_client()
    for _ in range(10):
        guess = {"csrf": csrf_of(stranger, "/admin/login"), "email": email, "password": "a guess of theirs"}
        assert stranger.post("/admin/login", data=guess, environ_base=STRANGER).status_code == 403
    assert login(create_app(site.app()).test_client(), email, PASSWORD).status_code == 403


def test_turning_the_second_factor_on_ends_the_other_browsers_trust(console_site: Site) -> None:
    make_account(console_site)
    other = trusted_browser(console_site)
    here = create_app(console_site.app()).test_client()
    assert login(here, "admin@example.org", PASSWORD).status_code == 303
    turn_second_factor_on(console_site, here)
    here.post("/admin/logout", data={"csrf": csrf_of(here)})
    lock_from_elsewhere(console_site)
    assert login(other, "admin@example.org", PASSWORD).status_code == 403  # trusted under the password alone
    assert login(here, "admin@example.org", PASSWORD).status_code == 303  # trusted anew: the code page next


def test_ending_an_accounts_sessions_or_resetting_it_ends_its_browsers_trust(console_site: Site) -> None:
    admin = signed_in_client(console_site)
    editor_id = make_account(console_site, "ed@example.org", "editor")
    owner = trusted_browser(console_site, "ed@example.org")
    ended = admin.post(f"/admin/accounts/{editor_id}/sessions", data={"csrf": csrf_of(admin, "/admin/accounts")})
    assert ended.status_code == 200
    lock_from_elsewhere(console_site, "ed@example.org")
    assert login(owner, "ed@example.org", PASSWORD).status_code == 403

    console_site.clock_now += timedelta(minutes=16)  # past the lockout: the owner signs in, trusted again
    assert login(owner, "ed@example.org", PASSWORD).status_code == 303
    owner.post("/admin/logout", data={"csrf": csrf_of(owner)})
    assert console_site.cli("admin", "reset", "ed@example.org").exit_code == 0
    lock_from_elsewhere(console_site, "ed@example.org")
    assert login(owner, "ed@example.org", PASSWORD).status_code == 403


def test_a_rehash_of_the_password_keeps_every_browsers_trust(console_site: Site) -> None:
    """A hash made with other argon2 parameters is made again at the next sign-in; the other
    browsers the owner trusted stay trusted (their cookies were signed over the old hash)."""
    from argon2 import PasswordHasher

    from publisher.accounts import HASHER

    account_id = make_account(console_site)
    laptop = trusted_browser(console_site)
    store = Store(console_site.store_url)
    store.update_account(account_id, password_hash=PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD))
    trusted_browser(console_site)  # the next sign-in, elsewhere, makes the hash again
    account = store.account(account_id)
    store.close()
    assert account is not None and account.password_hash and not HASHER.check_needs_rehash(account.password_hash)
    lock_from_elsewhere(console_site)
    assert login(laptop, "admin@example.org", PASSWORD).status_code == 303


def test_a_trusted_browsers_own_wrong_passwords_use_up_its_pass(console_site: Site) -> None:
    """A stolen device cookie buys ten guesses past the lockout, not more; the owner's other
    browsers keep theirs."""
    make_account(console_site)
    stolen, owners = trusted_browser(console_site), trusted_browser(console_site)
    lock_from_elsewhere(console_site)
    for _ in range(10):
        assert login(stolen, "admin@example.org", "a guess of theirs").status_code == 403
    assert login(stolen, "admin@example.org", PASSWORD).status_code == 403
    assert login(owners, "admin@example.org", PASSWORD).status_code == 303


def test_turning_the_second_factor_on_needs_the_password(console_site: Site) -> None:
    """A session left open (or stolen) cannot enrol its own authenticator and lock the owner
    out: the confirm step asks for the password, and wrong ones count as at the sign-in form."""
    client = signed_in_client(console_site)
    token = csrf_of(client)
    enrol = client.post("/admin/account/totp", data={"csrf": token}).get_data(as_text=True)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', enrol)
    assert secret and 'id="totp-confirm-current" name="current"' in enrol
    code = pyotp.TOTP(secret.group(1)).at(console_site.clock_now)
    for guess in ("", "a guess of theirs"):
        refused = client.post("/admin/account/totp/confirm", data={"csrf": token, "current": guess, "code": code})
        assert refused.status_code == 403 and secret.group(1) in refused.get_data(as_text=True)  # to try again
    store = Store(console_site.store_url)
    account = store.account_by_email("admin@example.org")
    store.close()
    assert account is not None and not account.totp_enabled and account.failed_logins == 2
    actions = [what for _who, what, _target, _detail in audit_actions(console_site, detail=True)]
    assert actions.count("account.password_check_failed") == 2 and "account.totp_on" not in actions
    on = client.post("/admin/account/totp/confirm", data={"csrf": token, "current": PASSWORD, "code": code})
    assert on.status_code == 200 and "<code>" in on.get_data(as_text=True)
