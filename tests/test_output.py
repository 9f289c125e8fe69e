"""The output folder's files rendered and written on a build's worker processes (once they run,
the feeds' jobs go there: publisher.output, parallel.Workers.run_in_order) are the files a
build without workers writes, byte for byte, listed alike; a file a worker cannot write fails
the build as one the build's own process cannot write."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Site
from publisher import parallel
from publisher.errors import OutputError
from publisher.feeds import write_if_changed
from publisher.store import Store


def with_content(site: Site) -> Site:
    """Both scripts (`[feeds] scripts`: converted articles), every category, an article in two."""
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace("max_items = 50\n", 'max_items = 50\nscripts = ["zh-Hant"]\n'), "utf-8")
    for n in range(30):
        folder = ("tech", "policy", "高新院新闻")[n % 3]
        site.article(f"{folder}/{n:02d}.md", f"第{n}篇 高新区", date=f"2026-05-{1 + n % 28:02d} 10:{n:02d}",
                     body=f"区域经济**发展**第{n}段。\n\n- 一\n- 二\n")  # fmt: skip
    site.article("policy/both.md", "两类", categories="[政策解读, 科技创新]", summary="给定的摘要")
    return site


def every_file(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_workers_write_the_bytes_a_build_without_workers_writes(
    make_site: Callable[..., Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    alone, pooled = with_content(make_site()), with_content(make_site())
    monkeypatch.setenv("PUBLISHER_WORKERS", "1")  # no pool: every file rendered in the build's process
    here = alone.build()
    monkeypatch.setenv("PUBLISHER_WORKERS", "2")  # the bodies' renders start the pool: the files go there
    there = pooled.build()
    assert not here.problems and not there.problems
    assert there.written_paths == here.written_paths and len(here.written_paths) == 2 * (4 * 4 - 1 + 2)
    assert (there.feeds_written, there.feeds_unchanged) == (here.feeds_written, here.feeds_unchanged)
    assert every_file(pooled.out) == every_file(alone.out)
    assert "兩類" in (pooled.out / "zh-hant" / "tech" / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_file_that_cannot_be_written_fails_the_build_naming_it(
    site: Site, workers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_content(site)
    (site.out / "tech" / "rss.xml").mkdir(parents=True)  # a folder where the feed goes
    monkeypatch.setenv("PUBLISHER_WORKERS", workers)
    with pytest.raises(OutputError) as raised:
        site.build()
    assert raised.value.path == site.out / "tech" / "rss.xml"
    assert str(raised.value).startswith(f"cannot write {site.out / 'tech' / 'rss.xml'}: Is a directory")
    assert "keep their last good content" in str(raised.value)
    assert not (site.out / "index.html").exists()  # the site's pages come last


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_file_where_a_category_folder_goes_fails_the_build_naming_it(
    site: Site, workers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a raw NotADirectoryError from the comparison with the bytes already there: the file
    the build could not write, and what to do about the one in its way."""
    with_content(site)
    site.out.mkdir(parents=True)
    (site.out / "tech").write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("PUBLISHER_WORKERS", workers)
    with pytest.raises(OutputError) as raised:
        site.build()
    assert isinstance(raised.value.path, Path) and raised.value.path.parent == site.out / "tech"
    assert str(raised.value).startswith(f"cannot write {raised.value.path}: File exists")
    hint = f"a file stands at {raised.value.path} or at a folder above it: move or remove it"
    assert hint in str(raised.value)
    assert (site.out / "tech").read_text(encoding="utf-8") == "not a folder"


def test_a_folder_of_the_feeds_very_size_where_it_goes_is_an_output_error_from_the_comparison(tmp_path: Path) -> None:
    """The comparison with the bytes already there reads what has the feed's size: a folder of
    that size cannot be read, and says so as the write would."""
    path = tmp_path / "rss.xml"
    path.mkdir()
    with pytest.raises(OutputError) as raised:
        write_if_changed(path, b"x" * path.stat().st_size)
    assert raised.value.path == path and "Is a directory" in str(raised.value)
    assert f"a folder is where {path} goes: move or remove it" in str(raised.value)
    assert path.is_dir()


def test_an_output_error_crosses_from_a_worker_whole() -> None:
    """Raised on a worker, it is pickled to the build: made again from what made it (without
    that, unpickling it broke the pool, and every job left was done again in the build)."""
    import errno
    import os
    import pickle

    made = OutputError(Path("/srv/public/rss.xml"), OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "kept")
    again = pickle.loads(pickle.dumps(made))
    assert (type(again), str(again), again.path, again.hint) == (OutputError, str(made), made.path, made.hint)


class _Files:
    """A job of given files (write_files only asks a job for its files)."""

    def __init__(self, files: list[tuple[str, bytes]]) -> None:
        self.files = files

    def render(self) -> list[tuple[str, bytes]]:
        return self.files


def test_a_job_done_again_after_its_worker_died_counts_every_file_written(tmp_path: Path) -> None:
    """Its worker may have written some of its files before it died: their bytes are the same
    now, yet they changed, and WebSub's hub must hear of them."""
    from publisher.output import write_files

    job = _Files([("a/rss.xml", b"<rss/>"), ("a/atom.xml", b"<feed/>")])
    assert write_files(tmp_path, job) == (["a/rss.xml", "a/atom.xml"], [])  # type: ignore[arg-type]
    assert write_files(tmp_path, job) == ([], ["a/rss.xml", "a/atom.xml"])  # type: ignore[arg-type]
    assert write_files(tmp_path, job, again=True) == (["a/rss.xml", "a/atom.xml"], [])  # type: ignore[arg-type]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(("articles", "on_a_thread"), [(31, False), (100, True)])
def test_the_log_is_copied_on_a_thread_only_while_the_workers_run_already(
    make_site: Callable[..., Site], monkeypatch: pytest.MonkeyPatch, articles: int, on_a_thread: bool
) -> None:
    """A pool started beside a running thread is not forked (parallel._context): an ingest too
    small for the workers leaves the copy to its last commit, so that the renders of its bodies
    fork theirs."""
    site = make_site()
    for n in range(articles):
        site.article(f"tech/{n:03d}.md", f"第{n}篇", date=f"2026-05-{1 + n % 28:02d} 10:{n % 60:02d}")
    asked: list[bool] = []
    checkpoint_soon = Store.checkpoint_soon

    def spied(store: Store) -> None:
        asked.append(True)
        checkpoint_soon(store)

    monkeypatch.setattr(Store, "checkpoint_soon", spied)
    threads_at_start: list[int] = []  # each time a pool starts
    chosen = parallel._context

    def counted() -> multiprocessing.context.BaseContext:
        threads_at_start.append(threading.active_count())
        return chosen()

    monkeypatch.setattr(parallel, "_context", counted)
    monkeypatch.setenv("PUBLISHER_WORKERS", "2")
    before = threading.active_count()
    assert not site.build().problems
    assert bool(asked) is on_a_thread
    assert threads_at_start and set(threads_at_start) == {before}  # no checkpoint beside a fork
