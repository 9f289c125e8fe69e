"""The `html` source against a DedeCMS-like site on loopback (cms_site.py): categories fail on
their own, overrides and `:contains()`, the check that shows what it read (golden), polite
polling (304 list pages, failed articles that wait)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from cms_site import CATEGORIES, CmsSite

from conftest import Site, part_failures
from feedcheck import parse_with_feedparser
from publisher.model import ItemProblem, ScopeRead, SourceItem
from publisher.sources import Fetched
from publisher.sources.addresses import AddressGuard
from publisher.sources.failed_items import FailedItem, FailedItems
from publisher.sources.html import ArticleRules, HtmlSource, ListRules, Walk
from publisher.sources.http import Fetcher, Validators
from publisher.text import convert_script

GOLDEN = Path(__file__).parent / "golden" / "check"
NEWS, POLICY, ZONE_NEWS, INSIGHT = "高新院新闻", "政策解读", "高新区新闻", "行业洞见"


@pytest.fixture
def cms() -> Iterator[CmsSite]:
    with CmsSite() as running:
        yield running


def scope_reads(site: Site) -> dict[str, ScopeRead]:
    """The cms source's word on each category, read as a first ingest reads it."""
    app = site.app()
    try:
        [source] = [s for s in app.sources if s.name == "cms"]
        return {r.scope: r for r in source.fetch({}) if isinstance(r, ScopeRead)}
    finally:
        app.close()


def test_a_category_that_404s_and_one_whose_template_changed_leave_the_others_ingesting(
    site: Site, cms: CmsSite
) -> None:
    cms.missing_lists.add(POLICY)
    cms.changed_template.add(ZONE_NEWS)
    site.append_config(cms.categories_toml() + cms.source_toml())
    report = site.build()
    assert not report.problems, report.problems
    # each failing category is reported on its own line, named, with the URL that failed
    assert len(report.failed_parts) == 2 and not report.failed_sources, report.failed_parts
    assert any(f.startswith(f"cms ({POLICY}) {cms.list_url(POLICY)}: HTTP 404") for f in report.failed_parts)
    assert any(
        f.startswith(f"cms ({ZONE_NEWS}) {cms.list_url(ZONE_NEWS)}: no article links") for f in report.failed_parts
    )
    assert report.new == 11 * 4  # every article of the 11 good categories, page 2 included
    assert len(parse_with_feedparser(site.feed("gao-xin-yuan-xin-wen/rss.xml")).entries) == 4
    scopes = scope_reads(site)
    assert set(scopes) == {name for name, _folder in CATEGORIES}
    gone, changed = scopes[POLICY], scopes[ZONE_NEWS]
    assert gone.url == cms.list_url(POLICY) and gone.error is not None and "HTTP 404" in gone.error
    assert gone.hint == "check the URL in the config"
    assert changed.url == cms.list_url(ZONE_NEWS) and changed.error is not None and "ul.list li a" in changed.error
    assert "[sources.list.overrides]" in changed.hint
    assert scopes[NEWS] == ScopeRead(NEWS, cms.list_url(NEWS))  # read, named by its first list page


def test_an_override_gives_a_changed_category_its_own_selector(site: Site, cms: CmsSite) -> None:
    cms.changed_template.add(ZONE_NEWS)
    override = f'[sources.list.overrides."{ZONE_NEWS}"]\nlinks = "div.news dt a"\nmax_pages = 1\n'
    site.append_config(cms.categories_toml() + cms.source_toml(extra_list=override))
    report = site.build()
    assert report.new == 12 * 4 + 3  # the changed category: its first page only (max_pages = 1)
    assert all(scope.error is None for scope in scope_reads(site).values())


