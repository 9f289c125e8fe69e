"""publisher.scripts: which script a site stores, and a reader's other one made by OpenCC."""

from __future__ import annotations

import pytest

from publisher.scripts import HANS, HANT, ScriptConversion, site_script


@pytest.mark.parametrize(
    ("language", "convert", "script"),
    [("zh-CN", "t2s", HANS), ("zh-CN", "none", HANS), ("zh-TW", "none", HANT), ("zh-CN", "s2hk", HANT),
     ("zh-Hant-HK", "none", HANT), ("en", "none", HANS)],
)  # fmt: skip
def test_the_sites_script_is_what_its_conversion_makes_else_what_its_language_says(
    language: str, convert: str, script: str
) -> None:
    assert site_script(language, convert) == script


def test_a_reader_of_the_other_script_gets_the_configured_forms_and_links_stay() -> None:
    html = '<p>高新院发布软件开发政策 <a href="https://example.org/%E6%96%B0%E9%97%BB">详情</a></p>'
    assert ScriptConversion(HANS).convert(html, None) == html
    assert ScriptConversion(HANS).convert(html, HANS) == html
    assert ScriptConversion(HANS).convert(html, HANT) == (
        '<p>高新院發佈軟件開發政策 <a href="https://example.org/%E6%96%B0%E9%97%BB">詳情</a></p>'
    )
    taiwan = ScriptConversion(HANS, traditional="s2twp").convert(html, HANT)
    assert "軟體開發" in taiwan and "詳情" in taiwan  # Taiwan's phrase for 软件
    assert ScriptConversion(HANT).convert("高新區新聞", HANS) == "高新区新闻"
