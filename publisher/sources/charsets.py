"""A web page's text from its bytes, right about Chinese charsets: the charset from the BOM,
the HTTP header or the page's meta tag, with GB2312 and GBK read as their superset GB18030,
and a check of the declared one against the bytes (Chinese CMS pages often declare UTF-8 and
send GBK, or the reverse)."""

from __future__ import annotations

import codecs
import re

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
# GB2312 and GBK pages use characters of the superset anyway (and browsers read them so).
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "gb_2312-80": "gb18030",
              "iso-8859-1": "cp1252", "latin-1": "cp1252", "ascii": "utf-8", "us-ascii": "utf-8"}  # fmt: skip


def decode_html(data: bytes, content_type: str = "") -> str:
    """The page as text. A BOM decides; then bytes that are valid UTF-8 are UTF-8 whatever the
    page says (GBK text is almost never valid UTF-8, while GB18030 accepts nearly any bytes, so
    a page declared GBK but sent as UTF-8 is caught only this way); then the HTTP charset and
    <meta charset>, each only if the bytes decode with it, GB2312/GBK as GB18030; then GB18030;
    then a best guess."""
    for bom, name in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return data.decode(name, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = []
    match = re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", content_type, re.I)
    # A Latin-1 or ASCII header on non-ASCII bytes is a server default, not the page's word.
    if match and match.group(1).lower() not in ("iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii"):
        declared.append(match.group(1))
    meta = _META_CHARSET.search(data[:4096])
    if meta:
        declared.append(meta.group(1).decode("ascii", "replace"))
    if any(name.lower().replace("_", "-") in ("utf-8", "utf8") for name in declared):
        # Declared UTF-8 and nearly so (a truncated character or two): keep it, mark the damage.
        text = data.decode("utf-8", errors="replace")
        if text.count("\ufffd") <= max(2, len(text) // 1000):
            return text
    for name in [*declared, "gb18030"]:
        encoding = _SUPERSETS.get(name.lower(), name.lower())
        try:
            return data.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    return str(best) if best is not None else data.decode("utf-8", errors="replace")
