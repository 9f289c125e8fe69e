"""`[feeds] scripts`: every feed, category page, index.html and feeds.opml again under
`/zh-hant/`, its text converted with OpenCC and its own links and language; the site's own
output unchanged; both scripts rewritten together, and nothing by an unchanged build."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import html as lxml_html

from conftest import Site
from feedcheck import assert_json_feed, assert_matches_atom_schema, atom_schema, parse_with_feedparser, parse_xml
from publisher.scripts import ScriptConversion
from publisher.text import slugify

BASE = "https://www.example.org"
ARTICLE_URL = "https://www.example.org/qyjj/区域-a.html?x=1&y=区"
ATOM = "{http://www.w3.org/2005/Atom}"
FEEDS = ("rss.xml", "atom.xml", "feed.json")


def two_scripts(site: Site, extra: str = "") -> None:
    text = site.config.read_text(encoding="utf-8")
    scripts = 'max_items = 50\nscripts = ["zh-Hans", "zh-Hant"]\n'
    site.config.write_text(text.replace("max_items = 50\n", scripts).replace("[text]\n", f"[text]\n{extra}"), "utf-8")


def with_articles(site: Site) -> None:
    body = '<p>区域发展，<a href="https://www.example.org/区">链接</a></p>'
    site.article("policy/a.md", "区域经济发展报告", date="2026-05-07 01:00", url=ARTICLE_URL,
                 summary="高新区发展的新政策。", author="张三", body=body)  # fmt: skip
    site.article("tech/b.md", "科技创新与产业", date="2026-05-02 09:00")


def test_every_feed_is_written_again_under_zh_hant_in_traditional_characters(site: Site) -> None:
    two_scripts(site)
    with_articles(site)
    site.build()
    for scope in ("", "policy/", "tech/", "gao-xin-yuan-xin-wen/"):
        for name in FEEDS:
            assert (site.out / "zh-hant" / f"{scope}{name}").is_file(), scope + name
    own = parse_with_feedparser(site.feed("policy/atom.xml"))
    other = parse_with_feedparser(site.feed("zh-hant/policy/atom.xml"))
    assert own.feed.title == "政策解读 - 高新院" and other.feed.title == "政策解讀 - 高新院"
    assert own.entries[0].title == "区域经济发展报告" and other.entries[0].title == "區域經濟發展報告"
    assert other.entries[0].summary == "高新區發展的新政策。" and other.entries[0].author == "張三"
    assert "區域發展" in other.entries[0].content[0].value
    assert [t.label for t in other.entries[0].tags] == ["政策解讀"]
    # links and identity: the article's URL and guid as in the site's feed, the feed's own links its own
    assert other.entries[0].link == own.entries[0].link
    assert other.entries[0].id == own.entries[0].id
    assert 'href="https://www.example.org/%E5%8C%BA"' in other.entries[0].content[0].value
    atom = parse_xml(site.feed("zh-hant/policy/atom.xml"))
    assert atom.findtext(f"{ATOM}id") == f"{BASE}/zh-hant/policy/atom.xml"
    assert atom.find(f"{ATOM}link[@rel='self']").get("href") == f"{BASE}/zh-hant/policy/atom.xml"
    assert atom.get("{http://www.w3.org/XML/1998/namespace}lang") == "zh-Hant"
    rss = parse_with_feedparser(site.feed("zh-hant/policy/rss.xml"))
    assert rss.feed.language == "zh-Hant" and rss.entries[0].title == "區域經濟發展報告"
    assert [link.href for link in rss.feed.links if link.rel == "self"] == [f"{BASE}/zh-hant/policy/rss.xml"]
    feed = assert_json_feed(site.feed("zh-hant/policy/feed.json"))
    assert feed["feed_url"] == f"{BASE}/zh-hant/policy/feed.json" and feed["language"] == "zh-Hant"
    assert feed["items"][0]["url"] == json.loads(site.feed("policy/feed.json"))["items"][0]["url"]
    assert feed["items"][0]["title"] == "區域經濟發展報告"
    site_feed = parse_with_feedparser(site.feed("zh-hant/rss.xml"))
    assert site_feed.feed.title == "高新院" and len(site_feed.entries) == 2


def test_the_second_script_feeds_match_the_atom_schema(site: Site) -> None:
    schema = atom_schema()
    if schema is None:
        pytest.skip("no ../shared/atom.rnc in this checkout")
    two_scripts(site)
    with_articles(site)
    site.build()
    for path in sorted((site.out / "zh-hant").rglob("atom.xml")):
        assert_matches_atom_schema(path.read_bytes(), schema)


@pytest.mark.parametrize(("conversion", "language"), [("s2t", "zh-Hant"), ("s2tw", "zh-TW"), ("s2hk", "zh-HK")])
def test_the_feeds_language_is_the_conversions(site: Site, conversion: str, language: str) -> None:
    two_scripts(site, f'traditional = "{conversion}"\n')
    with_articles(site)
    site.build()
    assert parse_with_feedparser(site.feed("zh-hant/tech/rss.xml")).feed.language == language
    assert lxml_html.fromstring(site.feed("zh-hant/tech/index.html")).get("lang") == language


def test_a_traditional_site_publishes_simplified_under_zh_hans(site: Site) -> None:
    text = site.config.read_text(encoding="utf-8").replace('convert = "t2s"', 'convert = "s2t"')
    site.config.write_text(text.replace("max_items = 50\n", 'max_items = 50\nscripts = ["zh-Hans"]\n'), "utf-8")
    site.article("policy/a.md", "区域经济", date="2026-05-07 01:00")
    site.build()
    assert parse_with_feedparser(site.feed("policy/rss.xml")).entries[0].title == "區域經濟"
    simplified = parse_with_feedparser(site.feed("zh-hans/policy/rss.xml"))
    assert simplified.entries[0].title == "区域经济" and simplified.feed.language == "zh-Hans"
    assert not (site.out / "zh-hant").exists()


def test_category_pages_and_index_in_the_second_script_link_each_other(site: Site) -> None:
    two_scripts(site)
    with_articles(site)
    site.build()
    doc = lxml_html.fromstring(site.feed("zh-hant/policy/index.html"))
    assert doc.get("lang") == "zh-Hant" and doc.findtext(".//h1") == "政策解讀"
    item = doc.find(".//ol[@class='items']/li//h3/a")
    own_link = parse_with_feedparser(site.feed("policy/rss.xml")).entries[0].link
    assert item.text == "區域經濟發展報告" and item.get("href") == own_link
    # percent-encoded at ingest, so OpenCC leaves it as it is
    assert own_link == "https://www.example.org/qyjj/%E5%8C%BA%E5%9F%9F-a.html?x=1&y=%E5%8C%BA"
    feeds = [a.get("href") for a in doc.findall(".//head/link[@type]")]
    assert feeds == [f"{BASE}/zh-hant/policy/{name}" for name in FEEDS]
    languages = {a.get("hreflang"): a.get("href") for a in doc.findall(".//head/link[@hreflang]")}
    assert languages == {"zh-CN": f"{BASE}/policy/", "zh-Hant": f"{BASE}/zh-hant/policy/"}
    own = lxml_html.fromstring(site.feed("policy/index.html"))
    assert {a.get("hreflang") for a in own.findall(".//head/link[@hreflang]")} == {"zh-CN", "zh-Hant"}
    index = lxml_html.fromstring(site.feed("zh-hant/index.html"))
    named = {a.text: a.get("href") for a in index.findall(".//td[@class='name']/a")}
    assert named["政策解讀"] == f"{BASE}/zh-hant/policy/"
    assert index.find(".//a[@hreflang='zh-CN']").get("href") == f"{BASE}/"
    assert "訂閱" in index.text_content()  # the catalogue's words converted too
    opml = parse_xml(site.feed("zh-hant/feeds.opml"))
    assert f"{BASE}/zh-hant/policy/rss.xml" in [o.get("xmlUrl") for o in opml.iter("outline")]


def test_a_dirty_category_rewrites_both_scripts_and_an_unchanged_build_nothing(site: Site) -> None:
    two_scripts(site)
    with_articles(site)
    site.build()
    before = site.mtimes()
    assert site.build().written_paths == [] and site.mtimes() == before
    site.article("tech/c.md", "新的区域", date="2026-06-01 10:00")
    site.build()
    after = site.mtimes()
    changed = {p for p in after if after[p] != before.get(p)}
    tech = {*FEEDS, "tech/index.html", *(f"tech/{n}" for n in FEEDS)}
    assert changed == tech | {f"zh-hant/{p}" for p in tech}
    assert "新的區域" in (site.out / "zh-hant" / "tech" / "index.html").read_text(encoding="utf-8")
    (site.out / "zh-hant" / "policy" / "atom.xml").unlink()
    assert site.build().written_paths == ["zh-hant/policy/atom.xml"]


def test_the_site_script_alone_writes_the_same_bytes_as_no_scripts(make_site: Callable[..., Site]) -> None:
    plain, listed = make_site(), make_site()
    text = listed.config.read_text(encoding="utf-8")
    listed.config.write_text(text.replace("max_items = 50\n", 'max_items = 50\nscripts = ["zh-Hans"]\n'), "utf-8")
    for each in (plain, listed):
        with_articles(each)
    plain.build()
    listed.build()
    files = sorted(p.relative_to(plain.out) for p in plain.out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(listed.out) for p in listed.out.rglob("*") if p.is_file())
    assert not any(Path(f).parts[0].startswith("zh-") for f in files)
    for name in files:
        assert (plain.out / name).read_bytes() == (listed.out / name).read_bytes(), name


def test_an_unknown_script_is_a_config_error(site: Site) -> None:
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace("max_items = 50\n", 'max_items = 50\nscripts = ["zh-TW"]\n'), "utf-8")
    result = site.cli("check")
    assert result.exit_code == 2 and "feeds.scripts" in result.output


def test_a_slug_made_from_a_name_never_takes_a_folder_of_the_output(site: Site) -> None:
    two_scripts(site)
    site.append_config('[[categories]]\nname = "ZH Hant"\n[[categories]]\nname = "Digests"\n')
    site.article("ZH Hant/a.md", "港澳动态", date="2026-05-07 01:00")
    site.article("Digests/b.md", "摘要汇编", date="2026-05-06 01:00")
    site.build()
    assert parse_with_feedparser(site.feed("zh-hant-2/rss.xml")).feed.title == "ZH Hant - 高新院"
    assert parse_with_feedparser(site.feed("digests-2/rss.xml")).entries[0].title == "摘要汇编"
    whole_site = parse_with_feedparser(site.feed("zh-hant/rss.xml"))  # the 繁體 edition's, not overwritten
    assert whole_site.feed.title == "高新院" and len(whole_site.entries) == 2
    assert whole_site.entries[0].title == "港澳動態"
    assert not (site.out / "digests").exists()


def test_a_stored_slug_that_is_a_folder_of_the_output_moves_aside(site: Site) -> None:
    site.append_config('[[categories]]\nname = "Digests"\n')
    app = site.app()
    try:  # as an earlier version stored it, before the output had its own folders
        wanted = [(c.name, c.slug, c.description) for c in app.settings.categories]
        assert app.store.sync_categories(wanted, slugify, site.clock_now)[-1].slug == "digests"
        assert app.categories[-1].slug == "digests-2"
    finally:
        app.close()


def test_a_build_converts_each_article_once_in_the_second_script(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    two_scripts(site)
    with_articles(site)  # a: the site's feeds, policy's feeds and policy's page show it
    converted: list[str] = []
    convert = ScriptConversion.convert

    def counted(self: ScriptConversion, text: str, script: str | None) -> str:
        converted.append(text)
        return convert(self, text, script)

    monkeypatch.setattr(ScriptConversion, "convert", counted)
    site.build()
    assert (
        "區域發展" in site.feed("zh-hant/policy/atom.xml").decode()
        and "區域經濟" in site.feed("zh-hant/policy/index.html").decode()
    )
    assert converted.count("区域经济发展报告") == 1 and converted.count("科技创新与产业") == 1
    assert len([text for text in converted if "区域发展" in text]) == 1  # the content, whatever its markup
    converted.clear()
    site.build()  # nothing changed: no feed or page rendered, no article converted
    assert not [text for text in converted if "区域" in text or "科技创新与" in text]


def test_the_second_scripts_pages_link_the_sign_up_page_with_their_script_chosen(site: Site) -> None:
    two_scripts(site)
    with_articles(site)
    site.build()

    def sign_up_links() -> dict[str, str]:
        found = {}
        for path in ("index.html", "policy/index.html", "zh-hant/index.html", "zh-hant/policy/index.html"):
            doc = lxml_html.fromstring(site.feed(path))
            [link] = [a.get("href") for a in doc.iter("a") if "/subscribe" in a.get("href", "")]
            found[path] = link
        return found

    plain = f"{BASE}/subscribe"
    assert set(sign_up_links().values()) == {plain}  # the digest offers no choice of script
    site.append_config('\n[digest]\nscripts = ["zh-Hans", "zh-Hant"]\n')
    site.build()  # the offer changed: the pages are written again
    assert sign_up_links() == {
        "index.html": plain,
        "policy/index.html": plain,
        "zh-hant/index.html": f"{plain}?script=zh-Hant",
        "zh-hant/policy/index.html": f"{plain}?script=zh-Hant",
    }


def test_the_pages_offer_the_digest_without_naming_a_cadence(site: Site) -> None:
    two_scripts(site)
    site.append_config('\n[digest]\ncadences = ["weekly", "daily"]\n')
    with_articles(site)
    site.build()
    for path in ("index.html", "policy/index.html", "zh-hant/index.html", "zh-hant/policy/index.html"):
        words = lxml_html.fromstring(site.feed(path)).text_content()
        assert "邮件订阅" in words or "郵件訂閱" in words, path
        assert "每周" not in words and "每週" not in words, path
