"""Message headers: CJK subjects and names that every mail system accepts; no header injection."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.mail import Envelope, build_message

SUBJECT_60 = "【高新院周报】第48期：高新区新闻、政策解读、区域经济研究与一带一路沿线园区合作新进展汇总"


def envelope(**changes: object) -> Envelope:
    base: dict[str, object] = {
        "sender": Address("高新技术产业研究院新闻中心", addr_spec="news@example.org"),
        "to": Address("张三", addr_spec="zhang.san@example.com"),
        "subject": SUBJECT_60,
        "date": datetime(2026, 11, 30, 0, 0, tzinfo=UTC),
        "message_id_domain": "www.example.org",
        "list_id": "高新院周报 <digest.www.example.org>",
        "unsubscribe_url": "https://www.example.org/unsubscribe/abc.def",
        "unsubscribe_mailto": "mailto:unsubscribe@example.org?subject=abc.def",
    }
    return Envelope(**(base | changes))  # type: ignore[arg-type]


def check_wire(raw: bytes) -> None:
    """What strict receivers (Yahoo) check: line length, and well-formed encoded-words."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    for line in head.split("\r\n"):
        assert len(line) <= 78, line
    assert "?==?" not in head, "adjacent encoded-words"
    for word in re.findall(r"=\?utf-8\?b\?([^?]*)\?=", head):
        assert word, "empty encoded-word"
        base64.b64decode(word).decode("utf-8")  # each word holds whole characters


def test_sixty_character_chinese_subject() -> None:
    assert len(SUBJECT_60) >= 45
    raw = build_message(envelope(subject=SUBJECT_60 + "，以及智慧城市案例"), "正文", "<p>正文</p>").as_bytes()
    check_wire(raw)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == SUBJECT_60 + "，以及智慧城市案例"
    assert parsed["From"].addresses[0].display_name == "高新技术产业研究院新闻中心"
    assert parsed["To"].addresses[0].addr_spec == "zhang.san@example.com"


@pytest.mark.parametrize("subject", ["=??Q??=", "About =?utf-8?b?5Lit?= in titles", "a =?x?q?y?= b"])
def test_ascii_that_looks_encoded_stays_literal(subject: str) -> None:
    raw = build_message(envelope(subject=subject), "t", "<p>t</p>").as_bytes()
    check_wire(raw)
    assert message_from_bytes(raw, policy=policy.default)["Subject"] == subject


def test_structure_and_list_headers() -> None:
    msg = build_message(envelope(), "纯文本", "<p>HTML</p>")
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["List-Unsubscribe"] == (
        "<https://www.example.org/unsubscribe/abc.def>, <mailto:unsubscribe@example.org?subject=abc.def>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Id"] == "高新院周报 <digest.www.example.org>"
    assert parsed["Message-ID"].endswith("@www.example.org>")
    assert parsed["Date"] == "Mon, 30 Nov 2026 00:00:00 +0000"


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": "标题\r\nBcc: victim@example.com"},
        {"subject": "标题\nX-Injected: 1"},
        {"list_id": "x\r\nBcc: y@example.com"},
    ],
)
def test_no_header_injection(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build_message(envelope(**changes), "t", "<p>t</p>")


def test_display_names_cannot_carry_line_breaks_either() -> None:
    with pytest.raises(ValueError):  # refused by email.headerregistry.Address itself
        Address("张三\r\nBcc: x@example.com", addr_spec="z@example.com")


def test_one_click_needs_https() -> None:
    with pytest.raises(ValueError, match="https"):
        build_message(envelope(unsubscribe_url="http://www.example.org/u/x"), "t", "<p>t</p>")


# Any printable text a headline can hold: CJK, Latin with accents, emoji, punctuation.
HEADLINE = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp", "Co", "Cn")), min_size=1, max_size=150
).filter(lambda s: s.strip() == s and "  " not in s)


# Display names are RFC 5322 phrases: parsers fold any run of whitespace, NBSP included, so the
# names drawn here use plain spaces only. Up to 45 UTF-8 bytes (15 Chinese characters) a name is
# one encoded-word; a longer one is split over lines like a subject, and Python's own phrase
# parser then shows a space between the words (RFC 2047 says to drop it).
NAME = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp", "Zs", "Co", "Cn"), include_characters=" "),
    min_size=1,
    max_size=15,
).filter(lambda s: s.strip() == s and "  " not in s and len(s.encode()) <= 45)


@settings(max_examples=300, deadline=None)
@given(subject=HEADLINE, name=NAME)
def test_any_subject_and_name_survive_strict_receivers(subject: str, name: str) -> None:
    msg = build_message(envelope(subject=subject, to=Address(name, addr_spec="r@example.com")), "t", "<p>t</p>")
    raw = msg.as_bytes()
    check_wire(raw)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == subject
    assert parsed["To"].addresses[0].display_name == name


def test_a_long_unsubscribe_url_starts_its_own_line_and_reads_back_whole() -> None:
    url = "https://www.example.org/unsubscribe/u1.u80ttd.2a3AWeTMrckFyHJuaen8YA"
    mailto = "mailto:unsubscribe@example.org?subject=u1.u80ttd.2a3AWeTMrckFyHJuaen8YA"
    raw = build_message(envelope(unsubscribe_url=url, unsubscribe_mailto=mailto), "t", "<p>t</p>").as_bytes()
    check_wire(raw)
    assert b"List-Unsubscribe:\r\n <https://" in raw
    # RFC 2369 allows folding whitespace before the first <URL>; Python's parser keeps it.
    assert message_from_bytes(raw, policy=policy.default)["List-Unsubscribe"].strip() == f"<{url}>, <{mailto}>"


@pytest.mark.parametrize("subject", ["a\x00b", "周报\x1b[31m", "x\u2028y"])
def test_control_characters_are_refused(subject: str) -> None:
    with pytest.raises(ValueError, match="control character|line break"):
        build_message(envelope(subject=subject), "t", "<p>t</p>")


def test_an_ascii_word_longer_than_a_line_is_encoded_not_overlong() -> None:
    subject = "Report " + "x" * 90 + " end"
    raw = build_message(envelope(subject=subject), "t", "<p>t</p>").as_bytes()
    check_wire(raw)
    assert message_from_bytes(raw, policy=policy.default)["Subject"] == subject


def test_international_domains_use_idna_2008_and_local_parts_smtputf8() -> None:
    message = build_message(envelope(to=Address("", "leser", "faß.de")), "t", "<p>t</p>")
    assert message.recipient == "leser@xn--fa-hia.de"  # IDNA 2003 would say fass.de: another domain
    assert not message.needs_smtputf8
    assert build_message(envelope(reply_to=Address("", "编辑", "example.org")), "t", "<p>t</p>").needs_smtputf8
