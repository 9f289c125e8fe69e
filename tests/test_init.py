"""`publisher init`: a working site in an empty folder, its config honest about every key."""

from __future__ import annotations

import re
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result
from pydantic import BaseModel

from feedcheck import assert_valid_feed, parse_with_feedparser
from publisher.cli import main
from publisher.config import FilesSourceConfig, Settings, ThemeConfig, load_settings
from publisher.scaffold import DEFAULT_CATEGORIES
from test_docs import config_keys


def init(*args: str) -> Result:
    return CliRunner().invoke(main, ["init", *args], catch_exceptions=False)


@pytest.fixture
def site_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder made by plain `publisher init`, the current directory from then on."""
    monkeypatch.delenv("PUBLISHER_CONFIG", raising=False)
    folder = tmp_path / "new-site"  # does not exist yet
    result = init(str(folder))
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(folder)
    return folder


def test_init_then_build_there_writes_a_valid_feed_per_category(site_dir: Path) -> None:
    result = CliRunner().invoke(main, ["build"], catch_exceptions=False)  # ./publisher.toml, found
    assert result.exit_code == 0, result.output
    settings = load_settings(site_dir / "publisher.toml")
    assert [c.name for c in settings.categories] == list(DEFAULT_CATEGORIES["zh"])
    slugs = [p.parent.name for p in sorted((site_dir / "public").glob("*/rss.xml"))]
    assert len(slugs) == len(settings.categories)
    for slug in slugs:
        for name in ("rss.xml", "atom.xml", "feed.json"):
            assert_valid_feed(site_dir / "public" / slug / name)
        parsed = parse_with_feedparser((site_dir / "public" / slug / "rss.xml").read_bytes())
        assert len(parsed.entries) == 1, slug  # its example article
    site = parse_with_feedparser((site_dir / "public" / "atom.xml").read_bytes())
    assert len(site.entries) == len(settings.categories)
    assert len({e.updated for e in site.entries}) == len(site.entries)  # one atom:updated twice: a W3C warning
    assert (site_dir / "public" / "index.html").is_file()
    assert (site_dir / "templates" / "README.md").is_file()
    assert list((site_dir / "templates").iterdir()) == [site_dir / "templates" / "README.md"]


def test_the_examples_are_dated_today_in_the_sites_zone(tmp_path: Path) -> None:
    before = datetime.now(ZoneInfo("America/Chicago"))
    result = init(str(tmp_path / "s"), "--timezone", "America/Chicago", "--language", "en")
    after = datetime.now(ZoneInfo("America/Chicago"))
    assert result.exit_code == 0, result.output
    articles = sorted((tmp_path / "s" / "content").glob("*/*.md"))
    assert [a.parent.name for a in articles] == sorted(DEFAULT_CATEGORIES["en"])
    for article in articles:
        text = article.read_text(encoding="utf-8")
        dated = re.search(r"^date: (\S+) ", text, re.M)
        assert dated is not None and dated.group(1) in {f"{before:%Y-%m-%d}", f"{after:%Y-%m-%d}"}
        assert "Welcome to" in text  # in the site's language


def test_init_never_overwrites(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    assert init(str(folder)).exit_code == 0
    config = folder / "publisher.toml"
    config.write_text(config.read_text(encoding="utf-8") + "# mine\n", encoding="utf-8")
    article = next((folder / "content").glob("*/*.md"))
    article.write_text("mine", encoding="utf-8")
    files_before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    result = init(str(folder), "--site-title", "Other")
    assert result.exit_code == 1  # something was not written: scripts must notice
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == files_before
    for path in files_before:
        assert f"kept {path}" in result.stderr
    assert "created" not in result.stdout


def test_init_fills_what_is_missing_in_a_folder_with_other_files(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    (folder / "templates").mkdir(parents=True)
    (folder / "templates" / "README.md").write_text("my notes", encoding="utf-8")
    (folder / "notes.txt").write_text("keep", encoding="utf-8")
    result = init(str(folder))
    assert result.exit_code == 1
    assert (folder / "publisher.toml").is_file() and f"created {folder / 'publisher.toml'}" in result.stdout
    assert (folder / "templates" / "README.md").read_text(encoding="utf-8") == "my notes"
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "keep"


def test_options_fill_the_config_and_survive_quotes_and_backslashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    title = 'The "Daily" \\ Tribune: news\tand more'
    result = init(
        str(tmp_path / "s"), "--site-title", title, "--url", "https://news.example.com",
        "--category", 'Local "news"', "--category", "政策/解读", "--category", "C:\\path",
        "--language", "en", "--timezone", "Europe/Berlin",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    settings = load_settings(tmp_path / "s" / "publisher.toml")
    assert settings.site.title == title
    assert settings.site.url == "https://news.example.com"
    assert settings.site.language == "en" and settings.site.timezone == "Europe/Berlin"
    assert [c.name for c in settings.categories] == ['Local "news"', "政策/解读", "C:\\path"]
    # Each example article lands in its own category, whatever the name's characters.
    monkeypatch.chdir(tmp_path / "s")
    result = CliRunner().invoke(main, ["build", "--strict"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    titles = {
        "local-news": 'Welcome to Local "news"',
        "zheng-ce-jie-du": "Welcome to 政策/解读",
        "c-path": "Welcome to C:\\path",
    }
    for slug, title in titles.items():
        parsed = parse_with_feedparser((tmp_path / "s" / "public" / slug / "atom.xml").read_bytes())
        assert [entry.title for entry in parsed.entries] == [title], slug


def test_the_default_title_is_the_folders_name(tmp_path: Path) -> None:
    assert init(str(tmp_path / "报社")).exit_code == 0
    assert load_settings(tmp_path / "报社" / "publisher.toml").site.title == "报社"


@pytest.mark.parametrize(
    ("option", "value", "key"),
    [("--url", "www.example.org", "site.url"), ("--timezone", "Mars/Olympus", "site.timezone"),
     ("--language", "chinese simplified", "site.language"), ("--category", "", "categories[0].name")],
)  # fmt: skip
def test_bad_options_are_refused_before_anything_is_written(tmp_path: Path, option: str, value: str, key: str) -> None:
    result = init(str(tmp_path / "s"), option, value)
    assert result.exit_code == 2, result.output
    assert key in result.output
    assert not (tmp_path / "s").exists()


# --- the generated publisher.toml is honest about the Settings model ------------------------

_TABLE = re.compile(r"^(?:# )?(\[\[?)([a-z_.]+)\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^(?:# )?([a-z_]+) = (.*)$")


def keys_in(text: str) -> dict[str, tuple[Any, bool]]:
    """Every `key = value` of the file, commented or not, by its key path (`categories[].name`),
    with its value and whether the line is commented out."""
    found: dict[str, tuple[Any, bool]] = {}
    prefix = ""
    for line in text.splitlines():
        table = _TABLE.match(line)
        if table:
            prefix = table.group(2) + ("[]." if table.group(1) == "[[" else ".")
            continue
        key = _KEY.match(line)
        if key:
            value = tomllib.loads(f"v = {key.group(2)}")["v"]  # trailing comments are TOML too
            found.setdefault(prefix + key.group(1), (value, line.startswith("#")))
    return found


def model_field(path: str) -> Any:
    """The pydantic field at a key path of Settings (`sources[]` is the files source)."""
    model: type[BaseModel] = Settings
    parts = path.replace("[]", "").split(".")
    for part in parts[:-1]:
        annotation = model.model_fields[part].annotation
        if part == "sources":
            model = FilesSourceConfig
            continue
        args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
        model = args[0] if args else annotation
    return model.model_fields[parts[-1]]


def test_every_section_and_key_of_settings_is_in_the_generated_config(tmp_path: Path) -> None:
    assert init(str(tmp_path / "s")).exit_code == 0
    found = keys_in((tmp_path / "s" / "publisher.toml").read_text(encoding="utf-8"))
    expected = (config_keys(Settings) - {"sources"}) | {f"sources[].{k}" for k in FilesSourceConfig.model_fields}
    assert not expected - found.keys(), f"missing from the generated config: {sorted(expected - found.keys())}"
    assert not found.keys() - expected, f"not in Settings: {sorted(found.keys() - expected)}"
    for key, (value, commented) in found.items():
        if not commented:
            continue
        field = model_field(key)
        if field.is_required() or field.default in (None, "", {}, []):
            continue  # an example: the key has no default to show
        assert value == field.default, f"{key}: the comment shows {value!r}, the default is {field.default!r}"


def test_loading_the_generated_config_gives_the_models_defaults(tmp_path: Path) -> None:
    assert init(str(tmp_path / "s"), "--site-title", "T").exit_code == 0
    settings = load_settings(tmp_path / "s" / "publisher.toml")
    for name, field in Settings.model_fields.items():
        if not field.is_required() and name != "theme":
            assert getattr(settings, name) == field.default, name
    assert settings.theme == ThemeConfig(templates="templates")  # the empty folder init made, wired in
    assert settings.site.model_dump(exclude={"title", "url"}) == {
        "language": "zh-CN", "timezone": "Asia/Shanghai", "description": "", "author": "",
    }  # fmt: skip
    (source,) = settings.sources
    assert source == FilesSourceConfig(type="files", path="content")
    assert all(c.slug is None and c.description == "" for c in settings.categories)


def test_init_demo_writes_the_demo_site_which_builds_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBLISHER_CONFIG", raising=False)
    result = init("--demo", str(tmp_path / "demo"))
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(tmp_path / "demo")
    built = CliRunner().invoke(main, ["build"], catch_exceptions=False)
    assert built.exit_code == 0, built.output
    assert re.search(r"new articles\s+46\b", built.output), built.output
    assert len(list((tmp_path / "demo" / "public").glob("*/rss.xml"))) == 13
    again = init("--demo", str(tmp_path / "demo"))
    assert again.exit_code == 1 and "kept" in again.output  # nothing overwritten
