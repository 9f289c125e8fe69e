"""The Jinja2 environment of the `templates/` folder, shared by every renderer. Pure.

`*.html.j2` are autoescaped (select_autoescape's default list would not match that name),
everything else (`*.txt.j2`) is not; an undefined variable is an error, never a blank.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jinja2 import Environment

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@cache
def environment(templates: Path = TEMPLATES) -> Environment:
    """One environment per templates folder: templates compile once per process."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=FileSystemLoader(templates),
        autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
