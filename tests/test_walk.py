"""The files source's walk: the same listings, digests, items and problems whether a folder is
stat'ed in this process or in chunks on the build's workers (sources/walk.py)."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from conftest import Site
from publisher.model import Deferred, Folder, ItemProblem, Unchanged
from publisher.normalize import CategoryIndex, TextRules
from publisher.parallel import Workers
from publisher.sources import Fetched, FolderFingerprints
from publisher.sources.files import CONTENT_SUFFIXES, FilesSource
from publisher.sources.walk import (
    Listing,
    WalkedFolder,
    WalkPool,
    stat_in_worker,
    stat_names,
    walk,
    walk_ahead,
)
from publisher.text import is_utf8

PARENT = os.getppid()  # the "build's process" a walk run here watches: this one's parent, alive throughout
LINUX = sys.platform == "linux"  # a file system that takes any bytes (tabs, newlines, GBK) in names


def digest_as_stored_before(files: list[tuple[str, str]]) -> str:
    """The folder digest as files.py computed it before the walk moved to walk.py (the stored
    digests of every site are of this kind), kept here word for word."""
    listing = "\n".join([f"{name}\t{fingerprint}" for name, fingerprint in files])
    return hashlib.blake2b(listing.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Workers]:
    monkeypatch.setenv("PUBLISHER_WORKERS", "2")  # whatever the machine's cores
    shared = Workers(CategoryIndex([]), TextRules(), "https://x.org")
    try:
        yield shared
    finally:
        shared.close()


def odd_tree(root: Path) -> Path:
    """Every kind of name and file the walk treats apart, and folders big enough to be cut
    into several chunks when a folder of 4 files goes to the workers."""
    content = root / "content"
    for folder, count in (("tech", 9), ("policy", 4), ("archive", 1), ("tech/sub/deeper", 5), ("empty", 0)):
        (content / folder).mkdir(parents=True, exist_ok=True)
        for n in range(count):
            (content / folder / f"{n:02d}.md").write_text("x" * n, encoding="utf-8")
    tech = content / "tech"
    for name in (".hidden.md", "_partial.md", "notes.docx", "UPPER.MD", "页面.txt", "index.HTML"):
        (tech / name).write_text("y", encoding="utf-8")
    (tech / "linked.md").symlink_to(content / "archive" / "00.md")  # a link to a file is listed
    (tech / "loop").symlink_to(content, target_is_directory=True)  # a link to a folder is not followed
    (tech / "self.md").symlink_to("self.md")  # cannot be looked at: listed as unreadable
    (tech / "dangling.md").symlink_to("nowhere.md")  # a link to nothing is no file
    if LINUX:
        (tech / "tab\tand\nnewline.md").write_text("z", encoding="utf-8")
        (tech / os.fsdecode("政策.md".encode("gbk"))).write_text("gbk", encoding="utf-8")
        gbk_folder = content / os.fsdecode("高新".encode("gbk"))
        gbk_folder.mkdir()
        (gbk_folder / "in-gbk-folder.md").write_text("w", encoding="utf-8")
    return content


def listings(
    root: Path, pool: WalkPool | None = None, parallel_from: int = 4, ahead: Sequence[WalkedFolder] = ()
) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for folder, prefix, listing in walk(str(root), CONTENT_SUFFIXES, pool, parallel_from, ahead):
        assert isinstance(listing, Listing)
        files = listing.files()
        assert listing.digest() == digest_as_stored_before(files)
        keys = listing.keys(prefix)
        assert list(keys) == [prefix + name for name, _fingerprint in files] and len(keys) == len(files)
        assert all(key in keys for key in keys) and prefix + "not-there.md" not in keys
        out.append((folder, prefix, listing.digest(), files))
    return out


def test_the_digest_is_the_one_stored_before_for_the_same_listing(tmp_path: Path) -> None:
    """Digests stored by earlier versions stay valid: the same folder, the same digest (pinned:
    computed by files.py's `_digest` before this change), in one chunk or several."""
    folder = tmp_path / "t"
    folder.mkdir()
    for i, (name, body) in enumerate(sorted({"a.md": "aaaa", "b c.md": "b" * 9, "中文.md": ""}.items())):
        (folder / name).write_text(body, encoding="utf-8")
        os.utime(folder / name, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000 + i * 1_000_000_007))
    names = ["a.md", "b c.md", "中文.md"]
    whole = Listing(names, [stat_names(str(folder), None, names)])
    assert whole.files() == [("a.md", "1700000000000000000:4"), ("b c.md", "1700000001000000007:9"),
                             ("中文.md", "1700000002000000014:0")]  # fmt: skip
    assert whole.digest() == digest_as_stored_before(whole.files())
    chunks = Listing(names, [stat_names(str(folder), None, names[:1]), stat_names(str(folder), None, names[1:])])
    assert chunks.digest() == whole.digest() and chunks.files() == whole.files()
    # The digest of files.py before this change for a fixed listing (odd names, an unreadable file)
    odd = [("a.md", "1:2"), ("x\ty.md", "unreadable:40"), ("\udcb8\udcdf.md", "5:6")]
    assert digest_as_stored_before(odd) == "eec24633aa717dd304d936dc769cec00"
    text = "\n".join(f"{name}\t{fingerprint}" for name, fingerprint in odd).encode("utf-8", "surrogateescape")
    assert Listing([name for name, _fingerprint in odd], [(text, ())]).digest() == "eec24633aa717dd304d936dc769cec00"


