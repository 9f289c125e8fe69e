"""What the subscribe form does: its budgets (per mailbox, per client network, mails per day),
and sign-ups kept as unconfirmed requests until the owner of the address follows the link.

Anybody can type any address into the form, so nothing it sends changes what a reader sees
before that reader confirms: a request is stored apart from the subscriber (store.signups),
the confirmation link names the request, and only following it writes the request's address
spelling, name and categories into the subscriber's row.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from .store import Budget, Store

HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SignupLimits:
    """`[web]`'s limits: requests per mailbox and per client network an hour, mails per mailbox a day."""

    per_address: int
    per_client: int
    mails_per_day: int


def mailbox_key(address: str) -> str:
    """The mailbox an address reaches, for counting only: case folded and a `+tag` dropped, so
    `Reader+1@Example.com` and `reader+2@example.com` are one mailbox. Never an address to send to."""
    local, _at, domain = address.rpartition("@")
    return f"{local.split('+', 1)[0] or local}@{domain}".casefold()


def client_network(client: str) -> str:
    """The network a client address belongs to: its IPv4 /24 or IPv6 /64 (an IPv4-mapped IPv6
    address counts as IPv4). A client that is not an IP address (a unix socket) is itself."""
    try:
        ip = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return client
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def allow_signup(store: Store, address: str, client: str, limits: SignupLimits, now: datetime) -> bool:
    """Whether the form may take (and mail) one more request for `address` from `client`,
    counting it when it may. Every allowed request sends one e-mail, so the mailbox's count
    over a day is the mails it was sent."""
    mailbox, network = mailbox_key(address), client_network(client)
    budgets = [
        Budget("client", network, limits.per_client, HOUR),
        Budget("address", mailbox, limits.per_address, HOUR),
        Budget("address", mailbox, limits.mails_per_day, DAY),
    ]
    return store.spend_budgets(budgets, now, keep=DAY)
