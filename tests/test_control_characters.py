"""Control characters and bidi overrides from content or readers: cleaned where text enters the
store (text.clean_line, text.clean_text), and a digest reaches every reader whatever a title holds."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from test_delivery import NOW, READERS, build, planned, sender  # noqa: F401  (planned is a fixture)
from test_newsletter import Inbox, add_readers, inbox, mailing_site  # noqa: F401  (inbox is a fixture)

from conftest import Site, days_ago
from publisher.delivery import BuildProblem
from publisher.digest import DigestWindow
from publisher.model import Category, Delivery, SourceItem, Subscriber, SubscriberStatus
from publisher.newsletter import Newsletter
from publisher.normalize import CategoryIndex, NormalizeError, TextRules, normalize
from publisher.store import Store
from publisher.subscriptions import clean_name
from publisher.text import clean_line, clean_text, html_to_text, sanitize_html
from publisher.transports.outbox import MemoryTransport

SHANGHAI = ZoneInfo("Asia/Shanghai")
BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Every category of code point but lone surrogates (Cs), which no str from a decoder holds.
EVERY_CLASS = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=("Cs",))
TITLES = st.text(st.one_of(EVERY_CLASS, st.sampled_from("\x7f\x85\u202e\u2066\x0b\x00\u2028\u2029新闻 ")), max_size=60)
HOSTILE = "新闻\x7f标题\x85第二行\u202e倒序\u2069完"


def assert_clean_line(text: str) -> None:
    assert not any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in BIDI for c in text), ascii(text)
    assert text == text.strip() and "  " not in text


@given(TITLES)
def test_a_cleaned_line_holds_no_control_no_bidi_override_and_no_line_break(text: str) -> None:
    cleaned = clean_line(text)
    assert_clean_line(cleaned)
    assert clean_line(cleaned) == cleaned


def test_line_breaking_controls_separate_words_and_others_go() -> None:
    assert clean_line(HOSTILE) == "新闻标题 第二行倒序完"
    assert clean_line("Word\x0bmanual\tbreak\r\nend") == "Word manual break end"
    assert clean_text("a\x0bb\tc\r\nd\x7f\x85e\u202e") == "a\nb\tc\r\nd\ne"
    # HTML decodes references to the very characters: cleaned after decoding too.
    assert sanitize_html("<p>a&#127;b&#x202e;c&#1;d</p>") == "<p>abcd</p>"
    assert html_to_text("<p>a&#127;b&#x202e;c</p>") == "abc"
    assert clean_name("=名字\u202e\x7f\x85尾") == "=名字 尾"


INDEX = CategoryIndex([Category("新闻", "news")])


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(title=TITLES, author=TITLES, summary=TITLES, tag=TITLES, body=TITLES)
def test_every_text_of_an_article_is_stored_clean(title: str, author: str, summary: str, tag: str, body: str) -> None:
    item = SourceItem(
        source="s", key="a.md", title=title, content=body, markdown=True, published=NOW, categories=("新闻",),
        author=author, summary=summary, tags=(tag,),
    )  # fmt: skip
    try:
        article = normalize(item, INDEX, TextRules(), "https://www.example.org")
    except NormalizeError:
        assert not clean_line(title)
        return
    for line in (article.title, article.summary, article.author or "", *article.tags):
        assert_clean_line(line)
    assert not any(c in BIDI or unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in article.content_html)


def test_category_names_from_content_are_cleaned_before_they_are_looked_up() -> None:
    item = SourceItem(source="s", key="a.md", title="t", content="x", markdown=True, published=NOW,
                      categories=("新\u202e闻\x7f",))  # fmt: skip
    assert normalize(item, INDEX, TextRules(), "https://www.example.org").categories == ("news",)


@pytest.fixture
def newsletter(site: Site, monkeypatch: pytest.MonkeyPatch) -> Iterator[Newsletter]:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "control-test-signing-key-0123456789")
    site.write_config("\n[digest]\nmessages_per_second = 0\n")
    site.article("a.md", "占位", date="2026-11-18 09:00")
    site.build()
    app = site.app()
    try:
        yield Newsletter(app)
    finally:
        app.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(title=TITLES, names=st.lists(TITLES, min_size=3, max_size=3))
def test_whatever_a_stored_title_or_a_name_holds_the_digest_reaches_every_reader_with_valid_headers(
    newsletter: Newsletter, title: str, names: list[str]
) -> None:
    """The title goes into the store as it is (a store written before cleaning may hold any),
    the names as every way in cleans them; the digest is planned and sent through the ledger.
    PostgreSQL's text holds no NUL (it refuses the row), so no store there holds one to send."""
    store = newsletter.store
    assume(store.engine.dialect.name == "sqlite" or "\x00" not in title)
    [placeholder] = store.latest("gao-xin-yuan-xin-wen", 1)
    n = len(store.digests())
    at = NOW + timedelta(minutes=n)
    with store.writer(lambda: at) as writer:
        writer.insert(replace(placeholder, key=f"p{n}.md", title=title), f"tag:x,2026:p{n}", None, "fp", at)
    readers = [
        Subscriber(f"r{i}@example.com", clean_name(name), (), SubscriberStatus.CONFIRMED, NOW, "web", NOW)
        for i, name in enumerate(names)
    ]
    store.save_subscribers(readers)
    plan = newsletter.plan(DigestWindow(f"scheduled:property-{n}", at - timedelta(microseconds=1), at, "ingested"))
    memory = MemoryTransport()
    report = newsletter.send(plan.digest, memory)
    assert (report.sent, report.failed, report.paused) == (len(readers), 0, False)
    assert sorted(m.recipient for m in memory.sent) == sorted(r.email for r in readers)
    for message in memory.sent:
        parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
        assert not parsed.defects
        for header, value in parsed.items():
            assert not value.defects, (header, value)
        subject = str(parsed["Subject"])
        assert_clean_line(subject)
        assert subject == clean_line(f"高新院周报（{at.astimezone(SHANGHAI):%Y年%-m月%-d日}）：" + title)