def test_a_category_with_two_list_urls_keeps_the_one_that_reads(site: Site, cms: CmsSite) -> None:
    cms.missing_lists.add(POLICY)
    toml = cms.source_toml().replace(
        f'"{NEWS}" = ["{cms.list_url(NEWS)}"]', f'"{NEWS}" = ["{cms.list_url(POLICY)}", "{cms.list_url(NEWS)}"]'
    )
    site.append_config(cms.categories_toml() + toml)
    assert site.build().new == 12 * 4  # all but 政策解读, whose one list page 404s
    news = scope_reads(site)[NEWS]
    assert news.url == cms.list_url(POLICY) and news.error is not None and "HTTP 404" in news.error


def test_a_classless_pager_is_followed_by_a_contains_selector(site: Site, cms: CmsSite) -> None:
    site.append_config(cms.categories_toml() + cms.source_toml())
    assert site.build().new == 13 * 4
    assert "/a/gxyxw/list_2.html" in cms.paths()  # the fourth article is on page 2, behind "下一頁"
    entries = parse_with_feedparser(site.feed("gao-xin-yuan-xin-wen/rss.xml")).entries
    assert [e.title for e in entries] == [f"高新院新闻动态第{n}期" for n in (104, 103, 102, 101)]  # t2s
    assert entries[0].author == "高新院"  # `来源` in the config found `來源` on the page


def test_a_wrong_next_selector_is_a_warning_in_check_and_build(site: Site, cms: CmsSite) -> None:
    site.append_config(cms.categories_toml() + cms.source_toml(next_selector="a.next"))
    checked = site.cli("check")
    assert 'next "a.next" matched nothing: no next page' in checked.output
    assert "the page links to a next page (“下一頁”)" in checked.output
    assert """e.g. 'a:contains("下一頁")'""" in checked.output
    built = site.cli("build")
    assert built.exit_code == 0, built.output
    said = " ".join(built.output.split())
    assert "new articles 39" in said and "skipped (see warnings) 0" in said  # page 1 of each category only
    warnings = re.findall(r"warning: (\S+): the next-page selector `a.next` matched no link", said, re.I)
    assert len(warnings) == 13 and warnings[0] == cms.list_url(NEWS)  # a warning, not a skipped item


def test_check_shows_what_it_read_golden(site: Site, cms: CmsSite) -> None:
    """13 categories: one answers 404, one changed its template, one has an override whose next
    selector is wrong; `title = "h1"` takes the site's logo; an author selector finds nothing."""
    cms.missing_lists.add(POLICY)
    cms.changed_template.add(ZONE_NEWS)
    override = f'[sources.list.overrides."{INSIGHT}"]\nnext = "a.next"\n'
    toml = cms.source_toml(extra_list=override, title="h1", extra_article='author = "span.author"')
    site.append_config(cms.categories_toml() + toml)
    result = site.cli("check")
    assert result.exit_code == 1  # two categories failed
    output = result.output.replace(cms.origin, "http://cms.test")
    golden = GOLDEN / "cms-site.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(output, encoding="utf-8")
    assert output == golden.read_text(encoding="utf-8"), "differs from tests/golden/check (UPDATE_GOLDEN=1)"
    assert [r.path for r in cms.requests].count("/robots.txt") == 1
    assert len(cms.paths()) == 13 + 1  # each category's first list page, and the sample article


def test_the_second_poll_is_answered_by_304s_and_fetches_no_article(site: Site, cms: CmsSite) -> None:
    site.append_config(cms.categories_toml() + cms.source_toml())
    assert site.build().new == 13 * 4
    cms.requests.clear()
    again = site.build()
    assert (again.new, again.changed) == (0, 0)
    lists = [r for r in cms.requests if r.path != "/robots.txt"]
    assert len(lists) == 13 and all(r.conditional and r.status == 304 for r in lists)
    assert {r.path for r in lists} == {f"/a/{folder}/list_1.html" for _name, folder in CATEGORIES}

    cms.requests.clear()
    new = cms.publish(NEWS)
    third = site.build()
    assert third.new == 1
    # The changed list page, the new article, and page 2 (page 1 brought something new).
    changed = [r.path for r in cms.requests if r.status != 304 and r.path != "/robots.txt"]
    assert changed == ["/a/gxyxw/list_1.html", f"/a/gxyxw/{new}.html", "/a/gxyxw/list_2.html"]


