"""`web.trust_proxy` (issue 17, item 14): through a real proxy hop on loopback, the sign-up
budget counts each real client, not the proxy; a client's own X-Forwarded-For counts for
nothing, through the proxy or around it.

The proxy is a threaded http.server that forwards each request to `publisher serve` and
appends the address it saw to X-Forwarded-For, as nginx's `$proxy_add_x_forwarded_for` does.
Clients connect from loopback addresses in different /24 networks (127.0.1.2, 127.0.2.3, ...),
which the sign-up limits count apart.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import pytest
from test_smtp import free_port

from conftest import Service, Site

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}


class ForwardingProxy(ThreadingHTTPServer):
    """A reverse proxy on 127.0.0.1 in front of 127.0.0.1:`upstream`."""

    daemon_threads = True

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _ProxyHandler(BaseHTTPRequestHandler):
    server: ForwardingProxy

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
        headers.pop("X-Forwarded-For", None)
        seen = self.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{seen}, {self.client_address[0]}" if seen else self.client_address[0]
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=10)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _forward

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
        pass


def sign_up(port: int, source: str, email: str, claim: str | None = None) -> int:
    """A browser at `source` fetches the form and posts it to 127.0.0.1:`port`; `claim` is an
    X-Forwarded-For it sends itself. The POST's status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    own = {"X-Forwarded-For": claim} if claim else {}
    try:
        connection.request("GET", "/subscribe", headers=own)
        form = connection.getresponse()
        page = form.read().decode()
        cookie = (form.getheader("Set-Cookie") or "").split(";")[0]
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert form.status == 200 and csrf and cookie, page
        body = urlencode({"csrf": csrf.group(1), "email": email, "name": "读者"})
        headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded", **own}
        connection.request("POST", "/subscribe", body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


@pytest.fixture
def behind_proxy(site: Site) -> Iterator[tuple[int, int]]:
    """(the proxy's port, the service's own port): `publisher serve` trusting 127.0.0.1."""
    port = free_port()
    site.write_config(
        site.mail_to_outbox()
        + f"""
[web]
public_url = "http://127.0.0.1:{port}"
trust_proxy = true
subscribe_per_client = 2
subscribe_per_address = 100
"""
    )
    site.build()
    service = Service(site.config, site.root, port, command="serve")
    proxy = ForwardingProxy(port)
    try:
        service.wait_until_serving()
        yield proxy.port, port
    finally:
        proxy.shutdown()
        proxy.server_close()
        assert service.stop() == 0, service.output()


def test_each_client_behind_the_proxy_has_its_own_budget(behind_proxy: tuple[int, int]) -> None:
    proxy, _direct = behind_proxy
    first = [sign_up(proxy, "127.0.1.2", f"a{i}@example.com") for i in range(3)]
    second = [sign_up(proxy, "127.0.2.3", f"b{i}@example.com") for i in range(3)]
    assert first == [200, 200, 429]
    assert second == [200, 200, 429]  # before: the proxy's one budget, spent by the first client


def test_a_clients_own_forwarded_for_is_not_believed(behind_proxy: tuple[int, int]) -> None:
    proxy, direct = behind_proxy
    # Through the proxy: a new made-up address each time; the proxy's appended one counts.
    through = [sign_up(proxy, "127.0.3.4", f"c{i}@example.com", claim=f"203.0.113.{i}") for i in range(3)]
    # Around it: a client that reaches the service itself is not the trusted proxy.
    around = [sign_up(direct, "127.0.4.5", f"d{i}@example.com", claim=f"198.51.100.{i}") for i in range(3)]
    assert through == [200, 200, 429]
    assert around == [200, 200, 429]


def test_trusted_proxy_must_be_an_address(site: Site) -> None:
    site.write_config('[web]\ntrust_proxy = true\ntrusted_proxy = "nginx.local"\n')
    result = site.cli("check")
    assert result.exit_code == 2 and "web.trusted_proxy" in result.output, result.output
