"""`publisher init DIR`: a working site in a new or empty folder; it needs no configuration."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ..errors import PublisherError
from .base import EXIT_PROBLEMS, err, fail, main, out


@main.command()
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--site-title", default="", help="The site's name [default: the folder's name].")
@click.option("--url", default="https://www.example.org", show_default=True, help="The news site's address.")
@click.option("--category", "categories", multiple=True,
              help="A category's name; repeat it [default: 新闻 and 通知公告, or News and Announcements].")  # fmt: skip
@click.option("--language", default="zh-CN", show_default=True, help="The site's language tag (zh-CN, en, ...).")
@click.option("--timezone", default="Asia/Shanghai", show_default=True, help="The site's IANA time zone.")
@click.option("--demo", is_flag=True, help="Write the demo site instead (13 categories, 46 articles; `make run`'s).")
def init(
    directory: Path, site_title: str, url: str, categories: tuple[str, ...], language: str, timezone: str, demo: bool
) -> None:
    """Make a site in DIR: publisher.toml, an example article per category, templates/. Never overwrites."""
    from ..scaffold import CONFIG_NAME, SiteSpec, init_site

    title = site_title or directory.resolve().name or "publisher"
    spec = None if demo else SiteSpec(title, url, language, timezone, tuple(categories))
    try:
        report = init_site(directory, spec)
    except PublisherError as exc:
        fail(exc)
    for path in report.written:
        out.print(f"created {path}", highlight=False)
    for path in report.kept:
        err.print(f"kept {path}: it exists, and init never overwrites a file", highlight=False)
    folder = shlex.quote(str(directory))
    out.print(
        f"next: cd {folder} && publisher build && publisher run\n"
        f"  (edit {CONFIG_NAME} first for your site's address, categories and mail; docs/configuration.md)",
        highlight=False,
    )
    if report.kept:
        sys.exit(EXIT_PROBLEMS)
