"""The console's sources page, as its view reads the store and the output folder, and its
"ingest now" runner: one background build at a time, its result kept for the page."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from lxml import html

from conftest import Site
from publisher.store import Store
from publisher.store.schema import take_turnstile
from publisher.web.admin.dashboard import dashboard_view
from publisher.web.admin.sources import IngestNow, sources_view


def test_ingest_now_builds_in_the_background_once_at_a_time_and_the_view_counts_what_it_wrote(site: Site) -> None:
    site.article("policy/a.md", "政策一", date="2026-05-06 14:00")
    site.article("policy/b.md", "政策二", date="2026-05-07 14:00", categories="[policy, tech]")
    site.article("news.md", "新闻", date="2026-05-08 14:00")
    app = site.app()
    try:
        before = sources_view(app)
        assert [(f.path, f.items, f.changed) for f in before.feeds][:3] == [
            ("rss.xml", 0, None), ("atom.xml", 0, None), ("feed.json", 0, None)
        ]  # fmt: skip
        assert [(s.type, s.articles, s.health.parts) for s in before.sources] == [("files", 0, ())]

        runner = IngestNow(app, lambda: datetime(2026, 5, 9, tzinfo=UTC))
        with app.store.engine.begin() as conn:  # the store's write lock: the build waits for it
            take_turnstile(conn)
            assert runner.start()
            assert runner.last.running
            assert not runner.start()  # a second press while one runs starts nothing
        assert runner.wait(60), "the console's ingest did not end within 60 s"
        run = runner.last
        assert run.error is None and run.report is not None and run.report.new == 3, run

        after = sources_view(app)
        feeds = {f.path: f for f in after.feeds}
        assert (
            feeds["rss.xml"].items == 3 and feeds["policy/atom.xml"].items == 2 and feeds["tech/feed.json"].items == 1
        )
        assert all(f.changed is not None for f in after.feeds if f.items)
        assert feeds["policy/rss.xml"].url == "https://www.example.org/policy/rss.xml"
        assert [(c.slug, n) for c, n in after.categories] == [("gao-xin-yuan-xin-wen", 1), ("policy", 2), ("tech", 1)]
        (source,) = after.sources
        assert source.articles == 3 and source.health.parts[0].last_success is not None
        elsewhere = site.app()  # another process builds (the scheduler's ingest job): its build lock
        try:
            with elsewhere.store.build_lock() as got:
                assert got and not runner.start() and not runner.last.running
        finally:
            elsewhere.close()
        assert runner.start()  # over: the next press starts another
        assert runner.wait(60) and runner.last.report is not None and runner.last.report.new == 0
    finally:
        app.close()


def test_the_scheduler_s_ingest_skips_its_run_while_a_console_build_holds_the_store_s_build_lock(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """Two builds of one store at once would only repeat each other's work (and race on new
    articles): the scheduler's job, in whatever process, waits for the next interval instead."""
    from publisher.jobs import ingest_and_build

    site.article("policy/a.md", "政策一", date="2026-05-06 14:00")
    console = site.app()  # the console of a `publisher serve` pressed "ingest now": its build holds the lock
    try:
        with console.store.build_lock() as got, caplog.at_level(logging.INFO, logger="publisher.jobs"):
            assert got and console.store.build_running()
            ingest_and_build(str(site.config))
            assert console.store.live_count("content") == 0 and not (site.out / "rss.xml").exists()
        assert "ingest skipped: another build of this store is running" in caplog.text
        assert not console.store.build_running()
        ingest_and_build(str(site.config))
        assert console.store.live_count("content") == 1 and (site.out / "rss.xml").exists()
    finally:
        console.close()


def test_the_dashboard_view_has_a_chart_per_category_and_the_sources_health(site: Site) -> None:
    site.article("policy/a.md", "政策一", date="2026-05-06 14:00")
    site.build()
    app = site.app()
    try:
        words = app.messages["admin"]["dashboard"]
        view = dashboard_view(app, datetime(2026, 5, 9, tzinfo=UTC), words)
        assert [name for name, _ in view.categories] == ["高新院新闻", "政策解读", "科技创新"]
        policy = dict(view.categories)["政策解读"]
        assert policy.series[0].values[-1] == 1 and sum(policy.series[0].values) == 1  # the week of May 4
        assert len(view.subscriber_weeks) == 12 and view.digests == []
        assert [h.name for h in view.sources] == [s.source_name for s in app.settings.sources]
    finally:
        app.close()


