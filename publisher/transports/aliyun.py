"""Alibaba Cloud DirectMail (邮件推送): `SingleSendMail`, API version 2015-11-23, one recipient a
call, signed with ACS3-HMAC-SHA256 (Alibaba Cloud's V3 signature).

DirectMail writes the MIME itself from AccountName (our From address), FromAlias, Subject,
HtmlBody and TextBody. Its `Headers` parameter takes Message-ID, List-Unsubscribe and
List-Unsubscribe-Post, which replace its own, and names starting with X-User-Notify-, which it
passes on to EventBridge with the delivery and bounce events: so X-Publisher-Delivery travels as
X-User-Notify-Publisher-Delivery, and an event finds its delivery by it, by the EnvId kept as
provider id (the events' env_id) or by the address. Other headers (List-Id) are dropped.

Why V3 and not the RPC signature (HMAC-SHA1, SignatureVersion 1.0): Alibaba Cloud recommends
V3; it is HMAC-SHA256 over a canonical request that includes a hash of the body, so the
parameters travel as a form body (HtmlBody up to megabytes, not 80 KB of query string) and
are still signed; and it has the shape of AWS SigV4, so the two signers here read alike.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import requests

from ..mail import Message, addr_spec
from .api_providers import Provider, Refusal, Request, json_field, json_object

ALGORITHM = "ACS3-HMAC-SHA256"
ACTION, VERSION = "SingleSendMail", "2015-11-23"
# DirectMail's public endpoints (its API reference, "Endpoints"); cn-hangzhou has no region part.
ENDPOINTS = {"cn-hangzhou": "dm.aliyuncs.com"}


def endpoint(region: str) -> str:
    return "https://" + ENDPOINTS.get(region, f"dm.{region}.aliyuncs.com")


def percent_encode(text: str) -> str:
    """RFC 3986: everything but A-Z a-z 0-9 - _ . ~ as %XX of its UTF-8 bytes (space is %20)."""
    return quote(text, safe="-_.~")


def authorization(method: str, path: str, query: str, headers: dict[str, str], access_key_id: str, secret: str) -> str:
    """The Authorization header: every header given is signed (host, content-type and the
    x-acs-* ones, among them x-acs-content-sha256, the hex SHA-256 of the body)."""
    lines = sorted((name.lower(), value.strip()) for name, value in headers.items())
    signed = ";".join(name for name, _ in lines)
    canonical = "\n".join(
        [
            method.upper(),
            quote(path or "/", safe="/-_.~"),
            query,
            "".join(f"{name}:{value}\n" for name, value in lines),
            signed,
            dict(lines)["x-acs-content-sha256"],
        ]
    )
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"
    signature = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Credential={access_key_id},SignedHeaders={signed},Signature={signature}"


def _headers(message: Message) -> dict[str, str]:
    """What DirectMail's `Headers` takes: the standard three, and ours as X-User-Notify-*."""
    list_headers = message.list_headers
    out = {
        "Message-ID": message.message_id,
        "List-Unsubscribe": list_headers["List-Unsubscribe"],
        "List-Unsubscribe-Post": list_headers["List-Unsubscribe-Post"],
    }
    for name, value in message.envelope.extra_headers:  # X-Publisher-Delivery, X-Publisher-Test
        out["X-User-Notify-" + name.removeprefix("X-")] = value
    return out


def _build(message: Message, secret: str, options: dict[str, str]) -> Request:
    """The SingleSendMail parameters as a form body, sorted, percent-encoded."""
    e = message.envelope
    params = {
        "AccountName": addr_spec(message.envelope.sender),  # a sender address set up in the DirectMail console
        "AddressType": "1",  # 1: that address, not a random one
        "ToAddress": message.recipient,
        "Subject": e.subject,
        "HtmlBody": message.html,
        "TextBody": message.text,
        "ReplyToAddress": "false",  # not the console's reply-to: ours, if any, below
        "ClickTrace": "0",  # no tracking
        "UnSubscribeLinkType": "disabled",  # our one-click link is the only one
        "Headers": json.dumps(_headers(message), ensure_ascii=False, separators=(",", ":")),
    }
    if e.sender.display_name:
        params["FromAlias"] = e.sender.display_name
    if e.reply_to is not None:
        params["ReplyAddress"] = addr_spec(e.reply_to)
        if e.reply_to.display_name:
            params["ReplyAddressAlias"] = e.reply_to.display_name
    form = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-acs-action": ACTION,
        "x-acs-version": VERSION,
    }
    return Request(path="/", headers=headers, body=form.encode("utf-8"))


def _sign(request: Request, url: str, secret: str, options: dict[str, str]) -> Request:
    """host, x-acs-date (now), a fresh nonce, the body's hash, the STS token if any, signed."""
    parts = urlsplit(url)
    headers = {
        **request.headers,
        "host": parts.netloc,
        "x-acs-date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": uuid.uuid4().hex,
        "x-acs-content-sha256": hashlib.sha256(request.body or b"").hexdigest(),
    }
    if options.get("security_token"):
        headers["x-acs-security-token"] = options["security_token"]
    auth = authorization("POST", parts.path, "", headers, options["access_key_id"], secret)
    return replace(request, headers={**headers, "Authorization": auth})


_CREDENTIALS = "check the AccessKey id and secret in the variables named by mail.aliyun.*_env"
_BROKEN = {
    "SignatureDoesNotMatch": _CREDENTIALS,
    "IncompleteSignature": _CREDENTIALS,
    "InvalidAccessKeyId.NotFound": _CREDENTIALS,
    "InvalidAccessKeyId.Inactive": "the AccessKey is disabled: enable it or make another in the RAM console",
    "InvalidSecurityToken.Expired": "the STS token has expired: renew the temporary credentials",
    "InvalidTimeStamp.Expired": "this machine's clock is off by more than 15 minutes: set it right (NTP)",
    "Forbidden.RAM": "give the RAM user the AliyunDirectMailFullAccess policy (or dm:SingleSendMail)",
    "InvalidMailAddress.NotFound": "the From address is not a sender address in the DirectMail console "
    "of this region: add it there, or change digest.sender",
    "InvalidMailAddressStatus.Malformed": "the sender address is frozen or not verified in the DirectMail console",
    "InvalidSendMail.Spam": "DirectMail refuses this account's mail (its status, frequency or quota): "
    "see the DirectMail console",
    "InvalidFromAlias.Malformed": "DirectMail takes a sender name of at most 15 characters: shorten digest.sender's",
}
_THROTTLED = {"Throttling", "Throttling.User", "Throttling.Api", "SignatureNonceUsed"}


def _refusal(response: requests.Response) -> Refusal | None:
    code = str(json_object(response).get("Code") or "")
    if not code:
        return None
    if code in _THROTTLED:
        return Refusal(code, retryable=True, throttled=True, hint="DirectMail's request rate: it waits and tries again")
    if code in _BROKEN:
        return Refusal(code, retryable=False, broken=True, hint=_BROKEN[code])
    if code == "InvalidToAddress.Spam":  # the address is on DirectMail's list of invalid ones
        return Refusal(code, retryable=False, bounced=True, hint="DirectMail knows this address as invalid")
    return Refusal.from_status(response.status_code, code)  # another code: by its status, named in the error


PROVIDER = Provider(
    "aliyun",
    endpoint("cn-hangzhou"),
    _build,
    json_field("EnvId", "RequestId"),  # EnvId: what its events carry
    sign=_sign,
    refusal=_refusal,
)