def test_a_file_gone_before_its_stat_is_left_out_of_the_listing_and_its_digest(tmp_path: Path) -> None:
    for name in ("a.md", "c.md"):
        (tmp_path / name).write_text(name, encoding="utf-8")
    names = ["a.md", "b.md", "c.md"]  # b.md was listed, then removed
    first, second = stat_names(str(tmp_path), None, names[:2]), stat_names(str(tmp_path), None, names[2:])
    assert first[1] == ("b.md",) and second[1] == ()
    listing = Listing(names, [first, second])
    assert [name for name, _fingerprint in listing.files()] == ["a.md", "c.md"] and len(listing) == 2
    assert listing.digest() == digest_as_stored_before(listing.files())
    assert list(listing.keys("p/")) == ["p/a.md", "p/c.md"] and "p/b.md" not in listing.keys("p/")
    gone = Listing(names[1:], [stat_names(str(tmp_path), None, ["b.md"]), second])  # a chunk with nothing left
    assert gone.digest() == digest_as_stored_before(gone.files()) and gone.files()[0][0] == "c.md"


def test_the_workers_list_every_folder_as_this_process_does(tmp_path: Path, workers: Workers) -> None:
    content = odd_tree(tmp_path)
    here = listings(content)
    assert workers.pool.executor is None  # nothing was asked of the workers
    assert listings(content, workers.pool) == here
    assert workers.pool.executor is not None  # the folders of 4 files and more went to the workers
    tech = next(files for _folder, prefix, _digest, files in here if prefix == "tech/")
    names = [name for name, _fingerprint in tech]
    assert "dangling.md" not in names and dict(tech)["self.md"] == "unreadable:40"
    assert "linked.md" in names and "UPPER.MD" in names and "index.HTML" in names
    assert not {".hidden.md", "_partial.md", "notes.docx", "loop"} & set(names)
    assert [prefix for _folder, prefix, _digest, _files in here][:3] == ["", "archive/", "empty/"]


def test_a_walk_goes_on_from_the_folders_walked_ahead_and_lists_every_folder_as_before(
    tmp_path: Path, workers: Workers
) -> None:
    """A build takes the folders its forked process walked before it was ended (build_ahead.py)
    and walks the rest: whatever number it finished, the walk gives what it gives alone."""
    content = odd_tree(tmp_path)
    here = listings(content)
    ahead = list(walk_ahead(str(content), CONTENT_SUFFIXES))
    assert [(folder, prefix) for folder, prefix, *_rest in ahead] == [(f, p) for f, p, *_rest in here]
    for finished in range(len(ahead) + 1):
        assert listings(content, ahead=ahead[:finished]) == here, finished
    assert listings(content, workers.pool, ahead=ahead[:2]) == here  # the rest on the workers
    assert workers.pool.executor is not None