class Poller:
    """One html source over the cms site polled as ingest would: what it yields is stored (its
    fingerprints kept), then `committed`; validators and failed items kept in memory."""

    def __init__(self, cms: CmsSite, categories: list[str]) -> None:
        self.cms, self.now = cms, datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
        kept: dict[str, Mapping[str, str]] = {}
        self.validators = Validators(lambda url: kept.get(url, {}), kept.update)
        self.failed_store: dict[str, FailedItem] = {}
        self.fingerprints: dict[str, str] = {}
        self.categories = categories

    def save(self, upserts: list[FailedItem], cleared: list[str]) -> None:
        self.failed_store.update({item.key: item for item in upserts})
        for key in cleared:
            self.failed_store.pop(key, None)

    def poll(self, after: timedelta) -> list[Fetched]:
        self.now += after
        failed = FailedItems(dict(self.failed_store), lambda: self.now, self.save)
        pages = {c: [self.cms.list_url(c)] for c in self.categories}
        lists = ListRules(pages, Walk("ul.list li a", 'a:contains("下一頁")'))
        rules = ArticleRules("div.article h1", "div.content", "div.info", source="来源[:：]\\s*(\\S+)")
        fetcher = Fetcher("publisher/test", self.validators, delay=0, guard=AddressGuard(allow_private=True), retries=0)
        source = HtmlSource("cms", lists, rules, fetcher, "Asia/Shanghai", convert=str, failed=failed)
        results = list(source.fetch(self.fingerprints))
        self.fingerprints.update({r.key: r.fingerprint for r in results if isinstance(r, SourceItem)})
        source.committed()
        return results


def test_a_404_article_waits_and_is_not_new_for_the_walk(cms: CmsSite) -> None:
    cms.missing_articles.add(103)
    poller = Poller(cms, [NEWS])
    first = poller.poll(timedelta(0))
    assert [r.key for r in first if isinstance(r, ItemProblem)] == [cms.article_url(103)]
    failed = poller.failed_store[cms.article_url(103)]
    assert failed.failures == 1 and failed.next_try == poller.now + timedelta(hours=1)  # a 404: an hour first

    cms.requests.clear()
    assert poller.poll(timedelta(minutes=15)) == [ScopeRead(NEWS, cms.list_url(NEWS))]  # a 304
    assert [(r.path, r.status) for r in cms.requests] == [("/robots.txt", 200), ("/a/gxyxw/list_1.html", 304)]

    cms.requests.clear()
    cms.publish(NEWS)  # the list page changes, but the failed article's hour is not over
    second = poller.poll(timedelta(minutes=15))
    assert "/a/gxyxw/103.html" not in cms.paths()  # within its hour: not asked for
    assert not any(isinstance(r, ItemProblem) for r in second)  # and not warned about again
    # Page 1 now lists 105, 104 (stored), 103 (failed): one new link; page 2 (102, 101 stored)
    # brings nothing new, and the walk ends there.
    assert [p for p in cms.paths() if "list_" in p] == ["/a/gxyxw/list_1.html", "/a/gxyxw/list_2.html"]

    cms.requests.clear()
    cms.publish(NEWS)
    third = poller.poll(timedelta(minutes=45))  # its hour is over: asked again, fails again
    assert [r.key for r in third if isinstance(r, ItemProblem)] == [cms.article_url(103)]
    assert poller.failed_store[cms.article_url(103)].failures == 2  # now it waits 6 hours
    assert "/a/gxyxw/103.html" in cms.paths()

    cms.missing_articles.clear()
    cms.requests.clear()
    cms.publish(NEWS)
    fourth = poller.poll(timedelta(hours=7))  # past its wait, and back: read, and forgotten as failed
    assert cms.article_url(103) in {r.key for r in fourth if isinstance(r, SourceItem)}
    assert cms.article_url(103) not in poller.failed_store


