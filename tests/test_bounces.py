"""Bounces and complaints: events kept once with their delivery, the rules and their windows,
the suppression list, on real SQLite and PostgreSQL stores; the token's signature; the CLI."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import text

from conftest import Site
from publisher.app import App
from publisher.bounces.events import DELIVERY_HEADER, EventKind, MailEvent
from publisher.bounces.links import (
    delivery_token_valid,
    make_delivery_token,
    token_delivery_id,
    token_from_address,
    verp_address,
)
from publisher.bounces.rules import DEFAULT_RULES, Action, Rule, count_in_window, decide, status_after, window_start
from publisher.model import Subscriber, SubscriberStatus
from publisher.newsletter import Newsletter
from publisher.transports.outbox import OutboxTransport

KEY = b"bounce-test-signing-key-0123456789"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def app_on(site: Site, store_url: str, extra: str = "") -> App:
    """The site's App over `store_url` (SQLite or PostgreSQL), on the site's clock."""
    site.write_config(extra)
    text = site.config.read_text(encoding="utf-8").replace(site.store_url, store_url)
    site.config.write_text(text, encoding="utf-8")
    return site.app()


def readers(app: App, *emails: str) -> None:
    now = app.clock()
    app.store.save_subscribers(Subscriber(e, "", (), SubscriberStatus.CONFIRMED, now, "import", now) for e in emails)


def event(kind: EventKind, email: str, at: datetime = T0, **more: str) -> MailEvent:
    """An event from a provider's (verified) webhook by default: those may name a reader by address."""
    source, reason = more.pop("source", "mailgun"), more.pop("reason", "550 5.1.1 user unknown")
    return MailEvent(kind, email, source, reason, at, **more)


def status(app: App, email: str) -> SubscriberStatus:
    found = app.store.subscriber(email)
    assert found is not None
    return found.status


# --- the token, pure --------------------------------------------------------------------------


def test_the_token_names_its_delivery_and_holds_only_for_its_address() -> None:
    token = make_delivery_token(KEY, 123456, "reader@example.com")
    assert token.startswith("d2n9c-") and len(token) == 22 and token == token.lower()
    assert token_delivery_id(token) == 123456 and token_delivery_id(token.upper()) == 123456
    assert delivery_token_valid(KEY, token, "reader@example.com")
    assert not delivery_token_valid(KEY, token, "other@example.com")  # another address: a restored store's id
    assert not delivery_token_valid(b"another-key-of-sixteen-bytes", token, "reader@example.com")
    forged = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert token_delivery_id(forged) == 123456 and not delivery_token_valid(KEY, forged, "reader@example.com")
    for bad in ("", "d-abc", "d00-" + "a" * 16, "x1-" + "a" * 16, "d1-" + "a" * 15, "d1-" + "1" * 16):
        assert token_delivery_id(bad) is None and not delivery_token_valid(KEY, bad, "reader@example.com")


def test_verp_addresses_carry_the_token_and_give_it_back() -> None:
    token = make_delivery_token(KEY, 7, "reader@example.com")
    address = verp_address("bounces@example.org", token)
    assert address == f"bounces+{token}@example.org"
    assert token_from_address(f"<{address.upper()}>", "Bounces@Example.org") == token
    assert token_from_address("bounces@example.org", "bounces@example.org") is None
    assert token_from_address(f"other+{token}@example.org", "bounces@example.org") is None
    assert token_from_address("bounces+not-a-token@example.org", "bounces@example.org") is None


