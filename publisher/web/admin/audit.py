"""What admins read: the audit log (/admin/audit) and the configuration (/admin/settings,
read-only: the file is the one place settings change)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from flask import Response, request

from ..shared import current
from . import admin
from .auth import requires
from .layout import render_admin

PAGE = 100


@admin.get("/audit")
@requires("admin")
def audit_page() -> Response:
    before = request.args.get("before", "")
    entries = current().app.store.audit_entries(PAGE, int(before) if before.isdigit() else None)
    older = entries[-1].id if len(entries) == PAGE else None
    return render_admin("audit.html.j2", entries=entries, older=older)


@admin.get("/settings")
@requires("admin")
def settings_page() -> Response:
    """The configuration in force, as TOML-like sections. Secrets are only named (`*_env`) and
    read from the environment, but a URL may carry a password (`store.url`'s PostgreSQL user):
    shown as `***`."""
    dumped = without_passwords(current().app.settings.model_dump(mode="json"))
    sections = [(name, json.dumps(value, ensure_ascii=False, indent=2)) for name, value in dumped.items()]
    return render_admin("settings.html.j2", sections=sections)


SECRET_PARAMETERS = frozenset(
    {"password", "passwd", "pass", "pwd", "sslpassword", "token", "access_token", "key", "api_key", "apikey",
     "secret", "client_secret", "signature", "sig"}
)  # fmt: skip


def without_passwords(value: Any) -> Any:
    """`value` (the settings as JSON) with the secrets in every URL in it replaced by `***`: the
    password of `user:password@`, and query parameters named as secrets are (`?password=`, which
    psycopg takes as the password too, `?api_key=`, `?access_token=` ...)."""
    if isinstance(value, dict):
        return {key: without_passwords(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_passwords(item) for item in value]
    if not isinstance(value, str) or "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return value
    if password is not None:
        user, host = parts.netloc.rsplit("@", 1)
        parts = parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}")
    if parts.query:
        pairs = [pair.partition("=") for pair in parts.query.split("&")]
        hidden = [(k, eq, "***" if eq and unquote_plus(k).lower() in SECRET_PARAMETERS else v) for k, eq, v in pairs]
        parts = parts._replace(query="&".join(k + eq + v for k, eq, v in hidden))
    return urlunsplit(parts) if parts != urlsplit(value) else value  # sqlite:/// keeps its slashes
