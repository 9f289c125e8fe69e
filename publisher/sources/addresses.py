"""Where a web source may connect: public addresses only, checked as the socket connects.

A redirect, a link on a list page or a DNS answer that changes between two lookups (rebinding)
could otherwise make publisher read an intranet page or a cloud metadata service and publish
it. So every connection a web source opens resolves the host itself, checks each address, and
connects to exactly the address it checked; TLS still verifies the certificate (and sends SNI)
for the host name. `allow_private` (an intranet CMS) lifts the check, never the host list.

`AddressGuard.refuse` and `.resolve` exist for tests (a second loopback address taken as
private, a test host name); the configuration sets `allow_private` only.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SocketAddress = tuple[Any, ...]
Resolve = Callable[[str, int], list[tuple[int, SocketAddress]]]  # host, port -> (family, address)

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def why_refused(address: IPAddress) -> str | None:
    """The kind of non-public address this is (loopback, private, ...); None for a public one.
    An IPv4 address inside an IPv6 one (mapped, 6to4, NAT64) is judged as the IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            return why_refused(inner)
    checks = (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        # Python 3.11 calls the deprecated site-local fec0::/10 global.
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("multicast", address.is_multicast),
        ("shared (carrier-grade NAT)", address in _SHARED),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-public", not address.is_global),
    )
    return next((kind for kind, hit in checks if hit), None)


def private_host(url: str) -> str | None:
    """What the URL's host is when it is a non-public IP address or `localhost` ("a loopback
    address" ...); None for a name or a public address (names are checked as they connect).
    For a URL the configuration names (a webhook, a WebSub hub), checked before any request."""
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return "a loopback address"
    try:
        kind = why_refused(ipaddress.ip_address(host))
    except ValueError:
        return None
    return f"a {kind} address" if kind else None


def resolve_host(host: str, port: int) -> list[tuple[int, SocketAddress]]:
    return [(family, address) for family, _, _, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class AddressRefused(Exception):
    """A host resolved to no address a source may reach. Not an OSError, so never retried."""

    def __init__(self, host: str, address: str, kind: str) -> None:
        super().__init__(f"{host} resolves to {address}, a {kind} address")
        self.host, self.address, self.kind = host, address, kind


class OutOfTime(Exception):
    """A connection asked for after the request's deadline passed. Not retried either."""


@dataclass(frozen=True)
class AddressGuard:
    allow_private: bool = False
    refuse: Callable[[IPAddress], str | None] = why_refused
    resolve: Resolve = resolve_host

    def addresses(self, host: str, port: int) -> list[tuple[int, SocketAddress]]:
        """The host's addresses a source may connect to; AddressRefused when there are none."""
        found = self.resolve(host.strip("[]"), port)
        if self.allow_private:
            return found
        allowed, refused = [], None
        for family, address in found:
            ip = ipaddress.ip_address(str(address[0]).split("%")[0])
            kind = self.refuse(ip)
            if kind is None:
                allowed.append((family, address))
            elif refused is None:
                refused = AddressRefused(host, str(ip), kind)
        if not allowed and refused is not None:
            raise refused
        return allowed

    def connect(self, host: str, port: int, timeout: float | None, options: list[Any] | None) -> socket.socket:
        """A socket connected to an address of `host` that passed the check, tried in turn."""
        error: OSError | None = None
        for family, address in self.addresses(host, port):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                for option in options or ():
                    sock.setsockopt(*option)
                sock.settimeout(timeout)
                sock.connect(address)
                return sock
            except OSError as exc:
                error = exc
                sock.close()
        raise error or OSError(f"{host} has no address")


PUBLIC_ONLY = AddressGuard()


class _Guarded:
    """What the connections of one adapter share: the guard, and the adapter (to be cut)."""

    adapter: GuardedAdapter

    def _new_conn(self) -> socket.socket:
        if self.adapter.expired:
            raise OutOfTime()
        conn: Any = self
        try:
            sock = self.adapter.guard.connect(conn._dns_host, conn.port, conn.timeout, conn.socket_options)
        except OSError as exc:  # as urllib3 does, so that it retries as before
            from urllib3.exceptions import NewConnectionError

            raise NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from exc
        # The socket itself, not the connection: http.client hands it to the response and
        # forgets it when the answer ends with the connection (no Content-Length).
        self.adapter.sockets.add(sock)
        return sock


class _HTTPConnection(_Guarded, HTTPConnection):
    pass


class _HTTPSConnection(_Guarded, HTTPSConnection):
    _handshake: socket.socket | None = None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        # TLS takes the socket over (the object given to it is left empty); this copy of its
        # descriptor lets a deadline cut the handshake, and is closed once TLS holds it.
        self._handshake = sock.dup()
        self.adapter.sockets.add(self._handshake)
        return sock

    def connect(self) -> None:
        try:
            super().connect()
        finally:
            if self._handshake is not None:
                self._handshake.close()
                self._handshake = None
        if self.sock is not None:
            self.adapter.sockets.add(self.sock)


class _AdapterPool:
    """A pool whose connections know their adapter (its guard, its sockets)."""

    adapter: GuardedAdapter

    def _new_conn(self) -> Any:
        conn: Any = super()._new_conn()  # type: ignore[misc]
        conn.adapter = self.adapter
        return conn


class _HTTPPool(_AdapterPool, HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(_AdapterPool, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _PoolManager(PoolManager):
    def __init__(self, adapter: GuardedAdapter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.adapter = adapter
        self.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def _new_pool(self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None) -> Any:
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.adapter = self.adapter  # type: ignore[attr-defined]
        return pool


_S = TypeVar("_S", bound=requests.Session)


class GuardedAdapter(HTTPAdapter):
    """requests' adapter whose connections go through `guard`, and can be cut at a deadline."""

    def __init__(self, guard: AddressGuard, **kwargs: Any) -> None:
        self.guard = guard
        self.sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()  # open or not
        self.expired = False  # set by `cut`: no new connection until `reset`
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        self.poolmanager = _PoolManager(self, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs)

    def reset(self) -> None:
        self.expired = False

    def cut(self) -> None:
        """From another thread: end every connection's wait now (a blocked read sees the end)."""
        self.expired = True
        for sock in list(self.sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # closed already
                pass

    @contextmanager
    def cut_after(self, seconds: float) -> Iterator[None]:
        """The block's requests through this adapter, their connections cut after `seconds` in
        all (not per read); `expired` then says so."""
        timer = threading.Timer(seconds, self.cut)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()


def guarded(session: _S, adapter: GuardedAdapter) -> _S:
    """`session` with every connection through `adapter`'s guard, and nothing from the
    environment (a proxy's connection, `HTTP(S)_PROXY`, would pass the guard unseen)."""
    session.trust_env = False
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
