"""`publisher bounces poll`: read the bounce mailbox once (docs/digest.md, "Bounce mailbox"); the
other `bounces` commands are in cli/bounces.py."""

from __future__ import annotations

import click

from ..errors import PublisherError
from .base import EXIT_CONFIG, err, fail, load_app, out
from .bounces import bounces

KIND_NAMES = {"hard": "hard bounces", "soft": "soft bounces", "complaint": "complaints"}


@bounces.command("poll")
@click.pass_context
def bounces_poll(ctx: click.Context) -> None:
    """Read [bounces.mailbox] once: record its bounces and complaints, move or delete what was read."""
    app = load_app(ctx)
    box = app.settings.bounces.mailbox
    if box is None:
        app.close()
        err.print("no [bounces.mailbox] is configured (docs/digest.md, Bounce mailbox)", highlight=False)
        raise SystemExit(EXIT_CONFIG)
    try:
        report = app.poll_bounce_mailbox()
    except PublisherError as exc:
        fail(exc)
    finally:
        app.close()
    where = f"{box.protocol}://{box.host}:{box.server_port}" + (f"/{box.folder}" if box.protocol == "imap" else "")
    done = "moved to " + box.processed_folder if box.action == "move" else "deleted"
    earlier = f" ({report.left_before} left by earlier polls)" if report.left_before else ""
    out.print(f"{where}: {report.processed} read and {done}, {report.left} left{earlier}", highlight=False)
    for kind, name in KIND_NAMES.items():
        if report.by_kind[kind]:
            out.print(f"  {name}: {report.by_kind[kind]}", highlight=False)
    if report.duplicates:
        out.print(f"  recorded before: {report.duplicates}", highlight=False)
    if report.strangers:
        out.print(f"  naming no reader of ours: {report.strangers}", highlight=False)
    if report.unlinked:
        out.print(f"  not linked to a delivery of ours, changing nobody: {report.unlinked}", highlight=False)
    for label, addresses in (("suppressed", report.suppressed), ("unsubscribed", report.unsubscribed)):
        if addresses:
            out.print(f"  {label}: {', '.join(addresses)}", highlight=False)
