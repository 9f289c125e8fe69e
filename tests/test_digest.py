"""Digest content: windows that put every article in exactly one digest, and each subscriber's sections."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from conftest import Site
from publisher.digest import FIRST_DIGEST_DAYS, explicit_window, scheduled_window, sections_for
from publisher.model import Article, Category, Subscriber, SubscriberStatus

CATS = [Category("高新院新闻", "news"), Category("政策解读", "policy"), Category("科技创新", "tech")]
NOW = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)


def article(n: int, categories: tuple[str, ...], days_ago: int = 0) -> Article:
    when = NOW - timedelta(days=days_ago, minutes=n)
    return Article("s", f"k{n}", f"g{n}", f"标题{n}", "<p>x</p>", "摘要", when, when, categories, "h")


def reader(*categories: str) -> Subscriber:
    return Subscriber("r@example.com", "读者", categories, SubscriberStatus.CONFIRMED, NOW, "cli", NOW)


def test_an_article_in_two_chosen_categories_appears_once() -> None:
    both = article(1, ("policy", "tech"))
    sections = sections_for(reader("policy", "tech"), [both, article(2, ("tech",))], CATS, 10)
    assert [(s.category.slug, [a.guid for a in s.articles]) for s in sections] == [
        ("policy", ["g1"]),
        ("tech", ["g2"]),
    ]


def test_no_category_chosen_means_all_and_order_is_the_configs() -> None:
    arts = [article(1, ("tech",)), article(2, ("news",)), article(3, ("policy",))]
    assert [s.category.slug for s in sections_for(reader(), arts, CATS, 10)] == ["news", "policy", "tech"]


def test_max_per_category_keeps_the_newest() -> None:
    arts = [article(n, ("tech",), days_ago=n) for n in range(5)]
    [section] = sections_for(reader("tech"), arts, CATS, 2)
    assert [a.guid for a in section.articles] == ["g0", "g1"]


def test_nothing_new_for_the_reader_gives_no_sections() -> None:
    assert sections_for(reader("news"), [article(1, ("tech",))], CATS, 10) == []


def test_scheduled_windows_chain_and_the_first_takes_seven_days() -> None:
    first = scheduled_window(None, NOW)
    assert first.end - first.start == timedelta(days=FIRST_DIGEST_DAYS) and first.by == "first"
    second = scheduled_window(first.end, NOW + timedelta(days=7))
    assert second.start == first.end and second.key != first.key
    assert scheduled_window(None, NOW).key == first.key  # the same run, the same key


def test_explicit_windows_include_both_days_in_the_site_zone() -> None:
    window = explicit_window(date(2026, 11, 1), date(2026, 11, 7), "Asia/Shanghai")
    assert window.key == "window:2026-11-01..2026-11-07" and window.by == "published"
    assert window.start < datetime(2026, 10, 31, 16, 0, tzinfo=UTC) <= window.end  # Nov 1 00:00 in Shanghai
    assert datetime(2026, 11, 7, 15, 59, 59, tzinfo=UTC) <= window.end < datetime(2026, 11, 7, 16, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        explicit_window(date(2026, 11, 7), date(2026, 11, 1), "Asia/Shanghai")


def test_a_backdated_article_goes_into_the_next_scheduled_digest_once(site: Site) -> None:
    """After the first digest, picked by when it was ingested, not by its (old) publication date."""
    site.clock_now = NOW - timedelta(days=3)
    site.article("tech/archive.md", "安装前的旧文", date="2025-01-01 09:00")
    site.article("tech/new.md", "本周新闻", date="2026-11-28 09:00")
    site.build()
    site.clock_now = NOW + timedelta(days=3)
    site.article("tech/old.md", "补发的旧文", date="2025-01-02 09:00")
    site.build()
    app = site.app()
    try:
        week1 = scheduled_window(None, NOW)
        week2 = scheduled_window(week1.end, NOW + timedelta(days=7))
        week3 = scheduled_window(week2.end, NOW + timedelta(days=14))
        picked = [app.store.articles_between(w.start, w.end, w.by) for w in (week1, week2, week3)]
        by_date = explicit_window(date(2026, 11, 1), date(2026, 11, 30), "Asia/Shanghai")
        in_november = app.store.articles_between(by_date.start, by_date.end, by_date.by)
    finally:
        app.close()
    # A new install's first digest is last week's news, not the archive it just read.
    assert [[a.title for a in p] for p in picked] == [["本周新闻"], ["补发的旧文"], []]
    assert picked[1][0].categories == ("tech",)
    assert [a.title for a in in_november] == ["本周新闻"]


def test_an_article_ingested_while_a_digest_opens_is_in_exactly_one_digest(site: Site) -> None:
    """The ingest holds the turnstile from its first new article to its commit, and the digest
    takes it to read its end: a digest opened during a long ingest waits for it, and the
    article lands in that digest, not in a gap between two windows."""
    import threading

    from publisher.store import Store

    store = Store(site.store_url)
    store.sync_categories([("科技创新", "tech", "")], lambda name: name, NOW)
    first, _ = store.open_scheduled_digest(lambda: NOW - timedelta(days=1), FIRST_DIGEST_DAYS)
    clock = {"now": NOW}
    opened: list[object] = []
    with store.writer(lambda: clock["now"]) as writer:
        processed_at = NOW - timedelta(hours=2)  # read and normalised long before it commits
        writer.insert(article(1, ("tech",)), "tag:x,2026:1", None, "fp", processed_at)
        writer.flush()  # the ingest holds the write lock from here to its commit
        thread = threading.Thread(target=lambda: opened.append(store.open_scheduled_digest(lambda: clock["now"], 7)))
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive()  # waiting for the ingest, not reading a window end past it
        clock["now"] = NOW + timedelta(seconds=5)
    thread.join(timeout=30)
    [(second, _created)] = opened  # type: ignore[misc]
    assert second.start == first.end  # type: ignore[attr-defined]
    picked = store.articles_between(second.start, second.end, second.by)  # type: ignore[attr-defined]
    later = store.articles_between(second.end, NOW + timedelta(days=7), "ingested")  # type: ignore[attr-defined]
    store.close()
    assert [a.title for a in picked] == ["标题1"] and later == []


def test_an_article_read_before_a_digest_but_stored_after_it_is_in_the_next_one(site: Site) -> None:
    """First seen is when the ingest took the turnstile to store it, not when it was read: a
    digest that ended (and went out) in between cannot have had it, so the next one does."""
    from publisher.store import Store

    store = Store(site.store_url)
    store.sync_categories([("科技创新", "tech", "")], lambda name: name, NOW)
    store.open_scheduled_digest(lambda: NOW - timedelta(days=1), FIRST_DIGEST_DAYS)
    with store.writer(lambda: NOW) as writer:
        read_at = NOW - timedelta(hours=2)
        sent, _ = store.open_scheduled_digest(lambda: NOW - timedelta(hours=1), FIRST_DIGEST_DAYS)
        writer.insert(article(1, ("tech",)), "tag:x,2026:1", None, "fp", read_at)
    following, _ = store.open_scheduled_digest(lambda: NOW + timedelta(hours=1), FIRST_DIGEST_DAYS)
    try:
        assert store.articles_between(sent.start, sent.end, sent.by) == []
        assert [a.title for a in store.articles_between(following.start, following.end, following.by)] == ["标题1"]
    finally:
        store.close()


def test_an_ingest_that_stores_while_a_digest_reads_its_end_stamps_after_that_end(site: Site) -> None:
    """The ingest reads the time for first_seen only once it holds the turnstile: a digest
    that is reading its window's end (holding the turnstile) makes it wait, so its articles
    are stamped after that end and go into the next digest, never into one already sent."""
    import threading

    from publisher.store import Store

    store = Store(site.store_url)
    store.sync_categories([("科技创新", "tech", "")], lambda name: name, NOW)
    store.open_scheduled_digest(lambda: NOW - timedelta(days=1), FIRST_DIGEST_DAYS)
    reading, release = threading.Event(), threading.Event()

    def digest_clock() -> datetime:  # the digest reads its end while it holds the turnstile
        reading.set()
        release.wait(30)
        return NOW

    opened: list[object] = []
    digest = threading.Thread(target=lambda: opened.append(store.open_scheduled_digest(digest_clock, 7)))
    digest.start()
    assert reading.wait(30)
    clock = {"now": NOW - timedelta(minutes=1)}  # what an ingest would read before waiting
    read_time = threading.Event()

    def ingest_clock() -> datetime:
        read_time.set()
        return clock["now"]

    def ingest() -> None:
        with store.writer(ingest_clock) as writer:
            writer.insert(article(1, ("tech",)), "tag:x,2026:1", None, "fp", NOW - timedelta(hours=2))

    storing = threading.Thread(target=ingest)
    storing.start()
    assert not read_time.wait(2)  # at its commit it waits for the turnstile before reading the time
    clock["now"] = NOW + timedelta(minutes=1)  # the time once it has the turnstile
    release.set()
    digest.join(30)
    storing.join(30)
    [(sent, _created)] = opened  # type: ignore[misc]
    following, _ = store.open_scheduled_digest(lambda: NOW + timedelta(hours=1), FIRST_DIGEST_DAYS)
    try:
        assert store.articles_between(sent.start, sent.end, sent.by) == []  # type: ignore[attr-defined]
        assert [a.title for a in store.articles_between(following.start, following.end, following.by)] == ["标题1"]
    finally:
        store.close()


def test_an_article_stored_in_the_same_second_before_a_digest_opens_is_in_that_digest(site: Site) -> None:
    """Issue 17, item 15: the window's end was cut to the second, so an article first seen at
    12:00:00.3 missed the digest that opened at 12:00:00.7 and went out a week late."""
    from publisher.store import Store

    store = Store(site.store_url)
    try:
        store.sync_categories([("科技创新", "tech", "")], lambda name: name, NOW)
        first, _ = store.open_scheduled_digest(lambda: NOW - timedelta(days=1), FIRST_DIGEST_DAYS)
        stored_at = NOW + timedelta(microseconds=300_000)
        with store.writer(lambda: stored_at) as writer:
            writer.insert(article(1, ("tech",)), "tag:x,2026:1", None, "fp", stored_at)
        digest, _ = store.open_scheduled_digest(lambda: NOW + timedelta(microseconds=700_000), FIRST_DIGEST_DAYS)
        assert digest.end == NOW + timedelta(microseconds=700_000)  # kept by the store, to the microsecond
        assert [a.title for a in store.articles_between(digest.start, digest.end, digest.by)] == ["标题1"]
        following, _ = store.open_scheduled_digest(lambda: NOW + timedelta(days=7), FIRST_DIGEST_DAYS)
        assert following.start == digest.end
        assert store.articles_between(following.start, following.end, following.by) == []
    finally:
        store.close()
    window = scheduled_window(first.end, NOW + timedelta(microseconds=700_000))
    assert window.end == NOW + timedelta(microseconds=700_000) and window.key == "scheduled:2026-11-30T00:00:00Z"
