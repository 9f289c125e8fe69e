"""The console's subscriber and digest pages through the real Flask app, store and an SMTP sink
(aiosmtpd): search, a reader's timeline, edits and their audit, erase's confirm step, CSV import
and export read back, the sandboxed preview, a test send, send now in the background with pause
and resume changing the ledger, retry; a viewer reads and is refused every change."""

from __future__ import annotations

import csv
import io
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from flask.testing import FlaskClient
from test_newsletter import Inbox, mailing_site
from test_smtp import free_port

from admin_session import make_account
from conftest import Site
from publisher.accounts import sha256
from publisher.app import App
from publisher.model import Subscriber, SubscriberStatus
from publisher.store import GAVE_UP
from publisher.web import create_app


@dataclass
class Console:
    app: App
    editor: FlaskClient
    viewer: FlaskClient
    inbox: Inbox

    def csrf(self, client: FlaskClient, path: str = "/admin/subscribers") -> str:
        page = client.get(path).get_data(as_text=True)
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found is not None, page[:500]
        return found.group(1)

    def post(self, client: FlaskClient, path: str, data: dict[str, object], page: str = "/admin/subscribers") -> object:
        return client.post(path, data={"csrf": self.csrf(client, page), **data})

    def audited(self) -> list[tuple[str, str, str]]:
        return [(e.actor, e.action, e.target) for e in self.app.store.audit_entries(100)]


def signed_in(web: object, site: Site, app: App, email: str, role: str) -> FlaskClient:
    """A browser of `web` with a session of a new `role` account (as the sign-in form makes one):
    both browsers share one Flask app, so its send threads, as a real server's."""
    account_id = make_account(site, email, role)
    session_id = secrets.token_urlsafe(32)
    app.store.add_session(sha256(session_id), account_id, app.clock(), True, "127.0.0.1")
    client: FlaskClient = web.test_client()  # type: ignore[attr-defined]
    client.set_cookie("publisher_admin", session_id, path="/admin")
    return client


@pytest.fixture
def console(site: Site) -> Iterator[Console]:
    box, port = Inbox(delay=0.02), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mailing_site(site, port)
        site.clock_now = datetime.now(UTC)
        app = site.app()
        try:
            web = create_app(app)
            web.config["TESTING"] = True
            yield Console(app, signed_in(web, site, app, "ed@example.org", "editor"),
                          signed_in(web, site, app, "vi@example.org", "viewer"), box)  # fmt: skip
        finally:
            app.close()
    finally:
        controller.stop()


def reader(app: App, email: str, status: SubscriberStatus = SubscriberStatus.CONFIRMED, **more: object) -> Subscriber:
    now = app.clock()
    app.store.save_subscribers([Subscriber(email, str(more.get("name", "")), (), status, now, "import", now)])
    found = app.store.subscriber(email.lower())
    assert found is not None
    return found


