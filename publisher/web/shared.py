"""What the blueprints share: the per-app state kept on the Flask app, page rendering, CSRF.

Everything per app lives in one `WebState` in `app.extensions`, so two apps in one process
(the tests make many) never share a mail thread or a language. The sign-up limits' counts are
in the store (signup.allow_signup), shared by every process.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request, session

if TYPE_CHECKING:
    from ..app import App
    from ..newsletter import Newsletter
    from ..signup import SignupLimits
    from .health import ProblemLog, TemplateCheck
    from .unsubscribes import Unsubscribes

EXTENSION = "publisher"


@dataclass(frozen=True)
class WebState:
    """One Flask app's view of the service: the App, its newsletter, words, limits, mail thread,
    and what /healthz checks (`health` adds the scheduler's part)."""

    app: App
    letters: Newsletter
    words: dict[str, Any]
    out_dir: Path
    limits: SignupLimits
    mailer: ThreadPoolExecutor
    health: Callable[[], dict[str, Any]] | None
    templates: TemplateCheck
    problems: ProblemLog
    unsubscribes: Unsubscribes
    health_token: str | None = None  # shows /healthz's details (`[web] health_token_env`)


def install(web: Flask, state: WebState) -> None:
    web.extensions[EXTENSION] = state


def current() -> WebState:
    """The state of the app handling this request."""
    state: WebState = current_app.extensions[EXTENSION]
    return state


LIMITS_RETRY_AFTER = "3600"  # seconds: the sign-up limits count by the hour (signup.allow_signup)


def retry_after_limits(response: Response) -> Response:
    """`response` (a 429 of the sign-up limits, a page's or JSON) with its Retry-After."""
    response.headers["Retry-After"] = LIMITS_RETRY_AFTER
    return response


def page(template: str, status: int = 200, **context: Any) -> Response:
    """A reader's HTML page (`templates/web/<template>`, through the theme): the site's words and
    names, no caching, no framing, no referrer."""
    state = current()
    settings, theme = state.app.settings, state.app.theme
    base = {
        "t": state.words,
        "theme": theme.context(),
        "language": settings.site.language,
        "list_name": state.letters.list_name,
        "site_title": settings.site.title,
        "site_url": state.letters.look.site.url,
        "feeds_url": "/",
    }
    html = theme.environment.get_template(f"web/{template}").render(**base, **context)
    response = Response(html, status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # tokens are in the URL
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; img-src 'self'{_origin(theme.logo_url)}; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    return response


def _origin(url: str) -> str:
    """' https://host[:port]' for the logo's server, so the page's CSP lets the logo load; built
    from the parsed parts alone (config.checks admits only a plain host), never pasted from the URL."""
    parts = urlsplit(url)
    if not url or parts.hostname is None:
        return ""
    port = f":{parts.port}" if parts.port else ""
    return f" {parts.scheme}://{parts.hostname}{port}"


def csrf_token() -> str:
    """This browser's form token, kept in Flask's signed session cookie."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return str(session["csrf"])


def csrf_valid() -> bool:
    """The posted form carries the token of this browser's session."""
    sent = session.get("csrf")
    return bool(sent) and hmac.compare_digest(str(sent).encode(), request.form.get("csrf", "").encode())


def client_address() -> str:
    """The client's address. Behind the proxy that `[web] trust_proxy` names, waitress has
    already made it the address the proxy appended to `X-Forwarded-For` (web/server.py), and
    dropped that header from anyone else."""
    return request.remote_addr or "?"
