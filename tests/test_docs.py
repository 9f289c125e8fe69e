"""The README and docs stay true: every command, option and config key is documented."""

from __future__ import annotations

import re
import tomllib

import click
from pydantic import BaseModel

from conftest import ROOT, every_command
from publisher.cli import main
from publisher.config import FeedSourceConfig, FilesSourceConfig, Settings

README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIG_DOC = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")


def ordered_config_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """The model's keys, dotted, in the order its fields are declared (and so read and checked)."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
        inner = args[0] if args else annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            suffix = "[]" if getattr(annotation, "__origin__", None) is list else ""
            keys += ordered_config_keys(inner, f"{prefix}{name}{suffix}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def config_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    return set(ordered_config_keys(model, prefix))


def test_readme_starts_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_every_command_and_option_is_in_the_readme() -> None:
    assert isinstance(main, click.Group)
    for option in main.params:
        for flag in option.opts:
            assert f"`{flag}" in README or f"/`{flag}`" in README, flag
    for name, command in every_command(main):
        if isinstance(command, click.Group):
            continue  # its commands are listed
        assert f"`{name}" in README, name
        for param in command.params:
            for flag in param.opts if isinstance(param, click.Option) else ():
                if flag not in ("--help", "-h"):
                    assert f"`{flag}`" in README, f"{name} {flag}"


def test_every_config_key_is_documented() -> None:
    keys = config_keys(Settings) | {f"sources[].{k}" for k in FilesSourceConfig.model_fields}
    keys -= {"sources"}
    missing = sorted(k for k in keys if f"`{k}`" not in CONFIG_DOC)
    assert not missing, f"undocumented config keys: {missing}"


def test_every_documented_key_exists() -> None:
    documented = set(re.findall(r"^\| `([a-z_\[\].]+)` \|", CONFIG_DOC, re.M))
    keys = config_keys(Settings) | {f"sources[].{k}" for k in FilesSourceConfig.model_fields}
    keys |= {f"sources[].{k}" for k in FeedSourceConfig.model_fields}  # the keys every web source shares
    assert documented <= keys, sorted(documented - keys)


def test_demo_config_sets_only_real_keys() -> None:
    raw = tomllib.loads((ROOT / "config" / "publisher.toml").read_text(encoding="utf-8"))
    from publisher.config import validate

    validate(raw)  # raises on any unknown or invalid key


def test_docs_links_resolve() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+\.md)\)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / target).is_file(), f"{doc.name} links to missing {target}"


def test_every_environment_variable_is_documented() -> None:
    used = {
        name
        for path in (ROOT / "publisher").rglob("*.py")
        for name in re.findall(r"PUBLISHER_[A-Z_]+", path.read_text())
    }
    assert {"PUBLISHER_CONFIG", "PUBLISHER_WORKERS"} <= used
    for name in used:
        assert f"`{name}`" in CONFIG_DOC, name


def test_every_web_source_key_is_in_sources_md() -> None:
    from publisher.config import FeedSourceConfig, HtmlSourceConfig, JsonSourceConfig, WordPressSourceConfig

    doc = (ROOT / "docs" / "sources.md").read_text(encoding="utf-8")
    keys = {k for k in FeedSourceConfig.model_fields if k != "type"}
    for model in (HtmlSourceConfig, JsonSourceConfig, WordPressSourceConfig):
        keys |= {k for k in config_keys(model) if k != "type" and k not in ("delay", "timeout", "robots")}
    missing = sorted(k for k in keys if f"`sources[].{k}`" not in doc)
    assert not missing, f"undocumented web source keys: {missing}"


def out_of_order(documented: list[str], code: list[str]) -> list[tuple[str, str]]:
    """Neighbours among the documented keys the code has whose order is not the code's."""
    position = {key: n for n, key in enumerate(code)}
    known = [key for key in documented if key in position]
    return [(a, b) for a, b in zip(known, known[1:], strict=False) if position[a] > position[b]]


def test_config_keys_are_documented_in_the_order_the_code_reads_them() -> None:
    """docs/configuration.md in the order of the settings' fields, and each web source's own
    keys in docs/sources.md in the order of its model's (the keys every web source shares
    follow them there, once)."""
    from publisher.config import HtmlSourceConfig, JsonSourceConfig, WordPressSourceConfig

    documented = re.findall(r"^\| `([a-z_\[\].]+)` \|", CONFIG_DOC, re.M)
    shared = [k for k in FeedSourceConfig.model_fields if k not in ("type", "url", "category", "name")]
    code = ordered_config_keys(Settings)
    at = code.index("sources")
    code[at : at + 1] = [f"sources[].{k}" for k in [*shared, *FilesSourceConfig.model_fields]]
    assert not out_of_order(documented, code)

    sections = re.split(r"^## ", (ROOT / "docs" / "sources.md").read_text(encoding="utf-8"), flags=re.M)
    for model in (FeedSourceConfig, HtmlSourceConfig, JsonSourceConfig, WordPressSourceConfig):
        kind = model.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
        section = next(s for s in sections if s.startswith(f"`{kind}`"))
        documented = re.findall(r"^\| `sources\[\]\.([a-z_.]+)` \|", section, re.M)
        own = [k for k in ordered_config_keys(model) if k not in shared]
        assert not out_of_order([k for k in documented if k not in shared], own), kind