def test_a_404_waits_an_hour_first_other_failures_the_next_run() -> None:
    now = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    items = FailedItems({}, lambda: now)
    gone = items.failed("https://a/1.html", "https://a/1.html", "https://a/1.html: HTTP 404 NOT FOUND", gone=True)
    other = items.failed("https://a/2.html", "https://a/2.html", "no date found")
    assert (gone.next_try, other.next_try) == (now + timedelta(hours=1), now)
    again = items.failed("https://a/1.html", "https://a/1.html", "https://a/1.html: HTTP 410 GONE", gone=True)
    assert again.next_try == now + timedelta(hours=6)  # then on along the same steps, to weekly
    for _ in range(5):
        again = items.failed("https://a/1.html", "https://a/1.html", "HTTP 404", gone=True)
    assert again.next_try == now + timedelta(days=7)


def test_meta_regexes_match_the_converted_text_and_the_page_text(cms: CmsSite) -> None:
    """`来源` (Simplified) finds `來源` once the text is converted as the content is (t2s), and
    `來源` (as on the page) still finds it in the page's own text."""
    fetcher = Fetcher("publisher/test", None, delay=0, guard=AddressGuard(allow_private=True))
    lists = ListRules({NEWS: [cms.list_url(NEWS)]}, Walk("ul.list li a"))
    for pattern, convert, found in [
        ("来源[:：]\\s*(\\S+)", partial(convert_script, mode="t2s"), "高新院"),
        ("來源[:：]\\s*(\\S+)", partial(convert_script, mode="t2s"), "高新院"),
        ("来源[:：]\\s*(\\S+)", str, None),  # no conversion: the page says 來源
    ]:
        rules = ArticleRules("div.article h1", "div.content", "div.info", source=pattern)
        source = HtmlSource("cms", lists, rules, fetcher, "Asia/Shanghai", convert=convert)
        item = source.article(cms.article_url(104), NEWS, conditional=False)
        assert isinstance(item, SourceItem) and item.author == found, pattern


def test_an_override_must_name_a_category_of_pages(site: Site, cms: CmsSite) -> None:
    override = '[sources.list.overrides."tech"]\nmax_pages = 1\n[sources.list.overrides."区域经济研究"]\nnext = "a"\n'
    toml = cms.source_toml(extra_list=override).replace(f'"{NEWS}" = ["{cms.list_url(NEWS)}"], ', "")
    toml = toml.replace(f'"科技创新" = ["{cms.list_url("科技创新")}"], ', "")
    site.append_config(cms.categories_toml() + toml)
    result = site.cli("check")
    assert result.exit_code == 2
    assert "sources[1].list.overrides.tech" in result.output and "not a category of list.pages" in result.output
    assert "区域经济研究" not in re.sub(r"name one of.*", "", result.output)  # its slug or name both count


def test_a_category_with_no_list_page_is_refused_at_check(site: Site, cms: CmsSite) -> None:
    """`"政策解读" = []` would read nothing and show the category as ok at every run."""
    toml = cms.source_toml().replace(f'"{NEWS}" = ["{cms.list_url(NEWS)}"]', f'"{NEWS}" = []')
    site.append_config(cms.categories_toml() + toml)
    result = site.cli("check")
    assert result.exit_code == 2
    assert f"sources[1].list.pages.{NEWS}" in result.output and "no list page" in result.output


def test_an_override_may_name_the_category_by_its_slug(site: Site, cms: CmsSite) -> None:
    cms.changed_template.add("科技创新")
    override = '[sources.list.overrides."tech"]\nlinks = "div.news dt a"\n'
    site.append_config(cms.categories_toml() + cms.source_toml(extra_list=override))
    assert site.build().new == 13 * 4
    assert len(parse_with_feedparser(site.feed("tech/rss.xml")).entries) == 4


