"""`/healthz`: can this process do its work? JSON, 200 when every part can, 503 naming the one that cannot.

The parts: `templates` (every template the pages, the account mails, the digest and the index
load and compile in the environments that render them), `database` (a cheap read works),
`output` (the output folder exists and this process can write there, as every rebuild must),
and the scheduler's state; and `sources`, each source's and each of its parts' last success and
last error. Anyone sees each part's ok or error and the times; the reasons, the delivery counts,
the jobs and what failed in a source (its parts, errors, URLs and hints) only a request with the
`[web] health_token_env` token. A load balancer, systemd or a monitor asks it every few seconds,
so it stays cheap: the templates' answer is kept for `TEMPLATES_TTL` seconds.

A source or part whose last run failed makes the answer `"status": "degraded"`, still 200:
the site it reads is down or changed, not this service, and restarting it would not help. So
does a WebSub hub whose last ping failed (`websub`, with `[websub] hubs`), until one succeeds.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, request
from jinja2 import Environment, TemplateError, TemplateNotFound, TemplateSyntaxError, meta

from ..store import WHOLE_SOURCE, ScopeHealth, SourceHealth
from .shared import current

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger(__name__)

TEMPLATES_TTL = 10.0

health = Blueprint("health", __name__)


class TemplateCheck:
    """Whether each named template, and every template it extends or includes, loads and compiles
    in its environment. `sources` gives the (environment, names) pairs at each check, so it asks
    the environments the service really renders with. The answer is kept for `ttl` seconds."""

    def __init__(
        self,
        sources: Callable[[], Iterable[tuple[Environment, Sequence[str]]]],
        ttl: float = TEMPLATES_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sources, self.ttl, self.clock = sources, ttl, clock
        self._lock = threading.Lock()
        self._answer: tuple[float, str | None] | None = None

    def problem(self) -> str | None:
        """None when every template is usable, else what is wrong with the first that is not."""
        with self._lock:
            now = self.clock()
            if self._answer is None or now - self._answer[0] >= self.ttl:
                self._answer = (now, self._first_problem())
            return self._answer[1]

    def _first_problem(self) -> str | None:
        try:
            for env, names in self.sources():
                for name in names:
                    if (problem := template_problem(env, name)) is not None:
                        return problem
        except Exception as exc:  # noqa: BLE001 - an environment that cannot even be made is a problem
            return f"{exc.__class__.__name__}: {exc}"
        return None


def template_problem(env: Environment, name: str) -> str | None:
    """Load and compile `name` and what it references (`extends`, `include`, `import`)."""
    pending: list[tuple[str, str | None]] = [(name, None)]  # (template, the template that uses it)
    seen: set[str] = set()
    while pending:
        current_name, used_by = pending.pop()
        if current_name in seen:
            continue
        seen.add(current_name)
        try:
            env.get_template(current_name)  # loads and compiles, or raises
            assert env.loader is not None
            source, _filename, _uptodate = env.loader.get_source(env, current_name)
            references = meta.find_referenced_templates(env.parse(source))
            pending += [(reference, current_name) for reference in references if reference is not None]
        except TemplateNotFound as exc:
            return f"{exc.name} not found" + (f" (used by {used_by})" if used_by else "")
        except TemplateSyntaxError as exc:
            return f"{exc.name or current_name} line {exc.lineno}: {exc.message}"
        except (TemplateError, OSError, UnicodeDecodeError) as exc:
            return f"{current_name}: {exc.__class__.__name__}: {exc}"
    return None


class ProblemLog:
    """Logs what /healthz finds wrong when that changes, not at every poll: the operator's why."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, str] = {}

    def report(self, problems: dict[str, str]) -> None:
        with self._lock:
            if problems == self._last:
                return
            self._last = dict(problems)
        if problems:
            log.warning("/healthz: %s", "; ".join(f"{part}: {why}" for part, why in problems.items()))
        else:
            log.info("/healthz: every part works again")


def database_problem(app: App) -> tuple[str | None, dict[str, Any]]:
    """A cheap read of the store: the last ingest and digest, the sources' health, or why it failed."""
    store = app.store
    try:
        last_ingest = store.get_meta("last_ingest")
        last = store.last_digest()
        facts = {
            "last_ingest": json.loads(last_ingest) if last_ingest else None,
            "last_digest": (
                {"key": last.key, "status": last.status, "counts": store.delivery_counts(last.id)} if last else None
            ),
            "sources": sources_view(app.source_health()),
        }
        websub = app.websub_view()
        if websub is not None:
            facts["websub"] = websub
    except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return f"{exc.__class__.__name__}: {reason[0][:200] if reason else ''}".rstrip(": "), {}
    return None, facts


