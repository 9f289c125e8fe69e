"""normalize: one place where an item becomes an article."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from publisher.markdown import as_sanitised, is_own_markup, render_markdown
from publisher.model import Category, SourceItem
from publisher.normalize import CategoryIndex, NormalizeError, TextRules, make_guid, normalize
from publisher.text import sanitize_html, xml_safe

INDEX = CategoryIndex([Category("科技创新", "tech"), Category("政策解读", "policy")])
WHEN = datetime(2026, 5, 6, 6, 0, tzinfo=UTC)


def item(**changes: object) -> SourceItem:
    base: dict[str, object] = {
        "source": "content", "key": "tech/a.md", "title": "标题", "content": "<p>正文</p>",
        "published": WHEN, "folder": "tech",
    }  # fmt: skip
    return SourceItem(**(base | changes))  # type: ignore[arg-type]


def test_lone_surrogates_do_not_reach_opencc() -> None:
    # Found by the property test: OpenCC raised UnicodeEncodeError on '\ud800'.
    article = normalize(
        item(title="高新區\ud800", content="<p>\ud800正文</p>"), INDEX, TextRules("t2s"), "https://x.org"
    )
    assert article.title == "高新区" and article.content_html == "<p>正文</p>"


def test_unknown_category_names_the_known_ones() -> None:
    with pytest.raises(NormalizeError) as caught:
        normalize(item(categories=("体育",)), INDEX, TextRules(), "https://x.org")
    assert caught.value.reason == "unknown category '体育'" and "科技创新, 政策解读" in caught.value.hint


def test_categories_by_name_or_slug_once_each() -> None:
    article = normalize(item(categories=("政策解读", "tech", "policy")), INDEX, TextRules(), "https://x.org")
    assert article.categories == ("policy", "tech")


def test_content_hash_follows_what_readers_see() -> None:
    a = normalize(item(), INDEX, TextRules(), "https://x.org")
    assert (
        normalize(item(fingerprint="other", location="/elsewhere"), INDEX, TextRules(), "https://x.org").content_hash
        == a.content_hash
    )
    assert normalize(item(title="新标题"), INDEX, TextRules(), "https://x.org").content_hash != a.content_hash


@pytest.mark.parametrize(
    ("key", "explicit", "expected"),
    [
        ("tech/a.md", None, "tag:www.example.org,2026-05-06:content/tech/a.md"),
        ("tech/a.md", "news-1", "tag:www.example.org,2026-05-06:id/news-1"),
        ("科技/文章.md", None, "tag:www.example.org,2026-05-06:a/"),
        ("a b.md", None, "tag:www.example.org,2026-05-06:a/"),
    ],
)
def test_guids_are_valid_tag_uris(key: str, explicit: str | None, expected: str) -> None:
    import re

    guid = make_guid("https://WWW.example.org/news", WHEN, "content", key, explicit)
    assert guid.startswith(expected)
    # The W3C Feed Validator's own pattern for tag: URIs.
    assert re.match(r"^tag:[a-z0-9\.\-]+?,\d{4}(-\d{2}(-\d{2})?)?:[0-9a-zA-Z;/\?:@&=+$\.\-_!~*'\(\)%,]*$", guid)


def test_guid_of_a_key_with_undecodable_bytes() -> None:
    # Found by the property test: a file name with bytes that are not UTF-8 reaches us as
    # lone surrogates (surrogateescape); the guid must still be made.
    guid = make_guid("https://www.example.org", WHEN, "content", "tech/\udcff.md", None)
    assert guid.startswith("tag:www.example.org,2026-05-06:a/") and guid.isascii()


def test_lone_surrogates_do_not_reach_the_markdown_renderer() -> None:
    # Found by the property test: markdown-it-pyrs (Rust) refuses to encode '\ud800'.
    article = normalize(item(content="# 标题\ud800\n\n正文", markdown=True), INDEX, TextRules(), "https://x.org")
    assert article.content_html == "<h1>标题</h1>\n<p>正文</p>"


@pytest.mark.parametrize("body", ["[`", "正文 [链接`代码", "a\n\n[`x`]("])
def test_markdown_the_rust_renderer_panics_on_still_renders(body: str) -> None:
    # Found by the property test: markdown-it-pyrs panics on "[`" (a BaseException in Python).
    article = normalize(item(content=body, markdown=True), INDEX, TextRules(), "https://x.org")
    assert article.content_html.startswith("<p>") and "[" in article.content_html


_MARKDOWN_TOKENS = [
    "[", "](", ")", "![", "`", "```py\n", "**", "_", "# ", "- ", "3. ", "> ", "|", "|:-|", "---", "~~",
    "\n", "\n\n", " ", "  \n", "\\", ":", "/", "a.b", "http://x.y", "javascript:x", "\"", "'", "=",
    "高新區(qū)", "政策，", "。", "aZ9", "\xa0", "    code", "1) ", "* * *", "<", "&", "&amp;", "&nbsp;",
    "\x00", "\x01", "\r", "\ud800", "\ufffe", "<script>", "<b>", "<http://x.y>",
]  # fmt: skip
MARKDOWN_ISH = st.lists(st.sampled_from(_MARKDOWN_TOKENS), max_size=40).map("".join)


@given(MARKDOWN_ISH)
def test_markdown_that_skips_the_sanitiser_is_markup_the_sanitiser_keeps_as_it_is(body: str) -> None:
    """Plain Markdown skips nh3 (text.is_own_markup); whatever it renders to, nh3 would have
    kept every tag, attribute and character of it, and written it the same way."""
    html = render_markdown(xml_safe(body))
    assume(is_own_markup(xml_safe(body), html))
    assert as_sanitised(html) == sanitize_html(html, "https://x.org/")  # the very same text
    assert xml_safe(html) == html  # nothing outside XML's characters either


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("正文[链接](/a/b.html)", '<p>正文<a href="https://x.org/a/b.html">链接</a></p>'),
        ("[坏](javascript:alert(1))", "<p>[坏](javascript:alert(1))</p>"),
        ("正文<script>x()</script>", "<p>正文</p>"),
        ("&#1;&lt;b&gt;", "<p>\ufffd&lt;b&gt;</p>"),  # CommonMark: U+FFFD for an invalid reference
        ("**粗体** 与 `代码`", "<p><strong>粗体</strong> 与 <code>代码</code></p>"),
    ],
)
def test_markdown_with_links_html_or_references_is_sanitised(body: str, expected: str) -> None:
    article = normalize(item(content=body, markdown=True, url="https://x.org/"), INDEX, TextRules(), "https://x.org")
    assert article.content_html == expected


def test_plain_markdown_gives_the_html_the_sanitiser_would_have_written() -> None:
    body = '他说"好"  \n下一行\xa0有空格\n\n---\n\n|甲|乙|\n|-|-|\n|丙|丁|\n'
    article = normalize(item(content=body, markdown=True), INDEX, TextRules(), "https://x.org")
    assert article.content_html == sanitize_html(render_markdown(body), "https://x.org/")
    assert '"好"<br>' in article.content_html and "<hr>" in article.content_html


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (">" * 100_000 + " x", "line 1 of the body nests quotes or lists more than 100 deep"),
        ("第一段\n\n" + "> - " * 50 + "x", "line 3 of the body nests"),
        ("1. " * 100 + "x", "line 1 of the body nests"),
        ("-\t" * 100 + "x", "line 1 of the body nests"),
        ("字" * 1_000_001, "more than 1,000,000"),
        ("*a " * 120_000 + "b" + "*" * 120_000, "240,000 emphasis and link markers"),  # segfaulted
        ("[" * 30_000 + "a" + "]" * 30_000, "30,000 emphasis and link markers"),
        ("~~a " * 15_000 + "b", "30,000 emphasis and link markers"),
    ],
)
def test_markdown_beyond_the_limits_is_refused_before_rendering(body: str, reason: str) -> None:
    """Issue 17, item 12: 100,000 nested `>` overflowed markdown-it-pyrs's stack and killed the
    process (docs/content.md: the limits)."""
    item = SourceItem("s", "deep.md", "标题", body, datetime(2026, 1, 1, tzinfo=UTC), markdown=True, folder="tech")
    with pytest.raises(NormalizeError, match=reason):
        normalize(item, INDEX, TextRules(), "https://x.org")


@pytest.mark.parametrize(
    "body",
    [
        "-" * 500,
        "*" * 500,
        "* " * 60,
        "*a* _b_ [c](d) " * 4_000,
        "> " * 99 + "x",
        "1. " * 99 + "x",
        "a - b - c " * 200,
        "字" * 1_000_000,
    ],
)
def test_markdown_within_the_limits_renders(body: str) -> None:
    item = SourceItem("s", "ok.md", "标题", body, datetime(2026, 1, 1, tzinfo=UTC), markdown=True, folder="tech")
    assert normalize(item, INDEX, TextRules(), "https://x.org").content_html
