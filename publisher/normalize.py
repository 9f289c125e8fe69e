"""Pure: SourceItem -> Article. The one place where metadata is merged and text is cleaned."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .markdown import (
    MarkdownLimitError,
    as_sanitised,
    check_limits,
    is_own_markup,
    render_markdown,
    within_limits_however_cleaned,
)
from .model import Article, Category, ReadItem, Rendition, SourceItem
from .text import (
    absolute_url,
    clean_line,
    clean_text,
    convert_script,
    html_to_text,
    remove_pinyin_glosses,
    sanitize_html,
    summarize,
    xml_safe,
)

if TYPE_CHECKING:
    from .config import TextConfig


class NormalizeError(ValueError):
    """The item cannot become an article; `hint` says what to change in it."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


@dataclass(frozen=True, slots=True)
class TextRules:
    """The [text] settings, as normalising needs them."""

    convert: str = "none"
    summary_length: int = 120
    remove_glosses: bool = True

    @classmethod
    def of(cls, text: TextConfig) -> TextRules:
        return cls(text.convert, text.summary_length, text.remove_glosses)


class CategoryIndex:
    """Finds a configured category by its name or its slug."""

    def __init__(self, categories: Sequence[Category]) -> None:
        self.categories = tuple(categories)
        self._by_key = {c.name: c for c in categories} | {c.slug: c for c in categories}

    def find(self, name_or_slug: str) -> Category | None:
        return self._by_key.get(name_or_slug.strip())

    def names(self) -> str:
        return ", ".join(c.name for c in self.categories)


def normalize(item: SourceItem, index: CategoryIndex, rules: TextRules, site_url: str, render: bool = True) -> Article:
    """Clean every field of `item` and resolve its categories; raise NormalizeError if unusable.

    With `render` False the body is only checked and hashed, not rendered: the article is
    stored unrendered and its body rendered (`render_body`) when a feed, page or digest first
    shows it, from the source read again. A feed shows 50 articles of a category; a cold build
    of 100,000 files renders about 700 bodies instead of 100,000. Either way the rendition is
    the same, byte for byte (`render_body` is the one way)."""
    title = _clean(item.title, rules)
    if not title:
        raise NormalizeError("the title is empty", "give the article a title")
    categories = resolve_categories(item, index)
    url = _absolute_url(item.url, site_url)
    if item.markdown and not render:  # rendering checks them itself
        _check_markdown(item.content)  # a body beyond the limits is refused now, naming its file
    source_digest = _source_digest(item)
    published = item.published.astimezone(UTC)
    updated = max(item.updated.astimezone(UTC), published) if item.updated else published
    author = _clean(item.author, rules) if item.author else None
    image = _absolute_url(item.image, url or site_url + "/") if item.image else None
    tags = tuple(dict.fromkeys(t for t in (_clean(t, rules) for t in item.tags) if t)) if item.tags else ()
    visible = (
        title, source_digest, url or "", author or "", image or "", "\x1e".join(tags), "\x1e".join(categories),
        published.isoformat(), updated.isoformat() if item.updated else "",
    )  # fmt: skip
    rendition = render_body(item, rules, site_url) if render else _UNRENDERED
    return Article(
        source=item.source,
        key=item.key,
        guid=make_guid(site_url, published, item.source, item.key, item.explicit_id),  # a new article's
        title=title,
        content_html=rendition.content_html,
        summary=rendition.summary,
        published=published,
        updated=updated,
        categories=categories,
        content_hash=content_hash(visible),
        url=url,
        author=author or None,
        image=image,
        tags=tags,
        body_hash=_body_hash(source_digest, url, rules, site_url),
        rendered=render,
    )


_UNRENDERED = Rendition("", "")  # an article stored to be rendered when first shown


def render_body(item: SourceItem, rules: TextRules, site_url: str) -> Rendition:
    """The body of `item` as the feeds show it: Markdown rendered, untrusted markup sanitised,
    glosses removed, the script converted, and the summary (given, or cut from the text)."""
    url = _absolute_url(item.url, site_url)
    if item.markdown:
        # Cleaned before Markdown: the Rust renderer refuses lone surrogates
        markdown = clean_text(item.content)
        try:
            html = render_markdown(markdown)
        except MarkdownLimitError as exc:
            raise NormalizeError(str(exc), _LIMITS_HINT) from None
        own_markup = is_own_markup(markdown, html)
    else:
        html, own_markup = item.content, False
    if rules.remove_glosses:
        html = remove_pinyin_glosses(html)
    # Untrusted markup is sanitised (which also makes it XML-safe); the renderer's own markup
    # holds only characters of the XML-safe Markdown and ASCII tags. OpenCC then runs on it,
    # where every URL is ASCII, so it can never change a link.
    cleaned = as_sanitised(html) if own_markup else sanitize_html(html, base_url=url or site_url + "/")
    content = convert_script(cleaned, rules.convert)
    if item.summary:
        summary = _clean(item.summary, rules)
    else:
        summary = summarize(_leading_text(content, rules.summary_length), rules.summary_length)
    return Rendition(content, summary)


_LIMITS_HINT = "split it, or flatten its quotes and lists: docs/content.md gives the limits"


def _check_markdown(text: str) -> None:
    """The limits checked as rendering will check them, on the cleaned text; cleaning (a scan of
    every character) is skipped when the text is within them however it is cleaned."""
    if within_limits_however_cleaned(text):
        return
    try:
        check_limits(clean_text(text))
    except MarkdownLimitError as exc:
        raise NormalizeError(str(exc), _LIMITS_HINT) from None


