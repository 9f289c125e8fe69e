"""The suppression list where mail is planned and sign-ups come in: a digest's plan leaves a
suppressed reader out, a suppressed address that signs up needs a new confirmation (and the
page does not tell), the operator's add and import refuse it; the VERP envelope sender as a
real SMTP server sees it."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any

import pytest
from test_signup import KEY, Service, confirm_link
from test_smtp import smtp_on_loopback

from conftest import Site, days_ago
from publisher.bounces.events import DELIVERY_HEADER, EventKind, MailEvent
from publisher.bounces.links import delivery_token_valid, token_delivery_id, token_from_address
from publisher.model import Subscriber, SubscriberStatus

WINDOW = ("--since", "2026-11-01", "--until", "2026-11-19")


def add_readers(site: Site, *emails: str) -> None:
    app = site.app()
    try:
        now = app.clock()
        app.store.save_subscribers(Subscriber(e, "", (), SubscriberStatus.CONFIRMED, now, "cli", now) for e in emails)
    finally:
        app.close()


def hard_bounce(site: Site, email: str) -> None:
    app = site.app()
    try:
        # A provider's webhook (its sender verified) may name a reader by address; the mailbox may not.
        bounce = MailEvent(EventKind.HARD_BOUNCE, email, "sendgrid", "550 5.1.1", site.clock_now)
        report = app.record_mail_events([bounce])
        assert report.suppressed == [email]
    finally:
        app.close()


def outbox_recipients(site: Site) -> list[str]:
    found = []
    for path in sorted(site.outbox.glob("*.eml")):
        found.append(message_from_bytes(path.read_bytes(), policy=policy.default)["To"].addresses[0].addr_spec)
    return found


def test_the_digest_plan_leaves_a_suppressed_reader_out(site: Site) -> None:
    site.write_config(site.mail_to_outbox() + '\n[bounces]\nreturn_path = "bounces@example.org"\n')
    site.article("policy/a.md", "《人才十条》政策要点解读", date="2026-11-10 09:00")
    site.build()
    add_readers(site, "a@example.com", "b@example.com", "c@example.com")
    hard_bounce(site, "b@example.com")

    sent = site.cli("digest", "send", *WINDOW)
    assert sent.exit_code == 0, sent.output
    assert "planned 2; now sent 2" in sent.output and "left out" not in sent.output  # b is bounced now
    assert sorted(outbox_recipients(site)) == ["a@example.com", "c@example.com"]
    for path in site.outbox.glob("*.eml"):  # as the receiving server would have written it
        data = path.read_bytes()
        token = str(message_from_bytes(data, policy=policy.default)[DELIVERY_HEADER])
        assert data.startswith(f"Return-Path: <bounces+{token}@example.org>\r\nFrom: ".encode())

    # A reader confirmed while on the list (an operator's SQL, a restored store) is still left
    # out, and the plan says so.
    app = site.app()
    try:
        b = app.store.subscriber("b@example.com")
        assert b is not None
        app.store.save_subscribers([replace(b, status=SubscriberStatus.CONFIRMED)])
    finally:
        app.close()
    again = site.cli("digest", "send", "--since", "2026-11-02", "--until", "2026-11-19")
    assert again.exit_code == 0, again.output
    assert "1 confirmed reader(s) left out: on the suppression list (`publisher bounces suppressed`)" in again.output
    assert "planned 2; now sent 2" in again.output
    assert "b@example.com" not in outbox_recipients(site)

    dry = site.cli("digest", "send", "--dry-run", "--out", str(site.root / "dry"), *WINDOW)
    assert "2 message(s) written" in dry.output, dry.output


def test_a_suppressed_address_signs_up_again_only_by_confirming(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    service = Service(site, subscribe_per_address=5, subscribe_per_client=50, confirmation_mails_per_day=5)
    try:
        browser = service.start()
        add_readers(site, "back@example.com", "still@example.com")
        hard_bounce(site, "back@example.com")
        store = service.apps[0].store
        # `still` is confirmed and on the list (say, a complaint while the rule said `none`, then changed).
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                "insert into suppressions (email_key, kind, reason, since) values ('still@example.com', 'complaint', "
                "'abuse', '2026-11-20 08:00:00')"
            )

        def page(email: str) -> str:
            form = browser.get("/subscribe", environ_base={"REMOTE_ADDR": "192.0.2.10"}).get_data(as_text=True)
            csrf = re.search(r'name="csrf" value="([^"]+)"', form)
            assert csrf
            data = {"csrf": csrf.group(1), "email": email, "name": ""}
            answer = browser.post("/subscribe", data=data, environ_base={"REMOTE_ADDR": "192.0.2.10"})
            assert answer.status_code == 200
            return answer.get_data(as_text=True).replace(email, "ADDRESS")

        pages = [page("back@example.com"), page("still@example.com"), page("new@example.com")]
        masked = [re.sub(r'name="csrf" value="[^"]+"', "", p) for p in pages]
        assert masked[0] == masked[1] == masked[2]  # nothing tells a suppressed address from a new one
        mails = {m["To"].addresses[0].addr_spec: m for m in service.mails(3)}
        assert set(mails) == {"back@example.com", "still@example.com", "new@example.com"}
        for mail in mails.values():  # each a confirmation, none a preferences link
            assert "/confirm/" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert store.subscriber("back@example.com").status is SubscriberStatus.BOUNCED  # type: ignore[union-attr]
        assert store.suppressed_keys() == {"back@example.com", "still@example.com"}

        with caplog.at_level(logging.INFO, logger="publisher.signup"):
            for who in ("back@example.com", "still@example.com"):
                assert browser.post(confirm_link(mails[who])).status_code == 200
        assert store.suppressed_keys() == set()
        for who in ("back@example.com", "still@example.com"):
            reader = store.subscriber(who)
            assert reader is not None and reader.status is SubscriberStatus.CONFIRMED
            held = store.suppression(who)
            assert held is not None and held.lifted_by == "re-subscribed" and held.lifted_at == site.clock_now
        assert caplog.text.count("off the suppression list") == 2
    finally:
        service.close()


def test_add_refuses_and_import_leaves_out_a_suppressed_address(site: Site) -> None:
    add_readers(site, "gone@example.com")
    hard_bounce(site, "gone@example.com")
    app = site.app()
    try:  # erased since: the suppression outlives the subscriber
        assert app.store.delete_subscriber("gone@example.com")
    finally:
        app.close()
    refused = site.cli("subscribers", "add", "Gone@example.com")
    assert refused.exit_code == 1
    assert "Gone@example.com is on the suppression list since 2026-11-20 (hard bounce: 550 5.1.1)" in refused.output
    assert "publisher bounces unsuppress Gone@example.com" in refused.output

    csv = site.root / "list.csv"
    csv.write_text("email,name\ngone@example.com,甲\nfresh@example.com,乙\n", encoding="utf-8")
    imported = site.cli("subscribers", "import", str(csv))
    assert imported.exit_code == 0, imported.output
    assert "added 1," in imported.output and "left out as suppressed 1, rejected 0" in imported.output
    assert "gone@example.com" not in site.cli("subscribers", "list").output

    assert site.cli("bounces", "unsuppress", "gone@example.com").exit_code == 0
    assert site.cli("subscribers", "add", "gone@example.com").exit_code == 0


class Envelopes:
    """An SMTP server keeping each message's envelope sender, recipient and bytes."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append((envelope.mail_from, envelope.rcpt_tos[0], envelope.original_content))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Envelopes, int]]:
    box = Envelopes()
    with smtp_on_loopback(box) as port:
        yield box, port


