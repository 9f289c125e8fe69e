"""Bodies rendered when shown (issue 16): a file's article is stored unrendered and its body
rendered when a feed, page or digest first shows it. The bytes must be the same as when every
body is rendered as it is read, and what cannot be rendered then must never cost a feed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from conftest import ROOT, Site
from publisher.model import Article
from publisher.sources.files import FilesSource

DEMO = ROOT / "demo" / "content"

# Bodies that take every path of rendering: plain prose (no sanitiser), links and images
# (made absolute), raw HTML (sanitised), a table, code, glosses, traditional characters (t2s),
# a given summary, an HTML file; the demo's text pages in GBK.
VARIED = {
    "tech/links.md": "---\ntitle: 鏈接與圖片\ndate: 2026-05-06 10:00\nurl: /news/links.html\n---\n"
    "見[報告](report.pdf)與![圖](/img/a.png)。<script>alert(1)</script><b onclick=x>粗</b>\n\n"
    "| 項目 | 金額 |\n|---|---:|\n| 園區 | 3 |\n\n```python\nprint('高新')\n```\n",
    "tech/glosses.md": "---\ntitle: 高新(gāo xīn)區發展\ndate: 2026-05-06 11:00\nsummary: 給定的摘要(zhāi yào)\n---\n"
    "高新(gāo xīn)區與經濟開發區 & 一帶一路。\n\n> 引用\n> - 列表\n",
    "tech/relative.md": "---\ntitle: 相對鏈接\ndate: 2026-05-06 10:30\n---\n見[附件](docs/a.html)。\n",
    "policy/page.html": "---\ntitle: 政策解讀 HTML\ndate: 2026-05-06 12:00\n---\n"
    "<p>第一段<a href='../a.html'>相對鏈接</a></p><iframe src='x'></iframe><p>第二段</p>",
}


def site_with_content(root: Path) -> Site:
    site = Site(root)
    for folder in ("tech", "policy"):  # the demo's folders of the test site's categories
        shutil.copytree(DEMO / folder, site.content / folder)
    (site.content / "tech" / "2026-11-03-pipe-network-warning.md").unlink()  # a category the site lacks
    for page in DEMO.glob("*.txt"):
        shutil.copy(page, site.content)
    for relative, text in VARIED.items():
        site.add(relative, text)
    return site


def every_file(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_bodies_rendered_when_shown_give_the_bytes_of_bodies_rendered_as_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lazy = site_with_content(tmp_path / "lazy")
    report = lazy.build()
    assert report.new >= 11 and not report.problems, report.problems
    [(rendered,)] = lazy.sql("SELECT count(*) FROM article_renditions")
    [(stored,)] = lazy.sql("SELECT count(*) FROM articles")
    assert 0 < rendered <= stored

    # The same content with every body rendered as it is read, as a web source's are
    eager = site_with_content(tmp_path / "eager")
    monkeypatch.delattr(FilesSource, "read_again")
    assert eager.build().new == report.new
    assert eager.sql("SELECT count(*) FROM article_renditions") == [(stored,)]

    lazy_files, eager_files = every_file(lazy.out), every_file(eager.out)
    assert lazy_files.keys() == eager_files.keys() and len(lazy_files) > 10
    different = [name for name in lazy_files if lazy_files[name].replace(b"/lazy/", b"/eager/") != eager_files[name]]
    assert different == []
    feed = lazy_files["tech/atom.xml"].decode()
    assert "https://www.example.org/news/report.pdf" in feed and "script" not in feed  # rendered, sanitised
    assert "https://www.example.org/docs/a.html" in feed  # against the site, when the article has no URL
    assert "给定的摘要" in feed and "链接与图片" in feed  # given summary, glosses gone, t2s


def test_a_rebuild_reads_no_body_twice_and_an_edit_is_rendered_anew(site: Site) -> None:
    site.article("tech/a.md", "第一篇", body="最初的正文。")
    site.article("tech/b.md", "第二篇", date="2026-05-07 09:00", body="另一篇。")
    site.build()
    first = site.sql("SELECT article_id, body_hash FROM article_renditions ORDER BY article_id")
    assert len(first) == 2

    (site.content / "tech" / "b.md").unlink()  # gone: an unchanged article keeps its rendition
    again = site.build()
    assert (again.withdrawn, again.problems) == (1, [])
    site.article("tech/a.md", "第一篇", body="改过的正文。")  # an edit: a new body hash, rendered anew
    edited = site.build()
    assert edited.changed == 1
    now = site.sql("SELECT article_id, body_hash FROM article_renditions ORDER BY article_id")
    assert now[0][0] == first[0][0] and now[0][1] != first[0][1]
    assert "改过的正文" in site.feed("tech/rss.xml").decode()


def test_a_feed_still_shows_max_items_when_one_is_left_out(site: Site) -> None:
    site.write_config(max_items=2)
    for n, day in enumerate(("05", "06", "07")):
        site.article(f"tech/a{n}.md", f"第{n}篇", date=f"2026-05-{day} 09:00")
    app = site.app()
    from publisher.model import BuildReport

    report = BuildReport()
    app.ingest(report)
    (site.content / "tech" / "a2.md").unlink()  # the newest, gone before it is shown
    app.write_output(report)
    app.close()
    feed = site.feed("tech/rss.xml").decode()
    assert feed.count("<item>") == 2 and "第1篇" in feed and "第0篇" in feed


def test_a_body_left_out_outside_a_build_is_shown_once_its_file_is_back(site: Site) -> None:
    """The web process keeps one App for hours: an article left out of a digest preview while its
    file was away is shown again as soon as the file is back."""
    path = site.article("tech/a.md", "标题", body="正文。")
    app = site.app()
    from publisher.model import BuildReport

    app.ingest(BuildReport())
    text = path.read_text(encoding="utf-8")
    path.unlink()
    assert app.store.latest("tech", 10) == []
    path.write_text(text, encoding="utf-8")
    assert [a.title for a in app.store.latest("tech", 10)] == ["标题"]
    app.close()


def test_a_body_rendered_when_shown_after_an_edit_is_kept_by_the_next_ingest(site: Site) -> None:
    path = site.article("tech/a.md", "标题", body="旧的正文。")
    app = site.app()
    from publisher.model import BuildReport

    app.ingest(BuildReport())  # stored, not rendered yet
    site.article("tech/a.md", "标题", body="新的正文。")
    [shown] = app.store.latest("tech", 10)  # rendered from the file as it is now
    app.ingest(BuildReport())  # stores the edit: the rendition made above is current
    path.unlink()  # so nothing needs the file any more
    [again] = app.store.latest("tech", 10)
    app.close()
    assert "新的正文" in shown.content_html and again.content_html == shown.content_html


def test_a_body_that_cannot_be_read_when_shown_is_left_out_named_and_its_feeds_written_again(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.article("tech/keep.md", "留下的", body="留下。")
    site.article("tech/gone.md", "消失的", date="2026-05-07 09:00", body="会消失。")
    site.article("policy/other.md", "别的", body="别的类。")
    app = site.app()
    from publisher.model import BuildReport

    report = BuildReport()
    app.ingest(report)
    gone = site.content / "tech" / "gone.md"
    gone.unlink()  # between the ingest and the feeds, as a deploy might
    app.write_output(report)
    app.close()
    [problem] = report.problems
    assert problem.startswith(f"{gone}: cannot read"), problem
    feed = site.feed("tech/rss.xml").decode()
    assert "留下的" in feed and "消失的" not in feed
    # only the feeds that would show it stay marked
    assert {row[0] for row in site.sql("SELECT scope FROM dirty_feeds")} == {"", "tech"}
    assert site.sql("SELECT value FROM meta WHERE key = 'render_signature'") != []

    after = site.build()  # the next ingest withdraws it, and the marks go
    assert (after.withdrawn, after.problems) == (1, [])
    assert site.sql("SELECT count(*) FROM dirty_feeds") == [(0,)]


def test_a_file_edited_after_its_ingest_is_shown_as_it_is_now(site: Site) -> None:
    """A digest may come long after the last ingest: the file's body now is what is shown, and
    kept under its own body hash, so the next ingest stores the edit and renders nothing again."""
    site.article("tech/a.md", "标题", body="旧的正文。")
    app = site.app()
    from publisher.model import BuildReport

    app.ingest(BuildReport())
    site.article("tech/a.md", "标题", body="新的正文。")
    [article] = app.store.latest("tech", 10)
    assert "新的正文" in article.content_html
    app.close()
    report = site.build()
    assert report.changed == 1 and "新的正文" in site.feed("tech/rss.xml").decode()


def test_each_scope_is_given_as_soon_as_the_bodies_it_shows_are_rendered(site: Site) -> None:
    """A build's feeds of a scope are rendered while the bodies of the scopes after it still
    render (store.latest_each): a scope comes once its own bodies are made, before the next
    scope's are asked for; what was made is stored once all are."""
    from publisher.model import BuildReport, Rendition

    site.write_config(max_items=2)
    for n in range(3):
        site.article(f"tech/t{n}.md", f"科技{n}", date=f"2026-05-0{n + 5} 09:00")
        site.article(f"policy/p{n}.md", f"政策{n}", date=f"2026-04-0{n + 5} 09:00")
    app = site.app()
    app.ingest(BuildReport())
    store = app.store
    asked: list[str] = []

    def renderer(articles: Sequence[Article]) -> Iterator[tuple[Rendition, str] | None]:
        for article in articles:
            asked.append(article.key)
            yield Rendition(f"<p>{article.key}</p>", article.title), article.body_hash

    store.render_bodies = renderer
    given = []
    for scope, articles in store.latest_each(["tech", "policy"], 2):
        given.append((scope, [a.key for a in articles], list(asked)))
        assert site.sql("SELECT count(*) FROM article_renditions") == [(0,)]  # stored once all are made
    app.close()
    assert given == [
        ("tech", ["tech/t2.md", "tech/t1.md"], ["tech/t2.md", "tech/t1.md"]),
        ("policy", ["policy/p2.md", "policy/p1.md"], ["tech/t2.md", "tech/t1.md", "policy/p2.md", "policy/p1.md"]),
    ]
    assert site.sql("SELECT count(*) FROM article_renditions") == [(4,)]
