"""`publisher check`'s look at a theme: every template rendered once with sample values.

Compiling (theme.check_theme) finds syntax errors; only rendering finds a misspelt variable, a
digest template that lost its split markers or its unsubscribe link. Each problem names the
file and line it comes from, so the operator fixes the theme before a digest goes out.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .digest import Look, Personal, Renderer, render_account, render_welcome
from .feeds import FeedLinks
from .model import CADENCES, DAILY, Article, Category
from .pages import render_category, render_index
from .scripts import LABELS, SCRIPTS

SAMPLE_NOW = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)


def theme_problems(look: Look, categories: Sequence[Category], links: FeedLinks, subscribe_url: str) -> list[str]:
    """One line per surface that fails to render with the theme: `file, line N: what`."""
    theme = look.theme
    if theme.templates is None:
        return []
    surfaces: list[tuple[str, Callable[[], None]]] = [
        ("digest", lambda: _digest(look, categories)),
        ("sign-up e-mails", lambda: _account(look)),
        ("index.html", lambda: _index(look, categories, links, subscribe_url)),
        ("category pages", lambda: _category(look, categories, links, subscribe_url)),
        ("subscription pages", lambda: _pages(look, categories)),
        ("digest archive", lambda: _archive(look, categories, links, subscribe_url)),
    ]
    problems = []
    for surface, render in surfaces:
        try:
            render()
        except Exception as exc:  # noqa: BLE001 - any failure of an operator's template is reported
            problems.append(f"theme ({surface}): {_located(exc, theme.templates)}")
    return problems


def sample_articles(categories: Sequence[Category]) -> list[Article]:
    """Two articles a category, with every optional field filled, as the digest shows them."""
    articles = []
    for n, category in enumerate(categories):
        for k in range(2):
            published = SAMPLE_NOW - timedelta(days=1, hours=n + k)
            articles.append(
                Article(
                    "sample",
                    f"{category.slug}-{k}",
                    f"tag:example.org,2026:{category.slug}-{k}",
                    f"{category.name}：示例文章 {k + 1}",
                    "<p>示例正文。</p>",
                    "示例摘要：文章开头的几句话。",
                    published,
                    published,
                    (category.slug,),
                    "0" * 64,
                    url=f"https://www.example.org/{category.slug}/{k}.html",
                    author="示例作者",
                )  # fmt: skip
            )
    return articles


def _digest(look: Look, categories: Sequence[Category]) -> None:
    archive_url = "https://www.example.org/digests/2026-w50/"
    for cadence in CADENCES:  # each cadence's words (the daily subject is the catalogue's own)
        articles = sample_articles(categories)
        renderer = Renderer(look, categories, articles, SAMPLE_NOW, archive_url=archive_url, cadence=cadence)
        other = next(s for s in SCRIPTS if s != look.scripts.site)
        draft = renderer.draft((), other if cadence == DAILY else None)  # a converted one too
        assert draft is not None
        renderer.personal(draft, Personal("示例读者", "https://example.org/unsubscribe/x", "https://example.org/p/x"))
        for part, name in ((draft.html[2], "digest.html.j2"), (draft.text[2], "digest.txt.j2")):
            if renderer.markers["unsubscribe"] not in part:
                raise ValueError(f"{name} has no unsubscribe_url after its second split marker: every digest needs one")


def _account(look: Look) -> None:
    for confirming in (True, False):
        render_account(look, confirming, "https://example.org/confirm/sample-token")
    render_welcome(
        look, ["政策解读"], "https://example.org/preferences/sample", "https://example.org/unsubscribe/sample"
    )


def _index(look: Look, categories: Sequence[Category], links: FeedLinks, subscribe_url: str) -> None:
    render_index(look.site, links, categories, look.theme, subscribe_url)


def _category(look: Look, categories: Sequence[Category], links: FeedLinks, subscribe_url: str) -> None:
    articles = sample_articles(categories)
    for category in categories[:1]:
        render_category(look.site, links, category, articles, look.theme, subscribe_url)
    if categories:
        render_category(look.site, links, categories[0], [], look.theme)  # no articles yet, no sign-up page


def _archive(look: Look, categories: Sequence[Category], links: FeedLinks, subscribe_url: str) -> None:
    from .archive import (
        ArchiveEntry,
        ArchiveLinks,
        archive_sections,
        render_archive_feed,
        render_archive_index,
        render_page,
        render_stylesheet,
    )

    where = ArchiveLinks(links.base_url, subscribe_url)
    entry = ArchiveEntry("sample", "2026-w50", SAMPLE_NOW - timedelta(days=7), SAMPLE_NOW, "ingested", SAMPLE_NOW)
    articles = sample_articles(categories)
    render_page(look, where, entry, categories, articles)
    render_archive_index(look, where, [entry])
    render_stylesheet(look)
    render_archive_feed(look, where, [(entry, archive_sections(look, categories, articles))])


def _pages(look: Look, categories: Sequence[Category]) -> None:
    words = look.theme.messages(look.site.language)["pages"]
    env = look.theme.environment
    base = {
        "t": words, "theme": look.theme.context(), "language": look.site.language, "list_name": look.list_name,
        "site_title": look.site.title, "site_url": look.site.url, "feeds_url": "/",
    }  # fmt: skip
    chosen = {categories[0].slug} if categories else set()
    choices = {
        "offered": {"scripts": list(SCRIPTS), "cadences": list(CADENCES)},
        "script_labels": LABELS,
        "chosen_script": SCRIPTS[0],
        "chosen_cadence": CADENCES[0],
    }  # every choice shown, as it can be
    pages = {
        "subscribe.html.j2": {"csrf": "token", "email": "reader@example.org", "name": "示例读者", "error": "示例",
                              "categories": categories, **choices},
        "action.html.j2": {"title": words["confirm"], "body": words["confirm_body"], "button": words["confirm"],
                           "details": [(words["email"], ["reader@example.org"]), (words["confirm_name"], ["—"])]},
        "message.html.j2": {"title": words["confirmed"], "body": words["confirmed_body"], "manage": "/p/x",
                            "again": True},
        "preferences.html.j2": {"title": words["preferences"], "body": words["preferences_body"],
                                "categories": categories, "chosen": chosen, "saved": True, "subscribed": True,
                                **choices},
    }  # fmt: skip
    for name, context in pages.items():
        env.get_template(f"web/{name}").render(**base, **context)


def _located(exc: Exception, folder: Path) -> str:
    """The exception's message, prefixed with the theme file and line it was raised in."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename)
        if path.suffix == ".j2" and path.resolve().is_relative_to(folder.resolve()):
            where = f"{path}, line {frame.lineno}: "
            break
    return f"{where}{exc.__class__.__name__}: {exc}"
