"""Every configuration problem in one report: the meaning checks (zones, cron, URLs, references)
run on each section that validated, even when another section has a wrong type; and a store URL
is checked for a dialect SQLAlchemy knows and an installed driver, without connecting."""

from __future__ import annotations

import importlib.util
import textwrap
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_config import MINIMAL

from publisher.cli import main
from publisher.config import validate
from publisher.errors import ConfigError

GOOD = MINIMAL.replace('[store]\nurl = "sqlite:///var/publisher.db"\n', "")  # each test says its own [store]
assert "[store]" not in GOOD


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        validate(tomllib.loads(textwrap.dedent(text)))
    return {key: message for key, message, _fix in caught.value.problems}


def test_types_and_meaning_are_reported_together() -> None:
    found = problems(
        """
        [site]
        title = "高新院"
        url = "www.example.org"
        timezone = "Asia/Beijing"
        [store]
        url = "nosuchdb://x"
        [text]
        convert = "simplify"
        [digest]
        schedule = "0 8 * * 1"
        [theme]
        accent_color = "red"
        [[categories]]
        name = "政策解读"
        [[sources]]
        type = "files"
        path = "content"
        default_category = "不存在"
        """
    )
    assert set(found) == {
        "text.convert",  # pydantic's
        "site.timezone", "site.url", "store.url", "digest.schedule", "theme.accent_color",
        "sources[0].default_category",
    }  # fmt: skip


def test_a_typo_in_a_section_does_not_hide_the_rest_of_it() -> None:
    found = problems(
        GOOD.replace('url = "https://www.example.org"', 'url = "x"\nlangauge = "en"').replace(
            "Asia/Shanghai", "Mars/Base"
        )
    )
    assert set(found) == {"site.langauge", "site.url", "site.timezone"}


def test_a_bad_entry_does_not_hide_the_checks_of_the_others() -> None:
    found = problems(
        GOOD
        + """
[[categories]]
name = "科技"
slug = "Not A Slug"
[[sources]]
type = "feed"
url = "not-a-url"
category = "科技"
[[sources]]
type = "files"
"""
    )
    # categories[2] is wrong, but a source naming it is not told the category does not exist
    assert set(found) == {"categories[2].slug", "sources[1].url", "sources[2].path"}


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("nosuchdb://x", "'nosuchdb' in 'nosuchdb://x' is not a database SQLAlchemy knows"),
        ("sqlite+nosuchdriver:///x.db", "is not a database SQLAlchemy knows"),
        ("not a url", "'not a url' is not a database URL"),
        ("mysql+pymysql://u@127.0.0.1/db", "the database driver for 'mysql+pymysql' is not installed"),
    ],
)
def test_the_store_url_needs_a_known_dialect_and_its_driver(url: str, said: str) -> None:
    if "pymysql" in url and importlib.util.find_spec("pymysql") is not None:
        pytest.skip("pymysql is installed here")
    found = problems(GOOD + f'[store]\nurl = "{url}"\n')
    assert said in found["store.url"]


@pytest.mark.parametrize("url", ["sqlite:///var/p.db", "sqlite://", "postgresql+psycopg://u@127.0.0.1/db"])
def test_good_store_urls_pass_without_connecting(url: str) -> None:
    if "psycopg" in url:
        pytest.importorskip("psycopg")
    validate(tomllib.loads(GOOD + f'[store]\nurl = "{url}"\n'))


def test_check_refuses_an_unknown_dialect_before_opening_anything(tmp_path: Path) -> None:
    config = tmp_path / "publisher.toml"
    config.write_text(GOOD + '[store]\nurl = "nosuchdb://x"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(config), "check"])
    assert result.exit_code == 2, result.output
    assert "store.url" in result.output and "nosuchdb" in result.output
    assert "Traceback" not in result.output