def test_the_folders_walked_ahead_are_taken_as_they_were_then_and_the_rest_as_they_are_now(tmp_path: Path) -> None:
    """What a walk ahead found is what the walk gives for those folders (a file added since is
    seen by the next build, whose listing differs); the folders after them are listed now."""
    content = odd_tree(tmp_path)
    ahead = list(walk_ahead(str(content), CONTENT_SUFFIXES))
    first, last = ahead[1].prefix, ahead[-1].prefix
    for prefix in ("", first, last):
        (content / prefix / "added.md").write_text("new", encoding="utf-8")
    found = {prefix: dict(files) for _folder, prefix, _digest, files in listings(content, ahead=ahead[:2])}
    assert "added.md" not in found[""] and "added.md" not in found[first]  # as walked ahead
    assert "added.md" in found[last]  # listed now
    now = {prefix: dict(files) for _folder, prefix, _digest, files in listings(content)}
    assert all("added.md" in now[prefix] for prefix in ("", first, last))  # walked now: as they are


def test_folders_walked_ahead_go_through_the_memory_file_as_they_are(tmp_path: Path) -> None:
    """Every kind of name (tabs, newlines, bytes that are not UTF-8) comes back from the build's
    forked process as its walk gave it."""
    from publisher.ahead_process import memory_file, read_folders, walk_into

    content = odd_tree(tmp_path)
    fd = memory_file("walk")
    try:
        walk_into(fd, [str(content)], PARENT)
        assert read_folders(fd) == {str(content): list(walk_ahead(str(content), CONTENT_SUFFIXES))}
    finally:
        os.close(fd)


def test_folders_walked_ahead_that_are_not_this_walks_next_are_not_taken(tmp_path: Path) -> None:
    """Folders of another root, or out of step, are never taken for this walk's: from the first
    folder that differs, everything is listed here."""
    content = odd_tree(tmp_path)
    here = listings(content)
    other = tmp_path / "other"
    (other / "tech").mkdir(parents=True)
    (other / "tech" / "x.md").write_text("other", encoding="utf-8")
    assert listings(content, ahead=list(walk_ahead(str(other), CONTENT_SUFFIXES))) == here
    ahead = list(walk_ahead(str(content), CONTENT_SUFFIXES))
    assert listings(content, ahead=ahead[1:]) == here  # the root's own record missing
    assert listings(content, ahead=[ahead[0], ahead[2], ahead[1]]) == here  # out of order


def test_a_walk_ahead_of_a_root_that_cannot_be_listed_gives_nothing(tmp_path: Path) -> None:
    """The walk then lists the root itself, and says why it cannot."""
    assert list(walk_ahead(str(tmp_path / "missing"), CONTENT_SUFFIXES)) == []
    (tmp_path / "file").write_text("not a folder", encoding="utf-8")
    assert list(walk_ahead(str(tmp_path / "file"), CONTENT_SUFFIXES)) == []


def test_a_small_tree_starts_no_pool(tmp_path: Path, workers: Workers) -> None:
    content = odd_tree(tmp_path)
    assert listings(content, workers.pool, parallel_from=1000) == listings(content)
    assert workers.pool.executor is None


def test_a_worker_that_dies_loses_nothing_of_the_walk(tmp_path: Path, workers: Workers) -> None:
    """A worker died (a crash while reading a file for ingest): the pool is broken, and every
    chunk the walk gives it fails; each is stat'ed here instead. The next user of the pool
    (ingest's reads) starts a new one, which the walk uses again."""
    from concurrent.futures.process import BrokenProcessPool

    content = odd_tree(tmp_path)
    here = listings(content)
    assert isinstance(workers.pool.submit(os._exit, 1).exception(), BrokenProcessPool)
    assert listings(content, workers.pool) == here
    workers.pool.close()
    assert listings(content, workers.pool) == here
    assert workers.pool.executor is not None


def test_a_worker_stats_only_the_folder_that_was_listed(tmp_path: Path) -> None:
    """A folder renamed or replaced between its listing and a worker's stat: the worker says so,
    and the walk stats the chunk through the folder it opened."""
    (tmp_path / "a.md").write_text("a", encoding="utf-8")
    st = tmp_path.stat()
    assert stat_in_worker(str(tmp_path), (st.st_dev, st.st_ino), ["a.md"])[0].startswith(b"a.md\t")
    with pytest.raises(FileNotFoundError, match="not the folder listed"):
        stat_in_worker(str(tmp_path), (st.st_dev, st.st_ino + 1), ["a.md"])


