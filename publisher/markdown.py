"""Markdown to HTML: markdown-it-pyrs, with markdown-it-py where the Rust renderer fails, and the
test that lets the renderer's own markup skip the sanitiser."""

from __future__ import annotations

import logging
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


def render_markdown(text: str) -> str:
    """CommonMark with tables and strikethrough; raw HTML passes through, to be sanitised.

    markdown-it-pyrs (markdown-it in Rust) is about 12x faster than markdown-it-py here, and
    unlike cmarkgfm it does not leak memory per document (cmarkgfm issue #53: 27 KB each). But
    its markdown-it 0.6 panics on some input (as little as "[`", found by the property test),
    and a Rust panic reaches Python as a BaseException: such a document is rendered by
    markdown-it-py, the same rules in Python, instead.
    """
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
