"""`/healthz`: the store answers, the last ingest and digest, the scheduler's state. JSON.

200 with `"status": "ok"` when every part works, 503 with `"status": "error"` and the failing
part named otherwise: what a load balancer or systemd's watchdog script asks.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response

from .shared import current

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> Response:
    state = current()
    store = state.app.store
    report: dict[str, Any] = {"database": "ok"}
    status = 200
    try:
        last_ingest = store.get_meta("last_ingest")
        digests = store.digests()
        report["last_ingest"] = json.loads(last_ingest) if last_ingest else None
        last = digests[-1] if digests else None
        report["last_digest"] = (
            {"key": last.key, "status": last.status, "counts": store.delivery_counts(last.id)} if last else None
        )
    except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
        report["database"] = f"error: {exc.__class__.__name__}"
        status = 503
    try:
        report["scheduler"] = state.health() if state.health else {"state": "off"}
    except Exception as exc:  # noqa: BLE001
        report["scheduler"] = {"state": f"error: {exc.__class__.__name__}"}
        status = 503
    report["status"] = "ok" if status == 200 else "error"
    return Response(json.dumps(report, ensure_ascii=False), status, mimetype="application/json")
