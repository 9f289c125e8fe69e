"""Schema migrations on real databases: the committed 0.1.0 store upgrades with nothing lost,
stores behind or ahead are refused, and every revision run from nothing gives the code's schema
on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from click.testing import CliRunner, Result
from sqlalchemy import Column, MetaData, Table, column, create_engine, inspect, select, text
from sqlalchemy.engine import Connection
from test_smtp import free_port

from backends import new_postgres_url
from publisher.app import App
from publisher.cli import main
from publisher.config import load_settings
from publisher.model import SubscriberStatus
from publisher.store import Store, migrate
from publisher.store.revision import HEAD, REVISIONS
from publisher.store.schema import article_renditions_table, metadata

FIXTURE = Path(__file__).parent / "fixtures" / "store-0.1.0"

LINKS = json.loads((FIXTURE / "links.json").read_text(encoding="utf-8"))
# The links were minted with the 5-year unsubscribe lifetime: the in-process check reads them on
# a clock a day after the fixture was made, so it keeps testing the upgrade, not the calendar.
A_DAY_LATER = datetime.fromisoformat(LINKS["made"]) + timedelta(days=1)
WINDOW = ["--since", "2025-12-01", "--until", "2026-11-30"]  # the digest the fixture sent
TABLES = [*metadata.tables, "apscheduler_jobs"]


def fixture_config(db: Path, work: Path) -> str:
    """The configuration the fixture was made with (0.1.0's demo configuration), for the store
    at `db`, output and outbox in `work`: an operator's 0.1.0 configuration, unchanged."""
    text = (FIXTURE / "publisher.toml").read_text(encoding="utf-8")
    content = Path(__file__).parent.parent / "demo" / "content"
    return text.replace("@DB@", str(db)).replace("@WORK@", str(work)).replace("@CONTENT@", str(content))


@pytest.fixture
def old_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the 0.1.0 store and its configuration; the links' key is the one it keeps."""
    monkeypatch.delenv("PUBLISHER_SECRET_KEY", raising=False)
    shutil.copyfile(FIXTURE / "publisher.db", tmp_path / "publisher.db")
    config = tmp_path / "publisher.toml"
    config.write_text(fixture_config(tmp_path / "publisher.db", tmp_path), encoding="utf-8")
    return config


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


def snapshot(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, as SQLite holds it (timestamps as their stored text)."""
    conn = sqlite3.connect(db)
    try:
        present = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in TABLES if t in present}
    finally:
        conn.close()


def renditions(db: Path) -> list[tuple[Any, ...]]:
    """The article_renditions rows in the order `snapshot` gives the articles."""
    conn = sqlite3.connect(db)
    try:
        ids = [row[0] for row in sorted(conn.execute("SELECT * FROM articles").fetchall(), key=repr)]
        found = {row[0]: row for row in conn.execute("SELECT * FROM article_renditions")}
        return [found[i] for i in ids]
    finally:
        conn.close()


def outbox(config: Path) -> list[Path]:
    return sorted((config.parent / "outbox").rglob("*.eml"))


def schema_differences(conn: Connection) -> list[Any]:
    """What Alembic's autogenerate would change to reach the code's metadata (ours only)."""
    context = MigrationContext.configure(
        conn, opts={"include_name": lambda name, kind, _p: kind != "table" or name in metadata.tables}
    )
    return list(compare_metadata(context, metadata))


def constraint_names(conn: Connection) -> set[tuple[str, str, str | None]]:
    """(table, kind, name) of every constraint and index of ours: names Alembic does not compare."""
    found = inspect(conn)
    names: set[tuple[str, str, str | None]] = set()
    for table in (t for t in metadata.tables if found.has_table(t)):
        names.add((table, "pk", found.get_pk_constraint(table)["name"]))
        names |= {(table, "uq", u["name"]) for u in found.get_unique_constraints(table)}
        names |= {(table, "fk", f["name"]) for f in found.get_foreign_keys(table)}
        names |= {(table, "ix", i["name"]) for i in found.get_indexes(table) if "duplicates_constraint" not in i}
    return names


def test_the_code_names_every_revision_in_order() -> None:
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    walked = [script.revision for script in scripts.walk_revisions()]
    assert tuple(reversed(walked)) == REVISIONS
    assert scripts.get_current_head() == HEAD


@pytest.mark.sqlite_only("the 0.1.0 store, a SQLite file")
def test_the_0_1_0_store_upgrades_with_nothing_lost(old_store: Path) -> None:
    db = old_store.parent / "publisher.db"
    before = snapshot(db)
    assert {row[5] for row in before["subscribers"]} == {"confirmed", "pending", "unsubscribed", "bounced"}
    assert before["digests"][0][4] == "done" and {row[4] for row in before["deliveries"]} == {"sent"}
    assert len(before["articles"]) == 46 and before["apscheduler_jobs"]

    upgraded = cli(old_store, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert f"upgraded sqlite:///{db} from revision 0.1.0 (before migrations) to {HEAD}" in upgraded.output
    [backup] = old_store.parent.glob("publisher.db.before-0.1.0-*")
    assert f"backed up the store to {backup}" in upgraded.output
    assert snapshot(backup) == before  # the backup is the store as it was

    after = snapshot(db)
    # An article's body and summary moved to its rendition (0009), under its old content hash.
    assert after.pop("article_renditions") == sorted(
        [(row[0], row[7], row[-2], row[-1]) for row in before["articles"]], key=repr
    )
    assert [row[-1] for row in after["articles"]] == [row[7] for row in after["articles"]]
    after["articles"] = sorted(
        [(*row[:-1], *rendition[2:]) for row, rendition in zip(after["articles"], renditions(db), strict=True)],
        key=repr,
    )
    # Every row: ids, guids, statuses, categories, timestamps, the key (later columns come after
    # the old ones, with their defaults); later tables are new and empty.
    assert {t: [row[: len(rows[0])] for row in after[t]] if rows else after[t] for t, rows in before.items()} == before
    assert {row[9:] for row in after["subscribers"]} == {(None, "weekly", None, None, None)}
    new_tables = ["signup_events", "signup_requests", "mail_events", "suppressions", "source_health",
                  "source_failures", "http_validators", "admin_accounts", "admin_recovery_codes", "admin_sessions",
                  "admin_login_failures", "admin_audit", "used_form_tokens", "send_rates"]  # fmt: skip
    assert {t: rows for t, rows in after.items() if t not in before} == {t: [] for t in new_tables}
    conn = sqlite3.connect(db)
    sql = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
    assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
    conn.close()
    assert "CONSTRAINT pk_subscribers PRIMARY KEY" in sql["subscribers"]  # rebuilt, with names
    assert "CONSTRAINT fk_deliveries_digest_id_digests FOREIGN KEY" in sql["deliveries"]
    assert "CONSTRAINT" not in sql["apscheduler_jobs"]  # APScheduler's table is left alone
    store = Store(f"sqlite:///{db}")
    try:
        with store.engine.connect() as conn2:
            assert schema_differences(conn2) == []
        statuses = {s.email: (s.status, s.categories) for s in store.subscribers()}
    finally:
        store.close()
    assert statuses == {
        "wang@example.org": (SubscriberStatus.CONFIRMED, ("policy", "tech")),
        "li.hua@example.org": (SubscriberStatus.CONFIRMED, ()),
        "pending@example.org": (SubscriberStatus.PENDING, ()),
        "gone@example.org": (SubscriberStatus.UNSUBSCRIBED, ()),
        "bounce@example.org": (SubscriberStatus.BOUNCED, ()),
    }

    # The ledger: sending the window again sends nothing.
    again = cli(old_store, "digest", "send", *WINDOW)
    assert again.exit_code == 0, again.output
    assert "was sent before (digest #1): nothing to send" in again.output
    assert outbox(old_store) == []

    # A link already in a reader's mailbox, signed with the key 0.1.0 kept in the store.
    from publisher.web import create_app

    app = App(load_settings(old_store), clock=lambda: A_DAY_LATER)
    try:
        client = create_app(app).test_client()
        for address, url in LINKS["list_unsubscribe"].items():
            answer = client.post(urlsplit(url).path, data={"List-Unsubscribe": "One-Click"})
            assert answer.status_code == 200, (address, answer.status_code)
            subscriber = app.store.subscriber(address)
            assert subscriber is not None and subscriber.status is SubscriberStatus.UNSUBSCRIBED
    finally:
        app.close()


@pytest.mark.sqlite_only("the 0.1.0 store, a SQLite file")
def test_the_first_build_after_the_upgrade_keeps_the_updated_stamp_of_every_article_left_as_it_was(
    old_store: Path,
) -> None:
    """Revision 0009 changed what an article's content hash is of (its body as the file gives it,
    no longer as rendered); the first build after an upgrade reads every file again (the version
    is in the reading signature). An article whose rendered body is what the old store holds is
    unchanged: it keeps its updated stamp and its rendition, under the new hashes."""
    db = old_store.parent / "publisher.db"
    assert cli(old_store, "db", "upgrade").exit_code == 0
    with sqlite3.connect(db) as conn:
        before = dict(conn.execute("SELECT key, updated FROM articles").fetchall())
    built = cli(old_store, "build")
    assert built.exit_code == 0, built.output
    changed = int(re.search(r"changed\s+(\d+)", built.output).group(1))  # type: ignore[union-attr]
    unchanged = int(re.search(r"unchanged\s+(\d+)", built.output).group(1))  # type: ignore[union-attr]
    with sqlite3.connect(db) as conn:
        after = dict(conn.execute("SELECT key, updated FROM articles").fetchall())
        hashes = conn.execute("SELECT count(*) FROM articles WHERE body_hash = content_hash").fetchone()[0]
        current = conn.execute(
            "SELECT count(*) FROM articles AS a JOIN article_renditions AS r"
            " ON r.article_id = a.id AND r.body_hash = a.body_hash"
        ).fetchone()[0]
    # Most demo files render as 0.1.0 rendered them; the few that 0.2.0 renders otherwise
    # (its GBK text pages) count as changed, as 0.2.0 itself counted them.
    assert changed + unchanged == len(before) and unchanged > 30
    assert sum(1 for key in before if before[key] != after[key]) == changed
    assert hashes == 0 and current == len(before)  # every article on the new hashes, shown as rendered


@pytest.mark.sqlite_only("the 0.1.0 store, a SQLite file")
def test_a_store_behind_is_refused_and_left_alone(old_store: Path) -> None:
    db = old_store.parent / "publisher.db"
    before = snapshot(db)
    for args in (["build"], ["check"], ["subscribers", "list"], ["digest", "send", *WINDOW]):
        refused = cli(old_store, *args)
        assert refused.exit_code == 2, refused.output
        message = " ".join(refused.output.split())
        command = " ".join(args[:2] if args[0] not in ("build", "check") else args)
        assert (
            f"error: `publisher {command}` refused the store at "
            f"sqlite:///{db}: its schema is at revision 0.1.0 (before migrations), this publisher needs revision "
            f"{HEAD}" in message
        ), message
        assert "hint: back up the store, then run `publisher db upgrade`" in message
    assert snapshot(db) == before and outbox(old_store) == []
    status = cli(old_store, "db", "status")
    assert status.exit_code == 1
    assert "store revision: 0.1.0 (before migrations)" in status.output and f"code revision:  {HEAD}" in status.output
    assert "upgrade needed" in status.output


@pytest.mark.sqlite_only("SQLite files made by the test")
def test_a_store_ahead_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "publisher.db"
    config = tmp_path / "publisher.toml"
    config.write_text(fixture_config(db, tmp_path), encoding="utf-8")
    Store(f"sqlite:///{db}").close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE alembic_version SET version_num = '0099'")
    conn.commit()
    conn.close()
    for args in (["build"], ["check"], ["db", "upgrade"], ["run", "--upgrade"]):
        refused = cli(config, *args)
        assert refused.exit_code == 2, refused.output
        message = " ".join(refused.output.split())
        assert f"`publisher {' '.join(args)}` refused the store at sqlite:///{db}" in message
        assert f"its schema is at revision 0099, which this publisher does not know (its newest is {HEAD})" in message
        assert "made by a newer publisher" in message and "hint: install that newer publisher" in message
    status = cli(config, "db", "status")
    assert status.exit_code == 1 and "the store is ahead" in status.output


@pytest.mark.sqlite_only("SQLite files made by the test")
def test_a_store_that_is_not_0_1_0_is_not_stamped(tmp_path: Path) -> None:
    db = tmp_path / "publisher.db"
    config = tmp_path / "publisher.toml"
    config.write_text(fixture_config(db, tmp_path), encoding="utf-8")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE subscribers (id INTEGER PRIMARY KEY, address TEXT)")
    conn.close()
    refused = cli(config, "db", "upgrade")
    assert refused.exit_code == 1
    message = " ".join(refused.output.split())
    assert "has no schema revision and is not a publisher 0.1.0 store: table categories is missing" in message
    assert "table subscribers has columns id, address, 0.1.0 had id, email" in message
    assert not inspect(create_engine(f"sqlite:///{db}")).has_table("alembic_version")


@pytest.mark.sqlite_only("SQLite files made by the test")
def test_a_new_store_is_made_at_head_and_db_status_says_so(tmp_path: Path) -> None:
    db = tmp_path / "var" / "publisher.db"
    config = tmp_path / "publisher.toml"
    config.write_text(fixture_config(db, tmp_path), encoding="utf-8")
    assert "no store yet" in cli(config, "db", "status").output and not db.exists()
    Store(f"sqlite:///{db}").close()
    status = cli(config, "db", "status")
    assert status.exit_code == 0 and f"store revision: {HEAD}" in status.output and "up to date" in status.output
    assert f"is at revision {HEAD}: nothing to upgrade" in cli(config, "db", "upgrade").output
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert schema_differences(conn) == []


@pytest.mark.sqlite_only("SQLite files made by the test")
def test_upgrading_a_store_that_is_not_there_yet_makes_it_folder_and_all(tmp_path: Path) -> None:
    db = tmp_path / "var" / "publisher.db"  # `make run --upgrade` in a new checkout: no var/ yet
    done = migrate.upgrade(f"sqlite:///{db}")
    assert (done.before, done.after, done.backup) == ("none (an empty database)", HEAD, None)
    with create_engine(f"sqlite:///{db}").connect() as conn:
        assert schema_differences(conn) == []


@pytest.mark.sqlite_only("SQLite files made by the test")
def test_db_upgrade_of_a_new_store_says_it_created_it(tmp_path: Path) -> None:
    db = tmp_path / "var" / "publisher.db"
    config = tmp_path / "publisher.toml"
    config.write_text(fixture_config(db, tmp_path), encoding="utf-8")
    result = cli(config, "db", "upgrade")
    assert result.exit_code == 0 and f"created sqlite:///{db} at revision {HEAD}" in result.output, result.output
    assert "upgraded" not in result.output


@pytest.mark.sqlite_only("the 0.1.0 store, a SQLite file")
def test_run_upgrade_upgrades_then_serves_old_links(old_store: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PUBLISHER_SECRET_KEY"}
    out, err = old_store.parent / "run.out", old_store.parent / "run.err"
    code = "import sys; from publisher.cli import main; sys.exit(main())"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", code, "--config", str(old_store), "run", "--upgrade", "--port", str(port)],
            env=env, stdout=stdout, stderr=stderr, cwd=old_store.parent,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while f"serving http://127.0.0.1:{port}/" not in out.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, out.read_text() + err.read_text()
            time.sleep(0.1)
        printed = out.read_text()
        assert re.search(rf"upgraded \S+ from revision 0\.1\.0 \(before migrations\) to {HEAD}\n", printed), printed
        assert printed.index("upgraded") < printed.index("serving")
        link = LINKS["minted"]["wang@example.org"]["unsubscribe_url"]
        if datetime.now(UTC) > datetime.fromisoformat(LINKS["made"]) + timedelta(days=5 * 365 - 1):
            pytest.skip("the 0.1.0 fixture's links have outlived their 5 years: make the fixture anew (its README)")
        answer = requests.post(f"http://127.0.0.1:{port}{urlsplit(link).path}", timeout=10)
        assert answer.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
    store = Store(f"sqlite:///{old_store.parent / 'publisher.db'}")
    try:
        wang = store.subscriber("wang@example.org")
        assert wang is not None and wang.status is SubscriberStatus.UNSUBSCRIBED and wang.status_via == "web"
    finally:
        store.close()


# --- every revision from nothing, on SQLite and PostgreSQL --------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def two_empty_databases(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """URLs of two empty databases: SQLite files, or PostgreSQL databases (conftest)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrated.db'}", f"sqlite:///{tmp_path / 'created.db'}"
    return new_postgres_url(), new_postgres_url()


@pytest.fixture
def postgres_database() -> str:
    return new_postgres_url()


def test_every_revision_from_nothing_gives_the_codes_schema(two_empty_databases: tuple[str, str]) -> None:
    migrated, created = two_empty_databases
    engine = migrate.migration_engine(migrated)
    with engine.begin() as conn:
        command.upgrade(migrate.alembic_config(conn), "0001")
        made = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
        baseline = {t: sorted(c["name"] for c in inspect(conn).get_columns(t)) for t in made}
        command.upgrade(migrate.alembic_config(conn), "head")
    assert baseline == {t: sorted(c) for t, c in migrate.BASELINE.items()}  # what `db upgrade` checks is 0001
    with engine.connect() as conn:
        assert schema_differences(conn) == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD
        migrated_names = constraint_names(conn)
    engine.dispose()
    # A new store (create_all, stamped at head) has the same schema, constraint names included.
    Store(created).close()
    engine = create_engine(created)
    with engine.connect() as conn:
        assert schema_differences(conn) == []
        assert constraint_names(conn) == migrated_names
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD
    engine.dispose()
    assert ("subscribers", "uq", "uq_subscribers_email_key") in migrated_names


@pytest.mark.postgresql_only("copies the 0.1.0 store into PostgreSQL")
def test_a_0_1_0_store_on_postgresql_upgrades_with_nothing_lost(postgres_database: str, tmp_path: Path) -> None:
    # 0.1.0's schema as 0.1.0 made it on PostgreSQL (its own constraint names), with the
    # fixture's rows in it, and no alembic_version.
    engine = migrate.migration_engine(postgres_database)
    with engine.begin() as conn:
        command.upgrade(migrate.alembic_config(conn), "0001")
        conn.execute(text("DROP TABLE alembic_version"))
        assert ("categories", "pk", "categories_pkey") in constraint_names(conn)
    source = create_engine(f"sqlite:///file:{FIXTURE / 'publisher.db'}?mode=ro&uri=true")
    rows: dict[str, list[dict[str, Any]]] = {}
    columns: dict[str, list[Column[Any]]] = {}
    old_tables = [table for table in metadata.sorted_tables if table.name in migrate.BASELINE]
    with source.connect() as src, engine.begin() as dst:
        for table in old_tables:
            old = Table(table.name, MetaData(), autoload_with=dst)  # 0.1.0's columns, not today's
            columns[table.name] = [c for c in table.c if c.name in old.c]
            typed = [table.c[c.name] if c.name in table.c else column(c.name) for c in old.c]
            query = select(*typed).select_from(table).order_by(*table.primary_key)
            rows[table.name] = [dict(r._mapping) for r in src.execute(query)]
            if rows[table.name]:
                dst.execute(old.insert(), rows[table.name])
    source.dispose()
    engine.dispose()

    config = tmp_path / "publisher.toml"
    config.write_text(
        fixture_config(tmp_path / "unused.db", tmp_path).replace(
            f"sqlite:///{tmp_path / 'unused.db'}", postgres_database
        ),
        encoding="utf-8",
    )
    assert "refused the store" in cli(config, "build").output
    upgraded = cli(config, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert f"from revision 0.1.0 (before migrations) to {HEAD}" in upgraded.output
    assert "backed up" not in upgraded.output  # PostgreSQL: pg_dump is the operator's (docs/operations.md)

    check = create_engine(postgres_database)
    with check.connect() as conn:
        for table in old_tables:
            query = select(*columns[table.name]).order_by(*table.primary_key)
            now = [dict(r._mapping) for r in conn.execute(query)]
            kept = [{c.name: row[c.name] for c in columns[table.name]} for row in rows[table.name]]
            assert now == kept, table.name
        # An article's body and summary moved to its rendition (0009), under its old content hash.
        r = article_renditions_table.c
        moved = conn.execute(select(r.article_id, r.body_hash, r.summary, r.content_html).order_by(r.article_id))
        assert [tuple(row) for row in moved] == [
            (a["id"], a["content_hash"], a["summary"], a["content_html"]) for a in rows["articles"]
        ]
        assert schema_differences(conn) == []
        names = constraint_names(conn)
    check.dispose()
    assert ("categories", "pk", "pk_categories") in names and ("categories", "uq", "uq_categories_slug") in names
    assert ("deliveries", "fk", "fk_deliveries_digest_id_digests") in names
    again = cli(config, "digest", "send", *WINDOW)
    assert again.exit_code == 0 and "nothing to send" in again.output, again.output


@pytest.mark.sqlite_only("SQLite files made by the test")
def test_opening_a_store_imports_no_alembic(tmp_path: Path) -> None:
    code = (
        "import sys; from publisher.store import Store; "
        f"Store('sqlite:///{tmp_path / 'a.db'}').close(); Store('sqlite:///{tmp_path / 'a.db'}').close(); "
        "print('alembic' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.sqlite_only("the 0.1.0 store, a SQLite file")
def test_upgrading_a_0_1_0_store_made_readable_by_all_makes_it_private(old_store: Path) -> None:
    """0.1.0 made its store 0644, the signing key inside: the upgrade closes it."""
    db = old_store.parent / "publisher.db"
    os.chmod(db, 0o644)
    result = cli(old_store, "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert db.stat().st_mode & 0o777 == 0o600


def test_0004_moves_the_http_validators_out_of_meta(two_empty_databases: tuple[str, str]) -> None:
    url, _unused = two_empty_databases
    news = "https://www.example.org/news/list_1.html"
    feed = "http://127.0.0.1:8001/feed.xml"
    rows = {
        f"http:site:{news}": json.dumps({"ETag": '"a1"', "Last-Modified": "Tue, 24 Nov 2026 08:00:00 GMT"}),
        f"http:127.0.0.1/feed.xml:{feed}": json.dumps({"Last-Modified": "Wed, 25 Nov 2026 08:00:00 GMT"}),
        "http:site:https://www.example.org/broken": "not json",  # a cache: dropped, read in full next time
        "last_ingest": json.dumps({"at": "2026-11-30T00:45:12+00:00"}),
    }
    engine = migrate.migration_engine(url)
    with engine.begin() as conn:
        command.upgrade(migrate.alembic_config(conn), "0003")
        for key, value in rows.items():
            conn.execute(text("INSERT INTO meta (key, value) VALUES (:key, :value)"), {"key": key, "value": value})
        command.upgrade(migrate.alembic_config(conn), "head")
    with engine.connect() as conn:
        meta = dict(conn.execute(text("SELECT key, value FROM meta")).all())
        moved = sorted(conn.execute(text("SELECT source, url, etag, last_modified FROM http_validators")).all())
    engine.dispose()
    assert meta == {"last_ingest": rows["last_ingest"]}
    assert moved == [
        ("127.0.0.1/feed.xml", feed, None, "Wed, 25 Nov 2026 08:00:00 GMT"),
        ("site", news, '"a1"', "Tue, 24 Nov 2026 08:00:00 GMT"),
    ]
    store = Store(url)
    try:
        assert store.http_validators("site", news) == {"ETag": '"a1"', "Last-Modified": "Tue, 24 Nov 2026 08:00:00 GMT"}
    finally:
        store.close()


def test_0007_keeps_the_consoles_accounts_and_starts_their_trust_at_zero(two_empty_databases: tuple[str, str]) -> None:
    url, _unused = two_empty_databases
    engine = migrate.migration_engine(url)
    with engine.begin() as conn:
        command.upgrade(migrate.alembic_config(conn), "0006_admin")
        conn.execute(
            text(
                "INSERT INTO admin_accounts (email, role, password_hash, totp_enabled, disabled, failed_logins,"
                " created_at) VALUES ('admin@example.org', 'admin', 'a hash', false, false, 3, '2026-12-01 08:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO admin_login_failures (email, network, at)"
                " VALUES ('admin@example.org', '198.51.100.0/24', '2026-12-01 08:00:00')"
            )
        )
        command.upgrade(migrate.alembic_config(conn), "head")
    engine.dispose()
    store = Store(url)
    try:
        account = store.account_by_email("admin@example.org")
        assert account is not None and (account.failed_logins, account.trust_generation) == (3, 0)
        store.end_sessions(account.id)
        assert store.account(account.id).trust_generation == 1  # type: ignore[union-attr]
        since = datetime(2026, 12, 1, tzinfo=UTC)
        assert store.login_failures(network="198.51.100.0/24", since=since) == 1
        assert store.login_failures(device="0" * 64, since=since) == 0
    finally:
        store.close()


def test_0008_keeps_every_reader_on_the_weekly_digest_in_the_sites_script(two_empty_databases: tuple[str, str]) -> None:
    url, _unused = two_empty_databases
    engine = migrate.migration_engine(url)
    with engine.begin() as conn:
        command.upgrade(migrate.alembic_config(conn), "0007_device_trust")
        conn.execute(
            text(
                "INSERT INTO subscribers (email, email_key, name, categories, status, status_at, status_via,"
                " created_at) VALUES ('Li@example.org', 'li@example.org', '李', '[]', 'active',"
                " '2026-12-01 08:00:00', 'form', '2026-12-01 08:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO digests (key, window_start, window_end, status, created_at)"
                " VALUES ('2026-11-23/2026-11-30', '2026-11-23 00:00:00', '2026-11-30 00:00:00', 'done',"
                " '2026-11-30 00:00:00')"
            )
        )
        command.upgrade(migrate.alembic_config(conn), "head")
    with engine.connect() as conn:
        reader = conn.execute(text("SELECT script, cadence, consent_text, consent_at FROM subscribers")).one()
        digest = conn.execute(text("SELECT cadence FROM digests")).one()
    engine.dispose()
    assert tuple(reader) == (None, "weekly", None, None)  # no consent was recorded before: none is made up
    assert tuple(digest) == ("weekly",)


def test_0010_downgrades_and_upgrades_again_with_the_deliveries_kept(two_empty_databases: tuple[str, str]) -> None:
    """Fan-out's revision both ways with a digest's deliveries in the store: the downgrade drops
    the chunk column and, on PostgreSQL, Procrastinate's tables; the upgrade brings both back."""
    url, _unused = two_empty_databases
    engine = migrate.migration_engine(url)
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        command.upgrade(migrate.alembic_config(conn), "0010_fan_out")
        conn.execute(
            text(
                "INSERT INTO digests (key, window_start, window_end, status, created_at, cadence)"
                " VALUES ('2026-11-23/2026-11-30', '2026-11-23 00:00:00', '2026-11-30 00:00:00', 'sending',"
                " '2026-11-30 00:00:00', 'weekly')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO deliveries (digest_id, email_key, message_id, status, attempts, updated_at, chunk)"
                " SELECT id, 'li@example.org', '<1@example.org>', 'pending', 0, '2026-11-30 00:00:00', 0"
                " FROM digests"
            )
        )
        command.downgrade(migrate.alembic_config(conn), "0009_renditions")
        assert "chunk" not in {c["name"] for c in inspect(conn).get_columns("deliveries")}
        assert not [t for t in inspect(conn).get_table_names() if t.startswith("procrastinate_")]
        command.upgrade(migrate.alembic_config(conn), "head")
        jobs_table = [t for t in inspect(conn).get_table_names() if t == "procrastinate_jobs"]
        delivery = conn.execute(text("SELECT email_key, status, chunk FROM deliveries")).one()
    engine.dispose()
    assert jobs_table == (["procrastinate_jobs"] if postgres else [])
    assert tuple(delivery) == ("li@example.org", "pending", None)


def test_0012_and_0008_downgrade_without_giving_a_request_id_again(two_empty_databases: tuple[str, str]) -> None:
    """A confirmation link names its request by id. 0012's downgrade deletes the requests whose
    address was confirmed (older code would let their links confirm again, with the request's
    choices), and SQLite drops a column by copying the table: the copy still never gives an id
    that was given before, even the newest's, pruned."""
    url, _unused = two_empty_databases
    engine = migrate.migration_engine(url)
    columns = "(email_key, email, name, categories, created_at)"
    request = f"INSERT INTO signup_requests {columns} VALUES ('a@example.org', 'a@example.org', '', '[]', '2026-12-01')"
    with engine.begin() as conn:
        command.upgrade(migrate.alembic_config(conn), "head")
        for _ in range(3):
            conn.execute(text(request))
        conn.execute(text("UPDATE signup_requests SET confirmed_at = '2026-12-02' WHERE id = 2"))
        conn.execute(text("DELETE FROM signup_requests WHERE id = 3"))  # pruned
        command.downgrade(migrate.alembic_config(conn), "0011_send_rates")
        assert "confirmed_at" not in {c["name"] for c in inspect(conn).get_columns("signup_requests")}
        kept = list(conn.execute(text("SELECT id FROM signup_requests")).scalars())
        conn.execute(text(request))
        after_0012 = conn.execute(text("SELECT max(id) FROM signup_requests")).scalar_one()
        conn.execute(text("DELETE FROM signup_requests WHERE id = 4"))
        command.downgrade(migrate.alembic_config(conn), "0007_device_trust")
        conn.execute(text(request))
        after_0008 = conn.execute(text("SELECT max(id) FROM signup_requests")).scalar_one()
        command.upgrade(migrate.alembic_config(conn), "head")
        differences = schema_differences(conn)
    engine.dispose()
    assert (kept, after_0012, after_0008, differences) == ([1], 4, 5, [])
