"""A loopback double of Postmark's sending API that takes batch calls, as Postmark documents them.

`POST /email/batch` (at most 500 messages, 50 MB) and `POST /email`, with the server token in
X-Postmark-Server-Token (a wrong or missing one: 401, ErrorCode 10), JSON in and out, each
message checked for what Postmark requires (From, To with one address, Subject, a body,
MessageStream). A batch answers 200 with one result per message in order: ErrorCode 0 with a
MessageID, or 406 for an address marked inactive (`inactive`). It can answer a share of calls
with 429 (Retry-After) and 503 before reading them, as a provider under load does: nothing is
taken then. Every message it takes is kept in `taken`: (recipient, its delivery token from Metadata).

Plain standard library, no pytest: the tests and bench/ (which puts tests/ on its path) use it.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "postmark-double-token"
BATCH_LIMIT = 500
PAYLOAD_LIMIT = 50 * 1024 * 1024


class PostmarkDouble:
    """Start with `with PostmarkDouble() as api:`; `api.url` is its base URL."""

    def __init__(self, *, throttle_every: int = 0, unavailable_every: int = 0, retry_after: int = 1,
                 inactive: frozenset[str] = frozenset(), delay: float = 0.0) -> None:  # fmt: skip
        self.throttle_every, self.unavailable_every, self.retry_after = throttle_every, unavailable_every, retry_after
        self.inactive, self.delay = inactive, delay
        self.taken: list[tuple[str, str]] = []  # (recipient, delivery token) of every message taken
        self.calls = self.throttled = self.unavailable = 0
        self.problems: list[str] = []  # requests that broke the contract (the test asserts none)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> PostmarkDouble:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON) for one request."""
        if headers.get("X-Postmark-Server-Token") != TOKEN:
            return 401, {}, {"ErrorCode": 10, "Message": "Request does not contain a valid Server token."}
        if "application/json" not in headers.get("Content-Type", ""):
            return 415, {}, {"ErrorCode": 0, "Message": "Content-Type must be application/json"}
        with self.lock:
            self.calls += 1
            call = self.calls
        if self.throttle_every and call % self.throttle_every == 0:
            with self.lock:
                self.throttled += 1
            return 429, {"Retry-After": str(self.retry_after)}, {"ErrorCode": 429, "Message": "Rate limit exceeded"}
        if self.unavailable_every and call % self.unavailable_every == 0:
            with self.lock:
                self.unavailable += 1
            return 503, {}, {"ErrorCode": 503, "Message": "Service unavailable"}
        try:
            request = json.loads(body)
        except ValueError:
            return 422, {}, {"ErrorCode": 402, "Message": "Received invalid JSON input."}
        if path == "/email":
            return self._one(request)
        if path != "/email/batch":
            return 404, {}, {"ErrorCode": 0, "Message": f"no such endpoint: {path}"}
        if not isinstance(request, list) or not request or len(request) > BATCH_LIMIT or len(body) > PAYLOAD_LIMIT:
            self.problems.append(f"a batch of {len(request) if isinstance(request, list) else '?'} messages")
            return 422, {}, {"ErrorCode": 300, "Message": "Invalid email request"}
        return 200, {}, [self._one(message)[2] for message in request]

    def _one(self, message: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
        """The result of one message (a 422 for /email when it is refused)."""
        problem = _problem(message)
        if problem:
            self.problems.append(problem)
            return 422, {}, {"ErrorCode": 300, "Message": f"Invalid email request: {problem}"}
        to = message["To"].rsplit("<", 1)[-1].rstrip(">").strip()
        if to in self.inactive:
            message_text = "You tried to send to recipient(s) that have been marked as inactive."
            return 422, {}, {"ErrorCode": 406, "Message": message_text, "To": to}
        message_id = str(uuid.uuid4())
        token = (message.get("Metadata") or {}).get("publisher_delivery", "")
        with self.lock:
            self.taken.append((to, token))
        return 200, {}, {"ErrorCode": 0, "Message": "OK", "MessageID": message_id, "To": to,
                         "SubmittedAt": "2026-12-05T08:00:00.0000000-05:00"}  # fmt: skip


def _problem(message: Any) -> str:
    """What Postmark would refuse in one message, "" when nothing."""
    if not isinstance(message, dict):
        return "a message that is not an object"
    for field in ("From", "To", "Subject"):
        if not message.get(field):
            return f"no {field}"
    if "," in message["To"] or "@" not in message["To"]:
        return f"To is not one address: {message['To']!r}"
    if not (message.get("HtmlBody") or message.get("TextBody")):
        return "no body"
    if not message.get("MessageStream"):
        return "no MessageStream"
    return ""


def _handler(double: PostmarkDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if double.delay:
                threading.Event().wait(double.delay)
            status, headers, answer = double.answer(self.path, self.headers, body)
            data = json.dumps(answer).encode("utf-8")
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # quiet

    return Handler
