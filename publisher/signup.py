"""What the subscribe form does: its budgets (per mailbox, per client network, mails per day),
and sign-ups kept as unconfirmed requests until the owner of the address follows the link.

Anybody can type any address into the form, so nothing it sends changes what a reader sees
before that reader confirms: a request is stored apart from the subscriber (store.signups),
the confirmation link names the request, and only following it writes the request's address
spelling, name and categories into the subscriber's row.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .choices import Choices
from .errors import PublisherError
from .model import Consent, Subscriber, SubscriberStatus
from .store import Budget, SignupRequest, Store
from .subscriptions import clean_name, normalize_email

if TYPE_CHECKING:
    from .newsletter import Newsletter
    from .transports import Transport

log = logging.getLogger(__name__)

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
REQUEST_LIFETIME = timedelta(days=7)  # as long as a confirmation link works (digest_messages.CONFIRM_LIFETIME)
_STOPPED = (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED)


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


def request_subscription(
    store: Store,
    email: str,
    name: str,
    categories: tuple[str, ...],
    now: datetime,
    choices: Choices,  # App.offered.from_form: required, so no door silently signs a reader up as weekly
    consent_text: str = "",
) -> tuple[Subscriber, SignupRequest | None]:
    """A sign-up from the subscribe form: (subscriber, the request to confirm, or None).

    A confirmed address is left as it is and gets no request (the caller mails them their
    preferences link), unless it is on the suppression list: then it needs a new confirmation,
    as any other address does. Any other address gets a request holding what was typed; a new
    address also gets a pending row with nothing of the form's in it but the address. A
    pending, unsubscribed or bounced row is not touched. The form's page says the same in
    every case. `choices`: the script and cadence asked for, kept with the request.
    `consent_text` is the words the form showed beside its button, kept with the request as
    the reader's consent once they confirm. ValueError: not an address."""
    address = normalize_email(email)
    existing = store.subscriber(address.lower())
    if existing is not None and existing.status is SubscriberStatus.CONFIRMED:
        if not store.is_suppressed(address.lower()):
            return existing, None
    if existing is None:
        store.save_subscribers([Subscriber(address, "", (), SubscriberStatus.PENDING, now, "web", now)])
        existing = store.subscriber(address.lower())
        assert existing is not None
    request = store.add_signup_request(
        address,
        clean_name(name),
        categories,
        now,
        REQUEST_LIFETIME,
        choices.script,
        choices.cadence,
        consent_text=consent_text,
    )
    return existing, request


def confirm_request(
    store: Store, request: SignupRequest, now: datetime, client: str = ""
) -> tuple[Subscriber | None, bool]:
    """The owner followed a request's link: the subscriber becomes what the request asked for,
    confirmed, and the address's requests are marked confirmed, so their links confirm nothing
    any more; an address on the suppression list comes off it (the link reached them: mail gets
    through again), logged. The link of a request marked so changes nothing: it gives the
    subscriber if still confirmed (a second click, a reload, or an earlier sign-up mail's link
    shows that they are subscribed), else None (unsubscribed, bounced or suppressed since: the
    form signs them up again). None too when the link may not confirm: the request is gone
    (expired), or the address unsubscribed or bounced after the request was made (an old link
    cannot undo an opt-out). A reader confirmed meanwhile keeps their own choices. The
    confirmation is the consent: the request's consent text is kept on the subscriber with the
    time and `client`'s network. With it, whether THIS call made the address confirmed
    (store.confirm_signup decides, so of two clicks at once only one is told so, and one
    welcome e-mail goes out)."""
    key = request.email.lower()
    existing, suppressed = store.subscriber(key), store.is_suppressed(key)
    if request.confirmed_at is not None:  # saves nothing: what the address is now
        return (None if suppressed else _if_confirmed(existing)), False
    if existing is not None and existing.status is SubscriberStatus.CONFIRMED and not suppressed:
        store.mark_signup_requests_confirmed(request.id, key, now, REQUEST_LIFETIME)
        return existing, False
    if existing is not None and existing.status in _STOPPED and request.created_at < existing.status_at:
        return None, False
    base = existing or Subscriber(request.email, "", (), SubscriberStatus.PENDING, now, "web", now)
    confirmed = replace(
        base,
        email=request.email,
        name=request.name,
        categories=request.categories,
        script=request.script,
        cadence=request.cadence,
        status=SubscriberStatus.CONFIRMED,
        status_at=now,
        status_via="web",
        consent=Consent(request.consent_text, now, client_network(client) if client else ""),
    )
    newly = store.confirm_signup(request.id, confirmed, REQUEST_LIFETIME)
    if newly is None:  # another click confirmed it meanwhile
        return _if_confirmed(store.subscriber(key)), False
    done = store.subscriber(key)
    if suppressed and done is not None:
        log.info("subscriber #%s signed up again and confirmed: their address is off the suppression list", done.id)
    return done, newly


def _if_confirmed(subscriber: Subscriber | None) -> Subscriber | None:
    return subscriber if subscriber is not None and subscriber.status is SubscriberStatus.CONFIRMED else None


def mail_confirmations(
    store: Store, letters: Newsletter, transport: Transport, keys: list[str], per_day: int, now: datetime
) -> tuple[int, list[str]]:
    """Mail each still pending reader of `keys` their confirmation link (the operator's import:
    the link confirms the row as imported), at most `per_day` sign-up mails a mailbox a day,
    counted with the form's. (mails sent, what could not be sent and why)."""
    sent, problems = 0, []
    for key in keys:
        subscriber = store.subscriber(key)
        if subscriber is None or subscriber.status is not SubscriberStatus.PENDING:
            continue
        if not store.spend_budgets([Budget("address", mailbox_key(subscriber.email), per_day, DAY)], now, keep=DAY):
            problems.append(
                f"{subscriber.email}: not sent, the mailbox had {per_day} sign-up e-mails in the last 24 hours "
                "(web.confirmation_mails_per_day); try again tomorrow"
            )
            continue
        try:
            transport.send(letters.account_message(subscriber, confirming=True))
        except (PublisherError, ValueError) as exc:
            problems.append(f"{subscriber.email}: not sent: {exc}")
            continue
        sent += 1
    return sent, problems
