"""Each shortcut in reading and normalising a file gives what the full path gives.

A cold build reads every file (issue 16): the common front matter, dates, Markdown limits and
body hashes take shortcuts there, each falling back to the full path on anything unusual. These
hold the shortcuts to the full paths on generated input."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from publisher.markdown import MarkdownLimitError, check_limits, within_limits_however_cleaned
from publisher.model import Category, SourceItem
from publisher.normalize import CategoryIndex, TextRules, make_guid, normalize
from publisher.sources.file_formats import (
    Problem,
    _date_text,
    _plain_front_matter,
    parse_date,
    read_bytes,
    split_front_matter,
)
from publisher.sources.files import FilesSource
from publisher.text import clean_text

ZONE = ZoneInfo("Asia/Shanghai")

# --- front matter ------------------------------------------------------------------------------

_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*):[ \t]+([^\s\"'\[\]{}&*!|>%@`#,?:~-][^\t]*?)[ \t]*")
_TYPED = re.compile(r"(?i:y|n|yes|no|true|false|on|off|null|~)|[-+]?(?:\.?[0-9][0-9_:.]*(?:e[-+]?[0-9]+)?|\.inf|\.nan)")


def plain_front_matter_line_by_line(block: str) -> dict[str, Any] | None:
    """The fast path as it was before issue 16: each line matched on its own."""
    lines = block.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    meta: dict[str, Any] = {}
    for line in lines:
        match = _LINE.fullmatch(line)
        if match is None or ": " in match.group(2) or " #" in match.group(2):
            return None
        key, value = match.groups()
        if key in meta or _TYPED.fullmatch(value):
            return None
        meta[key] = value
    return meta


KEYS = st.sampled_from(["title", "date", "id", "tags", "Title", "_x", "a-b", "9", "", "t itle"])
PIECES = [
    "标题", "a", " ", "\t", ":", ": ", " #", "#", "-", "y", "Yes", "no", "ON", "on", "off", "True", "False", "false",
    "~", "null", "NULL", "0", "0123",
    "1.5", ".5", "+1", "1e5", ".inf", "2026-05-06", "14:00", '"', "'", "[", "{", "*", "&", "!", "|",
    ">", "%", "@", "`", ",", "?", "\r", "\u3000", "\x85", "\u2028", "ſ", "K", "x",
]  # fmt: skip
VALUES = st.one_of(st.sampled_from(PIECES), st.lists(st.sampled_from(PIECES), max_size=5).map("".join))
LINES = st.lists(st.tuples(KEYS, st.sampled_from([":", ": ", ":\t", ":  ", " : "]), VALUES).map("".join), max_size=5)


@settings(max_examples=2000, deadline=None)
@given(LINES, st.sampled_from(["", "\n", "\n\n"]))
@example(["title: y", "date: 2026-05-06"], "\n")
@example(["title: Off"], "")
def test_plain_front_matter_is_the_line_by_line_reading(lines: list[str], end: str) -> None:
    block = "\n".join(lines) + end
    assert _plain_front_matter(block) == plain_front_matter_line_by_line(block)
    for line in lines:  # most blocks hold a line neither reads: each line on its own too
        assert _plain_front_matter(line + end) == plain_front_matter_line_by_line(line + end)


_CLOSING_LINE = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?$\n?", re.MULTILINE)  # as before issue 16


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(["---", "...", "--", "\n", "\r\n", "\r", " ", "\t", "a: b", "x", "-", "."])))
def test_front_matter_closes_where_it_closed_before(pieces: list[str]) -> None:
    text = "---\n" + "".join(pieces)
    closing = _CLOSING_LINE.search(text, 4)
    try:
        _meta, body = split_front_matter(text)
    except Problem as problem:  # not closed, or a block YAML refuses
        assert (closing is None) == (problem.reason == "front matter is not closed"), problem.reason
        return
    assert closing is not None and body == text[closing.end() :]


# --- dates -------------------------------------------------------------------------------------

COMMON_DATES = st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[ T][0-9]{2}:[0-9]{2}(?::[0-9]{2})?)?", fullmatch=True)
NEAR_DATES = st.from_regex(r"\A[0-9０-９]{4}[-/]\d{1,2}-\d{2}(?:[ Tt]\d{2}[:：]\d{2}(?::\d{2})?)?\s?Z?\Z")


@settings(max_examples=1000, deadline=None)
@given(st.one_of(COMMON_DATES, NEAR_DATES, st.sampled_from(["2024-02-29", "2023-02-29", "0999-01-01 24:00"])))
def test_dates_of_the_common_shape_read_as_the_full_pattern_reads_them(value: str) -> None:
    assert parse_date(value, ZONE) == _date_text(value, ZONE)


def test_a_guid_keeps_strftimes_day_for_every_year() -> None:
    for year in (999, 1000, 2026):
        when = datetime(year, 5, 6, 1, tzinfo=ZONE)  # 5 May UTC
        assert make_guid("https://x.org", when, "s", "a.md", None) == f"tag:x.org,{year}-05-05:s/a.md"
    assert make_guid("https://x.org", datetime(999, 5, 6, tzinfo=UTC), "s", "a.md", None).startswith("tag:x.org,999-")


# --- Markdown limits ---------------------------------------------------------------------------

MARKDOWNISH = st.lists(
    st.one_of(
        st.sampled_from([">", "> ", "- ", "* ", "+ ", "1. ", "2) ", "\n", "\t", " ", "*", "_", "~", "[", "."]),
        st.sampled_from(["\x01", "\x0b", "\x0c", "\x1c", "\x85", "\u202e", "\ud800", "\ufffe"]),
        st.text(max_size=5),
    ),
    max_size=400,
).map("".join)


def refused(text: str) -> bool:
    try:
        check_limits(text)
    except MarkdownLimitError:
        return True
    return False


@settings(max_examples=500, deadline=None)
@given(MARKDOWNISH)
def test_text_within_the_limits_however_cleaned_is_refused_neither_way(text: str) -> None:
    if within_limits_however_cleaned(text):
        assert not refused(text) and not refused(clean_text(text))


@pytest.mark.parametrize(
    "body",
    [">\x01" * 100 + " x", "-\x7f " * 100 + "x", "1.\u202e " * 100],
)
def test_markdown_that_cleaning_takes_beyond_the_limits_is_refused_at_ingest(body: str) -> None:
    """The shortcut that skips cleaning must not skip these: cleaning joins the openers."""
    assert not refused(body) and refused(clean_text(body))
    item = SourceItem("s", "deep.md", "标题", body, datetime(2026, 1, 1, tzinfo=UTC), markdown=True, folder="tech")
    with pytest.raises(ValueError, match="nests quotes or lists"):
        normalize(item, CategoryIndex([Category("科技", "tech")]), TextRules(), "https://x.org", render=False)


# --- bytes and body hashes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "utf8"),
    [
        ("---\ntitle: 标题\ndate: 2026-05-06\n---\n正文\n".encode(), True),
        ("\ufeff---\r\ntitle: 标题\r\ndate: 2026-05-06\r\n---\r\n\ufeff正文\r\n".encode(), True),
        ("---\ntitle: 标题\ndate: 2026-05-06\n---\n正文\n".encode("gbk"), False),
    ],
)
def test_a_files_body_is_hashed_from_its_own_bytes(tmp_path: Path, data: bytes, utf8: bool) -> None:
    (tmp_path / "tech").mkdir()
    (tmp_path / "tech" / "a.md").write_bytes(data)
    item = FilesSource("s", tmp_path, "Asia/Shanghai").read(tmp_path / "tech" / "a.md", "tech/a.md")
    assert item is not None
    assert item.content_utf8 == (item.content.encode() if utf8 else None)
    index, rules = CategoryIndex([Category("科技", "tech")]), TextRules()
    from_bytes = normalize(item, index, rules, "https://x.org", render=False)
    from dataclasses import replace

    encoded = normalize(replace(item, content_utf8=None), index, rules, "https://x.org", render=False)
    assert (from_bytes.content_hash, from_bytes.body_hash) == (encoded.content_hash, encoded.body_hash)
    assert replace(item, content_utf8=None) == item  # the bytes are the content: not compared


def test_a_file_larger_than_one_read_is_read_whole(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000  # 256,000 bytes: four reads and the empty one
    (tmp_path / "big.md").write_bytes(data)
    assert read_bytes(tmp_path / "big.md") == data
