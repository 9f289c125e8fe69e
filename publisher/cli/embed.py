"""`publisher embed`: the sign-up form's HTML for another site's pages (web/embed.py)."""

from __future__ import annotations

import click

from .base import load_app, main


@main.command("embed")
@click.pass_context
def embed_command(ctx: click.Context) -> None:
    """Print the sign-up form to paste into the CMS: it posts to [web] public_url with a form
    token its script fetches; list the CMS's origin in [web] embed_origins (docs/signup.md)."""
    from ..web.embed import render_snippet

    app = load_app(ctx)
    try:
        click.echo(render_snippet(app), nl=False)
    finally:
        app.close()
