"""The subscribe form against subscribe-bombing: budgets per mailbox (case and +tags folded) and
per client network (IPv4 /24, IPv6 /64), a daily cap on mails per mailbox, all counted in the
store, so two app instances and a restart share them. Real apps over one real SQLite store."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from conftest import Site
from publisher.app import App
from publisher.signup import client_network, mailbox_key
from publisher.store.schema import signup_events_table
from publisher.web import create_app

KEY = "signup-test-signing-key-0123456789"


class Service:
    """Apps over one site's store, as several processes (or a restarted one) would be."""

    def __init__(self, site: Site, **web: int) -> None:
        self.site = site
        limits = "".join(f"{key} = {value}\n" for key, value in web.items())
        site.write_config(site.mail_to_outbox() + f'\n[web]\npublic_url = "http://127.0.0.1:8080"\n{limits}')
        self.apps: list[App] = []

    def start(self) -> FlaskClient:
        """A new app instance (a new process) over the same store, and a browser for it."""
        app = self.site.app()
        self.apps.append(app)
        web: Flask = create_app(app)
        return web.test_client()

    def close(self) -> None:
        while self.apps:
            self.apps.pop().close()

    def mails(self, count: int) -> list[EmailMessage]:
        """The outbox once it holds `count` mails (sent by a background thread), oldest first."""
        deadline = time.monotonic() + 5
        while len(list(self.site.outbox.glob("*.eml"))) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)  # and no more than that
        paths = sorted(self.site.outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
        return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in paths]  # type: ignore[misc]


@pytest.fixture
def service(site: Site, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    made = Service(site, subscribe_per_address=3, subscribe_per_client=50, confirmation_mails_per_day=5)
    try:
        yield made
    finally:
        made.close()


def subscribe(browser: FlaskClient, email: str, client: str = "192.0.2.10", name: str = "读者") -> int:
    """Post the form as a browser at `client` would; the HTTP status."""
    environ = {"REMOTE_ADDR": client}
    form = browser.get("/subscribe", environ_base=environ)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.get_data(as_text=True))
    assert form.status_code == 200 and csrf
    data = {"csrf": csrf.group(1), "email": email, "name": name}
    return browser.post("/subscribe", data=data, environ_base=environ).status_code


def test_plus_tags_and_case_share_one_mailbox_budget(service: Service) -> None:
    browser = service.start()
    spellings = ["Reader+1@example.com", "reader+2@example.com", "READER@example.com", "reader+zzz@EXAMPLE.com"]
    codes = [subscribe(browser, email, client=f"198.51.{n}.1") for n, email in enumerate(spellings)]
    assert codes == [200, 200, 200, 429]
    mails = service.mails(3)
    assert len(mails) == 3
    # Counted as one mailbox, but each mail goes to the address as it was typed.
    assert [m["To"].addresses[0].addr_spec for m in mails] == ["Reader+1@example.com", "reader+2@example.com",
                                                              "READER@example.com"]  # fmt: skip
    assert subscribe(browser, "other@example.com", client="198.51.9.1") == 200  # another mailbox


def test_two_processes_and_a_restart_share_the_counts(service: Service) -> None:
    first, second = service.start(), service.start()
    codes = [subscribe(b, "twice@example.com", client=f"203.0.{n}.1") for n, b in enumerate([first, second, first])]
    assert codes == [200, 200, 200]
    assert subscribe(second, "twice@example.com", client="203.0.9.1") == 429  # the other process counted too
    service.close()
    restarted = service.start()
    assert subscribe(restarted, "twice@example.com", client="203.0.10.1") == 429  # a restart forgets nothing
    service.site.clock_now += timedelta(minutes=61)
    assert subscribe(restarted, "twice@example.com", client="203.0.11.1") == 200  # an hour on, allowed again
    assert len(service.mails(4)) == 4


def test_a_client_network_shares_one_budget(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    service = Service(site, subscribe_per_client=2)
    try:
        browser = service.start()
        same_64 = ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::abcd"]
        assert [subscribe(browser, f"v6-{n}@example.com", client=ip) for n, ip in enumerate(same_64)] == [200, 200, 429]
        assert subscribe(browser, "v6-x@example.com", client="2001:db8:1:3::1") == 200  # the next /64
        same_24 = ["192.0.2.1", "192.0.2.254", "::ffff:192.0.2.77"]
        assert [subscribe(browser, f"v4-{n}@example.com", client=ip) for n, ip in enumerate(same_24)] == [200, 200, 429]
        assert subscribe(browser, "v4-x@example.com", client="192.0.3.1") == 200  # the next /24
    finally:
        service.close()


def test_a_mailbox_gets_a_few_mails_a_day_at_most(service: Service) -> None:
    browser = service.start()
    site = service.site
    codes = [subscribe(browser, "daily@example.com", client=f"198.18.{n}.1") for n in range(4)]
    site.clock_now += timedelta(minutes=61)
    codes += [subscribe(browser, f"daily+{n}@example.com", client=f"198.18.{10 + n}.1") for n in range(3)]
    site.clock_now += timedelta(hours=5)
    codes.append(subscribe(browser, "Daily@example.com", client="198.18.20.1"))
    assert codes == [200, 200, 200, 429, 200, 200, 429, 429]  # 5 mails in 24 hours, then none
    site.clock_now += timedelta(hours=18)  # a day after the first
    assert subscribe(browser, "daily@example.com", client="198.18.21.1") == 200
    assert len(service.mails(6)) == 6


def test_old_counts_are_pruned(service: Service) -> None:
    browser = service.start()
    for n in range(3):
        assert subscribe(browser, f"old{n}@example.com", client=f"198.19.{n}.1") == 200
    service.site.clock_now += timedelta(hours=25)
    assert subscribe(browser, "new@example.com", client="198.19.9.1") == 200
    store = service.apps[0].store
    with store.engine.connect() as conn:
        left = conn.execute(select(signup_events_table.c.key)).scalars().all()
    assert sorted(left) == ["198.19.9.0/24", "new@example.com"]  # a day's worth is all that is kept


def test_mailboxes_and_networks() -> None:
    assert mailbox_key("Wang.Wei+news@Example.ORG") == mailbox_key("wang.wei@example.org") == "wang.wei@example.org"
    assert mailbox_key("+only@example.org") == "+only@example.org"
    assert client_network("192.0.2.99") == "192.0.2.0/24"
    assert client_network("::ffff:192.0.2.99") == "192.0.2.0/24"
    assert client_network("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_network("fe80::1%eth0") == "fe80::/64"
    assert client_network("unix-socket") == "unix-socket"
