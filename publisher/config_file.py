"""The configuration's file: where it is (`find_config`), and what it most likely says, read
before it is validated (`hints`). Importing this costs no pydantic: a build forks its work ahead
on the hints (build_ahead.py) while it validates the file (pydantic and the models are a fifth
of a cold build's start). Whatever the hints get wrong only costs that work, as `BuildAhead` is
then told what the validated settings say; anything odd (no file, TOML that does not parse, a
value of the wrong type) says nothing, and the validation (`config.load_settings`) reports it."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, NamedTuple

from .errors import ConfigError

# Where the configuration is looked for when neither --config nor $PUBLISHER_CONFIG names it: a
# site made by `publisher init` (run from its folder), then the project's demo.
DEFAULT_PATHS = (Path("publisher.toml"), Path("config/publisher.toml"))
DEFAULT_STORE_URL = "sqlite:///var/publisher.db"  # `[store] url` when not given


def find_config(given: Path | None) -> Path:
    """The configuration file to read: `given` (--config), else $PUBLISHER_CONFIG, else the first
    of DEFAULT_PATHS that exists. A file that is named but missing is reported when it is read."""
    if given is not None:
        return given
    from_env = os.environ.get("PUBLISHER_CONFIG", "")
    if from_env:
        return Path(from_env)
    for path in DEFAULT_PATHS:
        if path.is_file():
            return path
    tried = " nor ".join(f"./{path}" for path in DEFAULT_PATHS)
    problem = f"no configuration file: --config not given, $PUBLISHER_CONFIG not set, and neither {tried} exists"
    fix = "run `publisher init DIR` to make a site, then run publisher in DIR; or pass --config FILE"
    raise ConfigError(f"(in {Path.cwd()})", [("(file)", problem, fix)])


class Hints(NamedTuple):
    roots: list[str]  # the `path` of each files source, as `build_ahead` walks it
    unslugged: bool  # a category has no `slug` of its own
    store_url: str


def hints(config: Path) -> Hints:
    try:
        raw = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: TOMLDecodeError and UnicodeDecodeError
        return Hints([], False, "")
    sources, categories = _tables(raw, "sources"), _tables(raw, "categories")
    roots = [str(Path(s["path"])) for s in sources if s.get("type") == "files" and isinstance(s.get("path"), str)]
    store = raw.get("store")
    url = store.get("url", DEFAULT_STORE_URL) if isinstance(store, dict) else DEFAULT_STORE_URL
    return Hints(roots, any(not c.get("slug") for c in categories), url if isinstance(url, str) else "")


def _tables(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = raw.get(key)
    return [t for t in value if isinstance(t, dict)] if isinstance(value, list) else []