def test_the_rules_count_within_their_window_and_change_only_receiving_readers() -> None:
    soft = DEFAULT_RULES[EventKind.SOFT_BOUNCE]
    assert (decide(soft, 2), decide(soft, 3), decide(soft, 4)) == (Action.NONE, Action.SUPPRESS, Action.SUPPRESS)
    assert window_start(soft, T0, None) == T0 - timedelta(days=30)
    assert window_start(soft, T0, T0 - timedelta(days=2)) == T0 - timedelta(days=2)  # lifted since
    confirmed, pending = SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING
    assert status_after(EventKind.HARD_BOUNCE, Action.SUPPRESS, confirmed) is SubscriberStatus.BOUNCED
    assert status_after(EventKind.COMPLAINT, Action.SUPPRESS, pending) is SubscriberStatus.UNSUBSCRIBED
    assert status_after(EventKind.HARD_BOUNCE, Action.UNSUBSCRIBE, confirmed) is SubscriberStatus.UNSUBSCRIBED
    assert status_after(EventKind.HARD_BOUNCE, Action.SUPPRESS, SubscriberStatus.UNSUBSCRIBED) is None
    assert status_after(EventKind.COMPLAINT, Action.NONE, confirmed) is None
    # The defaults: hard 1 -> suppress; soft 3 in 30 days; complaint 1; unsubscribe 1.
    assert DEFAULT_RULES[EventKind.HARD_BOUNCE] == Rule(1, 365, Action.SUPPRESS)
    assert DEFAULT_RULES[EventKind.SOFT_BOUNCE] == Rule(3, 30, Action.SUPPRESS)
    assert DEFAULT_RULES[EventKind.COMPLAINT] == Rule(1, 365, Action.SUPPRESS)
    assert DEFAULT_RULES[EventKind.UNSUBSCRIBE] == Rule(1, 365, Action.UNSUBSCRIBE)


def test_events_count_by_their_own_dates_whatever_order_they_arrive_in() -> None:
    soft = DEFAULT_RULES[EventKind.SOFT_BOUNCE]
    day = [T0 + timedelta(days=n) for n in range(120)]
    # Newest first, as a mailbox may hand them over: the third still finds the other two.
    assert count_in_window(soft, day[45], [day[45]]) == 1
    assert count_in_window(soft, day[40], [day[40], day[45]]) == 2
    assert count_in_window(soft, day[20], [day[20], day[40], day[45]]) == 3
    # A late one from day 0 shares no 30 days with days 40 and 45 ...
    assert count_in_window(soft, day[0], [day[0], day[20], day[40], day[45]]) == 2
    # ... and the fullest span holding an event counts, not merely the days before it.
    assert count_in_window(soft, day[10], [day[0], day[10], day[35], day[39]]) == 3
    assert count_in_window(soft, day[100], [day[100]] * 4) == 4


# --- the rules on real stores -----------------------------------------------------------------


def test_each_kind_does_what_its_rule_says_and_an_event_is_kept_once(site: Site, store_url: str) -> None:
    app = app_on(site, store_url)
    try:
        readers(app, "hard@example.com", "spam@example.com", "leave@example.com")
        report = app.record_mail_events(
            [
                event(EventKind.HARD_BOUNCE, "Hard@Example.com", event_id="ev-1", source="mailgun"),
                event(EventKind.HARD_BOUNCE, "hard@example.com", event_id="ev-1", source="mailgun"),  # sent again
                event(EventKind.HARD_BOUNCE, "hard@example.com", event_id="ev-1", source="sendgrid"),  # not the same
                event(EventKind.COMPLAINT, "spam@example.com", reason="abuse", raw='{"type": "Complaint"}'),
                event(EventKind.UNSUBSCRIBE, "leave@example.com", reason="list-unsubscribe"),
                event(EventKind.COMPLAINT, "stranger@example.com", reason="abuse"),
            ]
        )
        assert (report.recorded, report.duplicates, report.strangers) == (5, 1, 1)
        assert report.suppressed == ["hard@example.com", "spam@example.com"]
        assert report.unsubscribed == ["leave@example.com"]
        assert [o.outcome for o in report.outcomes][1:3] == [
            "duplicate: kept before", "suppressed already (2 of 1 within 365 days)"]  # fmt: skip

        assert status(app, "hard@example.com") is SubscriberStatus.BOUNCED
        assert app.store.subscriber("hard@example.com").status_via == "hard bounce: mailgun"  # type: ignore[union-attr]
        assert status(app, "spam@example.com") is SubscriberStatus.UNSUBSCRIBED
        assert status(app, "leave@example.com") is SubscriberStatus.UNSUBSCRIBED
        assert app.store.suppressed_keys() == {"hard@example.com", "spam@example.com"}  # not an unsubscribe
        held = app.store.suppression("spam@example.com")
        assert held is not None and held.kind is EventKind.COMPLAINT and held.reason == "abuse" and held.active

        events = app.store.mail_events()
        newest_first = ["stranger", "leave", "spam", "hard", "hard"]
        assert [e.email_key for e in events] == [f"{name}@example.com" for name in newest_first]
        stranger, _leave, spam, *_ = events
        assert stranger.linked_by == "unknown" and stranger.outcome == "kept: not a reader of ours"
        assert app.store.suppression("stranger@example.com") is None
        assert spam.linked_by == "address" and spam.delivery_id is None and spam.occurred == T0
        assert held.mail_event_id == spam.id
    finally:
        app.close()


