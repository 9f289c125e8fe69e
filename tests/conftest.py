"""Shared fixtures: a site folder with its own config, content, store and output."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import settings

from publisher.app import App
from publisher.cli import main
from publisher.config import load_settings
from publisher.model import BuildReport

ROOT = Path(__file__).resolve().parent.parent

# CI runs the property tests on fixed examples, so a landing never hangs on a lucky draw;
# `make test` elsewhere draws new ones each time, to keep finding bugs (two were found so).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

CONFIG = """\
[site]
title = "高新院"
url = "https://www.example.org"
language = "zh-CN"
timezone = "Asia/Shanghai"
[output]
dir = "{out}"
[store]
url = "sqlite:///{db}"
[text]
convert = "t2s"
[feeds]
max_items = {max_items}
[[categories]]
name = "高新院新闻"
[[categories]]
name = "政策解读"
slug = "policy"
[[categories]]
name = "科技创新"
slug = "tech"
[[sources]]
type = "files"
path = "{content}"
default_category = "高新院新闻"
"""


class Site:
    """A throw-away site: content folder, config file, store and output in tmp_path."""

    def __init__(self, root: Path, max_items: int = 50) -> None:
        self.root = root
        self.content = root / "content"
        self.out = root / "public"
        self.db = root / "var" / "publisher.db"
        self.config = root / "publisher.toml"
        self.content.mkdir(parents=True, exist_ok=True)
        self.write_config(max_items=max_items)
        self.clock_now = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

    def write_config(self, extra: str = "", max_items: int = 50) -> None:
        text = CONFIG.format(out=self.out, db=self.db, content=self.content, max_items=max_items)
        self.config.write_text(text + extra, encoding="utf-8")

    def append_config(self, extra: str) -> None:
        """More TOML after what the config holds now (a source, a table)."""
        self.config.write_text(self.config.read_text(encoding="utf-8") + extra, encoding="utf-8")

    def add(self, relative: str, text: str, encoding: str = "utf-8") -> Path:
        path = self.content / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(textwrap.dedent(text).lstrip("\n").encode(encoding))
        return path

    def article(
        self, relative: str, title: str, date: str = "2026-05-06 14:00", body: str = "正文。", **meta: str
    ) -> Path:
        lines = [
            f"title: {title!r}" if ":" in title or title[:1] in "[{*&!|>'\"%@`" else f"title: {title}",
            f"date: {date}",
        ]
        lines += [f"{k}: {v}" for k, v in meta.items()]
        return self.add(relative, "---\n" + "\n".join(lines) + "\n---\n" + body + "\n")

    def app(self) -> App:
        return App(load_settings(self.config), clock=lambda: self.clock_now)

    def build(self) -> BuildReport:
        report = BuildReport()
        app = self.app()
        try:
            app.build(report)
        finally:
            app.close()
        return report

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(main, ["--config", str(self.config), *args], catch_exceptions=False)

    def feed(self, path: str) -> bytes:
        return (self.out / path).read_bytes()

    def mtimes(self) -> dict[str, int]:
        return {p.relative_to(self.out).as_posix(): p.stat().st_mtime_ns for p in self.out.rglob("*") if p.is_file()}


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


@pytest.fixture
def make_site(tmp_path: Path) -> Callable[..., Site]:
    counter = iter(range(1000))

    def factory(**kwargs: int) -> Site:
        return Site(tmp_path / f"site{next(counter)}", **kwargs)

    return factory


def touch_later(path: Path) -> None:
    """Move a file's mtime forward so a fingerprint sees the change even on coarse clocks."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
