"""`[alerts]`: a webhook told when something needs the operator, once per condition.

The conditions: a source or one of its parts failed `source_failures` runs in a row (cleared
by a run that reads it); a digest paused itself (cleared when it is resumed); a digest's hard
bounces or complaints crossed their share of its sent deliveries. A condition raised is a meta
row in the store (store.watch), taken by an insert: of two processes that see it, one sends.
A condition that clears is forgotten, so it alerts again when it comes back.

Sending never blocks nor fails the work that raised the alert: the message is posted from a
thread of its own with a short timeout; a failure is logged, and the condition is forgotten
so the next check tries again. `close()` waits for the posts in flight (at most the timeout).

Formats: `generic` (JSON, optionally signed with an HMAC header), `dingtalk` (a DingTalk group
robot: markdown or text, the optional "加签" signature as DingTalk documents it) and `wecom` (a
WeCom group robot). The URL comes from the environment (a robot's URL carries its token, so no
message we log shows its query); it must be https unless it is on this machine. As for a web
source, a loopback or private address is reached only with `allow_private = true` (checked
as the socket connects, so no DNS answer slips past), TLS certificates are verified, and a
post has `timeout` seconds in all, however slowly the webhook answers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, urlsplit

import requests

from .sources.addresses import AddressGuard, AddressRefused, GuardedAdapter, OutOfTime, guarded
from .store import WHOLE_SOURCE, DigestRates, SourceHealth, Store

log = logging.getLogger(__name__)

TEXT_LIMIT = 2000  # characters of a message's text (WeCom's text message takes 2048 bytes)
SIGNATURE_HEADER = "X-Publisher-Signature"  # generic format with secret_env: sha256=<hex HMAC>
TIMESTAMP_HEADER = "X-Publisher-Timestamp"


@dataclass(frozen=True, slots=True)
class Alert:
    """One message: `event` names the kind (source_failing, digest_paused, bounce_rate,
    complaint_rate), `lines` say what and what to do."""

    event: str
    title: str
    lines: tuple[str, ...]
    details: dict[str, Any] = field(default_factory=dict)


class AlertError(Exception):
    """The webhook did not take the message."""


@dataclass(frozen=True)
class Webhook:
    """Where alerts go, and how they are written for it."""

    url: str
    format: str = "generic"  # generic | dingtalk | wecom
    msgtype: str = "markdown"  # dingtalk and wecom: markdown | text
    secret: str = ""
    timeout: float = 5.0
    site: str = ""
    clock: Callable[[], float] = time.time
    allow_private: bool = False  # `[alerts] allow_private`
    guard: AddressGuard | None = None  # tests: another guard than AddressGuard(allow_private)

    def request(self, alert: Alert) -> tuple[str, bytes, dict[str, str]]:
        """(URL, body, headers) of the POST for `alert`."""
        heading = f"publisher alert ({self.site}): {alert.title}" if self.site else f"publisher alert: {alert.title}"
        text = "\n".join(alert.lines)[:TEXT_LIMIT]
        headers = {"Content-Type": "application/json"}
        url = self.url
        payload: dict[str, Any]
        if self.format == "generic":
            at = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="seconds")
            payload = {"event": alert.event, "title": heading, "text": text, "site": self.site, "at": at,
                       "details": alert.details}  # fmt: skip
        elif self.msgtype == "text":
            payload = {"msgtype": "text", "text": {"content": f"{heading}\n{text}"}}
        elif self.format == "dingtalk":
            lines = "\n\n".join(f"- {line}" for line in text.splitlines())
            payload = {"msgtype": "markdown", "markdown": {"title": heading, "text": f"#### {heading}\n\n{lines}"}}
        else:  # wecom
            lines = "\n".join(f"> {line}" for line in text.splitlines())
            payload = {"msgtype": "markdown", "markdown": {"content": f"**{heading}**\n{lines}"}}
        body = json.dumps(payload, ensure_ascii=False).encode()
        if self.secret and self.format == "dingtalk":
            url += ("&" if "?" in url else "?") + dingtalk_signature(self.secret, int(self.clock() * 1000))
        elif self.secret and self.format == "generic":
            stamp = str(int(self.clock()))
            digest = hmac.new(self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            headers |= {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: f"sha256={digest}"}
        return url, body, headers

    def post(self, alert: Alert) -> None:
        """Send `alert`; AlertError when the webhook does not take it."""
        url, body, headers = self.request(alert)
        parts = urlsplit(self.url)
        where = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)  # no user:password@
        adapter = GuardedAdapter(self.guard or AddressGuard(allow_private=self.allow_private))
        try:
            with guarded(requests.Session(), adapter) as session, adapter.cut_after(self.timeout):  # the whole post
                answer = session.post(url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False)
                text = answer.text[:200]
        except AddressRefused as exc:
            raise AlertError(f"{where}: {exc}; set [alerts] allow_private = true for a webhook of yours") from exc
        except (requests.RequestException, OutOfTime, OSError) as exc:
            if adapter.expired:
                raise AlertError(f"{where}: no complete answer within {self.timeout:g} s") from exc
            reason = _without_url(str(exc), url)
            raise AlertError(f"{where}: {exc.__class__.__name__}: {reason}") from exc
        if adapter.expired:
            raise AlertError(f"{where}: no complete answer within {self.timeout:g} s")
        if answer.status_code // 100 != 2:
            raise AlertError(f"{where} answered HTTP {answer.status_code}: {text}")
        if self.format in ("dingtalk", "wecom"):  # both answer 200 with {"errcode": 0} when they took it
            try:
                said = answer.json()
            except ValueError:
                said = {}
            if not isinstance(said, dict) or said.get("errcode") != 0:
                raise AlertError(f"{where} refused the message: {text}")


def dingtalk_signature(secret: str, timestamp_ms: int) -> str:
    """`timestamp=…&sign=…` for a DingTalk robot with "加签": base64 of HMAC-SHA256 over
    "<timestamp>\\n<secret>" keyed with the secret, URL-encoded."""
    signed = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return f"timestamp={timestamp_ms}&sign={quote_plus(base64.b64encode(signed).decode())}"


@dataclass(frozen=True)
class Thresholds:
    source_failures: int = 3
    bounce_rate: float = 0.05
    complaint_rate: float = 0.003
    min_sent: int = 100


class Alerts:
    """Raises and clears conditions in the store; posts each condition's alert once."""

    def __init__(
        self,
        store: Store,
        webhook: Webhook,
        thresholds: Thresholds,
        counted: Callable[[str, str], None] = lambda _event, _outcome: None,
    ) -> None:
        self.store, self.webhook, self.thresholds, self.counted = store, webhook, thresholds, counted
        self._posts: ThreadPoolExecutor | None = None  # made at the first alert, ended by close()
        self._pending: list[Future[None]] = []
        self._lock = threading.Lock()  # the web's threads raise alerts too

    # --- the conditions -------------------------------------------------------------------

    def sources(self, sources: Sequence[SourceHealth]) -> None:
        """After an ingest: each part failing `source_failures` runs in a row alerts once; a
        part read again clears."""
        for source in sources:
            for part in source.parts:
                condition = f"source\x00{source.name}\x00{part.scope}"
                if part.failures == 0:
                    self._clear(condition)
                elif part.failures >= self.thresholds.source_failures:
                    where = source.name if part.scope == WHOLE_SOURCE else f"{source.name} ({part.scope})"
                    lines = [f"{where} failed {part.failures} runs in a row", f"error: {part.last_error or '?'}"]
                    lines += [f"URL: {part.last_error_url}"] if part.last_error_url else []
                    lines += [f"hint: {part.last_hint}"] if part.last_hint else []
                    lines.append("`publisher status` shows every source")
                    details = {"source": source.name, "part": part.scope, "failures": part.failures,
                               "error": part.last_error, "url": part.last_error_url}  # fmt: skip
                    self._raise(condition, Alert("source_failing", f"source {where} failing", tuple(lines), details))

    def digest_paused(self, key: str, reason: str) -> None:
        lines = (f"digest {key} paused: {reason}", "fix the cause, then `publisher digest resume`")
        self._raise(f"paused\x00{key}", Alert("digest_paused", f"digest {key} paused", lines, {"digest": key}))

    def digest_resumed(self, key: str) -> None:
        self._clear(f"paused\x00{key}")

    def digest_rates(self, rates: DigestRates) -> None:
        """After mail events: a digest whose hard bounces or complaints crossed their share."""
        if rates.sent < self.thresholds.min_sent:
            return
        judged = (("bounce_rate", "hard bounces", rates.bounced, self.thresholds.bounce_rate),
                  ("complaint_rate", "complaints", rates.complained, self.thresholds.complaint_rate))  # fmt: skip
        for event, what, count, limit in judged:
            condition = f"{event}\x00{rates.key}"
            share = count / rates.sent
            if share < limit:
                self._clear(condition)
                continue
            said = f"digest {rates.key}: {count} {what} of {rates.sent} sent ({share:.2%}; the limit is {limit:.2%})"
            lines = (said, "`publisher bounces list` shows them; check the list's sign-up and the sending domain")
            details = {"digest": rates.key, "sent": rates.sent, "count": count, "rate": share, "limit": limit}
            self._raise(condition, Alert(event, f"digest {rates.key}: {what} at {share:.2%}", lines, details))

    # --- sending --------------------------------------------------------------------------

    def _raise(self, condition: str, alert: Alert) -> None:
        try:
            raised = self.store.raise_alert(condition, json.dumps({"event": alert.event, "title": alert.title}))
        except Exception as exc:  # noqa: BLE001 - an alert never fails the work that raised it
            log.warning("alert %r: the store could not keep it, so it is not sent: %s", alert.title, exc)
            return
        if raised:
            with self._lock:
                if self._posts is None:
                    self._posts = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publisher-alert")
                self._pending = [f for f in self._pending if not f.done()]
                self._pending.append(self._posts.submit(self._post, condition, alert))

    def _clear(self, condition: str) -> None:
        try:
            self.store.clear_alert(condition)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not clear an alert's condition: %s", exc)

    def _post(self, condition: str, alert: Alert) -> None:
        try:
            self.webhook.post(alert)
        except Exception as exc:  # noqa: BLE001 - an alert never fails the work that raised it
            log.warning("alert %r not sent (tried again at the next check): %s", alert.title, exc)
            self.counted(alert.event, "failed")
            self._clear(condition)
            return
        log.info("alert sent: %s", alert.title)
        self.counted(alert.event, "sent")

    def close(self) -> None:
        """Wait for the alerts in flight (each is bounded by the webhook's timeout)."""
        with self._lock:
            pending, posts, self._pending, self._posts = self._pending, self._posts, [], None
        wait(pending, timeout=self.webhook.timeout * 2 + 1)
        if posts is not None:
            posts.shutdown(wait=False)


def _without_url(reason: str, url: str) -> str:
    """`reason` with every trace of the webhook's path and query cut out: a robot's token is in
    one of them (DingTalk's and WeCom's query, Slack's or Feishu's path), and requests' messages
    quote the URL as sent, percent-encoded (`url: /robot/send?access_token=…`)."""
    reason = re.sub(r"url: \S+", "url: …", reason)
    parts = urlsplit(url)
    try:
        sent = urlsplit(requests.Request("POST", url).prepare().path_url)
    except requests.RequestException:
        sent = parts
    pieces = {parts.path, parts.query, sent.path, sent.query, *parts.path.split("/"), *sent.path.split("/")}
    for secret in sorted(pieces, key=len, reverse=True):
        if len(secret) >= 8:
            reason = reason.replace(secret, "…")
    return reason
