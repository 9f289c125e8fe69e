"""Files holding the signing key, live links or readers' data are 0600 in 0700 folders, whatever
the umask: the store (and its -wal, -shm), previews, dry runs, the outbox, exports, backups."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Site
from publisher.model import SubscriberStatus
from publisher.subscriptions import add


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """The usual umask (files 0644, folders 0755), so a private mode is the code's doing."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def subscribed(site: Site) -> None:
    site.article("高新院新闻/a.md", "第一篇")
    site.build()
    app = site.app()
    try:
        add(app.store, "reader@example.org", "读者", (), SubscriberStatus.CONFIRMED, site.clock_now, app.offered)
    finally:
        app.close()


@pytest.mark.sqlite_only("the modes of SQLite's files")
def test_a_new_store_and_its_folder_are_private(site: Site) -> None:
    site.build()
    assert mode(site.db.parent) == 0o700
    files = [p for p in site.db.parent.iterdir() if p.name.startswith("publisher.db")]
    assert {p.name for p in files} >= {"publisher.db"}
    for path in files:
        if not path.name.endswith("scheduler-lock"):
            assert mode(path) == 0o600, path


@pytest.mark.sqlite_only("the modes of SQLite's files")
def test_the_wal_and_shm_of_a_new_store_are_private(site: Site) -> None:
    app = site.app()
    try:
        app.store.set_meta("probe", "1")
        with app.store.engine.connect():  # an open connection keeps -wal and -shm there
            assert mode(Path(f"{site.db}-wal")) == 0o600
            assert mode(Path(f"{site.db}-shm")) == 0o600
    finally:
        app.close()


@pytest.mark.sqlite_only("the modes of SQLite's files")
def test_a_folder_that_exists_keeps_its_mode(site: Site) -> None:
    site.db.parent.mkdir(mode=0o755)
    site.build()
    assert mode(site.db.parent) == 0o755  # the operator's folder
    assert mode(site.db) == 0o600


def test_previews_and_dry_runs_are_private(site: Site) -> None:
    subscribed(site)
    preview = site.root / "var" / "preview"
    assert site.cli("digest", "preview", "--out", str(preview)).exit_code == 0
    assert mode(preview) == 0o700
    assert {p.name: mode(p) for p in preview.iterdir()} == {
        "digest.html": 0o600, "digest.txt": 0o600, "digest.eml": 0o600,
    }  # fmt: skip
    dry = site.root / "dry" / "run"
    window = ["--since", "2026-01-01", "--until", "2026-12-31"]
    result = site.cli("digest", "send", "--dry-run", "--out", str(dry), *window)
    assert result.exit_code == 0, result.output
    assert "1 message(s)" in result.output, result.output
    assert mode(dry) == 0o700 and mode(dry.parent) == 0o700
    emls = list(dry.glob("*.eml"))
    assert emls and {mode(p) for p in emls} == {0o600}


def test_a_preview_written_before_is_made_private(site: Site) -> None:
    subscribed(site)
    preview = site.root / "preview"
    preview.mkdir()
    (preview / "digest.html").write_text("old", encoding="utf-8")
    os.chmod(preview / "digest.html", 0o644)
    assert site.cli("digest", "preview", "--out", str(preview)).exit_code == 0
    assert mode(preview / "digest.html") == 0o600


def test_the_outbox_is_private(site: Site) -> None:
    site.append_config(site.mail_to_outbox())
    subscribed(site)
    result = site.cli("digest", "send", "--since", "2026-01-01", "--until", "2026-12-31")
    assert result.exit_code == 0, result.output
    assert mode(site.outbox) == 0o700
    emls = list(site.outbox.glob("*.eml"))
    assert emls and {mode(p) for p in emls} == {0o600}


def test_a_subscriber_export_is_private(site: Site) -> None:
    subscribed(site)
    target = site.root / "list.csv"
    assert site.cli("subscribers", "export", str(target)).exit_code == 0
    assert mode(target) == 0o600
    os.chmod(target, 0o644)
    assert site.cli("subscribers", "export", str(target)).exit_code == 0
    assert mode(target) == 0o600  # written over: private again


@pytest.mark.sqlite_only("the modes of SQLite's files")
def test_the_backup_db_upgrade_makes_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_migrations import FIXTURE, cli, fixture_config

    monkeypatch.delenv("PUBLISHER_SECRET_KEY", raising=False)
    shutil.copyfile(FIXTURE / "publisher.db", tmp_path / "publisher.db")
    config = tmp_path / "publisher.toml"
    config.write_text(fixture_config(tmp_path / "publisher.db", tmp_path), encoding="utf-8")
    assert cli(config, "db", "upgrade").exit_code == 0
    [backup] = tmp_path.glob("publisher.db.before-0.1.0-*")
    assert mode(backup) == 0o600


@pytest.mark.sqlite_only("the modes of SQLite's files")
def test_db_upgrade_makes_a_new_store_in_a_new_private_folder(site: Site) -> None:
    """`make run` upgrades first: on a new site that is where var/ and the store are made."""
    result = site.cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert mode(site.db.parent) == 0o700 and mode(site.db) == 0o600
    assert site.cli("db", "status").output.splitlines()[-1] == "up to date"
