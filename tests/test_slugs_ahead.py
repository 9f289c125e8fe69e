"""Category slugs made ahead in a forked process (publisher.slugs_ahead): the same slugs as
`slugify`, from another process, and no process left behind whatever happens to it.

Each case runs in a fresh Python, where the fork is taken as in `publisher build` (a test
process may run threads, beside which the slugs are made in-process instead)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import Site

NAMES = ["高新院新闻", "政策解读", "行业洞见", "C++ & C#", "一带一路新闻"]


def _run(body: str) -> dict[str, object]:
    script = textwrap.dedent(
        """
        import json, os, signal, sys
        from publisher.slugs_ahead import SlugsAhead
        from publisher.text import slugify
        names = json.loads(sys.argv[1])
        out = {}
        """
    ) + textwrap.dedent(body)
    script += "\nprint(json.dumps(out, ensure_ascii=False))\n"
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(NAMES)], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


def test_slugs_come_from_the_forked_process_and_equal_slugify() -> None:
    out = _run(
        """
        ahead = SlugsAhead(names)
        out["forked"] = ahead._pid != 0 and ahead._pid != os.getpid()
        out["ahead"] = [ahead(n) for n in names]
        out["here"] = [slugify(n) for n in names]
        out["other"] = ahead("科技创新")  # not asked ahead: made here
        out["other_here"] = slugify("科技创新")
        out["reaped"] = ahead._pid == 0
        ahead.close()
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
        ahead = SlugsAhead(names)
        os.kill(ahead._pid, signal.SIGKILL)
        out["ahead"] = [ahead(n) for n in names]
        out["here"] = [slugify(n) for n in names]
        """
    )
    assert out["ahead"] == out["here"]


def test_closing_unasked_ends_and_reaps_the_process() -> None:
    out = _run(
        """
        ahead = SlugsAhead(names)
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
        ahead = SlugsAhead([])
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
        ahead = SlugsAhead(names)
        out["pid"] = ahead._pid
        out["ahead"] = [ahead(n) for n in names]
        out["here"] = [slugify(n) for n in names]
        out["descriptors"] = len(os.listdir("/proc/self/fd")) - before
        """
    )
    assert out["pid"] == 0 and out["ahead"] == out["here"] and out["descriptors"] == 0


def test_a_theme_error_after_the_fork_ends_and_reaps_the_slugs_process(site: Site) -> None:
    """`publisher build` forks the slugs' process before it compiles the theme: a broken
    override then exits 2, and the process it forked is ended and reaped, not left behind."""
    folder = site.root / "theme"
    folder.mkdir()
    (folder / "digest.html.j2").write_text("<p>\n{{ list_name }\n</p>\n", encoding="utf-8")
    site.write_config(f'[theme]\ntemplates = "{folder}"\n')
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
    assert out == {"code": 2, "forked": 1, "left": []}, done.stderr