def test_a_changed_template_keeps_failing_on_the_next_poll_not_hidden_by_a_304(cms: CmsSite) -> None:
    """Its list page answers 200 with no link the selector matches: the category fails, and the
    next poll reads the page in full again (no validators kept) and fails again, instead of
    taking a 304 for "nothing new" and showing the category as read."""
    cms.changed_template.add(ZONE_NEWS)
    poller = Poller(cms, [NEWS, ZONE_NEWS])  # 高新院新闻's articles stored: the second poll is conditional
    for after in (timedelta(0), timedelta(minutes=15)):
        cms.requests.clear()
        [read] = [r for r in poller.poll(after) if isinstance(r, ScopeRead) and r.scope == ZONE_NEWS]
        assert read.url == cms.list_url(ZONE_NEWS) and read.error == "no article links match `ul.list li a`", read
        assert [(r.path, r.status) for r in cms.requests if "gxqxw" in r.path] == [("/a/gxqxw/list_1.html", 200)]


def test_check_and_build_word_a_failing_category_the_same_way(site: Site, cms: CmsSite) -> None:
    cms.missing_lists.add(POLICY)
    cms.changed_template.add(ZONE_NEWS)
    site.append_config(cms.categories_toml() + cms.source_toml())

    checked, built = site.cli("check"), site.cli("build")
    assert checked.exit_code == built.exit_code == 1
    said = part_failures(built.stderr)
    assert len(said) == 2 and said == part_failures(checked.stderr), (checked.stderr, built.stderr)
    assert said[0].startswith(f"part failed: cms ({POLICY}) {cms.list_url(POLICY)}: HTTP 404")
    assert said[1].startswith(f"part failed: cms ({ZONE_NEWS}) {cms.list_url(ZONE_NEWS)}: no article links match")


def test_links_to_other_hosts_are_left_out_and_counted_unless_the_host_is_allowed(site: Site, cms: CmsSite) -> None:
    """A list page's link to another host (here `localhost`, the same server by another name) is
    not followed, not a problem and not a failed item; `check` counts it and names the host;
    with the host in `hosts` it is read."""
    port = cms.origin.rsplit(":", 1)[1]
    cms.foreign_origin = f"http://localhost:{port}"
    foreign = f"http://localhost:{port}/a/gxyxw/104.html"
    site.append_config(cms.categories_toml() + cms.source_toml())
    checked = site.cli("check")
    assert "1 link to other hosts left out (localhost): add the host to `hosts` on this source to follow it" in (
        checked.output
    ), checked.output
    report = site.build()
    assert report.new == 13 * 4 and not report.problems and report.skipped == 0, report.problems
    app = site.app()
    try:
        assert app.store.failed_items("cms") == {}
    finally:
        app.close()

    allowed = site.config.read_text(encoding="utf-8").replace(
        "delay = 0\n[sources.list]", 'delay = 0\nhosts = ["localhost"]\n[sources.list]'
    )
    site.config.write_text(allowed, encoding="utf-8")
    cms.requests.clear()
    again = site.build()
    assert again.new == 1 and not again.problems, again.problems  # the settings changed: read again, and the host's
    feed = site.feed("gao-xin-yuan-xin-wen/rss.xml").decode()
    assert foreign in feed


