"""The files source: front matter, text pages, encodings, categories, broken files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import PUBLISHER_MAIN, Site
from publisher.model import Deferred, ItemProblem, SourceItem
from publisher.sources.files import FilesSource, parse_date, parse_text_page

SHANGHAI = ZoneInfo("Asia/Shanghai")

TEXT_PAGE = """\
- 首页
- 新闻中心
- 高新院新闻
高新院召开2026年度科技成果转化工作推进会
来源:高新院 achie.org 日期:2026-04-12 点击:次
第一段正文，介绍会议。

第二段正文，部署任务。
相关文章推荐:
- 另一篇文章标题一
- 另一篇文章标题二
"""


def items(source: FilesSource) -> list[SourceItem | ItemProblem]:
    return [r for r in source.fetch({}) if isinstance(r, (SourceItem, ItemProblem))]


def test_text_page_parts() -> None:
    page = parse_text_page(TEXT_PAGE)
    assert page.title == "高新院召开2026年度科技成果转化工作推进会"
    assert page.origin == "高新院 achie.org"
    assert page.date == "2026-04-12"
    assert page.paragraphs == ["第一段正文，介绍会议。", "第二段正文，部署任务。"]


def test_traditional_text_page_with_full_width_colons() -> None:
    page = parse_text_page("高新區(qū)新聞\n來源：高新院  日期：2026-02-18  點擊:次\n正文。\n相關文章推薦:\n- 甲\n")
    assert (page.title, page.origin, page.date, page.paragraphs) == (
        "高新區(qū)新聞",
        "高新院",
        "2026-02-18",
        ["正文。"],
    )


def test_text_page_navigation_meta_and_related_never_reach_the_feed(site: Site) -> None:
    site.add("高新院新闻/page.txt", TEXT_PAGE)
    site.build()
    rss = site.feed("gao-xin-yuan-xin-wen/rss.xml").decode()
    assert "第一段正文" in rss and "第二段正文" in rss
    for gone in ("新闻中心", "点击", "相关文章推荐", "另一篇文章标题一", "来源"):
        assert gone not in rss
    assert "高新院 achie.org" in rss  # the source becomes the author
    assert "Sun, 12 Apr 2026 00:00:00 +0800" in rss


def test_gb18030_and_utf8_files(site: Site) -> None:
    site.add("政策解读/gbk.txt", TEXT_PAGE.replace("高新院召开", "政策解读会召开"), encoding="gb18030")
    site.add("政策解读/bom.txt", "\ufeff" + TEXT_PAGE.replace("高新院召开", "带BOM的页面"))
    report = site.build()
    assert report.new == 2 and report.skipped == 0
    rss = site.feed("policy/rss.xml").decode()
    assert "政策解读会召开" in rss and "带BOM的页面" in rss


def test_category_from_front_matter_folder_or_default(site: Site) -> None:
    site.article("tech/by-slug-folder.md", "按文件夹")  # folder named by slug
    site.article("科技创新/by-name-folder.md", "按中文文件夹")  # folder named by name
    site.article("other/front.md", "前置元数据", category="policy")  # front matter wins
    site.article("other/fallback.md", "默认栏目")  # unknown folder: the source default
    site.article("tech/two.md", "两个栏目", categories="[科技创新, 政策解读]")
    site.build()
    tech = site.feed("tech/rss.xml").decode()
    policy = site.feed("policy/rss.xml").decode()
    default = site.feed("gao-xin-yuan-xin-wen/rss.xml").decode()
    assert "按文件夹" in tech and "按中文文件夹" in tech and "两个栏目" in tech
    assert "前置元数据" in policy and "两个栏目" in policy
    assert "默认栏目" in default and "前置元数据" not in default


def test_optional_front_matter_fields(site: Site) -> None:
    site.article(
        "tech/full.md", "全字段", date="2026-05-06T14:00:00+08:00", body="见[附件](/files/a.pdf)。\n\n![图](img/a.jpg)",
        id="news-1", author="研究部", summary="人工摘要", url="https://www.example.org/n/1.html",
        image="/uploads/c.jpg", tags="[创新, 报告]", updated="2026-05-07 10:00",
    )  # fmt: skip
    site.build()
    import json

    item = json.loads(site.feed("tech/feed.json"))["items"][0]
    assert item["id"].startswith("tag:www.example.org,2026-05-06:id/news-1")
    assert item["url"] == "https://www.example.org/n/1.html"
    assert item["summary"] == "人工摘要"
    assert item["image"] == "https://www.example.org/uploads/c.jpg"
    assert item["authors"] == [{"name": "研究部"}]
    assert item["date_published"] == "2026-05-06T14:00:00+08:00"
    assert item["date_modified"] == "2026-05-07T10:00:00+08:00"
    assert "创新" in item["tags"] and "科技创新" in item["tags"]
    assert 'href="https://www.example.org/files/a.pdf"' in item["content_html"]
    assert 'src="https://www.example.org/n/img/a.jpg"' in item["content_html"]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("no-front.md", "just text\n", "no front matter"),
        ("unclosed.md", "---\ntitle: x\n", "not closed"),
        ("bad-yaml.md", "---\ntitle: x\ndate: [2026\n---\nbody\n", "front matter line"),
        ("no-title.md", "---\ndate: 2026-01-01\n---\nbody\n", "no `title`"),
        ("no-date.md", "---\ntitle: x\n---\nbody\n", "no `date`"),
        ("bad-date.md", "---\ntitle: x\ndate: yesterday\n---\nbody\n", "is not a date"),
        ("unknown-cat.md", "---\ntitle: x\ndate: 2026-01-01\ncategory: 体育\n---\nbody\n", "unknown category '体育'"),
        ("binary.txt", b"\xff\xfe\x00\x00\x81".decode("latin-1"), "neither UTF-8 nor GB18030"),
        ("no-meta.txt", "标题\n正文\n", "no meta line"),
        ("deep.md", "---\ntitle: x\ndate: 2026-01-01\n---\n" + ">" * 100_000 + " x\n", "more than 100 deep"),
    ],
)
def test_broken_file_is_skipped_with_a_warning_and_the_build_goes_on(
    site: Site, name: str, content: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    site.article("tech/good.md", "好文章")
    bad = site.content / "tech" / name
    bad.write_bytes(content.encode("latin-1") if name == "binary.txt" else content.encode())
    report = site.build()
    assert report.new == 1 and report.skipped == 1
    assert str(bad) in report.problems[0] and reason in report.problems[0]
    assert any(str(bad) in r.getMessage() for r in caplog.records)
    assert "好文章" in site.feed("tech/rss.xml").decode()


def test_strict_makes_a_broken_file_fatal(site: Site) -> None:
    site.article("tech/good.md", "好文章")
    site.add("tech/broken.md", "---\ntitle: x\n")
    result = site.cli("build", "--strict")
    assert result.exit_code == 1
    assert "broken.md" in result.output
    relaxed = site.cli("build")
    assert relaxed.exit_code == 0, relaxed.output


def test_drafts_hidden_files_and_other_suffixes_are_ignored(site: Site) -> None:
    site.article("tech/draft.md", "草稿", draft="true")
    site.article("tech/.hidden.md", "隐藏")
    site.add("tech/notes.docx", "x")
    site.article("tech/real.md", "正式")
    report = site.build()
    assert report.new == 1 and report.skipped == 0


def test_links_to_files_are_read_and_links_to_folders_are_not_followed(site: Site) -> None:
    real = site.article("archive/real.md", "正式")
    (site.content / "tech").mkdir(exist_ok=True)
    (site.content / "tech" / "linked.md").symlink_to(real)
    (site.content / "tech" / "loop").symlink_to(site.content, target_is_directory=True)
    fetched = FilesSource("content", site.content, "Asia/Shanghai").fetch({})
    keys = [r.key for r in fetched if isinstance(r, Deferred)]
    assert keys == ["archive/real.md", "tech/linked.md"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-05-06", datetime(2026, 5, 6, tzinfo=SHANGHAI)),
        ("2026-05-06 14:00", datetime(2026, 5, 6, 14, 0, tzinfo=SHANGHAI)),
        ("2026/5/6 14:00:30", datetime(2026, 5, 6, 14, 0, 30, tzinfo=SHANGHAI)),
        ("2026年5月6日", datetime(2026, 5, 6, tzinfo=SHANGHAI)),
        ("2026-05-06T06:00:00Z", datetime(2026, 5, 6, 6, tzinfo=UTC)),
        ("2026-05-06T14:00:00+0900", datetime(2026, 5, 6, 14, tzinfo=timezone(timedelta(hours=9)))),
        ("2026-02-30", None),
        ("soon", None),
    ],
)
def test_dates(value: str, expected: datetime | None) -> None:
    assert parse_date(value, SHANGHAI) == expected


def test_missing_folder_is_a_source_error(tmp_path: Path) -> None:
    from publisher.errors import SourceError

    with pytest.raises(SourceError, match="does not exist"):
        list(FilesSource("s", tmp_path / "nope", "Asia/Shanghai").fetch({}))


@pytest.mark.parametrize(
    "front",
    [
        "title: 普通标题\ndate: 2026-05-06 14:00\ncategory: tech\nid: news-42\nauthor: 研究部",
        "title: 普通标题二\ndate: 2026-05-06\nid: 0123\ndraft: yes",  # YAML: octal 83, and a draft
        'title: "引号: 标题"\ndate: 2026-05-06 14:00\ntags: [甲, 乙]',
        "title: 标题 # 注释\ndate: 2026-05-06T14:00:00+08:00\ndraft: false",
        "title: 标题\ndate: 2026-05-06\nupdated: 2026-05-07 09:30:15\nurl: https://x.org/a?b=1",
    ],
)
def test_plain_front_matter_means_what_yaml_means(front: str) -> None:
    """The fast path for `key: text` lines agrees with YAML on every value we use."""
    import yaml

    from publisher.sources.file_formats import _plain_front_matter
    from publisher.sources.file_formats import split_front_matter as _split_front_matter

    meta, body = _split_front_matter(f"---\n{front}\n---\n正文\n")
    expected = yaml.safe_load(front)
    assert body == "正文\n" and meta.keys() == expected.keys()
    zone = ZoneInfo("Asia/Shanghai")
    for key, value in meta.items():
        if key in ("date", "updated"):
            assert parse_date(value, zone) == parse_date(expected[key], zone)
        else:
            assert str(value) == str(expected[key]) or value == expected[key]
    fast = _plain_front_matter(front + "\n")
    assert (fast is not None) == ("id: 0123" not in front and not front.startswith('title: "') and "#" not in front)


def test_front_matter_with_windows_line_ends_and_yaml_end_marker(site: Site) -> None:
    site.add("tech/crlf.md", "---\r\ntitle: 换行符\r\ndate: 2026-05-06 14:00\r\n---\r\n正文\r\n")
    site.add("tech/dots.md", "---\ntitle: 三个点\ndate: 2026-05-07\n...\n正文\n")
    report = site.build()
    rss = site.feed("tech/rss.xml").decode()
    assert report.new == 2 and "<title>换行符</title>" in rss and "<title>三个点</title>" in rss


def test_a_link_to_itself_or_a_loop_of_links_is_skipped_and_the_rest_is_published(site: Site) -> None:
    """Issue 17, item 16: such a link failed the whole source, and a first build wrote every
    feed empty."""
    site.article("tech/good.md", "好文章")
    site.article("policy/other.md", "另一篇")
    links = site.content / "tech"
    (links / "self.md").symlink_to("self.md")
    (links / "a.md").symlink_to("b.md")
    (links / "b.md").symlink_to("a.md")
    report = site.build()
    assert report.failed_sources == [] and (report.new, report.skipped) == (2, 3)
    for name in ("self.md", "a.md", "b.md"):
        [problem] = [p for p in report.problems if p.startswith(f"{links / name}:")]
        assert "symbolic link" in problem, problem
    assert "好文章" in site.feed("tech/rss.xml").decode() and "另一篇" in site.feed("policy/rss.xml").decode()
    again = site.build()  # and again: still reported, still published
    assert (again.skipped, again.failed_sources) == (3, [])


def test_a_sub_folder_that_cannot_be_listed_is_reported_and_its_articles_stay(site: Site) -> None:
    """The wider class of item 16: one unreadable folder failed the whole source. Its articles
    must not be withdrawn either: it may be back at the next build."""
    site.article("tech/kept.md", "留下的文章")
    site.article("policy/old.md", "旧文章")
    assert site.build().new == 2
    site.article("policy/new.md", "新文章")
    program = [sys.executable, "-c", PUBLISHER_MAIN]
    if os.geteuid() == 0:  # root reads any folder unless it gives up that capability
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux): nothing makes a folder unreadable to root")
        drop = "-dac_override,-dac_read_search"
        program = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}", "--", *program]
    (site.content / "tech").chmod(0)
    try:
        result = subprocess.run([*program, "--config", str(site.config), "build"], capture_output=True, text=True,
                                timeout=120, cwd=site.root)  # fmt: skip
    finally:
        (site.content / "tech").chmod(0o755)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{site.content / 'tech'}: cannot list this folder" in result.stderr
    assert "新文章" in site.feed("policy/rss.xml").decode()
    assert "留下的文章" in site.feed("tech/rss.xml").decode()  # not withdrawn
    again = site.build()  # readable again: nothing new, nothing gone
    assert (again.new, again.withdrawn, again.failed_sources) == (0, 0, [])


@pytest.mark.parametrize("quoted", [True, False], ids=["yaml", "plain-fast-path"])
def test_control_characters_in_front_matter_are_removed_with_a_warning_and_the_article_published(
    site: Site, quoted: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 17, item 2: Word's manual line break (U+000B) and other C0 controls made YAML
    refuse the front matter, and the article disappeared."""
    title = '"政策\x0b解读"' if quoted else "政策\x0b解读"
    front = f"title: {title}\ndate: 2026-05-06 14:00\nauthor: 张\x01三\x7f"
    path = site.add("policy/word.md", f"---\n{front}\n---\n正文。\n")
    report = site.build()
    assert (report.new, report.skipped) == (1, 0), report.problems
    feed = site.feed("policy/rss.xml").decode()
    assert "<title>政策解读</title>" in feed and "张三" in feed
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"{path}: front matter line 2: removed control characters U+000B" in warnings
    assert f"{path}: front matter line 4: removed control characters U+0001, U+007F" in warnings
