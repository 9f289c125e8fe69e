"""The console's charts, drawn on the server as SVG: pure functions from numbers to markup.

A Chart is the numbers (a label per column, one or more named series); `bar_svg` and `line_svg`
draw it, and the page shows the same Chart as a table beside the drawing, so a screen reader
and a reader without images get the numbers. The SVG has a viewBox and no width, so it scales
to the page (readable at 400 px); colours and fonts come from classes in the console's CSS
(`series-0` … `series-7`, in publisher/web/admin/static/admin.css), never inline styles, which
the console's CSP forbids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 480, 240  # the viewBox; the page scales it
SMALL_WIDTH, SMALL_HEIGHT = 320, 140  # a small multiple
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 10, 46  # room for the axis labels and the legend
MAX_BAR = 48  # a bar no wider than this, however few the columns
COLOURS = 8  # series-0 .. series-7 in the CSS; more series reuse them in turn


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: tuple[int, ...]  # one per label


@dataclass(frozen=True, slots=True)
class Chart:
    """What a chart shows: `labels` along the x axis, each series' value at each label."""

    id: str  # unique on the page: names the title and description for aria-labelledby
    title: str
    desc: str
    labels: tuple[str, ...]
    series: tuple[Series, ...]

    def rows(self) -> list[tuple[str, tuple[int, ...]]]:
        """The table beside the drawing: a row per label, a value per series."""
        return [(label, tuple(s.values[n] for s in self.series)) for n, label in enumerate(self.labels)]


def nice_ticks(top: int, most: int = 5) -> list[int]:
    """Tick values from 0 covering `top` in steps of 1, 2 or 5 × 10ⁿ, at most `most` + 1 ticks."""
    if top <= 0:
        return [0, 1]
    raw = top / most
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return list(range(0, math.ceil(top / step) * step + 1, step))


def bar_svg(chart: Chart, stacked: bool = True, small: bool = False) -> Markup:
    """Bars per label: the series stacked (their sum is the bar) or side by side."""
    width, height = (SMALL_WIDTH, SMALL_HEIGHT) if small else (WIDTH, HEIGHT)
    columns = len(chart.labels)
    totals = [sum(max(s.values[n], 0) for s in chart.series) for n in range(columns)]
    top = max(totals if stacked else [max(s.values, default=0) for s in chart.series], default=0)
    frame = _Frame(width, height, nice_ticks(top), small)
    slot = frame.plot_width / max(columns, 1)
    bar = min(slot * 0.7 if stacked else slot * 0.8 / max(len(chart.series), 1), MAX_BAR)
    inset = (slot - bar * (1 if stacked else len(chart.series))) / 2  # the bars centred in their slot
    shapes = []
    for n, label in enumerate(chart.labels):
        base = 0
        for k, series in enumerate(chart.series):
            value = max(series.values[n], 0)
            x = frame.left + n * slot + inset + (0 if stacked else k * bar)
            low, high = (base, base + value) if stacked else (0, value)
            if value:
                y, h = frame.y(high), frame.y(low) - frame.y(high)
                shapes.append(
                    f'<rect class="series-{k % COLOURS}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}">'
                    f"<title>{escape(label)}: {escape(series.name)} {value}</title></rect>"
                )
            base += value if stacked else 0
    return _svg(chart, frame, shapes, small)


def line_svg(chart: Chart) -> Markup:
    """A line per series through its values, with a dot at each label."""
    values = [v for s in chart.series for v in s.values]
    frame = _Frame(WIDTH, HEIGHT, nice_ticks(max(values, default=0)), False)
    columns = len(chart.labels)
    slot = frame.plot_width / max(columns, 1)
    shapes = []
    for k, series in enumerate(chart.series):
        points = [(frame.left + (n + 0.5) * slot, frame.y(max(v, 0))) for n, v in enumerate(series.values)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        shapes.append(f'<polyline class="line series-{k % COLOURS}" points="{path}"/>')
        for (x, y), label, value in zip(points, chart.labels, series.values, strict=True):
            shapes.append(
                f'<circle class="series-{k % COLOURS}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
                f"<title>{escape(label)}: {escape(series.name)} {value}</title></circle>"
            )
    return _svg(chart, frame, shapes, False)


class _Frame:
    """The plot area inside the viewBox and the y scale of its ticks."""

    def __init__(self, width: int, height: int, ticks: list[int], small: bool) -> None:
        self.width, self.height, self.ticks = width, height, ticks
        self.left, self.top = LEFT, TOP
        self.bottom = height - (22 if small else BOTTOM)
        self.plot_width = width - LEFT - RIGHT

    def y(self, value: int) -> float:
        return self.bottom - (self.bottom - self.top) * value / self.ticks[-1]


def _svg(chart: Chart, frame: _Frame, shapes: list[str], small: bool) -> Markup:
    cid = escape(chart.id)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart{" small" if small else ""}" '
        f'viewBox="0 0 {frame.width} {frame.height}" role="img" aria-labelledby="{cid}-title {cid}-desc">',
        f'<title id="{cid}-title">{escape(chart.title)}</title>',
        f'<desc id="{cid}-desc">{escape(chart.desc)}</desc>',
    ]
    for tick in frame.ticks:
        y = frame.y(tick)
        parts.append(f'<line class="grid" x1="{frame.left}" y1="{y:.1f}" x2="{frame.width - RIGHT}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{frame.left - 4}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    parts.extend(shapes)
    columns = len(chart.labels)
    slot = frame.plot_width / max(columns, 1)
    every = max(1, math.ceil(columns / (4 if small else 6)))  # labels that fit at 400 px
    for n, label in enumerate(chart.labels):
        if (columns - 1 - n) % every == 0:  # counted from the newest, which is always labelled
            x, anchor = frame.left + (n + 0.5) * slot, "middle"
            if n == columns - 1:  # the newest ends at the plot's edge rather than past it
                x, anchor = min(x + slot / 2, frame.width - RIGHT), "end"
            parts.append(
                f'<text class="label" x="{x:.1f}" y="{frame.bottom + 16}" text-anchor="{anchor}">{escape(label)}</text>'
            )
    if not small and len(chart.series) > 1:
        x = frame.left
        for k, series in enumerate(chart.series):
            parts.append(f'<rect class="series-{k % COLOURS}" x="{x}" y="{frame.height - 14}" width="10" height="10"/>')
            parts.append(f'<text class="legend" x="{x + 14}" y="{frame.height - 5}">{escape(series.name)}</text>')
            x += 24 + 8 * len(series.name) + (6 * sum(1 for c in series.name if ord(c) > 0x2E80))
    parts.append("</svg>")
    return Markup("\n".join(parts))
