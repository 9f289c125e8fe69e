"""HTTP mail APIs (Mailgun, SendGrid, Postmark, Resend; Amazon SES in ses.py, Alibaba Cloud
DirectMail in aliyun.py): one mapper per provider (api_providers.py), one sender, here.

A mapper turns a Message into the provider's documented request and reads its message id from
the answer. The sender posts it with a timeout and tries again only when the provider cannot
have taken the message (`_unsent`: the request could not be made, or no connection: refused,
DNS, a connect timeout, a failed TLS handshake), a 429 (waiting out Retry-After, capped) or a
503. Anything else may come after the provider took it (a timeout or a drop once the request
went, an answer that cannot be read, another 5xx): that is `uncertain` (never sent again by
itself), unless the provider honours an idempotency key (Resend's Idempotency-Key, the
delivery's Message-ID, kept 24 hours), where trying again is safe. SES and DirectMail sign
each attempt afresh and read their own error codes; `Refusal.from_status` reads the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.exceptions

from ..mail import Message
from . import Sent, TransportError
from .api_providers import NOT_TAKEN, PROVIDERS, Provider, Refusal, Request


class HttpApiTransport:
    """Sends through one provider's API. `sleep` is injectable so tests need not wait."""

    def __init__(
        self,
        provider: str | Provider,
        api_key: str,
        base_url: str | None = None,
        options: dict[str, str] | None = None,
        timeout: float = 20.0,
        attempts: int = 4,
        retry_after_cap: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.provider = provider if isinstance(provider, Provider) else PROVIDERS[provider]
        self.api_key = api_key
        self.base_url = (base_url or self.provider.base_url).rstrip("/")
        self.options = options or {}
        self.timeout, self.attempts, self.retry_after_cap, self.sleep = timeout, attempts, retry_after_cap, sleep
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "publisher (+https://github.com/publisher-feeds/publisher)"
        self.session.mount("https://", _TellingAdapter())

    def send(self, message: Message) -> Sent:
        response = self.post(self.provider.build(message, self.api_key, self.options))
        return Sent(provider_id=self.provider.message_id(response))

    def post(self, request: Request, *, key_outlives: bool = True) -> requests.Response:
        """Post `request` (signed afresh for each attempt), trying again only where the
        provider cannot have taken it (see the module's docstring): its 2xx answer, read whole,
        or TransportError. `key_outlives`: a later call for the same messages carries the same
        idempotency key (a single message's Message-ID); False for a batch's key, which the next
        call makes up anew from other members: then a call that an attempt may have delivered
        ends `uncertain` once its attempts run out, never retryable."""
        url = f"{self.base_url}{request.path}"
        maybe_taken = False  # an attempt may have reached the provider (retried under its key)
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            sign = self.provider.sign
            signed = request if sign is None else sign(request, url, self.api_key, self.options)
            data = signed.body if signed.body is not None else signed.data
            response: requests.Response | None = None
            try:
                response = self.session.post(
                    url, headers=signed.headers, json=signed.json, data=data, files=signed.files, auth=signed.auth,
                    timeout=self.timeout, stream=True,
                )  # fmt: skip
                response.content  # noqa: B018  read whole here: a broken answer is still an answer
            except requests.RequestException as exc:
                if response is not None:
                    response.close()
                failure = self._failure(url, exc, response)
                maybe_taken = maybe_taken or not (response is None and _unsent(exc))
                if failure.retryable and not last:
                    self.sleep(min(2.0 ** (attempt - 1) / 2, self.retry_after_cap))
                    continue
                raise self._lost_key(failure, maybe_taken and not key_outlives) from exc
            if response.ok:
                return response
            refusal = self._refusal(response)
            taken_here = refusal.retryable and not refusal.throttled and response.status_code not in NOT_TAKEN
            maybe_taken = maybe_taken or taken_here or refusal.uncertain
            if refusal.retryable and not last:
                backoff = min(2.0 ** (attempt - 1) / 2, self.retry_after_cap)
                self.sleep(self._retry_after(response, attempt) if refusal.throttled else backoff)
                continue
            raise self._lost_key(self._error(response, refusal), maybe_taken and not key_outlives)
        raise AssertionError("unreachable")  # pragma: no cover

    def _lost_key(self, error: TransportError, lost: bool) -> TransportError:
        """`error` as uncertain when an attempt may have been taken and its idempotency key
        dies with this call (`post`'s key_outlives): another call would send it again."""
        if not lost or error.uncertain:
            return error
        return TransportError(
            f"{error.message}; an earlier attempt may have been taken under this call's idempotency key",
            "it may have been sent: `digest failures` lists it, `digest retry --all` sends it again",
            retryable=False,
            uncertain=True,
        )

    def _failure(self, url: str, exc: requests.RequestException, response: requests.Response | None) -> TransportError:
        """A request that raised: certainly unsent (retryable) only by `_unsent` and before an
        answer; else uncertain, or retryable where the provider honours an idempotency key."""
        name = self.provider.name
        if response is None and _unsent(exc):
            return TransportError(f"{name}: could not send to {url}: {exc}", "nothing was sent", retryable=True)
        if response is None:
            what = f"no answer from {url} after the request was sent"
        else:
            what = f"HTTP {response.status_code} from {url}, but its answer could not be read"
        if self.provider.idempotent:
            hint = "the delivery's idempotency key makes another try safe"
            return TransportError(f"{name}: {what}: {exc}", hint, retryable=True)
        return TransportError(
            f"{name}: {what}: {exc}",
            "it may have been sent: `digest failures` lists it, `digest retry --all` sends it again",
            retryable=False,
            uncertain=True,
        )

    def close(self) -> None:
        self.session.close()

    def _retry_after(self, response: requests.Response, attempt: int) -> float:
        value = response.headers.get("Retry-After", "")
        seconds: float
        if value.isdigit():
            seconds = float(value)
        else:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                seconds = 2.0 ** (attempt - 1)
        return max(0.0, min(seconds, self.retry_after_cap))

    def _refusal(self, response: requests.Response) -> Refusal:
        """The provider's reading of an error answer, else its HTTP status's (Refusal.from_status)."""
        read = self.provider.refusal(response) if self.provider.refusal is not None else None
        if read is not None:
            return read
        return Refusal.from_status(response.status_code, idempotent=self.provider.idempotent)

    def _error(self, response: requests.Response, refusal: Refusal) -> TransportError:
        status = response.status_code
        detail = response.text[:300].strip()
        hint = refusal.hint or {
            401: "check the API key's environment variable",
            403: "check the API key's permissions and the sending domain",
        }.get(status, _HINTS.get((refusal.uncertain, refusal.retryable), "the provider may try it later"))
        code = f" {refusal.code}" if refusal.code else ""
        return TransportError(
            f"{self.provider.name}: HTTP {status}{code} from {response.url}: {detail}",
            hint,
            retryable=refusal.retryable,
            uncertain=refusal.uncertain,
            broken=refusal.broken,
            bounced=refusal.bounced,
        )


_HINTS = {  # (uncertain, retryable)
    (True, False): "the provider may have taken it: `digest retry --all` sends it again, perhaps a second copy",
    (False, True): "the provider asks to try later",
    (False, False): "the provider will not take this message",
}


_e = requests.exceptions  # raised before a request is made at all, or before it connected:
_NOT_MADE = (_e.MissingSchema, _e.InvalidSchema, _e.InvalidURL, _e.InvalidHeader, _e.URLRequired, _e.InvalidJSONError)


def _unsent(exc: requests.RequestException) -> bool:
    """True only when the request cannot have reached the provider: it could not be made (an
    invalid URL or header) or connected (refused, DNS, a connect timeout, a failed TLS handshake:
    HandshakeFailed). Anything else (a read timeout, a reset, a TLS error once connected) may
    come after the provider took it."""
    if isinstance(exc, (*_NOT_MADE, _e.ConnectTimeout)):
        return True
    if isinstance(exc, _e.ConnectionError):  # SSLError is one too
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)  # requests wraps urllib3's MaxRetryError
        return isinstance(reason, (urllib3.exceptions.NewConnectionError, HandshakeFailed))  # DNS is NewConnection
    return False


class HandshakeFailed(urllib3.exceptions.SSLError):
    """A TLS connection that was never made (the handshake failed or timed out), told apart from
    a TLS error while the request or its answer went, which urllib3 reports alike."""


class _TellingHTTPSConnection(urllib3.connection.HTTPSConnection):
    def connect(self) -> None:
        try:
            super().connect()
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError):
            raise
        except Exception as exc:  # nothing of the request was written yet
            raise HandshakeFailed(f"TLS connection to {self.host} failed: {exc}") from exc


class _TellingHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _TellingHTTPSConnection


class _TellingAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose HTTPS connections raise HandshakeFailed when they cannot be made."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": urllib3.HTTPConnectionPool, "https": _TellingHTTPSPool}
