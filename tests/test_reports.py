"""The dashboard's numbers (publisher.store.reports) on SQLite and PostgreSQL, from a small store
whose every number can be counted by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import insert

from publisher.model import Article, Subscriber, SubscriberStatus
from publisher.store import Store, weeks_ending
from publisher.store.schema import mail_events_table, naive_utc

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Thursday 2026-12-03 12:00 in Shanghai: the weeks start on Mondays 11-16, 11-23, 11-30.
NOW = datetime(2026, 12, 3, 4, 0, tzinfo=UTC)


def local(day: str, hour: int = 12) -> datetime:
    """A moment in Shanghai, as the store is given it (UTC)."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=SHANGHAI).astimezone(UTC)


def reader(n: int, status: SubscriberStatus, created: datetime, at: datetime) -> Subscriber:
    return Subscriber(f"r{n}@example.com", "", (), status, at, "test", created)


def test_weeks_start_on_monday_midnight_in_the_sites_zone() -> None:
    weeks = weeks_ending(NOW, SHANGHAI, 3)
    assert [w.label for w in weeks] == ["2026-11-16", "2026-11-23", "2026-11-30"]
    assert weeks[-1].start == datetime(2026, 11, 29, 16, 0, tzinfo=UTC)  # Monday 00:00 in Shanghai
    assert weeks[-1].end == datetime(2026, 12, 6, 16, 0, tzinfo=UTC)
    assert all(a.end == b.start for a, b in zip(weeks, weeks[1:], strict=False))


def test_subscribers_by_week_count_where_each_reached_their_status(store: Store) -> None:
    C, P, U, B = (SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED,
                  SubscriberStatus.BOUNCED)  # fmt: skip
    store.save_subscribers([
        reader(1, C, local("2026-11-10"), local("2026-11-10")),  # before the weeks: list size only
        reader(2, C, local("2026-11-17"), local("2026-11-17")),  # week 1
        reader(3, C, local("2026-11-18"), local("2026-11-18")),  # week 1
        reader(4, U, local("2026-11-17"), local("2026-11-24")),  # joined week 1, left week 2
        reader(5, P, local("2026-11-25"), local("2026-11-25")),  # week 2, not confirmed
        reader(6, B, local("2026-11-10"), local("2026-12-01")),  # bounced week 3
        reader(7, C, local("2026-11-30", 0), local("2026-11-30", 0)),  # Monday 00:00: week 3, not 2
        reader(8, U, local("2026-12-02"), local("2026-12-02")),  # joined and left in week 3
    ])  # fmt: skip
    weeks = store.subscriber_weeks(weeks_ending(NOW, SHANGHAI, 3))
    table = [(w.week.label, w.confirmed, w.pending, w.unsubscribed, w.bounced, w.net, w.list_size) for w in weeks]
    assert table == [
        # label, confirmed, pending, unsubscribed, bounced, net, list size at the week's end
        ("2026-11-16", 2, 0, 0, 0, 2, 5),  # 1, 2, 3; 4 (left later); 6 (bounced later)
        ("2026-11-23", 0, 1, 1, 0, -1, 4),  # 1, 2, 3, 6
        ("2026-11-30", 1, 0, 1, 1, -1, 4),  # 1, 2, 3, 7
    ]


def test_the_last_digests_with_their_deliveries_and_mail_events(store: Store) -> None:
    first, _ = store.open_digest("manual:1", local("2026-11-16"), local("2026-11-23"), local("2026-11-23", 9))
    store.plan_deliveries(first, [(f"r{n}@example.com", f"<{n}@x>") for n in range(5)], local("2026-11-23", 9))
    ids = {key: i for i, key, *_ in store.open_deliveries(first)}
    store.mark_delivery(ids["r0@example.com"], "sent", local("2026-11-23", 9))
    store.mark_delivery(ids["r1@example.com"], "sent", local("2026-11-23", 10))
    store.mark_delivery(ids["r2@example.com"], "failed", local("2026-11-23", 10), error="550 no such user")
    store.mark_delivery(ids["r3@example.com"], "uncertain", local("2026-11-23", 11))
    store.mark_delivery(ids["r4@example.com"], "skipped", local("2026-11-23", 11))
    store.set_digest_status(first, "done")
    second, _ = store.open_digest("manual:2", local("2026-11-23"), local("2026-11-30"), local("2026-11-30", 9))
    store.plan_deliveries(second, [("r0@example.com", "<a@x>"), ("r1@example.com", "<b@x>")], local("2026-11-30", 9))
    store.mark_delivery(store.open_deliveries(second)[0][0], "sent", local("2026-11-30", 9))
    events = [  # r0 bounces twice (one reader), r1 soft-bounces and complains, one event is another digest's
        ("hard", "r0@example.com", first), ("soft", "r0@example.com", first), ("soft", "r1@example.com", first),
        ("complaint", "r1@example.com", first), ("unsubscribe", "r3@example.com", first),
        ("hard", "r1@example.com", second),
    ]  # fmt: skip
    with store.engine.begin() as conn:
        for n, (kind, key, digest_id) in enumerate(events):
            conn.execute(insert(mail_events_table).values(
                kind=kind, email_key=key, source="test", reason="", occurred=naive_utc(NOW),
                received_at=naive_utc(NOW), digest_id=digest_id, linked_by="address", event_id=str(n),
                outcome="", raw="",
            ))  # fmt: skip
    newest, older = store.digest_reports(5)
    assert (newest.id, newest.status, newest.planned, newest.sent, newest.waiting) == (second, "sending", 2, 1, 1)
    assert (newest.bounced, newest.complained, newest.time_to_send) == (1, 0, None)  # still sending: no time yet
    assert (older.planned, older.sent, older.failed, older.uncertain, older.skipped, older.waiting) == (
        5,
        2,
        1,
        1,
        1,
        0,
    )
    assert (older.bounced, older.complained) == (2, 1)
    assert older.time_to_send == timedelta(hours=2)  # planned at 09:00, its last delivery marked at 11:00
    assert [r.id for r in store.digest_reports(1)] == [second]


def test_articles_per_category_by_week_of_publication(store: Store) -> None:
    placed = [  # (categories, published)
        (("news",), local("2026-11-16", 0)), (("news", "policy"), local("2026-11-20")),
        (("policy",), local("2026-11-29", 23)), (("news",), local("2026-12-03")),
        (("news",), local("2026-11-15", 23)),  # the Sunday before: outside the weeks
    ]  # fmt: skip
    with store.writer(lambda: NOW) as writer:
        for n, (categories, published) in enumerate(placed):
            article = Article("s", f"k{n}", "", f"t{n}", "<p>x</p>", "x", published, published, categories, f"h{n}")
            writer.insert(article, f"tag:x,2026:{n}", None, None, NOW)
    report = store.category_weeks(weeks_ending(NOW, SHANGHAI, 3))
    assert [(c.slug, c.counts, c.total) for c in report] == [("news", (2, 0, 1), 3), ("policy", (1, 1, 0), 2)]
    assert store.live_article_counts() == {"": 5, "news": 4, "policy": 2}
    assert store.live_articles_by_source() == {"s": 5}
