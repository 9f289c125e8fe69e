"""Property: arbitrary Unicode in any field of any article never yields an invalid feed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from feedcheck import assert_json_feed, assert_matches_atom_schema, atom_schema, parse_with_feedparser, parse_xml
from publisher.feeds import FeedLinks, render_feed
from publisher.model import Category, FeedFormat, FeedSpec, Site, SourceItem
from publisher.normalize import CategoryIndex, NormalizeError, TextRules, make_guid, normalize

# Every code point, surrogates and C0/C1 controls included.
ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
ANY_TEXT = st.text(ANY_CHAR, max_size=80)
HTMLISH = st.lists(
    st.one_of(
        ANY_TEXT,
        st.sampled_from(
            [
                "<p>",
                "</p>",
                "<script>",
                "]]>",
                "<![CDATA[",
                "&",
                "&amp;",
                "<a href='",
                "javascript:",
                "'>",
                "<img src=x onerror=y>",
                "<!--",
                "-->",
            ]
        ),
    ),
    max_size=12,
).map("".join)

CATEGORY = Category("科技创新", "tech")
SITE = Site("高新院", "https://www.example.org", "zh-CN", "Asia/Shanghai", "", "")
LINKS = FeedLinks("https://www.example.org")


@st.composite
def items(draw: st.DrawFn) -> SourceItem:
    zone = draw(st.sampled_from([UTC, ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")]))
    published = draw(
        st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(zone))
    )
    return SourceItem(
        source=draw(st.sampled_from(["content", "新闻"])),
        key=draw(ANY_TEXT.filter(bool)),
        title=draw(ANY_TEXT),
        content=draw(HTMLISH),
        markdown=draw(st.booleans()),
        published=published,
        categories=("tech",),
        url=draw(st.one_of(st.none(), ANY_TEXT, st.just("https://www.example.org/a b/新闻.html"))),
        author=draw(st.one_of(st.none(), ANY_TEXT)),
        summary=draw(st.one_of(st.none(), ANY_TEXT)),
        image=draw(st.one_of(st.none(), ANY_TEXT)),
        tags=tuple(draw(st.lists(ANY_TEXT, max_size=3))),
        explicit_id=draw(st.one_of(st.none(), ANY_TEXT.filter(bool))),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(items(), min_size=1, max_size=3), st.sampled_from(["none", "t2s"]))
def test_any_unicode_gives_valid_feeds(raw: list[SourceItem], convert: str) -> None:
    rules = TextRules(convert=convert, summary_length=40)
    articles = []
    for n, item in enumerate(raw):
        try:
            article = normalize(item, CategoryIndex([CATEGORY]), rules, SITE.url)
        except NormalizeError as exc:
            assert exc.reason == "the title is empty"
            continue
        guid = make_guid(SITE.url, article.published, item.source, f"{n}/{item.key}", item.explicit_id)
        articles.append(replace(article, guid=guid + f"#{n}"))
    assume(articles)
    articles.sort(key=lambda a: a.published, reverse=True)
    names = {"tech": "科技创新"}
    schema = atom_schema()
    for scope in (None, CATEGORY):
        rss = render_feed(FeedSpec(FeedFormat.RSS, scope), SITE, LINKS, articles, names)
        atom = render_feed(FeedSpec(FeedFormat.ATOM, scope), SITE, LINKS, articles, names)
        for data in (rss, atom):
            parse_xml(data)
            assert len(parse_with_feedparser(data).entries) == len(articles)
        if schema is not None:  # the schema lives in ../shared; test_build skips loudly without it
            assert_matches_atom_schema(atom, schema)
        feed = assert_json_feed(render_feed(FeedSpec(FeedFormat.JSON, scope), SITE, LINKS, articles, names))
        assert len(feed["items"]) == len(articles)


FRONT_BITS = st.sampled_from(
    [
        "---\n", "title: 标题\n", "date: 2026-05-06 14:00\n", "date: 2026-13-45\n", "category: tech\n",
        "categories: [tech, x]\n", "id: 0123\n", "draft: yes\n", "updated: 2026-05-07\n", "tags: [a\n",
        ": :\n", "title: \"x\n", "...\n", "\ufeff", "\r\n", "- 导航\n", "来源:高新院 日期:2026-04-12 点击:次\n",
        "相关文章推荐:\n", "[`", "<script>", "\x00",
    ]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    suffix=st.sampled_from([".md", ".html", ".txt"]),
    pieces=st.lists(st.one_of(FRONT_BITS, st.text(max_size=20)), max_size=12),
    raw=st.binary(max_size=40),
    encoding=st.sampled_from(["utf-8", "gb18030", "raw"]),
)
def test_any_file_is_read_or_reported_never_crashes(suffix: str, pieces: list[str], raw: bytes, encoding: str) -> None:
    """Whatever a file holds, reading gives an item, a draft (None) or a problem; never an exception."""
    import tempfile
    from pathlib import Path

    from publisher.model import ItemProblem
    from publisher.sources.files import FilesSource

    text = "".join(pieces)
    data = (
        raw
        if encoding == "raw"
        else text.encode(encoding, errors="surrogatepass" if encoding == "utf-8" else "replace")
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tech" / f"a{suffix}"
        path.parent.mkdir()
        path.write_bytes(data)
        result = FilesSource("content", Path(folder), "Asia/Shanghai").read_or_problem(
            str(path), f"tech/a{suffix}", "1:1"
        )
    assert result is None or isinstance(result, (SourceItem, ItemProblem))
    if isinstance(result, SourceItem):
        try:
            normalize(result, CategoryIndex([CATEGORY]), TextRules(convert="t2s"), SITE.url)
        except NormalizeError:
            pass
