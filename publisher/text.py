"""CJK text handling, as pure functions: pinyin glosses, OpenCC, XML safety, HTML, summaries, slugs."""

from __future__ import annotations

import html
import logging
import re
import unicodedata
from collections.abc import Iterable
from contextvars import ContextVar
from functools import cache, lru_cache
from itertools import islice
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import nh3

log = logging.getLogger(__name__)

# --- XML safety --------------------------------------------------------------------------------

# Everything outside the XML 1.0 Char production (#x9 | #xA | #xD | [#x20-#xD7FF] |
# [#xE000-#xFFFD] | [#x10000-#x10FFFF]), lone surrogates included, written as the few ranges
# it leaves out: `re` compiles a class range by range, code point by code point, so the class
# negated took 4-9 ms of every command's start, and this one under 1.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """Drop characters XML 1.0 forbids (C0 controls but tab/CR/LF, lone surrogates, U+FFFE/F)."""
    return _XML_INVALID.sub("", text)


def is_utf8(text: str) -> bool:
    """Whether text can be written as UTF-8: a file name's undecodable bytes arrive as lone
    surrogates (surrogateescape), and such a name can be neither stored nor shown as it is."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- text entering the store -------------------------------------------------------------------

# What no stored text keeps: C0 controls but the whitespace ones, DEL, C1 controls but NEL, the
# bidi embeddings, overrides and isolates (they reorder what follows them: a Subject, a terminal
# line, a link's text), and what XML 1.0 forbids besides (lone surrogates, U+FFFE, U+FFFF).
_UNSAFE = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")
# Controls that break a line or separate words: VT (Word's manual line break), FF, the
# information separators and NEL. A line keeps none; text with lines gets a newline for each.
_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x1f\x85"
_UNSAFE_OR_BREAK = re.compile(f"{_UNSAFE.pattern[:-1]}{_BREAKS}]")
# Bump when what clean_line or clean_text removes changes: every file is then read again.
CLEANING = "1"


def clean_line(text: str) -> str:
    """A title, author, name, summary, tag or category name as it is stored: unsafe characters
    (see _UNSAFE) dropped, every run of whitespace or line-breaking controls one space, NFC."""
    return " ".join(unicodedata.normalize("NFC", _UNSAFE.sub("", text)).split())


def clean_text(text: str) -> str:
    """Text that keeps its lines (an article's Markdown, text or HTML): unsafe characters
    dropped, a line-breaking control a newline; tab, LF and CR stay."""
    return _UNSAFE_OR_BREAK.sub(_unsafe_or_break, text)


def _unsafe_or_break(match: re.Match[str]) -> str:
    return "\n" if match.group() in _BREAKS else ""


# --- flattened ruby pinyin ---------------------------------------------------------------------

_HAN = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]"
_SYLLABLE = r"[a-zA-ZüÜāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜńňǹḿ]{1,7}"
# One to four Han characters, then their readings in ASCII or full-width parentheses.
_GLOSS = re.compile(rf"((?:{_HAN}){{1,4}})[(（]\s*({_SYLLABLE}(?:[ \-']{_SYLLABLE}){{0,3}})\s*[)）]")
_TONE_MARKS = str.maketrans("āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹḿ", "aaaaeeeeiiiioooouuuuvvvvvnnnm")


def _plain(syllable: str) -> str:
    return syllable.lower().translate(_TONE_MARKS)


@lru_cache(maxsize=8192)
def _readings(char: str) -> frozenset[str]:
    """Every reading of one Han character, with tone marks and without."""
    from pypinyin import Style, pinyin  # imported late: loading its dictionaries costs ~0.2 s

    marked = {p.lower() for p in pinyin(char, style=Style.TONE, heteronym=True)[0]}
    return frozenset(marked | {_plain(p) for p in marked})


def _is_reading(chars: str, gloss: str) -> bool:
    syllables = [s for s in re.split(r"[ \-']", gloss) if s]
    if len(syllables) > len(chars):
        return False
    tail = chars[len(chars) - len(syllables) :]
    for char, syllable in zip(tail, syllables, strict=True):
        s = syllable.lower().replace("u:", "ü")
        if s not in _readings(char) and _plain(s) not in _readings(char):
            return False
    return True


def remove_pinyin_glosses(text: str) -> str:
    """Remove pinyin a converter flattened after the characters it reads: 高新區(qū) -> 高新區.

    Only a gloss that is a real reading of the characters before it goes; 人工智能(AI),
    (2023年) and GDP(国内生产总值) stay.
    """
    if "(" not in text and "（" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        chars, gloss = match.group(1), match.group(2)
        return chars if _is_reading(chars, gloss) else match.group(0)

    return _GLOSS.sub(replace, text)


# --- OpenCC ------------------------------------------------------------------------------------

CONVERSIONS = (
    "none", "t2s", "s2t", "tw2s", "s2tw", "tw2sp", "s2twp", "hk2s", "s2hk", "t2tw", "t2hk",
)  # fmt: skip


@cache
def _converter(mode: str) -> object:
    import opencc

    return opencc.OpenCC(mode)


def convert_script(text: str, mode: str) -> str:
    """Convert between Traditional and Simplified with OpenCC (`mode` as in CONVERSIONS)."""
    if mode == "none" or not text:
        return text
    converter = _converter(mode)
    return converter.convert(text)  # type: ignore[attr-defined, no-any-return]


# --- HTML --------------------------------------------------------------------------------------

_TAGS = set(nh3.ALLOWED_TAGS) | {"figure", "figcaption", "picture", "source"}
_ATTRIBUTES = {k: set(v) for k, v in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES.setdefault("a", set()).update({"title"})
_ATTRIBUTES.setdefault("img", set()).update({"title"})
_ATTRIBUTES["source"] = {"srcset", "media", "type"}
_URL_ATTRS = {"href", "src", "cite"}
_LAZY_SRC = re.compile(r"""<img\b([^>]*?)\sdata-(?:original|src)\s*=\s*("[^"]*"|'[^']*')""", re.IGNORECASE)
_SRC_ATTR = re.compile(r"""\ssrc\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""", re.IGNORECASE)


