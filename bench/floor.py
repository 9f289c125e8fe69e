"""The benchmark floor: the least work that still produces the same set of feeds.

Walks the content directory, parses each file's YAML front matter (PyYAML's C
loader), groups articles by category, sorts newest first and writes one RSS and
one Atom feed per category plus one pair for the whole site with feedgen,
``--max-items`` entries each. No Markdown rendering, no store, no incremental
state: anything a real tool does beyond this is its overhead.

Usage: python bench/floor.py CONTENT_DIR OUTPUT_DIR
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from feedgen.feed import FeedGenerator

try:
    from yaml import CSafeLoader as Loader
except ImportError:  # pragma: no cover - libyaml missing
    print("floor: PyYAML has no C loader, falling back to the pure-Python one", file=sys.stderr)
    from yaml import SafeLoader as Loader  # type: ignore[assignment]


def walk(content: str) -> list[str]:
    paths: list[str] = []
    stack = [content]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.name.endswith(".md"):
                    paths.append(entry.path)
    return paths


def split(text: str) -> tuple[str, str] | None:
    """Return (front matter, body) or None when the file has no front matter."""
    if not text.startswith("---\n"):
        return None
    end = text.find("\n---\n", 3)
    if end < 0:
        return None
    return text[4 : end + 1], text[end + 5 :]


def read_meta(path: str) -> dict[str, object] | None:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    parts = split(text)
    if parts is None:
        return None
    meta = yaml.load(parts[0], Loader=Loader)
    return meta if isinstance(meta, dict) else None


def read_body(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        parts = split(fh.read())
    return parts[1].strip() if parts else ""


def parse_date(value: object, tz: ZoneInfo) -> dt.datetime:
    if isinstance(value, dt.datetime):
        d = value
    elif isinstance(value, dt.date):
        d = dt.datetime(value.year, value.month, value.day)
    else:
        d = dt.datetime.fromisoformat(str(value).strip())
    return d if d.tzinfo else d.replace(tzinfo=tz)


def date_key(value: object) -> str:
    # "2026-03-04 09:30" sorts correctly as a string; normalise other types to it.
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat(sep=" ")
    return str(value)


def build_feed(
    *,
    out: Path,
    title: str,
    url: str,
    feed_url: str,
    language: str,
    entries: list[tuple[str, str, str, str, str]],
    tz: ZoneInfo,
) -> None:
    fg = FeedGenerator()
    fg.id(feed_url + "atom.xml")
    fg.title(title)
    fg.link(href=url, rel="alternate")
    fg.link(href=feed_url + "atom.xml", rel="self")
    fg.description(title)
    fg.language(language)
    newest = None
    for key, title_, category, slug, path in entries:
        when = parse_date(key, tz)
        newest = newest or when
        link = f"{url}/{slug}.html"
        fe = fg.add_entry(order="append")
        fe.id(link)
        fe.title(title_)
        fe.link(href=link)
        fe.published(when)
        fe.updated(when)
        fe.category(term=category)
        fe.content(read_body(path))
    fg.updated(newest or dt.datetime.now(tz))
    out.mkdir(parents=True, exist_ok=True)
    fg.rss_file(str(out / "rss.xml"), pretty=False)
    fg.atom_file(str(out / "atom.xml"), pretty=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("content")
    ap.add_argument("output")
    ap.add_argument("--url", default="https://www.example.org")
    ap.add_argument("--title", default="高新院")
    ap.add_argument("--language", default="zh-CN")
    ap.add_argument("--timezone", default="Asia/Shanghai")
    ap.add_argument("--max-items", type=int, default=50)
    args = ap.parse_args(argv)

    tz = ZoneInfo(args.timezone)
    url = args.url.rstrip("/")
    out = Path(args.output)

    articles: list[tuple[str, str, str, str, str]] = []
    skipped = 0
    for path in walk(args.content):
        meta = read_meta(path)
        if not meta or "title" not in meta or "date" not in meta:
            skipped += 1
            continue
        articles.append(
            (
                date_key(meta["date"]),
                str(meta["title"]),
                str(meta.get("category", "")),
                str(meta.get("slug") or Path(path).stem),
                path,
            )
        )

    by_cat: dict[str, list[tuple[str, str, str, str, str]]] = {}
    for a in articles:
        by_cat.setdefault(a[2], []).append(a)

    n = args.max_items
    articles.sort(reverse=True)
    build_feed(
        out=out,
        title=args.title,
        url=url,
        feed_url=url + "/feeds/",
        language=args.language,
        entries=articles[:n],
        tz=tz,
    )
    for cat, items in by_cat.items():
        items.sort(reverse=True)
        build_feed(
            out=out / cat,
            title=f"{args.title} - {cat}",
            url=url,
            feed_url=f"{url}/feeds/{cat}/",
            language=args.language,
            entries=items[:n],
            tz=tz,
        )
    print(
        f"floor: {len(articles)} articles, {len(by_cat)} categories, {2 * (len(by_cat) + 1)} feeds, {skipped} skipped",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