def test_soft_bounces_count_within_thirty_days_and_not_before_a_lift(site: Site, store_url: str) -> None:
    app = app_on(site, store_url)
    try:
        readers(app, "full@example.com")

        def soft(day: int) -> str:
            at = T0 + timedelta(days=day)
            site.clock_now = at
            report = app.record_mail_events([event(EventKind.SOFT_BOUNCE, "full@example.com", at, reason="452 4.2.2")])
            return report.outcomes[0].outcome

        assert soft(0) == "counted: 1 of 3 within 30 days"
        assert soft(20) == "counted: 2 of 3 within 30 days"
        assert soft(40) == "counted: 2 of 3 within 30 days"  # day 0 is out of the window
        assert status(app, "full@example.com") is SubscriberStatus.CONFIRMED
        assert soft(45) == "suppressed, reader bounced (3 of 3 within 30 days)"  # days 20, 40, 45
        assert app.store.suppressed_keys() == {"full@example.com"}

        assert app.store.lift_suppression("full@example.com", T0 + timedelta(days=45, hours=1), "operator")
        assert not app.store.lift_suppression("full@example.com", T0 + timedelta(days=46), "operator")
        assert soft(46) == "counted: 1 of 3 within 30 days"  # those before the lift count no more
        held = app.store.suppression("full@example.com")
        assert held is not None and not held.active and held.lifted_by == "operator"
        assert [s.email_key for s in app.store.suppressions(include_lifted=True)] == ["full@example.com"]
        assert app.store.suppressions() == []
    finally:
        app.close()


