"""Read our feeds back the way readers and validators do: feedparser, lxml, the Atom schema."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import feedparser
from lxml import etree

SHARED = Path(__file__).resolve().parents[2] / "shared"
ATOM_RNC = Path(os.environ.get("ATOM_RNC", SHARED / "atom.rnc"))


def parse_with_feedparser(data: bytes) -> feedparser.FeedParserDict:
    parsed = feedparser.parse(data)
    assert parsed.bozo == 0, f"feedparser: {parsed.get('bozo_exception')!r}"
    return parsed


def parse_xml(data: bytes) -> etree._Element:
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False))


@lru_cache(maxsize=1)
def atom_schema() -> etree.RelaxNG | None:
    """The RFC 4287 RELAX NG schema from ../shared, or None when this checkout has no ../shared."""
    if not ATOM_RNC.is_file():
        return None
    import rnc2rng

    rng = rnc2rng.dumps(rnc2rng.loads(ATOM_RNC.read_text(encoding="utf-8")))
    rng = rng.replace(' xmlns:local=""', "")  # rnc2rng declares an empty prefix lxml refuses
    return etree.RelaxNG(etree.fromstring(rng.encode()))


def assert_matches_atom_schema(data: bytes, schema: etree.RelaxNG) -> None:
    doc = parse_xml(data)
    assert schema.validate(doc), str(schema.error_log)


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def assert_json_feed(data: bytes) -> dict:  # type: ignore[type-arg]
    """The JSON Feed 1.1 rules a reader relies on."""
    feed = json.loads(data.decode("utf-8"))
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(feed["title"], str) and feed["title"]
    # https, or a loopback trial (the demo's `make run` serves on http://127.0.0.1:8080)
    assert feed["feed_url"].startswith(("https://", "http://127.0.0.1:", "http://localhost:")), feed["feed_url"]
    ids = [item["id"] for item in feed["items"]]
    assert len(ids) == len(set(ids)), "item ids must be unique"
    for item in feed["items"]:
        assert isinstance(item["id"], str) and item["id"]
        assert "content_html" in item or "content_text" in item
        for key in ("date_published", "date_modified"):
            if key in item:
                assert _RFC3339.match(item[key]), item[key]
                datetime.fromisoformat(item[key])
    return feed


def assert_valid_feed(path_or_bytes: Path | bytes) -> None:
    """Any of our three formats, by content."""
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    if data.lstrip().startswith(b"{"):
        assert_json_feed(data)
        return
    parse_xml(data)
    parse_with_feedparser(data)
