"""The two scripts Chinese readers read: 简体 (zh-Hans) and 繁體 (zh-Hant).

The store keeps every article in the site's own script (what `[text] convert` made it). A
reader who chose the other script gets the digest converted with OpenCC as it is rendered, and
`[feeds] scripts` publishes the feeds in both; `[text] traditional` and `[text] simplified` say
which OpenCC conversion makes each (Taiwan's or Hong Kong's forms, or the plain ones). Links
survive a conversion: the sanitiser percent-encodes every URL to ASCII first."""

from __future__ import annotations

from dataclasses import dataclass

from .text import convert_script

HANS = "zh-Hans"
HANT = "zh-Hant"
SCRIPTS = (HANS, HANT)
LABELS = {HANS: "简体", HANT: "繁體"}  # how a reader is offered each, in its own script
TO_TRADITIONAL = ("s2t", "s2tw", "s2twp", "s2hk")
TO_SIMPLIFIED = ("t2s", "tw2s", "tw2sp", "hk2s")
_TRADITIONAL_LANGUAGES = ("zh-tw", "zh-hk", "zh-mo", "zh-hant")
# The language tag of text a conversion made: Taiwan's and Hong Kong's forms name their region,
# the plain conversions only the script (tw2sp also turns Taiwan's phrases into the mainland's).
LANGUAGES = {
    "s2t": "zh-Hant", "s2tw": "zh-TW", "s2twp": "zh-TW", "s2hk": "zh-HK",
    "t2s": "zh-Hans", "tw2s": "zh-Hans", "tw2sp": "zh-CN", "hk2s": "zh-Hans",
}  # fmt: skip


def site_script(language: str, convert: str) -> str:
    """The script the site's articles are stored in: what `[text] convert` produces, else the
    one `[site] language` implies (zh-TW, zh-HK and zh-Hant-* are Traditional)."""
    if convert in TO_SIMPLIFIED:
        return HANS
    if convert in (*TO_TRADITIONAL, "t2tw", "t2hk"):
        return HANT
    return HANT if language.lower().startswith(_TRADITIONAL_LANGUAGES) else HANS


def path_segment(script: str) -> str:
    """The folder of a script's second set of feeds and pages: `zh-hant`, `zh-hans`."""
    return script.lower()


@dataclass(frozen=True, slots=True)
class ScriptConversion:
    """How text in the site's script becomes a reader's: pure, OpenCC's converters cached."""

    site: str  # HANS or HANT: the script articles are stored in
    traditional: str = "s2t"  # the OpenCC conversion from Simplified to Traditional
    simplified: str = "t2s"  # and back

    def mode(self, script: str | None) -> str:
        """The OpenCC conversion to `script` (None: the site's own, nothing to do)."""
        if script is None or script == self.site:
            return "none"
        return self.traditional if script == HANT else self.simplified

    def language(self, script: str, site_language: str) -> str:
        """The language tag of text in `script`: the site's own for its script, else the tag of
        the conversion that makes it (`zh-Hant`, `zh-TW`, `zh-HK`, `zh-Hans`, `zh-CN`)."""
        mode = self.mode(script)
        return site_language if mode == "none" else LANGUAGES[mode]

    def convert(self, text: str, script: str | None) -> str:
        """`text` (plain or sanitised HTML) in `script`."""
        return convert_script(text, self.mode(script))
