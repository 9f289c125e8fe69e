"""The console's subscribers: search and filter the list a page at a time, a reader's timeline,
their categories, a confirmation mail again, unsubscribe, erase; CSV import and export.

Every change goes through subscriptions.py or signup.py (what the CLI calls) and is audited.
Viewers read; editors change (the blueprint's guard refuses a viewer's POST).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Response, abort, request, stream_with_context

from ...accounts import role_at_least
from ...choices import Choices
from ...errors import PublisherError
from ...model import Subscriber, SubscriberStatus
from ...normalize import CategoryIndex
from ...private_files import private_folder
from ...scripts import LABELS
from ...signup import mail_confirmations
from ...subscriptions import ImportReport, choose_categories, export_lines, import_csv, remove
from ...timeline import reader_timeline
from ..shared import current
from . import admin
from .auth import audit, current_account, now, requires
from .layout import admin_words, render_admin

PAGE_SIZE = 50
EXPORT_PAGE = 1000  # the export reads the list this many at a time
IMPORT_LIMIT = 20 * 1024 * 1024  # bytes of an uploaded CSV: about 200,000 readers
IMPORT_LIMIT_MB = IMPORT_LIMIT // (1024 * 1024)
STATUSES = tuple(s.value for s in SubscriberStatus)


def may_edit() -> bool:
    """Whether the signed-in account may change things (the pages show their forms then)."""
    account = current_account()
    return account is not None and role_at_least(account.role, "editor")


def words() -> dict[str, Any]:
    found: dict[str, Any] = admin_words()["subscribers"]
    return found


def _index() -> CategoryIndex:
    return CategoryIndex(current().app.categories)


def _subscriber(subscriber_id: int) -> Subscriber:
    found = current().app.store.subscriber_by_id(subscriber_id)
    if found is None:
        abort(404)
    return found


@admin.get("/subscribers")
@requires("viewer")
def subscribers() -> Response:
    """A page of the list: `q` in the address or name, `status`, `category`, after id `after`."""
    store = current().app.store
    text = request.args.get("q", "").strip()[:200]
    status_name = request.args.get("status", "")
    status = SubscriberStatus(status_name) if status_name in STATUSES else None
    found = _index().find(request.args.get("category", ""))
    category = found.slug if found is not None else ""
    after = request.args.get("after", "0")
    page = store.find_subscribers(text, status, category or None, int(after) if after.isdigit() else 0, PAGE_SIZE)
    query = {"q": text, "status": status.value if status else "", "category": category}
    return render_admin(
        "subscribers.html.j2",
        page=page,
        counts=store.subscriber_counts(),
        statuses=STATUSES,
        categories=current().app.categories,
        query=query,
        more=urlencode({k: v for k, v in query.items() if v}),  # the next page's link: `q` may hold & # + %
        import_limit_mb=IMPORT_LIMIT_MB,
        editor=may_edit(),
    )


def _reader_page(reader: Subscriber, status: int = 200, notice: str = "", error: str = "") -> Response:
    store = current().app.store
    key = reader.email.lower()
    suppression = store.suppression(key)
    return render_admin(
        "subscriber.html.j2",
        status,
        reader=reader,
        timeline=reader_timeline(reader, store.reader_deliveries(key), store.mail_events(200, key), suppression),
        suppression=suppression,
        categories=current().app.categories,
        chosen=set(reader.categories),
        offered=current().app.offered,
        script_labels=LABELS,
        site_script=current().app.scripts.site,
        editor=may_edit(),
        notice=notice,
        error=error,
    )


@admin.get("/subscribers/<int:subscriber_id>")
@requires("viewer")
def subscriber(subscriber_id: int) -> Response:
    return _reader_page(_subscriber(subscriber_id))


@admin.post("/subscribers/<int:subscriber_id>")
@requires("editor")
def change_subscriber(subscriber_id: int) -> Response:
    """One of the reader page's forms, by its `action`: categories, confirmation, unsubscribe."""
    state, w = current(), words()
    store = state.app.store
    reader = _subscriber(subscriber_id)
    action = request.form.get("action", "")
    if action == "categories":
        index = _index()
        chosen = (index.find(slug) for slug in request.form.getlist("category"))
        slugs = tuple(dict.fromkeys(c.slug for c in chosen if c is not None))
        offered = current().app.offered
        try:  # any known script and cadence: a reader keeps one the site no longer offers
            script = offered.script(request.form.get("script", reader.script or ""))
            cadence = offered.cadence(request.form.get("cadence", reader.cadence))  # empty: the first offered
        except ValueError as exc:
            return _reader_page(reader, 400, error=str(exc))
        choose_categories(store, subscriber_id, slugs, Choices(script, cadence))
        audit("subscriber.categories", reader.email, f"{';'.join(slugs) or '(all)'} {script or 'site'} {cadence}")
        return _reader_page(_subscriber(subscriber_id), notice=w["saved"])
    if action == "confirmation":
        if reader.status is not SubscriberStatus.PENDING:
            status = w["statuses"][reader.status.value]
            return _reader_page(reader, 400, error=w["not_pending"].format(email=reader.email, status=status))
        sent, problems = _mail_confirmations([reader.email.lower()])
        audit("subscriber.confirmation", reader.email, "sent" if sent else "; ".join(problems))
        return (
            _reader_page(reader, notice=w["resent"]) if sent else _reader_page(reader, 400, error="; ".join(problems))
        )
    if action == "unsubscribe":
        remove(store, reader.email, now(), via="console")
        audit("subscriber.unsubscribe", reader.email)
        return _reader_page(_subscriber(subscriber_id), notice=w["unsubscribed"].format(email=reader.email))
    abort(400)


