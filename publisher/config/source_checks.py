"""The meaning checks of `[[sources]]`: the categories they name, their URLs, url_template, the
html source's selectors, patterns and per-category overrides, the json source's paging."""

from __future__ import annotations

import re
import string

from .addresses import http_url
from .settings import CategoryConfig
from .sources import FeedSourceConfig, HtmlSourceConfig, JsonSourceConfig, SourceConfig, WordPressSourceConfig


def check_sources(
    sources: list[tuple[int, SourceConfig]], known: set[str], categories: list[CategoryConfig]
) -> list[tuple[str, str, str]]:
    """Each source's problems; `known`: every category name and slug a source may name."""
    problems: list[tuple[str, str, str]] = []
    for i, source in sources:
        if source.default_category and source.default_category not in known:
            with_category = FeedSourceConfig | JsonSourceConfig | WordPressSourceConfig
            field = "category" if isinstance(source, with_category) else "default_category"
            problems.append(
                (
                    f"sources[{i}].{field}",
                    f"{source.default_category!r} is not a configured category",
                    "use the name or slug of one of the [[categories]]",
                )
            )
        if source.url_template:
            problems += _url_template(f"sources[{i}].url_template", source.url_template)
        if isinstance(source, FeedSourceConfig):
            problems += http_url(f"sources[{i}].url", source.url, "https://other.example.org/feed.xml")
        if isinstance(source, HtmlSourceConfig):
            problems += _check_html(i, source, known, categories)
        if isinstance(source, WordPressSourceConfig):
            problems += http_url(f"sources[{i}].url", source.url, "https://blog.example.org")
            for wp_slug, ours in source.categories.items():
                if ours not in known:
                    fix = "map it to the name or slug of one of the [[categories]]"
                    problems.append(
                        (f"sources[{i}].categories.{wp_slug}", f"{ours!r} is not a configured category", fix)
                    )
        if isinstance(source, JsonSourceConfig):
            problems += http_url(f"sources[{i}].url", source.url, "https://cms.example.org/api/articles?page={page}")
            wanted = {"page": "{page}", "offset": "{offset}"}.get(source.paging.kind)
            if wanted and wanted not in source.url:
                problems.append((f"sources[{i}].url", f"has no {wanted} for paging.kind {source.paging.kind!r}",
                                 f'put {wanted} where the page goes, or set paging.kind = "none"'))  # fmt: skip
            if source.paging.kind == "next" and not source.paging.next:
                problems.append((f"sources[{i}].paging.next", "missing", 'the path to the next URL, e.g. "links.next"'))
    return problems


def _check_html(
    i: int, source: HtmlSourceConfig, known: set[str], categories: list[CategoryConfig]
) -> list[tuple[str, str, str]]:
    from cssselect import SelectorError, parse

    problems: list[tuple[str, str, str]] = []
    for category, urls in source.list.pages.items():
        if category not in known:
            fix = "use the name or slug of one of the [[categories]]"
            problems.append((f"sources[{i}].list.pages", f"{category!r} is not a configured category", fix))
        if not urls:
            fix = "give its first list page's URL, or take the category out of list.pages"
            problem = "no list page: the category would read nothing"
            problems.append((f"sources[{i}].list.pages.{category}", problem, fix))
        for url in urls:
            problems += http_url(f"sources[{i}].list.pages.{category}", url, "https://www.example.org/news/list_1.html")
    selectors = [("list.links", source.list.links), ("list.next", source.list.next)]
    for key in source.list.matched_overrides(category_labels(categories))[1] if source.list.overrides else ():
        fix = f"name one of the categories of [sources.list] pages: {', '.join(source.list.pages)}"
        problems.append((f"sources[{i}].list.overrides.{key}", f"{key!r} is not a category of list.pages", fix))
    for key, override in source.list.overrides.items():
        selectors += [(f"list.overrides.{key}.links", override.links), (f"list.overrides.{key}.next", override.next)]
        if override.url_pattern and "{page}" not in override.url_pattern:
            fix = 'write it like ".../list_{page}.html"'
            problems.append((f"sources[{i}].list.overrides.{key}.url_pattern", "has no {page}", fix))
    selectors += [(f"article.{k}", getattr(source.article, k)) for k in ("title", "body", "meta", "author")]
    for key, selector in selectors:
        if selector:
            try:
                parse(selector)
            except SelectorError as exc:
                problems.append((f"sources[{i}].{key}", f"{selector!r} is not a CSS selector: {exc}", ""))
    for key in ("date", "source"):
        pattern = getattr(source.article, key)
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                fix = "write it in single quotes in TOML: date = '日期[:：]\\s*(\\S+)'"
                problems.append((f"sources[{i}].article.{key}", f"not a regular expression: {exc}", fix))
    if source.list.url_pattern and "{page}" not in source.list.url_pattern:
        problems.append((f"sources[{i}].list.url_pattern", "has no {page}", 'write it like ".../list_{page}.html"'))
    return problems


def category_labels(categories: list[CategoryConfig]) -> dict[str, str]:
    """Each category's name and slug (configured, else its pinyin) -> its name."""
    from ..text import slugify

    return {label: c.name for c in categories for label in (c.name, c.slug or slugify(c.name))}


def _url_template(key: str, template: str) -> list[tuple[str, str, str]]:
    fix = 'write it like "https://www.example.org/news/{path}.html" ({path} and {stem} only)'
    try:
        fields = {name for _text, name, _spec, _conv in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        return [(key, f"is not a template: {exc}", fix)]
    if not fields & {"path", "stem"} or fields - {"path", "stem"}:
        return [(key, f"uses {sorted(fields) or 'no placeholder'}", fix)]
    return []
