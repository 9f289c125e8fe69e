"""What the PostgreSQL benches share (bench/fanout_plan.py, bench/scale.py): the admin URL, a
throwaway database (optionally a copy of a template database), the week of a 13-category news
site as Markdown files, the configuration lines of a site on that store, and a process's peak
RSS read from /proc.

The admin URL is $PUBLISHER_TEST_POSTGRES (`postgresql+psycopg://postgres@host/postgres`), else
the server on 127.0.0.1:5432 (trust auth).
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import corpus  # noqa: E402  (bench/ is not a package)

ADMIN = os.environ.get("PUBLISHER_TEST_POSTGRES") or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def no_postgres() -> str:
    """Why no PostgreSQL answers at ADMIN, "" when one does."""
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(ADMIN)
        try:
            with engine.connect() as conn:
                conn.execute(text("select 1"))
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 (any failure: no server to bench on)
        return (f"no PostgreSQL at {ADMIN.split('@')[-1]} ({type(exc).__name__}): start one there, or set "
                "$PUBLISHER_TEST_POSTGRES to an admin URL (postgresql+psycopg://postgres@host/postgres)")  # fmt: skip
    return ""


def throwaway_database(template: str | None = None) -> tuple[str, Any]:
    """A new database (a copy of `template`'s when given): its URL, and the admin engine that drops it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"publisher_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    copy = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    return make_url(ADMIN).set(database=name).render_as_string(hide_password=False), admin


def drop(url: str, admin: Any) -> None:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def write_content(content: Path, articles: int) -> None:
    """`articles` articles of bench/corpus.py spread over the last six days, one folder a category."""
    corpus.write_week(content, articles)


def site_lines(folder: Path, url: str, content: Path) -> list[str]:
    """The configuration of the bench's site on the store `url`: its 13 categories, the week's
    articles in `content` as its one source; no [mail] or [fanout] (the caller adds its own)."""
    lines = [
        "[site]", 'title = "高新院"', 'url = "https://www.example.org"', 'timezone = "Asia/Shanghai"',
        "[output]", f'dir = "{folder / "public"}"',
        "[store]", f'url = "{url}"',
        "[text]", 'convert = "t2s"',
    ]  # fmt: skip
    for name in corpus.CATEGORIES:
        lines += ["[[categories]]", f'name = "{name}"']
    return lines + ["[[sources]]", 'type = "files"', f'path = "{content}"', 'name = "week"']


def peak_mb(status: str) -> float:
    """The peak RSS (VmHWM) in a /proc/<pid>/status text, in MB; 0 when it has none."""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
