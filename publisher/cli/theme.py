"""`publisher theme export DIR`: the bundled templates and message catalogues, copied to edit."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .base import EXIT_PROBLEMS, err, main, out


@main.group()
def theme() -> None:
    """The look of the digest, the e-mails and the pages (docs/themes.md)."""


@theme.command("export")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def theme_export(folder: Path) -> None:
    """Copy the bundled templates and message catalogues into FOLDER, never overwriting a file.
    Keep only the files you change, and name FOLDER in [theme] templates."""
    import shutil

    from ..templating import TEMPLATES

    written: list[str] = []
    kept: list[str] = []
    for source in sorted(TEMPLATES.rglob("*")):
        name = source.relative_to(TEMPLATES)
        if not source.is_file() or source.suffix in (".py", ".pyc") or "__pycache__" in name.parts:
            continue
        target = folder / name
        if target.exists():
            kept.append(name.as_posix())
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        except OSError as exc:
            err.print(f"cannot write {target}: {exc.strerror}", highlight=False)
            sys.exit(EXIT_PROBLEMS)
        written.append(name.as_posix())
    for done in written:
        out.print(f"wrote {folder / done}", highlight=False)
    for left in kept:
        err.print(f"kept {folder / left} (it exists; nothing overwritten)", highlight=False)
    out.print(
        f"{len(written)} file(s) written. Keep the ones you change, delete the rest, and set "
        f'[theme] templates = "{folder}" in the configuration; `publisher check` renders them with sample values.',
        highlight=False,
    )  # fmt: skip
