"""/healthz: 503 with the part that cannot work (templates, database, output folder) and why."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask
from jinja2 import Environment, FileSystemLoader
from test_smtp import free_port

import publisher
from conftest import HEALTH_HEADERS, HEALTH_TOKEN, PUBLISHER_MAIN, ROOT, Service, Site
from publisher.app import App
from publisher.templating import TEMPLATES
from publisher.web import SERVICE_TEMPLATES, create_app
from publisher.web.account import PAGE_TEMPLATES
from publisher.web.health import TemplateCheck


def prepare(site: Site) -> Site:
    site.write_config(site.mail_to_outbox() + '\n[web]\npublic_url = "http://127.0.0.1:8080"\n')
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")
    site.build()
    return site


@pytest.fixture
def web(site: Site, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setenv("PUBLISHER_HEALTH_TOKEN", HEALTH_TOKEN)
    app: App = prepare(site).app()
    try:
        yield create_app(app)
    finally:
        app.close()


def health_of(web: Flask) -> tuple[int, dict[str, object]]:
    answer = web.test_client().get("/healthz", headers=HEALTH_HEADERS)
    return answer.status_code, answer.get_json()


def test_every_part_ok_is_200(web: Flask) -> None:
    status, body = health_of(web)
    assert status == 200, body
    assert body["status"] == "ok"
    assert (body["templates"], body["database"], body["output"]) == ("ok", "ok", "ok")


# --- templates: a copy of the package with one template gone or broken, as a wheel without them


def package_copy(root: Path) -> Path:
    """The `publisher` package with its templates copied under `root`, laid out as a wheel
    installs it (the checkout keeps the templates in its top-level folder)."""
    package = Path(publisher.__file__).parent
    shutil.copytree(package, root / "publisher", ignore=shutil.ignore_patterns("__pycache__"))
    if not TEMPLATES.is_relative_to(package):
        shutil.copytree(TEMPLATES, root / "publisher" / "templates", ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.mark.parametrize(
    ("template", "damage", "expected"),
    [
        ("message.html.j2", "remove", "error: web/message.html.j2 not found"),
        ("base.html.j2", "remove", "error: web/base.html.j2 not found (used by web/"),
        ("digest.txt.j2", "break", "error: digest.txt.j2 line 3: "),
        ("account.html.j2", "remove", "error: account.html.j2 not found"),
    ],
)
def test_a_missing_or_broken_template_is_503_naming_it(site: Site, template: str, damage: str, expected: str) -> None:
    prepare(site)
    copy = package_copy(site.root / "installed")
    # wherever the package keeps it (not the console's own of the same name); the checkout's stay
    # whole, so a 503 below can only come from the copy being what ran
    [path] = [found for found in copy.rglob(template) if "admin" not in found.parts]
    if damage == "remove":
        path.unlink()
    else:
        path.write_text("{{ site.title }}\n\n{% if %}\n", encoding="utf-8")
    service = Service(site.config, copy, free_port(), command="serve")
    try:
        service.wait_until_serving()
        answer = service.health()
    finally:
        service.stop()
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["status"] == "error"
    assert body["templates"].startswith(expected), body
    assert (body["database"], body["output"]) == ("ok", "ok")


def test_the_template_answer_is_kept_briefly(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(TEMPLATES, tmp_path / "templates"))
    env = Environment(loader=FileSystemLoader(folder))
    clock = [0.0]
    check = TemplateCheck(lambda: [(env, SERVICE_TEMPLATES)], ttl=10, clock=lambda: clock[0])
    assert check.problem() is None
    (folder / "digest.html.j2").unlink()
    clock[0] += 9
    assert check.problem() is None  # the answer of 9 s ago
    clock[0] += 1
    assert check.problem() == "digest.html.j2 not found"


def test_the_checked_templates_are_every_template_the_code_renders() -> None:
    rendered: set[str] = set()
    for path in (ROOT / "publisher").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        rendered |= set(re.findall(r'get_template\(\s*"([^"]+)"', text))
        rendered |= set(re.findall(r'page\(\s*"([^"]+)"', text))
    assert rendered, "no template name found: has the way templates are rendered changed?"
    assert rendered <= set(PAGE_TEMPLATES) | set(SERVICE_TEMPLATES)


# --- the store --------------------------------------------------------------------------------


@pytest.mark.sqlite_only("overwrites the SQLite file")
def test_a_store_that_cannot_be_read_is_503(site: Site, web: Flask) -> None:
    assert health_of(web)[0] == 200
    for path in site.db.parent.glob(site.db.name + "*"):  # the database and its WAL files, overwritten
        with path.open("r+b") as file:
            file.write(b"\xff" * max(path.stat().st_size, 4096))
    status, body = health_of(web)
    assert status == 503, body
    assert body["database"] == "error: DatabaseError: file is not a database"
    assert (body["templates"], body["output"], body["status"]) == ("ok", "ok", "error")


# --- the output folder ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "expected"),
    [("remove", "error: the output folder does not exist"), ("file", "error: the output folder is not a folder")],
)
def test_a_missing_output_folder_is_503(site: Site, web: Flask, damage: str, expected: str) -> None:
    shutil.rmtree(site.out)
    if damage == "file":
        site.out.write_text("not a folder", encoding="utf-8")
    status, body = health_of(web)
    assert status == 503, body
    assert body["output"] == expected
    assert (body["templates"], body["database"]) == ("ok", "ok")


def test_an_output_folder_the_service_cannot_write_is_503(site: Site) -> None:
    """The service cannot write the output folder (another user's, say): every rebuild would
    fail. Root writes through permission bits, so as root the service runs without that power."""
    prepare(site)
    program: list[str] = []  # this checkout's publisher, as it is
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux): nothing makes a folder unwritable to root")
        drop = "-dac_override,-dac_read_search"
        program = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}", "--", sys.executable, "-c", PUBLISHER_MAIN]
    site.out.chmod(0o555)
    try:
        service = Service(site.config, site.root, free_port(), command="serve", program=program)
        try:
            service.wait_until_serving()
            answer = service.health()
            feed = requests.get(service.base + "/rss.xml", timeout=10)
        finally:
            service.stop()
    finally:
        site.out.chmod(0o755)
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["output"] == "error: the output folder is not writable by this process"
    assert (body["templates"], body["database"]) == ("ok", "ok")
    assert feed.status_code == 200  # what is there is still served
