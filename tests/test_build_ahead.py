"""A build's work done ahead in a forked process (publisher.build_ahead): the same slugs as
`slugify` and the same walk as the build's own, from another process, and no process left
behind whatever happens to it.

Each case runs in a fresh Python, where the fork is taken as in `publisher build` (a test
process may run threads, beside which the slugs are made in-process instead)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import Site
from publisher.normalize import TextRules

NAMES = ["高新院新闻", "政策解读", "行业洞见", "C++ & C#", "一带一路新闻"]
PARENT = os.getppid()  # the "build's process" a walk run here watches: this one's parent, alive throughout


def _run(body: str, *args: str) -> dict[str, object]:
    script = textwrap.dedent(
        """
        import json, os, signal, sys
        from publisher.build_ahead import BuildAhead
        from publisher.text import slugify
        names = json.loads(sys.argv[1])
        out = {}
        """
    ) + textwrap.dedent(body)
    script += "\nprint(json.dumps(out, ensure_ascii=False))\n"
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(NAMES), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


def test_slugs_come_from_the_forked_process_and_equal_slugify() -> None:
    out = _run(
        """
        ahead = BuildAhead(names)
        out["forked"] = ahead._pid != 0 and ahead._pid != os.getpid()
        out["ahead"] = [ahead(n) for n in names]
        out["here"] = [slugify(n) for n in names]
        out["other"] = ahead("科技创新")  # not asked ahead: made here
        out["other_here"] = slugify("科技创新")
        ahead.close()
        out["reaped"] = ahead._pid == 0
        """
    )
    assert out["forked"] is True
    assert out["ahead"] == out["here"]
    assert out["ahead"][0] == "gao-xin-yuan-xin-wen"
    assert out["other"] == out["other_here"] == "ke-ji-chuang-xin"
    assert out["reaped"] is True


def test_a_killed_process_leaves_the_slugs_made_here() -> None:
    out = _run(
        """
        ahead = BuildAhead(names)
        os.kill(ahead._pid, signal.SIGKILL)
        out["ahead"] = [ahead(n) for n in names]
        out["here"] = [slugify(n) for n in names]
        """
    )
    assert out["ahead"] == out["here"]


def test_closing_unasked_ends_and_reaps_the_process() -> None:
    out = _run(
        """
        ahead = BuildAhead(names)
        pid = ahead._pid
        ahead.close()
        try:
            os.waitpid(pid, os.WNOHANG)
            out["left"] = True
        except ChildProcessError:
            out["left"] = False
        out["after"] = ahead(names[1])  # still answers, made here
        """
    )
    assert out["left"] is False
    assert out["after"] == "zheng-ce-jie-du"


def test_no_names_forks_nothing() -> None:
    out = _run(
        """
        ahead = BuildAhead([])
        out["pid"] = ahead._pid
        out["slug"] = ahead(names[1])
        """
    )
    assert out == {"pid": 0, "slug": "zheng-ce-jie-du"}


def test_no_process_to_be_had_leaves_the_slugs_made_here_and_no_descriptor_open() -> None:
    out = _run(
        """
        def no_fork():
            raise BlockingIOError(11, "Resource temporarily unavailable")
        before = len(os.listdir("/proc/self/fd"))
        os.fork = no_fork
        ahead = BuildAhead(names)
        out["pid"] = ahead._pid
        out["ahead"] = [ahead(n) for n in names]
        out["here"] = [slugify(n) for n in names]
        out["descriptors"] = len(os.listdir("/proc/self/fd")) - before
        """
    )
    assert out["pid"] == 0 and out["ahead"] == out["here"] and out["descriptors"] == 0


def _build_leaving(site: Site) -> dict[str, object]:
    """`publisher build` in a fresh process: its exit code, how many processes it forked and
    which of them were left behind (not reaped) when it returned."""
    script = textwrap.dedent(
        """
        import json, os, sys
        forked, fork = [], os.fork
        def recorded():
            pid = fork()
            if pid:
                forked.append(pid)
            return pid
        os.fork = recorded
        from publisher.cli import main
        try:
            main(["--config", sys.argv[1], "build"])
        except SystemExit as exc:
            code = exc.code
        left = []
        for pid in forked:
            try:
                os.waitpid(pid, os.WNOHANG)
                left.append(pid)
            except ChildProcessError:
                pass
        print(json.dumps({"code": code, "forked": len(forked), "left": left}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script, str(site.config)], capture_output=True, text=True,
                          timeout=60, check=True, cwd=Path(site.root))  # fmt: skip
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(out, dict), done.stderr
    return out


