"""One template and per-recipient values, for the batch APIs that substitute them (batch.py):
Mailgun's `recipient-variables` (`%recipient.x%`) and SendGrid's personalizations, each with
its substitutions, headers and custom args.

`personalised` turns a rendered message back into its template by putting a placeholder where
each of the reader's own strings is (`Envelope.personal`: their name, their links), and
`by_template` puts messages whose templates are equal in one call, so a call holds readers of
one draft (categories and script). A message whose strings cannot be put back exactly goes
alone, through the single-message API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import escape

from ..bounces.events import DELIVERY_HEADER
from ..bounces.providers.base import DELIVERY_VARIABLE
from ..mail import Message, Parts, addr_spec
from .api_providers import Request


@dataclass(frozen=True)
class Personalised:
    """A message as a template (`key`: what every message of one call shares) and its reader's values."""

    key: tuple[str, ...]
    subject: str
    text: str
    html: str
    values: dict[str, str]  # placeholder name -> this reader's value


def placeholder(name: str) -> str:
    return f"%recipient.{name}%"


def _unpadded(text: str, parts: Parts | None, before: str) -> str:
    """The body without the spaces that align its shared middle for base64 (digest._aligned):
    an API that encodes the message itself has no use for them, and they differ per reader."""
    if parts is None:
        return text
    head, middle, foot = parts
    if before and head.endswith(before):
        head = head[: -len(before)].rstrip(" ") + before
    elif not before:
        head = head.rstrip(" ")
    return head + middle + foot


def personalised(message: Message) -> Personalised | None:
    """`message` as a template and its reader's values (see the module's docstring); None when
    it cannot be one: a string of theirs that HTML escapes, or placeholder syntax in the
    message itself (a substitution would change it)."""
    e = message.envelope
    text = _unpadded(message.text, message.text_parts, "\n")
    html = _unpadded(message.html, message.html_parts, "")
    if "%recipient." in text + html + e.subject:
        return None
    values = {name: value for name, value in e.personal if value}
    if any(str(escape(value)) != value for value in values.values()):
        return None
    names = {value: name for name, value in values.items()}
    if names:
        found = re.compile("|".join(re.escape(v) for v in sorted(names, key=len, reverse=True)))
        text = found.sub(lambda m: placeholder(names[m.group()]), text)
        html = found.sub(lambda m: placeholder(names[m.group()]), html)
    key = (e.subject, text, html, _from(message), e.reply_to.addr_spec if e.reply_to else "", e.list_id)
    return Personalised(key, e.subject, text, html, values)


def _from(message: Message) -> str:
    sender = message.envelope.sender
    return f'"{sender.display_name}" <{addr_spec(sender)}>' if sender.display_name else addr_spec(sender)


def by_template(messages: Sequence[Message], limit: int) -> list[list[int]]:
    """The messages' calls: those of one template together, `limit` at most; the rest alone."""
    groups: dict[tuple[str, ...], list[int]] = {}
    calls: list[list[int]] = []
    for index, message in enumerate(messages):
        template = personalised(message)
        if template is None:
            calls.append([index])
            continue
        group = groups.setdefault(template.key, [])
        group.append(index)
        if len(group) == limit:
            calls.append(groups.pop(template.key))
    return calls + list(groups.values())


def _per_reader(message: Message) -> dict[str, str]:
    """The headers that differ per reader besides the body's strings: the one-click link, the
    delivery token."""
    headers = message.list_headers
    return {"list_unsubscribe": headers["List-Unsubscribe"], "delivery": headers.get(DELIVERY_HEADER, "")}


def mailgun_batch(messages: Sequence[Message], key: str, options: dict[str, str]) -> Request:
    """POST /v3/{domain}/messages: every `to`, the template, `recipient-variables` keyed by
    address, the per-reader headers and the delivery variable as placeholders; no tracking."""
    first = personalised(messages[0])
    assert first is not None  # by_template put only templates in a call of several
    variables = {}
    for message in messages:
        template = personalised(message)
        assert template is not None
        variables[message.recipient] = template.values | _per_reader(message)
    e = messages[0].envelope
    fields: list[tuple[str, str]] = [("from", _from(messages[0]))]
    fields += [("to", _formatted_to(m)) for m in messages]
    fields += [("subject", first.subject), ("text", first.text), ("html", first.html), ("o:tracking", "no")]
    if e.reply_to is not None:
        fields.append(("h:Reply-To", addr_spec(e.reply_to)))
    fields += [
        ("h:List-Id", e.list_id),
        ("h:List-Unsubscribe", placeholder("list_unsubscribe")),
        ("h:List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        (f"h:{DELIVERY_HEADER}", placeholder("delivery")),
        (f"v:{DELIVERY_VARIABLE}", placeholder("delivery")),
        ("recipient-variables", json.dumps(variables, ensure_ascii=False)),
    ]
    return Request(path=f"/v3/{options['domain']}/messages", auth=("api", key), data=fields)


def _formatted_to(message: Message) -> str:
    to = message.envelope.to
    name = to.display_name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{name}" <{addr_spec(to)}>' if name else addr_spec(to)


def sendgrid_batch(messages: Sequence[Message], key: str, options: dict[str, str]) -> Request:
    """POST /v3/mail/send: one personalization per reader (their address, substitutions,
    one-click link and delivery token), the template as the content; no tracking."""
    first = personalised(messages[0])
    assert first is not None
    personalizations = []
    for message in messages:
        template = personalised(message)
        assert template is not None
        reader = _per_reader(message)
        name = message.envelope.to.display_name
        to = {"email": message.recipient} | ({"name": name} if name else {})
        entry: dict[str, Any] = {
            "to": [to],
            "headers": {"List-Unsubscribe": reader["list_unsubscribe"]},
            "substitutions": {placeholder(name): value for name, value in template.values.items()},
        }
        if reader["delivery"]:
            entry["headers"][DELIVERY_HEADER] = reader["delivery"]
            entry["custom_args"] = {DELIVERY_VARIABLE: reader["delivery"]}
        personalizations.append(entry)
    e = messages[0].envelope
    sender = {"email": addr_spec(e.sender)} | ({"name": e.sender.display_name} if e.sender.display_name else {})
    body: dict[str, Any] = {
        "personalizations": personalizations,
        "from": sender,
        "subject": first.subject,
        "content": [{"type": "text/plain", "value": first.text}, {"type": "text/html", "value": first.html}],
        "headers": {"List-Id": e.list_id, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        "tracking_settings": {
            "click_tracking": {"enable": False, "enable_text": False},
            "open_tracking": {"enable": False},
        },
    }
    if e.reply_to is not None:
        body["reply_to"] = {"email": addr_spec(e.reply_to)}
    return Request(path="/v3/mail/send", headers={"Authorization": f"Bearer {key}"}, json=body)
