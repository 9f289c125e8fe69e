"""The bundled demo (what `make run` builds): every feed valid, every article through."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
import requests
from test_smtp import free_port

from conftest import ROOT, Service
from feedcheck import assert_json_feed, assert_matches_atom_schema, atom_schema, parse_with_feedparser
from publisher.app import App
from publisher.config import validate
from publisher.model import BuildReport


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuildReport]:
    out = tmp_path_factory.mktemp("demo")
    raw = tomllib.loads((ROOT / "config" / "publisher.toml").read_text(encoding="utf-8"))
    raw["output"]["dir"] = str(out / "public")
    raw["store"]["url"] = f"sqlite:///{out / 'publisher.db'}"
    raw["sources"][0]["path"] = str(ROOT / "demo" / "content")
    app = App(validate(raw))
    report = BuildReport()
    try:
        app.build(report)
    finally:
        app.close()
    return out / "public", report


def test_every_demo_article_goes_through(demo: tuple[Path, BuildReport]) -> None:
    _public, report = demo
    assert report.skipped == 0, report.problems
    assert report.new >= 40
    assert report.feeds_written == 14 * 3 + 13 + 2  # the feeds, the 13 category pages, index.html and feeds.opml


def test_every_demo_feed_parses(demo: tuple[Path, BuildReport]) -> None:
    public, report = demo
    for path in sorted(public.rglob("*.xml")):
        parsed = parse_with_feedparser(path.read_bytes())
        assert parsed.entries, path
    for path in sorted(public.rglob("feed.json")):
        assert assert_json_feed(path.read_bytes())["items"], path
    site = parse_with_feedparser((public / "rss.xml").read_bytes())
    assert len(site.entries) == min(report.new, 50)


def test_every_demo_atom_feed_matches_the_schema(demo: tuple[Path, BuildReport]) -> None:
    schema = atom_schema()
    if schema is None:
        pytest.skip("../shared/atom.rnc is not in this checkout (set ATOM_RNC to use another copy)")
    for path in sorted(demo[0].rglob("atom.xml")):
        assert_matches_atom_schema(path.read_bytes(), schema)


def test_demo_text_is_cleaned(demo: tuple[Path, BuildReport]) -> None:
    text = "".join(p.read_text(encoding="utf-8") for p in demo[0].rglob("*.xml"))
    for gone in ("(qū)", "(zhǎng)", "高新區", "<script", "onclick", "javascript:", "相关文章推荐", "點擊"):
        assert gone not in text.replace("&lt;", "<"), gone
    for kept in ("人工智能(AI)", "(2026年)", "GDP(国内生产总值)"):
        assert kept in text, kept


def test_make_runs_service_serves_the_demo_feeds_and_pages(tmp_path: Path) -> None:
    """What `make run` starts, `publisher --config config/publisher.toml run`, from a copy of the
    checkout's config and demo content (on a free port instead of 8080)."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "demo", tmp_path / "demo")
    service = Service(tmp_path / "config" / "publisher.toml", tmp_path, free_port())
    try:
        service.wait_until_serving()
        service.wait_until_built()
        answers = {path: requests.get(service.base + path, timeout=10) for path in ("/", "/rss.xml", "/subscribe")}
        health = service.health().json()
    finally:
        code = service.stop()
    assert code == 0, service.output()
    assert all(r.status_code == 200 for r in answers.values()), {p: r.status_code for p, r in answers.items()}
    assert answers["/rss.xml"].headers["Content-Type"].startswith("application/rss+xml")
    assert "/subscribe" in answers["/"].text and 'name="csrf"' in answers["/subscribe"].text
    assert health["status"] == "ok" and health["last_ingest"]["new"] >= 40 and health["scheduler"]["state"] == "running"
    assert "mail goes to var/outbox/" in service.stdout.read_text()
