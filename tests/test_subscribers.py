"""Subscribers: CSV import with line-numbered problems, add, list, remove, export."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from conftest import Site

CSV = """\
email,name,categories
Zhang.San@Example.ORG,张三,高新院新闻;policy
li@qq.com,李四,
not-an-address,王五,
wang@163.com,王六,体育
zhang.san@example.org,重复,
zhao@outlook.com,,科技创新；政策解读
"""


def write_csv(site: Site, text: str = CSV, encoding: str = "utf-8") -> Path:
    path = site.root / "subscribers.csv"
    path.write_bytes(text.encode(encoding))
    return path


def listing(site: Site) -> dict[str, list[str]]:
    result = site.cli("subscribers", "export")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    return {r["email"]: [r["name"], r["categories"], r["status"], r["status_via"]] for r in rows}


def test_import_reports_bad_rows_by_line_and_imports_the_good_ones(site: Site) -> None:
    path = write_csv(site)
    result = site.cli("subscribers", "import", str(path))
    assert result.exit_code == 1  # some rows were rejected
    assert f"{path}:4: 'not-an-address' is not an e-mail address" in result.output
    assert f"{path}:5: unknown category '体育'" in result.output
    assert f"{path}:6: zhang.san@example.org is already on line 2" in result.output
    assert "added 3, updated 0, unchanged 0, not updated 0, kept unsubscribed or bounced 0, rejected 3" in result.output
    assert listing(site) == {
        "Zhang.San@example.org": ["张三", "高新院新闻;政策解读", "confirmed", "import"],
        "li@qq.com": ["李四", "", "confirmed", "import"],
        "zhao@outlook.com": ["", "科技创新;政策解读", "confirmed", "import"],
    }


def test_importing_the_same_file_again_changes_nothing(site: Site) -> None:
    path = write_csv(site)
    site.cli("subscribers", "import", str(path))
    result = site.cli("subscribers", "import", str(path))
    assert "added 0, updated 0, unchanged 3" in result.output


def test_pending_import_and_excel_files_in_gb18030(site: Site) -> None:
    path = write_csv(site, "email,name,categories\r\nchen@qq.com,陈七,科技创新\r\n", encoding="gb18030")
    result = site.cli("subscribers", "import", "--pending", str(path))
    assert result.exit_code == 0, result.output
    assert listing(site) == {"chen@qq.com": ["陈七", "科技创新", "pending", "import"]}
    write_csv(site, "\ufeffemail,name\nchen@qq.com,陈七\n")  # UTF-8 with Excel's BOM
    site.cli("subscribers", "import", str(path))
    assert listing(site)["chen@qq.com"][2] == "pending"  # an import confirms nobody who did not confirm


def test_an_unsubscribed_reader_is_never_signed_up_again_by_an_import(site: Site) -> None:
    path = write_csv(site, "email,name,categories\nli@qq.com,李四,\n")
    site.cli("subscribers", "import", str(path))
    assert site.cli("subscribers", "remove", "LI@qq.com").exit_code == 0
    result = site.cli("subscribers", "import", str(path))
    assert "kept unsubscribed or bounced 1" in result.output
    assert listing(site)["li@qq.com"][2:] == ["unsubscribed", "cli"]
    refused = site.cli("subscribers", "add", "li@qq.com")
    assert refused.exit_code == 1 and "is unsubscribed" in refused.output


def test_a_file_without_an_email_column_is_refused_whole(site: Site) -> None:
    path = write_csv(site, "mail,name\nli@qq.com,李四\n")
    result = site.cli("subscribers", "import", str(path))
    assert result.exit_code == 1 and "at least `email`" in result.output
    assert listing(site) == {}


def test_add_list_and_erase(site: Site) -> None:
    added = site.cli(
        "subscribers", "add", "zhou@example.cn", "--name", "周八", "--category", "tech", "--category", "政策解读"
    )
    assert added.exit_code == 0 and "added zhou@example.cn (confirmed)" in added.output
    updated = site.cli("subscribers", "add", "zhou@example.cn", "--category", "高新院新闻")
    assert "updated zhou@example.cn" in updated.output
    shown = site.cli("subscribers", "list")
    assert "zhou@example.cn" in shown.output and "周八" in shown.output and "高新院新闻" in shown.output
    assert site.cli("subscribers", "add", "bad@", "--name", "x").exit_code == 2
    assert site.cli("subscribers", "add", "x@example.cn", "--category", "体育").exit_code == 2
    assert site.cli("subscribers", "remove", "--erase", "zhou@example.cn").exit_code == 0
    assert listing(site) == {}
    assert site.cli("subscribers", "remove", "nobody@example.cn").exit_code == 1


def test_export_reads_back_as_an_import(site: Site, tmp_path: Path) -> None:
    write = write_csv(site)
    site.cli("subscribers", "import", str(write))
    exported = tmp_path / "out.csv"
    assert site.cli("subscribers", "export", str(exported)).exit_code == 0
    fresh = Site(tmp_path / "other")
    result = fresh.cli("subscribers", "import", str(exported))
    assert result.exit_code == 0, result.output
    assert "added 3" in result.output


@pytest.mark.parametrize("status", ["pending", "confirmed", "unsubscribed", "bounced"])
def test_list_filters_by_status(site: Site, status: str) -> None:
    site.cli("subscribers", "add", "a@example.cn", "--pending")
    site.cli("subscribers", "add", "b@example.cn")
    result = site.cli("subscribers", "list", "--status", status)
    expected = {"pending": 1, "confirmed": 1}.get(status, 0)
    assert f"{expected} subscriber(s)" in result.output


def test_names_with_line_breaks_or_control_characters_are_cleaned() -> None:
    from publisher.subscriptions import clean_name

    assert clean_name("Bob\nSmith") == "Bob Smith"
    assert clean_name("  张三\r\n\t\x00\x1b 先生 ") == "张三 先生"
    assert clean_name("a\u2028b\u200bc") == "a b c"


def test_an_exported_list_imports_back_with_its_unsubscribed_and_pending_readers(
    tmp_path: Path, store_url: str
) -> None:
    from datetime import UTC, datetime

    from publisher.choices import Offered
    from publisher.model import SubscriberStatus
    from publisher.normalize import CategoryIndex
    from publisher.store import Store
    from publisher.subscriptions import import_csv

    store = Store(store_url)
    csv = tmp_path / "export.csv"
    csv.write_text(
        "email,name,categories,status,status_at,status_via,created_at\n"
        "a@example.com,A,,confirmed,2026-01-01,cli,2026-01-01\n"
        "b@example.com,B,,unsubscribed,2026-02-01,one-click,2026-01-01\n"
        "c@example.com,C,,pending,2026-03-01,web,2026-01-01\n"
        "d@example.com,D,,bounced,2026-03-01,bounce,2026-01-01\n"
        "e@example.com,E,,maybe,2026-03-01,web,2026-01-01\n",
        encoding="utf-8",
    )
    now = datetime(2026, 11, 30, tzinfo=UTC)
    report = import_csv(store, csv, CategoryIndex([]), SubscriberStatus.CONFIRMED, now, Offered((), ("weekly",)))
    got = {s.email: s.status.value for s in store.subscribers()}
    store.close()
    assert got == {"a@example.com": "confirmed", "b@example.com": "unsubscribed", "c@example.com": "pending",
                   "d@example.com": "bounced"}  # fmt: skip
    assert len(report.problems) == 1 and ":6:" in report.problems[0]


# --- imports never undo readers' own choices --------------------------------------------------


def test_an_import_keeps_what_readers_chose_unless_update_says_so(site: Site) -> None:
    path = write_csv(site, "email,name,categories\nwang@example.org,王,高新院新闻\nnew@example.org,新,\n")
    assert site.cli("subscribers", "import", str(path)).exit_code == 0
    # The reader changes their own entry on the web (the preferences page's service).
    from publisher.subscriptions import choose_categories

    app = site.app()
    try:
        reader = app.store.subscriber("wang@example.org")
        assert reader is not None and reader.id is not None
        choose_categories(app.store, reader.id, ("tech",))
    finally:
        app.close()
    write_csv(site, "email,name,categories\nwang@example.org,王先生,policy\nnew@example.org,新,\nmore@example.org,,\n")
    again = site.cli("subscribers", "import", str(path))
    assert again.exit_code == 0, again.output
    assert "added 1, updated 0, unchanged 1, not updated 1 (--update changes them)" in again.output
    assert listing(site)["wang@example.org"] == ["王", "科技创新", "confirmed", "import"]  # their choice stands

    updated = site.cli("subscribers", "import", "--update", str(path))
    assert "added 0, updated 1, unchanged 2, not updated 0," in updated.output
    assert listing(site)["wang@example.org"] == ["王先生", "政策解读", "confirmed", "import"]
    # A file without a categories column changes names only, even with --update.
    write_csv(site, "email,name\nwang@example.org,老王\n")
    site.cli("subscribers", "import", "--update", str(path))
    assert listing(site)["wang@example.org"] == ["老王", "政策解读", "confirmed", "import"]


def test_an_import_never_confirms_a_pending_reader(site: Site) -> None:
    path = write_csv(site, "email,name,categories\nwait@example.org,等,\n")
    assert site.cli("subscribers", "import", "--pending", str(path)).exit_code == 0
    write_csv(site, "email,name,categories,status\nwait@example.org,等,科技创新,confirmed\n")
    for args in ([], ["--update"]):
        result = site.cli("subscribers", "import", *args, str(path))
        assert result.exit_code == 0, result.output
        assert listing(site)["wait@example.org"][2] == "pending"
    assert listing(site)["wait@example.org"][:2] == ["等", "科技创新"]  # --update changed their categories only
    assert "1 pending reader(s) in the file get no mail: --send-confirmation mails their link" in result.output


def test_send_confirmation_mails_pending_readers_their_link(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    import re
    from email import message_from_bytes, policy

    from publisher.web import create_app

    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "import-test-signing-key-0123456789")
    site.write_config(
        site.mail_to_outbox() + '\n[web]\npublic_url = "http://127.0.0.1:8080"\nconfirmation_mails_per_day = 2\n'
    )
    path = write_csv(site, "email,name,categories\nping@example.org,乒,科技创新\nsure@example.org,确,\n")
    site.cli("subscribers", "add", "sure@example.org")  # confirmed already: no mail
    result = site.cli("subscribers", "import", "--pending", "--send-confirmation", str(path))
    assert result.exit_code == 0, result.output
    assert "sent 1 confirmation e-mail(s), 0 not sent" in result.output
    [mail] = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in site.outbox.glob("*.eml")]
    assert mail["To"].addresses[0].addr_spec == "ping@example.org"
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(r"http://127\.0\.0\.1:8080(/confirm/\S+)", text)
    assert link, text

    # The reader follows it: confirmed, as the operator imported them.
    app = site.app()
    try:
        assert create_app(app).test_client().post(link.group(1)).status_code == 200
    finally:
        app.close()
    assert listing(site)["ping@example.org"] == ["乒", "科技创新", "confirmed", "web"]

    # Importing again mails only who is still pending, and a mailbox a few times a day at most.
    write_csv(site, "email\nlate@example.org\n")
    for _ in range(3):
        again = site.cli("subscribers", "import", "--pending", "--send-confirmation", str(path))
    assert "sent 0 confirmation e-mail(s), 1 not sent" in again.output and again.exit_code == 1
    assert "late@example.org: not sent, the mailbox had 2 sign-up e-mails in the last 24 hours" in again.output
    mails = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in site.outbox.glob("*.eml")]
    assert sum(str(m["Subject"]).startswith("请确认") for m in mails) == 3  # besides, the welcome after the link
