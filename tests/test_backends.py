"""The suite's PostgreSQL run finds a server, or starts one, or says why it cannot (tests/backends.py)."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ONE_TEST = "tests/test_store.py::test_bulk_inserted_articles_read_back_and_sort_as_written"

pytestmark = pytest.mark.postgresql_only("how the PostgreSQL run finds its server")


def run_on_postgresql(server: str, basetemp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """One store test in a pytest of its own on PostgreSQL, with $PUBLISHER_TEST_POSTGRES=`server`.

    Its temporary folders go in `basetemp` (a folder of the calling test's). With pytest's
    default it would share pytest-of-<user> in the temporary folder with every run, and as its
    interpreter exits, after printing its result, delete every finished run's folder but the
    newest three: after the SQLite run, that run's whole tree (46,000 files, 4 s on an idle
    machine). A CI run on a slow machine saw this child print its result, then outlast 120 s."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_TEST_")}
    environment |= {"PUBLISHER_TEST_POSTGRES": server, **env}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "--backend", "postgresql",
         "--basetemp", str(basetemp), ONE_TEST, "-rs"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_with_no_server_answering_a_throwaway_one_is_started_and_removed(tmp_path: Path) -> None:
    if not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"):
        why = "no PostgreSQL binaries (/usr/lib/postgresql/*/bin/pg_ctl): `make test` installs them"
        if os.environ.get("PUBLISHER_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here (PUBLISHER_TEST_REQUIRE_POSTGRES=1): {why}")
        pytest.skip(why)
    run = run_on_postgresql("throwaway", tmp_path / "run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout and "PostgreSQL: a throwaway server (" in run.stdout, run.stdout
    named = re.search(r"PostgreSQL: a throwaway server \(.*, in (/\S+publisher-tests-pg-[^)\s]+)\)", run.stdout)
    assert named is not None, run.stdout  # the run's summary names its server's folder
    assert not Path(named[1]).exists()  # its folder removed, the server stopped


def test_a_server_that_does_not_answer_skips_saying_why_or_fails_where_required(tmp_path: Path) -> None:
    nowhere = "postgresql+psycopg://postgres@127.0.0.1:9/postgres"  # the discard port: refused
    skipped = run_on_postgresql(nowhere, tmp_path / "skipped")
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "1 skipped" in skipped.stdout
    assert "$PUBLISHER_TEST_POSTGRES (postgresql+psycopg://postgres@127.0.0.1:9/postgres) does not answer" in (
        skipped.stdout
    )
    required = run_on_postgresql(nowhere, tmp_path / "required", PUBLISHER_TEST_REQUIRE_POSTGRES="1")
    assert required.returncode == 1 and "1 error" in required.stdout, required.stdout  # failed in its setup
    assert "PostgreSQL is required here (PUBLISHER_TEST_REQUIRE_POSTGRES=1)" in required.stdout
