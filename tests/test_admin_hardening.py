"""The console under an outside review (issue 13's security list): failed sign-ins in the audit
log, new session ids when the second factor changes, a lockout an attacker cannot hold over
every admin, and what the pages show of secrets and stored URLs."""

from __future__ import annotations

import pyotp

from admin_session import PASSWORD, csrf_of, make_account, signed_in_client
from conftest import Site
from publisher.web import create_app
from test_admin_security import audit_actions, console_site, login

__all__ = ["console_site"]  # the fixture, used by name


def test_failed_sign_ins_are_in_the_audit_log(console_site: Site) -> None:
    secret = pyotp.random_base32()
    make_account(console_site, "admin@example.org")
    make_account(console_site, "two@example.org", totp_secret=secret, totp_enabled=True)
    client = create_app(console_site.app()).test_client()
    assert login(client, "admin@example.org", "wrong password!").status_code == 403
    assert login(client, "nobody@example.org", PASSWORD).status_code == 403
    assert login(client, "two@example.org", PASSWORD).status_code == 303  # the code page next
    code = csrf_of(client, "/admin/login/code")
    assert client.post("/admin/login/code", data={"csrf": code, "code": "000000"}).status_code == 403
    failed = [(who, target, detail) for who, what, target, detail in audit_actions(console_site, detail=True)
              if what == "account.sign_in_failed"]  # fmt: skip
    assert failed == [
        ("(not signed in)", "admin@example.org", "wrong address or password"),
        ("(not signed in)", "nobody@example.org", "wrong address or password"),
        ("(not signed in)", "two@example.org", "wrong second-factor code"),
    ]
