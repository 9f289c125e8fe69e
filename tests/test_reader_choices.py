"""Where readers choose their script and cadence: the subscribe and preferences pages (through
the real Flask app and outbox), `subscribers add/import/export`, the console's reader page,
`digest send --cadence`; and the config that offers the choices."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from test_console_people import signed_in
from test_signup import confirm_link, post_form
from werkzeug.datastructures import MultiDict

from conftest import Site, days_ago
from publisher.app import App
from publisher.config import load_settings
from publisher.errors import ConfigError
from publisher.model import Subscriber, SubscriberStatus
from publisher.web import create_app

OFFER = '\n[digest]\ncadences = ["weekly", "daily"]\nscripts = ["zh-Hans", "zh-Hant"]\n'


class Pages:
    """The reader's pages of one site, and its outbox."""

    def __init__(self, site: Site, extra: str) -> None:
        site.write_config(site.mail_to_outbox() + '\n[web]\npublic_url = "http://127.0.0.1:8080"\n' + extra)
        site.clock_now = datetime.now(UTC)
        self.site, self.app = site, site.app()
        self.browser: FlaskClient = create_app(self.app).test_client()

    def mail(self) -> str:
        """The newest mail's plain text, once the background thread sent it."""
        import time
        from email import message_from_bytes, policy

        deadline = time.monotonic() + 5
        while not list(self.site.outbox.glob("*.eml")) and time.monotonic() < deadline:
            time.sleep(0.02)
        path = max(self.site.outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
        return message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[return-value]

    def reader(self, email: str) -> Subscriber:
        found = self.app.store.subscriber(email)
        assert found is not None
        return found


@pytest.fixture
def pages(site: Site, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pages]:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "choices-test-signing-key-0123456789")
    made = Pages(site, OFFER)
    try:
        yield made
    finally:
        made.app.close()


def test_a_reader_chooses_script_and_cadence_on_the_form_and_changes_them_later(pages: Pages) -> None:
    form = pages.browser.get("/subscribe").get_data(as_text=True)
    assert 'name="script" value="zh-Hant"' in form and 'name="cadence" value="daily"' in form
    assert "繁體" in form and "每天一封" in form
    asked = [("email", "hk@example.com"), ("script", "zh-Hant"), ("cadence", "daily"), ("category", "tech")]
    assert post_form(pages.browser, asked) == 200
    assert pages.reader("hk@example.com").cadence == "weekly"  # nothing the form said before the link
    link = confirm_link(pages.mail())  # type: ignore[arg-type]
    shown = pages.browser.get(link).get_data(as_text=True)
    assert "繁體" in shown and "每天一封" in shown  # what confirming saves
    done = pages.browser.post(link)
    reader = pages.reader("hk@example.com")
    assert (reader.script, reader.cadence, reader.categories) == ("zh-Hant", "daily", ("tech",))

    manage = re.search(r'href="http://127\.0\.0\.1:8080(/preferences/[^"]+)"', done.get_data(as_text=True))
    assert manage
    shown = pages.browser.get(manage.group(1)).get_data(as_text=True)
    assert 'value="zh-Hant" checked' in shown and 'value="daily" checked' in shown
    saved = MultiDict([("action", "save"), ("category", "policy"), ("script", "zh-Hans"), ("cadence", "weekly")])
    pages.browser.post(manage.group(1), data=saved)
    reader = pages.reader("hk@example.com")
    assert (reader.script, reader.cadence, reader.categories) == ("zh-Hans", "weekly", ("policy",))
    # A value the page does not offer changes nothing.
    pages.browser.post(manage.group(1), data=MultiDict([("action", "save"), ("script", "x"), ("cadence", "hourly")]))
    assert (pages.reader("hk@example.com").script, pages.reader("hk@example.com").cadence) == ("zh-Hans", "weekly")


def test_a_daily_readers_pages_name_the_daily_list_and_leaving_says_no_more_mail(pages: Pages) -> None:
    now = datetime.now(UTC)
    pages.app.store.save_subscribers([Subscriber("daily@example.com", "", (), SubscriberStatus.CONFIRMED, now,
                                                 "cli", now, cadence="daily")])  # fmt: skip
    from publisher.newsletter import Newsletter

    link = Newsletter(pages.app).personal(pages.reader("daily@example.com")).unsubscribe_url
    path = link.removeprefix("http://127.0.0.1:8080")
    asked = pages.browser.get(path).get_data(as_text=True)
    assert "将不再收到高新院日报" in asked  # the page's own title names the first cadence's list
    left = pages.browser.post(path).get_data(as_text=True)
    assert "已退订高新院日报，不会再收到我们的邮件" in left