def _mail_confirmations(keys: list[str]) -> tuple[int, list[str]]:
    """signup.mail_confirmations through the configured transport (as `subscribers import`)."""
    state = current()
    transport = state.app.transport()
    try:
        per_day = state.app.settings.web.confirmation_mails_per_day
        return mail_confirmations(state.app.store, state.letters, transport, keys, per_day, now())
    finally:
        transport.close()


@admin.get("/subscribers/<int:subscriber_id>/erase")
@requires("editor")
def erase_form(subscriber_id: int) -> Response:
    return render_admin("subscriber_erase.html.j2", reader=_subscriber(subscriber_id), error="")


@admin.post("/subscribers/<int:subscriber_id>/erase")
@requires("editor")
def erase(subscriber_id: int) -> Response:
    """Erase every trace of the reader once the address is typed again (the confirm step)."""
    reader, w = _subscriber(subscriber_id), words()
    if request.form.get("confirm", "").strip().lower() != reader.email.lower():
        return render_admin("subscriber_erase.html.j2", 400, reader=reader, error=w["erase_mismatch"])
    remove(current().app.store, reader.email, now(), erase=True)
    audit("subscriber.erase", f"subscriber #{subscriber_id}")  # the address goes with them
    return render_admin("notice.html.j2", title=w["title"], body=w["erased"].format(id=subscriber_id))


@admin.get("/subscribers/export.csv")
@requires("editor")
def export() -> Response:
    """Every subscriber as `subscribers export` writes them, streamed a page at a time. Editors
    only: it is every reader's address at once."""
    state = current()
    store, index = state.app.store, _index()
    audit("subscribers.export", "subscribers")

    def readers() -> Iterator[Subscriber]:
        after: int | None = 0
        while after is not None:
            page = store.find_subscribers(after_id=after, limit=EXPORT_PAGE)
            yield from page.subscribers
            after = page.next_after

    stamp = f"{now():%Y%m%d-%H%M}"
    response = Response(stream_with_context(export_lines(readers(), index)), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="subscribers-{stamp}.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


@admin.before_app_request
def _upload_limit() -> None:
    """The import's own body limit, set before the console's guard reads the form for its token."""
    if request.endpoint == "admin.import_file":
        request.max_content_length = IMPORT_LIMIT


@admin.errorhandler(413)
def _too_large(_error: Exception) -> Response:
    return Response(words()["too_large"].format(mb=IMPORT_LIMIT_MB) + "\n", 413, mimetype="text/plain")


@admin.post("/subscribers/import")
@requires("editor")
def import_file() -> Response:
    """An uploaded CSV through `subscribers import`'s rules and options; its report on the page,
    its problems naming the file as uploaded and the line."""
    state, w = current(), words()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return render_admin("subscribers_import.html.j2", 400, name="", report=None, failure=w["no_file"])
    name = Path(upload.filename.replace("\\", "/")).name[:100] or "upload.csv"
    status = SubscriberStatus.PENDING if request.form.get("pending") == "yes" else SubscriberStatus.CONFIRMED
    report: ImportReport | None = None
    with tempfile.TemporaryDirectory(prefix="publisher-import-") as folder:
        private_folder(Path(folder))  # readers' addresses: 0700
        path = Path(folder) / "upload.csv"
        upload.save(path)
        try:
            update = request.form.get("update") == "yes"
            report = import_csv(state.app.store, path, _index(), status, now(), state.app.offered, update=update)
        except PublisherError as exc:
            failure = str(exc).replace(str(path), name)
    if report is None:
        return render_admin("subscribers_import.html.j2", 400, name=name, report=None, failure=failure)
    sent, unsent = 0, list[str]()
    if request.form.get("send_confirmation") == "yes" and report.pending:
        sent, unsent = _mail_confirmations(report.pending)
    problems = [p.replace(str(path), name) for p in report.problems]
    summary = w["report"].format(
        added=report.added, updated=report.updated, unchanged=report.unchanged, not_updated=report.not_updated,
        kept=report.kept_stopped, suppressed=report.suppressed, rejected=len(problems),
    )  # fmt: skip
    audit("subscribers.import", name, f"{summary}; confirmations sent {sent}, not sent {len(unsent)}")
    return render_admin("subscribers_import.html.j2", name=name, report=report, summary=summary, failure="",
                        sent=sent, unsent=unsent, problems=problems)  # fmt: skip
