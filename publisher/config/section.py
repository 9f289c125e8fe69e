"""What every table of the configuration is: a frozen pydantic model refusing unknown keys, and
the patterns its keys share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"  # a key naming an environment variable (`*_env`)
OPTIONAL_ENV_NAME = r"^(|[A-Za-z_][A-Za-z0-9_]*)$"  # the same, or "" for none


class Section(BaseModel):
    """One table: a typo is an error (`extra="forbid"`), and a validated value never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
