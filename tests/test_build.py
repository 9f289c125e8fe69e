"""Builds end to end: what readers see, what is rewritten, what stays."""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import timedelta

import pytest

from conftest import Site, touch_later
from feedcheck import (
    assert_json_feed,
    assert_matches_atom_schema,
    assert_valid_feed,
    atom_schema,
    parse_with_feedparser,
    parse_xml,
)

SITE_FILES = {"rss.xml", "atom.xml", "feed.json"}

HOSTILE_TITLE = "标题\x00\x08控制字符]]>😀👨‍👩‍👧" + "长" * 300
HOSTILE_BODY = (
    "<p>正文\x1b\x0b含控制字符 ]]> 和 <![CDATA[ x ]]> 以及 emoji 🇨🇳😀</p>"
    "<script>alert('x')</script><p onmouseover=\"x()\">第二段&nbsp;&amp;</p>"
    '<a href="javascript:alert(1)">链接</a>\ud800'
)


def hostile_site(site: Site) -> None:
    """Control characters arrive through text pages and HTML bodies (YAML itself refuses them)."""
    site.add("tech/hostile.txt", f"- 导航\n{HOSTILE_TITLE}\n来源:高新院\x07 日期:2026-05-06\n正文\x00第一段]]>\n")
    site.add(
        "tech/hostile.html",
        '---\ntitle: "标题\\x01二]]>"\ndate: 2026-05-07 14:00\n'
        'author: "作者\\x01"\nsummary: "摘要]]>\\x02"\ntags: ["<b>标签</b>", "x\\x1fy"]\n---\n'
        + HOSTILE_BODY.replace("\ud800", "\ufffe"),
    )


def all_feeds(site: Site) -> list[str]:
    return sorted(p.relative_to(site.out).as_posix() for p in site.out.rglob("*") if p.suffix in (".xml", ".json"))


def test_hostile_article_still_gives_valid_feeds(site: Site) -> None:
    hostile_site(site)
    report = site.build()
    assert report.new == 2 and report.skipped == 0
    for path in all_feeds(site):
        assert_valid_feed(site.out / path)
    parsed = parse_with_feedparser(site.feed("tech/atom.xml"))
    long = parsed.entries[1]
    assert long.title.startswith("标题控制字符]]>😀👨‍👩‍👧长") and len(long.title) > 300
    assert long.content[0].value == "<p>正文第一段]]&gt;</p>"
    entry = parsed.entries[0]
    assert entry.title == "标题二]]>" and entry.author == "作者" and entry.summary == "摘要]]>"
    content = entry.content[0].value
    assert "script" not in content and "onmouseover" not in content and "javascript" not in content
    assert "]]&gt;" in content and "🇨🇳😀" in content and "第二段" in content


def test_hostile_atom_matches_rfc4287_schema(site: Site) -> None:
    schema = atom_schema()
    if schema is None:
        pytest.skip("../shared/atom.rnc is not in this checkout (set ATOM_RNC to use another copy)")
    hostile_site(site)
    site.article("policy/plain.md", "普通文章")
    site.build()
    for path in all_feeds(site):
        if path.endswith("atom.xml"):
            assert_matches_atom_schema(site.feed(path), schema)


