"""text.py: pinyin glosses, OpenCC, XML safety, sanitising, summaries, slugs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from publisher.text import (
    convert_script,
    html_to_text,
    remove_pinyin_glosses,
    sanitize_html,
    slugify,
    summarize,
    xml_safe,
)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("高新區(qū)新聞", "高新區新聞"),
        ("院長(zhǎng)", "院長"),
        ("重(zhòng)點項目", "重點項目"),
        ("銀行(háng)業", "銀行業"),
        ("學（xué）習", "學習"),  # full-width parentheses
        ("中国(zhong guo)人", "中国人"),  # toneless, two syllables for two characters
        ("長(zhang3)", "長(zhang3)"),  # tone numbers are not a reading we accept
        ("高新區(qū)與院長(zhǎng)會面", "高新區與院長會面"),
    ],
)
def test_glosses_that_are_readings_go(before: str, after: str) -> None:
    assert remove_pinyin_glosses(before) == after


@pytest.mark.parametrize(
    "text",
    [
        "人工智能(AI)",
        "(2023年)",
        "GDP(国内生产总值)",
        "附件(見附件)",
        "数据(data)平台",
        "高新区(gao)",  # a pinyin-looking word that is not the reading of 区
        "行(xíng)不行(bù)",  # 行 is read xíng; 行(bù) is not a reading
        "Python(派森)",
        "(qū)",  # no character before it
    ],
)
def test_parentheses_that_are_not_glosses_stay(text: str) -> None:
    expected = text.replace("行(xíng)", "行") if "xíng" in text else text
    assert remove_pinyin_glosses(text) == expected


def test_conversion_modes() -> None:
    assert convert_script("高新區新聞 院長", "t2s") == "高新区新闻 院长"
    assert convert_script("高新区新闻", "s2t") == "高新區新聞"
    assert convert_script("高新區新聞", "none") == "高新區新聞"
    assert convert_script("軟體", "tw2s") == "软体"


def test_conversion_after_sanitising_keeps_urls_working() -> None:
    html = '<a href="/新聞/長.html">新聞</a><img src="/圖片.jpg" alt="圖片">'
    out = convert_script(sanitize_html(html, "https://x.org/"), "t2s")
    assert out == (
        '<a href="https://x.org/%E6%96%B0%E8%81%9E/%E9%95%B7.html">新闻</a>'
        '<img src="https://x.org/%E5%9C%96%E7%89%87.jpg" alt="图片">'
    )


def test_xml_safe_drops_only_forbidden_characters() -> None:
    assert xml_safe("a\x00b\x08c\x0bd\x1be\ufffef\ud800g\th\ni\rj") == "abcdefg\th\ni\rj"
    assert xml_safe("中文😀\x7f") == "中文😀\x7f"


def test_xml_safe_keeps_exactly_the_characters_of_xml_1_0() -> None:
    """Every code point, against the Char production as the specification writes it."""

    def allowed(c: int) -> bool:
        return c in (0x9, 0xA, 0xD) or 0x20 <= c <= 0xD7FF or 0xE000 <= c <= 0xFFFD or 0x10000 <= c <= 0x10FFFF

    every = "".join(map(chr, range(0x110000)))
    assert xml_safe(every) == "".join(c for c in every if allowed(ord(c)))


BASE = "https://www.example.org/news/2024/a.html"


def test_sanitize_removes_scripts_handlers_and_javascript_urls() -> None:
    dirty = (
        '<p onclick="steal()" style="color:red">正文<script>alert(1)</script></p>'
        '<a href="javascript:alert(1)">坏</a><a href="JaVaScRiPt:alert(1)">坏2</a>'
        '<iframe src="https://evil.example"></iframe><img src="x.jpg" onerror="alert(1)">'
        "<style>p{}</style>"
    )
    clean = sanitize_html(dirty, BASE)
    for bad in ("script", "onclick", "onerror", "javascript", "iframe", "style", "alert"):
        assert bad not in clean.lower()
    assert "正文" in clean
    assert '<img src="https://www.example.org/news/2024/x.jpg">' in clean


def test_sanitize_makes_links_and_images_absolute() -> None:
    html = (
        '<a href="../b.html">上一篇</a><a href="/files/r.pdf">下载</a><a href="#top">顶部</a>'
        '<a href="mailto:x@example.org">信</a><img src="images/s.jpg" alt="图">'
        '<img data-src="/lazy.jpg" src="data:image/gif;base64,R0lGOD">'
    )
    clean = sanitize_html(html, BASE)
    assert 'href="https://www.example.org/news/b.html"' in clean
    assert 'href="https://www.example.org/files/r.pdf"' in clean
    assert 'href="#top"' in clean
    assert 'href="mailto:x@example.org"' in clean
    assert 'src="https://www.example.org/news/2024/images/s.jpg"' in clean
    assert 'src="https://www.example.org/lazy.jpg"' in clean


def test_html_to_text() -> None:
    html = "<p>AT&amp;T 与 <b>中国移动</b>&nbsp;合作</p><p>第二段</p>"
    assert html_to_text(html) == "AT&T 与 中国移动 合作第二段"  # spaces inside a paragraph stay


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>参加会议。</p>\n<p>会议指出，要加快。</p>", "参加会议。会议指出，要加快。"),  # after CJK punctuation
        ("<h2>高新院新闻</h2><p>院长出席大会</p>", "高新院新闻院长出席大会"),  # between two CJK characters
        ("<p>他说：“好。”</p><p>“下一步”怎么走</p>", "他说：“好。”“下一步”怎么走"),  # quotes side with their text
        ("<p>会议结束。</p><p>Apple 发布新品</p>", "会议结束。Apple 发布新品"),  # after 。 even before Latin
        ("<p>First paragraph.</p><p>Second one</p>", "First paragraph. Second one"),  # Latin keeps its space
        ("<p>研究院</p><p>Apple Inc.</p><p>发布</p>", "研究院 Apple Inc. 发布"),  # CJK beside Latin: a space
        ("<p>He said “yes.”</p><p>“No,” she said</p>", "He said “yes.” “No,” she said"),
        ("第一行<br>第二行<br/>third<br>line", "第一行第二行 third line"),
        ("<p>서울 시청</p><p>회의</p>", "서울 시청 회의"),  # Korean puts spaces between words
    ],
)
def test_paragraphs_join_as_their_language_writes(html: str, text: str) -> None:
    assert html_to_text(html) == text


CJK_CHAR = st.sampled_from("参加会议指出高新院研究产业发展科技创新")
CJK_INNER = st.text(st.sampled_from("参加会议指出高新院研究。，、：；！？（）《》“”"), max_size=12)
CJK_PARAGRAPH = st.builds(lambda a, inner, b: a + inner + b, CJK_CHAR, CJK_INNER, st.sampled_from("究展新。！？）》"))
LATIN_WORDS = st.from_regex(r"[A-Za-z][A-Za-z ,.]{0,20}[A-Za-z.]", fullmatch=True)
LATIN_PARAGRAPH = LATIN_WORDS.map(lambda t: " ".join(t.split()))


@given(st.lists(CJK_PARAGRAPH, min_size=1, max_size=6))
def test_chinese_paragraphs_join_without_a_space(paragraphs: list[str]) -> None:
    assert html_to_text("\n".join(f"<p>{p}</p>" for p in paragraphs)) == "".join(paragraphs)


@given(st.lists(LATIN_PARAGRAPH, min_size=1, max_size=6))
def test_latin_paragraphs_join_with_a_space(paragraphs: list[str]) -> None:
    assert html_to_text("".join(f"<p>{p}</p>" for p in paragraphs)) == " ".join(paragraphs)


@given(st.lists(st.one_of(CJK_PARAGRAPH, LATIN_PARAGRAPH), min_size=1, max_size=6))
def test_joining_paragraphs_changes_nothing_but_spaces_between_them(paragraphs: list[str]) -> None:
    text = html_to_text("<br>".join(paragraphs))
    assert text.replace(" ", "") == "".join(paragraphs).replace(" ", "")
    assert "。 " not in text and "， " not in text  # no paragraph here has a space after its CJK punctuation


def test_a_summary_of_chinese_paragraphs_reads_as_chinese() -> None:
    from publisher.model import Category, SourceItem
    from publisher.normalize import CategoryIndex, TextRules, normalize

    body = "<p>高新院召开年度工作会议。</p><p>会议指出，要以科技创新引领产业发展。</p><p>Next: 2027.</p>"
    item = SourceItem("s", "k", "标题", body, datetime(2026, 11, 20, tzinfo=UTC), default_category="tech")
    rules = TextRules(summary_length=200)
    article = normalize(item, CategoryIndex([Category("科技创新", "tech")]), rules, "https://www.example.org")
    assert article.summary == "高新院召开年度工作会议。会议指出，要以科技创新引领产业发展。Next: 2027."


def test_summary_counts_graphemes_not_words() -> None:
    text = "家庭👨‍👩‍👧‍👦出游指南🇨🇳：今年国庆假期，全国各地迎来出游高峰，很多家庭选择自驾出行。"
    short = summarize(text, 20)
    assert short.endswith("…")
    assert "👨‍👩‍👧‍👦" in short  # the family emoji kept whole
    assert "\u200d" != short[-2]
    import regex

    assert len(regex.findall(r"\X", short)) <= 20


def test_summary_prefers_sentence_end_and_keeps_short_text() -> None:
    assert summarize("短文。", 20) == "短文。"
    text = "第一句话在这里结束。" + "第二句话很长很长" * 5
    assert summarize(text, 12) == "第一句话在这里结束。"


def test_summary_never_splits_a_latin_word() -> None:
    text = "高新院发布报告 Innovation" + "x" * 50
    cut = summarize(text, 12)
    assert cut == "高新院发布报告…"


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("政策解读", "zheng-ce-jie-du"),
        ("高新院新闻", "gao-xin-yuan-xin-wen"),
        ("高新区新闻", "gao-xin-qu-xin-wen"),
        ("区域经济研究", "qu-yu-jing-ji-yan-jiu"),
        ("行业洞见", "hang-ye-dong-jian"),
        ("一带一路新闻", "yi-dai-yi-lu-xin-wen"),
        ("智慧城市news", "zhi-hui-cheng-shi-news"),
        ("Ｃ＋＋", "c-plus-plus"),
        ("AI 人工智能", "ai-ren-gong-zhi-neng"),
    ],
)
def test_slugs(name: str, slug: str) -> None:
    assert slugify(name) == slug


@pytest.mark.parametrize(
    "unit",
    ["漢\u302a", "e\u0301", "ｶﾞ", "🇨🇳", "👍🏽", "각"],  # a CJK tone mark, a combining accent, half-width kana
)
def test_summary_never_splits_a_grapheme(unit: str) -> None:
    import regex

    text = "开头" + unit * 40
    cut = summarize(text, 11)
    assert cut.endswith("…")
    body = cut[:-1]
    assert regex.findall(r"\X", body)[-1] in (unit, "头"), body
    assert len(regex.findall(r"\X", cut)) <= 11


def test_srcset_and_links_without_a_base_still_refuse_bad_schemes() -> None:
    html = '<picture><source srcset="javascript:alert(1) 1x, /ok.jpg 2x"></picture><a href="/rel">r</a>'
    clean = sanitize_html(html, None)
    assert "javascript" not in clean and "/ok.jpg 2x" in clean and 'href="/rel"' in clean


_RUNS = st.text(alphabet=st.sampled_from(list("高新区政策解读abcXYZ019-\n")), min_size=1, max_size=40)
_MARKS = st.sampled_from(list(" ，、,：:。！？；!?;…」』”）)"))


@given(
    st.lists(st.one_of(_RUNS, _MARKS), max_size=12).map("".join),
    st.integers(min_value=1, max_value=150),
    st.sampled_from(["…", "...", ""]),
)
@example("高" * 14 + "。" + "新" * 20, 21, "…")  # a full stop just before the last quarter: not used
@example("高" * 15 + "。" + "新" * 20, 21, "…")  # the first place in it
@example("高" * 19 + "，" + "新" * 20, 21, "…")  # the last place in it
def test_cutting_a_string_of_single_code_point_graphemes_is_cutting_its_clusters(
    text: str, limit: int, ellipsis: str
) -> None:
    from publisher.text import _cut_chars, _cut_clusters

    assert _cut_chars(text, limit, ellipsis) == _cut_clusters(text, list(text[: limit + 1]), limit, ellipsis)
