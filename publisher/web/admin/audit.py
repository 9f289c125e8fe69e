"""What admins read: the audit log (/admin/audit) and the configuration (/admin/settings,
read-only: the file is the one place settings change)."""

from __future__ import annotations

import json

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
    """The configuration in force, as TOML-like sections. It holds no secret: secrets are only
    named (`*_env`) and read from the environment."""
    dumped = current().app.settings.model_dump(mode="json")
    sections = [(name, json.dumps(value, ensure_ascii=False, indent=2)) for name, value in dumped.items()]
    return render_admin("settings.html.j2", sections=sections)