def test_newest_first_and_max_items(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(max_items=3)
    for day in (3, 1, 5, 2, 4):
        site.article(f"tech/{day}.md", f"第{day}天", date=f"2026-05-0{day} 09:00")
    site.build()
    titles = [e.title for e in parse_with_feedparser(site.feed("tech/rss.xml")).entries]
    assert titles == ["第5天", "第4天", "第3天"]
    json_titles = [i["title"] for i in json.loads(site.feed("tech/feed.json"))["items"]]
    assert json_titles == titles


def test_feed_metadata_readers_use(site: Site) -> None:
    site.article("tech/a.md", "一篇", author="研究部")
    site.build()
    atom = parse_xml(site.feed("tech/atom.xml"))
    ns = {"a": "http://www.w3.org/2005/Atom"}
    assert atom.get("{http://www.w3.org/XML/1998/namespace}lang") == "zh-CN"
    assert atom.find("a:link[@rel='self']", ns).get("href") == "https://www.example.org/tech/atom.xml"
    assert atom.find("a:updated", ns).text == "2026-05-06T14:00:00+08:00"
    entry = atom.find("a:entry", ns)
    assert entry.find("a:content", ns).get("type") == "html"
    assert entry.find("a:summary", ns) is not None
    assert entry.find("a:author/a:name", ns).text == "研究部"
    assert entry.find("a:category", ns).get("term") == "tech"
    assert entry.find("a:category", ns).get("label") == "科技创新"
    rss = parse_xml(site.feed("tech/rss.xml"))
    channel = rss.find("channel")
    assert channel.find("language").text == "zh-CN"
    assert channel.find("{http://www.w3.org/2005/Atom}link").get("href") == "https://www.example.org/tech/rss.xml"
    item = channel.find("item")
    assert item.find("guid").get("isPermaLink") == "false"
    assert item.find("{http://purl.org/rss/1.0/modules/content/}encoded") is not None
    assert item.find("{http://purl.org/dc/elements/1.1/}creator").text == "研究部"
    assert item.find("category").text == "科技创新"
    feed = assert_json_feed(site.feed("tech/feed.json"))
    assert feed["feed_url"] == "https://www.example.org/tech/feed.json" and feed["language"] == "zh-CN"


def test_second_build_rewrites_no_file_and_output_is_byte_identical(make_site) -> None:  # type: ignore[no-untyped-def]
    first = make_site()
    for i in range(5):
        first.article(f"tech/{i}.md", f"文章{i}", date=f"2026-05-0{i + 1} 09:00")
    first.build()
    before = first.mtimes()
    report = first.build()
    assert report.feeds_written == 0 and report.unchanged == 5
    assert first.mtimes() == before
    # Another store built from the same content, at another time, gives the same bytes.
    second = make_site()
    shutil.copytree(first.content, second.content, dirs_exist_ok=True)
    second.clock_now += timedelta(days=3)
    second.build()
    for path in all_feeds(first):
        assert first.feed(path) == second.feed(path), path
    assert first.feed("index.html") == second.feed("index.html")


def test_adding_one_article_rewrites_only_its_category_and_the_site(site: Site) -> None:
    site.article("tech/a.md", "科技一")
    site.article("policy/b.md", "政策一")
    site.build()
    before = site.mtimes()
    site.article("tech/c.md", "科技二", date="2026-06-01 10:00")
    report = site.build()
    after = site.mtimes()
    changed = {p for p in after if after[p] != before.get(p)}
    # the category's page lists its articles; index.html lists none, so it stays
    assert changed == SITE_FILES | {f"tech/{n}" for n in SITE_FILES} | {"tech/index.html"}
    assert report.new == 1 and report.feeds_written == 7


def test_editing_an_article_keeps_its_guid_and_moves_updated(site: Site) -> None:
    path = site.article("tech/a.md", "原标题")
    site.build()
    before = parse_with_feedparser(site.feed("tech/atom.xml")).entries[0]
    site.clock_now += timedelta(days=1)
    path.write_text(path.read_text(encoding="utf-8").replace("原标题", "新标题"), encoding="utf-8")
    touch_later(path)
    report = site.build()
    after = parse_with_feedparser(site.feed("tech/atom.xml")).entries[0]
    assert report.changed == 1
    assert after.id == before.id and after.title == "新标题"
    assert after.updated != before.updated and after.published == before.published
    assert after.updated_parsed > before.updated_parsed


def test_touching_a_file_without_changing_it_changes_nothing(site: Site) -> None:
    path = site.article("tech/a.md", "标题")
    site.build()
    before = site.mtimes()
    touch_later(path)
    report = site.build()
    assert report.changed == 0 and report.unchanged == 1 and site.mtimes() == before


def test_renamed_file_with_an_id_keeps_its_guid(site: Site) -> None:
    path = site.article("tech/old-name.md", "有编号的文章", id="news-7")
    site.build()
    guid = parse_with_feedparser(site.feed("tech/rss.xml")).entries[0].id
    path.rename(site.content / "tech" / "new-name.md")
    report = site.build()
    entries = parse_with_feedparser(site.feed("tech/rss.xml")).entries
    assert [e.id for e in entries] == [guid]
    assert report.new == 0 and report.withdrawn == 0


def test_duplicate_ids_are_reported(site: Site) -> None:
    site.article("tech/a.md", "甲", id="same")
    site.article("tech/b.md", "乙", id="same")
    report = site.build()
    assert report.new == 1 and report.skipped == 1 and "also used by" in report.problems[0]


def test_an_id_two_sources_give_the_same_day_is_one_feed_id_and_the_second_is_reported(site: Site) -> None:
    """A feed id (guid) is the site's, whatever the source: one taken by an article of another
    source, in the same first build or stored before, is reported and the article skipped."""
    other = site.root / "other"
    site.append_config(f'[[sources]]\ntype = "files"\nname = "other"\npath = "{other}"\n')
    site.article("tech/a.md", "甲", id="same")
    (other / "tech").mkdir(parents=True)
    (other / "tech" / "b.md").write_text((site.content / "tech" / "a.md").read_text(encoding="utf-8")
                                         .replace("甲", "乙"), encoding="utf-8")  # fmt: skip
    report = site.build()  # the first build: the store had no article before it
    assert (report.new, report.skipped) == (1, 1) and "is already taken" in report.problems[0]
    assert "tag:www.example.org,2026-05-06:id/same" in report.problems[0]
    site.article("tech/c.md", "丙", id="later")
    (other / "tech" / "d.md").write_text((site.content / "tech" / "c.md").read_text(encoding="utf-8")
                                         .replace("丙", "丁"), encoding="utf-8")  # fmt: skip
    again = site.build()  # one stored before, one new in the same build
    assert (again.new, again.skipped) == (1, 2), again.problems
    rss = site.feed("tech/rss.xml").decode()
    assert "甲" in rss and "丙" in rss and "乙" not in rss and "丁" not in rss


def test_a_first_build_asks_the_store_once_whether_a_feed_id_is_taken(site: Site, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A store without articles has no feed id taken: asked once, not for each of the first new
    articles (64 look-ups, 0.2 ms each); a store that has some is asked article by article."""
    from publisher.store import ArticleStore

    asked: list[str] = []
    for name in ("has_articles", "guid_exists", "guids"):
        original = getattr(ArticleStore, name)
        spy = lambda self, *a, _n=name, _o=original, **k: (asked.append(_n), _o(self, *a, **k))[1]  # noqa: E731
        monkeypatch.setattr(ArticleStore, name, spy)
    for n in range(5):
        site.article(f"tech/{n}.md", f"科技{n}")
    site.build()
    assert asked.count("guid_exists") == 0 and asked.count("guids") == 0
    asked.clear()
    for n in range(5, 8):
        site.article(f"tech/{n}.md", f"科技{n}")
    assert site.build().new == 3
    assert asked.count("guid_exists") == 3


def test_deleted_file_leaves_the_feeds(site: Site) -> None:
    site.article("tech/a.md", "留下")
    gone = site.article("tech/b.md", "删除")
    site.build()
    gone.unlink()
    report = site.build()
    rss = site.feed("tech/rss.xml").decode()
    assert report.withdrawn == 1 and "删除" not in rss and "留下" in rss


def test_a_failed_source_keeps_the_last_good_feeds(site: Site) -> None:
    site.article("tech/a.md", "好的")
    site.build()
    before = {p: site.feed(p) for p in all_feeds(site)}
    shutil.rmtree(site.content)
    result = site.cli("build")
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert {p: site.feed(p) for p in all_feeds(site)} == before
    site.content.mkdir()  # present but empty: suspicious, so nothing is withdrawn either
    result = site.cli("build")
    assert result.exit_code == 1 and "has no items now" in result.output
    assert {p: site.feed(p) for p in all_feeds(site)} == before


def test_slugs_are_fixed_in_the_store_at_first_sight(site: Site) -> None:
    site.article("高新院新闻/a.md", "文章")
    site.build()
    app = site.app()
    try:
        wanted = [("高新院新闻", None, ""), ("新栏目", None, "")]
        categories = app.store.sync_categories(wanted, lambda name: "changed-by-a-new-pypinyin", site.clock_now)
    finally:
        app.close()
    assert categories[0].slug == "gao-xin-yuan-xin-wen"  # stored, not regenerated
    assert categories[1].slug == "changed-by-a-new-pypinyin"


def test_index_and_opml_list_every_feed(site: Site) -> None:
    site.build()
    html = site.feed("index.html").decode()
    for slug in ("gao-xin-yuan-xin-wen", "policy", "tech"):
        for name, kind in (
            ("rss.xml", "application/rss+xml"),
            ("atom.xml", "application/atom+xml"),
            ("feed.json", "application/feed+json"),
        ):
            assert f'<link rel="alternate" type="{kind}"' in html
            assert f"https://www.example.org/{slug}/{name}" in html
    opml = parse_xml(site.feed("feeds.opml"))
    urls = [o.get("xmlUrl") for o in opml.iter("outline") if o.get("xmlUrl")]
    assert urls == [
        "https://www.example.org/rss.xml",
        "https://www.example.org/gao-xin-yuan-xin-wen/rss.xml",
        "https://www.example.org/policy/rss.xml",
        "https://www.example.org/tech/rss.xml",
    ]


def test_feeds_changed_by_ingest_alone_are_written_by_the_next_build(site: Site) -> None:
    site.article("tech/a.md", "第一篇")
    site.build()
    site.article("tech/b.md", "第二篇", date="2026-06-01 10:00")
    assert site.cli("ingest").exit_code == 0  # the store changes; the feeds are not written yet
    assert "第二篇" not in site.feed("tech/rss.xml").decode()
    report = site.build()
    assert report.new == 0 and report.feeds_written == 7  # tech's three feeds and page, the site's feeds
    assert "第二篇" in site.feed("tech/rss.xml").decode()


def test_a_deleted_output_file_is_written_again(site: Site) -> None:
    site.article("tech/a.md", "文章")
    site.build()
    (site.out / "tech" / "atom.xml").unlink()
    (site.out / "index.html").unlink()
    report = site.build()
    assert sorted(report.written_paths) == ["index.html", "tech/atom.xml"]


def test_changing_the_site_config_rewrites_every_feed(site: Site) -> None:
    site.article("tech/a.md", "文章")
    site.build()
    site.config.write_text(
        site.config.read_text(encoding="utf-8").replace('title = "高新院"', 'title = "新名字"'), encoding="utf-8"
    )
    report = site.build()
    # 4 scopes x 3 feeds, 3 category pages, index.html and feeds.opml
    assert report.feeds_written == 17 and "新名字" in site.feed("tech/atom.xml").decode()


def test_moving_an_article_to_another_category_rewrites_both(site: Site) -> None:
    path = site.article("tech/a.md", "要移动的文章", category="tech")
    site.article("policy/b.md", "政策")
    site.build()
    path.write_text(path.read_text(encoding="utf-8").replace("category: tech", "category: policy"), encoding="utf-8")
    touch_later(path)
    report = site.build()
    assert {p.split("/")[0] for p in report.written_paths} == {"tech", "policy", "rss.xml", "atom.xml", "feed.json"}
    assert "要移动的文章" not in site.feed("tech/rss.xml").decode()
    assert "要移动的文章" in site.feed("policy/rss.xml").decode()


def test_parallel_ingest_gives_the_same_store_and_feeds_as_serial(make_site, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Past 64 changed items, worker processes read and normalize; results keep their order."""
    from publisher import parallel

    sites = []
    for workers in (1, 2):
        monkeypatch.setattr(parallel, "workers", lambda n=workers: n)
        site = make_site(max_items=500)
        for i in range(150):
            day = 1 + i % 28
            site.article(f"{['tech', 'policy'][i % 2]}/{i:03d}.md", f"文章{i}", date=f"2026-05-{day:02d} 09:00")
        site.add("tech/broken.md", "---\ntitle: x\n")
        report = site.build()
        assert (report.new, report.skipped) == (150, 1)
        sites.append(site)
    serial, parallel_site = sites
    for path in all_feeds(serial):
        assert serial.feed(path) == parallel_site.feed(path), path


def test_a_file_that_breaks_keeps_its_last_good_version(site: Site) -> None:
    path = site.article("tech/a.md", "好的版本")
    site.build()
    before = site.feed("tech/rss.xml")
    path.write_text("---\ntitle: 坏了\n", encoding="utf-8")  # front matter never closed
    touch_later(path)
    report = site.build()
    assert report.skipped == 1 and report.withdrawn == 0
    assert site.feed("tech/rss.xml") == before
    again = site.build()  # still broken: still a warning, still the good version
    assert again.skipped == 1 and site.feed("tech/rss.xml") == before


def test_check_reads_everything_and_writes_nothing(site: Site) -> None:
    site.article("tech/a.md", "好")
    site.add("tech/b.md", "---\ntitle: 坏\n")
    result = site.cli("check")
    assert result.exit_code == 0
    assert "1 item(s) readable, 1 skipped" in result.output and "b.md" in result.output
    assert not site.out.exists()
    if site.store_url.startswith("sqlite"):
        assert not site.db.exists()
    else:  # the test's database exists, empty
        assert site.sql("SELECT count(*) FROM articles") == [(0,)]
    assert site.cli("check", "--strict").exit_code == 1


def test_verbose_build_logs_each_article(site: Site) -> None:
    site.article("tech/a.md", "一篇")
    result = site.cli("-v", "build")
    assert result.exit_code == 0 and "new " in result.output and "a.md" in result.output


def test_a_rename_and_a_deletion_in_one_build(site: Site) -> None:
    moved = site.article("tech/old.md", "改名的文章", id="keep-me")
    gone = site.article("tech/gone.md", "删掉的文章")
    site.article("tech/stays.md", "不变的文章")
    site.build()
    guid = {e.title: e.id for e in parse_with_feedparser(site.feed("tech/rss.xml")).entries}["改名的文章"]
    moved.rename(site.content / "tech" / "new.md")
    gone.unlink()
    report = site.build()
    entries = {e.title: e.id for e in parse_with_feedparser(site.feed("tech/rss.xml")).entries}
    assert report.withdrawn == 1 and report.new == 0
    assert entries == {"改名的文章": guid, "不变的文章": entries["不变的文章"]}


def test_rss_channel_link_is_the_site_and_summaries_are_text(site: Site) -> None:
    site.article(
        "tech/code.md",
        "代码示例",
        summary='"用 <img src=x onerror=alert(1)> 要小心"',
        url="新闻/代码.html",
        tags="[政策解读, 标签]",
    )
    site.build()
    channel = parse_xml(site.feed("tech/rss.xml")).find("channel")
    assert channel.find("link").text == "https://www.example.org/"
    entry = parse_with_feedparser(site.feed("tech/rss.xml")).entries[0]
    assert entry.summary == "用 &lt;img src=x onerror=alert(1)&gt; 要小心"  # shown as text, not an image
    assert entry.link == "https://www.example.org/%E6%96%B0%E9%97%BB/%E4%BB%A3%E7%A0%81.html"
    item = json.loads(site.feed("tech/feed.json"))["items"][0]
    assert item["summary"] == "用 <img src=x onerror=alert(1)> 要小心"  # JSON Feed summaries are plain text
    assert item["tags"] == ["科技创新", "政策解读", "标签"]  # an own tag named like another category stays


def test_a_settings_change_reaches_articles_already_stored(site: Site) -> None:
    site.write_config()
    site.config.write_text(
        site.config.read_text(encoding="utf-8").replace('convert = "t2s"', 'convert = "none"'), encoding="utf-8"
    )
    site.article("tech/trad.md", "高新區新聞")
    site.build()
    assert "高新區新聞" in site.feed("tech/rss.xml").decode()
    site.write_config()  # back to t2s: the unchanged file must be read again
    report = site.build()
    assert report.changed == 1 and "高新区新闻" in site.feed("tech/rss.xml").decode()
    assert site.build().changed == 0  # and only once


def test_turning_an_article_into_a_draft_withdraws_it(site: Site) -> None:
    path = site.article("tech/a.md", "先发布后撤回")
    site.article("tech/b.md", "留下的")
    site.build()
    path.write_text(path.read_text(encoding="utf-8").replace("date:", "draft: true\ndate:"), encoding="utf-8")
    touch_later(path)
    report = site.build()
    assert report.withdrawn == 1 and "先发布后撤回" not in site.feed("tech/rss.xml").decode()


def test_odd_files_are_skipped_not_fatal(site: Site) -> None:
    site.article("tech/good.md", "好文章")
    site.add("tech/offset.md", "---\ntitle: 时区\ndate: 2024-05-01T09:30:00+24:00\n---\n正文\n")
    site.add("tech/month.md", '---\ntitle: "引号标题"\ndate: 2024-13-01\n---\n正文\n')
    (site.content / "tech" / "loop").symlink_to(site.content)  # a link back up must not loop
    report = site.build()
    assert (report.new, report.skipped, report.failed_sources) == (1, 2, [])


def test_adding_an_id_then_renaming_keeps_the_guid(site: Site) -> None:
    path = site.article("tech/a.md", "后来加编号")
    site.build()
    guid = parse_with_feedparser(site.feed("tech/rss.xml")).entries[0].id
    path.write_text(path.read_text(encoding="utf-8").replace("date:", "id: later-id\ndate:"), encoding="utf-8")
    touch_later(path)
    site.build()
    path.rename(site.content / "tech" / "renamed.md")
    report = site.build()
    assert [e.id for e in parse_with_feedparser(site.feed("tech/rss.xml")).entries] == [guid]
    assert report.withdrawn == 0


def test_swapping_two_configured_slugs_swaps_the_categories(site: Site) -> None:
    site.article("tech/a.md", "科技文章")
    site.article("policy/b.md", "政策文章")
    site.build()
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(
        text.replace('slug = "policy"', 'slug = "TMP"')
        .replace('slug = "tech"', 'slug = "policy"')
        .replace('slug = "TMP"', 'slug = "tech"'),
        encoding="utf-8",
    )
    site.build()
    assert "科技文章" in site.feed("policy/rss.xml").decode() and "政策文章" not in site.feed("policy/rss.xml").decode()
    assert "政策文章" in site.feed("tech/rss.xml").decode() and "科技文章" not in site.feed("tech/rss.xml").decode()


def test_a_renamed_article_and_a_new_one_at_its_old_path(site: Site) -> None:
    """Rename a.md (id X) to b.md and write a new post at a.md: X keeps its guid, a.md is new."""
    old = site.article("tech/a.md", "有编号的旧文", id="x-1", date="2026-05-01 09:00")
    site.build()
    guid = parse_with_feedparser(site.feed("tech/rss.xml")).entries[0].id
    old.rename(site.content / "tech" / "b.md")
    site.article("tech/a.md", "同一路径的新文", date="2026-05-02 09:00")
    report = site.build()
    entries = {e.title: e.id for e in parse_with_feedparser(site.feed("tech/rss.xml")).entries}
    assert (report.new, report.skipped, report.withdrawn) == (1, 0, 0)
    assert entries["有编号的旧文"] == guid and entries["同一路径的新文"] != guid


def test_removing_an_id_keeps_the_article(site: Site) -> None:
    path = site.article("tech/a.md", "去掉编号", id="gone-id")
    site.build()
    guid = parse_with_feedparser(site.feed("tech/rss.xml")).entries[0].id
    path.write_text(path.read_text(encoding="utf-8").replace("id: gone-id\n", ""), encoding="utf-8")
    touch_later(path)
    report = site.build()
    assert report.changed == 1 and [e.id for e in parse_with_feedparser(site.feed("tech/rss.xml")).entries] == [guid]


def test_an_unchanged_folder_is_taken_whole_and_a_changed_one_is_read_alone(site: Site, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from publisher.store import Store

    for n in range(3):
        site.article(f"tech/{n}.md", f"科技{n}")
        site.article(f"policy/{n}.md", f"政策{n}")
    site.build()
    asked: list[str | None] = []
    fingerprints = Store.fingerprints

    def spy(self: Store, source: str, folder: str | None = None) -> dict[str, str | None]:
        asked.append(folder)
        return fingerprints(self, source, folder)

    monkeypatch.setattr(Store, "fingerprints", spy)
    report = site.build()
    assert (report.unchanged, report.new, asked) == (6, 0, [])  # every folder's digest matched
    site.article("tech/new.md", "科技新", date="2026-06-01 10:00")
    report = site.build()
    assert (report.unchanged, report.new, asked) == (6, 1, ["tech/"])
    touch_later(site.content / "policy" / "1.md")
    report = site.build()
    assert (report.unchanged, report.changed, asked[1:]) == (7, 0, ["policy/"])


def test_folders_with_problems_or_drafts_are_still_checked_file_by_file(site: Site) -> None:
    site.article("tech/a.md", "科技")
    site.add("tech/broken.md", "---\ntitle: 坏\n")
    site.article("drafts/a.md", "发布的")
    site.article("drafts/draft.md", "草稿", draft="true")
    site.article("policy/a.md", "政策一")
    gone = site.article("policy/b.md", "政策二")
    site.article("archive/old.md", "旧闻")
    first = site.build()
    assert (first.new, first.skipped) == (5, 1)
    gone.unlink()
    second = site.build()  # a draft counted as a live article would hide this withdrawal
    assert (second.withdrawn, second.skipped, second.unchanged) == (1, 1, 4)  # the broken file warns again
    assert "政策二" not in site.feed("rss.xml").decode()
    shutil.rmtree(site.content / "archive")
    third = site.build()
    assert third.withdrawn == 1 and "旧闻" not in site.feed("rss.xml").decode()
    site.add("tech/broken.md", "---\ntitle: 修好了\ndate: 2026-05-06 14:00\n---\n正文。\n")
    fourth = site.build()
    assert (fourth.new, fourth.skipped) == (1, 0) and "修好了" in site.feed("tech/rss.xml").decode()


@pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that takes any bytes in names")
def test_folders_whose_names_are_not_utf8_are_reported_every_build_and_never_stop_it(site: Site) -> None:
    site.article("tech/a.md", "好的")
    gbk_named = site.content / os.fsdecode("高新".encode("gbk"))  # a zip from a Chinese Windows
    site.article(f"{gbk_named.name}/b.md", "名字坏了")
    images_only = site.content / os.fsdecode("图片".encode("gbk"))
    images_only.mkdir()
    (images_only / "x.png").write_bytes(b"\x89PNG")
    for _ in range(2):
        report = site.build()
        assert (report.new + report.unchanged, report.skipped, report.failed_sources) == (1, 1, [])
        assert "folder name is not valid UTF-8" in report.problems[0]


def test_an_id_handed_on_in_a_rotation_is_published_and_stays_published(site: Site) -> None:
    first = site.article("tech/a.md", "第一篇", id="one")
    second = site.article("tech/b.md", "第二篇", id="two")
    site.build()
    shutil.copy(first, site.content / "tech" / "c.md")  # c.md takes id one from a.md ...
    first.write_text(second.read_text(encoding="utf-8").replace("第二篇", "第二篇改"), encoding="utf-8")
    touch_later(first)  # ... a.md takes id two from b.md, which goes
    second.unlink()
    site.build()
    for _ in range(2):
        rss = site.feed("tech/rss.xml").decode()
        assert "第一篇" in rss and "第二篇改" in rss and "第二篇<" not in rss
        report = site.build()
        assert (report.new, report.changed, report.skipped, report.unchanged) == (0, 0, 0, 2)


def test_an_unchanged_build_writes_nothing_to_the_store(site: Site, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from publisher.store import StoreWriter

    site.article("tech/a.md", "科技")
    site.article("policy/b.md", "政策")
    site.build()
    writes: list[str] = []
    for name in ("insert", "replace", "set_fingerprint", "withdraw", "set_folder_digests"):
        original = getattr(StoreWriter, name)
        spy = lambda self, *a, _n=name, _o=original, **k: (writes.append(_n), _o(self, *a, **k))  # noqa: E731
        monkeypatch.setattr(StoreWriter, name, spy)
    site.build()
    assert writes == []
    touch_later(site.content / "tech" / "a.md")  # same content: only the fingerprint and the digest move
    site.build()
    assert sorted(writes) == ["set_fingerprint", "set_folder_digests"]


def test_an_id_taken_from_a_file_that_kept_its_article_under_a_new_id(site: Site) -> None:
    """b.md takes id one from a.md, whose article stays with it under id two, while a new
    c.md takes b.md's old id: b.md's article must not overwrite a.md's."""
    first = site.article("tech/a.md", "甲", id="one")
    second = site.article("tech/b.md", "乙", id="k")
    site.build()
    site.article("tech/a.md", "甲改", id="two")
    touch_later(first)
    site.article("tech/b.md", "乙改", id="one", date="2026-05-07 10:00")
    touch_later(second)
    site.article("tech/c.md", "丙", id="k")
    report = site.build()
    assert report.skipped == 1 and "took another id in the same build" in report.problems[0]
    rss = site.feed("tech/rss.xml").decode()
    assert "甲改" in rss and "丙" in rss
    again = site.build()
    assert (again.new, again.skipped) == (1, 0) and "乙改" in site.feed("tech/rss.xml").decode()
