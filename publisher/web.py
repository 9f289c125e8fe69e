"""The web side: the feeds folder, the subscription pages, /healthz. A Flask app, one per process.

- Files of the output folder with their media types, `ETag` and `Last-Modified` from the file,
  304 on `If-None-Match` / `If-Modified-Since`, gzip when the client accepts it.
- `/subscribe`: double opt-in. The form carries a CSRF token (kept in Flask's signed session
  cookie); requests are limited per address and per client; the answer is the same page
  whether or not the address was subscribed before, and the e-mail does the telling.
- `/confirm/<token>`, `/preferences/<token>`, `/unsubscribe/<token>`: a GET shows a page with
  a button and changes nothing (mail scanners follow links); a POST acts. The unsubscribe POST
  is RFC 8058's one-click target: no cookie, no CSRF token, idempotent, the token is the
  authority.
"""

from __future__ import annotations

import gzip
import hmac
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, abort, render_template, request, session
from jinja2 import StrictUndefined
from werkzeug.security import safe_join

from .model import Subscriber, SubscriberStatus
from .subscriptions import choose_categories, confirm, normalize_email, request_subscription, unsubscribe
from .templating import TEMPLATES
from .tokens import TokenError, expiry, read_token

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger(__name__)

MEDIA_TYPES = {
    "rss.xml": "application/rss+xml; charset=utf-8",
    "atom.xml": "application/atom+xml; charset=utf-8",
    "feed.json": "application/feed+json; charset=utf-8",
    ".opml": "text/x-opml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = ("xml", "json", "html", "opml", "css", "text/plain")

WORDS: dict[str, dict[str, str]] = {
    "zh": {
        "subscribe": "订阅{list_name}",
        "lead": "每周一封邮件，汇总您所选栏目的新文章。",
        "email": "邮箱地址",
        "name": "称呼（可不填）",
        "categories": "栏目（不选即为全部）",
        "none_is_all": "一个都不选，就是订阅全部栏目。",
        "submit": "订阅",
        "sent": "请查收邮件",
        "sent_body": "如果地址无误，我们刚给 {email} 发了一封邮件，请按邮件中的链接完成操作。"
        "没收到的话，请看看垃圾邮件文件夹。",
        "bad_email": "这个邮箱地址无效：{reason}",
        "too_many": "请求太多了，请稍后再试。",
        "expired": "链接无效或已过期",
        "expired_body": "这个链接已失效。请重新订阅，或使用最近一封邮件中的链接。",
        "confirm": "确认订阅",
        "confirm_body": "点击下面的按钮，确认用 {email} 订阅{list_name}。",
        "confirmed": "订阅成功",
        "confirmed_body": "{email} 已订阅{list_name}。每周的新文章会发到这个地址。",
        "preferences": "管理订阅",
        "preferences_body": "{email} 订阅的栏目：",
        "save": "保存",
        "saved": "已保存",
        "unsubscribe": "退订",
        "unsubscribe_body": "点击下面的按钮，{email} 将不再收到{list_name}。",
        "unsubscribed": "已退订",
        "unsubscribed_body": "{email} 已退订{list_name}，不会再收到周报。如是误操作，可以重新订阅。",
        "resubscribe": "重新订阅",
        "all": "全部栏目",
        "feeds": "RSS 订阅源",
        "csrf": "表单已过期，请刷新页面后重试。",
    },
    "en": {
        "subscribe": "Subscribe to {list_name}",
        "lead": "One e-mail a week with the new articles of the sections you choose.",
        "email": "E-mail address",
        "name": "Name (optional)",
        "categories": "Sections (none: all of them)",
        "none_is_all": "Tick none to get every section.",
        "submit": "Subscribe",
        "sent": "Check your inbox",
        "sent_body": "If the address is right, we just sent an e-mail to {email}: follow its link to "
        "finish. Nothing there? Look in the spam folder.",
        "bad_email": "This e-mail address is not valid: {reason}",
        "too_many": "Too many requests; please try again later.",
        "expired": "This link is not valid",
        "expired_body": "The link is broken or has expired. Subscribe again, or use the link in a recent e-mail.",
        "confirm": "Confirm your subscription",
        "confirm_body": "Press the button to subscribe {email} to {list_name}.",
        "confirmed": "You are subscribed",
        "confirmed_body": "{email} now gets {list_name}: the week's new articles, once a week.",
        "preferences": "Your subscription",
        "preferences_body": "Sections {email} gets:",
        "save": "Save",
        "saved": "Saved",
        "unsubscribe": "Unsubscribe",
        "unsubscribe_body": "Press the button and {email} will get no more of {list_name}.",
        "unsubscribed": "Unsubscribed",
        "unsubscribed_body": "{email} will get no more of {list_name}. A mistake? Subscribe again.",
        "resubscribe": "Subscribe again",
        "all": "All sections",
        "feeds": "Feeds",
        "csrf": "The form has expired; reload the page and try again.",
    },
}


class RateLimit:
    """At most `limit` events per key in the last `window` seconds, in this process."""

    def __init__(self, limit: int, window: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._pruned = clock()

    def allow(self, key: str) -> bool:
        now = self.clock()
        with self._lock:
            if now - self._pruned > self.window / 4:  # forget keys with nothing in the window
                self._events = {k: v for k, v in self._events.items() if v and v[-1] > now - self.window}
                self._pruned = now
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                return False
            events.append(now)
            return True


def create_app(app: App, health: Callable[[], dict[str, Any]] | None = None) -> Flask:
    """The WSGI app for `app`'s settings. `health` adds the scheduler's state to /healthz."""
    from .newsletter import CONFIRM_LIFETIME, Newsletter

    settings = app.settings
    letters = Newsletter(app)
    out_dir = Path(settings.output.dir).resolve()
    words = WORDS["en" if settings.site.language.lower().startswith("en") else "zh"]
    mailer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publisher-mail")
    per_address = RateLimit(settings.web.subscribe_per_address)
    per_client = RateLimit(settings.web.subscribe_per_client)
    web = Flask(__name__, template_folder=str(TEMPLATES / "web"), static_folder=None)
    # Flask escapes only templates named *.html; ours are *.html.j2. And no silent blanks.
    web.jinja_env.autoescape = True
    web.jinja_env.undefined = StrictUndefined
    web.config.update(
        SECRET_KEY=hmac.new(letters.signing_key, b"web session", "sha256").digest(),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=letters.public_url.startswith("https://"),
        MAX_CONTENT_LENGTH=64 * 1024,
    )

    def page(template: str, status: int = 200, **context: Any) -> Response:
        base = {
            "t": words,
            "language": settings.site.language,
            "list_name": letters.list_name,
            "site_title": settings.site.title,
            "site_url": letters.look.site.url,
            "feeds_url": "/",
        }
        response = Response(render_template(template, **base, **context), status, mimetype="text/html")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"  # tokens are in the URL
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; "
            "form-action 'self'; base-uri 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        return response

    def expired() -> Response:
        """A forged, expired or no longer valid link: one page, one status, nothing revealed."""
        return page("message.html.j2", 404, title=words["expired"], body=words["expired_body"], again=True)

    def unsubscribed(subscriber: Subscriber) -> Response:
        body = words["unsubscribed_body"].format(email=subscriber.email, list_name=letters.list_name)
        return page("message.html.j2", title=words["unsubscribed"], body=body, again=True)

    def client() -> str:
        if settings.web.trust_proxy and request.headers.get("X-Forwarded-For"):
            return request.headers["X-Forwarded-For"].split(",")[-1].strip()
        return request.remote_addr or "?"

    def subscriber_for(token: str, purpose: str) -> Subscriber | None:
        store = app.store

        def email_of(subscriber_id: int) -> str | None:
            found = store.subscriber_by_id(subscriber_id)
            return found.email.lower() if found else None

        try:
            subscriber_id = read_token(letters.signing_key, token, purpose, app.clock(), email_of)
        except TokenError:
            return None
        return store.subscriber_by_id(subscriber_id)

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(24)
        return str(session["csrf"])

    def categories_from_form() -> tuple[str, ...]:
        known = {c.slug for c in app.categories}
        return tuple(slug for slug in request.form.getlist("category") if slug in known)

    # --- subscription pages --------------------------------------------------------------

    @web.get("/subscribe")
    def subscribe_form() -> Response:
        return page("subscribe.html.j2", categories=app.categories, csrf=csrf_token(), error=None, email="", name="")

    @web.post("/subscribe")
    def subscribe() -> Response:
        form = request.form
        email, name = form.get("email", "").strip(), form.get("name", "")
        sent = session.get("csrf")
        if not sent or not hmac.compare_digest(str(sent).encode(), form.get("csrf", "").encode()):
            error = words["csrf"]
            return page(
                "subscribe.html.j2", 400, categories=app.categories, csrf=csrf_token(), error=error, email=email,
                name=name,
            )  # fmt: skip
        try:
            address = normalize_email(email)
        except ValueError as exc:
            error = words["bad_email"].format(reason=str(exc).split(": ", 1)[-1])
            return page(
                "subscribe.html.j2", 400, categories=app.categories, csrf=csrf_token(), error=error, email=email,
                name=name,
            )  # fmt: skip
        if not per_client.allow(client()) or not per_address.allow(address.lower()):
            limited = page("message.html.j2", 429, title=words["too_many"], body="")
            limited.headers["Retry-After"] = "3600"
            return limited
        subscriber, confirming = request_subscription(app.store, address, name, categories_from_form(), app.clock())
        # Sent by one background thread: a slow mail server never holds a web thread, and the
        # answer takes as long whether or not the address was on the list.
        mailer.submit(send_account_mail, subscriber, confirming)
        return page("message.html.j2", title=words["sent"], body=words["sent_body"].format(email=address))

    def send_account_mail(subscriber: Subscriber, confirming: bool) -> None:
        try:
            transport = app.transport()
            try:
                transport.send(letters.account_message(subscriber, confirming))
            finally:
                transport.close()
        except Exception as exc:  # noqa: BLE001 - the reader saw the same page; the operator sees this
            kind = "confirmation" if confirming else "preferences"
            log.error("could not send the %s e-mail to subscriber #%s: %s", kind, subscriber.id, exc)

    @web.route("/confirm/<token>", methods=["GET", "POST"])
    def confirm_page(token: str) -> Response:
        subscriber = subscriber_for(token, "confirm")
        if subscriber is None:
            return expired()
        if request.method == "POST" or subscriber.status is SubscriberStatus.CONFIRMED:
            assert subscriber.id is not None
            done = confirm(app.store, subscriber.id, app.clock(), expiry(token) - CONFIRM_LIFETIME)
            if done is not None and done.status is SubscriberStatus.CONFIRMED:
                body = words["confirmed_body"].format(email=done.email, list_name=letters.list_name)
                manage = letters.personal(done).preferences_url
                return page("message.html.j2", title=words["confirmed"], body=body, manage=manage)
            # An old link of an address that unsubscribed since: it cannot sign them up again.
            return expired()
        body = words["confirm_body"].format(email=subscriber.email, list_name=letters.list_name)
        return page("action.html.j2", title=words["confirm"], body=body, button=words["confirm"])

    @web.route("/preferences/<token>", methods=["GET", "POST"])
    def preferences_page(token: str) -> Response:
        subscriber = subscriber_for(token, "preferences")
        if subscriber is None:
            return expired()
        assert subscriber.id is not None
        saved = False
        if request.method == "POST":
            if request.form.get("action") == "unsubscribe":
                unsubscribe(app.store, subscriber.id, app.clock(), "web preferences")
                return unsubscribed(subscriber)
            changed = choose_categories(app.store, subscriber.id, categories_from_form())
            subscriber, saved = changed or subscriber, True
        return page(
            "preferences.html.j2",
            title=words["preferences"],
            body=words["preferences_body"].format(email=subscriber.email),
            categories=app.categories,
            chosen=set(subscriber.categories),
            saved=saved,
            subscribed=subscriber.status is SubscriberStatus.CONFIRMED,
        )

    @web.route("/unsubscribe/<token>", methods=["GET", "POST"])
    def unsubscribe_page(token: str) -> Response:
        subscriber = subscriber_for(token, "unsubscribe")
        if subscriber is None:
            return expired()
        assert subscriber.id is not None
        if request.method == "POST":  # RFC 8058 one-click, or the page's button: the same
            one_click = request.form.get("List-Unsubscribe") == "One-Click"
            unsubscribe(app.store, subscriber.id, app.clock(), "one-click" if one_click else "web")
            return unsubscribed(subscriber)
        body = words["unsubscribe_body"].format(email=subscriber.email, list_name=letters.list_name)
        return page("action.html.j2", title=words["unsubscribe"], body=body, button=words["unsubscribe"])

    # --- health ----------------------------------------------------------------------------

    @web.get("/healthz")
    def healthz() -> Response:
        report: dict[str, Any] = {"database": "ok"}
        status = 200
        try:
            last_ingest = app.store.get_meta("last_ingest")
            digests = app.store.digests()
            report["last_ingest"] = json.loads(last_ingest) if last_ingest else None
            last = digests[-1] if digests else None
            report["last_digest"] = (
                {"key": last.key, "status": last.status, "counts": app.store.delivery_counts(last.id)} if last else None
            )
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
            report["database"] = f"error: {exc.__class__.__name__}"
            status = 503
        try:
            report["scheduler"] = health() if health else {"state": "off"}
        except Exception as exc:  # noqa: BLE001
            report["scheduler"] = {"state": f"error: {exc.__class__.__name__}"}
            status = 503
        report["status"] = "ok" if status == 200 else "error"
        return Response(json.dumps(report, ensure_ascii=False), status, mimetype="application/json")

    # --- the feeds folder ------------------------------------------------------------------

    @web.get("/", defaults={"path": "index.html"})
    @web.get("/<path:path>")
    def files(path: str) -> Response:
        if path.endswith("/"):
            path += "index.html"
        full = safe_join(str(out_dir), path)
        # No dotfiles (the writer's temporary files), nothing outside the folder via a symlink.
        if full is None or "\x00" in path or any(part.startswith(".") for part in path.split("/")):
            abort(404)
        target = Path(full)
        if target.is_dir():
            target = target / "index.html"
        try:
            if not target.resolve().is_relative_to(out_dir) or not target.is_file():
                abort(404)
            stat = target.stat()
        except (OSError, ValueError):
            abort(404)
        media_type = _media_type(target.name)
        gzipped = request.accept_encodings["gzip"] > 0 and any(k in media_type for k in COMPRESSIBLE)
        # One ETag per representation (RFC 9110 8.8.3): the gzip bytes are another one.
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}{"-gz" if gzipped else ""}"'
        response = Response(status=200, mimetype=None)
        response.headers["Content-Type"] = media_type
        response.headers["ETag"] = etag
        response.last_modified = datetime.fromtimestamp(stat.st_mtime, UTC)
        response.headers["Cache-Control"] = "public, max-age=300"
        response.headers["Vary"] = "Accept-Encoding"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if _not_modified(etag, int(stat.st_mtime)):
            response.status_code = 304
            return response
        data = _read(str(target), stat.st_mtime_ns, stat.st_size)
        if gzipped:
            data = _gzipped(str(target), stat.st_mtime_ns, stat.st_size)
            response.headers["Content-Encoding"] = "gzip"
        if request.method != "HEAD":
            response.set_data(data)
        response.headers["Content-Length"] = str(len(data))
        return response

    return web


def _media_type(name: str) -> str:
    if name in MEDIA_TYPES:
        return MEDIA_TYPES[name]
    suffix = name[name.rfind(".") :] if "." in name else ""
    return MEDIA_TYPES.get(suffix, "application/octet-stream")


def _not_modified(etag: str, mtime: int) -> bool:
    """RFC 9110: If-None-Match wins when present; else If-Modified-Since (whole seconds)."""
    match = request.headers.get("If-None-Match")
    if match is not None:
        tags = [tag.strip().removeprefix("W/") for tag in match.split(",")]
        return "*" in tags or etag in tags
    since = request.if_modified_since
    if since is None or since.timestamp() > time.time():  # a date in the future is ignored
        return False
    return mtime <= int(since.timestamp())


@lru_cache(maxsize=256)
def _read(path: str, _mtime_ns: int, _size: int) -> bytes:
    return Path(path).read_bytes()


@lru_cache(maxsize=256)
def _gzipped(path: str, mtime_ns: int, size: int) -> bytes:
    # mtime=0: the same bytes every time, so the compressed file has one ETag-worthy form.
    return gzip.compress(_read(path, mtime_ns, size), compresslevel=6, mtime=0)