def _absolute(base: str | None, value: str) -> str | None:
    """An absolute URI: joined to `base`, non-ASCII percent-encoded (an IRI becomes a URI, and
    OpenCC, which runs over the sanitised HTML, can then never change a link)."""
    value = value.strip()
    if not value.isascii():
        value = quote(value, safe=_URI_SAFE)
    if not value or value.startswith("#"):
        return value
    joined = urljoin(base, value) if base else value
    scheme = urlsplit(joined).scheme
    if not scheme and not base:
        return joined  # relative, and nothing to resolve it against
    return joined if scheme in _SCHEMES else None


_URI_SAFE = ":/?#[]@!$&'()*+,;=%~"
_SCHEMES = ("http", "https", "mailto", "tel")


def absolute_url(value: str, base: str | None) -> str | None:
    """A link as feeds and mail need it: absolute against `base`, non-ASCII percent-encoded,
    None unless http(s), mailto or tel."""
    return _absolute(base, value)


def _lazy_images(fragment: str) -> str:
    """Lazy-loading pages keep the real image in data-src; promote it to src."""

    def promote(match: re.Match[str]) -> str:
        before = _SRC_ATTR.sub("", match.group(1))
        return f"<img{before} src={match.group(2)}"

    return _LAZY_SRC.sub(promote, fragment) if "data-" in fragment else fragment


_base_url: ContextVar[str | None] = ContextVar("base_url", default=None)


def _rewrite_attribute(tag: str, attr: str, value: str) -> str | None:
    base = _base_url.get()
    if attr in _URL_ATTRS:
        return _absolute(base, value)
    if attr == "srcset":
        return ", ".join(filter(None, (_srcset_part(base, part) for part in value.split(","))))
    return value


