"""The console's lockout under a second review: someone who has the password cannot guess the
second factor without end."""

from __future__ import annotations

import pyotp
from flask.testing import FlaskClient
from test_admin_security import audit_actions, console_site, login

from admin_session import PASSWORD, csrf_of, make_account
from conftest import Site
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