class Stored(FolderFingerprints):
    """The fingerprints and folder digests a last ingest would have stored (the store's part)."""

    def __init__(self, fetched: list[Fetched], fingerprints: Mapping[str, str]) -> None:
        self.digests = {r.name: r.digest for r in fetched if isinstance(r, Folder)}
        self.fingerprints = dict(fingerprints)

    def __getitem__(self, key: str) -> str:
        return self.fingerprints[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.fingerprints)

    def __len__(self) -> int:
        return len(self.fingerprints)

    def digest(self, folder: str) -> str | None:
        return self.digests.get(folder)

    def in_folder(self, folder: str) -> Mapping[str, str]:
        return {k: v for k, v in self.fingerprints.items() if k.startswith(folder) and "/" not in k[len(folder) :]}


def fetched(source: FilesSource, fingerprints: Mapping[str, str]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for result in source.fetch(fingerprints):
        if isinstance(result, Deferred):
            out.append(("read", result.key, result.location))
        elif isinstance(result, ItemProblem):
            out.append(("problem", result.key, result.location, result.reason))
        elif isinstance(result, Folder):
            out.append(("folder", result.name, result.digest, result.listed, list(result.unchanged)))
        else:
            assert isinstance(result, Unchanged)
            out.append(("unchanged", result.keys))
    return out


def test_the_source_gives_the_same_items_digests_and_problems_either_way(tmp_path: Path, workers: Workers) -> None:
    content = odd_tree(tmp_path)
    here = FilesSource("s", content, "Asia/Shanghai")
    there = FilesSource("s", content, "Asia/Shanghai", workers=workers.pool, parallel_from=4)
    cold = fetched(here, {})
    assert fetched(there, {}) == cold and workers.pool.executor is not None
    if LINUX:
        assert sum(1 for r in cold if r[0] == "problem" and "not valid UTF-8" in str(r[3])) == 2
    # The next build: every folder's digest stored but tech/'s, whose files are compared one by one
    listed = {prefix + name: fingerprint for _f, prefix, _d, files in listings(content) for name, fingerprint in files}
    stored = Stored(list(here.fetch({})), {key: fp for key, fp in listed.items() if is_utf8(key)})
    del stored.digests["tech/"]
    (content / "tech" / "new.md").write_text("new", encoding="utf-8")
    again = fetched(here, stored)
    assert fetched(there, stored) == again
    assert [r[1] for r in again if r[0] == "read"] == ["tech/new.md"]
    folders = {r[1]: r for r in again if r[0] == "folder"}
    assert folders["policy/"][4] == ["policy/00.md", "policy/01.md", "policy/02.md", "policy/03.md"]  # whole
    assert "tech/00.md" in folders["tech/"][4] and "tech/new.md" not in folders["tech/"][4]  # one by one


def test_a_source_with_its_pool_still_pickles_for_the_workers(workers: Workers, tmp_path: Path) -> None:
    import pickle

    source = FilesSource("s", tmp_path, "Asia/Shanghai", workers=workers.pool, walked_ahead=lambda _root: [])
    copy = pickle.loads(pickle.dumps(source))
    assert copy.workers is None and copy.walked_ahead is None and (copy.name, copy.root) == ("s", tmp_path)


def test_an_id_copied_from_a_folder_taken_whole_is_a_duplicate_not_a_rename(site: Site) -> None:
    """The keys of a folder whose digest matched are not made one by one (ListedKeys): the
    file that still holds the id there must still be found, so the copy is refused."""
    site.article("tech/a.md", "原文", id="kept-id")
    site.article("policy/b.md", "政策")
    site.build()
    assert site.build().unchanged == 2  # both folders taken whole from now on
    site.article("policy/copy.md", "副本", id="kept-id")
    report = site.build()
    assert (report.new, report.skipped, report.withdrawn) == (0, 1, 0)
    assert "id 'kept-id' is also used by tech/a.md" in report.problems[0]
    assert "原文" in site.feed("tech/rss.xml").decode()
