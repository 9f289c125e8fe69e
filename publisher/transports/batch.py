"""The providers' batch APIs: many messages in one call, each with its own outcome.

Every reader's digest differs (their name, their signed links, their delivery token), so a
batch goes out in one of two ways:

- whole messages, each rendered for its reader, where the API takes a list of messages:
  Postmark's `/email/batch` (500, an outcome per message in order), Resend's `/emails/batch`
  (100, permissive validation: the invalid ones are named by index, the others go), and SES,
  which has no batch call for raw messages: one call per reader, made at once from a few
  threads;
- one template and per-recipient values, where the API substitutes them: Mailgun's
  `recipient-variables` (1,000) and SendGrid's personalizations (1,000), a rendered message
  turned back into its template and its reader's values (batch_templates.py); messages whose
  templates are equal go in one call, a message that cannot be one goes alone.

A call refused as a whole (a 4xx but 401, 403 and 429: nothing was sent) of several messages
is made again one message at a time, so one bad address fails only its own delivery. The HTTP
rules are the single-message sender's (http_api.HttpApiTransport.post): a call whose answer was
lost is `uncertain` for every message in it. Resend's batch key is tried again within the one
`post` (same key, same bytes); once those attempts run out the call is `uncertain` too, because
the next call is made up of other members under another key.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from ..mail import Message
from . import Sent, TransportError
from .api_providers import Request, json_field, json_object, postmark_body, resend_body
from .batch_templates import by_template, mailgun_batch, sendgrid_batch
from .http_api import HttpApiTransport

Outcome = Sent | TransportError


def _uncertain(name: str, what: str) -> TransportError:
    return TransportError(
        f"{name}: {what}",
        "it may have been sent: `digest failures` lists it, `digest retry --all` sends it again",
        retryable=False,
        uncertain=True,
    )


# --- whole messages: Postmark, Resend ---------------------------------------------------------


def _postmark_batch(messages: Sequence[Message], key: str, options: dict[str, str]) -> Request:
    """POST /email/batch: a JSON array of /email's messages."""
    headers = {"X-Postmark-Server-Token": key, "Accept": "application/json"}
    return Request(path="/email/batch", headers=headers, json=[postmark_body(m, options) for m in messages])


# Postmark's per-message error codes (its API error codes table) that say more than "this
# message is refused": the recipient is inactive (it hard-bounced, complained or was suppressed:
# the address is dead to us too); the server or account may not send at all (every message of
# the call is handed back and the digest pauses: `broken`); Postmark asks to try later.
_POSTMARK_DEAD = {406}
_POSTMARK_INACTIVE = "Postmark marks the address inactive (a hard bounce, a complaint or its suppression)"
_POSTMARK_BROKEN = {
    10: "Postmark refuses the server token: check the API key's environment variable",
    400: "the From address has no sender signature in Postmark: add it (or its domain) to the server",
    401: "the sender signature is not confirmed in Postmark: confirm it",
    405: "Postmark does not let this server send (out of credits?): see the account",
    412: "Postmark's account is pending approval: only its own domain's addresses may be sent to",
    413: "Postmark says the account may not send: see the account's status",
}
_POSTMARK_LATER = {100: "Postmark is in maintenance", 429: "Postmark's rate limit was exceeded"}


def _postmark_read(response: requests.Response, messages: Sequence[Message]) -> list[Outcome]:
    """One result per message, in order: ErrorCode 0 with its MessageID, else its refusal."""
    try:
        results = response.json()
    except ValueError:
        results = None
    if not isinstance(results, list) or len(results) != len(messages):
        what = f"HTTP {response.status_code} from {response.url}: an answer that is not one result per message"
        raise _uncertain("postmark", what)
    outcomes: list[Outcome] = []
    for result in results:
        result = result if isinstance(result, dict) else {}
        code, said = result.get("ErrorCode"), str(result.get("Message") or "")[:300]
        if code == 0:
            outcomes.append(Sent(provider_id=str(result.get("MessageID") or "") or None))
        elif code in _POSTMARK_BROKEN:
            hint = _POSTMARK_BROKEN[code]
            outcomes.append(TransportError(f"postmark: ErrorCode {code}: {said}", hint, retryable=False, broken=True))
        elif code in _POSTMARK_LATER:
            hint = f"{_POSTMARK_LATER[code]}: tried again later"
            outcomes.append(TransportError(f"postmark: ErrorCode {code}: {said}", hint, retryable=True))
        else:
            dead = code in _POSTMARK_DEAD
            hint = _POSTMARK_INACTIVE if dead else "Postmark will not take this message"
            outcomes.append(TransportError(f"postmark: ErrorCode {code}: {said}", hint, retryable=False, bounced=dead))
    return outcomes


def _resend_batch(messages: Sequence[Message], key: str, options: dict[str, str]) -> Request:
    """POST /emails/batch, permissive (each invalid message refused alone), with an
    Idempotency-Key of the batch's Message-IDs: an attempt made again within the one `post`
    sends nothing twice (a later call has other members and another key: see post)."""
    ids = hashlib.sha256("\n".join(m.message_id for m in messages).encode("utf-8")).hexdigest()
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"batch-{ids}", "x-batch-validation": "permissive"}
    return Request(path="/emails/batch", headers=headers, json=[resend_body(m) for m in messages])


