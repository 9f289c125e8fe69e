"""Readers' own script and cadence: a week of simulated days (a clock fixture, no sleeping),
the digest jobs run at each cron time, every reader's mail read back from the outbox."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from conftest import Site
from publisher.choices import Choices
from publisher.config import load_settings
from publisher.digest import DigestWindow
from publisher.jobs import run_digest
from publisher.model import Subscriber, SubscriberStatus
from publisher.newsletter import Newsletter
from publisher.scheduler import DIGEST_JOBS, Scheduler, triggers
from publisher.store import Store
from publisher.store.schema import deliveries_table, digests_table
from publisher.subscriptions import choose_categories

ZONE = ZoneInfo("Asia/Shanghai")
MONDAY = datetime(2026, 11, 23, 0, 0, tzinfo=ZONE)  # day 0 of the simulated week
DAYS = 7  # articles on days 0..6; the week's digests go out up to day 7
CADENCE_CONFIG = """
[digest]
cadences = ["weekly", "daily"]
schedule = "0 8 * * mon"
daily_schedule = "0 7 * * *"
scripts = ["zh-Hans", "zh-Hant"]
messages_per_second = 0
postal_address = "云川市创新大道 1 号"
"""
HANT_DAILY = "hant-daily@example.com"  # 繁體, daily, tech
HANS_WEEKLY = "hans-weekly@example.com"  # 简体, weekly, policy
DEFAULT = "default@example.com"  # nothing chosen: the site's script, weekly, every category


@pytest.fixture
def week_site(site: Site) -> Site:
    site.write_config(site.mail_to_outbox() + CADENCE_CONFIG)
    site.clock_now = MONDAY.astimezone(UTC)
    site.build()  # the categories, before any reader names them
    now = site.clock_now
    readers = [
        Subscriber(HANT_DAILY, "陈先生", ("tech",), SubscriberStatus.CONFIRMED, now, "cli", now,
                   script="zh-Hant", cadence="daily"),
        Subscriber(HANS_WEEKLY, "李女士", ("policy",), SubscriberStatus.CONFIRMED, now, "cli", now,
                   script="zh-Hans", cadence="weekly"),
        Subscriber(DEFAULT, "", (), SubscriberStatus.CONFIRMED, now, "cli", now),
    ]  # fmt: skip
    store = Store(site.store_url)
    try:
        store.save_subscribers(readers)
    finally:
        store.close()
    return site


def fire_times(site: Site, start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """(when, cadence) of every digest job the scheduler's triggers fire in [start, end]."""
    wanted = triggers(load_settings(site.config))
    fired = []
    for cadence, job_id in DIGEST_JOBS.items():
        trigger = wanted[job_id]
        when = trigger.get_next_fire_time(None, start)
        while when is not None and when <= end:
            fired.append((when, cadence))
            when = trigger.get_next_fire_time(when, when + timedelta(seconds=1))
    return sorted(fired)


def run_job_at(site: Site, when: datetime, cadence: str) -> None:
    site.clock_now = when.astimezone(UTC)
    app = site.app()
    try:
        assert run_digest(app, cadence) is None  # nothing left waiting
    finally:
        app.close()


