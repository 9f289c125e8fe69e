"""`/hooks/<provider>`: what mail providers tell us about mail we sent (bounces, complaints,
unsubscribes), one route per provider, each verified as its provider documents it.

A provider without its `[hooks.<provider>]` table answers 404. A request is read whole, up to
`hooks.body_limit` bytes (413 past it), because signatures cover the raw body. A request that is
not verifiably the provider's (signature, credentials, token, a stale or replayed one) is
answered 401 and logged in one line, and nothing changes; a verified one's events go to the
App (`record_mail_events`), and 200 tells the provider not to send it again. When they cannot
be recorded (the store is busy or down) the answer is 503 and the request may come again.

The replay key is spent before the events are recorded (each event in its own transaction).
A request whose every event carries the provider's event id, which the store keeps once, is
recorded again when it comes again and answered 200: a crash between the key and the events
loses nothing, and a replay changes nothing. Only a replay with an event the store cannot
tell apart (no id) is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, request

from ..bounces.events import MailEvent
from ..bounces.providers import Door, HookRequest, Malformed, Refused, ReplayGuard, Unavailable
from ..bounces.recorder import RecordReport
from .shared import client_address

log = logging.getLogger(__name__)

EXTENSION = "publisher.hooks"

hooks = Blueprint("hooks", __name__)


@dataclass(frozen=True)
class HookState:
    """One app's doors (by provider name), where verified events go, and the replay guard (its
    keys in the store, so a replay is refused by every process serving it)."""

    doors: Mapping[str, Door]
    record: Callable[[list[MailEvent]], RecordReport]
    body_limit: int
    guard: ReplayGuard


def install_hooks(web: Flask, state: HookState) -> None:
    web.extensions[EXTENSION] = state


def _answer(status: int, words: str) -> Response:
    response = Response(words + "\n", status, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-store"
    return response


@hooks.post("/hooks/<provider>")
def receive(provider: str) -> Response:
    state: HookState | None = current_app.extensions.get(EXTENSION)
    door = state.doors.get(provider) if state is not None else None
    if state is None or door is None:
        return _answer(404, "no such hook")
    request.max_content_length = state.body_limit
    body = request.get_data(cache=False)  # 413 past the limit
    headers = {name.lower(): value for name, value in request.headers.items()}
    received = HookRequest(body, headers, request.args.to_dict())
    try:
        verified = door.receive(received)
    except Refused as exc:
        log.warning("hooks/%s: refused a request from %s: %s", provider, client_address(), exc)
        return _answer(401, "refused")
    except Malformed as exc:
        log.warning("hooks/%s: a verified request from %s could not be read: %s", provider, client_address(), exc)
        return _answer(400, "unreadable")
    except Unavailable as exc:
        log.warning("hooks/%s: cannot verify a request now: %s", provider, exc)
        return _answer(503, "try again later")
    try:
        fresh = state.guard.claim(verified.replay_key, verified.seen_until)
    except Exception as exc:  # noqa: BLE001 - the store is busy or down: the provider must try again
        log.error("hooks/%s: could not check a request for a replay: %s: %s", provider, exc.__class__.__name__, exc)
        return _answer(503, "try again later")
    if not fresh and not all(event.event_id for event in verified.events):
        log.warning("hooks/%s: refused a request from %s: replayed (accepted once already)", provider, client_address())
        return _answer(401, "refused")
    if not fresh:  # every event has its id, which the store keeps once: recording again changes nothing
        log.info("hooks/%s: a request accepted once came again: its events are recorded once, by their ids", provider)
    try:
        report = state.record(verified.events)
    except Exception as exc:  # noqa: BLE001 - the provider must try again, whatever failed
        if fresh:
            state.guard.release(verified.replay_key)
        log.error("hooks/%s: could not record %d event(s): %s: %s", provider, len(verified.events),
                  exc.__class__.__name__, exc)  # fmt: skip
        return _answer(503, "try again later")
    if verified.events:
        log.info(
            "hooks/%s: %d event(s): %d new, %d already known, %d about nobody of ours, %d unlinked; suppressed %d, "
            "unsubscribed %d",
            provider, len(verified.events), report.recorded, report.duplicates, report.strangers, report.unlinked,
            len(report.suppressed), len(report.unsubscribed),
        )  # fmt: skip
    return _answer(200, "ok")
