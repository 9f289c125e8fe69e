"""The digest as readers get it: golden files, Gmail's size limit, escaping, headers on the wire."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from conftest import Site
from publisher.digest import HTML_BUDGET, Look, Renderer
from publisher.mail import Message
from publisher.model import Article, Category, Subscriber, SubscriberStatus
from publisher.model import Site as SiteInfo
from publisher.newsletter import Newsletter
from publisher.theme import Theme

GOLDEN = Path(__file__).parent / "golden" / "digest"
NOW = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # Monday 08:00 in Shanghai
KEY = "golden-signing-key-0123456789"


def masked_headers(raw: bytes) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    head = re.sub(r"Message-ID: <[^>]+>", "Message-ID: <MASKED>", head)
    return re.sub(r'boundary="[^"]+"', 'boundary="MASKED"', head).replace("\r\n", "\n") + "\n"


def check_golden(case: str, message: Message) -> None:
    """Compare with tests/golden/digest/<case>/; UPDATE_GOLDEN=1 rewrites them after a deliberate change."""
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    text, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert text is not None and html is not None
    actual = {
        "headers.txt": masked_headers(message.as_bytes()),
        "digest.txt": text.get_content(),
        "digest.html": html.get_content(),
    }
    head = message.as_bytes().split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n")), head
    folder = GOLDEN / case
    if os.environ.get("UPDATE_GOLDEN"):
        folder.mkdir(parents=True, exist_ok=True)
        for name, value in actual.items():
            (folder / name).write_text(value, encoding="utf-8", newline="")
    for name, value in actual.items():
        expected = (folder / name).read_bytes().decode("utf-8")
        assert value == expected, f"{case}/{name} differs from the golden file (UPDATE_GOLDEN=1 to accept)"


@pytest.fixture
def mailing(site: Site, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    site.write_config('[digest]\npostal_address = "云川市高新区创新大道 1 号"\nsender = "高新院 <news@example.org>"\n')
    site.clock_now = NOW - timedelta(days=2)
    site.article(
        "policy/a.md",
        "《人才十条》政策要点解读",
        date="2026-11-27 09:00",
        summary="新十条在人才分类认定等方面作了调整。",
        url="https://www.example.org/policy/2026/1127.html",
    )
    site.article(
        "tech/shared.md", "科技成果转化与产业政策联动", date="2026-11-26 10:00", categories="[policy, tech]",
        summary="一篇同属政策解读和科技创新的文章。", author="政策研究室",
        url="https://www.example.org/tech/2026/1126.html?from=digest&amp=1",
    )  # fmt: skip
    site.article(
        "tech/b.md", "研发费用加计扣除怎么用？", date="2026-11-25 08:30", summary="适用范围、归集口径与常见误区。"
    )
    site.article("news.md", "高新院“开放日”<活动> & 市民", date="2026-11-24 15:00", summary="三百余名市民走进研究院。")
    site.build()
    site.clock_now = NOW
    return site


def message_for(site: Site, email: str, name: str, categories: tuple[str, ...]) -> Message:
    app = site.app()
    try:
        now = app.clock()
        reader = Subscriber(email, name, categories, SubscriberStatus.CONFIRMED, now, "cli", now)
        app.store.save_subscribers([reader])
        stored = app.store.subscriber(email)
        letters = Newsletter(app)
        message, stand_in = letters.preview(letters.scheduled_window(now), stored)
        assert not stand_in
        return message
    finally:
        app.close()


def test_golden_reader_of_every_category(mailing: Site) -> None:
    check_golden("every-category", message_for(mailing, "zhang@example.com", "张三", ()))


def test_golden_reader_of_two_categories_sharing_an_article(mailing: Site) -> None:
    message = message_for(mailing, "li@example.com", "", ("policy", "tech"))
    check_golden("two-categories-shared", message)
    assert message.text.count("科技成果转化与产业政策联动") == 1  # once, under its first chosen category
    assert message.html.count(">科技成果转化与产业政策联动</a>") == 1


def test_golden_english_site(mailing: Site) -> None:
    text = mailing.config.read_text(encoding="utf-8").replace('language = "zh-CN"', 'language = "en"')
    mailing.config.write_text(text.replace("[digest]\n", '[digest]\nlist_name = "Institute weekly"\n'), "utf-8")
    check_golden("english-site", message_for(mailing, "ann@example.com", "Ann O'Neil", ("tech",)))


def test_markup_in_titles_is_escaped_and_no_marker_survives(mailing: Site) -> None:
    message = message_for(mailing, "zhang@example.com", "<b>张三</b>", ())
    assert "&lt;活动&gt; &amp; 市民" in message.html and "<活动>" not in message.html
    assert "&lt;b&gt;张三&lt;/b&gt;" in message.html and "<b>张三</b>，您好" in message.text
    assert not re.search(r"pub[0-9a-f]{16}", message.html + message.text)
    assert "@media (prefers-color-scheme: dark)" in message.html and "@media (max-width: 480px)" in message.html
    assert "云川市高新区创新大道 1 号" in message.html and "云川市高新区创新大道 1 号" in message.text
    assert message.envelope.unsubscribe_url in message.html and message.envelope.unsubscribe_url in message.text


def test_a_full_digest_stays_under_gmails_clipping_size() -> None:
    site = SiteInfo("高新院", "https://www.example.org", "zh-CN", "Asia/Shanghai", "", "")
    categories = [Category(f"战略性新兴产业研究{i}", f"c{i}") for i in range(13)]
    long_summary = "会议总结了一年来的工作，部署了下一阶段的重点任务，强调要以科技创新引领产业发展。" * 4
    articles = [
        Article(
            "s",
            f"k{n}",
            f"g{n}",
            f"高新院召开第{n}次科技创新工作会议暨年度总结表彰大会",
            "<p>x</p>",
            long_summary,
            NOW - timedelta(hours=n),
            NOW,
            (f"c{n % 13}",),
            "h",
            url=f"https://www.example.org/news/{n:05d}.html",
            author="高新院办公室",
        )  # fmt: skip
        for n in range(13 * 12)
    ]
    look = Look(site, "高新院周报", "https://www.example.org/", "北京市海淀区", "", max_per_category=10, theme=Theme())
    draft = Renderer(look, categories, articles, NOW).draft(())
    assert draft is not None
    html = "".join(draft.html)
    assert len(html.encode("utf-8")) <= HTML_BUDGET < 102_000
    assert "本栏目另有" in html  # what did not fit is pointed to, not dropped silently
    assert draft.count >= 13  # every category still has its newest articles


def test_subject_template_from_config(mailing: Site) -> None:
    text = mailing.config.read_text(encoding="utf-8")
    mailing.config.write_text(
        text.replace("[digest]\n", '[digest]\nsubject = "{{ site }}｜{{ count }} 篇：{{ categories }}"\n'), "utf-8"
    )
    message = message_for(mailing, "zhang@example.com", "", ("policy",))
    assert message.envelope.subject == "高新院｜2 篇：政策解读"
