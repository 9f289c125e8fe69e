"""Amazon SES v2: `SendEmail` with the whole MIME message as its Raw content, signed with AWS
Signature Version 4.

The message goes out as built here, so List-Unsubscribe, List-Id, our Message-ID and the
X-Publisher-Delivery header reach the reader and come back in SES's bounce and complaint
notifications (with "include original headers" on). SES answers with its MessageId, kept as the
delivery's provider id. SigV4 is written out from AWS's description of it (create a canonical
request, a string to sign, a signing key derived from the date, region and service) and checked
against AWS's published test suite and botocore's signer (tests/test_ses.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from ..mail import Message, addr_spec
from .api_providers import Provider, Refusal, Request, json_field, json_object

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "ses"  # the signing name of SES v2's endpoint, email.<region>.amazonaws.com
PATH = "/v2/email/outbound-emails"


def endpoint(region: str) -> str:
    return f"https://email.{region}.amazonaws.com"


# --- Signature Version 4 -----------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str = ""  # temporary credentials (STS) only


def _encode(text: str) -> str:
    """RFC 3986 percent-encoding of everything but the unreserved characters, as SigV4 wants."""
    return quote(text, safe="-_.~")


def canonical_request(
    method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], payload: bytes
) -> tuple[str, str]:
    """(canonical request, signed header names). Every header given is signed: names lowercased
    and sorted, values trimmed with inner runs of spaces made one."""
    lines = sorted((name.lower(), " ".join(value.split())) for name, value in headers.items())
    signed = ";".join(name for name, _ in lines)
    request = "\n".join(
        [
            method.upper(),
            quote(path or "/", safe="/-_.~"),
            "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(query)),
            "".join(f"{name}:{value}\n" for name, value in lines),
            signed,
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    return request, signed


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def authorization(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    payload: bytes,
    credentials: Credentials,
    region: str,
    service: str,
    when: datetime,
) -> str:
    """The Authorization header for a request whose headers already hold Host and X-Amz-Date
    (and X-Amz-Security-Token with temporary credentials)."""
    request, signed = canonical_request(method, path, query, headers, payload)
    day = when.astimezone(UTC).strftime("%Y%m%d")
    scope = f"{day}/{region}/{service}/aws4_request"
    digest = hashlib.sha256(request.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{amz_date(when)}\n{scope}\n{digest}"
    key = _hmac(f"AWS4{credentials.secret_access_key}".encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"


def amz_date(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


# --- SendEmail ---------------------------------------------------------------------------------


def _build(message: Message, secret: str, options: dict[str, str]) -> Request:
    """POST /v2/email/outbound-emails: the raw message, base64, to this one recipient."""
    body: dict[str, Any] = {
        "FromEmailAddress": addr_spec(message.envelope.sender),
        "Destination": {"ToAddresses": [message.recipient]},
        "Content": {"Raw": {"Data": base64.b64encode(message.as_bytes()).decode("ascii")}},
    }
    if options.get("configuration_set"):
        body["ConfigurationSetName"] = options["configuration_set"]
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Request(path=PATH, headers={"Content-Type": "application/json"}, body=payload)


def _sign(request: Request, url: str, secret: str, options: dict[str, str]) -> Request:
    """Host, X-Amz-Date (now), the session token if any, and the Authorization over all of them."""
    parts = urlsplit(url)
    now = datetime.now(UTC)
    credentials = Credentials(options["access_key_id"], secret, options.get("session_token", ""))
    headers = {**request.headers, "Host": parts.netloc, "X-Amz-Date": amz_date(now)}
    if credentials.session_token:
        headers["X-Amz-Security-Token"] = credentials.session_token
    auth = authorization(
        "POST", parts.path, [], headers, request.body or b"", credentials, options["region"], SERVICE, now
    )
    return replace(request, headers={**headers, "Authorization": auth})


def error_code(response: requests.Response) -> tuple[str, str]:
    """(code, message) of an SES v2 error: the code in x-amzn-ErrorType (`Code:namespace`),
    else in the body's `__type` or `code`; the message in its `message`."""
    body = json_object(response)
    code = response.headers.get("x-amzn-ErrorType", "") or str(body.get("__type") or body.get("code") or "")
    code = code.split(":")[0].rsplit("#", 1)[-1]
    return code, str(body.get("message") or body.get("Message") or "")


_CREDENTIALS = "check the access key id and secret in the variables named by mail.ses.*_env, and the region"
_BROKEN = {
    # the key, its signature or its rights: nothing can go until the operator fixes them
    "SignatureDoesNotMatch": _CREDENTIALS,
    "InvalidSignatureException": _CREDENTIALS,
    "IncompleteSignature": _CREDENTIALS,
    "UnrecognizedClientException": _CREDENTIALS,
    "InvalidClientTokenId": _CREDENTIALS,
    "MissingAuthenticationToken": _CREDENTIALS,
    "ExpiredToken": "the session token has expired: renew the temporary credentials",
    "ExpiredTokenException": "the session token has expired: renew the temporary credentials",
    "AccessDeniedException": "give the key's IAM user ses:SendEmail (and ses:SendRawEmail) on the identity",
    "RequestExpired": "this machine's clock is off by more than 5 minutes: set it right (NTP)",
    "AccountSuspendedException": "SES has stopped this account's sending: see the SES console",
    "SendingPausedException": "sending is paused for the account or the configuration set: resume it in SES",
    "MailFromDomainNotVerifiedException": "verify the sending domain (and its MAIL FROM domain) in SES",
    "NotFoundException": "the configuration set named in mail.ses.configuration_set does not exist in this region",
    "LimitExceededException": "a sending quota of the account is used up: resume the digest when SES allows",
}
_THROTTLED = {"TooManyRequestsException", "ThrottlingException", "Throttling"}


def _refusal(response: requests.Response) -> Refusal | None:
    code, _message = error_code(response)
    if code in _THROTTLED:
        return Refusal(code, retryable=True, throttled=True, hint="SES's sending rate: it waits and tries again")
    if code in _BROKEN:
        return Refusal(code, retryable=False, broken=True, hint=_BROKEN[code])
    if code == "MessageRejected":
        hint = "SES refused this message (in the SES sandbox, every recipient must be a verified address)"
        return Refusal(code, retryable=False, hint=hint)
    if code:  # another code: judged by its status, and named in the error
        return Refusal.from_status(response.status_code, code)
    return None


PROVIDER = Provider(
    "ses", endpoint("us-east-1"), _build, json_field("MessageId"), sign=_sign, refusal=_refusal
)  # fmt: skip