def _clean(text: str, rules: TextRules) -> str:
    text = clean_line(text)  # first: OpenCC cannot even encode a lone surrogate
    text = remove_pinyin_glosses(text) if rules.remove_glosses else text
    return convert_script(text, rules.convert)


def _source_digest(item: SourceItem) -> str:
    """SHA-256 of the body as the source gave it: its text, its kind and its given summary."""
    kind = "markdown" if item.markdown else "html"
    digest = hashlib.sha256(f"{kind}\x1f{item.summary or ''}\x1f".encode("utf-8", "surrogatepass"))
    body = item.content_utf8
    digest.update(item.content.encode("utf-8", "surrogatepass") if body is None else body)
    return digest.hexdigest()


def _body_hash(source_digest: str, url: str | None, rules: TextRules, site_url: str) -> str:
    """The rendition's key: the body as given and all that its rendering depends on (the
    article's own link, against which relative links resolve, the site and the [text] rules)."""
    parts = (source_digest, url or "", site_url, rules.convert, str(rules.summary_length), str(rules.remove_glosses))
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def content_hash(visible: tuple[str, ...]) -> str:
    """SHA-256 of everything that makes an article what it is (its fields as cleaned, its body
    as the source gave it), so any edit counts as a change, but a change of the [text] rules
    alone does not (it renders the bodies anew without marking every article updated). Fields
    are joined with U+001F, which cleaning removes from every one of them, so the join is
    unambiguous."""
    return hashlib.sha256("\x1f".join(visible).encode("utf-8")).hexdigest()


def hash_before_0009(item: ReadItem, article: Article) -> str:
    """The content hash a store kept before revision 0009 (of the rendered body and summary),
    of a rendered `article` of `item`: how the first ingest after the upgrade tells an article
    unchanged since (its updated stamp kept) from one edited."""
    visible = (
        article.title, article.content_html, article.summary, article.url or "", article.author or "",
        article.image or "", "\x1e".join(article.tags), "\x1e".join(article.categories),
        article.published.isoformat(), article.updated.isoformat() if item.dated else "",
    )  # fmt: skip
    return content_hash(visible)


def _leading_text(content: str, limit: int) -> str:
    """Plain text of the start of `content`: enough for a summary without converting the whole
    article. The HTML is cut after a tag, so no tag or entity is split; a first cut of 4x the
    limit is enough for prose (CJK text is about as long as its HTML), 16x for markup-heavy
    openings."""
    for factor in (4, 16):
        head = content[: limit * factor]
        if len(head) >= len(content):
            break
        head = head[: head.rfind(">") + 1]
        text = html_to_text(head)
        if len(text) > limit * 2:
            return text
    return html_to_text(content)


# A category name as written, cleaned: a site's few names come again in every file's front matter.
_category_name = lru_cache(maxsize=1024)(clean_line)


def resolve_categories(item: SourceItem, index: CategoryIndex) -> tuple[str, ...]:
    """Front matter categories (all must exist), else the folder, else the source default."""
    if item.categories:
        slugs = []
        for name in map(_category_name, item.categories):
            category = index.find(name)
            if category is None:
                raise NormalizeError(
                    f"unknown category {name!r}",
                    f"use a name or slug from [[categories]]: {index.names()}",
                )
            slugs.append(category.slug)
        return tuple(dict.fromkeys(slugs))
    for candidate in (item.folder, item.default_category):
        category = index.find(candidate) if candidate else None
        if category is not None:
            return (category.slug,)
    raise NormalizeError(
        "no category",
        "set `category:` in the front matter, put the file in a folder named after a "
        "category, or set `default_category` on the source",
    )


def _absolute_url(url: str | None, base: str) -> str | None:
    """An article's own link or image: absolute http(s), percent-encoded, else None."""
    if not url:
        return None
    joined = absolute_url(xml_safe(url), base.rstrip("/") + "/")
    return joined if joined and urlsplit(joined).scheme in ("http", "https") else None


_TAG_SAFE = re.compile(r"[A-Za-z0-9._~/:@!$&'()*+,;=-]+")


@lru_cache(maxsize=16)
def _host(site_url: str) -> str:
    return (urlsplit(site_url).hostname or "localhost").lower()


def make_guid(site_url: str, published: datetime, source: str, key: str, explicit_id: str | None) -> str:
    """A tag: URI (RFC 4151) fixed at first ingest: it survives URL and title changes.

    The same article in two category feeds has one id, as readers expect.
    """
    host = _host(site_url)
    specific = f"id/{explicit_id}" if explicit_id else f"{source}/{key}"
    if not _TAG_SAFE.fullmatch(specific):
        digest = hashlib.sha1(specific.encode("utf-8", "surrogatepass")).hexdigest()[:20]
        specific = ("id/" if explicit_id else "a/") + digest
    return f"tag:{host},{_utc_day(published)}:{specific}"


def _utc_day(when: datetime) -> str:
    """The UTC day of `when` as strftime's %Y-%m-%d writes it (a year before 1000 unpadded),
    without strftime's ten times slower formatting for the common years."""
    day = when.astimezone(UTC).date()
    return day.isoformat() if day.year >= 1000 else f"{day:%Y-%m-%d}"
