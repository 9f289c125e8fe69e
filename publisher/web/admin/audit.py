"""What admins read: the audit log (/admin/audit) and the configuration (/admin/settings,
read-only: the file is the one place settings change)."""

from __future__ import annotations

import json
import re
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


SECRET_NAME = re.compile(r"token|secret|pass|pwd|key|sig|auth|credential", re.IGNORECASE)


def without_passwords(value: Any) -> Any:
    """`value` (the settings as JSON) with the secrets in every URL in it replaced by `***`: the
    user information before `@` (a password, or a token given as the user name) but a database
    URL's user name, query and fragment parameters whose names say secret (`password`, which
    psycopg takes as the password too, `api_key`, `access_token`, `private_token` ...). A URL
    that cannot be read is hidden whole."""
    if isinstance(value, dict):
        return {key: without_passwords(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_passwords(item) for item in value]
    if not isinstance(value, str) or "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        password, user = parts.password, parts.username
    except ValueError:
        return "***"
    if user is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        if parts.scheme.startswith(("http", "ftp", "ws")):  # a user name there may be a token
            parts = parts._replace(netloc=f"***@{host}")
        elif password is not None:  # a database's user name is no secret; its password is
            parts = parts._replace(netloc=f"{user}:***@{host}")
    parts = parts._replace(query=_hidden(parts.query), fragment=_hidden(parts.fragment))
    return urlunsplit(parts) if parts != urlsplit(value) else value  # sqlite:/// keeps its slashes


def _hidden(pairs: str) -> str:
    """`a=1&api_key=s3cret` as `a=1&api_key=***`."""
    if "=" not in pairs:
        return pairs
    split = [pair.partition("=") for pair in pairs.split("&")]
    return "&".join(k + eq + ("***" if eq and SECRET_NAME.search(unquote_plus(k)) else v) for k, eq, v in split)
