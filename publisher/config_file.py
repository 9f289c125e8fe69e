"""The configuration's file: where it is (`find_config`) and the defaults a command may need
before it validates the file. Importing this costs no pydantic (the settings' models are a
fifth of a cold build's start); `config.load_settings` reads and validates the file."""

from __future__ import annotations

import os
from pathlib import Path

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
