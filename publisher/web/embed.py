"""The sign-up form on other sites' pages (`publisher embed` prints its snippet), and a JSON
endpoint for pages that post from their own script. docs/signup.md has the contract.

A form on the CMS cannot carry /subscribe's CSRF token: that lives in our session cookie,
which a cross-site POST does not send (SameSite=Lax), so the embedded form gets a token of its
own instead. `/embed.js`, loaded by the snippet, fills in a signed form token good for two
hours and one sign-up (`tokens.py`'s `form` purpose; spent ones kept as SHA-256 digests in the
store until they expire), the page's address to return to, and the consent words. A hidden
`website` field is the honeypot: a person never fills it, a form-filling bot does. The
sign-up limits per mailbox and client network (signup.allow_signup) apply as on /subscribe,
and the sign-up itself is /subscribe's (`account.reader_form`, `account.sign_up`).

The answer goes back to the page the form was on, with `publisher_signup=<status>` added to
its address, when that page is on an origin of `[web] embed_origins`; any other address gets
our own answer page, never a redirect (no open redirect). The JSON endpoint answers browsers
with CORS headers for those origins only, and refuses a POST that a browser sent from another.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from flask import Blueprint, Response, request
from werkzeug.datastructures import MultiDict

from ..config import web_origin
from ..tokens import TokenError, expiry, make_token, read_token
from .account import reader_form, sign_up, too_many
from .shared import current, page, retry_after_limits

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger(__name__)

embed = Blueprint("embed", __name__)

FORM_TOKEN_LIFETIME = timedelta(hours=2)  # a reader may read the article before signing up
FORM_KEY = "embedded sign-up form"  # what a form token's signature covers besides its number
STATUS_FLAG = "publisher_signup"  # the query parameter the answer adds to the page it returns to
HONEYPOT = "website"
# What each outcome is called, its HTTP status and its words (the catalogue's [pages]).
OUTCOMES = {
    "sent": (200, "embed_sent"),
    "bad_email": (400, "embed_invalid"),
    "limited": (429, "too_many"),
    "expired": (400, "form_expired"),
    "used": (409, "form_used"),
    "refused": (400, "refused"),
    "origin": (403, "refused"),
    "bad_request": (400, "refused"),
}


def render_snippet(app: App) -> str:
    """The HTML an operator pastes into the CMS page (`publisher embed`): the form, posting to
    `[web] public_url`, with every category, the scripts and cadences offered (as on
    /subscribe), the consent words and the script that fills it in (`templates/embed.html.j2`,
    themeable)."""
    from ..newsletter import Newsletter
    from ..scripts import LABELS

    letters, words = Newsletter(app), app.messages["pages"]
    offered = app.offered
    return app.theme.environment.get_template("embed.html.j2").render(
        t=words,
        theme=app.theme.context(),
        public_url=letters.public_url,
        categories=app.categories,
        list_name=letters.list_name,
        subscribe_title=words["subscribe"].format(list_name=letters.list_name),
        offered=offered.on_page(),
        script_labels=LABELS,
        chosen_script=app.scripts.site,
        chosen_cadence=offered.cadences[0],
    )


def new_form_token(now: datetime) -> str:
    """A form token for one sign-up within FORM_TOKEN_LIFETIME of `now`."""
    key = current().letters.signing_key
    return make_token(key, "form", secrets.randbits(60), FORM_KEY, now + FORM_TOKEN_LIFETIME)


def embedded_sign_up(values: MultiDict[str, str]) -> tuple[str, str]:
    """(outcome, detail) of a sign-up through the embedded form or the JSON endpoint: the token
    checked, the honeypot, then /subscribe's own path, which spends the token only once the
    limits let the sign-up through (a flood answered `limited` writes no spent-token rows; a
    token is still good for one sign-up that goes through)."""
    state = current()
    store, now = state.app.store, state.app.clock()
    token = values.get("token", "")
    try:
        read_token(state.letters.signing_key, token, "form", now, lambda _number: FORM_KEY)
    except TokenError:
        return "expired", ""  # forged, malformed or out of date: the words say reload the page
    if values.get(HONEYPOT, ""):
        log.info("an embedded sign-up was refused: its honeypot field was filled in, as a bot does")
        return "refused", ""
    answer = sign_up(reader_form(values=values), lambda: store.spend_once(token, expiry(token), now))
    return answer.status, answer.detail


def allowed_origins() -> set[str]:
    return {web_origin(o) or o for o in current().app.settings.web.embed_origins}


def trusted(url: str) -> bool:
    """Whether `url` is a page we may send a reader back to: on a configured origin, one line of
    ASCII (as a browser's `location.href` is: a header can carry nothing else)."""
    if not url or len(url) > 2000 or not url.isascii() or not url.isprintable() or " " in url:
        return False
    return web_origin(url) in allowed_origins()


OLD_FLAG = re.compile(rf"(?:^|&){STATUS_FLAG}=[^&]*")


def flagged(url: str, outcome: str) -> str:
    """`url` with `&publisher_signup=<outcome>` after its query (`?` when it has none), an older
    flag taken out, no fragment. The rest of the query is kept byte for byte: a CMS's
    `page.php?/news/12` is not a list of key=value pairs, and re-encoding it breaks the page."""
    base, _hash, _fragment = url.partition("#")
    path, _question, query = base.partition("?")
    query = OLD_FLAG.sub("", query).strip("&")
    return f"{path}?{query}{'&' if query else ''}{STATUS_FLAG}={outcome}"


def foreign_origin() -> str | None:
    """The request's `Origin` header when a browser sent it from a page that is neither on an
    origin of `[web] embed_origins` nor on our own public origin; None when it is one of those
    or there is none (a client that is not a browser, or an old one, sends none)."""
    origin = request.headers.get("Origin", "")
    own = web_origin(current().letters.public_url)
    if origin and web_origin(origin) not in allowed_origins() | {own}:
        return origin
    return None


@embed.post("/embed/subscribe")
def embedded_form() -> Response:
    """The snippet's form, posted from another site without our cookie. With `[web]
    embed_origins` set, a browser's post from a page on any other origin is refused before
    anything is done: else any site could sign addresses up through its visitors' browsers."""
    stranger = foreign_origin() if current().app.settings.web.embed_origins else None
    if stranger is not None:
        log.info("an embedded sign-up from %r was refused: not an origin of [web] embed_origins", stranger[:200])
        return page("message.html.j2", 403, title=current().words["refused"], body="")  # our page: no redirect
    outcome, detail = embedded_sign_up(request.form)
    back = request.form.get("return_to", "")
    if trusted(back):
        response = Response(status=303)
        response.headers["Location"] = flagged(back, outcome)
        response.headers["Cache-Control"] = "no-store"
        return response
    words = current().words
    status, key = OUTCOMES[outcome]
    if outcome == "sent":
        return page("message.html.j2", title=words["sent"], body=words["sent_body"].format(email=detail))
    if outcome == "limited":
        return too_many()
    return page("message.html.j2", status, title=words[key], body="")


@embed.get("/embed.js")
def embed_script() -> Response:
    """The snippet's script: a fresh form token, the page's address to return to, the consent
    words and the privacy line (as configured now, not as when the snippet was pasted), and
    the answer's words shown where the form returned to."""
    state = current()
    words = {outcome: state.words[key] for outcome, (_status, key) in OUTCOMES.items()}
    values = {"token": new_form_token(state.app.clock()), **reader_notes(), "words": words}
    script = SCRIPT.replace("VALUES", json.dumps(values, ensure_ascii=True).replace("</", "<\\/"))
    response = Response(script, mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-store"  # one token per page view
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"  # a script for other sites' pages
    return response


SCRIPT = """(function () {
  "use strict";
  var v = VALUES;
  var flag = new URLSearchParams(window.location.search).get("publisher_signup");
  var here = window.location.href.split("#")[0];
  document.querySelectorAll("form[data-publisher-signup]").forEach(function (form) {
    if (form.elements.token) form.elements.token.value = v.token;
    if (form.elements.return_to) form.elements.return_to.value = here;
    var consent = form.querySelector("[data-publisher-consent]");
    if (consent) consent.textContent = v.consent;
    var privacy = form.querySelector("[data-publisher-privacy]");
    if (privacy) privacy.textContent = v.privacy;
    var status = form.querySelector("[data-publisher-status]");
    if (status && flag && Object.prototype.hasOwnProperty.call(v.words, flag)) status.textContent = v.words[flag];
  });
})();
"""


# --- the JSON endpoint ---------------------------------------------------------------------


def cors(response: Response) -> Response:
    """CORS headers for a configured origin; none for any other (the browser then keeps the
    answer from the page's script)."""
    response.vary.add("Origin")
    origin = request.headers.get("Origin", "")
    if origin and web_origin(origin) in allowed_origins():
        response.headers["Access-Control-Allow-Origin"] = origin
    return response


def json_answer(outcome: str, detail: str = "") -> Response:
    status, key = OUTCOMES[outcome]
    body: dict[str, object] = {"ok": outcome == "sent", "status": outcome, "message": current().words[key]}
    if detail and outcome == "bad_email":
        body["detail"] = detail
    response = Response(json.dumps(body, ensure_ascii=False), status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return cors(retry_after_limits(response) if outcome == "limited" else response)


def reader_notes() -> dict[str, str]:
    """The words a form must show beside its button, verbatim (`consent`: a confirmed reader's
    consent is these words, kept with them), and the privacy line with its link."""
    theme = current().app.theme
    return {"consent": theme.consent, "privacy": theme.privacy, "privacy_url": theme.privacy_url}


@embed.get("/embed/token")
def token_endpoint() -> Response:
    """A form token for a page's own script, with the words its form must show:
    `{"token": ..., "expires": ..., "consent": ..., "privacy": ..., "privacy_url": ...}`."""
    token = new_form_token(current().app.clock())
    body = json.dumps({"token": token, "expires": expiry(token).isoformat(), **reader_notes()}, ensure_ascii=False)
    response = Response(body, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return cors(response)


@embed.route("/embed/api/subscribe", methods=["POST", "OPTIONS"])
def json_endpoint() -> Response:
    """A sign-up as JSON (or form fields) from a page's own script; the answer in JSON."""
    if request.method == "OPTIONS":  # the preflight of a JSON POST
        response = cors(Response(status=204))
        if "Access-Control-Allow-Origin" in response.headers:
            response.headers["Access-Control-Allow-Methods"] = "POST"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
        return response
    stranger = foreign_origin()
    if stranger is not None:
        log.info("a JSON sign-up from %r was refused: not an origin of [web] embed_origins", stranger[:200])
        return json_answer("origin")
    values = json_values() if request.is_json else request.form
    if values is None:
        return json_answer("bad_request")
    return json_answer(*embedded_sign_up(values))


def json_values() -> MultiDict[str, str] | None:
    """A JSON object's fields as a form's (a list gives the field once per item); None when the
    body is not an object of strings and lists of strings."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return None
    values: MultiDict[str, str] = MultiDict()
    for key, value in body.items():
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str):
                return None
            values.add(key, item)
    return values
