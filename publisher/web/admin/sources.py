"""The console's /admin/sources: each source with its parts' last runs and its live articles,
each category with its articles, each feed file with its items, last change and link; and
"ingest now" for editors.

"Ingest now" runs `App.build` (ingest, then write what changed), as the scheduler's ingest job
does, in one background thread of the web process: the page answers at once and shows the run
as running; a press while a build runs starts nothing, whichever process runs it (the store's
build lock, which the scheduler's ingest job takes too). The result (or the error) stays on
the page of the process that ran it until its next run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from flask import Response, current_app, request

from ...model import BuildReport, Category, FeedFormat, FeedSpec
from ...store import SourceHealth
from ..shared import current
from . import admin
from .auth import audit, current_account, requires, see_other
from .layout import in_zone, render_admin

if TYPE_CHECKING:
    from ...app import App

log = logging.getLogger(__name__)


INGEST_EXTENSION = "publisher.console-ingest"


@admin.get("/sources")
def sources_page() -> Response:
    from ...accounts import role_at_least

    app = current().app
    account = current_account()
    return render_admin(
        "sources.html.j2",
        view=sources_view(app),
        w=app.messages["admin"]["sources"],
        ingest=console_ingest(),
        can_ingest=account is not None and role_at_least(account.role, "editor"),
        busy=request.args.get("ingest") == "busy",
    )


@admin.post("/sources/ingest")
@requires("editor")
def ingest_now() -> Response:
    """Start a build in the background (see IngestNow); the page shows how it goes."""
    if not console_ingest().start():
        return see_other("/admin/sources?ingest=busy")
    audit("source.ingest", "every source", "ingest now, from the console")
    return see_other("/admin/sources")


def console_ingest() -> IngestNow:
    """This web app's one runner, made at its first use."""
    runner: IngestNow | None = current_app.extensions.get(INGEST_EXTENSION)
    if runner is None:
        state = current()
        runner = current_app.extensions.setdefault(INGEST_EXTENSION, IngestNow(state.app, state.app.clock))
    return runner


@dataclass(frozen=True, slots=True)
class SourceRow:
    name: str
    type: str
    articles: int  # live articles from this source
    health: SourceHealth


@dataclass(frozen=True, slots=True)
class FeedRow:
    path: str  # under the output folder
    url: str
    items: int  # what the feed holds: the scope's live articles, at most [feeds] max_items
    changed: datetime | None  # the file's last change (written only when its bytes change); None: not written


@dataclass(frozen=True, slots=True)
class SourcesView:
    sources: list[SourceRow]
    categories: list[tuple[Category, int]]  # each configured category and its live articles
    feeds: list[FeedRow]
    zone: ZoneInfo

    def local(self, moment: datetime | None) -> str:
        """A moment in the site's zone, to the minute ("" for none)."""
        return in_zone(moment, self.zone)


def sources_view(app: App) -> SourcesView:
    store = app.store
    by_source = store.live_articles_by_source()
    health = {h.name: h for h in app.source_health()}
    sources = [
        SourceRow(s.source_name, s.type, by_source.get(s.source_name, 0), health[s.source_name])
        for s in app.settings.sources
    ]
    counts = store.live_article_counts()
    categories = [(c, counts.get(c.slug, 0)) for c in app.categories]
    most = app.settings.feeds.max_items
    feeds = []
    for scope in (None, *app.categories):
        for fmt in FeedFormat:
            spec = FeedSpec(fmt, scope)
            items = min(counts.get(scope.slug if scope else "", 0), most)
            feeds.append(FeedRow(spec.path, app.links.of(spec.path), items, _changed(app.out_dir / spec.path)))
    return SourcesView(sources, categories, feeds, ZoneInfo(app.settings.site.timezone))


def _changed(path: Path) -> datetime | None:
    from ...app import utc_now

    try:
        stamp = path.stat().st_mtime
    except OSError:
        return None
    return datetime.fromtimestamp(stamp, utc_now().tzinfo)


@dataclass
class IngestRun:
    """The console's one background ingest: when it started and, once over, how it went."""

    started: datetime | None = None
    finished: datetime | None = None
    report: BuildReport | None = None
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.started is not None and self.finished is None


class IngestNow:
    """Starts a build (ingest, then write what changed) in a daemon thread unless one started
    here is still running, or another holds the store's build lock (the scheduler's ingest, or
    the console's of another web process)."""

    def __init__(self, app: App, clock: Callable[[], datetime]) -> None:
        self.app, self.clock = app, clock
        self.last = IngestRun()
        self._lock = threading.Lock()

    def start(self) -> bool:
        """True when a run started now; False when one is already running."""
        with self._lock:
            if self.last.running or self.app.store.build_running():
                return False
            self.last = IngestRun(started=self.clock())
        threading.Thread(target=self._run, name="publisher-console-ingest", daemon=True).start()
        return True

    def wait(self, timeout: float) -> bool:
        """For tests and the CLI: True once the running build has ended."""
        import time

        end = time.monotonic() + timeout
        while self.last.running and time.monotonic() < end:
            time.sleep(0.05)
        return not self.last.running

    def _run(self) -> None:
        from ...app import App

        report = BuildReport()
        error = None
        run = App(self.app.settings, self.app.clock)  # its own store connections, as a scheduler job has
        try:
            with run.store.build_lock() as got:
                if got:
                    run.build(report)
                else:  # another process's build began since the press: this one would only repeat it
                    error = "another build of this site started meanwhile (the scheduler's); it builds what changed"
        except Exception as exc:  # noqa: BLE001 (shown on the page and logged; the web process goes on)
            log.exception("ingest started from the console failed")
            error = str(exc) or type(exc).__name__
        finally:
            run.close()
        with self._lock:
            self.last = IngestRun(self.last.started, self.clock(), report, error)