def test_the_form_checks_the_script_and_cadence_a_link_asks_for_when_offered(pages: Pages) -> None:
    def checked(query: str) -> list[str]:
        form = pages.browser.get(f"/subscribe{query}").get_data(as_text=True)
        return re.findall(r'value="([^"]+)" checked', form)

    assert checked("") == ["zh-Hans", "weekly"]
    assert checked("?script=zh-Hant") == ["zh-Hant", "weekly"]  # as the 繁體 pages link it
    assert checked("?script=%E7%B9%81%E9%AB%94&cadence=daily") == ["zh-Hant", "daily"]
    assert checked("?script=zh-TW&cadence=hourly") == ["zh-Hans", "weekly"]  # not offered: ignored
    # a form sent back (here: no CSRF token) keeps what the reader chose
    again = pages.browser.post("/subscribe", data={"email": "a@example.com", "script": "zh-Hant", "cadence": "daily"})
    assert again.status_code == 400
    assert re.findall(r'value="([^"]+)" checked', again.get_data(as_text=True)) == ["zh-Hant", "daily"]


def test_a_site_that_offers_no_choice_shows_none_and_takes_none(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "choices-test-signing-key-0123456789")
    pages = Pages(site, "")
    try:
        form = pages.browser.get("/subscribe?script=zh-Hant&cadence=daily").get_data(as_text=True)
        assert 'name="script"' not in form and 'name="cadence"' not in form
        asked = [("email", "plain@example.com"), ("script", "zh-Hant"), ("cadence", "daily")]
        assert post_form(pages.browser, asked) == 200
        pages.browser.post(confirm_link(pages.mail()))  # type: ignore[arg-type]
        reader = pages.reader("plain@example.com")
        assert (reader.script, reader.cadence) == (None, "weekly")
    finally:
        pages.app.close()


def test_subscribers_add_import_and_export_carry_script_and_cadence(site: Site, tmp_path: Path) -> None:
    site.write_config(OFFER)
    assert site.cli("subscribers", "add", "a@example.com", "--script", "繁體", "--cadence", "daily").exit_code == 0
    assert site.cli("subscribers", "add", "a@example.com", "--name", "甲").exit_code == 0  # keeps their choices
    refused = site.cli("subscribers", "add", "b@example.com", "--cadence", "hourly")
    assert refused.exit_code != 0 and "unknown cadence 'hourly' (known: weekly, daily;" in refused.output
    upload = tmp_path / "readers.csv"
    upload.write_text(
        "email,name,categories,script,cadence\n"
        "c@example.com,丙,,zh-Hans,weekly\n"
        "d@example.com,丁,,zh-Hant,\n"
        "e@example.com,戊,,zh-Hant,monthly\n"
        "f@example.com,己,,klingon,daily\n",
        encoding="utf-8",
    )
    result = site.cli("subscribers", "import", str(upload))
    assert result.exit_code != 0
    assert f"{upload}:4: unknown cadence 'monthly'" in result.output
    assert f"{upload}:5: unknown script 'klingon'" in result.output
    assert "added 2," in result.output
    exported = tmp_path / "out.csv"
    assert site.cli("subscribers", "export", str(exported)).exit_code == 0
    lines = exported.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "email,name,categories,script,cadence,status,status_at,status_via,created_at," + (
        "consent_text,consent_at,consent_network"
    )
    rows = {line.split(",")[0]: line.split(",")[3:5] for line in lines[1:]}
    assert rows == {"a@example.com": ["zh-Hant", "daily"], "c@example.com": ["zh-Hans", "weekly"],
                    "d@example.com": ["zh-Hant", "weekly"]}  # fmt: skip
    # Read back into a site that offers the same: the same choices.
    fresh = Site(tmp_path / "fresh")
    fresh.write_config(OFFER)
    fresh.build()
    assert fresh.cli("subscribers", "import", str(exported)).exit_code == 0
    assert fresh.cli("subscribers", "export", str(tmp_path / "again.csv")).exit_code == 0
    again = (tmp_path / "again.csv").read_text(encoding="utf-8").splitlines()
    assert {line.split(",")[0]: line.split(",")[3:5] for line in again[1:]} == rows
    # A site that no longer offers the choices keeps them (docs/digest.md: "their choice is
    # kept"; the digest maps them at send time), and refuses only names it does not know.
    plain = Site(tmp_path / "plain")
    plain.build()
    taken = plain.cli("subscribers", "import", str(exported))
    assert taken.exit_code == 0 and "added 3," in taken.output, taken.output
    assert plain.cli("subscribers", "export", str(tmp_path / "plain.csv")).exit_code == 0
    kept = (tmp_path / "plain.csv").read_text(encoding="utf-8").splitlines()
    assert {line.split(",")[0]: line.split(",")[3:5] for line in kept[1:]} == rows
    assert plain.cli("subscribers", "add", "g@example.com", "--cadence", "daily").exit_code == 0


