"""The operator's console: the `admin` blueprint at /admin, signed-in pages only.

This module makes the blueprint and imports its page modules, each of which adds its routes
with `@admin.get(...)` / `@admin.post(...)`. Every route passes `auth.guard` first (a signed-in
account; CSRF and an editor for a POST), so a page module says only what is special:
`@requires("editor" | "admin")`, `@own_account`, `@public`. `install_admin` puts the console's
settings on a Flask app (`auth.AdminState`) and registers the blueprint.
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import TYPE_CHECKING

from flask import Blueprint

from ...accounts import LoginLimits
from ...config import is_loopback
from .auth import ADMIN_EXTENSION, AdminState, guard, set_form_cookie

if TYPE_CHECKING:
    from flask import Flask

    from ...app import App

admin = Blueprint("admin", __name__, url_prefix="/admin", static_folder="static", static_url_path="/static")
admin.before_request(guard)
admin.after_request(set_form_cookie)


def password_url(base: str, token: str) -> str:
    """The one-time set-password page for `token` on the console at `base` (signin.py's route)."""
    return f"{base}/admin/password/{token}"


# The page modules, each adding its routes to `admin`; a new page is one more name here.
PAGES = ("signin", "account", "accounts", "audit", "dashboard", "subscribers", "digests", "sources")
for _page in PAGES:
    importlib.import_module(f"{__name__}.{_page}")


def console_url(app: App) -> str:
    """Where the console is reached: `[admin] public_url`, else the public pages' URL."""
    settings = app.settings
    return (settings.admin.public_url or settings.web.public_url or settings.site.url).rstrip("/")


def install_admin(web: Flask, app: App) -> None:
    """The console on `web`: its settings, then the blueprint."""
    config = app.settings.admin
    base = console_url(app)
    web.extensions[ADMIN_EXTENSION] = AdminState(
        idle=timedelta(minutes=config.idle_minutes),
        lifetime=timedelta(hours=config.session_hours),
        # A browser keeps a Secure cookie from an https page only; a trial on plain http is
        # possible on a loopback address alone (as config.checks allows for the URL itself).
        secure_cookie=not (base.startswith("http://") and is_loopback(base)),
        limits=LoginLimits(timedelta(minutes=config.lockout_minutes), config.failed_logins_per_client),
        base_url=base,
    )
    web.register_blueprint(admin)
