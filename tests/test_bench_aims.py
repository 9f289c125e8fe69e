"""The parts of `make bench` that judge issue 16's aims: Hugo, the cold build's peer, reads the
corpus's dates right (bench/hugo_ref.py), and the summary judges only this run's figures and says
whether the aims held in three consecutive runs (bench/summary.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def bench_module(name: str) -> ModuleType:
    """A bench/ script as a module (bench/ is not a package; its scripts import each other)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def small_corpus(folder: Path, n: int) -> Path:
    corpus = bench_module("corpus")
    content = folder / "content"
    for i in range(n):
        category, text = corpus.make_article(i)
        (content / category).mkdir(parents=True, exist_ok=True)
        (content / category / f"{i:06d}.md").write_text(text, encoding="utf-8")
    return content


@pytest.mark.skipif(shutil.which("hugo") is None, reason="hugo is not installed (Debian: apt-get install hugo)")
def test_hugo_writes_a_feed_per_category_with_the_front_matter_dates(tmp_path: Path) -> None:
    hugo_ref = bench_module("hugo_ref")
    hugo = shutil.which("hugo")
    assert hugo is not None
    content = small_corpus(tmp_path, 300)  # every category has articles, the busiest more than 5

    def build(site: Path) -> list[str]:
        out = tmp_path / f"{site.name}-public"
        subprocess.run(hugo_ref.command(hugo, site, content, out, tmp_path / "cache"), check=True)
        return list(hugo_ref.check_output(out, content, max_items=5))

    site = hugo_ref.write_site(tmp_path / "site", max_items=5)
    assert build(site) == []
    # The check can fail: dates read in UTC instead of the site's Asia/Shanghai ...
    utc = hugo_ref.write_site(tmp_path / "utc", max_items=5, timezone="UTC")
    assert any("pubDate" in p and "front matter" in p for p in build(utc))
    # ... and articles not sorted by their dates.
    unsorted = hugo_ref.write_site(tmp_path / "unsorted", max_items=5)
    layout = unsorted / "layouts" / "_default" / "rss.xml"
    layout.write_text(layout.read_text().replace("$pages.ByDate.Reverse", "$pages.ByTitle"))
    assert any("newest first" in p or "pubDate" in p for p in build(unsorted))


@pytest.fixture
def summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/summary.py writing and reading under tmp_path instead of bench/out."""
    module = bench_module("summary")
    monkeypatch.setattr(module, "OUT_DIR", tmp_path)
    monkeypatch.setattr(module, "STARTED", tmp_path / "bench-started.json")
    monkeypatch.setattr(module, "HISTORY", tmp_path / "history.jsonl")
    monkeypatch.setattr(module, "SOURCES", {k: tmp_path / v.name for k, v in module.SOURCES.items()})
    return module


def write_results(folder: Path, *, cold_10k: float = 0.9, digest: float = 0.85) -> None:
    def aim(key: str, ratio: float, ok: bool) -> dict[str, object]:
        return {"key": key, "name": key, "result": "PASS" if ok else "FAIL", "ratio": ratio, "detail": ""}

    aims = [aim("cold-10k", cold_10k, cold_10k <= 1), aim("cold-100k", 0.95, True), aim("peak-100k", 0.8, True)]
    (folder / "results.json").write_text(json.dumps({"aims": [*aims, aim("plus-one", 1.2, True)]}))
    mail = {"rate_ratio": digest, "memory_ratio": 1.01, "subscribers": 10000, "memory_subscribers": [2000, 100000]}
    (folder / "mail.json").write_text(json.dumps(mail))
    (folder / "serving.json").write_text(json.dumps({"nginx": True, "ratio_304": 0.03, "ratio_200_gzip": 4.9}))


def make_bench(summary: ModuleType, folder: Path, capsys: pytest.CaptureFixture[str], **figures: float) -> str:
    """One `make bench` run as the Makefile does it: --start, the benches' files, the summary."""
    assert summary.main(["--start"]) == 0
    started = json.loads((folder / "bench-started.json").read_text())
    started["epoch"] -= 10 * len(summary.read_history())  # a new start for each run, before its files
    (folder / "bench-started.json").write_text(json.dumps(started))
    write_results(folder, **figures)
    capsys.readouterr()
    assert summary.main([]) == 0
    return capsys.readouterr().out


def test_the_aims_held_only_when_all_four_passed_in_each_of_the_last_three_runs(
    summary: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = make_bench(summary, tmp_path, capsys)
    assert "PASS    aim 4" in out and "documented: nginx in front" in out  # the 304 is below 0.5
    assert "held in three consecutive runs: no (only 1 run recorded)" in out
    make_bench(summary, tmp_path, capsys)
    assert "held in three consecutive runs: yes" in make_bench(summary, tmp_path, capsys)
    out = make_bench(summary, tmp_path, capsys, cold_10k=1.1)
    assert "FAIL    aim 1" in out and "held in three consecutive runs: no" in out
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 4
    assert summary.main([]) == 0  # the same run summarised again: its line is updated, not added
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 4


def test_a_bench_that_did_not_run_this_time_is_not_judged_on_old_figures(
    summary: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_results(tmp_path, digest=0.9)
    old = (tmp_path / "mail.json").stat().st_mtime - 3600
    assert summary.main(["--start"]) == 0
    write_results(tmp_path, digest=0.9)
    os.utime(tmp_path / "mail.json", (old, old))  # the mail bench left last hour's file
    capsys.readouterr()
    summary.main([])
    out = capsys.readouterr().out
    assert "skipped aim 3" in out and "the mail bench did not run" in out and "before this run" in out
    assert "PASS    aim 2" in out
    (tmp_path / "mail.json").unlink()
    summary.main([])
    assert "skipped aim 3" in capsys.readouterr().out
