"""Several web processes on one store (docs/scale.md): two `publisher serve` and one `publisher
run`, real processes on loopback ports, as nginx's `upstream` would spread readers and the
operator over them. Everything a web process decides from what another one did lives in the
store: the sign-up budgets, the embedded form's spent tokens, a confirmation clicked twice, the
console's sessions and their end, the sign-in lockout. The forms' tokens are made with the one
signing key, so a page from one process posts to the other.

Runs on both backends: SQLite takes several processes on one file as well (its writers wait for
each other). That only one of several `publisher run` schedules a store is
tests/test_scheduler.py's `test_two_processes_on_one_database_send_one_digest`; here the
scheduler runs beside the two web processes and they show none.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests
from test_smtp import free_port

from admin_session import COOKIE, PASSWORD, admin_config, make_account
from conftest import Service, Site
from publisher.store import Store

FORM_TOKEN = re.compile(r'name="csrf" value="([^"]+)"')
SIGNUPS_PER_CLIENT = 6  # [web] subscribe_per_client: this test's loopback client's budget an hour


@pytest.fixture
def services(site: Site, tmp_path: Path) -> Iterator[tuple[Service, Service, Service]]:
    """(serve A, serve B, run) on the site's store, one configuration file for all three."""
    ports = [free_port() for _ in range(3)]
    public = f"http://127.0.0.1:{ports[0]}"  # where the mails' links point: any of them would do
    web = f'\n[web]\npublic_url = "{public}"\nsubscribe_per_client = {SIGNUPS_PER_CLIENT}\n'
    site.write_config(site.mail_to_outbox() + web + admin_config(public))
    site.article("policy/a.md", "《人才十条》政策要点解读", date="2026-11-10 09:00")
    make_account(site, "editor@example.org", "editor")
    make_account(site, "owner@example.org", "admin")
    started: list[Service] = []
    try:
        for name, port, command in (("a", ports[0], "serve"), ("b", ports[1], "serve"), ("run", ports[2], "run")):
            folder = tmp_path / name  # each its own run.out and run.err
            folder.mkdir()
            started.append(Service(site.config, folder, port, command=command))
        for service in started:
            service.wait_until_serving()
        a, b, run = started
        yield a, b, run
    finally:
        for service in started:
            assert service.stop() == 0, service.output()


def test_two_serve_processes_and_a_run_share_every_limit_session_and_token(
    services: tuple[Service, Service, Service], site: Site
) -> None:
    a, b, run = services
    # One scheduler: the `run` (its first build in the background); the web processes have none.
    run.wait_until_built()
    assert run.health().json()["scheduler"]["state"] == "running"
    assert [s.health().json()["scheduler"]["state"] for s in (a, b)] == ["off", "off"]

    # The embedded form's token, made by A, spent on B: a replay on A (or B) is refused.
    token = requests.get(f"{a.base}/embed/token", timeout=10).json()["token"]
    sign_up = {"token": token, "email": "embedded@example.com"}
    assert requests.post(f"{b.base}/embed/api/subscribe", json=sign_up, timeout=10).json()["status"] == "sent"
    for again in (a, b):
        replayed = requests.post(f"{again.base}/embed/api/subscribe", json=sign_up, timeout=10)
        assert (replayed.status_code, replayed.json()["status"]) == (409, "used")

    # The sign-up budget of this client's network holds over both processes and both forms: the
    # three embedded sign-ups above (a replay spends the budget before its token is looked at)
    # and three here, then B answers 429 (and A too).
    reader = requests.Session()
    page = reader.get(f"{a.base}/subscribe", timeout=10)  # its form token and cookie, used on B too
    form = {"csrf": _token(page.text)}
    for n, service in enumerate((b, a, b), start=1):
        answer = reader.post(f"{service.base}/subscribe", data={**form, "email": f"reader{n}@example.com"}, timeout=10)
        assert answer.status_code == 200, (service.base, answer.text)
    for service in (b, a):
        limited = reader.post(f"{service.base}/subscribe", data={**form, "email": "reader4@example.com"}, timeout=10)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "3600", service.base
    assert _waiting_mails(site, "reader1@example.com", 1)[0]["Subject"]

    # A confirmation link followed on both web processes at once: confirmed once, one welcome.
    [confirmation] = _waiting_mails(site, "reader1@example.com", 1)
    link = re.search(r"http://127\.0\.0\.1:\d+(/confirm/[^\s\"<>]+)", _text(confirmation))
    assert link, _text(confirmation)
    answers: list[int] = []
    clicks = [
        threading.Thread(
            target=lambda s=s: answers.append(requests.post(s.base + link.group(1), timeout=30).status_code)
        )
        for s in (a, b)
    ]
    for click in clicks:
        click.start()
    for click in clicks:
        click.join()
    assert answers == [200, 200]
    assert len(_waiting_mails(site, "reader1@example.com", 2)) == 2  # the confirmation, then one welcome
    time.sleep(1.0)  # a second welcome would be written by now
    assert len(_mails_to(site, "reader1@example.com")) == 2

    # The console: signed in on A, used on B; signed out on B, refused on A.
    console = requests.Session()
    login = console.get(f"{a.base}/admin/login", timeout=10)
    signed_in = console.post(
        f"{a.base}/admin/login",
        data={"csrf": _token(login.text), "email": "editor@example.org", "password": PASSWORD},
        allow_redirects=False, timeout=10,
    )  # fmt: skip
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/admin/"
    kept = console.cookies[COOKIE]
    on_b = console.get(f"{b.base}/admin/account", timeout=10)
    assert on_b.status_code == 200 and "editor@example.org" in on_b.text
    out = console.post(f"{b.base}/admin/logout", data={"csrf": _token(on_b.text)}, allow_redirects=False, timeout=10)
    assert out.status_code == 303
    for service in (a, b):
        after = requests.get(f"{service.base}/admin/", cookies={COOKIE: kept}, allow_redirects=False, timeout=10)
        assert after.status_code == 303 and after.headers["Location"].startswith("/admin/login"), service.base

    # The lockout: five wrong passwords on each process lock the account (ten in a row), so its
    # right password is refused on both, as a wrong one is.
    stranger = requests.Session()
    form = {"csrf": _token(stranger.get(f"{b.base}/admin/login", timeout=10).text), "email": "owner@example.org"}
    for service in (a, b) * 5:
        wrong = stranger.post(f"{service.base}/admin/login", data={**form, "password": "not it at all"}, timeout=10)
        assert wrong.status_code == 403, service.base
    store = Store(site.store_url)
    try:
        owner = store.account_by_email("owner@example.org")
        assert owner is not None and owner.locked_until is not None
    finally:
        store.close()
    for service in (a, b):
        right = stranger.post(
            f"{service.base}/admin/login", data={**form, "password": PASSWORD}, allow_redirects=False, timeout=10
        )
        assert right.status_code == 403 and COOKIE not in right.cookies, service.base


def _token(page: str) -> str:
    found = FORM_TOKEN.search(page)
    assert found, page
    return found.group(1)


def _mails_to(site: Site, address: str) -> list[EmailMessage]:
    found = []
    for path in sorted(site.outbox.glob("*.eml")) if site.outbox.is_dir() else []:
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(mail, EmailMessage)
        if address in str(mail["To"]):
            found.append(mail)
    return found


def _waiting_mails(site: Site, address: str, count: int, seconds: float = 20) -> list[EmailMessage]:
    """The mails to `address` once there are `count` (the web processes send from a thread)."""
    deadline = time.monotonic() + seconds
    while len(found := _mails_to(site, address)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(found) == count, [str(m["Subject"]) for m in found]
    return found


def _text(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())
