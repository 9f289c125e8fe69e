"""The console's pages: `render_admin` renders `templates/admin/<template>` (through the theme,
so an operator's folder overrides it) inside `admin/base.html.j2`, with the navigation, the
signed-in account, `csrf_field()` and the words of the site's language (`[admin]` of
templates/messages/*.toml), under a strict Content-Security-Policy: no inline script or style,
only the blueprint's own files."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, request

from ..shared import current
from .auth import csrf_field, current_account

# (catalogue key of the label, path, the role that sees it)
NAV = (
    ("dashboard", "/admin/", "viewer"),
    ("subscribers", "/admin/subscribers", "viewer"),
    ("digests", "/admin/digests", "viewer"),
    ("sources", "/admin/sources", "viewer"),
    ("accounts", "/admin/accounts", "admin"),
    ("audit", "/admin/audit", "admin"),
    ("settings", "/admin/settings", "admin"),
)

CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def admin_templates() -> list[str]:
    """Every bundled console template (`admin/<name>`), for /healthz's check."""
    from ...templating import TEMPLATES

    return sorted(f"admin/{path.name}" for path in (TEMPLATES / "admin").glob("*.j2"))


def admin_words() -> dict[str, Any]:
    """The `[admin]` catalogue entries of the site's language (theme overrides laid over)."""
    words: dict[str, Any] = current().app.messages["admin"]
    return words


def local_time(moment: datetime | None, seconds: bool = False) -> str:
    """A stored moment in the site's zone, as the pages show it ("" for None)."""
    return in_zone(moment, ZoneInfo(current().app.settings.site.timezone), seconds)


def in_zone(moment: datetime | None, zone: ZoneInfo, seconds: bool = False) -> str:
    """`moment` in `zone`, to the minute (or the second); "" for None."""
    if moment is None:
        return ""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def render_admin(template: str, status: int = 200, **context: Any) -> Response:
    """A console page: `templates/admin/<template>` with `context`, plus `t` (the words),
    `account` (signed in, or None), `nav` (label, path, active), `csrf_field()`, `local_time()`,
    `language`, `site_title` and `theme`. Never cached, never framed."""
    from ...accounts import role_at_least

    state = current()
    app = state.app
    account = current_account()
    words = admin_words()
    path = request.path
    nav = [
        (words["nav"][key], href, path == href or (href != "/admin/" and path.startswith(href + "/")))
        for key, href, role in NAV
        if account is not None and role_at_least(account.role, role)
    ]
    base = {
        "t": words,
        "account": account,
        "nav": nav,
        "csrf_field": csrf_field,
        "local_time": local_time,
        "language": app.settings.site.language,
        "site_title": app.settings.site.title,
        "theme": app.theme.context(),
    }
    html = app.theme.environment.get_template(f"admin/{template}").render(**(base | context))
    response = Response(html, status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # set-password tokens are in the URL
    return response