# Built once: a Cleaner is about twice as fast per call as nh3.clean() with the same options.
_CLEANER = nh3.Cleaner(
    tags=_TAGS,
    attributes=_ATTRIBUTES,
    clean_content_tags={"script", "style", "template", "noscript"},
    attribute_filter=_rewrite_attribute,
    link_rel=None,
    url_schemes={"http", "https", "mailto", "tel"},
)


def sanitize_html(fragment: str, base_url: str | None = None) -> str:
    """Allow-list HTML (nh3): no script, no event handlers, no javascript: URLs.

    Relative links and images become absolute against `base_url`, since feed readers and
    mail clients resolve them against nothing useful.
    """
    token = _base_url.set(base_url)
    try:
        # nh3 needs XML-safe text (no lone surrogates) and decodes character references: clean
        # what it writes, for &#127; or &#x202e; become the characters themselves.
        return clean_text(_CLEANER.clean(xml_safe(_lazy_images(fragment)))).strip()
    finally:
        _base_url.reset(token)


def _srcset_part(base: str | None, part: str) -> str | None:
    bits = part.split()
    if not bits:
        return None
    url = _absolute(base, bits[0])
    return " ".join([url, *bits[1:]]) if url else None


_BLOCK_END = re.compile(r"</(?:p|div|li|h[1-6]|tr|blockquote|pre|table|ul|ol|figure)>|<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")


def html_to_text(fragment: str) -> str:
    """Readable plain text of sanitised HTML: tags gone, entities decoded, whitespace collapsed,
    paragraphs joined as their language writes them (`join_paragraphs`)."""
    blocks = (clean_line(html.unescape(_TAG.sub("", block))) for block in _BLOCK_END.split(fragment))
    return join_paragraphs(block for block in blocks if block)


# Ideographs, kana, CJK punctuation and full-width forms: text written without spaces. Hangul
# is left out: Korean puts spaces between words.
_CJK = re.compile(
    r"[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    r"\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\U00020000-\U0003134f]"
)
# Punctuation after which no space follows in CJK text: the CJK symbols and the full-width forms.
_CJK_PUNCTUATION = re.compile(r"[\u3000-\u303f\ufe30-\ufe4f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff60]")
# Shared by Chinese and Latin text: they take the side of the character they stand beside.
_EITHER = "“”‘’…—–·"


def join_paragraphs(paragraphs: Iterable[str]) -> str:
    """Paragraphs as one line: joined by a space in Latin text, by nothing after CJK punctuation
    or between two CJK characters (`参加会议。会议指出`, not `参加会议。 会议指出`)."""
    joined = ""
    for paragraph in paragraphs:
        if joined and not _joins_tight(joined, paragraph):
            joined += " "
        joined += paragraph
    return joined


def _joins_tight(before: str, after: str) -> bool:
    last, first = before.rstrip(_EITHER)[-1:], after.lstrip(_EITHER)[:1]
    if last and _CJK_PUNCTUATION.match(last):
        return True
    return bool(last and first and _CJK.match(last) and _CJK.match(first))


def text_to_html(text: str) -> str:
    """Paragraphs of plain text as HTML, one <p> per non-empty line."""
    lines = (line.strip() for line in text.splitlines())
    return "".join(f"<p>{html.escape(line, quote=False)}</p>" for line in lines if line)


# --- summaries ---------------------------------------------------------------------------------


# Anything outside printable ASCII, CJK punctuation, CJK ideographs and full-width forms; text
# without such characters needs no grapheme segmentation (the common case, checked with re).
_PLAIN_CJK = re.compile(r"[^\x20-\x7e\u3000-\u3029\u3030-\u303f\u4e00-\u9fff\uff01-\uff60]")


@cache
def grapheme_patterns() -> tuple[Any, Any]:
    """(one grapheme cluster, a code point that joins a neighbour into one cluster: marks,
    joiners, selectors, emoji modifiers and flags, Hangul jamo, CR). Compiled on first use."""
    import regex

    clustering = regex.compile(
        r"[\p{M}\p{Cf}\p{Extended_Pictographic}\p{Regional_Indicator}\U0001F3FB-\U0001F3FF"
        r"\u1100-\u11ff\ua960-\ua97f\ud7b0-\ud7ff\r\ufe00-\ufe0f]"
    )
    return regex.compile(r"\X"), clustering


