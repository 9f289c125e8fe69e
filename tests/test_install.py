"""The package as a new user gets it: the wheel built from this checkout, installed (not editable)
with its dependencies into a fresh venv, and driven from a folder outside the checkout by the
documented commands: init, build, subscribers, digest preview and send, check, theme, run."""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email import policy
from pathlib import Path

import feedparser
import pytest
import requests
from test_smtp import free_port

from conftest import ROOT, Service

# A new user's store is the SQLite file `publisher init` configures, in either run: the
# PostgreSQL run would build the wheel and the venv again to repeat the same tests (40 s).
pytestmark = pytest.mark.sqlite_only("a new user's store: the SQLite file `publisher init` configures")


class Installed:
    """A venv holding only the built wheel and what it depends on."""

    def __init__(self, venv: Path, wheel: Path) -> None:
        self.venv, self.wheel = venv, wheel
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PUBLISHER", "VIRTUAL_ENV"))}
        self.env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env["PUBLISHER_SECRET_KEY"] = "install-test-signing-key-0123456789"

    def run(self, cwd: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.venv / "bin" / "publisher"), *args], cwd=cwd, env=self.env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        said = f"publisher {' '.join(args)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert result.returncode == code, said
        return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("install")
    # Built from a copy of the working tree without setuptools' build/ folder, which keeps modules
    # of earlier builds (a deleted store.py, say) that pip would pack again.
    source = work / "source"
    ignored = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "var", "public", ".*cache")
    shutil.copytree(ROOT, source, ignore=ignored)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PUBLISHER", "VIRTUAL_ENV"))}
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work / "dist"), str(source)],
        capture_output=True, text=True, timeout=600, env=clean,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = (work / "dist").glob("publisher-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=clean)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, timeout=900, env=clean,
    )  # fmt: skip
    offline = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable")
    if install.returncode != 0 and any(sign in install.stderr for sign in offline):
        pytest.skip(f"pip cannot reach a package index to install the wheel's dependencies: {install.stderr[-300:]}")
    assert install.returncode == 0, install.stderr
    yield Installed(venv, wheel)


def test_the_wheel_carries_templates_catalogues_demo_sample_config_and_migrations(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for name in ("publisher/templates/digest.html.j2", "publisher/templates/web/subscribe.html.j2",
                 "publisher/templates/messages/zh-CN.toml", "publisher/sample_config/publisher.toml",
                 "publisher/py.typed", "publisher/store/migrations/env.py",
                 "publisher/store/migrations/script.py.mako", "publisher/store/migrations/versions/0001_baseline.py",
                 "publisher/store/migrations/versions/0002_name_constraints.py"):  # fmt: skip
        assert name in names, name
    assert sum(name.startswith("publisher/demo/content/") for name in names) >= 40
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
    site_packages = next((installed.venv / "lib").glob("python3.*/site-packages"))
    assert (site_packages / "publisher" / "templates" / "index.html.j2").is_file()
    assert not list(site_packages.glob("__editable__*"))  # a real install, not a link to the checkout


def test_a_new_user_inits_builds_mails_and_serves_outside_the_checkout(installed: Installed, tmp_path: Path) -> None:
    assert not tmp_path.resolve().is_relative_to(ROOT)
    made = installed.run(tmp_path, "init", "site", "--site-title", "高新院", "--url", "https://www.example.org",
                         "--category", "高新院新闻", "--category", "政策解读")  # fmt: skip
    assert "publisher build" in made.stdout
    site = tmp_path / "site"

    installed.run(site, "check")
    installed.run(site, "build")
    for feed in ("rss.xml", "atom.xml"):
        parsed = feedparser.parse((site / "public" / feed).read_bytes())
        assert parsed.bozo == 0 and len(parsed.entries) == 2, feed
    assert (site / "public" / "index.html").is_file()

    installed.run(site, "subscribers", "add", "reader@example.org", "--name", "读者")
    preview = installed.run(site, "digest", "preview")
    assert "digest.html" in preview.stdout
    html = (site / "var" / "preview" / "digest.html").read_text(encoding="utf-8")
    assert "高新院周报" in html and "#b4232a" in html

    installed.run(site, "digest", "send")
    [sent] = list((site / "var" / "outbox").glob("*.eml"))
    message = email.message_from_bytes(sent.read_bytes(), policy=policy.default)
    assert message["To"] == "读者 <reader@example.org>" and message["List-Unsubscribe"]
    installed.run(site, "digest", "send")  # the same window again: nothing more
    assert len(list((site / "var" / "outbox").glob("*.eml"))) == 1

    installed.run(site, "theme", "export", "theme")
    assert (site / "theme" / "digest.html.j2").is_file()

    port = free_port()
    service = Service(None, site, port, program=[str(installed.venv / "bin" / "publisher")], env=installed.env)
    try:
        service.wait_until_serving()
        for path, expected in (("/", "高新院"), ("/subscribe", "订阅"), ("/healthz", '"status": "ok"')):
            response = requests.get(service.base + path, timeout=10)
            assert response.status_code == 200 and expected in response.text, (path, response.text[:300])
    finally:
        assert service.stop() == 0, service.output()


def test_the_installed_publisher_upgrades_a_0_1_0_store(installed: Installed, tmp_path: Path) -> None:
    """Alembic finds its scripts inside the installed package, not in the checkout."""
    from test_migrations import FIXTURE, fixture_config

    (tmp_path / "publisher.db").write_bytes((FIXTURE / "publisher.db").read_bytes())
    config = tmp_path / "publisher.toml"
    config.write_text(fixture_config(tmp_path / "publisher.db", tmp_path), encoding="utf-8")
    refused = installed.run(tmp_path, "--config", str(config), "build", code=2)
    assert "`publisher build` refused the store" in refused.stderr
    upgraded = installed.run(tmp_path, "--config", str(config), "db", "upgrade")
    assert "from revision 0.1.0 (before migrations) to" in upgraded.stdout
    assert "up to date" in installed.run(tmp_path, "--config", str(config), "db", "status").stdout
    installed.run(tmp_path, "--config", str(config), "build")