def test_concurrent_events_for_one_reader_are_counted_one_after_the_other(site: Site, store_url: str) -> None:
    app = app_on(site, store_url)
    try:
        readers(app, "busy@example.com")
        start = threading.Barrier(6)
        outcomes: list[str] = []

        def post(n: int) -> None:
            start.wait()
            bounce = event(EventKind.SOFT_BOUNCE, "busy@example.com", T0 + timedelta(minutes=n), reason=f"452 #{n}")
            outcomes.extend(o.outcome for o in app.record_mail_events([bounce]).outcomes)

        threads = [threading.Thread(target=post, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(outcomes) == 6
        assert sorted(outcomes)[:3] == ["counted: 1 of 3 within 30 days", "counted: 2 of 3 within 30 days",
                                        "suppressed already (4 of 3 within 30 days)"]  # fmt: skip
        assert sum(o.startswith("suppressed, reader bounced") for o in outcomes) == 1
        assert app.store.suppressed_keys() == {"busy@example.com"}
    finally:
        app.close()


def test_configured_rules_replace_the_defaults(site: Site, store_url: str) -> None:
    rules = """
[bounces.rules.hard]
count = 2
within_days = 7
action = "unsubscribe"
[bounces.rules.complaint]
count = 1
within_days = 365
action = "none"
"""
    app = app_on(site, store_url, rules)
    try:
        readers(app, "a@example.com", "b@example.com")
        first = app.record_mail_events([event(EventKind.HARD_BOUNCE, "a@example.com")])
        assert first.outcomes[0].outcome == "counted: 1 of 2 within 7 days"
        second = app.record_mail_events([event(EventKind.HARD_BOUNCE, "a@example.com", T0 + timedelta(days=6))])
        assert second.unsubscribed == ["a@example.com"] and second.suppressed == []
        assert status(app, "a@example.com") is SubscriberStatus.UNSUBSCRIBED
        complaint = app.record_mail_events([event(EventKind.COMPLAINT, "b@example.com")])
        assert complaint.outcomes[0].outcome == "counted: 1 of 1 within 365 days"
        assert status(app, "b@example.com") is SubscriberStatus.CONFIRMED and not app.store.suppressed_keys()
    finally:
        app.close()


# --- linking events to the deliveries of a real digest ----------------------------------------


def sent_digest(site: Site, store_url: str, *emails: str) -> tuple[App, dict[str, bytes]]:
    """A digest sent through the outbox to `emails`; the app and each reader's .eml bytes."""
    app = app_on(site, store_url, site.mail_to_outbox())
    site.article("policy/a.md", "《人才十条》政策要点解读", date="2026-11-10 09:00")
    site.build()
    readers(app, *emails)
    letters = Newsletter(app)
    plan = letters.plan(letters.window(date(2026, 11, 1), date(2026, 11, 19)))
    report = letters.send(plan.digest, OutboxTransport(site.outbox))
    assert report.sent == len(emails)
    by_reader = {}
    for path in sorted(site.outbox.glob("*.eml")):
        data = path.read_bytes()
        by_reader[message_from_bytes(data, policy=policy.default)["To"].addresses[0].addr_spec] = data
    return app, by_reader


def test_an_event_finds_its_delivery_by_token_message_id_or_provider_id(site: Site, store_url: str) -> None:
    app, mails = sent_digest(site, store_url, "a@example.com", "b@example.com", "c@example.com")
    try:
        parsed = {who: message_from_bytes(data, policy=policy.default) for who, data in mails.items()}
        token = str(parsed["a@example.com"][DELIVERY_HEADER])
        assert token_delivery_id(token) is not None and "Return-Path" not in parsed["a@example.com"]
        message_id = str(parsed["b@example.com"]["Message-ID"])
        with app.store.engine.connect() as conn:
            rows = dict(conn.execute(text("select email_key, provider_id from deliveries")).all())
        report = app.record_mail_events(
            [
                # A forwarded mailbox's bounce names another address: the delivery's counts.
                event(EventKind.SOFT_BOUNCE, "forwarded@elsewhere.example", delivery_token=token),
                event(EventKind.SOFT_BOUNCE, "", message_id=message_id.strip("<>")),
                event(EventKind.SOFT_BOUNCE, "c@example.com", provider_id=rows["c@example.com"], source="ses"),
            ]
        )
        events = {e.email_key: e for e in app.store.mail_events()}
        assert set(events) == {"a@example.com", "b@example.com", "c@example.com"} and report.strangers == 0
        assert [events[k].linked_by for k in sorted(events)] == ["token", "message_id", "provider_id"]
        for key, found in events.items():
            ref = app.store.delivery_by_message_id(str(parsed[key]["Message-ID"]))
            assert ref is not None and found.delivery_id == ref.id and found.digest_id == ref.digest_id
    finally:
        app.close()


def test_a_batch_calls_one_provider_id_links_only_the_reader_the_event_names(site: Site, store_url: str) -> None:
    """SendGrid's and Mailgun's batch call gives one id to every reader in it: a complaint
    naming reader B by that id alone must not link (and suppress) reader A."""
    app, _mails = sent_digest(site, store_url, "a@example.com", "b@example.com")
    try:
        with app.store.engine.begin() as conn:  # what a batch call of the two records
            conn.execute(text("update deliveries set provider_id = 'sg-batch-1'"))
            ids = dict(conn.execute(text("select email_key, id from deliveries")).all())
        report = app.record_mail_events(
            [
                event(EventKind.COMPLAINT, "B@example.com", provider_id="sg-batch-1", source="sendgrid"),
                event(EventKind.SOFT_BOUNCE, "other@example.com", provider_id="sg-batch-1", source="sendgrid"),
            ]
        )
        assert report.suppressed == ["b@example.com"]
        assert status(app, "a@example.com") is SubscriberStatus.CONFIRMED
        by_key = {e.email_key: e for e in app.store.mail_events()}
        assert by_key["b@example.com"].delivery_id == ids["b@example.com"]
        assert by_key["b@example.com"].linked_by == "provider_id"
        assert by_key["other@example.com"].delivery_id is None  # naming neither reader: linked to none
    finally:
        app.close()


def test_one_message_counts_once_however_often_it_is_reported(site: Site, store_url: str) -> None:
    """Mailgun reports a temporary failure at each retry, and one DSN may name several
    recipients of one message (one token): a soft bounce counts per delivery, not per report."""
    app, mails = sent_digest(site, store_url, "a@example.com", "b@example.com")
    try:
        token = str(message_from_bytes(mails["a@example.com"], policy=policy.default)[DELIVERY_HEADER])
        retries = [
            event(EventKind.SOFT_BOUNCE, "a@example.com", T0 + timedelta(hours=n), delivery_token=token,
                  event_id=f"mailgun-retry-{n}", reason="421 4.7.0 try again later")
            for n in range(3)
        ]  # fmt: skip
        dsn_recipients = [
            event(EventKind.SOFT_BOUNCE, address, T0 + timedelta(hours=4), delivery_token=token, source="imap",
                  event_id=f"dsn-1/{address}")
            for address in ("a@example.com", "forwarded@elsewhere.example")
        ]  # fmt: skip
        report = app.record_mail_events(retries + dsn_recipients)
        assert report.recorded == 5 and report.suppressed == []
        assert {o.outcome for o in report.outcomes} == {"counted: 1 of 3 within 30 days"}
        assert status(app, "a@example.com") is SubscriberStatus.CONFIRMED
        # Events of no delivery (a provider that names only the address) still count one by one.
        alone = [event(EventKind.SOFT_BOUNCE, "b@example.com", T0 + timedelta(days=n)) for n in range(3)]
        assert app.record_mail_events(alone).suppressed == ["b@example.com"]
    finally:
        app.close()


def test_a_forged_token_links_nothing_and_changes_nobody(
    site: Site, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app, mails = sent_digest(site, store_url, "a@example.com", "b@example.com")
    try:
        token = str(message_from_bytes(mails["a@example.com"], policy=policy.default)[DELIVERY_HEADER])
        b_message_id = str(message_from_bytes(mails["b@example.com"], policy=policy.default)["Message-ID"])
        forged = token[:-1] + ("a" if token[-1] != "a" else "b")
        other = make_delivery_token(b"somebody-elses-key-0123456789", token_delivery_id(token) or 0, "a@example.com")
        report = app.record_mail_events(
            [
                event(EventKind.HARD_BOUNCE, "victim@example.net", delivery_token=forged),  # nobody of ours
                event(EventKind.HARD_BOUNCE, "victim@example.net", delivery_token=other),
                event(EventKind.HARD_BOUNCE, "b@example.com", delivery_token=forged),  # a reader: not by address either
                event(EventKind.COMPLAINT, "b@example.com", delivery_token=forged, message_id=b_message_id,
                      source="imap"),  # nor by the Message-ID beside the forged token
            ]
        )  # fmt: skip
        assert report.forged_tokens == 4 and report.unlinked == 4 and report.strangers == 0
        assert report.suppressed == [] and not app.store.suppressed_keys()
        assert status(app, "a@example.com") is SubscriberStatus.CONFIRMED
        assert status(app, "b@example.com") is SubscriberStatus.CONFIRMED
        kept = app.store.mail_events()
        assert [e.linked_by for e in kept] == ["unlinked"] * 4 and all(e.delivery_id is None for e in kept)
        assert {e.outcome for e in kept} == {"kept: not linked to a delivery of ours, changes nobody"}
        assert "is not one of ours" in caplog.text
    finally:
        app.close()


def test_a_mailbox_event_acts_only_through_our_token_or_message_id(site: Site, store_url: str) -> None:
    """Anyone can mail the bounce address: a DSN or ARF report naming a reader, without our
    token or one of our Message-IDs, is kept and changes nobody. A provider's webhook, whose
    sender is verified, may still name a reader by address."""
    app, mails = sent_digest(site, store_url, "a@example.com", "b@example.com", "c@example.com")
    try:
        a_message_id = str(message_from_bytes(mails["a@example.com"], policy=policy.default)["Message-ID"])
        report = app.record_mail_events(
            [
                event(EventKind.HARD_BOUNCE, "b@example.com", source="imap"),
                event(EventKind.COMPLAINT, "b@example.com", source="pop3", message_id="<forged.1@example.org>"),
                event(EventKind.HARD_BOUNCE, "a@example.com", source="imap", message_id=a_message_id),
                event(EventKind.COMPLAINT, "c@example.com", source="sendgrid"),
            ]
        )
        assert report.unlinked == 2 and report.strangers == 0 and report.forged_tokens == 0
        assert sorted(report.suppressed) == ["a@example.com", "c@example.com"]
        assert status(app, "b@example.com") is SubscriberStatus.CONFIRMED
        assert not app.store.is_suppressed("b@example.com")
        assert status(app, "a@example.com") is SubscriberStatus.BOUNCED
        assert status(app, "c@example.com") is SubscriberStatus.UNSUBSCRIBED
        linked = [(e.email_key, e.source, e.linked_by) for e in reversed(app.store.mail_events())]
        assert linked == [
            ("b@example.com", "imap", "unlinked"), ("b@example.com", "pop3", "unlinked"),
            ("a@example.com", "imap", "message_id"), ("c@example.com", "sendgrid", "address"),
        ]  # fmt: skip
        # Unlinked events never count later either: three more soft ones by address alone suppress nobody.
        later = [event(EventKind.SOFT_BOUNCE, "b@example.com", T0 + timedelta(n), source="imap") for n in (1, 2, 3)]
        assert app.record_mail_events(later).suppressed == []
        assert status(app, "b@example.com") is SubscriberStatus.CONFIRMED
    finally:
        app.close()


# --- the operator's commands ------------------------------------------------------------------


def test_bounces_list_suppressed_and_unsuppress(site: Site) -> None:
    app = site.app()
    try:
        readers(app, "gone@example.com", "soft@example.com")
        app.record_mail_events(
            [
                event(EventKind.HARD_BOUNCE, "gone@example.com", reason="550 5.1.1 <gone@example.com> unknown"),
                event(EventKind.SOFT_BOUNCE, "soft@example.com", T0 + timedelta(minutes=1), reason="452 full"),
            ]
        )
    finally:
        app.close()
    listed = site.cli("bounces", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split()[:3] == ["received", "(Asia/Shanghai)", "kind"]
    assert "soft@example.com" in lines[1] and "gone@example.com" in lines[2]  # newest first
    assert "counted: 1 of 3 within 30 days" in lines[1] and lines[-1] == "2 event(s)"
    as_json = json.loads(site.cli("bounces", "list", "--email", "GONE@example.com", "--format", "json").output)
    assert [(e["kind"], e["email"], e["linked_by"]) for e in as_json] == [("hard", "gone@example.com", "address")]
    assert as_json[0]["received_at"].endswith("+08:00")

    suppressed = site.cli("bounces", "suppressed")
    assert "gone@example.com  hard" in suppressed.output and "1 address(es) suppressed" in suppressed.output
    assert site.cli("bounces", "suppressed", "--format", "csv").output.splitlines()[0] == (
        "email,kind,since,reason,lifted_at,lifted_by")  # fmt: skip

    lifted = site.cli("bounces", "unsuppress", "Gone@example.com")
    assert lifted.exit_code == 0 and "unsuppressed gone@example.com; the reader is still bounced" in lifted.output
    again = site.cli("bounces", "unsuppress", "gone@example.com")
    assert again.exit_code == 1 and "is not on the suppression list" in again.output
    history = site.cli("bounces", "suppressed", "--all", "--format", "json").output
    assert json.loads(history)[0]["lifted_by"] == "operator"
    assert site.cli("subscribers", "list", "--status", "bounced").output.count("gone@example.com") == 1


def test_unsuppress_restore_confirms_a_bounced_reader_again(site: Site) -> None:
    app = site.app()
    try:
        readers(app, "back@example.com")
        app.record_mail_events([event(EventKind.HARD_BOUNCE, "back@example.com", reason="550 our DNS was broken")])
    finally:
        app.close()
    done = site.cli("bounces", "unsuppress", "back@example.com", "--restore")
    assert done.exit_code == 0 and "the reader is confirmed again" in done.output
    app = site.app()
    try:
        reader = app.store.subscriber("back@example.com")
        assert reader is not None and reader.status is SubscriberStatus.CONFIRMED
        assert reader.status_via == "cli unsuppress" and not app.store.suppressed_keys()
    finally:
        app.close()
