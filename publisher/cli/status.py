"""`publisher status`: each source and each of its parts, as their last runs left them.

Exit code 0 when every source and part was read at its last run, 1 when one failed or a
WebSub hub's last ping failed (so cron and monitoring can act on it), 2 for a configuration or
store problem as elsewhere. The hubs are shown under the table (`--format table`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from ..model import WHOLE_SOURCE_LABEL
from .base import EXIT_PROBLEMS, load_app, main, out
from .tables import FORMAT, Cell, Column, print_records

if TYPE_CHECKING:
    from ..sources.failed_items import FailedItem
    from ..store import ScopeHealth, SourceHealth

STATUS_COLUMNS = (
    Column("source"),
    Column("part", empty=WHOLE_SOURCE_LABEL),
    Column("state"),
    Column("last_success", "last success", time=True, empty="never"),
    Column("last_error_at", "last error", time=True, empty="-"),
    Column("error"),
    Column("url", "error URL"),
    Column("hint"),
    Column("failed_items", "failed items", right=True),
)


FAILED_COLUMNS = (
    Column("source"),
    Column("what"),
    Column("url", "URL"),
    Column("error"),
    Column("attempts", right=True),
    Column("first_failed", "first failed", time=True),
    Column("last_failed", "last failed", time=True),
    Column("next_try", "next try", time=True),
)


def _state(part: ScopeHealth) -> str:
    return "failed" if part.failing else "ok"


def status_rows(sources: list[SourceHealth]) -> list[tuple[Cell, ...]]:
    """One row per source and part; the source's row carries its failed items waiting."""
    from ..store import WHOLE_SOURCE

    rows: list[tuple[Cell, ...]] = []
    for source in sources:
        if not source.parts:
            rows.append((source.name, "", "not read yet", None, None, None, None, None, source.failed_items))
        for part in source.parts:
            waiting = source.failed_items if part.scope == WHOLE_SOURCE else None
            rows.append(
                (source.name, part.scope, _state(part), part.last_success, part.last_error_at, part.last_error,
                 part.last_error_url, part.last_hint, waiting)
            )  # fmt: skip
    return rows


def failed_rows(items: list[tuple[str, FailedItem]]) -> list[tuple[Cell, ...]]:
    """One row per failed item: an article, or a walk of list pages that failed past its first
    page (its URL the page that failed, read again at the next run whatever its attempts: its
    next try says `next run`, not a backoff time)."""
    from ..sources.failed_items import WALK

    rows: list[tuple[Cell, ...]] = []
    for source, item in items:
        walk = item.key.startswith(WALK)
        rows.append(
            (source, "list page" if walk else "article", item.url, item.reason, item.failures,
             item.first_failed, item.last_failed, "next run" if walk else item.next_try)
        )  # fmt: skip
    return rows


def hub_lines(hubs: dict[str, Any] | None) -> list[str]:
    """One line per WebSub hub: ok, or its URLs waiting and its last error."""
    lines = []
    for hub, view in (hubs or {"hubs": {}})["hubs"].items():
        said = f"WebSub hub {hub}: {view['status']}"
        if view["waiting"]:
            later = f" (next try {view['next_try']})" if view["next_try"] else ""
            said += f", {view['waiting']} feed URL(s) waiting{later}"
        if view["status"] == "degraded" and view["last_error"]:
            error = view["last_error"]
            said += f"; {'refused' if error['refused'] else 'failed'} at {error['at']}: {error['error']}"
        lines.append(said)
    return lines


@main.command()
@FORMAT
@click.option(
    "--failed", "show_failed", is_flag=True,
    help="List the failed items waiting to be tried again instead (`publisher ingest --retry-failed` tries them now).",
)  # fmt: skip
@click.pass_context
def status(ctx: click.Context, output_format: str, show_failed: bool) -> None:
    """Each source and part: last success, last error, its URL and hint, failed items waiting.
    Exit 1 when a source or part failed at its last run. With --failed: each failed item."""
    app = load_app(ctx)
    try:
        if show_failed:
            items = app.failed_items_waiting()
        else:
            sources = app.source_health()
            hubs = app.websub_view()
    finally:
        app.close()
    if show_failed:
        print_records(FAILED_COLUMNS, failed_rows(items), output_format, app.settings.site.timezone)
        if output_format == "table":
            out.print(f"{len(items)} failed item(s) waiting", highlight=False)
        return
    print_records(STATUS_COLUMNS, status_rows(sources), output_format, app.settings.site.timezone)
    failing = [part for source in sources for part in source.parts if part.failing]
    if output_format == "table":
        waiting = sum(source.failed_items for source in sources)
        said = f"{len(sources)} source(s); {len(failing)} part(s) failed at their last run"
        out.print(f"{said}; {waiting} failed item(s) waiting", highlight=False)
        for line in hub_lines(hubs):
            out.print(line, highlight=False)
    if failing or (hubs is not None and hubs["status"] == "degraded"):
        sys.exit(EXIT_PROBLEMS)
