"""The console's first page, /admin/: the list's growth, the last digests, articles per category
and the sources' health, each as a chart with its numbers in a table beside it.

`dashboard_view` reads the store once per request (store.reports); what each number means is
said in docs/operations.md, "The console".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from flask import Response

from ...store import DigestReport, SourceHealth, SubscriberWeek, weeks_ending
from ..shared import current
from . import admin
from .charts import Chart, Series, bar_svg, line_svg
from .layout import in_zone, render_admin

if TYPE_CHECKING:
    from ...app import App

WEEKS = 12  # the weeks the charts show, up to and including this one
DIGESTS = 10  # the last digests shown


@admin.get("/")
def dashboard() -> Response:
    """Every signed-in account (viewers included) sees the dashboard."""
    app = current().app
    words = app.messages["admin"]["dashboard"]
    return render_admin("dashboard.html.j2", view=dashboard_view(app, app.clock(), words), w=words)


@dataclass(frozen=True, slots=True)
class DashboardView:
    """What the dashboard template shows."""

    list_size: Chart
    changes: Chart
    subscriber_weeks: list[SubscriberWeek]
    digests_chart: Chart
    digests: list[DigestReport]
    categories: list[tuple[str, Chart]]  # (category name, its articles by week), as configured
    sources: list[SourceHealth]
    zone: ZoneInfo

    def svg(self, chart: Chart, kind: str = "bar") -> object:
        """A chart drawn: "line", "bar" (stacked), "grouped" or "small"."""
        if kind == "line":
            return line_svg(chart)
        return bar_svg(chart, stacked=kind != "grouped", small=kind == "small")

    def local(self, moment: datetime | None) -> str:
        """A moment in the site's zone, to the minute ("" for none)."""
        return in_zone(moment, self.zone)


def dashboard_view(app: App, now: datetime, words: Mapping[str, str]) -> DashboardView:
    """The dashboard's numbers as `app`'s store has them at `now`; `words` the [admin.dashboard]
    catalogue (chart titles and series names)."""
    zone = ZoneInfo(app.settings.site.timezone)
    weeks = weeks_ending(now, zone, WEEKS)
    labels = tuple(w.label[5:] for w in weeks)  # 11-30: the year is in the table
    store = app.store
    subscriber_weeks = store.subscriber_weeks(weeks)
    list_size = Chart(
        "list-size", words["list_size"], words["list_size_desc"], labels,
        (Series(words["list_size"], tuple(w.list_size for w in subscriber_weeks)),),
    )  # fmt: skip
    changes = Chart(
        "changes", words["changes"], words["changes_desc"], labels,
        tuple(Series(words[name], tuple(getattr(w, name) for w in subscriber_weeks))
              for name in ("confirmed", "pending", "unsubscribed", "bounced")),
    )  # fmt: skip
    digests = store.digest_reports(DIGESTS)
    oldest_first = list(reversed(digests))
    digests_chart = Chart(
        "digests", words["digests"], words["digests_desc"],
        tuple(d.created_at.astimezone(zone).strftime("%m-%d") for d in oldest_first),
        tuple(Series(words[name], tuple(getattr(d, name) for d in oldest_first))
              for name in ("sent", "failed", "uncertain", "skipped", "waiting")),
    )  # fmt: skip
    by_slug = {c.slug: c for c in store.category_weeks(weeks)}
    categories = []
    for category in app.categories:
        counts = by_slug[category.slug].counts if category.slug in by_slug else (0,) * len(weeks)
        chart = Chart(f"category-{category.slug}", category.name, words["articles_desc"], labels,
                      (Series(words["articles"], counts),))  # fmt: skip
        categories.append((category.name, chart))
    return DashboardView(
        list_size, changes, subscriber_weeks, digests_chart, digests, categories, app.source_health(), zone
    )
