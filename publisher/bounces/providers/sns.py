"""Amazon SNS messages over HTTPS: the signature, the signing certificate, the confirmation.

As docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html says: the
certificate is fetched only from `https://sns.<region>.amazonaws.com(.cn)/SimpleNotificationService-….pem`
(checked here, whatever fetches it; the region must look like one, so no S3 bucket passes);
the certificate's own names are not checked (what SNS's carries is not documented: see
`SNS_HOST`); the signature is RSA PKCS#1 v1.5 over the message's fields as `name\\nvalue\\n` in a
fixed order, SHA1 for SignatureVersion 1 and SHA256 for 2.
A subscription is confirmed by a GET of its SubscribeURL, again only on an SNS host.

Fetching is a callable (`fetch(url) -> bytes`), by default `download` over verified TLS, so
tests serve the certificate from a loopback server; the host rule stays in `Certificates`
and in the door, where no fetcher can bypass it.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .base import Refused, Unavailable, text

# `sns.<region>.amazonaws.com(.cn)`, the region shaped as AWS names them (us-east-1,
# us-gov-west-1, us-iso-east-1, cn-north-1): a looser label would admit an S3 bucket named
# `sns` (sns.s3.amazonaws.com, sns.s3-external-1.amazonaws.com), which anyone can fill. The
# certificate's subject or SAN is not checked: AWS's guide once gave its SAN as the regional
# host, and users report it without the region (awsdocs/amazon-sns-developer-guide#7); the host
# rule and verified TLS to that host are what vouch for it.
SNS_HOST = re.compile(r"sns\.[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+\.amazonaws\.com(\.cn)?")
CERTIFICATE_LIMIT = 64 * 1024  # bytes; SNS's certificates are about 2 KB
_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


def check_sns_url(url: str, what: str, certificate: bool = False) -> str:
    """`url` when it is https on an Amazon SNS host (no user, no other port; a certificate's
    path `/SimpleNotificationService-….pem`), else Refused naming `what`."""
    parts = urlsplit(url)
    bad = (
        parts.scheme != "https"
        or not SNS_HOST.fullmatch(parts.netloc)  # the host alone: no user@, no :port
        or any(c.isspace() or c == "\\" for c in url)
        or (certificate and not re.fullmatch(r"/SimpleNotificationService-[A-Za-z0-9_-]+\.pem", parts.path))
    )
    if bad:
        raise Refused(f"{what} {url[:120]!r} is not on an Amazon SNS host (https://sns.<region>.amazonaws.com/)")
    return url


def download(url: str, timeout: float = 10.0, verify: bool | str = True, limit: int = CERTIFICATE_LIMIT) -> bytes:
    """GET `url` over verified TLS, no redirects, at most `limit` bytes; Unavailable on failure."""
    try:
        with requests.get(url, timeout=timeout, verify=verify, allow_redirects=False, stream=True) as response:
            if response.status_code != 200:
                raise Unavailable(f"{url}: HTTP {response.status_code}")
            body = response.raw.read(limit + 1, decode_content=True)
    except requests.RequestException as exc:
        raise Unavailable(f"{url}: {exc.__class__.__name__}: {exc}") from None
    if len(body) > limit:
        raise Unavailable(f"{url}: more than {limit} bytes")
    return bytes(body)


class Certificates:
    """SNS's signing keys by certificate URL: fetched once through `fetch`, kept while the
    certificate is valid (a handful of URLs at most)."""

    def __init__(self, fetch: Callable[[str], bytes] = download, clock: Callable[[], float] = time.time) -> None:
        self.fetch, self.clock = fetch, clock
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[rsa.RSAPublicKey, float]] = {}

    def key(self, url: str) -> rsa.RSAPublicKey:
        check_sns_url(url, "SigningCertURL", certificate=True)
        now = self.clock()
        with self._lock:
            known = self._keys.get(url)
        if known is not None and known[1] > now:
            return known[0]
        try:
            certificate = x509.load_pem_x509_certificate(self.fetch(url))
        except ValueError:
            raise Unavailable(f"{url} is not a PEM certificate") from None
        start, end = certificate.not_valid_before_utc.timestamp(), certificate.not_valid_after_utc.timestamp()
        if not start <= now <= end:
            raise Refused(f"the signing certificate {url} is not valid now")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise Refused(f"the signing certificate {url} has no RSA key")
        with self._lock:
            if len(self._keys) >= 16:
                self._keys.clear()
            self._keys[url] = (key, end)
        return key


def string_to_sign(message: dict[str, Any]) -> bytes:
    """The bytes SNS signs: each present field of the message's type, in order, `name\\nvalue\\n`."""
    fields = _FIELDS[text(message.get("Type"))]
    return "".join(f"{name}\n{message[name]}\n" for name in fields if message.get(name) is not None).encode()


def verify_signature(message: dict[str, Any], certificates: Certificates) -> None:
    """Refused unless the message's Signature is SNS's over it (SignatureVersion 1 or 2)."""
    version = text(message.get("SignatureVersion"))
    if version not in _HASHES:
        raise Refused(f"SignatureVersion {version[:10]!r} is not 1 or 2")
    try:
        signature = base64.b64decode(text(message.get("Signature")), validate=True)
    except binascii.Error:
        raise Refused("Signature is not base64") from None
    key = certificates.key(text(message.get("SigningCertURL")))
    try:
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), _HASHES[version]())
    except InvalidSignature:
        raise Refused("the signature does not match the message") from None


def sns_time(message: dict[str, Any]) -> float:
    """The message's Timestamp in epoch seconds; Refused when it has none."""
    try:
        moment = datetime.fromisoformat(text(message.get("Timestamp")))
    except ValueError:
        raise Refused("Timestamp is missing or not an ISO 8601 time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def confirm_subscription(url: str) -> None:
    """Confirm an SNS subscription: GET its SubscribeURL, which must be on an SNS host."""
    download(check_sns_url(url, "SubscribeURL"))
