"""The operator's look: their templates folder, logo, accent colour, digest intro and footer, and
the message catalogue of every word a reader sees. Read once; renderers take a `Theme`.

A theme folder holds files named like the bundled ones (`templates/` in the package): each one
there replaces the bundled file, the rest fall back. `messages/<language>.toml` in it overrides
catalogue entries one key at a time. `check_theme` compiles every override, so a syntax error
is reported with its file and line when the theme is loaded, never when a digest goes out.
"""

from __future__ import annotations

import colorsys
import html
import re
import string
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ThemeError
from .templating import TEMPLATES, environment

if TYPE_CHECKING:
    from jinja2 import Environment

DEFAULT_ACCENT = "#b4232a"
Messages = dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Theme:
    """What every page and e-mail shows besides its content."""

    templates: Path | None = None  # the operator's overrides; None: the bundled look
    logo_url: str = ""
    accent_color: str = DEFAULT_ACCENT
    intro: str = ""  # one line under the digest's masthead
    footer_html: str = ""  # sanitised
    footer_text: str = ""  # the same, as plain text for text/plain mail
    consent: str = ""  # the words beside every sign-up form, kept with each sign-up as its consent
    privacy: str = ""  # the privacy line of every mail and page
    privacy_url: str = ""  # the privacy policy that line links to

    @property
    def accent_dark(self) -> str:
        """The accent for dark mode: the same hue, light enough to read on a dark background."""
        return lighter(self.accent_color)

    @property
    def environment(self) -> Environment:
        return environment(self.templates)

    def messages(self, language: str) -> Messages:
        return catalogue(catalogue_name(language), self.templates)

    def context(self) -> dict[str, str]:
        """The `theme` variable of every template."""
        return {
            "logo_url": self.logo_url,
            "accent_color": self.accent_color,
            "accent_dark": self.accent_dark,
            "intro": self.intro,
            "footer_html": self.footer_html,
            "footer_text": self.footer_text,
            "consent": self.consent,
            "privacy": self.privacy,
            "privacy_url": self.privacy_url,
        }


_LINK = re.compile(r'<a\b[^>]*\bhref="([^"]*)"[^>]*>(.*?)</a>', re.IGNORECASE | re.DOTALL)


def make_theme(
    templates: Path | None,
    logo_url: str,
    accent_color: str,
    intro: str,
    footer: str,
    site_url: str,
    reader_notes: tuple[str, str, str] = ("", "", ""),
    language: str = "zh-CN",
) -> Theme:
    """A Theme from the [theme] table: the footer is text unless it holds a tag, then sanitised
    HTML with links made absolute against the site (a mail has no base); its text version keeps
    each link as "text (url)". `reader_notes` is (consent, privacy, privacy_url) as configured;
    an empty consent or privacy text is the catalogue's (`pages.consent`, `pages.privacy`)."""
    from .text import html_to_text, sanitize_html

    if "<" in footer:
        footer_html = sanitize_html(footer, site_url)
        footer_text = html_to_text(_LINK.sub(lambda m: f"{m.group(2)} ({html.unescape(m.group(1))})", footer_html))
    else:
        footer_html, footer_text = html.escape(footer, quote=False), footer
    consent, privacy, privacy_url = reader_notes
    pages = catalogue(catalogue_name(language), templates)["pages"] if not (consent and privacy) else {}
    return Theme(
        templates,
        logo_url,
        accent_color.lower(),
        " ".join(intro.split()),
        footer_html,
        footer_text,
        " ".join((consent or pages["consent"]).split()),
        " ".join((privacy or pages["privacy"]).split()),
        privacy_url,
    )


def catalogue_name(language: str) -> str:
    """The catalogue for a site language: English for en-*, else Simplified Chinese."""
    return "en" if language.lower().startswith("en") else "zh-CN"


@cache
def catalogue(name: str, overrides: Path | None = None) -> Messages:
    """The bundled `messages/<name>.toml`, with the theme's entries of the same name laid over it."""
    merged = _read_catalogue(TEMPLATES / "messages" / f"{name}.toml")
    if overrides is None or not (overrides / "messages" / f"{name}.toml").is_file():
        return merged
    path = overrides / "messages" / f"{name}.toml"
    for section, entries in _read_catalogue(path).items():
        if section not in merged or not isinstance(entries, dict):
            raise ThemeError(f"{path}: unknown section [{section}]", f"use one of: {', '.join(merged)}")
        for key, value in entries.items():
            if key not in merged[section]:
                raise ThemeError(
                    f"{path}: unknown key {section}.{key}",
                    f"the keys of [{section}] are in the bundled messages/{name}.toml (`publisher theme export`)",
                )
            for entry, text, bundled in _entries(path, f"{section}.{key}", value, merged[section][key]):
                if _is_jinja(bundled):
                    problem = subject_problem(text)
                    if problem:
                        hint = f"variables: {', '.join(SUBJECT_VARIABLES)}"
                        raise ThemeError(f"{path}: {entry}: {problem}", hint)
                    continue
                unknown = _fields(text) - _fields(bundled)
                if unknown:
                    known = ", ".join(f"{{{f}}}" for f in sorted(_fields(bundled))) or "none"
                    message = f"{path}: {entry} uses {{{sorted(unknown)[0]}}}, which publisher does not fill in"
                    raise ThemeError(message, f"the bundled entry uses: {known}")
            if isinstance(value, dict):
                merged[section][key] = {**merged[section][key], **value}
            else:
                merged[section][key] = value
    return merged


