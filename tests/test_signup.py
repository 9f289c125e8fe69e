"""The subscribe form: against subscribe-bombing, budgets per mailbox (case and +tags folded) and
per client network (IPv4 /24, IPv6 /64) and a daily cap on mails per mailbox, all counted in the
store, so two app instances and a restart share them; and what a request asks for stays
unconfirmed until the owner follows the link. Real apps over one real SQLite store."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from functools import partial

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, insert, select, update
from werkzeug.datastructures import MultiDict

from conftest import Site
from publisher.app import App
from publisher.model import Subscriber, SubscriberStatus
from publisher.signup import client_network, mailbox_key
from publisher.store import Budget, SignupRequest, Store
from publisher.store.schema import signup_events_table, subscribers_table, suppressions_table
from publisher.subscriptions import choose_categories, unsubscribe
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
    return post_form(browser, [("email", email), ("name", name)], client)


def post_form(browser: FlaskClient, data: list[tuple[str, str]], client: str = "192.0.2.10") -> int:
    """Post the form's fields `data` (a key may repeat) with this browser's CSRF token."""
    environ = {"REMOTE_ADDR": client}
    form = browser.get("/subscribe", environ_base=environ)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.get_data(as_text=True))
    assert form.status_code == 200 and csrf
    form_data = MultiDict([("csrf", csrf.group(1)), *data])
    return browser.post("/subscribe", data=form_data, environ_base=environ).status_code


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


# --- what the form asks for stays unconfirmed until the owner confirms ------------------------


def confirm_link(mail: EmailMessage) -> str:
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    match = re.search(r"http://127\.0\.0\.1:8080(/confirm/\S+)", text)
    assert match, text
    return match.group(1)


def stored(service: Service, email_key: str) -> Subscriber:
    found = service.apps[-1].store.subscriber(email_key)
    assert found is not None
    return found


def test_categories_are_each_configured_slug_once(service: Service) -> None:
    browser = service.start()
    flood = [("category", "tech")] * 4000 + [("category", "nosuch"), ("category", "policy"), ("category", "tech")]
    assert post_form(browser, [("email", "flood@example.com"), *flood]) == 200
    link = confirm_link(service.mails(1)[0])
    done = browser.post(link)
    assert done.status_code == 200
    reader = stored(service, "flood@example.com")
    assert reader.categories == ("policy", "tech")  # in the configured order, each once
    manage = re.search(r'href="http://127\.0\.0\.1:8080(/preferences/[^"]+)"', done.get_data(as_text=True))
    assert manage
    browser.post(manage.group(1), data=MultiDict([("action", "save"), *([("category", "policy")] * 3000)]))
    assert stored(service, "flood@example.com").categories == ("policy",)


def test_a_list_stored_with_repeats_reads_each_category_once(service: Service) -> None:
    service.start()
    app, now = service.apps[-1], service.site.clock_now
    app.store.save_subscribers([Subscriber("old@example.com", "", (), SubscriberStatus.CONFIRMED, now, "web", now)])
    with app.store.engine.begin() as conn:  # as 0.1.0 stored a flooded form: the same slug many times
        conn.execute(update(subscribers_table).values(categories='["tech", "tech", "policy", "tech"]'))
    assert stored(service, "old@example.com").categories == ("tech", "policy")


def test_a_second_request_changes_nothing_before_the_owner_confirms(service: Service) -> None:
    owner, stranger = service.start(), service.start()
    asked = [("email", "Reader@Example.com"), ("name", "王小明"), ("category", "policy")]
    assert post_form(owner, asked, client="198.51.100.1") == 200
    before = stored(service, "reader@example.com")
    assert before.status is SubscriberStatus.PENDING and before.name == "" and before.categories == ()
    forged = [("email", "READER@example.com"), ("name", "=HYPERLINK(evil)"), ("category", "tech")]
    assert post_form(stranger, forged, client="203.0.113.1") == 200
    assert stored(service, "reader@example.com") == before  # spelling, name, categories: untouched
    first, second = service.mails(2)

    # The owner's link shows what confirming saves, and saves exactly that.
    shown = owner.get(confirm_link(first)).get_data(as_text=True)
    assert "Reader@example.com" in shown and "王小明" in shown and "政策解读" in shown and "HYPERLINK" not in shown
    assert stored(service, "reader@example.com") == before  # a GET changes nothing
    assert owner.post(confirm_link(first)).status_code == 200
    after = stored(service, "reader@example.com")
    assert (after.email, after.name, after.categories, after.status) == (
        "Reader@example.com", "王小明", ("policy",), SubscriberStatus.CONFIRMED)  # fmt: skip
    # The stranger's request (its mail went to the owner too) confirms nothing now: its link
    # shows the owner that they are subscribed, as they spelt their address, not as it asked.
    for answer in (stranger.get(confirm_link(second)), stranger.post(confirm_link(second))):
        page = answer.get_data(as_text=True)
        assert answer.status_code == 200 and "/preferences/" in page, page
        assert "Reader@example.com" in page and "READER@example.com" not in page and "HYPERLINK" not in page
    assert stored(service, "reader@example.com") == after


def test_a_request_link_confirms_only_its_own_request(service: Service) -> None:
    browser = service.start()
    assert post_form(browser, [("email", "one@example.com"), ("name", "甲")]) == 200
    assert post_form(browser, [("email", "two@example.com"), ("name", "乙")], client="192.0.2.11") == 200
    one, two = service.mails(2)
    assert browser.post(confirm_link(two)).status_code == 200
    assert stored(service, "two@example.com").name == "乙"
    assert stored(service, "one@example.com").status is SubscriberStatus.PENDING
    token = confirm_link(one).rsplit("/", 1)[1]
    assert browser.post(f"/confirm/{token[:-2]}{'AA' if not token.endswith('AA') else 'BB'}").status_code == 404


def test_a_link_followed_again_shows_the_reader_subscribed_and_changes_nothing(service: Service) -> None:
    first_process, second_process = service.start(), service.start()
    assert post_form(first_process, [("email", "Twice@example.com"), ("name", "再点"), ("category", "tech")]) == 200
    link = confirm_link(service.mails(1)[0])
    assert first_process.post(link).status_code == 200
    confirmed = stored(service, "twice@example.com")
    assert confirmed.id is not None and confirmed.categories == ("tech",)
    choose_categories(service.apps[-1].store, confirmed.id, ("policy",))  # the reader chose again since
    after = stored(service, "twice@example.com")

    # A reload, a second click on another process, the link opened again: subscribed, no form.
    for answer in (first_process.post(link), second_process.post(link), second_process.get(link)):
        page = answer.get_data(as_text=True)
        assert answer.status_code == 200 and "/preferences/" in page and "<form" not in page, page
    assert stored(service, "twice@example.com") == after != confirmed  # the request's sections stay gone
    assert len(service.mails(3)) == 2  # the confirmation and one welcome

    # While the address is suppressed (a complaint, bounces) it does not say they are subscribed,
    # and changes nothing: the form signs them up again.
    suppressed = {"email_key": "twice@example.com", "kind": "complaint", "reason": "test", "since": datetime.now()}
    with service.apps[-1].store.engine.begin() as conn:
        conn.execute(insert(suppressions_table).values(**suppressed))
    assert second_process.get(link).status_code == second_process.post(link).status_code == 404
    assert service.apps[-1].store.is_suppressed("twice@example.com")
    with service.apps[-1].store.engine.begin() as conn:
        conn.execute(delete(suppressions_table))

    # After an opt-out the link cannot undo it, nor say they are subscribed.
    unsubscribe(service.apps[-1].store, confirmed.id, datetime.now(UTC), "web")
    assert second_process.get(link).status_code == second_process.post(link).status_code == 404
    assert stored(service, "twice@example.com").status is SubscriberStatus.UNSUBSCRIBED


def test_the_confirmation_mail_greets_nobody(service: Service) -> None:
    browser = service.start()
    assert post_form(browser, [("email", "greet@example.com"), ("name", "Someone Else")]) == 200
    [mail] = service.mails(1)
    assert str(mail["To"]) == "greet@example.com"  # no display name from an anonymous form
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Someone Else" not in text and "Someone Else" not in mail.as_string()


def test_budgets_and_requests_on_each_database(store_url: str) -> None:
    now = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    store = Store(store_url)
    try:
        budget = [Budget("address", "a@example.com", 2, timedelta(hours=1))]
        spent = [store.spend_budgets(budget, now + timedelta(minutes=n), keep=timedelta(days=1)) for n in range(3)]
        assert spent == [True, True, False]
        assert store.spend_budgets(budget, now + timedelta(minutes=61), keep=timedelta(days=1))
        first = store.add_signup_request("A@example.com", "甲", ("tech",), now, keep=timedelta(days=7))
        second = store.add_signup_request("a@example.com", "乙", (), now, keep=timedelta(days=7))
        assert store.signup_request(first.id) == first and second.id > first.id
        assert store.signup_request_email_key(first.id) == "a@example.com"
        expired = store.add_signup_request("b@example.com", "乙", (), now - timedelta(days=8), keep=timedelta(days=7))
        assert store.signup_request(expired.id) == expired
        confirmed = Subscriber("A@example.com", "甲", ("tech",), SubscriberStatus.CONFIRMED, now, "web", now)
        assert store.confirm_signup(first.id, confirmed, timedelta(days=7))
        assert store.signup_request(expired.id) is None  # a confirmation prunes too, not only a sign-up
        # Kept until their links expire, every request for the address marked: none confirms again.
        assert [store.signup_request(r.id) for r in (first, second)] == [
            replace(first, confirmed_at=now), replace(second, confirmed_at=now)]  # fmt: skip
        assert store.confirm_signup(first.id, confirmed, timedelta(days=7)) is None  # once
        assert store.confirm_signup(second.id, confirmed, timedelta(days=7)) is None
        third = store.add_signup_request("a@example.com", "丙", (), now, keep=timedelta(days=7))
        assert third.id > second.id  # ids are never reused
        found = store.subscriber("a@example.com")
        assert found is not None and (found.name, found.status) == ("甲", SubscriberStatus.CONFIRMED)
    finally:
        store.close()


def test_two_requests_for_one_address_confirmed_at_once_confirm_it_once(store_url: str) -> None:
    """Two sign-up mails' links (two requests for one address) followed at the same moment, 20
    times over: each pair confirms the address once and neither click fails (on PostgreSQL each
    marked its own request, then waited for the other's: a deadlock, before they were locked in
    order)."""
    now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    store = Store(store_url)
    try:
        answers, week = [], timedelta(days=7)
        for n in range(20):
            pair = [store.add_signup_request(f"pair{n}@example.com", name, (), now, week) for name in "甲乙"]
            answers.append(sorted(at_once(*(partial(follow, store, request, now) for request in pair)), key=str))
        assert answers == [[None, True]] * 20  # the other's request was marked by the first: it saves nothing
    finally:
        store.close()


def test_an_erasure_and_a_confirmation_at_once_both_go_through(store_url: str) -> None:
    """The operator erases an address while its owner follows the link, 20 times over: neither
    fails (on PostgreSQL the erasure locked the subscriber, then the requests, and the
    confirmation the other way round: a deadlock, before both locked the requests first)."""
    now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    store = Store(store_url)
    try:
        for n in range(20):
            email = f"erased{n}@example.com"
            store.save_subscribers([Subscriber(email, "", (), SubscriberStatus.PENDING, now, "web", now)])
            request = store.add_signup_request(email, "甲", (), now, timedelta(days=7))
            confirmed, erased = at_once(partial(follow, store, request, now), partial(store.delete_subscriber, email))
            # In either order the address is gone: an erasure after the confirmation deletes it,
            # a confirmation after the erasure finds its request gone and saves nothing.
            assert erased is True and confirmed in (True, None), (confirmed, erased)
            assert store.subscriber(email) is None and store.signup_request(request.id) is None
    finally:
        store.close()


def follow(store: Store, request: SignupRequest, now: datetime) -> bool | None:
    """store.confirm_signup as following the request's link calls it."""
    confirmed = Subscriber(request.email, request.name, (), SubscriberStatus.CONFIRMED, now, "web", now)
    return store.confirm_signup(request.id, confirmed, timedelta(days=7))


