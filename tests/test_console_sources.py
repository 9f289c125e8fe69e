"""The console's sources page, as its view reads the store and the output folder, and its
"ingest now" runner: one background build at a time, its result kept for the page."""

from __future__ import annotations

from datetime import UTC, datetime

from conftest import Site
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
        busy = IngestNow(app, runner.clock, elsewhere=lambda: True)  # the scheduler's ingest is running
        assert not busy.start() and busy.last.started is None
        assert runner.start()  # over: the next press starts another
        assert runner.wait(60) and runner.last.report is not None and runner.last.report.new == 0
    finally:
        app.close()


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
