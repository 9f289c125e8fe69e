"""`publisher init`: the files of a new site (a commented publisher.toml, an example article per
category, a templates folder), rendered from templates shipped in this package and written
without ever replacing a file that exists."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path, PurePosixPath
from zoneinfo import ZoneInfo

from jinja2 import Environment, StrictUndefined

from ..config import validate
from ..errors import PublisherError
from ..text import slugify

CONFIG_NAME = "publisher.toml"
DEFAULT_CATEGORIES = {"zh": ("新闻", "通知公告"), "en": ("News", "Announcements")}

# Characters a file name may not hold on some system the folder may be copied to (Windows, zip).
_UNSAFE_IN_FOLDER = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')


@dataclass(frozen=True)
class SiteSpec:
    """What `publisher init` is told about the new site."""

    title: str
    url: str
    language: str = "zh-CN"
    timezone: str = "Asia/Shanghai"
    categories: tuple[str, ...] = ()  # empty: DEFAULT_CATEGORIES of the language

    @property
    def chinese(self) -> bool:
        return self.language.lower().startswith("zh")

    def category_names(self) -> tuple[str, ...]:
        return self.categories or DEFAULT_CATEGORIES["zh" if self.chinese else "en"]


@dataclass
class ScaffoldReport:
    """The files written, and those that existed and were left as they were."""

    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def toml_string(text: str) -> str:
    """`text` as a TOML basic string: quotes, backslashes and control characters escaped."""
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    out = []
    for char in text:
        if char in escapes:
            out.append(escapes[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


# What YAML may not hold unescaped, beyond the C0 controls that JSON escapes already.
_YAML_UNPRINTABLE = re.compile("[\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")


def yaml_string(text: str) -> str:
    """`text` as a double-quoted YAML scalar (JSON's string syntax is a subset of YAML's)."""
    quoted = json.dumps(text, ensure_ascii=False)
    return _YAML_UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _environment() -> Environment:
    env = Environment(autoescape=False, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)  # fmt: skip
    env.filters["toml"] = toml_string
    env.filters["yaml"] = yaml_string
    return env


def _shipped(name: str) -> str:
    """A file shipped in this package (package data, so it is in the wheel too)."""
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


def category_folder(name: str, index: int) -> str:
    """The folder under content/ for a category: its name when that is a safe file name on any
    system, else its pinyin slug, else `category-N`. The example's front matter names the
    category anyway, so the folder only keeps the files tidy."""
    if name.strip() == name and not _UNSAFE_IN_FOLDER.search(name) and name[:1] not in ("", ".", "_"):
        if len(name.encode("utf-8")) <= 120:
            return name
    return slugify(name) or f"category-{index + 1}"


def render_site(spec: SiteSpec, now: datetime) -> dict[PurePosixPath, str]:
    """Every file of the new site, by its path relative to the site's folder. Pure: `now` is
    the moment in the site's zone that the example articles are dated.

    Raises PublisherError when the options make an invalid configuration (every problem listed).
    """
    env = _environment()
    names = spec.category_names()
    categories = [{"name": name, "slug": slugify(name)} for name in names]
    config = env.from_string(_shipped("publisher.toml.j2")).render(
        title=spec.title, url=spec.url, language=spec.language, timezone=spec.timezone, categories=categories
    )
    validate(tomllib.loads(config), CONFIG_NAME)  # ConfigError names the key (site.url, ...)
    article = env.from_string(_shipped("article.zh.md.j2" if spec.chinese else "article.en.md.j2"))
    site: dict[PurePosixPath, str] = {PurePosixPath(CONFIG_NAME): config}
    folders = set()
    for index, name in enumerate(names):
        folder = category_folder(name, index)
        if folder.lower() in folders:  # two names that only differ in case, or share a slug
            folder = f"{folder}-{index + 1}"
        folders.add(folder.lower())
        path = PurePosixPath("content", folder, f"{now:%Y-%m-%d}-welcome.md")
        # A minute apart: two entries of the site's feed with one atom:updated are a W3C warning.
        # (never before today's midnight: "dated today" holds, and at 00:00 a warning is all it costs)
        date = f"{max(now - timedelta(minutes=index), now.replace(hour=0, minute=0)):%Y-%m-%d %H:%M}"
        site[path] = article.render(category=name, title=spec.title, date=date, timezone=spec.timezone)
    site[PurePosixPath("templates", "README.md")] = _shipped("templates-README.md")
    return site


def demo_site() -> dict[PurePosixPath, bytes]:
    """The demo `make run` serves (13 categories, 46 articles), from the package's own copy: its
    configuration with the content folder at `content/`, and the content as shipped (some of it
    GB18030, so bytes)."""
    config = (files("publisher.sample_config") / CONFIG_NAME).read_text(encoding="utf-8")
    config = config.replace('path = "demo/content"', 'path = "content"  ').replace(
        "(the project root\n# for `make run`)", "(this folder)"
    )
    site = {PurePosixPath(CONFIG_NAME): config.encode("utf-8")}
    content = Path(str(files("publisher.demo"))) / "content"
    for path in sorted(content.rglob("*")):
        if path.is_file():
            site[PurePosixPath("content", *path.relative_to(content).parts)] = path.read_bytes()
    return site


def init_site(root: Path, spec: SiteSpec | None, now: datetime | None = None) -> ScaffoldReport:
    """Write the new site's files under `root` (made when missing); spec None: the demo site. A
    file that exists is left as it is and reported in `kept`: init never overwrites."""
    if spec is None:
        rendered = demo_site()
    else:
        if now is None:  # an unknown zone is reported by render_site, as site.timezone
            now = datetime.now(_zone(spec.timezone) or UTC)
        rendered = {path: text.encode("utf-8") for path, text in render_site(spec, now).items()}
    report = ScaffoldReport()
    for relative, data in rendered.items():
        path = root.joinpath(*relative.parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "xb") as handle:  # "x": never replace a file
                handle.write(data)
        except FileExistsError:
            report.kept.append(path)
            continue
        except OSError as exc:
            hint = "check the folder's permissions"
            raise PublisherError(f"cannot write {path}: {exc.strerror or exc}", hint) from exc
        report.written.append(path)
    return report


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return None