def test_a_theme_error_after_the_fork_ends_and_reaps_the_process_forked_ahead(site: Site) -> None:
    """`publisher build` forks its process ahead before it compiles the theme: a broken
    override then exits 2, and the process it forked is ended and reaped, not left behind."""
    folder = site.root / "theme"
    folder.mkdir()
    (folder / "digest.html.j2").write_text("<p>\n{{ list_name }\n</p>\n", encoding="utf-8")
    site.write_config(f'[theme]\ntemplates = "{folder}"\n')
    assert _build_leaving(site) == {"code": 2, "forked": 1, "left": []}


def test_a_store_refused_after_the_fork_ends_and_reaps_the_process_forked_ahead(site: Site) -> None:
    """A store made by a newer publisher is refused once the app is loaded, after the fork:
    exit 2, and the process walking ahead is ended, not left to walk on alone."""
    site.article("tech/a.md", "一篇")
    site.build()
    site.sql("UPDATE alembic_version SET version_num = '0099'")
    assert _build_leaving(site) == {"code": 2, "forked": 1, "left": []}


def test_the_folders_walked_ahead_are_the_walks_own_each_given_once(tmp_path: Path) -> None:
    for folder, count in (("tech", 3), ("tech/sub", 2), ("policy", 2), ("empty", 0)):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        for n in range(count):
            (tmp_path / folder / f"{n}.md").write_text("x" * n, encoding="utf-8")
    out = _run(
        """
        from publisher.sources.files import CONTENT_SUFFIXES
        from publisher.sources.walk import walk_ahead
        root = sys.argv[2]
        ahead = BuildAhead([], [root])
        out["forked"] = ahead._pid != 0
        os.waitpid(ahead._pid, 0)  # its walk ended: all of it is taken
        ahead._pid = 0
        walked = ahead.folders_of(root)
        out["folders"] = [folder.prefix for folder in walked]
        out["same"] = walked == list(walk_ahead(root, CONTENT_SUFFIXES))
        out["again"] = ahead.folders_of(root)
        out["slug"] = ahead(names[1])  # none asked ahead: made here
        ahead.close()
        """,
        str(tmp_path),
    )
    assert out == {"forked": True, "folders": ["", "empty/", "policy/", "tech/", "tech/sub/"], "same": True,
                   "again": [], "slug": "zheng-ce-jie-du"}  # fmt: skip


def test_a_record_cut_short_when_the_process_was_ended_is_left_out(tmp_path: Path) -> None:
    """The build ends the process whatever it is doing: a folder it was writing is walked again."""
    from publisher.ahead_process import memory_file, read_folders, walk_into

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "1.md").write_text(folder, encoding="utf-8")
    fd = memory_file("walk")
    try:
        walk_into(fd, [str(tmp_path)], PARENT)
        whole = read_folders(fd)[str(tmp_path)]
        os.ftruncate(fd, os.fstat(fd).st_size - 5)  # the last folder's record cut short
        cut = read_folders(fd)[str(tmp_path)]
    finally:
        os.close(fd)
    assert [f.prefix for f in whole] == ["", "a/", "b/"] and cut == whole[:2]