_BREAK_AFTER = "。！？；!?;…」』”）)"
_SOFT_BREAK = "，、,：: "


def summarize(text: str, limit: int, ellipsis: str = "…") -> str:
    """Cut plain text to at most `limit` graphemes (a CJK character, an emoji with its modifiers).

    Prefers ending at sentence punctuation in the last quarter, never splits a Latin word,
    and adds `ellipsis` only when something was cut.
    """
    if _PLAIN_CJK.search(text, 0, limit + 1) is None:
        return _cut_chars(text, limit, ellipsis)  # ASCII and common CJK only: one grapheme each
    grapheme, clustering = grapheme_patterns()
    if clustering.search(text, 0, limit * 2 + 2) is None:
        return _cut_chars(text, limit, ellipsis)  # no joining code point: one grapheme each
    return _cut_clusters(text, [m.group() for m in islice(grapheme.finditer(text), limit + 1)], limit, ellipsis)


_TRAILING_WORD = re.compile(r"[A-Za-z0-9]+$")
_WORD_CHAR = re.compile(r"[A-Za-z0-9]")


def _cut_clusters(text: str, clusters: list[str], limit: int, ellipsis: str) -> str:
    """summarize() over the first limit + 1 grapheme clusters of `text`."""
    if len(clusters) <= limit:
        return text
    kept = clusters[: max(limit - len(ellipsis), 1)]
    window = max(1, len(kept) // 4)
    for marks in (_BREAK_AFTER, _SOFT_BREAK):
        for i in range(len(kept) - 1, len(kept) - 1 - window, -1):
            if kept[i] in marks:
                kept = kept[: i + 1]
                break
        else:
            continue
        break
    following = clusters[len(kept)] if len(kept) < len(clusters) else ""
    return _finish_cut("".join(kept), following, ellipsis)


def _cut_chars(text: str, limit: int, ellipsis: str) -> str:
    """_cut_clusters for text whose every code point is a grapheme, on the string itself: the
    same cut, three times faster (a test holds the two together)."""
    if len(text) <= limit:
        return text
    keep = max(limit - len(ellipsis), 1)
    kept = text[:keep]
    start = keep - max(1, keep // 4)  # the last quarter: where a sentence may end the cut
    for marks in (_BREAK_AFTER, _SOFT_BREAK):
        end = max(kept.rfind(mark, start) for mark in marks)
        if end >= 0:
            kept = kept[: end + 1]
            break
    return _finish_cut(kept, text[len(kept)], ellipsis)


def _finish_cut(cut: str, following: str, ellipsis: str) -> str:
    cut = cut.rstrip(_SOFT_BREAK)
    word = _TRAILING_WORD.search(cut) if cut[-1:].isascii() else None
    if word and word.start() > 0 and _WORD_CHAR.match(following):
        cut = cut[: word.start()].rstrip()
    # A cut after a full sentence reads as finished; anything else gets the ellipsis.
    return cut if cut.endswith(("。", "！", "？", "!", "?", "…")) else cut + ellipsis


# --- slugs -------------------------------------------------------------------------------------


def slugify(name: str, max_length: int = 60) -> str:
    """ASCII slug of a name, Chinese through its pinyin: 政策解读 -> zheng-ce-jie-du."""
    from pypinyin import Style, lazy_pinyin

    name = unicodedata.normalize("NFKC", name)
    name = name.replace("+", " plus ").replace("#", " sharp ").replace("&", " and ")
    parts = lazy_pinyin(name, style=Style.NORMAL, errors="default", v_to_u=False)
    joined = "-".join(p.strip() for p in parts if p.strip())
    ascii_only = unicodedata.normalize("NFKD", joined).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_only.lower()).strip("-")
    return slug[:max_length].rstrip("-")