def outbox_mail(site: Site) -> dict[str, list[EmailMessage]]:
    """Every message in the outbox by recipient, in sending order."""
    mail: dict[str, list[EmailMessage]] = defaultdict(list)
    for path in sorted(site.outbox.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        mail[message["To"].addresses[0].addr_spec].append(message)
    return mail


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def delivery_rows(site: Site) -> dict[tuple[str, str], int]:
    """(email key, digest key) -> delivery rows."""
    store = Store(site.store_url)
    try:
        x, d = deliveries_table.c, digests_table.c
        query = (
            select(x.email_key, d.key, func.count())
            .select_from(deliveries_table.join(digests_table, d.id == x.digest_id))
            .group_by(x.email_key, d.key)
        )
        with store.engine.connect() as conn:
            return {(email, key): count for email, key, count in conn.execute(query).all()}
    finally:
        store.close()


def test_a_week_of_daily_and_weekly_digests_in_each_readers_script(week_site: Site) -> None:
    site = week_site
    events: list[tuple[datetime, str, int | str]] = []
    for day in range(DAYS):
        events.append((MONDAY + timedelta(days=day, hours=10), "ingest", day))
    for when, cadence in fire_times(site, MONDAY, MONDAY + timedelta(days=DAYS, hours=9)):
        events.append((when, "digest", cadence))
    for when, what, arg in sorted(events, key=lambda e: e[0]):
        if what == "ingest":
            day = int(arg)
            date = f"{(MONDAY + timedelta(days=day, hours=9)):%Y-%m-%d %H:%M}"
            # Simplified text (the site converts to 简体): 区 and 发 become 區 and 發 for 繁體 readers.
            site.article(f"tech/day{day}.md", f"高新区发布科技简讯第{day}号", date=date, categories="[tech]")
            site.article(f"policy/day{day}.md", f"开发区政策解读第{day}号", date=date, categories="[policy]")
            site.article(f"news/day{day}.md", f"院内新闻第{day}号", date=date)
            site.clock_now = when.astimezone(UTC)
            site.build()
        else:
            run_job_at(site, when, str(arg))
            run_job_at(site, when, str(arg))  # the same run again (a doubled job): nothing more
            run_job_at(site, when + timedelta(minutes=30), str(arg))  # a late one: an empty window

    mail = outbox_mail(site)
    assert set(mail) == {HANT_DAILY, HANS_WEEKLY, DEFAULT}

    # 繁體, daily, tech: one digest a day from day 1, each with the day before's tech article.
    daily = mail[HANT_DAILY]
    assert len(daily) == DAYS
    for day, message in enumerate(daily):
        text, html = body(message, "plain"), body(message, "html")
        title = f"高新區發佈科技簡訊第{day}號"
        assert title in text and title in html and title in str(message["Subject"])
        assert "第" + str(day - 1) + "號" not in text  # yesterday's is in yesterday's digest only
        assert "政策" not in text and "院內新聞" not in text  # not their categories
        assert "区" not in text + html and "发" not in text + html  # every word converted
        assert "您收到這封郵件" in text and "今日" in text and "陈先生，" in text  # the words too; the name as written
        assert 'lang="zh-Hant"' in html
        # The daily list's own name: masthead, footer, subject and List-Id (週報 is the weekly's).
        assert "週報" not in text + html + str(message["Subject"]) and "高新院日報" in text + html
        assert str(message["Subject"]).startswith("高新院日報（")
        assert message["List-Id"] == "高新院日报 <daily.digest.www.example.org>"
        unsubscribe = message["List-Unsubscribe"].split("<", 1)[1].split(">", 1)[0]
        assert unsubscribe in text and unsubscribe in html  # the personal link, never converted

    # 简体, weekly, policy: one digest on Monday with the week's seven policy articles.
    (weekly,) = mail[HANS_WEEKLY]
    text = body(weekly, "plain")
    assert [f"开发区政策解读第{day}号" in text for day in range(DAYS)] == [True] * DAYS
    assert "科技简讯" not in text and "區" not in text and "這封郵件" not in text and "这封邮件" in text
    assert "本期" in text and "今日" not in text  # the weekly words
    assert "高新院周报" in text and weekly["List-Id"] == "高新院周报 <digest.www.example.org>"

    # The default reader: the site's script, weekly, every category.
    (default,) = mail[DEFAULT]
    text = body(default, "plain")
    for day in range(DAYS):
        assert f"高新区发布科技简讯第{day}号" in text and f"院内新闻第{day}号" in text and f"第{day}号" in text

    # The ledger: one delivery per reader per digest they got, none for the digests of the other
    # cadence; the weekly keys are as they were before cadences, the daily ones carry theirs.
    rows = delivery_rows(site)
    assert set(rows.values()) == {1}
    assert sorted(key for email, key in rows if email == HANT_DAILY) == sorted(
        f"daily/scheduled:{(MONDAY + timedelta(days=d, hours=7)).astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
        for d in range(1, DAYS + 1)
    )
    weekly_key = f"scheduled:{(MONDAY + timedelta(days=DAYS, hours=8)).astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    assert {key for email, key in rows if email != HANT_DAILY} == {weekly_key}
    assert len(rows) == DAYS + 2


def test_configured_urls_in_chinese_survive_a_readers_script(week_site: Site) -> None:
    """Every configured URL is percent-encoded as the config is read: converting a 繁體 reader's
    digest (OpenCC runs over the whole mail) must not turn 新闻动态 in a link into 新聞動態."""
    site = week_site
    config = site.config.read_text(encoding="utf-8").replace(
        'slug = "tech"\n', 'slug = "tech"\nurl = "https://www.example.org/新闻动态/"\n'
    )
    config = config.replace("messages_per_second = 0", "messages_per_second = 0\nmax_items_per_category = 1")
    site.config.write_text(
        config
        + '[theme]\nlogo_url = "https://www.example.org/图标/标志.png"\nprivacy_url = "https://www.example.org/隐私/"\n',
        encoding="utf-8",
    )
    site.article("tech/one.md", "高新区发布科技简讯", date=f"{MONDAY:%Y-%m-%d} 09:00", categories="[tech]")
    site.article("tech/two.md", "开发区科技动态", date=f"{MONDAY:%Y-%m-%d} 08:00", categories="[tech]")
    site.clock_now = (MONDAY + timedelta(hours=10)).astimezone(UTC)
    site.build()
    site.clock_now += timedelta(hours=1)
    run_job_at(site, site.clock_now.astimezone(ZONE), "daily")
    (message,) = outbox_mail(site)[HANT_DAILY]
    text, html = body(message, "plain"), body(message, "html")
    encoded = "https://www.example.org/%E6%96%B0%E9%97%BB%E5%8A%A8%E6%80%81/"
    assert encoded in html and "%E5%9B%BE%E6%A0%87/%E6%A0%87%E5%BF%97.png" in html
    assert "https://www.example.org/%E9%9A%90%E7%A7%81/" in html  # 隐私 would become 隱私
    assert "新聞動態" not in text + html and "新闻动态" not in text + html and "高新區發佈科技簡訊" in text
    assert load_settings(site.config).categories[2].url == encoded


def test_a_converted_digest_says_the_conversions_language(week_site: Site) -> None:
    """`lang` names what the conversion made (ScriptConversion.language), as the feeds do: Taiwan's
    forms (s2tw) are zh-TW, not just zh-Hant; the site's own script keeps the site's zh-CN."""
    site = week_site
    config = site.config.read_text(encoding="utf-8").replace(
        'convert = "t2s"\n', 'convert = "t2s"\ntraditional = "s2tw"\n'
    )
    site.config.write_text(config, encoding="utf-8")
    site.article("tech/one.md", "高新区发布科技简讯", date=f"{MONDAY:%Y-%m-%d} 09:00", categories="[tech]")
    site.clock_now = (MONDAY + timedelta(hours=10)).astimezone(UTC)
    site.build()
    run_job_at(site, MONDAY + timedelta(hours=11), "daily")
    run_job_at(site, MONDAY + timedelta(hours=11), "weekly")
    mail = outbox_mail(site)
    assert '<html lang="zh-TW"' in body(mail[HANT_DAILY][0], "html")
    assert '<html lang="zh-CN"' in body(mail[DEFAULT][0], "html")


def test_a_reader_who_changed_cadence_after_the_plan_is_skipped_by_that_digest(week_site: Site) -> None:
    """Planned for the weekly digest, switched to daily before it was sent (a paused or retrying
    digest): the weekly delivery is skipped, as an unsubscribed reader's, so only the daily comes."""
    site = week_site
    site.article("policy/one.md", "开发区政策解读", date=f"{MONDAY:%Y-%m-%d} 09:00", categories="[policy]")
    site.clock_now = (MONDAY + timedelta(hours=10)).astimezone(UTC)
    site.build()
    app = site.app()
    try:
        letters = Newsletter(app)
        plan = letters.plan_scheduled("weekly")
        assert plan.planned == 2  # the weekly reader and the default one
        reader = app.store.subscriber(HANS_WEEKLY)
        assert reader is not None and reader.id is not None
        choose_categories(app.store, reader.id, reader.categories, Choices(reader.script, "daily"))
        report = letters.send(plan.digest, app.transport())
        assert (report.sent, report.skipped) == (1, 1)
    finally:
        app.close()
    assert set(outbox_mail(site)) == {DEFAULT}


def test_switching_every_reader_to_daily_loses_no_day_since_the_last_weekly(week_site: Site) -> None:
    """`cadences = ["daily"]` after weekly digests: the first daily one starts where the last
    weekly ended (at most 7 days back), so the days between reach the readers moved to daily."""
    site = week_site
    run_job_at(site, MONDAY, "weekly")  # the last weekly digest (nothing new yet): it ends now
    for day in range(4):
        when = MONDAY + timedelta(days=day, hours=9)
        site.article(
            f"policy/day{day}.md", f"开发区政策解读第{day}号", date=f"{when:%Y-%m-%d %H:%M}", categories="[policy]"
        )
        site.clock_now = (when + timedelta(hours=1)).astimezone(UTC)
        site.build()
    site.write_config(site.mail_to_outbox() + CADENCE_CONFIG.replace('["weekly", "daily"]', '["daily"]'))
    run_job_at(site, MONDAY + timedelta(days=4, hours=7), "daily")
    (message,) = outbox_mail(site)[HANS_WEEKLY]  # a weekly reader, now sent the daily digest
    text = body(message, "plain")
    assert [f"开发区政策解读第{day}号" in text for day in range(4)] == [True] * 4
    assert "今日" in text  # the daily digest's words


def test_on_a_new_install_the_first_weekly_takes_its_week_though_daily_ones_went_out_before(
    week_site: Site,
) -> None:
    """Only another cadence's digest that ended *before* a first digest's look-back moves its
    start: daily digests sent on a new install's first days leave the first weekly its week."""
    site = week_site
    for day in (1, 4):
        when = MONDAY + timedelta(days=day, hours=9)
        site.article(f"news/day{day}.md", f"院内新闻第{day}号", date=f"{when:%Y-%m-%d %H:%M}")
        site.clock_now = (when + timedelta(hours=1)).astimezone(UTC)
        site.build()
        run_job_at(site, when + timedelta(hours=22), "daily")
    run_job_at(site, MONDAY + timedelta(days=7, hours=8), "weekly")
    (weekly,) = outbox_mail(site)[DEFAULT]
    text = body(weekly, "plain")
    assert "院内新闻第1号" in text and "院内新闻第4号" in text


def test_the_weekly_ledger_of_before_cadences_chains_on_and_the_daily_starts_its_own(week_site: Site) -> None:
    """A store whose weekly digests were opened before cadences existed: its next weekly digest
    starts where the last ended (nothing sent again), and the first daily one looks back a day."""
    site = week_site
    app = site.app()
    try:
        before = MONDAY.astimezone(UTC) - timedelta(days=7)
        old_id, _ = app.store.open_digest(f"scheduled:{before:%Y-%m-%dT%H:%M:%SZ}", before - timedelta(days=7),
                                          before, before)  # fmt: skip
        app.store.set_digest_status(old_id, "done")
        letters = Newsletter(app)
        weekly = letters.plan_scheduled("weekly").digest
        daily = letters.plan_scheduled("daily").digest
        assert (weekly.key, weekly.start, weekly.by) == (f"scheduled:{MONDAY.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
                                                         before, "ingested")  # fmt: skip
        # The weekly that just ended is within the daily's day: the daily's first looks back its day.
        assert daily.key.startswith("daily/scheduled-first:") and daily.by == "first"
        assert daily.start == MONDAY.astimezone(UTC) - timedelta(days=1) and daily.cadence == "daily"
        same = DigestWindow(daily.key, daily.start, daily.end, "first", "daily")
        assert letters.plan(same).created is False  # the same window again: nothing new
    finally:
        app.close()


def test_each_cadence_has_its_own_job_and_its_missed_run_is_caught_up(site: Site) -> None:
    due = datetime.now(UTC) - timedelta(hours=1)
    local = due.astimezone(ZONE)
    site.write_config(
        site.mail_to_outbox() + CADENCE_CONFIG.replace('"0 7 * * *"', f'"{local.minute} {local.hour} * * *"')
    )
    site.clock_now = datetime.now(UTC) - timedelta(hours=2)
    site.article("tech/a.md", "今日科技新闻", date=f"{datetime.now(ZONE) - timedelta(hours=3):%Y-%m-%d %H:%M}")
    site.build()
    store = Store(site.store_url)
    try:
        now = datetime.now(UTC)
        store.save_subscribers([Subscriber("d@example.com", "", (), SubscriberStatus.CONFIRMED, now, "cli", now,
                                           script="zh-Hant", cadence="daily")])  # fmt: skip
        yesterday, _ = store.open_scheduled_digest(lambda: due - timedelta(days=1), 1, "daily")
        store.plan_deliveries(yesterday.id, [], due - timedelta(days=1))
        store.set_digest_status(yesterday.id, "done")
        service = Scheduler(load_settings(site.config), str(site.config), store)
        assert service.start()
        try:
            job = service.scheduler.get_job(DIGEST_JOBS["daily"])  # type: ignore[union-attr]
            assert list(job.args) == [str(site.config), "daily"]
            assert list(service.scheduler.get_job(DIGEST_JOBS["weekly"]).args) == [str(site.config)]  # type: ignore[union-attr]
            deadline = datetime.now(UTC) + timedelta(seconds=15)
            while len(list(site.outbox.glob("*.eml"))) < 1 and datetime.now(UTC) < deadline:
                time.sleep(0.1)
        finally:
            service.stop()
        ((reader, (mail,)),) = outbox_mail(site).items()
        assert reader == "d@example.com" and "今日科技新聞" in body(mail, "plain")  # caught up, in 繁體
        assert [d.key.split(":")[0] for d in store.digests()] == ["daily/scheduled-first", "daily/scheduled"]
        # Without "daily" in [digest] cadences, its job is gone at the next start.
        site.write_config(site.mail_to_outbox())
        again = Scheduler(load_settings(site.config), str(site.config), store)
        assert again.start()
        try:
            assert again.scheduler.get_job(DIGEST_JOBS["daily"]) is None  # type: ignore[union-attr]
        finally:
            again.stop()
    finally:
        store.close()


def test_choices_and_each_cadences_windows_on_each_database(store_url: str) -> None:
    """The store's side on SQLite and PostgreSQL: a reader's and a request's script and cadence
    read back, and each cadence's scheduled windows chained on its own."""
    now = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    store = Store(store_url)
    try:
        store.save_subscribers([Subscriber("a@example.com", "甲", (), SubscriberStatus.CONFIRMED, now, "cli", now,
                                           script="zh-Hant", cadence="daily")])  # fmt: skip
        found = store.subscriber("a@example.com")
        assert found is not None and (found.script, found.cadence) == ("zh-Hant", "daily")
        request = store.add_signup_request("b@example.com", "乙", (), now, timedelta(days=7), "zh-Hans", "daily")
        assert store.signup_request(request.id) == request
        weekly, _ = store.open_scheduled_digest(lambda: now, 7)
        daily, _ = store.open_scheduled_digest(lambda: now, 1, "daily")
        next_daily, created = store.open_scheduled_digest(lambda: now + timedelta(days=1), 1, "daily")
        assert (weekly.cadence, weekly.start, weekly.key) == ("weekly", now - timedelta(days=7),
                                                              "scheduled-first:2026-11-30T00:00:00Z")  # fmt: skip
        assert (daily.cadence, daily.start, daily.by) == ("daily", now - timedelta(days=1), "first")
        assert created and (next_daily.start, next_daily.by) == (now, "ingested")
        assert next_daily.key == "daily/scheduled:2026-12-01T00:00:00Z"
        assert store.last_scheduled_end() == now and store.last_scheduled_end("daily") == now + timedelta(days=1)
        next_weekly, _ = store.open_scheduled_digest(lambda: now + timedelta(days=7), 7)
        assert next_weekly.start == now  # the daily digests do not move the weekly window
    finally:
        store.close()
