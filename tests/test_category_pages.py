"""`categories[].url`, the category's page on the site: the category feed's home link in all
three formats and the OPML, the digest's "more" link, and the only `domain` an RSS
`<category>` gets (a category without a page has none, rather than a URL that leads nowhere)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from conftest import Site
from feedcheck import assert_json_feed, assert_matches_atom_schema, atom_schema, parse_with_feedparser, parse_xml
from publisher.config import load_settings
from publisher.digest import Look, Renderer
from publisher.errors import ConfigError
from publisher.model import Article, Category
from publisher.model import Site as SiteInfo
from publisher.theme import Theme

POLICY_PAGE = "https://www.example.org/zcjd/"
ATOM = "{http://www.w3.org/2005/Atom}"


def with_policy_page(site: Site) -> None:
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace('slug = "policy"\n', f'slug = "policy"\nurl = "{POLICY_PAGE}"\n'), "utf-8")


def test_a_category_page_is_the_category_feeds_home_and_its_rss_category_domain(site: Site) -> None:
    site.article("tech/shared.md", "科技成果转化与产业政策联动", date="2026-11-26 10:00", categories="[policy, tech]")
    site.build()
    before = parse_xml(site.feed("rss.xml"))
    assert [c.get("domain") for c in before.iter("category")] == [None, None]  # no page: no domain
    with_policy_page(site)
    report = site.build()
    assert "policy/rss.xml" in report.written_paths  # the new link reshapes the output

    policy_rss = parse_with_feedparser(site.feed("policy/rss.xml"))
    assert policy_rss.feed.link == POLICY_PAGE
    assert parse_with_feedparser(site.feed("tech/rss.xml")).feed.link == "https://www.example.org/"
    atom = parse_xml(site.feed("policy/atom.xml"))
    assert [link.get("href") for link in atom.iter(f"{ATOM}link") if link.get("rel") == "alternate"][0] == POLICY_PAGE
    assert assert_json_feed(site.feed("policy/feed.json"))["home_page_url"] == POLICY_PAGE
    assert json.loads(site.feed("feed.json"))["home_page_url"] == "https://www.example.org/"  # the site's own

    # The site feed's item: policy points to its page, tech has no page and so no domain.
    rss = parse_xml(site.feed("rss.xml"))
    assert {c.text: c.get("domain") for c in rss.iter("category")} == {"政策解读": POLICY_PAGE, "科技创新": None}
    site_atom = site.feed("atom.xml")
    terms = {c.get("term"): c.get("scheme") for c in parse_xml(site_atom).iter(f"{ATOM}category")}
    assert terms == {"policy": POLICY_PAGE, "tech": None}
    parse_with_feedparser(site.feed("rss.xml"))
    schema = atom_schema()
    if schema is not None:
        assert_matches_atom_schema(site_atom, schema)

    opml = etree.fromstring(site.feed("feeds.opml"))
    homes = {o.get("xmlUrl").rsplit("/", 2)[-2]: o.get("htmlUrl") for o in opml.iter("outline") if o.get("xmlUrl")}
    assert homes["policy"] == POLICY_PAGE and homes["tech"] == "https://www.example.org/"


def test_the_digest_points_more_of_a_category_to_its_page() -> None:
    now = datetime(2026, 11, 30, tzinfo=UTC)
    site = SiteInfo("高新院", "https://www.example.org", "zh-CN", "Asia/Shanghai", "", "")
    categories = [Category("政策解读", "policy", "", POLICY_PAGE), Category("科技创新", "tech")]
    articles = [
        Article(
            "s",
            f"k{n}",
            f"g{n}",
            f"第{n}篇",
            "<p>x</p>",
            "摘要",
            now - timedelta(hours=n),
            now,
            (slug,),
            "h",
            url=f"https://www.example.org/{n}.html",
        )  # fmt: skip
        for n, slug in enumerate(["policy", "policy", "tech", "tech"])
    ]
    look = Look(site, "高新院周报", "https://www.example.org/", "北京市海淀区", "", max_per_category=1, theme=Theme())
    draft = Renderer(look, categories, articles, now).draft(())
    assert draft is not None
    html, text = "".join(draft.html), "".join(draft.text)
    assert f'<a href="{POLICY_PAGE}"' in html and POLICY_PAGE in text
    assert '<a href="https://www.example.org"' in html  # tech has no page: the site


@pytest.mark.parametrize("url", ["/zcjd/", "ftp://www.example.org/zcjd/", "zcjd"])
def test_a_category_page_must_be_an_absolute_web_address(site: Site, url: str) -> None:
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace('slug = "policy"\n', f'slug = "policy"\nurl = "{url}"\n'), "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(site.config)
    assert [key for key, _m, _f in caught.value.problems] == ["categories[1].url"]
