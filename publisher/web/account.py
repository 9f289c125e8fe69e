"""The reader's pages: subscribe, confirm, preferences, unsubscribe.

- `/subscribe`: double opt-in. The form carries a CSRF token (kept in Flask's signed session
  cookie); requests are limited per mailbox and per client network, and the mails per mailbox
  and day, counted in the store (signup.allow_signup); the answer is the same page
  whether or not the address was subscribed before, and the e-mail does the telling. Its
  form is read and signed up by `reader_form` and `sign_up`, which the embeddable form
  and the JSON endpoint (embed.py) share.
- A confirmation keeps the consent (the words the form showed, the time, the client's network)
  and queues the welcome e-mail, whose failure is logged and undoes nothing.
- `/confirm/<token>`, `/preferences/<token>`, `/unsubscribe/<token>`: a GET shows a page with
  a button and changes nothing (mail scanners follow links); a POST acts. The unsubscribe POST
  is RFC 8058's one-click target: no cookie, no CSRF token, idempotent, the token is the
  authority. An unsubscribe is recorded even when the store is busy (`unsubscribes.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from flask import Blueprint, Response, request
from werkzeug.datastructures import MultiDict

from ..choices import Choices
from ..digest_messages import CONFIRM_LIFETIME
from ..mail import Message
from ..model import Subscriber, SubscriberStatus
from ..scripts import LABELS
from ..signup import allow_signup, confirm_request, request_subscription
from ..store import SignupRequest
from ..subscriptions import choose_categories, confirm, normalize_email
from ..tokens import TokenError, expiry, read_token
from .shared import WebState, client_address, csrf_token, csrf_valid, current, page, retry_after_limits

log = logging.getLogger(__name__)

account = Blueprint("account", __name__)

# Every template these pages render (the web environment's names); /healthz checks them.
PAGE_TEMPLATES = ("subscribe.html.j2", "message.html.j2", "action.html.j2", "preferences.html.j2")


def expired() -> Response:
    """A forged, expired or no longer valid link: one page, one status, nothing revealed."""
    words = current().words
    return page("message.html.j2", 404, title=words["expired"], body=words["expired_body"], again=True)


def unsubscribed(subscriber: Subscriber, how: str) -> Response:
    """Record the unsubscribe (in the store, or queued beside it while the store is busy) and
    say so; 503 with Retry-After only when it could not be recorded at all."""
    state = current()
    assert subscriber.id is not None
    if not state.unsubscribes.record(subscriber.id, state.app.clock(), how):
        busy = page("message.html.j2", 503, title=state.words["busy"], body=state.words["busy_body"])
        busy.headers["Retry-After"] = "60"
        return busy
    list_name = state.letters.list_name_of(subscriber)
    body = state.words["unsubscribed_body"].format(email=subscriber.email, list_name=list_name)
    return page("message.html.j2", title=state.words["unsubscribed"], body=body, again=True)


def subscriber_for(token: str, purpose: str) -> Subscriber | None:
    """The subscriber a link's token names, if it is genuine, unexpired and still theirs."""
    state = current()
    store = state.app.store

    def email_of(subscriber_id: int) -> str | None:
        found = store.subscriber_by_id(subscriber_id)
        return found.email.lower() if found else None

    try:
        subscriber_id = read_token(state.letters.signing_key, token, purpose, state.app.clock(), email_of)
    except TokenError:
        return None
    return store.subscriber_by_id(subscriber_id)


def categories_from_form(values: MultiDict[str, str] | None = None) -> tuple[str, ...]:
    """The form's categories: configured slugs only, each once, in the configured order (so
    at most one of each, however many the form repeats)."""
    asked = set((request.form if values is None else values).getlist("category"))
    return tuple(c.slug for c in current().app.categories if c.slug in asked)


@dataclass(frozen=True, slots=True)
class ReaderForm:
    """What a subscribe or preferences form asks for."""

    email: str  # as typed, stripped (not yet validated)
    name: str
    categories: tuple[str, ...]
    choices: Choices  # script and cadence (choices.Offered.from_form)


def reader_form(current_choices: Choices | None = None, values: MultiDict[str, str] | None = None) -> ReaderForm:
    """The one reading of a reader's form (the subscribe page, the preferences page, the
    embedded form and the JSON endpoint, whose fields come as `values`): `email`, `name`,
    `category` (repeated), `script`, `cadence`. A choice the page did not offer keeps
    `current_choices` (default: the default)."""
    form = request.form if values is None else values
    choices = current().app.offered.from_form(form.get, current_choices)
    return ReaderForm(form.get("email", "").strip(), form.get("name", ""), categories_from_form(form), choices)


