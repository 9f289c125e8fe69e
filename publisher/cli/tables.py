"""Records as a table, CSV or JSON (`--format`), for the commands that list things.

A table on a terminal is rich's, folding long values instead of cutting them; elsewhere (a pipe,
a file) it is plain text with every value whole. Times are shown in the site's zone: the table
as `2026-12-03 09:15` under a header naming the zone, CSV and JSON as ISO 8601 with the offset.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import click
from rich.cells import cell_len
from rich.text import Text

from .base import out

Cell = str | int | datetime | tuple[str, ...] | None  # None: nothing (null in JSON)

FORMATS = ("table", "csv", "json")
FORMAT = click.option(
    "--format", "output_format", type=click.Choice(FORMATS), default="table", show_default=True,
    help="table for people (whole values off a terminal); csv or json for programs.",
)  # fmt: skip


@dataclass(frozen=True)
class Column:
    key: str  # the CSV header and JSON key
    header: str = ""  # the table's header; empty: the key
    right: bool = False  # right-aligned in the table (counts)
    empty: str = ""  # what the table shows for an empty value, such as "(all)"
    time: bool = False  # holds datetimes: the table's header names the zone they are shown in


def print_records(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], output_format: str, zone: str) -> None:
    """`rows` on standard output in `output_format` ("table", "csv" or "json")."""
    site_zone = ZoneInfo(zone)
    if output_format == "json":
        records = [{c.key: _data(value, site_zone) for c, value in zip(columns, row, strict=True)} for row in rows]
        sys.stdout.write(json.dumps(records, ensure_ascii=False, indent=2) + "\n")
    elif output_format == "csv":
        from ..csv_cells import SafeCsvWriter

        writer = SafeCsvWriter(sys.stdout)
        writer.writerow([c.key for c in columns])
        writer.writerows([_csv(value, site_zone) for value in row] for row in rows)
    else:
        headers = [f"{c.header or c.key} ({zone})" if c.time else c.header or c.key for c in columns]
        cells = [[_shown(value, c, site_zone) for c, value in zip(columns, row, strict=True)] for row in rows]
        _table(columns, headers, cells)


def _data(value: Cell, zone: ZoneInfo) -> str | int | list[str] | None:
    if isinstance(value, datetime):
        return value.astimezone(zone).isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


def _csv(value: Cell, zone: ZoneInfo) -> str | int:
    if isinstance(value, tuple):
        return ";".join(value)  # as `subscribers import` reads categories
    data = _data(value, zone)
    assert not isinstance(data, list)
    return "" if data is None else data


def _shown(value: Cell, column: Column, zone: ZoneInfo) -> str:
    if isinstance(value, datetime):
        return f"{value.astimezone(zone):%Y-%m-%d %H:%M}"
    if value is None:
        return column.empty
    text = "、".join(value) if isinstance(value, tuple) else str(value)
    return _CONTROL.sub(lambda found: f"\\u{ord(found.group()):04x}", text) or column.empty


# Shown as \u001b and the like: an escape sequence in a reader's name must not reach the terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _table(columns: Sequence[Column], headers: list[str], cells: list[list[str]]) -> None:
    if out.is_terminal:
        from rich.table import Table

        table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
        for column, header in zip(columns, headers, strict=True):
            justify: Literal["left", "right"] = "right" if column.right else "left"
            table.add_column(header, justify=justify, overflow="fold")
        for row in cells:
            table.add_row(*(Text(cell) for cell in row))  # as they are: never read as markup
        out.print(table)
        return
    widths = [max([cell_len(header)] + [cell_len(row[i]) for row in cells]) for i, header in enumerate(headers)]
    for row in [headers, *cells]:
        padded = []
        for column, width, text in zip(columns, widths, row, strict=True):
            room = " " * (width - cell_len(text))
            padded.append(room + text if column.right else text + room)
        sys.stdout.write("  ".join(padded).rstrip() + "\n")
