"""`/metrics`: the App's counters and the store's gauges in Prometheus' text format, and the
count of every web request by route rule, method and status.

Who may read it: anyone when `[metrics] public = true`; otherwise a request carrying the
operator's token (`Authorization: Bearer <the [web] health_token_env value>`, as /healthz's
details), or one from this machine that no proxy forwarded (a Prometheus scraping
127.0.0.1 directly; a request that came through a reverse proxy on this machine carries its
forwarding headers and is not taken as local). Everyone else gets 403.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from .health import shows_details
from .shared import current

EXTENSION = "publisher.metrics"
FORWARDING_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # any other is "other"

metrics = Blueprint("metrics", __name__)


@dataclass(frozen=True, slots=True)
class MetricsAccess:
    public: bool  # `[metrics] public`
    token: str | None  # the operator's token (`[web] health_token_env`), if set


def install_metrics(web: Flask, access: MetricsAccess) -> None:
    web.extensions[EXTENSION] = access
    web.register_blueprint(metrics)


@metrics.after_app_request
def count_request(response: Response) -> Response:
    """Every request, by the rule that matched it (never the raw path: the label's values stay few)."""
    rule = request.url_rule
    method = request.method if request.method in METHODS else "other"
    current().app.metrics.web_request(rule.rule if rule is not None else None, method, response.status_code)
    return response


def from_this_machine() -> bool:
    """The client is a loopback address and no proxy forwarded the request."""
    if any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address((request.remote_addr or "").split("%")[0]).is_loopback
    except ValueError:
        return False


@metrics.get("/metrics")
def scrape() -> Response:
    access: MetricsAccess = current_app.extensions[EXTENSION]
    if not (access.public or shows_details(access.token) or from_this_machine()):
        refused = Response("forbidden: /metrics needs the operator's token, or a request from this machine\n", 403,
                           mimetype="text/plain")  # fmt: skip
        refused.headers["Cache-Control"] = "no-store"
        return refused
    answer = Response(generate_latest(current().app.metrics.registry), 200)
    answer.headers["Content-Type"] = CONTENT_TYPE_PLAIN_0_0_4  # what every Prometheus reads
    answer.headers["Cache-Control"] = "no-store"
    return answer