def at_once(*calls: Callable[[], object]) -> list[object]:
    """Each call in its own thread, all let go at the same moment: their answers, in the calls'
    order; an exception in one is raised here."""
    together = threading.Barrier(len(calls))
    answers: list[object] = [None] * len(calls)
    failures: list[BaseException] = []

    def run(at: int, call: Callable[[], object]) -> None:
        together.wait()
        try:
            answers[at] = call()
        except BaseException as exc:  # noqa: BLE001 - raised again below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(at, call)) for at, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return answers


def test_a_confirmed_readers_entry_never_changes_through_the_form(service: Service) -> None:
    browser = service.start()
    assert post_form(browser, [("email", "kept@example.com"), ("name", "本人"), ("category", "tech")]) == 200
    assert browser.post(confirm_link(service.mails(1)[0])).status_code == 200
    before = stored(service, "kept@example.com")
    forged = [("email", "KEPT@example.com"), ("name", "冒名"), ("category", "policy")]
    assert post_form(browser, forged, client="203.0.113.9") == 200
    assert stored(service, "kept@example.com") == before
    manage = service.mails(2)[1]  # the owner gets their preferences link, to their address as stored
    assert manage["To"].addresses[0].addr_spec == "kept@example.com"
    assert "/preferences/" in manage.get_body(("plain",)).get_content()  # type: ignore[union-attr]