def test_the_console_shows_and_edits_a_readers_script_and_cadence(site: Site) -> None:
    site.write_config(site.mail_to_outbox() + OFFER)
    site.clock_now = datetime.now(UTC)
    site.build()
    app = site.app()
    try:
        now = app.clock()
        app.store.save_subscribers([Subscriber("r@example.com", "", (), SubscriberStatus.CONFIRMED, now, "cli", now)])
        reader_id = app.store.subscriber("r@example.com").id  # type: ignore[union-attr]
        web = create_app(app)
        web.config["TESTING"] = True
        editor = signed_in(web, site, app, "ed@example.org", "editor")
        path = f"/admin/subscribers/{reader_id}"
        page = editor.get(path).get_data(as_text=True)
        assert re.search(r'id="subscriber-script">简体', page) and re.search(r'id="subscriber-cadence">每周', page)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf
        form = {"csrf": csrf.group(1), "action": "categories", "category": ["tech"], "script": "zh-Hant",
                "cadence": "daily"}  # fmt: skip
        assert editor.post(path, data=form).status_code == 200
        reader = app.store.subscriber("r@example.com")
        assert reader is not None and (reader.script, reader.cadence, reader.categories) == (
            "zh-Hant",
            "daily",
            ("tech",),
        )
        page = editor.get(path).get_data(as_text=True)
        assert re.search(r'id="subscriber-script">繁體', page) and re.search(r'id="subscriber-cadence">每天', page)
        bad = editor.post(path, data=form | {"cadence": "hourly"})
        assert bad.status_code == 400 and "unknown cadence" in bad.get_data(as_text=True)
    finally:
        app.close()
    # The site stops offering the daily digest: the reader's choice shows, selected, with a
    # note, and saving their categories keeps it (digest.reader_cadence maps it at send time).
    site.write_config(site.mail_to_outbox())
    app = site.app()
    try:
        web = create_app(app)
        web.config["TESTING"] = True
        editor = signed_in(web, site, app, "ed2@example.org", "editor")
        page = editor.get(path).get_data(as_text=True)
        assert re.search(r'<option value="daily" selected>每天 （\[digest\] cadences 已不提供', page), page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf
        form = {"csrf": csrf.group(1), "action": "categories", "category": ["policy"], "script": "zh-Hant",
                "cadence": "daily"}  # fmt: skip
        assert editor.post(path, data=form).status_code == 200
        reader = app.store.subscriber("r@example.com")
        assert reader is not None and (reader.cadence, reader.categories) == ("daily", ("policy",))
    finally:
        app.close()


def test_digest_send_takes_a_cadence_and_sends_only_to_its_readers(site: Site) -> None:
    site.write_config(site.mail_to_outbox() + OFFER + "messages_per_second = 0\n")
    site.clock_now = datetime.now(UTC) - timedelta(minutes=5)  # the CLI runs on the real clock
    site.article("tech/today.md", "高新区发布新政", date=days_ago(0))
    site.build()
    app = site.app()
    try:
        now = app.clock()
        app.store.save_subscribers([
            Subscriber("daily@example.com", "", (), SubscriberStatus.CONFIRMED, now, "cli", now, script="zh-Hant",
                       cadence="daily"),
            Subscriber("weekly@example.com", "", (), SubscriberStatus.CONFIRMED, now, "cli", now),
        ])  # fmt: skip
    finally:
        app.close()
    sent = site.cli("digest", "send", "--cadence", "daily")
    assert sent.exit_code == 0, sent.output
    mails = [p.read_bytes() for p in site.outbox.glob("*.eml")]
    assert len(mails) == 1 and b"daily@example.com" in mails[0]
    again = site.cli("digest", "send", "--cadence", "daily")
    assert again.exit_code == 0 and len(list(site.outbox.glob("*.eml"))) == 1  # nothing new since
    assert "daily/scheduled" in site.cli("digest", "status").output
    site.write_config(site.mail_to_outbox())
    refused = site.cli("digest", "send", "--cadence", "daily")
    assert refused.exit_code != 0 and "not in [digest] cadences" in refused.output


@pytest.mark.parametrize(
    ("digest", "key", "words"),
    [
        ('cadences = ["weekly", "weekly"]', "digest.cadences", "names a cadence twice"),
        ('cadences = ["hourly"]', "digest.cadences", ""),
        ("cadences = []", "digest.cadences", ""),
        ('scripts = ["zh-Hant"]', "digest.scripts", "offers no choice"),
        ('scripts = ["zh-TW", "zh-Hans"]', "digest.scripts", ""),
        ('daily_schedule = "0 7 * * 1"', "digest.daily_schedule", "uses numbers"),
        ('daily_schedule = "every day"', "digest.daily_schedule", "not a 5-field cron line"),
        ('daily_schedule = "0 6 * * *"', "digest.daily_schedule", 'no daily digest: "daily" is not in digest.cadences'),
    ],
)
def test_bad_choices_in_the_config_are_named_by_key(site: Site, digest: str, key: str, words: str) -> None:
    site.write_config(f"\n[digest]\n{digest}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(site.config)
    assert key in str(caught.value) and words in str(caught.value)


def test_the_default_config_offers_the_weekly_digest_in_the_sites_script(site: Site) -> None:
    settings = load_settings(site.config)
    assert (settings.digest.cadences, settings.digest.scripts) == (["weekly"], [])
    assert settings.digest.schedule_of("weekly") == "0 8 * * mon"
    app = App(settings)
    assert app.scripts.site == "zh-Hans"
    app.close()