def test_folders_walked_longer_ago_than_fresh_for_are_not_given(tmp_path: Path) -> None:
    """A files source whose ingest begins late (after a web source, or another files source)
    walks itself: a listing is never older than FRESH_FOR."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.md").write_text("a", encoding="utf-8")
    out = _run(
        """
        from publisher.build_ahead import FRESH_FOR
        root = sys.argv[2]
        ahead = BuildAhead([], [root, root + "/a"])
        os.waitpid(ahead._pid, 0)
        ahead._pid = 0
        out["first"] = [folder.prefix for folder in ahead.folders_of(root)]
        ahead._forked_at -= FRESH_FOR  # the second source's ingest begins that much later
        out["later"] = ahead.folders_of(root + "/a")
        ahead.close()
        """,
        str(tmp_path),
    )
    assert out == {"first": ["", "a/"], "later": []}


def test_the_walk_ahead_stops_after_the_folder_that_reaches_its_most_files(tmp_path: Path) -> None:
    """A build slow to start never finds more than so many files walked ahead in memory."""
    from publisher.ahead_process import memory_file, read_folders, walk_into

    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
        for n in range(2):
            (tmp_path / folder / f"{n}.md").write_text(folder, encoding="utf-8")
    fd = memory_file("walk")
    try:
        walk_into(fd, [str(tmp_path)], PARENT, most=3)  # the root (no file), a/ (2), b/ (4 >= 3): no more
        walked = read_folders(fd)[str(tmp_path)]
    finally:
        os.close(fd)
    assert [folder.prefix for folder in walked] == ["", "a/", "b/"]


def test_a_store_made_before_has_its_slugs_and_none_are_made_ahead(site: Site) -> None:
    """A SQLite store that exists has the slugs of its categories (a new one's slug is made in
    the build's process): the process forked ahead only walks. Other stores may be new."""
    body = """
        from pathlib import Path
        from publisher.build_ahead import build_ahead
        from publisher.config import load_settings
        ahead = build_ahead(Path(sys.argv[2]))
        ahead.told(load_settings(Path(sys.argv[2])))
        out["slug"] = ahead("高新院新闻")
        out["made_ahead"] = sorted(ahead._made)
        ahead.close()
        """
    configured = ["高新院新闻"]  # the one category without a slug of its own
    assert _run(body, str(site.config)) == {"slug": "gao-xin-yuan-xin-wen", "made_ahead": configured}
    site.build()
    again = _run(body, str(site.config))
    assert again == {"slug": "gao-xin-yuan-xin-wen",
                     "made_ahead": [] if site.store_url.startswith("sqlite:///") else configured}  # fmt: skip


def test_a_build_with_its_walk_ahead_stores_and_writes_what_a_build_without_it_does(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`publisher build` in a fresh process takes the folders walked ahead and, into a new
    SQLite store, the files read ahead; a build that forks no process ahead walks and reads
    them itself: the same store, the same files, byte for byte."""
    sites = [Site(tmp_path_factory.mktemp(name)) for name in ("ahead", "here")]
    for site in sites:
        for n in range(40):
            folder, day = "tech" if n % 3 else "policy", n % 28 + 1
            path = site.article(f"{folder}/{n:02d}.md", f"文章{n}", date=f"2026-05-{day:02d} 09:00")
            os.utime(path, ns=(1_780_000_000_000_000_000 + n, 1_780_000_000_000_000_000 + n))  # the same fingerprints
    script = textwrap.dedent(
        """
        import json, os, sys
        from publisher import build_ahead
        # What is compared is the build's output, however slow the machine: on a busy one a
        # PostgreSQL store took the build past FRESH_FOR before it asked for the folders (their
        # age has its own tests: test_..._longer_ago_than_fresh_for_are_not_given and _taken)
        build_ahead.FRESH_FOR = 120.0
        taken, folders_of, reads_for = [], build_ahead.BuildAhead.folders_of, build_ahead.BuildAhead.reads_for
        def finished(self):
            if self._pid:  # let it end its work (on a slow machine the build would end it part-way)
                os.waitpid(self._pid, 0)
                self._pid = 0
        def recorded(self, root):
            finished(self)
            folders = folders_of(self, root)
            taken.append(len(folders))
            return folders
        def recorded_reads(self, *context):
            finished(self)
            reads = reads_for(self, *context)
            taken.append(len(reads))
            return reads
        build_ahead.BuildAhead.folders_of = recorded
        build_ahead.BuildAhead.reads_for = recorded_reads
        if sys.argv[2] == "here":  # no process forked ahead: the slugs made and the folders walked here
            build_ahead.BuildAhead._start = lambda self, roots, slugs_likely: None
        from publisher.cli import main
        try:
            main(["--config", sys.argv[1], "build"])
        except SystemExit as exc:
            assert not exc.code, exc.code
        print(json.dumps(taken))
        """
    )
    taken = {}
    for site, how in zip(sites, ("ahead", "here"), strict=True):
        done = subprocess.run([sys.executable, "-c", script, str(site.config), how], capture_output=True, text=True,
                              timeout=120, check=True, cwd=site.root)  # fmt: skip
        taken[how] = json.loads(done.stdout.strip().splitlines()[-1])
    ahead, here = sites
    read = 40 if here.store_url.startswith("sqlite:///") else 0  # another store may not be new: none read
    assert taken["here"] == [0, 0] and taken["ahead"] == [read, 3]  # the files; the root, policy/ and tech/
    files = sorted(p.relative_to(ahead.out) for p in ahead.out.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(here.out) for p in here.out.rglob("*") if p.is_file())
    for path in files:
        mine, theirs = (ahead.out / path).read_bytes(), (here.out / path).read_bytes()
        assert mine.replace(str(ahead.root).encode(), b"") == theirs.replace(str(here.root).encode(), b""), path
    query = "SELECT key, fingerprint, content_hash, body_hash, guid FROM articles ORDER BY id"
    assert ahead.sql(query) == here.sql(query)


_READS = """
    from pathlib import Path
    from publisher import build_ahead as ahead_module
    from publisher.app import App
    from publisher.build_ahead import build_ahead
    ahead_module.FRESH_FOR = 120.0  # what was read, however slow the machine (the age: the "late" test)
    from publisher.config import load_settings
    from publisher.model import Deferred
    from publisher.normalize import CategoryIndex, TextRules
    from publisher.parallel import prepare_all
    path = Path(sys.argv[2])
    ahead = build_ahead(path)
    settings = load_settings(path)
    ahead.told(settings)
    os.waitpid(ahead._pid, 0)  # let it read every file
    ahead._pid = 0
    app = App(settings, ahead=ahead)
    [source] = app.sources
    index, rules, url = CategoryIndex(app.categories), app.rules, app.site.url
    if sys.argv[3] == "other":  # the rules the build reads with are not those it read ahead with
        rules = TextRules("none", rules.summary_length, rules.remove_glosses)
    if sys.argv[3] == "late":  # asked for after FRESH_FOR
        ahead._forked_at -= ahead_module.FRESH_FOR + 1
    reads = ahead.reads_for(source, index, rules, url)
    units = [u for u in source.fetch({}) if isinstance(u, Deferred)]
    own = prepare_all(units, index, rules, url, render=False)
    out["count"] = len(reads)
    out["same"] = [reads.get(u.key) for u in units] == [((u.fingerprint, u.location), p) for u, p in zip(units, own)]
    out["again"] = len(ahead.reads_for(source, index, rules, url))
    app.close()
    """


def test_the_files_read_ahead_into_a_new_store_are_read_as_the_workers_read_them_and_given_once(site: Site) -> None:
    site.use_store(f"sqlite:///{site.root / 'var' / 'new.db'}")  # a SQLite store not made yet
    for n in range(5):
        site.article(f"tech/{n}.md", f"文章{n}", body=f"正文{n}，繁體字。")
    site.add("tech/broken.md", "no front matter\n")
    out = _run(_READS, str(site.config), "same")
    assert out == {"count": 6, "same": True, "again": 0}


def test_files_read_ahead_in_another_context_than_the_build_s_are_not_taken(site: Site) -> None:
    """The build reads with what the store and settings say; anything the process ahead read
    with otherwise (here the `[text]` rules) leaves every file to the build."""
    site.use_store(f"sqlite:///{site.root / 'var' / 'new.db'}")
    site.article("tech/a.md", "文章")
    assert _run(_READS, str(site.config), "other") == {"count": 0, "same": False, "again": 0}


def test_files_read_ahead_longer_ago_than_fresh_for_are_not_taken(site: Site) -> None:
    """A build asking for the files read ahead later than FRESH_FOR after the fork reads them
    itself: a file may have changed since."""
    site.use_store(f"sqlite:///{site.root / 'var' / 'new.db'}")
    site.article("tech/a.md", "文章")
    assert _run(_READS, str(site.config), "late") == {"count": 0, "same": False, "again": 0}


def test_nothing_is_read_ahead_for_a_store_made_before(site: Site) -> None:
    """A store that exists has most files already: its build reads only what changed."""
    site.use_store(f"sqlite:///{site.root / 'var' / 'new.db'}")
    site.article("tech/a.md", "文章")
    site.build()
    site.article("tech/b.md", "又一篇")
    assert _run(_READS, str(site.config), "same")["count"] == 0


def test_a_chunk_read_ahead_cut_short_when_the_process_was_ended_is_left_out(site: Site) -> None:
    """The build ends the process whatever it is doing: a chunk of files it was writing is read
    by the workers, and so is every file after a record that does not read."""
    from publisher.ahead_process import memory_file, read_into, read_reads
    from publisher.model import Category
    from publisher.normalize import CategoryIndex
    from publisher.sources.files import FilesSource

    for n in range(70):  # three chunks: 32, 32 and 6
        site.article(f"tech/{n:02d}.md", f"文章{n}")
    source = FilesSource("content", site.content, "Asia/Shanghai")
    index, rules = CategoryIndex([Category("科技创新", "tech")]), TextRules()
    fd = memory_file("reads")
    try:
        read_into(fd, source, index, rules, "https://x.org", {}, PARENT, time.monotonic() + 60)
        context, whole = read_reads(fd)
        os.ftruncate(fd, os.fstat(fd).st_size - 5)  # the last chunk's record cut short
        _context, cut = read_reads(fd)
    finally:
        os.close(fd)
    assert context == (source.__getstate__(), index.categories, rules, "https://x.org")
    assert len(whole) == 70 and sorted(cut) == sorted(whole)[:64]
    assert all(cut[key] == whole[key] and isinstance(cut[key][1], tuple) for key in cut)  # (item, article) each


def test_the_process_ahead_stops_reading_once_the_build_would_no_longer_take_what_it_reads(site: Site) -> None:
    from publisher.ahead_process import memory_file, read_into, read_reads
    from publisher.normalize import CategoryIndex

    for n in range(70):
        site.article(f"tech/{n:02d}.md", f"文章{n}")
    fd = memory_file("reads")
    try:
        from publisher.sources.files import FilesSource

        source = FilesSource("content", site.content, "Asia/Shanghai")
        read_into(fd, source, CategoryIndex([]), TextRules(), "https://x.org", {}, PARENT, time.monotonic() - 1)
        _context, reads = read_reads(fd)
    finally:
        os.close(fd)
    assert len(reads) == 32  # the chunk it was on, then no more


def test_the_slugs_are_answered_as_soon_as_asked_for_even_in_the_middle_of_a_long_walk(tmp_path: Path) -> None:
    """A new store's build waits for its slugs when it syncs its categories: the process ahead
    answers them at once, whatever folder of 100,000 files it is walking (here: one that never
    ends before the test does)."""
    out = _run(
        """
        import time
        from publisher import ahead_process
        ahead_process.walk_into = lambda *args, **kwargs: time.sleep(30) or {}  # a walk that takes long
        ahead = BuildAhead(None, [sys.argv[2]], slugs_likely=True)
        ahead._tell(names, None)
        started = time.monotonic()
        out["ahead"] = [ahead(n) for n in names]
        out["quick"] = time.monotonic() - started < 10
        out["made_ahead"] = sorted(ahead._made) == sorted(names)
        out["here"] = [slugify(n) for n in names]
        ahead.close()
        """,
        str(tmp_path),
    )
    assert out["quick"] is True and out["made_ahead"] is True and out["ahead"] == out["here"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--config", "site.toml", "build"], ("build", "site.toml")),
        (["-v", "build", "--config=other.toml", "--strict"], ("build", "other.toml")),
        (["--config", "build", "ingest"], ("ingest", "build")),  # a file named build
        (["--config", "a.toml", "build", "--config", "b.toml"], ("build", "b.toml")),  # the last one, as click
        (["build"], ("build", None)),
        (["build", "--help"], (None, None)),
        (["-vh", "build"], (None, None)),  # help, in a cluster of short flags
        (["--version"], (None, None)),
        (["digest", "send", "build"], ("digest", None)),
        (["--", "build"], (None, None)),
        ([], (None, None)),
    ],
)
def test_the_program_reads_the_command_and_its_configuration_as_click_does(
    args: list[str], expected: tuple[str | None, str | None]
) -> None:
    from publisher.cli.entry import command_and_config

    assert command_and_config(args) == expected


def test_the_program_knows_every_option_of_a_build_that_takes_a_value() -> None:
    """`command_and_config` tells an option's value from the command by `_WITH_VALUE`: it must
    name every option the root group and the commands it forks for take with a value, or a
    value could be read as the command (or a command as a value)."""
    import click

    from publisher.cli import main
    from publisher.cli.base import COMMAND_MODULES
    from publisher.cli.entry import _WITH_VALUE, AHEAD

    assert AHEAD <= set(COMMAND_MODULES)
    ctx = click.Context(main)
    commands = [main.get_command(ctx, name) for name in sorted(AHEAD)]
    taking = {
        name
        for command in (main, *commands)
        for param in command.params  # type: ignore[union-attr]
        if isinstance(param, click.Option) and not param.is_flag and not param.count
        for name in param.opts + param.secondary_opts
    }
    assert taking == set(_WITH_VALUE)


def test_the_program_forks_a_build_s_process_ahead_before_it_reads_its_command_line(site: Site) -> None:
    """`publisher build` (cli.entry.program) forks its process ahead before click is imported,
    and the build takes that one (no second one is forked): every process forked is ended and
    reaped, and the build's output is written; `publisher check` forks none ahead, and one
    forked for arguments click then refuses is ended at exit."""
    site.article("tech/a.md", "一篇")
    script = textwrap.dedent(
        """
        import json, os, sys
        forked, fork = [], os.fork
        def recorded():
            click_read = "click" in sys.modules
            pid = fork()
            if pid:
                forked.append((pid, click_read))
            return pid
        os.fork = recorded
        import atexit
        from publisher import build_ahead
        started, start = [], build_ahead.BuildAhead._start
        def counted(self, *args):
            started.append(1)
            return start(self, *args)
        build_ahead.BuildAhead._start = counted
        def report():
            left = []
            for pid, _ in forked:
                try:
                    os.waitpid(pid, os.WNOHANG)
                    left.append(pid)
                except ChildProcessError:
                    pass
            print(json.dumps({"click_read": [c for _, c in forked], "left": left, "ahead": len(started)}))
        atexit.register(report)
        sys.argv = ["publisher", "--config", sys.argv[1], *sys.argv[2:]]
        from publisher.cli import program
        program()
        """
    )
    for command, ahead in (("build", 1), ("check", 0)):
        done = subprocess.run([sys.executable, "-c", script, str(site.config), command], capture_output=True,
                              text=True, timeout=60, cwd=Path(site.root))  # fmt: skip
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout.strip().splitlines()[-1])
        # the process ahead first, then only the workers that render the body (forked once click was read)
        assert out["ahead"] == ahead and out["click_read"][:ahead] == [False] * ahead, out
        assert all(out["click_read"][ahead:]) and out["left"] == []
    assert "一篇" in site.feed("tech/rss.xml").decode()
    # Arguments click refuses: the process forked for them is ended at exit, quietly
    done = subprocess.run([sys.executable, "-c", script, str(site.config), "build", "--stict"], capture_output=True,
                          text=True, timeout=60, cwd=Path(site.root))  # fmt: skip
    assert done.returncode == 2 and "No such option '--stict'" in done.stderr
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"click_read": [False], "left": [], "ahead": 1}


def test_a_process_forked_early_for_another_file_is_ended_and_the_build_forks_its_own(tmp_path: Path) -> None:
    """The build takes the process the program forked only when it was forked for the file the
    build reads; one forked for another file is ended and reaped."""
    root = tmp_path / "content"
    (root / "tech").mkdir(parents=True)
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    for path in (first, second):
        path.write_text(f'[[sources]]\ntype = "files"\npath = "{root}"\n', encoding="utf-8")
    out = _run(
        """
        from pathlib import Path
        from publisher import build_ahead
        first, second = Path(sys.argv[2]), Path(sys.argv[3])
        build_ahead.fork_early(first)
        early = build_ahead._early
        taken = build_ahead.build_ahead(first)
        out["same_taken"] = taken is early and taken.config == first
        build_ahead.fork_early(first)
        early = build_ahead._early
        early_pid = early._pid
        other = build_ahead.build_ahead(second)
        out["other_is_new"] = other is not early and other.config == second and other._pid not in (0, early_pid)
        out["early_ended"] = early._pid == 0
        try:
            os.waitpid(early_pid, os.WNOHANG)
            out["early_reaped"] = False
        except ChildProcessError:
            out["early_reaped"] = True
        for ahead in (taken, other):
            ahead.close()
        """,
        str(first),
        str(second),
    )
    assert out == {"same_taken": True, "other_is_new": True, "early_ended": True, "early_reaped": True}