def _resend_read(response: requests.Response, messages: Sequence[Message]) -> list[Outcome]:
    """`data`: the ids of the messages taken, in order; `errors`: the others, by index."""
    body = json_object(response)
    data, errors = body.get("data"), body.get("errors") or []
    refused = {e.get("index"): str(e.get("message") or "")[:300] for e in errors if isinstance(e, dict)}
    in_range = all(isinstance(i, int) and 0 <= i < len(messages) for i in refused)
    if not isinstance(data, list) or not in_range or len(data) + len(refused) != len(messages):
        what = f"HTTP {response.status_code} from {response.url}: an answer that does not account for every message"
        raise _uncertain("resend", what)
    taken = iter(data)
    outcomes: list[Outcome] = []
    for index in range(len(messages)):
        if index in refused:
            hint = "Resend will not take this message"
            outcomes.append(TransportError(f"resend: refused: {refused[index]}", hint, retryable=False))
        else:
            item = next(taken)
            outcomes.append(Sent(provider_id=str(item.get("id") or "") or None if isinstance(item, dict) else None))
    return outcomes


Read = Callable[[requests.Response, Sequence[Message]], list[Outcome]]


def _one_id(read: Callable[[requests.Response], str | None]) -> Read:
    """An answer that takes the whole call: every message sent, under the call's one id."""

    def outcomes(response: requests.Response, messages: Sequence[Message]) -> list[Outcome]:
        return [Sent(provider_id=read(response))] * len(messages)

    return outcomes


# --- the transport ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchApi:
    limit: int  # messages a call takes
    build: Callable[[Sequence[Message], str, dict[str, str]], Request]
    read: Callable[[requests.Response, Sequence[Message]], list[Outcome]]
    templated: bool = False  # one template per call (by_template), else any messages together


BATCH_APIS = {
    "postmark": BatchApi(500, _postmark_batch, _postmark_read),
    "resend": BatchApi(100, _resend_batch, _resend_read),
    "mailgun": BatchApi(1000, mailgun_batch, _one_id(json_field("id")), templated=True),
    "sendgrid": BatchApi(1000, sendgrid_batch, _one_id(lambda r: r.headers.get("X-Message-Id")), templated=True),
}


class BatchApiTransport:
    """A provider's batch API (a BatchTransport) over its single-message sender, which makes
    the HTTP calls, sends a call of one message, and the one-by-one retry of a refused call."""

    def __init__(self, single: HttpApiTransport, api: BatchApi, limit: int | None = None) -> None:
        self.single, self.api = single, api
        self.limit = min(limit or api.limit, api.limit)

    def calls(self, messages: Sequence[Message]) -> list[list[int]]:
        if self.api.templated:
            return by_template(messages, self.limit)
        return [list(range(i, min(i + self.limit, len(messages)))) for i in range(0, len(messages), self.limit)]

    def send_batch(self, messages: Sequence[Message]) -> list[Outcome]:
        if len(messages) == 1:
            return [self.single.send(messages[0])]
        try:
            request = self.api.build(messages, self.single.api_key, self.single.options)
            response = self.single.post(request, key_outlives=False)  # the next call's members differ
        except TransportError as exc:
            if exc.retryable or exc.uncertain or exc.broken:
                raise
            return [self._alone(message) for message in messages]  # refused whole: nothing went
        return self.api.read(response, messages)

    def _alone(self, message: Message) -> Outcome:
        try:
            return self.single.send(message)
        except TransportError as exc:
            return exc

    def send(self, message: Message) -> Sent:
        return self.single.send(message)

    def close(self) -> None:
        self.single.close()


class ConcurrentTransport:
    """A batch of single calls made at once from `threads` threads (SES: its API has no batch
    of raw messages), each message with its own outcome; each thread has its own sender."""

    def __init__(self, make: Callable[[], HttpApiTransport], threads: int = 8) -> None:
        self.make, self.limit = make, threads
        self._local = threading.local()
        self._made: list[HttpApiTransport] = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def calls(self, messages: Sequence[Message]) -> list[list[int]]:
        return [list(range(i, min(i + self.limit, len(messages)))) for i in range(0, len(messages), self.limit)]

    def _sender(self) -> HttpApiTransport:
        sender: HttpApiTransport | None = getattr(self._local, "sender", None)
        if sender is None:
            sender = self._local.sender = self.make()
            with self._lock:
                self._made.append(sender)
        return sender

    def send(self, message: Message) -> Sent:
        return self._sender().send(message)

    def _outcome(self, message: Message) -> Outcome:
        try:
            return self.send(message)
        except TransportError as exc:
            return exc

    def send_batch(self, messages: Sequence[Message]) -> list[Outcome]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.limit, thread_name_prefix="publisher-send")
        return list(self._pool.map(self._outcome, messages))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        with self._lock:
            made, self._made = self._made, []
        self._local = threading.local()
        for sender in made:
            sender.close()
