"""The console's digests: the list with counts, the next digest's preview for any reader, a test
send, send now, a send's live progress, pause, resume, retry, and each digest's failures.

Sends run in threads of this process (send_runs.py) through the CLI's Newsletter, send engine
and ledger. The preview is the message's own HTML, served by `preview_html` with
`Content-Security-Policy: sandbox` (no script, no form, an origin of its own) and framed by the
preview page, whose CSP alone admits a frame of ours.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Response, abort, current_app, jsonify, request
from sqlalchemy.exc import NoResultFound

from ...errors import PublisherError
from ...model import Subscriber
from ...send_runs import NEXT, SendBusy, SendRuns
from ...store import DigestRow
from ..shared import current
from . import admin
from .auth import audit, now, requires
from .layout import admin_words, render_admin
from .subscribers import may_edit

LISTED = 50  # digests on the list page, newest first
RUNS = "publisher_send_runs"
# The message may show the site's images, as the reader's client does; nothing else loads.
PREVIEW_CSP = (
    "sandbox; default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
)


def send_runs() -> SendRuns:
    """This Flask app's send threads (one SendRuns per app, made at its first use)."""
    runs = current_app.extensions.get(RUNS)
    if runs is None:
        state = current()
        runs = current_app.extensions.setdefault(RUNS, SendRuns(state.letters, state.app.transport))
    assert isinstance(runs, SendRuns)
    return runs


def words() -> dict[str, Any]:
    found: dict[str, Any] = admin_words()["digests"]
    return found


def _digest(digest_id: int) -> DigestRow:
    try:
        return current().app.store.digest(digest_id)
    except NoResultFound:
        abort(404)


def _list_page(status: int = 200, notice: str = "", error: str = "") -> Response:
    state = current()
    store = state.app.store
    rows = store.digests()[-LISTED:][::-1]
    runs = send_runs()
    planning = runs.run(NEXT)
    return render_admin(
        "digests.html.j2",
        status,
        rows=rows,
        counts=store.digest_counts([r.id for r in rows]),
        sending={r.id for r in rows if (run := runs.run(r.id)) is not None and run.running},
        planning=planning,
        window=state.letters.scheduled_window(now()),
        editor=may_edit(),
        notice=notice,
        error=error,
    )


@admin.get("/digests")
@requires("viewer")
def digests() -> Response:
    return _list_page()


def _reader() -> tuple[Subscriber | None, str]:
    """The reader named by `?subscriber=` (an address), or None for a reader of every category.
    Editors only: a reader's message carries their own unsubscribe and preferences links, which
    would let a viewer change the reader on the public pages (a viewer changes nothing)."""
    email = request.args.get("subscriber", "").strip()[:320]
    if not email:
        return None, ""
    if not may_edit():
        abort(403)
    found = current().app.store.subscriber(email.lower())
    return found, "" if found is not None else words()["not_listed"].format(email=email)


@admin.get("/digests/preview")
@requires("viewer")
def preview() -> Response:
    state = current()
    reader, problem = _reader()
    window = state.letters.scheduled_window(now(), state.letters.cadence_of(reader) if reader else None)
    message, stand_in = state.letters.preview(window, reader)
    frame = "/admin/digests/preview.html" + (f"?subscriber={quote(reader.email)}" if reader else "")
    response = render_admin(
        "digest_preview.html.j2",
        reader=reader,
        error=problem,
        subject=message.envelope.subject,
        stand_in=stand_in,
        window=window,
        size_kb=round(len(message.html.encode("utf-8")) / 1000, 1),
        frame_url=frame,
        editor=may_edit(),
    )
    # This page alone may frame one of ours: the sandboxed message (preview_html).
    response.headers["Content-Security-Policy"] += "; frame-src 'self'"
    return response


@admin.get("/digests/preview.html")
@requires("viewer")
def preview_html() -> Response:
    """The message's HTML exactly as the reader's client gets it, sandboxed by its own CSP."""
    state = current()
    reader, _problem = _reader()
    window = state.letters.scheduled_window(now(), state.letters.cadence_of(reader) if reader else None)
    message, _stand_in = state.letters.preview(window, reader)
    response = Response(message.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # its links carry the reader's tokens
    return response


@admin.post("/digests/test")
@requires("editor")
def test_send() -> Response:
    """One test message (marked so) to the address typed, through the configured transport
    (`digest test`): one message, so the request waits for it."""
    state, w = current(), words()
    try:
        message = state.letters.test_message(request.form.get("to", ""))
        transport = state.app.transport()
        try:
            transport.send(message)
        finally:
            transport.close()
    except (PublisherError, ValueError) as exc:
        return _list_page(400, error=w["test_failed"].format(reason=exc))
    audit("digest.test", message.recipient, message.envelope.subject)
    return _list_page(notice=w["test_sent"].format(email=message.recipient))


@admin.post("/digests/send")
@requires("editor")
def send_now() -> Response:
    """Plan the digest due now and send it, in the background (`digest send`)."""
    try:
        send_runs().start_next()
    except SendBusy:
        return _list_page(409, error=words()["busy"])
    audit("digest.send_now", "next digest")
    return _list_page(notice=words()["send_started"])


def _digest_page(row: DigestRow, status: int = 200, notice: str = "", error: str = "") -> Response:
    state = current()
    delays = state.app.settings.digest.retry_delays
    failures = [
        {"email": p.email_key, "state": p.state, "tries": p.attempts, "last_try": p.last_try,
         "next_try": p.next_try(delays), "retry": p.retry_with, "reason": p.error}
        for p in state.app.store.delivery_problems(row.id)
    ]  # fmt: skip
    row = state.app.store.digest(row.id)
    return render_admin(
        "digest_detail.html.j2", status, row=row, progress=send_runs().progress(row), failures=failures,
        editor=may_edit(), notice=notice, error=error,
    )  # fmt: skip


@admin.get("/digests/<int:digest_id>")
@requires("viewer")
def digest(digest_id: int) -> Response:
    return _digest_page(_digest(digest_id))


@admin.get("/digests/<int:digest_id>/progress.json")
@requires("viewer")
def digest_progress(digest_id: int) -> Response:
    """What the digest page's script polls every 2 s: counts, rate, ETA, the newest failures."""
    row = _digest(digest_id)
    body: dict[str, Any] = send_runs().progress(row).as_json()
    newest = current().app.store.delivery_problems(digest_id, newest=20)
    body["failures"] = [{"email": p.email_key, "state": p.state, "tries": p.attempts, "reason": p.error}
                        for p in newest]  # fmt: skip
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


@admin.post("/digests/<int:digest_id>")
@requires("editor")
def digest_control(digest_id: int) -> Response:
    """The digest page's buttons, by `action`: pause, resume, retry (`digest retry`)."""
    row, w = _digest(digest_id), words()
    action = request.form.get("action", "")
    if action == "pause":
        if not current().letters.pause(row):
            return _digest_page(row, 409, error=w["not_paused"].format(status=row.status))
        audit("digest.pause", row.key)
        return _digest_page(row, notice=w["paused"])
    if action not in ("resume", "retry"):
        abort(400)
    if action == "resume" and row.status == "done":
        return _digest_page(row, 409, error=w["nothing_to_resume"])
    try:
        send_runs().start(row, action)
    except SendBusy:
        return _digest_page(row, 409, error=w["busy"])
    audit(f"digest.{action}", row.key)
    return _digest_page(row, notice=w["resumed"] if action == "resume" else w["retrying"])
