"""The web side: the feeds folder, the subscription pages, /healthz. A Flask app, one per process.

`create_app` builds the app and registers one blueprint a module: `feeds` (the output folder),
`account` (the reader's pages), `embed` (the sign-up form on other sites' pages), `health`
(/healthz), `hooks` (the mail providers' events),
`metrics` (/metrics, and the count of every request), `admin` (the operator's console, a package;
`create_admin_app` serves it on its own address). What
they share per app (the App, the words, the sign-up limits) is a `WebState` on the Flask app
(`shared.py`), never a module global; the hooks' doors and replay guard a `HookState` beside it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask

from ..bounces.providers import ReplayGuard
from ..config import optional_secret
from ..newsletter import Newsletter
from ..signup import SignupLimits
from .account import PAGE_TEMPLATES, account
from .admin import install_admin
from .admin.layout import admin_templates
from .embed import embed
from .feeds import feeds
from .health import ProblemLog, TemplateCheck
from .health import health as health_pages
from .hooks import HookState, hooks, install_hooks
from .metrics import MetricsAccess, install_metrics
from .shared import WebState, install
from .unsubscribes import Unsubscribes, queue_file_for, store_applier

if TYPE_CHECKING:
    from ..app import App

__all__ = ["create_admin_app", "create_app"]

# What the rest of the service renders through the theme: the index page and the category
# pages of every build (pages.py), the digest, the sign-up and welcome e-mails (digest.py), the
# digest archive (archive.py), the embedded sign-up form (web/embed.py).
SERVICE_TEMPLATES = (
    "index.html.j2", "category.html.j2", "digest.html.j2", "digest.txt.j2", "account.html.j2", "account.txt.j2",
    "welcome.html.j2", "welcome.txt.j2", "embed.html.j2",
    "digest_archive.html.j2", "digest_archive_index.html.j2", "digest_archive.css.j2",
)  # fmt: skip


def create_app(app: App, health: Callable[[], dict[str, Any]] | None = None) -> Flask:
    """The WSGI app for `app`'s settings. `health` adds the scheduler's state to /healthz.
    The console is at /admin unless `[admin] enabled` is false or `[admin] listen` gives it
    an address of its own (create_admin_app)."""
    web, settings = _flask_app(app, health), app.settings
    # The providers' webhooks: their secrets are read now, so a missing one stops the start.
    install_hooks(
        web, HookState(app.hook_doors(), app.record_mail_events, settings.hooks.body_limit, ReplayGuard(app.store))
    )
    if settings.metrics.enabled:
        app.watch_store()
        install_metrics(web, MetricsAccess(settings.metrics.public, optional_secret(settings.web.health_token_env)))
    web.register_blueprint(health_pages)
    web.register_blueprint(hooks)
    web.register_blueprint(account)
    web.register_blueprint(embed)
    admin = settings.admin
    if admin.enabled and not admin.listen:
        install_admin(web, app)
    web.register_blueprint(feeds)
    return web


def create_admin_app(app: App) -> Flask:
    """The console alone (`[admin] listen`): /admin, and / sending there."""
    from flask import redirect

    web = _flask_app(app, None)
    install_admin(web, app)
    web.add_url_rule("/", "to_console", lambda: redirect("/admin/", 303))
    return web


def _flask_app(app: App, health: Callable[[], dict[str, Any]] | None) -> Flask:
    """A Flask app with the per-app state every blueprint shares (shared.WebState)."""
    settings = app.settings
    letters = Newsletter(app)
    console_templates = admin_templates() if settings.admin.enabled else []
    # Pages render through the theme's environment (shared.page), not Flask's own.
    web = Flask(__name__, template_folder=None, static_folder=None)
    web.config.update(
        SECRET_KEY=hmac.new(letters.signing_key, b"web session", "sha256").digest(),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=letters.public_url.startswith("https://"),
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    install(
        web,
        WebState(
            app=app,
            letters=letters,
            words=app.messages["pages"],
            out_dir=Path(settings.output.dir).resolve(),
            limits=SignupLimits(
                settings.web.subscribe_per_address,
                settings.web.subscribe_per_client,
                settings.web.confirmation_mails_per_day,
            ),
            mailer=ThreadPoolExecutor(max_workers=1, thread_name_prefix="publisher-mail"),
            health=health,
            # Every template in the environment that renders them all, the theme's (its
            # overrides, then the bundled files); shared.page renders `web/<page>`.
            templates=TemplateCheck(
                lambda: [
                    (
                        app.theme.environment,
                        [*(f"web/{name}" for name in PAGE_TEMPLATES), *SERVICE_TEMPLATES, *console_templates],
                    )
                ]
            ),
            problems=ProblemLog(),
            unsubscribes=Unsubscribes(queue_file_for(settings.store.url), store_applier(app.store)),
            health_token=optional_secret(settings.web.health_token_env),
        ),
    )
    return web
