"""`publisher backup` (issue 17, item 19): a copy taken while a digest is being sent, restored
after the send finished, sends nobody the digest again by itself; the copy is private (0600),
whole, and quick to make.

A real send over SMTP to aiosmtpd, the real CLI in another process, SQLite's own files.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from test_newsletter import Inbox, add_readers, mailing_site, sending
from test_smtp import free_port

from conftest import Site
from publisher.jobs import resume_digests
from publisher.store import Store


def ledger_of(path: Path) -> tuple[str, dict[str, int]]:
    store = Store(f"sqlite:///{path}")
    try:
        [digest] = store.digests()
        return digest.status, store.delivery_counts(digest.id)
    finally:
        store.close()


@pytest.mark.sqlite_only("publisher backup copies a SQLite store (PostgreSQL's is pg_dump)")
def test_a_backup_taken_mid_send_and_restored_resends_nothing_by_itself(site: Site, tmp_path: Path) -> None:
    box, port = Inbox(delay=0.004), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    copy = tmp_path / "backup" / "publisher.db"
    copy.parent.mkdir()
    try:
        mailing_site(site, port)
        readers = add_readers(site, 400)
        sender = sending(site, box, 100)
        started = time.monotonic()
        taken = site.cli("backup", str(copy))
        took = time.monotonic() - started
        at_backup = len(box.received)
        _out, errors = sender.communicate(timeout=120)
        assert sender.returncode == 0, errors.decode()
        assert at_backup < 400, "the send finished before the backup: make the server slower"
        sent_before_restore = len(box.received)

        # The disaster: the store is lost; the copy goes in its place; the service starts.
        for leftover in site.db.parent.glob(site.db.name + "-*"):
            leftover.unlink()
        shutil.copy(copy, site.db)
        resume_digests(str(site.config))  # what `publisher run` does at start
        resent = len(box.received) - sent_before_restore
        status = site.cli("digest", "status")
    finally:
        controller.stop()

    assert taken.exit_code == 0, taken.output
    assert resent == 0, f"{resent} readers got the digest again"
    assert took < 10, took
    assert "was sending" in taken.output and "paused in the copy" in taken.output, taken.output
    assert copy.stat().st_mode & 0o777 == 0o600
    assert not list(copy.parent.glob(".*")), list(copy.parent.iterdir())  # no partial file left
    assert Counter(rcpt for rcpt, _mid in box.received) == Counter(readers)  # one each
    state, counts = ledger_of(site.db)
    assert state == "paused" and counts.get("pending", 0) > 0, counts  # the operator decides
    assert "paused" in status.output
    with sqlite3.connect(copy) as db:
        [(note,)] = db.execute("select value from meta where key = 'backup'").fetchall()
        assert db.execute("pragma journal_mode").fetchone()[0] == "delete"
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert json.loads(note)["paused"] == [ledger_key(site.db)]


def ledger_key(path: Path) -> str:
    store = Store(f"sqlite:///{path}")
    try:
        [digest] = store.digests()
        return digest.key
    finally:
        store.close()


@pytest.mark.sqlite_only("publisher backup copies a SQLite store (PostgreSQL's is pg_dump)")
def test_a_backup_of_an_idle_store_is_the_store(site: Site, tmp_path: Path) -> None:
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
    site.build()
    copy = tmp_path / "copy.db"
    result = site.cli("backup", str(copy))
    assert result.exit_code == 0, result.output
    assert "paused" not in result.output
    with sqlite3.connect(copy) as db, sqlite3.connect(site.db) as live:
        query = "select guid, title from articles order by guid"
        assert db.execute(query).fetchall() == live.execute(query).fetchall() != []
    again = site.cli("backup", str(copy))  # never over an existing file
    assert again.exit_code == 1 and "already exists" in again.output


def test_a_postgresql_store_is_pointed_to_pg_dump(site: Site) -> None:
    site.write_config()
    text = site.config.read_text(encoding="utf-8")
    pg = "postgresql+psycopg://publisher@127.0.0.1:5432/publisher_backup_test"
    site.config.write_text(text.replace(site.store_url, pg), encoding="utf-8")
    result = site.cli("backup", str(site.root / "x.db"))
    assert result.exit_code == 2 and "pg_dump" in result.output, result.output
    assert not (site.root / "x.db").exists()


@pytest.mark.sqlite_only("publisher backup copies a SQLite store (PostgreSQL's is pg_dump)")
def test_a_killed_backup_leaves_no_file_under_the_name(site: Site, tmp_path: Path) -> None:
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
    site.build()
    copy = tmp_path / "copy.db"
    partial = tmp_path / ".copy.db.partial"
    partial.write_bytes(b"half a copy")  # as a killed backup leaves it
    assert site.cli("backup", str(copy)).exit_code == 0
    assert not partial.exists() and copy.is_file()
