"""How a reader's digest message is made: the sender and reply-to, the personal links (signed
tokens), the list headers, the delivery's token in X-Publisher-Delivery and the VERP envelope
sender; and the sign-up and welcome e-mails, made alike. `Newsletter` (newsletter.py) adds the
use cases on top.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from email.headerregistry import Address
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .bounces.events import DELIVERY_HEADER
from .bounces.links import make_delivery_token, verp_address
from .config import is_loopback, mailbox
from .delivery import BuildProblem
from .digest import (
    DigestWindow,
    Draft,
    Personal,
    Renderer,
    reader_cadence,
    reader_script,
    render_account,
    render_welcome,
)
from .mail import Envelope, Message, build_message
from .model import WEEKLY, Delivery, Subscriber
from .store import DigestRow, SignupRequest
from .tokens import make_token

if TYPE_CHECKING:
    from .app import App

# Links in a digest: unsubscribing from an old e-mail must keep working (laws ask for at least
# 30 days; readers dig up mail from years ago), preferences links may age out sooner.
UNSUBSCRIBE_LIFETIME = timedelta(days=5 * 365)
PREFERENCES_LIFETIME = timedelta(days=365)
CONFIRM_LIFETIME = timedelta(days=7)  # a sign-up's confirmation link


class DigestMessages:
    """The digest's messages for one App: `message` for a reader, `builder` for the send engine."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.settings = app.settings
        self.store = app.store
        self.clock = app.clock
        site = app.site
        self.host = urlsplit(site.url).hostname or "localhost"
        digest = self.settings.digest
        self.look = app.look
        self.list_name = self.look.list_name
        bare_host = self.host.removeprefix("www.")
        self.sender = mailbox(digest.sender) if digest.sender else Address(site.title, "newsletter", bare_host)
        self.reply_to = mailbox(digest.reply_to) if digest.reply_to else None
        self.mailto = f"mailto:{mailbox(digest.unsubscribe_mailto).addr_spec}" if digest.unsubscribe_mailto else None
        self.public_url = (self.settings.web.public_url or site.url).rstrip("/")
        if not self.public_url.startswith("https://") and not is_loopback(self.public_url):
            from .errors import ConfigError

            key = "web.public_url" if self.settings.web.public_url else "site.url"
            fix = 'set [web] public_url = "https://..." where the subscription pages are served'
            raise ConfigError("(digest)", [(key, "one-click unsubscribe (RFC 8058) needs an https URL", fix)])
        self._renderers: dict[int, Renderer] = {}  # digest id -> the renderer that planned it

    # --- keys and links --------------------------------------------------------------------

    @property
    def signing_key(self) -> bytes:
        """The key that signs links (App.signing_key)."""
        return self.app.signing_key

    def personal(self, subscriber: Subscriber, issued: datetime | None = None) -> Personal:
        """The reader's signed links, valid for their lifetimes from `issued` (default: now). A
        digest's deliveries count from the digest's opening, so every try of one delivery
        carries the same links and the same bytes: an API's idempotency key (Resend's) then
        meets the same request and answers it as the first, instead of refusing it."""
        sid, now = subscriber.id or 0, issued or self.clock()
        key, email_key = self.signing_key, subscriber.email.lower()
        unsubscribe = make_token(key, "unsubscribe", sid, email_key, now + UNSUBSCRIBE_LIFETIME)
        preferences = make_token(key, "preferences", sid, email_key, now + PREFERENCES_LIFETIME)
        return Personal(
            name=subscriber.name,
            unsubscribe_url=f"{self.public_url}/unsubscribe/{unsubscribe}",
            preferences_url=f"{self.public_url}/preferences/{preferences}",
        )

    # --- messages --------------------------------------------------------------------------

    def renderer(self, window: DigestWindow | DigestRow) -> Renderer:
        articles = self.store.articles_between(window.start, window.end, window.by)
        urls = self.archive_urls(window)
        return Renderer(
            self.look, self.app.categories, articles, window.end, archive_url=urls.get(None), cadence=window.cadence,
            script_archive_urls={script: url for script, url in urls.items() if script is not None},
        )  # fmt: skip

    def archive_urls(self, window: DigestWindow | DigestRow) -> dict[str | None, str]:
        """The digest's public page in each script it is published in (None: the site's own),
        its mails' "View in browser" link in the reader's script (publisher.archive_output); a
        preview's window gets the address it would have if sent now. {}: no page (archive off)."""
        archive = self.app.archive
        if archive is None:
            return {}
        return archive.urls_for(window.key, window.start, window.end, window.by, window.cadence)

    def archive_url(self, window: DigestWindow | DigestRow) -> str | None:
        """The digest's public page in the site's script (see archive_urls); None: no page."""
        return self.archive_urls(window).get(None)

    def list_id(self, cadence: str) -> str:
        """The List-Id of a cadence's mail (RFC 2919). Two cadences are two lists: each has its
        own name and id, so a reader's filter, or a provider's per-list complaint figures, tell
        them apart. The weekly keeps the id it had before cadences (`digest.<host>`, so no
        reader's filter breaks); another's is `<cadence>.digest.<host>`."""
        ident = "digest" if cadence == WEEKLY else f"{cadence}.digest"
        return f"{self.look.list_name_for(cadence)} <{ident}.{self.host}>"

    def list_name_of(self, subscriber: Subscriber) -> str:
        """The name of the list `subscriber` gets (their cadence's), as the pages say it."""
        return self.look.list_name_for(self.cadence_of(subscriber))

    def cadence_of(self, subscriber: Subscriber) -> str:
        """The cadence whose digests `subscriber` gets (digest.reader_cadence)."""
        return reader_cadence(subscriber, self.settings.digest.cadences)

    def script_of(self, subscriber: Subscriber) -> str | None:
        """The script `subscriber`'s digest is rendered in (digest.reader_script)."""
        return reader_script(subscriber, self.settings.digest.scripts)

    def message(
        self,
        renderer: Renderer,
        draft: Draft,
        subscriber: Subscriber,
        message_id: str | None,
        test: bool = False,
        delivery: Delivery | None = None,
        issued: datetime | None = None,
    ) -> Message:
        """A reader's digest; with its `delivery`, carrying the delivery's token (bounces.links)
        in the X-Publisher-Delivery header and, with `[bounces] return_path`, the envelope sender."""
        who = self.personal(subscriber, issued)
        text, html = renderer.personal(draft, who)
        words = self.look.words
        headers: tuple[tuple[str, str], ...] = (("X-Publisher-Test", "yes"),) if test else ()
        token = None
        if delivery is not None:
            token = make_delivery_token(self.signing_key, delivery.id, delivery.email_key)
            headers += ((DELIVERY_HEADER, token),)
        envelope = Envelope(
            sender=self.sender,
            to=Address(subscriber.name, *subscriber.email.rsplit("@", 1)),  # no re-parsing: it was validated
            subject=(words["test"] if test else "") + draft.subject,
            date=self.clock(),
            message_id_domain=self.host,
            list_id=self.list_id(renderer.cadence),
            unsubscribe_url=who.unsubscribe_url,
            unsubscribe_mailto=self.mailto,
            reply_to=self.reply_to,
            message_id=message_id,
            extra_headers=headers,
            return_path=self.return_path(token),
            personal=(("name", who.name), ("unsubscribe", who.unsubscribe_url), ("preferences", who.preferences_url)),
        )
        return build_message(envelope, text, html)

    def return_path(self, token: str | None) -> str | None:
        """The envelope sender: `[bounces] return_path`, with the delivery's token when there
        is one (VERP: bounces+<token>@example.org); None when it is not set (the From address)."""
        configured = self.settings.bounces.return_path
        if not configured:
            return None
        return verp_address(configured, token) if token else configured

    def builder(self, digest: DigestRow) -> Callable[[Delivery], Message | None]:
        """The send engine's callback: a subscriber's message, None when they no longer get one
        (unsubscribed, or now reading another cadence's digest: a reader who switched from
        weekly to daily while the weekly was paused or retrying gets the daily ones only)."""
        renderer = self._renderers.get(digest.id) or self.renderer(digest)

        def build(delivery: Delivery) -> Message | None:
            subscriber, message_id = delivery.subscriber, delivery.message_id
            if subscriber is None or not subscriber.status.receives_mail:
                return None
            if self.cadence_of(subscriber) != digest.cadence:
                return None
            draft = renderer.draft(subscriber.categories, self.script_of(subscriber))  # a broken template raises
            if draft is None:
                return None
            try:
                message = self.message(
                    renderer, draft, subscriber, message_id, delivery=delivery, issued=digest.created_at
                )
                message.as_chunks()  # written now (and kept): an address IDNA refuses fails here
            except ValueError as exc:  # this subscriber's data (a name no header can carry)
                raise BuildProblem(str(exc)) from exc
            return message

        return build

    def account_message(
        self, subscriber: Subscriber, confirming: bool, request: SignupRequest | None = None
    ) -> Message:
        """The e-mail a sign-up sends: the confirmation link (double opt-in), or, for an address
        that is subscribed already, its preferences link. Never recorded in the ledger.

        The confirmation link names the sign-up `request` (only following it saves what the
        form asked for), or without one the subscriber's row as it is (an operator's import).
        A confirmation mail carries no name: until the owner confirms, a name is only what an
        anonymous form said, and it must not greet a stranger's mailbox."""
        now, sid, key = self.clock(), subscriber.id or 0, self.signing_key
        email_key = subscriber.email.lower()
        who = self.personal(subscriber)
        if confirming:
            expires = now + CONFIRM_LIFETIME
            if request is not None:
                token = make_token(key, "signup", request.id, request.email.lower(), expires)
            else:
                token = make_token(key, "confirm", sid, email_key, expires)
            link, name = f"{self.public_url}/confirm/{token}", ""
        else:
            link, name = who.preferences_url, subscriber.name
        address = request.email if request is not None else subscriber.email
        subject, text, html = render_account(self.look, confirming, link)
        envelope = Envelope(
            sender=self.sender,
            to=Address(name, *address.rsplit("@", 1)),
            subject=subject,
            date=now,
            message_id_domain=self.host,
            list_id=self.list_id(request.cadence if request is not None else self.cadence_of(subscriber)),
            unsubscribe_url=who.unsubscribe_url,
            reply_to=self.reply_to,
            return_path=self.return_path(None),
        )
        return build_message(envelope, text, html)

    def welcome_message(self, subscriber: Subscriber) -> Message:
        """The welcome e-mail a reader gets once they confirmed: what they chose, their
        preferences and unsubscribe links, the privacy line, in their script. Never recorded in
        the ledger."""
        who = self.personal(subscriber)
        names = {c.slug: c.name for c in self.app.categories}
        chosen = [names[slug] for slug in subscriber.categories if slug in names]
        links = (who.preferences_url, who.unsubscribe_url)
        subject, text, html = render_welcome(self.look, chosen, *links, script=subscriber.script)
        envelope = Envelope(
            sender=self.sender,
            to=Address(subscriber.name, *subscriber.email.rsplit("@", 1)),
            subject=subject,
            date=self.clock(),
            message_id_domain=self.host,
            list_id=f"{self.list_name} <digest.{self.host}>",
            unsubscribe_url=who.unsubscribe_url,
            reply_to=self.reply_to,
            return_path=self.return_path(None),
        )
        return build_message(envelope, text, html)