def test_a_digest_whose_newest_title_holds_del_nel_and_rlo_reaches_every_reader(
    site: Site,
    inbox: tuple[Inbox, int],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The acceptance line of issue 17: YAML's escapes carry the characters into the title, as
    an upstream feed's &#127; would; a real SMTP server receives one message per reader."""
    box, port = inbox
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "control-test-signing-key-0123456789")
    mailing_site(site, port)
    title = '"新闻\\x7f标题\\N第二行\\u202e倒序"'
    front = f"title: {title}\ndate: {days_ago(1)}\ncategories: [高新院新闻, policy, tech]"
    site.add("newest.md", f"---\n{front}\n---\n正文。\n")
    site.build()
    readers = add_readers(site, 6)
    result = site.cli("digest", "send")
    assert result.exit_code == 0, result.output
    assert sorted(to for to, _id in box.received) == sorted(readers)
    for raw in box.raw:
        subject = str(message_from_bytes(raw, policy=policy.default)["Subject"])
        assert "：新闻标题 第二行倒序等" in subject, subject


def test_a_message_that_cannot_be_built_fails_that_reader_only_with_the_reason(planned: tuple[Store, int]) -> None:  # noqa: F811
    store, digest_id = planned

    def build_but_one(delivery: Delivery):  # type: ignore[no-untyped-def]
        if delivery.email_key == READERS[2]:
            raise BuildProblem("header value contains a control character: '\\x7f'")
        return build(delivery)

    memory = MemoryTransport()
    report = sender(store, memory).run(digest_id, build_but_one)
    assert (report.sent, report.failed, report.paused) == (4, 1, False)
    assert sorted(m.recipient for m in memory.sent) == sorted(set(READERS) - {READERS[2]})
    with store.engine.connect() as db:
        failed = db.execute(text("select email_key, last_error from deliveries where status = 'failed'")).all()
    assert [(key, error.split(":")[0]) for key, error in failed] == [(READERS[2], "cannot build the message")]
    assert store.digest(digest_id).status == "done"


def test_when_no_message_can_be_built_the_digest_pauses_instead_of_ending(planned: tuple[Store, int]) -> None:  # noqa: F811
    store, digest_id = planned

    def broken(delivery: Delivery):  # type: ignore[no-untyped-def]
        raise BuildProblem("something every message shares is broken")

    report = sender(store, MemoryTransport(), pause_after=3).run(digest_id, broken)
    assert report.paused and report.failed == 3
    assert store.digest(digest_id).status == "paused"
    assert store.delivery_counts(digest_id).get("pending") == 2  # left for `digest resume`


def test_an_address_idna_refuses_fails_at_build_time_not_in_the_transport(newsletter: Newsletter) -> None:
    """Serialising writes the address's IDNA form: a failure there is this reader's build
    problem, not an exception that ends the whole send."""
    store = newsletter.store
    now = datetime.now(UTC)
    store.save_subscribers([Subscriber("a@☃.example", "", (), SubscriberStatus.CONFIRMED, now, "import", now)])
    [article] = store.latest("gao-xin-yuan-xin-wen", 1)
    digest_id, _ = store.open_digest("k", article.published - timedelta(days=1), now, now)
    store.plan_deliveries(digest_id, [("a@☃.example", "<x@example.org>")], now)
    build_one = newsletter.builder(store.digest(digest_id))
    [delivery] = store.next_deliveries(digest_id, 10)
    with pytest.raises(BuildProblem):
        build_one(delivery)
