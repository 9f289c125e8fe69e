"""What goes wrong on a host gets one clear message naming the path and what to do, never a
traceback: a full disk under the output, the store or the outbox; a store locked too long or
damaged; an unknown dialect. A full outbox pauses the digest; half-written files are removed,
and those of a killed writer by the next run; a killed build leaves no worker behind.

A full disk is a small tmpfs where this host lets the test mount one, and a file-size limit
(RLIMIT_FSIZE, SIGXFSZ ignored: the write fails with EFBIG) where it does not."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import PUBLISHER_MAIN, Site
from publisher.errors import StoreError
from publisher.model import SubscriberStatus
from publisher.subscriptions import add

BIG_BODY = "长文。" * 4000  # about 36 KB of UTF-8 per article


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """`mount(size)`: a folder on a tmpfs of that size (like "64k"); skips where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the RLIMIT_FSIZE tests cover this")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def temporaries(folder: Path) -> list[Path]:
    return list(folder.rglob("*.tmp"))


def no_traceback(output: str) -> None:
    assert "Traceback" not in output, output


def failed_build(site: Site, articles: int) -> str:
    """The output of a build of `articles` big articles (with the site's config written again
    for where its output and store are now), which must fail with a message, not a traceback."""
    site.write_config()
    for i in range(articles):
        site.article(f"高新院新闻/{i}.md", f"第{i}篇", body=BIG_BODY)
    result = site.cli("build")
    assert result.exit_code == 1, result.output
    no_traceback(result.output)
    return result.output


SmallDisk = Callable[[str], Path]


def test_a_full_output_disk_is_one_message_and_leaves_no_half_file(site: Site, small_disk: SmallDisk) -> None:
    out = site.out = small_disk("64k")
    output = failed_build(site, 6)
    assert f"cannot write {out}" in output and "No space left on device" in output
    assert "free space on the disk" in output
    assert temporaries(out) == []


def test_a_full_output_disk_under_a_file_size_limit(tmp_path: Path) -> None:
    """The same with RLIMIT_FSIZE, which every host allows: EFBIG, the old file kept whole."""
    target = tmp_path / "public" / "feed.xml"
    target.parent.mkdir()
    target.write_bytes(b"old feed")
    script = f"""
import resource, signal, sys
from pathlib import Path
from publisher.errors import OutputError
from publisher.feeds import write_if_changed
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    write_if_changed(Path({str(target)!r}), b"x" * 100_000)
except OutputError as exc:
    print(exc)
    sys.exit(3)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"cannot write {target}: File too large" in done.stdout
    assert "file-size limit" in done.stdout and "keep their last good content" in done.stdout
    assert target.read_bytes() == b"old feed"
    assert temporaries(tmp_path) == []


@pytest.mark.sqlite_only("a SQLite file that is full, locked or damaged")
def test_a_full_store_disk_is_one_message(site: Site, small_disk: SmallDisk) -> None:
    # A new store at head is 252 KiB, and its WAL as much while it is made: the disk must hold
    # that, so that it fills up with the articles, not while the tables are made.
    db = site.db = small_disk("768k") / "publisher.db"
    site.store_url = f"sqlite:///{db}"
    output = failed_build(site, 30)
    assert f"the store {db}" in output and "disk is full" in output
    assert "free space on the disk that holds it" in output


def subscribed(site: Site) -> None:
    site.article("高新院新闻/a.md", "第一篇")
    site.build()
    app = site.app()
    try:
        for i in range(3):
            add(app.store, f"r{i}@example.org", "", (), SubscriberStatus.CONFIRMED, site.clock_now, app.offered)
    finally:
        app.close()


def test_a_full_outbox_pauses_the_digest_and_removes_its_partial_file(site: Site, small_disk: SmallDisk) -> None:
    outbox = small_disk("8k")
    site.append_config(f'\n[mail]\ntransport = "outbox"\n[mail.outbox]\ndir = "{outbox}"\n')
    subscribed(site)
    (outbox / "filler").write_bytes(b"x" * 4096)  # what is left is less than one message
    result = site.cli("digest", "send", "--since", "2026-01-01", "--until", "2026-12-31")
    assert result.exit_code == 1, result.output
    no_traceback(result.output)
    assert "paused" in result.output
    assert temporaries(outbox) == [] and list(outbox.glob("*.eml")) == []
    app = site.app()
    try:
        [row] = app.store.digests()
        assert row.status == "paused"
        counts = app.store.delivery_counts(row.id)
        assert counts.get("failed", 0) == 0 and counts.get("pending") == 3  # nobody's attempt used up
    finally:
        app.close()


def test_the_outbox_under_a_file_size_limit_is_a_broken_transport(tmp_path: Path) -> None:
    """The same with RLIMIT_FSIZE: a TransportError that pauses the digest, no partial file."""
    script = f"""
