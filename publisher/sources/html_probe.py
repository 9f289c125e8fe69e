"""`publisher check` for the `html` source: what each category's first list page and one sample
article show, selector by selector, so a wrong selector is found before a crawl.

Per category: the list URL, how many elements the links selector matched and how many
distinct articles they lead to (a picture link and a title link to one article count once),
and whether a next page was found, with a warning when the next selector found nothing on a
page that has a pager. For the first article read: its title, date, author, source, body
length and the start of its body, and what each selector and regular expression matched,
with a warning for a selector that matched several elements where one was meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import SourceError
from ..model import ItemProblem, ScopeRead, Unchanged
from . import failed_part_message
from .html_article import ArticleRead, Match, body_text
from .http import RunOutOfTime

if TYPE_CHECKING:
    from .html import HtmlSource, ListPage, Walk

INDENT = "  "


@dataclass
class Inspection:
    """What `check` shows of one html source: `note` to print; `problems` (each with its URL
    and hint), `failed` (categories that could not be read, worded as `build` words them),
    `readable` sample articles."""

    note: str = ""
    problems: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    readable: int = 0
    skipped: int = 0


def inspect(source: HtmlSource) -> Inspection:
    from .html import no_links

    result = Inspection()
    lines = [f"{source.name}: html, {len(source.lists.pages)} categor{'y' if len(source.lists.pages) == 1 else 'ies'}"]
    sample: tuple[str, str] | None = None  # (article URL, category)
    for category, first_pages in source.lists.pages.items():
        walk = source.lists.walk_for(category)
        for url in first_pages:
            lines.append(f"{INDENT}{category}: {url}")
            try:
                page = source.read_list_page(url, walk, 1)
            except RunOutOfTime:
                raise
            except SourceError as exc:
                lines.append(f"{INDENT * 2}failed: {exc.message} (see below)")
                result.failed.append(failed_part_message(source.name, ScopeRead(category, url, exc.message, exc.hint)))
                continue
            assert page is not None  # check asks without validators: never a 304
            lines += _list_lines(page, walk)
            if not page.links:
                lines.append(f"{INDENT * 2}failed: no article links (see below)")
                result.failed.append(failed_part_message(source.name, no_links(category, url, walk)))
            elif sample is None:
                sample = (page.links[0], category)
    if sample is not None:
        lines.append(f"{INDENT}sample article ({sample[1]}): {sample[0]}")
        read = source.read(sample[0], conditional=False)
        if isinstance(read, ItemProblem):
            lines.append(f"{INDENT * 2}failed: {read.reason} (see below)")
            result.problems.append(str(read))
            result.skipped += 1
        elif not isinstance(read, Unchanged):
            lines += _article_lines(read, source, result)
    result.note = "\n".join(lines)
    return result


def _list_lines(page: ListPage, walk: Walk) -> list[str]:
    pad = INDENT * 2
    lines = [f"{pad}links {_quoted(walk.links)} matched {_elements(page.matched)}: {len(page.links)} distinct articles"]
    if page.other_hosts:
        hosts = ", ".join(dict.fromkeys(urlsplit(link).hostname or "" for link in page.other_hosts))
        count = len(page.other_hosts)
        lines.append(
            f"{pad}{count} link{'s' if count > 1 else ''} to other hosts left out ({hosts}): "
            f"add the host to `hosts` on this source to follow {'them' if count > 1 else 'it'}"
        )
    if walk.url_pattern:
        lines.append(f"{pad}next page by url_pattern: {page.next_url}")
    elif not walk.next:
        lines.append(f"{pad}next: not set, so only this page is read")
    elif page.next_url:
        lines.append(f"{pad}next {_quoted(walk.next)} matched {_elements(page.next_matched)}: {page.next_url}")
    else:
        lines.append(f"{pad}next {_quoted(walk.next)} matched {_elements(page.next_matched)}: no next page")
        if page.pager is not None:
            from .html import wrong_next

            problem = wrong_next(page.url, walk, page.pager)
            lines.append(f"{pad}warning: {problem.reason} ({problem.hint})")
    return lines


def _article_lines(read: ArticleRead, source: HtmlSource, result: Inspection) -> list[str]:
    pad = INDENT * 2
    lines: list[str] = []
    matches = {m.key: m for m in read.matches}
    rules = source.rules
    title = matches.get("title")
    if title is not None:
        lines.append(f"{pad}title {_quoted(title.rule)} matched {_elements(title.count)}{_took(title)}: {read.title}")
        if title.count > 1:
            lines.append(f"{pad}warning: {_several(title, read)}")
    body = matches.get("body")
    words = body_text(read.body) if read.body else ""
    shown = f"{len(words)} characters: {words[:80]}" + ("…" if len(words) > 80 else "")
    if body is not None:
        lines.append(f"{pad}body {_quoted(body.rule)} matched {_elements(body.count)}: {shown}")
    elif read.problem is None or read.body:
        lines.append(f"{pad}body (found by readability): {shown}")
    meta = matches.get("meta")
    if meta is not None:
        lines.append(f"{pad}meta {_quoted(meta.rule)} matched {_elements(meta.count)}: {' '.join(meta.texts)}")
        if meta.count > 1:
            lines.append(f"{pad}warning: {_several(meta, read)}")
    for key in ("date", "source"):
        found = matches.get(key)
        if found is not None:
            value = (read.published.isoformat(" ") if key == "date" and read.published else found.texts[0]) if (
                found.count) else ""  # fmt: skip
            where = f" in the {found.where}" if found.count else " nothing"
            lines.append(
                f"{pad}{key} {_quoted(found.rule, regex=True)} matched{where}" + (f": {value}" if value else "")
            )
            if not found.count and key == "source":
                result.problems.append(
                    f"{read.url}: the source regex {_quoted(found.rule, regex=True)} matched nothing in the "
                    f"meta text, converted or not ([sources.article] source; meta: {_quoted(rules.meta or 'the page')})"
                )
        elif key == "date" and read.published is not None:
            lines.append(f"{pad}date (the first date in the meta text): {read.published.isoformat(' ')}")
    author = matches.get("author")
    if author is not None:
        lines.append(
            f"{pad}author {_quoted(author.rule)} matched {_elements(author.count)}{_took(author)}"
            + (f": {read.author}" if read.author else "")
        )
        if author.count == 0:
            result.problems.append(
                f"{read.url}: the author selector {_quoted(author.rule)} matched nothing "
                "(check [sources.article] author, or leave it out to show the source as the author)"
            )
        elif author.count > 1:
            lines.append(f"{pad}warning: {_several(author, read)}")
    elif read.problem is None:
        lines.append(f"{pad}author: no selector, the source is shown: {read.source or '(none)'}")
    if read.problem is not None:
        reason, hint = read.problem
        result.problems.append(f"{read.url}: {reason}" + (f" ({hint})" if hint else ""))
        result.skipped += 1
        lines.append(f"{pad}the article would be skipped: {reason} (see below)")
    else:
        result.readable += 1
    return lines


def _several(match: Match, read: ArticleRead) -> str:
    """A selector that matched several elements where one was meant, with a narrower one to try."""
    shown = ", ".join(f"“{t}”" for t in match.texts)
    better = _narrower(read, match.rule)
    hint = f", e.g. {_quoted(better)}" if better else ""
    return f"{match.key} {_quoted(match.rule)} matched {match.count} elements ({shown}): the first is taken; " \
        f"make it match the article's own only{hint}"  # fmt: skip


def _narrower(read: ArticleRead, selector: str) -> str | None:
    """A selector for the last element `selector` matches, by its nearest ancestor with a class
    or id, when it matches that one element only (the article's own title follows the logo)."""
    tree: Any = read.tree
    if tree is None:
        return None
    found = tree.cssselect(selector)
    if len(found) < 2:
        return None
    for ancestor in found[-1].iterancestors():
        if ancestor.get("id"):
            candidate = f"#{ancestor.get('id').split()[0]} {selector}"
        elif ancestor.get("class"):
            candidate = f"{ancestor.tag}.{ancestor.get('class').split()[0]} {selector}"
        else:
            continue
        try:
            if len(tree.cssselect(candidate)) == 1:
                return candidate
        except Exception:  # noqa: BLE001 - an odd class name cssselect cannot parse
            return None
    return None


def _took(match: Match) -> str:
    return ", took the first" if match.count > 1 else ""


def _elements(count: int) -> str:
    return "nothing" if count == 0 else f"{count} element{'s' if count > 1 else ''}"


def _quoted(rule: str, regex: bool = False) -> str:
    """A selector or regex as it would be written in the TOML file."""
    if regex or '"' in rule or "\\" in rule:
        return f"'{rule}'"
    return f'"{rule}"'
