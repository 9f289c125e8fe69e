"""Small leaks (issue 17, item 10): paths the filesystem refuses, loopback look-alikes, /healthz
telling strangers the list's size."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import requests
from flask import Flask
from test_smtp import free_port

from conftest import HEALTH_HEADERS, HEALTH_TOKEN, Service, Site
from publisher.app import App
from publisher.config import is_loopback
from publisher.web import create_app


@pytest.fixture
def web(site: Site, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setenv("PUBLISHER_HEALTH_TOKEN", HEALTH_TOKEN)
    site.write_config(site.mail_to_outbox() + '\n[web]\npublic_url = "http://127.0.0.1:8080"\n')
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
    site.build()
    app: App = site.app()
    try:
        yield create_app(app)
    finally:
        app.close()


@pytest.mark.parametrize(
    "path",
    [
        "/" + "a" * 256,  # one name longer than NAME_MAX
        "/" + "a" * 256 + "/",  # ... as a folder
        "/tech/" + "b" * 300 + ".xml",
        "/" + "/".join(["c" * 250] * 20),  # longer than PATH_MAX
        "/rss.xml%00.html",  # a NUL
        "/%ED%A0%80",  # a lone surrogate's UTF-8 bytes
    ],
)
def test_a_path_the_filesystem_refuses_is_a_quiet_404(web: Flask, path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answer = web.test_client().get(path)
    assert answer.status_code == 404
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text  # no traceback


def test_a_long_path_through_the_real_server_is_404(site: Site) -> None:
    site.write_config(site.mail_to_outbox() + '\n[web]\npublic_url = "http://127.0.0.1:8080"\n')
    site.build()
    service = Service(site.config, site.root, free_port(), command="serve")
    try:
        service.wait_until_serving()
        answers = [requests.get(f"{service.base}/{'x' * n}", timeout=10).status_code for n in (255, 256, 4000)]
        feed = requests.get(f"{service.base}/rss.xml", timeout=10).status_code
    finally:
        service.stop()
    assert answers == [404, 404, 404] and feed == 200
    assert "Traceback" not in service.output()


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8080", True),
        ("http://127.8.9.10/", True),
        ("http://localhost:8080/x", True),
        ("http://[::1]:8080/", True),
        ("http://127.0.0.1.nip.io/", False),  # a public name that merely starts with 127.
        ("http://127.example.org/", False),
        ("http://localhost.example.org/", False),
        ("http://localhost./", False),
        ("http://[::ffff:7f00:1]/", False),
        ("http://10.0.0.1/", False),
        ("ftp://127.0.0.1/", False),
        ("http://[::1/", False),
    ],
)
def test_only_a_loopback_address_or_localhost_is_loopback(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback


def test_public_url_on_a_look_alike_host_must_be_https(site: Site) -> None:
    site.write_config('[web]\npublic_url = "http://127.0.0.1.nip.io/"\n')
    result = site.cli("check")
    assert result.exit_code == 2, result.output
    assert "web.public_url" in result.output and "is not https" in result.output


def test_healthz_tells_strangers_status_and_times_only(web: Flask, site: Site) -> None:
    assert site.cli("subscribers", "add", "reader@example.com").exit_code == 0
    client = web.test_client()
    public = client.get("/healthz")
    detailed = client.get("/healthz", headers=HEALTH_HEADERS)
    wrong = client.get("/healthz", headers={"Authorization": "Bearer not-the-token"})
    assert public.status_code == detailed.status_code == 200
    body = public.get_json()
    assert body == wrong.get_json()
    assert set(body) == {
        "status", "templates", "database", "output", "last_ingest", "last_digest", "scheduler", "sources",
    }  # fmt: skip
    assert set(body["last_ingest"]) == {"at"}  # not how many articles came in
    assert {name: set(source) for name, source in body["sources"].items()} == {
        "content": {"status", "last_success", "last_error_at"}  # not its parts, errors or failed items
    }
    assert body["scheduler"] == {"state": "off"}
    assert public.headers["Cache-Control"] == "no-store"
    details = detailed.get_json()
    assert details["last_ingest"]["new"] == 1 and details["last_ingest"]["at"] == body["last_ingest"]["at"]


def test_a_public_503_names_the_part_not_the_reason(web: Flask, site: Site) -> None:
    site.out.rename(site.root / "elsewhere")
    client = web.test_client()
    public, detailed = client.get("/healthz"), client.get("/healthz", headers=HEALTH_HEADERS)
    assert public.status_code == detailed.status_code == 503
    assert public.get_json()["output"] == "error" and public.get_json()["status"] == "error"
    assert detailed.get_json()["output"] == "error: the output folder does not exist"
    assert str(site.root) not in public.get_data(as_text=True)


def test_without_a_token_configured_nobody_sees_the_details(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBLISHER_HEALTH_TOKEN", raising=False)
    site.write_config(site.mail_to_outbox())
    site.build()
    app = site.app()
    try:
        client = create_app(app).test_client()
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
            assert set(client.get("/healthz", headers=headers).get_json()["last_ingest"]) == {"at"}
    finally:
        app.close()
