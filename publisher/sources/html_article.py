"""Reading one article page of the `html` source: title, body, date, source and author by the
configured selectors and regular expressions, and what each of them matched (for `check`).

The meta line's regular expressions (`date`, `source`) are tried on the text converted the way
the content will be (`[text] convert`, e.g. Traditional to Simplified), then on the page's own
text, so `来源` written in Simplified finds `來源` on a Traditional page, and the reverse.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urldefrag
from zoneinfo import ZoneInfo

DATE_PATTERN = re.compile(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:\s*(\d{1,2})[:：](\d{2})(?:[:：](\d{2}))?)?")


@dataclass(frozen=True)
class ArticleRules:
    title: str = "h1"
    body: str | None = None  # None: readability finds the main text
    meta: str | None = None  # where date and source are read from (default: the whole page)
    date: str | None = None  # a regex whose first group is the date (default: any date)
    date_format: str | None = None  # strptime format of that group (default: common forms)
    source: str | None = None  # a regex whose first group is the source, shown as author
    author: str | None = None  # a CSS selector of the author


@dataclass(frozen=True)
class Match:
    """What one selector or regular expression found on the page."""

    key: str  # "title", "body", "meta", "author", "date", "source"
    rule: str  # the selector or the regular expression
    count: int  # elements matched (a regex: 1 or 0)
    texts: tuple[str, ...] = ()  # the first few matches' text, shortened
    where: str = ""  # a regex: "converted text" or "page text"


@dataclass
class ArticleRead:
    """An article page as the rules read it: the values, or the first thing that failed."""

    url: str
    title: str = ""
    body: str = ""
    published: datetime | None = None
    source: str | None = None
    author: str | None = None
    matches: list[Match] = field(default_factory=list)
    problem: tuple[str, str] | None = None  # (reason, hint): the article cannot be used
    tree: Any = field(default=None, repr=False)  # the parsed page (check looks at it again)


def read_article(
    text: str, url: str, rules: ArticleRules, zone: ZoneInfo, convert: Callable[[str], str]
) -> ArticleRead:
    """Read `text` (the page at `url`) by `rules`. Several elements matching `title` or `author`:
    the first is taken (check warns); several matching `body`: all of them, in order."""
    read = ArticleRead(url)
    tree = read.tree = parse_html(text, url)
    if tree is None:
        read.problem = ("the page is empty or not HTML", "check that the link leads to the article")
        return read
    titles = _select(tree, "title", rules.title, read)
    read.title = titles[0] if titles else ""
    if not read.title:
        read.problem = (f"no title matches `{rules.title}`", "check [sources.article] title")
        return read
    if rules.body:
        found = tree.cssselect(rules.body)
        read.matches.append(Match("body", rules.body, len(found), tuple(_short(_node_text(n)) for n in found[:3])))
        if not found:
            read.problem = (f"no body matches `{rules.body}`", "check [sources.article] body")
            return read
        read.body = "".join(outer_html(node) for node in found)
    else:
        from readability import Document

        try:
            read.body = Document(text).summary(html_partial=True)
        except Exception as exc:  # noqa: BLE001 - readability raises its own and lxml's errors
            hint = "set [sources.article] body to the CSS selector of the article's text"
            read.problem = (f"no main text found ({exc.__class__.__name__})", hint)
            return read
    if rules.meta:
        metas = _select(tree, "meta", rules.meta, read)
        meta = " ".join(metas)
    else:
        meta = str(tree.text_content())
    texts = _variants(meta, convert)
    raw_date = _search("date", rules.date, texts, read) if rules.date else None
    read.published = parse_date(raw_date, meta if not rules.date else "", rules.date_format, zone)
    if read.published is None:
        hint = "set [sources.article] date (a regex around the date) and meta (where it is)"
        read.problem = ("no date found", hint)
        return read
    read.source = _search("source", rules.source, texts, read) if rules.source else None
    if rules.author:
        authors = _select(tree, "author", rules.author, read)
        read.author = authors[0] if authors else None
    return read


def body_text(body_html: str) -> str:
    """The body's words, for check's sample (its length and first characters)."""
    tree = parse_html(f"<div>{body_html}</div>", "")
    return " ".join(str(tree.text_content()).split()) if tree is not None else ""


def parse_date(raw: str | None, meta: str, date_format: str | None, zone: ZoneInfo) -> datetime | None:
    """The date in `raw` (what the `date` regex found) or else the first one in `meta`."""
    if raw and date_format:
        try:
            parsed = datetime.strptime(raw.strip(), date_format)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)
    match = DATE_PATTERN.search(raw or meta)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        return None


def parse_html(text: str, url: str) -> Any:
    """The page's tree; None for an empty page or one lxml cannot read."""
    import lxml.etree
    import lxml.html

    # lxml refuses a str that still declares an encoding (`<?xml ... encoding=...?>`)
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text or "")
    if not text.strip():
        return None
    try:
        return lxml.html.document_fromstring(text, base_url=url)
    except (lxml.etree.ParserError, ValueError):
        return None


def outer_html(node: Any) -> str:
    import lxml.html

    return str(lxml.html.tostring(node, encoding="unicode"))


def clean_url(url: str) -> str:
    return urldefrag(url)[0]


def _node_text(node: Any) -> str:
    return " ".join(str(node.text_content()).split())


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _select(tree: Any, key: str, selector: str, read: ArticleRead) -> list[str]:
    """The text of every element `selector` matches, recorded in `read.matches`."""
    texts = [_node_text(node) for node in tree.cssselect(selector)]
    read.matches.append(Match(key, selector, len(texts), tuple(_short(t) for t in texts[:3])))
    return [t for t in texts if t]


def _variants(text: str, convert: Callable[[str], str]) -> list[tuple[str, str]]:
    converted = convert(text)
    variants = [("converted text", converted)]
    return variants + [("page text", text)] if converted != text else [("page text", text)]


def _search(key: str, pattern: str | None, texts: list[tuple[str, str]], read: ArticleRead) -> str | None:
    """The first group (or the whole match) of `pattern` in the first text it matches."""
    if not pattern:
        return None
    for where, text in texts:
        match = re.search(pattern, text)
        if match:
            value = (match.group(1) if match.groups() else match.group(0)) or ""
            read.matches.append(Match(key, pattern, 1, (_short(value.strip()),), where))
            return value.strip() or None
    read.matches.append(Match(key, pattern, 0))
    return None