def sources_view(sources: Sequence[SourceHealth]) -> dict[str, Any]:
    """Per configured source: `status` (`ok`; `degraded` when its or a part's last run failed;
    `not read yet`), the whole source's last success and last error, its failed items waiting,
    and the same for each part (a category, a list URL)."""
    view: dict[str, Any] = {}
    for source in sources:
        whole = next((_part_view(p) for p in source.parts if p.scope == WHOLE_SOURCE), None)
        parts = {p.scope: _part_view(p) for p in source.parts if p.scope != WHOLE_SOURCE}
        status = "degraded" if source.failing else "ok" if source.parts else "not read yet"
        view[source.name] = {
            "status": status,
            "last_success": whole["last_success"] if whole else None,
            "last_error": whole["last_error"] if whole else None,
            "failed_items": source.failed_items,
            "parts": parts,
        }
    return view


def _part_view(part: ScopeHealth) -> dict[str, Any]:
    error = None
    if part.last_error_at is not None:
        error = {"at": _moment(part.last_error_at), "error": part.last_error, "url": part.last_error_url,
                 "hint": part.last_hint, "runs_failed": part.failures}  # fmt: skip
    return {"status": "failed" if part.failing else "ok", "last_success": _moment(part.last_success),
            "items": part.items, "last_error": error}  # fmt: skip


def _moment(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _public_sources(sources: dict[str, Any]) -> dict[str, Any]:
    """A source's status and times, for anyone: its last success, and when it or one of its
    parts last failed. Which part, and why, is for the operator's token."""
    view = {}
    for name, source in sources.items():
        errors = [source["last_error"], *(part["last_error"] for part in source["parts"].values())]
        times = [error["at"] for error in errors if error is not None]
        view[name] = {"status": source["status"], "last_success": source["last_success"],
                      "last_error_at": max(times) if times else None}  # fmt: skip
    return view


def _public_websub(websub: dict[str, Any]) -> dict[str, Any]:
    """Each hub's status and times, for anyone (the hubs are named in every feed); its error and
    the URLs waiting are for the operator's token."""
    hubs = {hub: {"status": view["status"], "last_success": view["last_success"],
                  "last_error_at": view["last_error"]["at"] if view["last_error"] else None}
            for hub, view in websub["hubs"].items()}  # fmt: skip
    return {"status": websub["status"], "hubs": hubs}


def output_problem(folder: Path) -> str | None:
    """The output folder exists and this process may create and replace files in it."""
    if not folder.exists():
        return "the output folder does not exist"
    if not folder.is_dir():
        return "the output folder is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "the output folder is not writable by this process"
    return None


def public_view(report: dict[str, Any]) -> dict[str, Any]:
    """What anyone may see: each part's ok or error, the state and the times. The reasons,
    the delivery counts (the list's size) and the jobs are for the operator's token."""
    view: dict[str, Any] = {
        part: ("ok" if report[part] == "ok" else "error") for part in ("templates", "database", "output")
    }
    ingest, digest = report.get("last_ingest"), report.get("last_digest")
    view["last_ingest"] = {"at": ingest.get("at")} if isinstance(ingest, dict) else None
    view["last_digest"] = {"key": digest["key"], "status": digest["status"]} if isinstance(digest, dict) else None
    scheduler = report["scheduler"]
    view["scheduler"] = {key: scheduler[key] for key in ("state", "ingest") if key in scheduler}
    if str(view["scheduler"].get("state", "")).startswith("error"):
        view["scheduler"]["state"] = "error"
    view["sources"] = _public_sources(report["sources"]) if isinstance(report.get("sources"), dict) else None
    if isinstance(report.get("websub"), dict):
        view["websub"] = _public_websub(report["websub"])
    view["status"] = report["status"]
    return view


def shows_details(token: str | None) -> bool:
    """The request carries `Authorization: Bearer <token>` with the configured token."""
    if token is None:
        return False
    sent = request.headers.get("Authorization", "")
    scheme, _, value = sent.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


@health.get("/healthz")
def healthz() -> Response:
    state = current()
    report: dict[str, Any] = {}
    problems: dict[str, str] = {}
    checks: list[tuple[str, str | None]] = [("templates", state.templates.problem())]
    database, facts = database_problem(state.app)
    checks += [("database", database), ("output", output_problem(state.out_dir))]
    for part, problem in checks:
        report[part] = "ok" if problem is None else f"error: {problem}"
        if problem is not None:
            problems[part] = problem
    report.update(facts)
    try:
        report["scheduler"] = state.health() if state.health else {"state": "off"}
    except Exception as exc:  # noqa: BLE001
        report["scheduler"] = {"state": f"error: {exc.__class__.__name__}"}
        problems["scheduler"] = exc.__class__.__name__
    degraded = any(source["status"] == "degraded" for source in facts.get("sources", {}).values())
    degraded = degraded or facts.get("websub", {}).get("status") == "degraded"
    report["status"] = "error" if problems else "degraded" if degraded else "ok"
    state.problems.report(problems)
    shown = report if shows_details(state.health_token) else public_view(report)
    answer = Response(json.dumps(shown, ensure_ascii=False), 503 if problems else 200, mimetype="application/json")
    answer.headers["Cache-Control"] = "no-store"
    return answer
