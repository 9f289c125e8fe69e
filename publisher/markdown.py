"""Markdown to HTML: markdown-it-pyrs, with markdown-it-py where the Rust renderer fails, and the
test that lets the renderer's own markup skip the sanitiser."""

from __future__ import annotations

import logging
import re
from functools import cache
from typing import Any

log = logging.getLogger(__name__)


@cache
def _markdown() -> Any:
    from markdown_it_pyrs import MarkdownIt

    return MarkdownIt("commonmark").enable_many(["table", "strikethrough"])


@cache
def _markdown_reference() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


# Limits checked before rendering (docs/content.md). markdown-it-pyrs recurses once per level
# of nesting: 100,000 nested `>` overflow its stack and kill the process, and from about 10,000
# levels (quotes, lists) its time grows with the square of the depth. No article nests 100 deep.
MAX_NESTING = 100
MAX_CHARACTERS = 1_000_000
# Emphasis, strikethrough and link openers nest too, inline: about 100,000 of them overflow the
# renderer's stack ("*a " * 120,000 then as many "*"). No article uses a fifth of this.
MAX_INLINE_MARKERS = 20_000
# A line opening MAX_NESTING containers: quotes, and list markers followed by a blank or the
# line's end (a rule of 100 dashes or a row of asterisks is no list).
_DEEP = rf"[ \t]*(?:(?:>|[*+-](?=[ \t\n]|\Z)|[0-9]{{1,9}}[.)](?=[ \t\n]|\Z))[ \t]*){{{MAX_NESTING}}}"
# Two patterns: the first line, and every other from its newline (a literal start, which the
# regex engine finds fast; `^` in multiline mode is tried at every position).
_DEEP_FIRST_LINE, _DEEP_LINE = re.compile(_DEEP), re.compile("\n" + _DEEP)


class MarkdownLimitError(ValueError):
    """A document beyond what the renderer can take (MAX_NESTING, MAX_CHARACTERS)."""


# What a line nesting MAX_NESTING deep is made of: each level is a `>`, a bullet (`*`, `+`, `-`)
# or an ordered item's number ending in `.` or `)`.
_NOT_OPENERS = bytes(sorted(set(range(128)) - set(b">*+-.)")))


def _may_nest_too_deep(text: str) -> bool:
    """False when `text` holds fewer characters that open a container than a line nesting
    MAX_NESTING deep needs: then no line of it, nor of it with characters removed or turned into
    line breaks (clean_text), can. Its ASCII characters, picked out at about 1 ns a character,
    then counted: prose has few, and skips the regex."""
    ascii_text = text.encode("ascii", "ignore")
    return len(ascii_text) >= MAX_NESTING and len(ascii_text.translate(None, _NOT_OPENERS)) >= MAX_NESTING


def within_limits_however_cleaned(text: str) -> bool:
    """True when `text` is within the limits and stays so whatever clean_text does to it (it
    only removes characters and turns some into line breaks): too short to exceed a count, too
    few openers to nest deep. Most articles are; ingest then checks the body without cleaning it
    first (normalize), a scan of every character saved."""
    return len(text) <= MAX_INLINE_MARKERS and not _may_nest_too_deep(text)


def check_limits(text: str) -> None:
    """Raise MarkdownLimitError for a document too large or too deeply nested to render: a few
    counts, and one regex that looks only at lines opening containers (tens of microseconds for
    a long article), each skipped where it cannot find anything."""
    if len(text) > MAX_CHARACTERS:
        raise MarkdownLimitError(f"the Markdown is {len(text):,} characters, more than {MAX_CHARACTERS:,}")
    if len(text) > MAX_INLINE_MARKERS:  # a shorter text cannot hold too many
        markers = text.count("*") + text.count("_") + text.count("~") + text.count("[")
        if markers > MAX_INLINE_MARKERS:
            raise MarkdownLimitError(
                f"the Markdown has {markers:,} emphasis and link markers (*, _, ~, [), more than {MAX_INLINE_MARKERS:,}"
            )
    deep = (_DEEP_FIRST_LINE.match(text) or _DEEP_LINE.search(text)) if _may_nest_too_deep(text) else None
    if deep is not None:
        line = text.count("\n", 0, deep.start() + 1) + 1
        raise MarkdownLimitError(f"line {line} of the body nests quotes or lists more than {MAX_NESTING} deep")


def render_markdown(text: str) -> str:
    """CommonMark with tables and strikethrough; raw HTML passes through, to be sanitised.
    A document beyond the limits raises MarkdownLimitError (check_limits) and is not rendered.

    markdown-it-pyrs (markdown-it in Rust) is about 12x faster than markdown-it-py here, and
    unlike cmarkgfm it does not leak memory per document (cmarkgfm issue #53: 27 KB each). But
    its markdown-it 0.6 panics on some input (as little as "[`", found by the property test),
    and a Rust panic reaches Python as a BaseException: such a document is rendered by
    markdown-it-py, the same rules in Python, instead.
    """
    check_limits(text)
    try:
        return _markdown().render(text)  # type: ignore[no-any-return]
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException:  # pyo3's PanicException derives from BaseException
        log.warning("markdown-it-pyrs failed on a document; rendering it with markdown-it-py")
        return _markdown_reference().render(text)  # type: ignore[no-any-return]


def is_own_markup(markdown: str, html: str) -> bool:
    """Whether `html`, rendered from `markdown`, is markup the renderer wrote itself and nothing
    a sanitiser would touch. Without "<" the Markdown holds no raw HTML and no autolink, without
    "&" no character reference, so every tag is the renderer's and all text is escaped by it;
    without "=" in the HTML no tag carries an attribute (a link, an image, a code language, a
    list start, a cell's alignment). Then nh3 has nothing to remove or make absolute, and plain
    prose skips it: it is a fifth of the cost of normalising an article."""
    return "<" not in markdown and "&" not in markdown and "=" not in html


def as_sanitised(own_markup: str) -> str:
    """The renderer's own markup (see is_own_markup) written as nh3 writes it, so that an
    article's HTML, and so its content hash, is the same whichever way it went."""
    return (
        own_markup.replace("&quot;", '"').replace("<br />", "<br>").replace("<hr />", "<hr>").replace("\xa0", "&nbsp;")
    ).strip()
