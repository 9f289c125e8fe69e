"""The console's SVG charts: golden files for a small fixed dataset, read back with lxml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lxml import etree

from publisher.web.admin.charts import Chart, Series, bar_svg, line_svg, nice_ticks

GOLDEN = Path(__file__).parent / "golden" / "charts"
SVG = "{http://www.w3.org/2000/svg}"
WEEKS = ("2026-11-16", "2026-11-23", "2026-11-30")
GROWTH = Chart("growth", "订阅者 <每周>", "list size & changes", WEEKS,
               (Series("confirmed", (2, 0, 1)), Series("退订", (0, 1, 1)), Series("bounced", (0, 0, 1))))  # fmt: skip
SIZE = Chart("size", "List size", "confirmed at each week's end", WEEKS, (Series("list size", (5, 4, 4)),))
SMALL = Chart("cat-news", "news", "articles per week", WEEKS, (Series("articles", (2, 0, 1)),))

CASES = {
    "stacked.svg": lambda: bar_svg(GROWTH),
    "grouped.svg": lambda: bar_svg(GROWTH, stacked=False),
    "line.svg": lambda: line_svg(SIZE),
    "small.svg": lambda: bar_svg(SMALL, small=True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_svg(name: str) -> None:
    """Compare with tests/golden/charts/<name>; UPDATE_GOLDEN=1 rewrites them after a deliberate change."""
    svg = str(CASES[name]())
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(svg + "\n", encoding="utf-8")
    assert svg + "\n" == path.read_text(encoding="utf-8"), f"{name} differs from the golden file (UPDATE_GOLDEN=1)"


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_svg_parses_and_names_itself_for_screen_readers(name: str) -> None:
    root = etree.fromstring(str(CASES[name]()).encode())
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    assert root.get("width") is None and root.get("viewBox", "").startswith("0 0 ")  # scales to the page
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and desc is not None
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert not root.xpath("//@style") and not root.xpath("//*[local-name()='script']")  # the CSP forbids both


def test_the_bars_carry_the_charts_numbers_and_stack_to_their_sums() -> None:
    root = etree.fromstring(str(bar_svg(GROWTH)).encode())
    said = [r.findtext(f"{SVG}title") for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert said == ["2026-11-16: confirmed 2", "2026-11-23: 退订 1", "2026-11-30: confirmed 1",
                    "2026-11-30: 退订 1", "2026-11-30: bounced 1"]  # fmt: skip
    assert root.findtext(f"{SVG}title") == "订阅者 <每周>"  # escaped in the markup, read back whole
    last = [r for r in root.iter(f"{SVG}rect") if (r.findtext(f"{SVG}title") or "").startswith("2026-11-30")]
    heights = [float(r.get("height", "0")) for r in last]
    assert heights[0] == heights[1] == heights[2] and sum(heights) == pytest.approx(3 * heights[0])
    tops = sorted(float(r.get("y", "0")) for r in last)
    assert tops[1] == pytest.approx(tops[0] + heights[0])  # each sits on the one below


def test_the_table_holds_the_same_numbers_as_the_drawing() -> None:
    assert GROWTH.rows() == [("2026-11-16", (2, 0, 0)), ("2026-11-23", (0, 1, 0)), ("2026-11-30", (1, 1, 1))]


@pytest.mark.parametrize(("top", "ticks"), [(0, [0, 1]), (1, [0, 1]), (7, [0, 2, 4, 6, 8]),
                                            (23, [0, 5, 10, 15, 20, 25]), (140, [0, 50, 100, 150])])  # fmt: skip
def test_ticks_are_round_numbers_covering_the_top(top: int, ticks: list[int]) -> None:
    assert nice_ticks(top) == ticks