def _entries(path: Path, name: str, value: Any, bundled: Any) -> list[tuple[str, str, str]]:
    """(key path, override, bundled) for each text of an entry (a table's entries one by one)."""
    if isinstance(value, dict) and isinstance(bundled, dict):
        pairs = [(f"{name}.{k}", v, bundled.get(k)) for k, v in value.items()]
    else:
        pairs = [(name, value, bundled)]
    for entry, text, expected in pairs:
        if expected is None:
            hint = "the bundled catalogue has every key (`publisher theme export`)"
            raise ThemeError(f"{path}: unknown key {entry}", hint)
        if type(text) is not type(expected):
            wanted = "a string" if isinstance(expected, str) else f"a {type(expected).__name__}"
            raise ThemeError(f"{path}: {entry} must be {wanted}, not {type(text).__name__}", "")
    return [(entry, text, str(expected)) for entry, text, expected in pairs if isinstance(text, str)]


SUBJECT_VARIABLES = ("site", "list_name", "date", "count", "first_title", "categories")


def subject_problem(template: str) -> str | None:
    """What is wrong with a digest subject template (sandboxed Jinja), rendered once with sample
    values so that a misspelt variable is caught before a digest is sent; None when it renders."""
    from jinja2 import StrictUndefined, TemplateError
    from jinja2.sandbox import SandboxedEnvironment

    sample = {"site": "高新院", "list_name": "高新院周报", "date": "2026年11月30日", "count": 3,
              "first_title": "标题", "categories": "政策解读、科技创新"}  # fmt: skip
    try:
        SandboxedEnvironment(undefined=StrictUndefined).from_string(template).render(sample)
    except TemplateError as exc:
        return f"template error: {exc}"
    return None


def _is_jinja(text: str) -> bool:
    return "{{" in text or "{%" in text


def _fields(text: str) -> set[str]:
    """The {name} fields of a str.format text."""
    try:
        return {f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(text) if f}
    except ValueError:
        return {"(unbalanced braces)"}


def _read_catalogue(path: Path) -> Messages:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ThemeError(f"{path}: cannot read: {exc}", "") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ThemeError(f"{path}: {exc}", "fix the TOML syntax there") from exc


def check_theme(theme: Theme) -> None:
    """Compile every template in the theme folder and read its catalogues; ThemeError names the
    first broken file and line. Cheap (milliseconds), so every command that renders calls it."""
    if theme.templates is None:
        return
    if not theme.templates.is_dir():
        hint = "create it (`publisher theme export DIR` copies the bundled templates), or remove [theme] templates"
        raise ThemeError(f"theme.templates: {str(theme.templates)!r} is not a folder", hint)
    from jinja2 import TemplateSyntaxError

    env = theme.environment
    for path in sorted(theme.templates.rglob("*.j2")):
        name = path.relative_to(theme.templates).as_posix()
        try:
            env.get_template(name)
        except TemplateSyntaxError as exc:
            hint = "fix the template, or delete it to use the bundled one"
            raise ThemeError(f"{path}, line {exc.lineno}: {exc.message}", hint) from exc
        except UnicodeDecodeError as exc:
            raise ThemeError(f"{path}: not UTF-8 ({exc.reason})", "save it as UTF-8") from exc
    for name in ("zh-CN", "en"):
        catalogue(name, theme.templates)


def lighter(color: str) -> str:
    """`color` with its lightness raised to at least 72 %: an accent that reads on dark grey."""
    red, green, blue = _rgb(color)
    hue, lightness, saturation = colorsys.rgb_to_hls(red, green, blue)
    r, g, b = colorsys.hls_to_rgb(hue, max(lightness, 0.72), saturation)
    return "#{:02x}{:02x}{:02x}".format(*(round(c * 255) for c in (r, g, b)))


def contrast_with_white(color: str) -> float:
    """WCAG 2 contrast ratio of white text on `color` (buttons); 4.5 is the floor for body text."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(c) for c in _rgb(color))
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    return 1.05 / (luminance + 0.05)


def _rgb(color: str) -> tuple[float, float, float]:
    digits = color.lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return (int(digits[0:2], 16) / 255, int(digits[2:4], 16) / 255, int(digits[4:6], 16) / 255)
