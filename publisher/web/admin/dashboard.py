"""The console's first page. (admin-dash fills it: subscribers, digests, articles, sources.)"""

from __future__ import annotations

from flask import Response

from . import admin
from .layout import render_admin


@admin.get("/")
def dashboard() -> Response:
    return render_admin("dashboard.html.j2")
