"""What a reader chooses besides categories: the script (简体 or 繁體) and the cadence (weekly
or daily) of their digest, as `[digest] scripts` and `[digest] cadences` offer them.

One reading for every door: the subscribe and preferences forms (`from_form`, lenient: a value
the page did not offer is the default, as an unknown category is ignored), a CSV cell, a
command-line option and the console (`script`/`cadence`: any *known* script or cadence, even one
`[digest]` no longer offers, so an exported reader imports back with their choice and the
console saves a reader without resetting it; digest.reader_script and reader_cadence map a
choice not offered at send time. Only an unknown name is an error, naming the known ones).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .model import CADENCES, DAILY, WEEKLY
from .scripts import HANS, HANT, LABELS, SCRIPTS

_SCRIPT_NAMES = {s.lower(): s for s in SCRIPTS} | {label: s for s, label in LABELS.items()} | {
    "简体": HANS, "簡體": HANS, "繁体": HANT, "繁體": HANT,
}  # fmt: skip
_CADENCE_NAMES = {c: c for c in CADENCES} | {"每周": WEEKLY, "每週": WEEKLY, "每日": DAILY, "每天": DAILY}


@dataclass(frozen=True, slots=True)
class Choices:
    """A reader's script (None: the site's own) and cadence."""

    script: str | None
    cadence: str


@dataclass(frozen=True, slots=True)
class Offered:
    """The scripts and cadences readers may choose; the first cadence is the default."""

    scripts: tuple[str, ...]  # () : only the site's, no choice shown
    cadences: tuple[str, ...]
    site: str = HANS  # the site's own script (App.scripts.site), always allowed

    @classmethod
    def of(cls, scripts: Sequence[str], cadences: Sequence[str], site: str) -> Offered:
        """From `[digest] scripts` and `[digest] cadences` (`settings.digest`) and the site's script."""
        return cls(tuple(scripts), tuple(cadences), site)

    @property
    def default(self) -> Choices:
        return Choices(None, self.cadences[0])

    @property
    def choose_script(self) -> bool:
        """Whether the pages ask for a script: only when more than one is offered."""
        return len(self.scripts) > 1

    @property
    def choose_cadence(self) -> bool:
        return len(self.cadences) > 1

    def script(self, text: str) -> str | None:
        """A script as written (`zh-Hant`, `繁體`; empty: the site's, None), offered or not;
        ValueError when it is no script at all."""
        if not text.strip():
            return None
        found = _SCRIPT_NAMES.get(text.strip().lower()) or _SCRIPT_NAMES.get(text.strip())
        if found is None:
            offered = ", ".join(self.scripts) or f"{self.site} only: [digest] scripts is empty"
            raise ValueError(f"unknown script {text.strip()!r} (known: {', '.join(SCRIPTS)}; offered: {offered})")
        return found

    def cadence(self, text: str) -> str:
        """A cadence as written (`daily`, `每日`; empty: the default), offered or not;
        ValueError when it is no cadence at all."""
        if not text.strip():
            return self.cadences[0]
        found = _CADENCE_NAMES.get(text.strip().lower())
        if found is None:
            known, offered = ", ".join(CADENCES), ", ".join(self.cadences)
            raise ValueError(f"unknown cadence {text.strip()!r} (known: {known}; offered: {offered})")
        return found

    def from_form(self, get: Callable[[str], str | None], current: Choices | None = None) -> Choices:
        """What a form asked for, by its `script` and `cadence` fields (`get` reads one); a
        field the page did not show, or a value not offered, keeps `current` (default: the
        default choices)."""
        kept = current or self.default
        script, cadence = kept.script, kept.cadence
        if self.choose_script and get("script") is not None:
            try:
                asked = self.script(get("script") or "")
                script = asked if asked is None or asked in self.scripts else script
            except ValueError:
                pass
        if self.choose_cadence and get("cadence") is not None:
            try:
                asked_cadence = self.cadence(get("cadence") or "")
                cadence = asked_cadence if asked_cadence in self.cadences else cadence
            except ValueError:
                pass
        return Choices(script, cadence)

    def on_page(self) -> dict[str, list[str]]:
        """What the pages offer (`offered` in templates/web): each list empty when there is no
        choice; scripts are shown by `scripts.LABELS`, cadences by the catalogue's `[pages]`."""
        return {
            "scripts": list(self.scripts) if self.choose_script else [],
            "cadences": list(self.cadences) if self.choose_cadence else [],
        }
