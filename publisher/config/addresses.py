"""The addresses a configuration holds, each checked on its own: absolute http(s) URLs, URLs
on this machine, mailboxes, listen addresses. `is_loopback`, `mailbox` and `listen_address`
serve the code that uses those values too."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any
from urllib.parse import urlsplit

import idna
from pydantic import AfterValidator

from ..text import absolute_url


def http_url(key: str, value: str, example: str) -> list[tuple[str, str, str]]:
    """The problem at `key` when `value` is not an absolute http(s) URL, with `example` as the fix."""
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.hostname:
        return []
    return [(key, f"{value!r} is not an absolute http(s) URL", f'write it like "{example}"')]


def ascii_url(value: str) -> str:
    """A configured URL as every page and mail carries it: non-ASCII percent-encoded once, as
    the sanitiser encodes an article's links (text.absolute_url), so that converting a digest
    to the reader's script (OpenCC runs over the whole rendered mail) can never change a
    link: `https://www.example.org/新闻动态/` would become `.../新聞動態/`, a page that is not
    there. A host name in Chinese becomes its IDNA (punycode) form. A value that is no http(s)
    URL is left as written for the checks to name."""
    parts = urlsplit(value.strip())
    if value.isascii() or parts.scheme not in ("http", "https"):
        return value
    host = parts.hostname or ""
    if not host.isascii():
        try:
            ascii_host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return value
        parts = parts._replace(netloc=parts.netloc.replace(host, ascii_host))
    encoded = absolute_url(parts.geturl(), None)
    return encoded if encoded is not None and encoded.isascii() else value


ConfiguredUrl = Annotated[str, AfterValidator(ascii_url)]  # a settings field holding a URL readers see


def web_origin(url: str) -> str | None:
    """The origin (`scheme://host[:port]`, lower case, an IDN host in punycode, default port
    dropped) of an absolute http(s) URL; None for anything else. What browsers send as
    `Origin`, so the two compare."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host or parts.username is not None or parts.password is not None:
        return None
    if any(c in host for c in " /\\@"):
        return None
    if not host.isascii():  # browsers send an IDN host as punycode: `新闻.中国` is `xn--efvy88h.xn--fiqs8s`
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            return None
    host = f"[{host}]" if ":" in host else host
    shown = f":{port}" if port is not None and port != {"http": 80, "https": 443}[scheme] else ""
    return f"{scheme}://{host}{shown}"


def listen_address(text: str) -> tuple[str, int]:
    """(host, port) of `host:port` or `[v6]:port`; ValueError saying what is wrong."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or any(c in host for c in "/[] "):
        raise ValueError(f"{text!r} has no host")
    return host, int(port)


def is_loopback(url: str) -> bool:
    """http://127.0.0.1:8080 and the like: a trial on one machine, where https is not needed.
    The host must be a loopback IP address or exactly `localhost`: a name such as
    `127.0.0.1.nip.io` resolves wherever its owner likes."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # an unbalanced [ in the host
        return False
    if parts.scheme not in ("http", "https"):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mailbox(text: str) -> Any:
    """`Name <addr>` or `addr` as an email.headerregistry.Address, None when it is not one."""
    from email.headerregistry import Address
    from email.utils import parseaddr

    name, addr = parseaddr(text)
    if "\r" in text or "\n" in text or not addr or addr.count("@") != 1:
        return None
    try:
        return Address(name, addr_spec=addr)
    except (ValueError, IndexError):
        return None
