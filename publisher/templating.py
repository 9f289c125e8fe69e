"""The Jinja2 environment every renderer shares: the operator's theme folder first, then the
templates bundled in the package. Pure once built.

`*.html.j2` are autoescaped (select_autoescape's default list would not match that name),
everything else (`*.txt.j2`) is not; an undefined variable is an error, never a blank.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jinja2 import Environment


def bundled_templates() -> Path:
    """The package's own templates folder (package data, also from an installed wheel)."""
    folder = Path(str(files("publisher.templates")))
    if not folder.is_dir():  # a zipped install: Jinja2's loaders need real files
        raise RuntimeError(f"publisher's templates are not a folder on disk ({folder}); install it unzipped")
    return folder


TEMPLATES = bundled_templates()


@cache
def environment(overrides: Path | None = None) -> Environment:
    """One environment per theme folder: templates compile once per process. A file in
    `overrides` replaces the bundled one of the same name; the others fall back."""
    from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

    folders = [overrides, TEMPLATES] if overrides is not None else [TEMPLATES]
    return Environment(
        loader=ChoiceLoader([FileSystemLoader(folder) for folder in folders]),
        autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