def test_the_envelope_sender_carries_the_delivery_token(
    site: Site, smtp_server: tuple[Envelopes, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    box, port = smtp_server
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    site.write_config(
        f"""
[mail]
transport = "smtp"
[mail.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
[digest]
sender = "高新院 <news@example.org>"
messages_per_second = 0
[bounces]
return_path = "bounces@example.org"
"""
    )
    site.article("policy/a.md", "《人才十条》政策要点解读", date=days_ago(2))
    site.build()
    add_readers(site, "a@example.com", "b@example.com")
    today = datetime.now(UTC).date()
    sent = site.cli("digest", "send", "--since", f"{today - timedelta(days=7)}", "--until", f"{today}")
    assert sent.exit_code == 0, sent.output

    assert sorted(rcpt for _f, rcpt, _d in box.received) == ["a@example.com", "b@example.com"]
    app = site.app()
    try:
        for mail_from, rcpt, data in box.received:
            message = message_from_bytes(data, policy=policy.default)
            token = str(message[DELIVERY_HEADER])
            assert mail_from == f"bounces+{token}@example.org"  # VERP: the bounce names the delivery
            assert str(message["From"]) == "高新院 <news@example.org>"  # the From header stays
            assert token_from_address(mail_from, "bounces@example.org") == token
            delivery = app.store.delivery_ref(token_delivery_id(token) or 0)
            assert delivery is not None and delivery.email_key == rcpt
            assert delivery_token_valid(app.signing_key, token, rcpt)

        # A DSN to the VERP address of a's delivery, naming only a forwarded address.
        a_from = next(f for f, rcpt, _d in box.received if rcpt == "a@example.com")
        token = token_from_address(a_from, "bounces@example.org")
        bounce = MailEvent(EventKind.HARD_BOUNCE, "a.fwd@elsewhere.example", "imap", "550 5.1.1", site.clock_now,
                           delivery_token=token)  # fmt: skip
        assert app.record_mail_events([bounce]).suppressed == ["a@example.com"]
    finally:
        app.close()


def test_a_return_path_that_is_not_a_plain_address_is_refused(site: Site) -> None:
    for bad in ("Bounces <bounces@example.org>", "bounces", "退信@example.org", "x" * 41 + "@example.org"):
        site.write_config(f'\n[bounces]\nreturn_path = "{bad}"\n')
        result = site.cli("check")
        assert result.exit_code == 2, (bad, result.output)
        assert "bounces.return_path" in result.output