import resource, signal, sys
from pathlib import Path
from publisher.transports import TransportError
from publisher.transports.outbox import OutboxTransport

class Big:  # what the outbox reads of a message
    message_id = "<1@example.org>"
    class envelope:
        return_path = None
    def as_bytes(self):
        return b"x" * 100_000

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    OutboxTransport(Path({str(tmp_path)!r})).send(Big())
except TransportError as exc:
    print(exc, exc.broken, exc.retryable)
    sys.exit(3)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"cannot write {tmp_path}/000001-" in done.stdout and "File too large" in done.stdout
    assert "`publisher digest resume` then sends the rest" in done.stdout
    assert done.stdout.strip().endswith("True False")  # broken: the digest pauses; nobody's attempt used
    assert list(tmp_path.iterdir()) == []


@pytest.mark.sqlite_only("a SQLite file that is full, locked or damaged")
def test_a_store_locked_too_long_is_one_message(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from publisher import store

    site.build()
    monkeypatch.setattr(store, "BUSY_TIMEOUT_MS", 200)
    holder = sqlite3.connect(site.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO meta (key, value) VALUES ('held', 'by the test')")
    try:
        result = site.cli("subscribers", "add", "x@example.org")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 1, result.output
    no_traceback(result.output)
    assert f"the store {site.db} stayed locked by another process" in result.output
    assert "database is locked" in result.output and "run the command again" in result.output


@pytest.mark.sqlite_only("a SQLite file that is full, locked or damaged")
@pytest.mark.parametrize("garbage", [b"this is not a database at all\n" * 200, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_damaged_store_is_one_message(site: Site, garbage: bytes) -> None:
    site.db.parent.mkdir(parents=True)
    site.db.write_bytes(garbage)
    for command in (["subscribers", "list"], ["build"], ["db", "status"]):
        result = site.cli(*command)
        assert result.exit_code == 1, (command, result.output)
        no_traceback(result.output)
        assert f"the store {site.db} is damaged" in result.output, result.output
        assert "restore the last backup" in result.output


def test_an_unknown_dialect_is_a_store_error_not_a_traceback() -> None:
    from publisher.store import Store

    with pytest.raises(StoreError, match="'nosuchdb://x' is not a database publisher can open"):
        Store("nosuchdb://x")


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_build_removes_what_a_killed_write_left(site: Site) -> None:
    site.article("高新院新闻/a.md", "第一篇")
    site.build()
    killed = site.out / f".index.html.{dead_pid()}.k1ll3d.tmp"
    deep = site.out / "policy" / f".rss.xml.{dead_pid()}.k1ll3d.tmp"
    writing = site.out / f".atom.xml.{os.getppid()}.l1v3.tmp"  # a live process's: still being written
    for path in (killed, deep, writing):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    site.build()
    assert not killed.exists() and not deep.exists()
    assert writing.exists()


def test_the_outbox_removes_what_a_killed_send_left(tmp_path: Path) -> None:
    from publisher.transports.outbox import OutboxTransport

    killed = tmp_path / f".000001-0123456789abcdef.eml.{dead_pid()}.k1ll3d.tmp"
    killed.write_bytes(b"half a message")
    OutboxTransport(tmp_path)
    assert not killed.exists()


def descendants(pid: int) -> set[int]:
    """Every live process under `pid` (zombies, which are dead, left out)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    live = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            live.add(pid)
    return live


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_killed_build_leaves_no_worker_behind(site: Site, how: signal.Signals) -> None:
    for i in range(600):
        site.article(f"高新院新闻/{i:04d}.md", f"第{i}篇", body="正文很长。" * 3000)
    env = {**os.environ, "PUBLISHER_WORKERS": "2"}
    build = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER_MAIN, "--config", str(site.config), "build"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    workers: set[int] = set()
    deadline = time.monotonic() + 60
    while len(workers) < 2 and build.poll() is None and time.monotonic() < deadline:
        workers = descendants(build.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "the build ended before its pool started: give it more to read"
    build.send_signal(how)
    build.wait(timeout=30)
    deadline = time.monotonic() + 10
    while alive(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive(workers) == set(), f"orphaned after {how.name}: {alive(workers)}"
    no_traceback((build.stderr.read() if build.stderr else b"").decode(errors="replace"))


def full(disk: Path) -> None:
    """Fill `disk` to the last byte."""
    with open(disk / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"x" * 4096)
        except OSError:
            pass
        try:
            while True:
                handle.write(b"x")
        except OSError:
            pass


def test_a_preview_or_an_export_on_a_full_disk_names_its_file(site: Site, small_disk: SmallDisk) -> None:
    subscribed(site)
    disk = small_disk("64k")
    full(disk)
    preview = site.cli("digest", "preview", "--out", str(disk / "preview"))
    assert preview.exit_code == 1, preview.output
    no_traceback(preview.output)
    assert f"cannot write {disk}/preview" in preview.output and "No space left on device" in preview.output
    export = site.cli("subscribers", "export", str(disk / "list.csv"))
    assert export.exit_code == 1, export.output
    no_traceback(export.output)
    assert f"cannot write {disk}/list.csv: No space left on device" in export.output


@pytest.mark.sqlite_only("upgrades the 0.1.0 SQLite store on a full disk")
def test_db_upgrade_on_a_full_disk_changes_nothing(
    tmp_path: Path, small_disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from test_migrations import FIXTURE, cli, fixture_config

    monkeypatch.delenv("PUBLISHER_SECRET_KEY", raising=False)
    disk = small_disk("1m")
    shutil.copyfile(FIXTURE / "publisher.db", disk / "publisher.db")
    before = (disk / "publisher.db").read_bytes()
    full(disk)
    config = tmp_path / "publisher.toml"
    config.write_text(fixture_config(disk / "publisher.db", tmp_path), encoding="utf-8")
    result = cli(config, "db", "upgrade")
    assert result.exit_code == 1, result.output
    no_traceback(result.output)
    assert f"cannot back up the store to {disk}/publisher.db.before-0.1.0-" in result.output
    assert "nothing was changed" in result.output
    assert list(disk.glob("publisher.db.before-*")) == []
    assert (disk / "publisher.db").read_bytes() == before


@pytest.mark.sqlite_only("a SQLite file that is full, locked or damaged")
def test_a_scheduled_job_that_meets_a_locked_store_logs_one_line(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from publisher import jobs, store
    from publisher.scheduler import _explained_elsewhere

    site.build()
    monkeypatch.setattr(store, "BUSY_TIMEOUT_MS", 200)
    site.article("高新院新闻/new.md", "新的一篇")
    holder = sqlite3.connect(site.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="stayed locked by another process") as caught:
            jobs.ingest_and_build(str(site.config))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    record = logging.LogRecord("apscheduler.executors.default", logging.ERROR, "", 0, "Job raised", (),
                               (StoreError, caught.value, None))  # fmt: skip
    assert not _explained_elsewhere(record)  # its traceback is not logged; `<job> failed: …` is
    bug = logging.LogRecord("apscheduler.executors.default", logging.ERROR, "", 0, "Job raised", (),
                            (KeyError, KeyError("x"), None))  # fmt: skip
    assert _explained_elsewhere(bug)