def request_for(token: str) -> SignupRequest | None:
    """The sign-up request a confirmation link names, if the link is genuine and unexpired."""
    state = current()
    store = state.app.store
    try:
        request_id = read_token(
            state.letters.signing_key, token, "signup", state.app.clock(), store.signup_request_email_key
        )
    except TokenError:
        return None
    found = store.signup_request(request_id)
    if found is None or expiry(token) - CONFIRM_LIFETIME < found.created_at.replace(microsecond=0):
        return None  # a link made before its request: never one of this request's
    return found


def subscribe_page(
    status: int = 200, error: str | None = None, email: str = "", name: str = "", chosen: Choices | None = None
) -> Response:
    """The sign-up form, `chosen` (default: the default choices) checked."""
    categories, offered = current().app.categories, current().app.offered
    chosen = chosen or offered.default
    return page(
        "subscribe.html.j2", status, categories=categories, csrf=csrf_token(), error=error, email=email, name=name,
        offered=offered.on_page(), script_labels=LABELS, chosen_script=chosen.script or offered.site,
        chosen_cadence=chosen.cadence,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SignupAnswer:
    """What became of a sign-up: `sent` (the address, normalised, in `detail`), `bad_email`
    (why, in `detail`), `limited` or `used` (the embedded form's token was spent before)."""

    status: str
    detail: str = ""


def sign_up(entry: ReaderForm, admit: Callable[[], bool] | None = None) -> SignupAnswer:
    """The one sign-up path: the address checked, the limits spent, the request stored with the
    consent words the forms show beside their button (`[theme] consent`), the mail queued.
    `admit` (the embedded form's: spend its single-use token) is asked only once the limits let
    the sign-up through, so a post answered `limited` leaves nothing behind; False: `used`."""
    state = current()
    app = state.app
    try:
        address = normalize_email(entry.email)
    except ValueError as exc:
        return SignupAnswer("bad_email", str(exc).split(": ", 1)[-1])
    if not allow_signup(app.store, address, client_address(), state.limits, app.clock()):
        return SignupAnswer("limited")
    if admit is not None and not admit():
        return SignupAnswer("used")
    consent = app.theme.consent
    subscriber, signup = request_subscription(
        app.store, address, entry.name, entry.categories, app.clock(), entry.choices, consent_text=consent
    )
    # Sent by one background thread: a slow mail server never holds a web thread, and the
    # answer takes as long whether or not the address was on the list.
    kind = "confirmation" if signup is not None else "preferences"
    compose = partial(state.letters.account_message, subscriber, signup is not None, signup)
    state.mailer.submit(send_reader_mail, state, subscriber, kind, compose)
    return SignupAnswer("sent", address)


def too_many() -> Response:
    """The page of a sign-up the limits turned away (/subscribe's and the embedded form's)."""
    return retry_after_limits(page("message.html.j2", 429, title=current().words["too_many"], body=""))


@account.get("/subscribe")
def subscribe_form() -> Response:
    """The form; `?script=zh-Hant` or `?cadence=daily` (as the other script's pages link it)
    checks that choice, when the page offers it, as the form's own fields would."""
    return subscribe_page(chosen=current().app.offered.from_form(request.args.get))


@account.post("/subscribe")
def subscribe() -> Response:
    words = current().words
    entry = reader_form()
    if not csrf_valid():
        return subscribe_page(400, words["csrf"], entry.email, entry.name, entry.choices)
    answer = sign_up(entry)
    if answer.status == "bad_email":
        reason = words["bad_email"].format(reason=answer.detail)
        return subscribe_page(400, reason, entry.email, entry.name, entry.choices)
    if answer.status == "limited":
        return too_many()
    return page("message.html.j2", title=words["sent"], body=words["sent_body"].format(email=answer.detail))


def send_reader_mail(state: WebState, subscriber: Subscriber, kind: str, compose: Callable[[], Message]) -> None:
    """Send one e-mail to a reader from the mail thread: the `confirmation` link of a sign-up
    request, a subscribed reader's `preferences` link, or the `welcome`. A failure is logged
    (`could not send the <kind> e-mail to subscriber #N`) and undoes nothing: the reader saw
    the same page, and a confirmation stays a confirmation."""
    try:
        transport = state.app.transport()
        try:
            transport.send(compose())
        finally:
            transport.close()
    except Exception as exc:  # noqa: BLE001 - the operator sees this; the reader's page was already answered
        log.error("could not send the %s e-mail to subscriber #%s: %s", kind, subscriber.id, exc)


@account.route("/confirm/<token>", methods=["GET", "POST"])
def confirm_page(token: str) -> Response:
    """A sign-up request's link (or an import's, naming the subscriber): the GET shows what
    confirming saves, the POST confirms; once the address is confirmed, both show that."""
    state = current()
    words = state.words
    signup = request_for(token)
    if signup is not None:
        if request.method == "POST" or signup.confirmed_at is not None:  # confirmed: shows, changes nothing
            done, newly = confirm_request(state.app.store, signup, state.app.clock(), client_address())
            if newly:
                welcome(done)
            return confirmed(done)
        names = {c.slug: c.name for c in state.app.categories}
        chosen = [names[slug] for slug in signup.categories if slug in names] or [words["all"]]
        details = [(words["email"], [signup.email]), (words["confirm_name"], [signup.name or "—"])]
        details.append((words["confirm_sections"], chosen))
        offered = current().app.offered
        if offered.choose_script:
            details.append((words["script"], [LABELS[signup.script or state.app.scripts.site]]))
        if offered.choose_cadence:
            details.append((words["cadence"], [words[signup.cadence]]))
        body = words["confirm_body"].format(email=signup.email, list_name=state.letters.list_name)
        return page("action.html.j2", title=words["confirm"], body=body, button=words["confirm"], details=details)
    subscriber = subscriber_for(token, "confirm")
    if subscriber is None:
        return expired()
    if request.method == "POST" or subscriber.status is SubscriberStatus.CONFIRMED:
        assert subscriber.id is not None
        issued = expiry(token) - CONFIRM_LIFETIME
        done, newly = confirm(state.app.store, subscriber.id, state.app.clock(), issued)
        if newly:
            welcome(done)
        return confirmed(done)
    body = words["confirm_body"].format(email=subscriber.email, list_name=state.letters.list_name)
    return page("action.html.j2", title=words["confirm"], body=body, button=words["confirm"])


def welcome(done: Subscriber | None) -> None:
    """Queue the welcome e-mail of a reader who just confirmed."""
    if done is not None and done.status is SubscriberStatus.CONFIRMED:
        state = current()
        state.mailer.submit(send_reader_mail, state, done, "welcome", partial(state.letters.welcome_message, done))


def confirmed(done: Subscriber | None) -> Response:
    """The page after a confirmation: subscribed, with their preferences link; or, for a link
    that may not confirm (an old one of an address that unsubscribed since), the expired page."""
    if done is None or done.status is not SubscriberStatus.CONFIRMED:
        return expired()
    state = current()
    body = state.words["confirmed_body"].format(email=done.email, list_name=state.letters.list_name_of(done))
    manage = state.letters.personal(done).preferences_url
    return page("message.html.j2", title=state.words["confirmed"], body=body, manage=manage)


@account.route("/preferences/<token>", methods=["GET", "POST"])
def preferences_page(token: str) -> Response:
    state = current()
    subscriber = subscriber_for(token, "preferences")
    if subscriber is None:
        return expired()
    assert subscriber.id is not None
    saved = False
    if request.method == "POST":
        if request.form.get("action") == "unsubscribe":
            return unsubscribed(subscriber, "web preferences")
        asked = reader_form(Choices(subscriber.script, subscriber.cadence))
        changed = choose_categories(state.app.store, subscriber.id, asked.categories, asked.choices)
        subscriber, saved = changed or subscriber, True
    offered = current().app.offered
    return page(
        "preferences.html.j2",
        title=state.words["preferences"],
        body=state.words["preferences_body"].format(email=subscriber.email),
        categories=state.app.categories,
        chosen=set(subscriber.categories),
        offered=offered.on_page(),
        script_labels=LABELS,
        chosen_script=subscriber.script or state.app.scripts.site,
        chosen_cadence=state.letters.cadence_of(subscriber),
        saved=saved,
        subscribed=subscriber.status is SubscriberStatus.CONFIRMED,
    )


@account.route("/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe_page(token: str) -> Response:
    state = current()
    subscriber = subscriber_for(token, "unsubscribe")
    if subscriber is None:
        return expired()
    assert subscriber.id is not None
    if request.method == "POST":  # RFC 8058 one-click, or the page's button: the same
        one_click = request.form.get("List-Unsubscribe") == "One-Click"
        return unsubscribed(subscriber, "one-click" if one_click else "web")
    words = state.words
    body = words["unsubscribe_body"].format(email=subscriber.email, list_name=state.letters.list_name_of(subscriber))
    return page("action.html.j2", title=words["unsubscribe"], body=body, button=words["unsubscribe"])
