"""Reading the configuration: TOML, validation into Settings with every problem at once, and the
secrets its `*_env` keys name. The only reader of TOML and the environment, with `config_file`
(where the file is, and what a build forks its work ahead on before this validates it)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from .checks import ValidParts, check_meaning
from .settings import Settings
from .sources import SOURCE_TYPES


def load_settings(path: Path) -> Settings:
    """Read and validate `path`; raise ConfigError listing every problem with its key path."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), [("(file)", "not found", _MISSING_FILE_FIX)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [("(file)", f"cannot read: {exc}", "")]) from exc
    except tomllib.TOMLDecodeError as exc:
        fix = "fix the TOML syntax there (strings need quotes; tables are [name])"
        raise ConfigError(str(path), [("(file)", str(exc), fix)]) from exc
    return validate(raw, str(path))


_MISSING_FILE_FIX = "pass --config FILE with the right path, or make a site with `publisher init DIR`"


def validate(raw: dict[str, Any], origin: str = "<config>") -> Settings:
    """Validate a parsed TOML mapping into Settings, collecting all problems: pydantic's, and the
    meaning checks of every section that validated, even when another one did not."""
    problems: list[tuple[str, str, str]] = []
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_explain(error) for error in exc.errors())
    problems.extend(check_meaning(ValidParts.of(settings) if settings is not None else ValidParts.salvage(raw)))
    if problems:
        raise ConfigError(origin, problems)
    assert settings is not None
    return settings


# Keys an earlier version had, with what replaced them.
RETIRED_KEYS = {
    "digest.max_attempts": "replaced by digest.retry_after, the waits between tries: remove it (the default, "
    '["1m", "5m", "15m", "1h", "4h"], is 6 tries over about 5 hours)',
}


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in SOURCE_TYPES and out.startswith("sources["):
            continue  # pydantic's discriminator step, not a key the user wrote
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _explain(error: Any) -> tuple[str, str, str]:
    key = _key_path(tuple(error["loc"]))
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind == "extra_forbidden" and key in RETIRED_KEYS:
        return key, "is no longer a key", RETIRED_KEYS[key]
    if kind == "extra_forbidden":
        return key, "unknown key", "remove it or fix its spelling (docs/configuration.md lists every key)"
    if kind == "missing":
        return key, "required key is missing", f"add `{key.rsplit('.', 1)[-1]} = ...`"
    if kind == "union_tag_invalid":
        return (
            f"{key}.type",
            f"unknown source type {ctx.get('tag')!r}",
            f"use one of: {', '.join(SOURCE_TYPES)}",
        )
    if kind == "union_tag_not_found":
        return f"{key}.type", "missing", f'add `type = "files"` (one of: {", ".join(SOURCE_TYPES)})'
    if kind == "literal_error":
        return key, f"{error['input']!r} is not allowed", f"use one of: {ctx.get('expected')}"
    if kind == "string_pattern_mismatch" and ".hosts" in key:
        hint = 'write the host alone, as "cdn.example.org" or "*.example.org"'
        return key, f"{error['input']!r} is not a host name", hint
    if kind == "string_pattern_mismatch" and ".topic_arns" in key:
        hint = 'the ARN of the SNS topic, as its page shows it: "arn:aws:sns:us-east-1:123456789012:ses-bounces"'
        return key, f"{error['input']!r} is not an SNS topic ARN", hint
    if kind == "string_pattern_mismatch" and key.endswith("_env"):
        hint = 'the name of the environment variable that holds the secret, e.g. "ALERT_WEBHOOK_URL"'
        return key, f"{error['input']!r} is not an environment variable's name (letters, digits, _)", hint
    if kind == "string_pattern_mismatch" and key.endswith("slug"):
        return key, f"{error['input']!r} is not a slug", "use lowercase ASCII letters, digits and -"
    if kind == "too_short" and key in ("categories", "sources"):
        return key, "at least one is needed", f"add a [[{key}]] table"
    return key, error["msg"], ""


def secret(env_name: str, key_path: str) -> str:
    """A secret from the environment variable that the config names at `key_path`.

    Read when the part that needs it starts, not at load time, so commands that send no mail
    run without mail secrets.
    """
    value = os.environ.get(env_name, "")
    if not value:
        raise ConfigError(
            "(environment)",
            [(key_path, f"the environment variable {env_name} is not set", f"export {env_name}=... before starting")],
        )
    return value


def optional_secret(env_name: str) -> str | None:
    """A secret that turns a feature on when the environment variable holds it, else None."""
    return os.environ.get(env_name) or None