def test_the_list_searches_filters_and_pages(console: Console) -> None:
    add_readers_to(console.app, 120)
    page = console.viewer.get("/admin/subscribers?q=reader011").get_data(as_text=True)
    assert "reader011@example.com" in page and "reader012@example.com" not in page
    page = console.viewer.get("/admin/subscribers?status=pending").get_data(as_text=True)
    assert "reader003@example.com" in page and "reader001@example.com" not in page
    first = console.viewer.get("/admin/subscribers").get_data(as_text=True)
    found = re.search(r'id="next-page" href="([^"]+)"', first)
    assert found is not None and "reader049@" in first and "reader050@" not in first
    second = console.viewer.get(found.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert "reader050@example.com" in second and "reader049@" not in second


def add_readers_to(app: App, n: int) -> None:
    now = app.clock()
    statuses = [
        SubscriberStatus.CONFIRMED,
        SubscriberStatus.CONFIRMED,
        SubscriberStatus.CONFIRMED,
        SubscriberStatus.PENDING,
    ]
    app.store.save_subscribers(
        Subscriber(f"reader{i:03d}@example.com", f"读者{i}", (), statuses[i % 4], now, "import", now) for i in range(n)
    )


def test_an_editor_changes_a_reader_and_every_change_is_audited(console: Console) -> None:
    app = console.app
    someone = reader(app, "pending@example.com", SubscriberStatus.PENDING)
    path = f"/admin/subscribers/{someone.id}"
    categories = [c.slug for c in app.categories][:2]
    answer = console.post(console.editor, path, {"action": "categories", "category": categories}, path)
    assert answer.status_code == 200  # type: ignore[attr-defined]
    assert app.store.subscriber("pending@example.com").categories == tuple(categories)  # type: ignore[union-attr]
    console.post(console.editor, path, {"action": "confirmation"}, path)
    assert [to for to, _ in console.inbox.received] == ["pending@example.com"]
    console.post(console.editor, path, {"action": "unsubscribe"}, path)
    assert app.store.subscriber("pending@example.com").status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
    page = console.viewer.get(path).get_data(as_text=True)
    assert 'data-status="unsubscribed"' in page and "经由 console" in page  # the site speaks Chinese
    kinds = re.findall(r'<li data-kind="([^"]+)"', page)
    assert kinds == ["signed-up", "unsubscribed"] and "已退订" in page
    # Erase asks for the address again.
    wrong = console.post(console.editor, f"{path}/erase", {"confirm": "someone@else.org"}, f"{path}/erase")
    assert wrong.status_code == 400 and app.store.subscriber("pending@example.com") is not None  # type: ignore[attr-defined]
    console.post(console.editor, f"{path}/erase", {"confirm": "Pending@Example.com"}, f"{path}/erase")
    assert app.store.subscriber("pending@example.com") is None
    assert console.viewer.get(path).status_code == 404
    actions = [a for _actor, a, _t in console.audited() if a.startswith("subscriber")]
    assert actions == ["subscriber.erase", "subscriber.unsubscribe", "subscriber.confirmation", "subscriber.categories"]
    assert {actor for actor, a, _t in console.audited() if a.startswith("subscriber")} == {"ed@example.org"}


def test_a_viewer_reads_and_changes_nothing(console: Console) -> None:
    app = console.app
    someone = reader(app, "kept@example.com")
    path = f"/admin/subscribers/{someone.id}"
    page = console.viewer.get(path).get_data(as_text=True)
    assert "kept@example.com" in page and 'value="unsubscribe"' not in page
    token = console.csrf(console.viewer, path)
    for target, data in [
        (path, {"action": "unsubscribe"}),
        (f"{path}/erase", {"confirm": "kept@example.com"}),
        ("/admin/subscribers/import", {}),
        ("/admin/digests/send", {}),
        ("/admin/digests/test", {"to": "me@example.org"}),
    ]:
        assert console.viewer.post(target, data={"csrf": token, **data}).status_code == 403, target
    assert console.viewer.get("/admin/subscribers/export.csv").status_code == 403
    assert app.store.subscriber("kept@example.com").status is SubscriberStatus.CONFIRMED  # type: ignore[union-attr]
    assert console.audited() == [] and console.inbox.received == []


def test_a_csv_goes_in_with_the_clis_report_and_comes_back_out(console: Console) -> None:
    app = console.app
    name = app.categories[0].name
    upload = f"email,name,categories\nnew@example.com,新读者,{name}\nnot-an-address,x,\nsecond@example.com,,\n".encode()
    token = console.csrf(console.editor)
    answer = console.editor.post(
        "/admin/subscribers/import",
        data={"csrf": token, "file": (io.BytesIO(upload), "readers.csv"), "pending": "yes"},
        content_type="multipart/form-data",
    )
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "新增 2" in page and "拒绝 1" in page
    assert "readers.csv:3:" in page and "publisher-import" not in page  # the file as uploaded, not our temp copy
    assert app.store.subscriber("new@example.com").status is SubscriberStatus.PENDING  # type: ignore[union-attr]
    exported = console.editor.get("/admin/subscribers/export.csv")
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [(r["email"], r["name"], r["categories"], r["status"]) for r in rows] == [
        ("new@example.com", "新读者", name, "pending"), ("second@example.com", "", "", "pending"),
    ]  # fmt: skip
    assert [a for _actor, a, _t in console.audited()] == ["subscribers.export", "subscribers.import"]


def test_the_preview_is_the_readers_message_in_a_sandbox(console: Console) -> None:
    reader(console.app, "one@example.com", name="读者一")
    page = console.editor.get("/admin/digests/preview?subscriber=one@example.com")
    assert page.status_code == 200 and "frame-src 'self'" in page.headers["Content-Security-Policy"]
    assert 'sandbox src="/admin/digests/preview.html?subscriber=one%40example.com"' in page.get_data(as_text=True)
    html = console.editor.get("/admin/digests/preview.html?subscriber=one@example.com")
    assert html.headers["Content-Security-Policy"].startswith("sandbox;")
    assert "《人才十条》政策要点解读" in html.get_data(as_text=True) and "读者一" in html.get_data(as_text=True)
    # A viewer sees the digest as a reader of every category, never as a reader whose links
    # (unsubscribe, preferences) would let them change that reader on the public pages.
    for path in ("/admin/digests/preview", "/admin/digests/preview.html"):
        assert console.viewer.get(f"{path}?subscriber=one@example.com").status_code == 403
        generic = console.viewer.get(path)
        assert generic.status_code == 200 and "读者一" not in generic.get_data(as_text=True)
    assert 'id="preview-reader"' not in console.viewer.get("/admin/digests/preview").get_data(as_text=True)


def test_a_test_send_then_send_now_paused_and_resumed(console: Console) -> None:
    app, box = console.app, console.inbox
    box.delay = 0.05
    console.post(console.editor, "/admin/digests/test", {"to": "me@example.org"}, "/admin/digests")
    assert [to for to, _ in box.received] == ["me@example.org"]
    box.received.clear()
    add_readers_to(app, 80)  # 60 confirmed
    answer = console.post(console.editor, "/admin/digests/send", {}, "/admin/digests")
    assert answer.status_code == 200 and len(box.received) < 60  # type: ignore[attr-defined]  # it sends on its own
    row = wait_for(lambda: next(iter(app.store.digests()), None))
    wait_for(lambda: len(box.received) >= 5 or None)
    progress = console.viewer.get(f"/admin/digests/{row.id}/progress.json").get_json()  # type: ignore[attr-defined]
    assert progress["total"] == 60 and progress["running"] and progress["status"] == "sending"
    console.post(console.editor, f"/admin/digests/{row.id}", {"action": "pause"}, f"/admin/digests/{row.id}")
    wait_for(lambda: not console.viewer.get(f"/admin/digests/{row.id}/progress.json").get_json()["running"] or None)
    assert app.store.digest(row.id).status == "paused"
    got = len(box.received)
    assert got < 60
    page = console.viewer.get(f"/admin/digests/{row.id}").get_data(as_text=True)
    assert 'value="resume"' not in page  # a viewer sees no buttons
    console.post(console.editor, f"/admin/digests/{row.id}", {"action": "resume"}, f"/admin/digests/{row.id}")
    wait_for(lambda: app.store.digest(row.id).status == "done" or None)
    assert len(box.received) == 60 and len({to for to, _ in box.received}) == 60
    actions = [a for _actor, a, _t in console.audited()]
    assert actions == ["digest.resume", "digest.pause", "digest.send_now", "digest.test"]


def test_retry_sends_the_temporary_failures_again_and_the_page_lists_reasons(console: Console) -> None:
    app, box = console.app, console.inbox
    reader(app, "late@example.com")
    reader(app, "gone@example.com")
    now = app.clock()
    plan = app.store.open_digest("manual", now - timedelta(days=10), now, now)[0]
    app.store.plan_deliveries(plan, [("late@example.com", "<a@x>"), ("gone@example.com", "<b@x>")], app.clock())
    for d in app.store.next_deliveries(plan, 10):
        error = f"{GAVE_UP}6 tries: 451 try later" if d.email_key == "late@example.com" else "550 no such user"
        app.store.mark_delivery(d.id, "failed", app.clock(), tried=True, error=error)
    app.store.set_digest_status(plan, "done")
    page = console.viewer.get(f"/admin/digests/{plan}").get_data(as_text=True)
    assert "550 no such user" in page and "451 try later" in page
    console.post(console.editor, f"/admin/digests/{plan}", {"action": "retry"}, f"/admin/digests/{plan}")
    wait_for(lambda: app.store.delivery_counts(plan).get("sent") == 1 or None)
    assert [to for to, _ in box.received] == ["late@example.com"]
    assert app.store.delivery_counts(plan) == {"sent": 1, "failed": 1}


def wait_for(check: object, timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()  # type: ignore[operator]
        if value is not None:
            return value
        time.sleep(0.05)
    pytest.fail("waited in vain")
