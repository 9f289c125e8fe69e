"""CSV that is safe to open in a spreadsheet, and reads back as it was written.

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to Excel and
LibreOffice: a reader who signs up as `=HYPERLINK("https://evil.example","click")` would put a
live link (or worse) into the operator's export. Every CSV publisher writes goes through
`SafeCsvWriter`, which puts a `'` before such a cell (OWASP's advice: the spreadsheet shows the
text, and hides the quote). `from_csv_cell` removes that one quote again, so `subscribers import`
of an export gives back the very value; to keep that exact, a value that already starts with
quotes before such a character gets one more. docs/subscribers.md says so.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any, TextIO

_FORMULA = re.compile(r"'*[=+\-@\t\r]")  # what is a formula, after any quotes we may have added


def to_csv_cell(value: Any) -> Any:
    """`value` as a CSV cell a spreadsheet shows as text; numbers and other non-strings as they are."""
    if isinstance(value, str) and _FORMULA.match(value):
        return "'" + value
    return value


def from_csv_cell(value: str) -> str:
    """A cell `to_csv_cell` wrote, as it was before: one added quote removed."""
    if value.startswith("'") and _FORMULA.match(value, 1):
        return value[1:]
    return value


class SafeCsvWriter:
    """csv.writer's writerow and writerows (lines end in \\n), every cell through `to_csv_cell`."""

    def __init__(self, out: TextIO) -> None:
        self._writer = csv.writer(out, lineterminator="\n")

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([to_csv_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)