def test_the_dashboard_page_shows_the_stores_numbers_in_its_tables_and_charts(site: Site) -> None:
    from admin_session import admin_config, signed_in_client

    site.write_config(site.mail_to_outbox() + admin_config("http://127.0.0.1:9"))
    site.article("policy/a.md", "政策一", date="2026-11-17 14:00")
    site.article("policy/b.md", "政策二", date="2026-11-18 14:00", categories="[policy, tech]")
    site.build()
    client = signed_in_client(site, role="viewer")
    answer = client.get("/admin/")
    assert answer.status_code == 200 and "default-src 'none'" in answer.headers["Content-Security-Policy"]
    page = html.fromstring(answer.get_data(as_text=True))
    assert not page.xpath("//*[@style]") and not page.xpath("//script[not(@src)]")  # the CSP forbids both
    app = site.app()
    try:
        words = app.messages["admin"]["dashboard"]
        view = dashboard_view(app, app.clock(), words)
    finally:
        app.close()
    rows = [
        [cell.text_content() for cell in row.xpath("th|td")]
        for row in page.xpath("//table[@id='category-weeks']/tbody/tr")
    ]
    assert rows == [[name, *map(str, chart.series[0].values)] for name, chart in view.categories]
    assert rows[1][0] == "政策解读" and sum(map(int, rows[1][1:])) == 2 and sum(map(int, rows[2][1:])) == 1
    charts = page.xpath("//svg[@role='img']")
    assert len(charts) == 2 + 3  # the list's size and changes, a chart per category (no digest yet)
    tech = [c for c in charts if c.xpath("string(title)") == "科技创新"][0]
    assert [r.xpath("string(title)") for r in tech.xpath("rect[title]")] == ["11-16: 文章 1"]


def test_an_editor_starts_an_ingest_from_the_sources_page_and_the_audit_log_says_so(site: Site) -> None:
    from admin_session import admin_config, csrf_of, signed_in_client

    site.write_config(site.mail_to_outbox() + admin_config("http://127.0.0.1:9"))
    site.article("news.md", "新闻", date="2026-11-17 14:00")
    client = signed_in_client(site, email="editor@example.org", role="editor")
    page = html.fromstring(client.get("/admin/sources").get_data(as_text=True))
    assert (
        page.xpath("//button[@id='ingest-now']") and page.xpath("string(//table[@id='feeds']/tbody/tr[1]/td[1])") == "0"
    )
    answer = client.post("/admin/sources/ingest", data={"csrf": csrf_of(client)})
    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/sources"
    runner = client.application.extensions["publisher.console-ingest"]
    assert runner.wait(60) and runner.last.report.new == 1
    page = html.fromstring(client.get("/admin/sources").get_data(as_text=True))
    assert "新增 1" in page.xpath("string(//p[@id='ingest-state'])")
    feeds = {row.xpath("string(th)"): row.xpath("string(td[1])") for row in page.xpath("//table[@id='feeds']/tbody/tr")}
    assert feeds["rss.xml"] == "1" and feeds["policy/rss.xml"] == "0"
    store = Store(site.store_url)
    try:
        (entry,) = [e for e in store.audit_entries() if e.action == "source.ingest"]
        assert entry.actor == "editor@example.org"
    finally:
        store.close()


def test_a_viewer_sees_the_sources_page_without_the_button(site: Site) -> None:
    from admin_session import admin_config, signed_in_client

    site.write_config(site.mail_to_outbox() + admin_config("http://127.0.0.1:9"))
    client = signed_in_client(site, email="viewer@example.org", role="viewer")
    page = html.fromstring(client.get("/admin/sources").get_data(as_text=True))
    assert page.xpath("//table[@id='feeds']") and not page.xpath("//button[@id='ingest-now']")