def test_a_list_page_that_failed_mid_walk_is_read_again_at_the_next_run(cms: CmsSite) -> None:
    """Page 2 fails after page 1 brought new links: the next run walks to page 2 again although
    page 1 brings nothing new by then, and finds the article that was only there."""
    poller = Poller(cms, [NEWS])
    poller.poll(timedelta(0))  # 104, 103, 102 on page 1; 101 on page 2
    new = [cms.publish(NEWS) for _ in range(4)]  # 108, 107, 106 on page 1; 105, 104, 103 on page 2
    cms.broken_paths.add("/a/gxyxw/list_2.html")
    second = poller.poll(timedelta(minutes=15))
    [failed] = [r for r in second if isinstance(r, ScopeRead)]
    assert failed.url == cms.list_url(NEWS, 2) and failed.error is not None and "HTTP 503" in failed.error
    assert {r.key for r in second if isinstance(r, SourceItem)} == {cms.article_url(n) for n in new[1:]}

    cms.broken_paths.clear()
    cms.requests.clear()
    third = poller.poll(timedelta(minutes=15))
    assert {r.key for r in third if isinstance(r, SourceItem)} == {cms.article_url(new[0])}  # 105, page 2's
    assert [r for r in third if isinstance(r, ScopeRead)] == [ScopeRead(NEWS, cms.list_url(NEWS))]
    assert [p for p in cms.paths() if "list_" in p][:2] == ["/a/gxyxw/list_1.html", "/a/gxyxw/list_2.html"]
    assert not any(key.startswith("list-walk:") for key in poller.failed_store)  # the walk went through: forgotten

    cms.requests.clear()
    cms.publish(NEWS)
    fourth = poller.poll(timedelta(minutes=15))  # back to the usual: page 1 only brings the new one
    assert len([r for r in fourth if isinstance(r, SourceItem)]) == 1
    assert [p for p in cms.paths() if "list_" in p] == ["/a/gxyxw/list_1.html", "/a/gxyxw/list_2.html"]


def test_a_failed_walk_whose_category_left_the_config_is_forgotten_at_the_next_run(cms: CmsSite) -> None:
    """Only a walk from the same first page clears a failed walk: once its category (or list
    URL) leaves the config, the source's next run forgets it, or it would wait for good."""
    poller = Poller(cms, [NEWS, POLICY])
    poller.poll(timedelta(0))
    for _ in range(4):
        cms.publish(NEWS)  # page 1 all new: the walk goes on to page 2, which fails
    cms.broken_paths.add("/a/gxyxw/list_2.html")
    poller.poll(timedelta(minutes=15))
    assert [key for key in poller.failed_store if key.startswith("list-walk:")] == [f"list-walk:{cms.list_url(NEWS)}"]
    poller.categories = [POLICY]
    poller.poll(timedelta(minutes=15))
    assert not any(key.startswith("list-walk:") for key in poller.failed_store)


def test_the_dedecms_example_in_docs_sources_md_passes_check_against_the_fixture_site(site: Site, cms: CmsSite) -> None:
    """docs/sources.md's html example, as written but for the site's address (and, the fixture
    being on loopback, allow_private and no delay), reads the DedeCMS-like site: its override
    serves the category whose template changed."""
    docs = (Path(__file__).parent.parent / "docs" / "sources.md").read_text(encoding="utf-8")
    section = docs[docs.index("## `html`") :]
    example = section[section.index("```toml\n") + len("```toml\n") : section.index("```\n", section.index("```toml"))]
    assert '[sources.list.overrides."高新区新闻"]' in example and "[text]" in example
    example = example.replace("https://www.example.org", cms.origin)
    example = example.replace('name = "site"\n', 'name = "site"\nallow_private = true\ndelay = 0\n')
    example = example.replace('[text]\nconvert = "t2s"', "")  # the site's config has the same [text] already
    cms.changed_template.add(ZONE_NEWS)
    site.append_config(f'\n[[categories]]\nname = "{ZONE_NEWS}"\n' + example)
    checked = site.cli("check")
    assert checked.exit_code == 0, checked.output
    said = " ".join(checked.output.split())
    assert 'links "div.news dt a" matched 3 elements: 3 distinct articles' in said, said  # the override
    assert "next page by url_pattern: " + cms.list_url(ZONE_NEWS, 2) in said
    assert "problem:" not in said and "failed" not in said.replace("0 failed", "")
    assert site.build().new == 3 * 4
