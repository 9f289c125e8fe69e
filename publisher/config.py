"""The only reader of TOML and the environment. Validates once and reports every problem at once."""

from __future__ import annotations

import ipaddress
import os
import re
import string
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined

from .errors import ConfigError
from .text import CONVERSIONS

# Where the configuration is looked for when neither --config nor $PUBLISHER_CONFIG names it: a
# site made by `publisher init` (run from its folder), then the project's demo.
DEFAULT_PATHS = (Path("publisher.toml"), Path("config/publisher.toml"))
_SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
_HOST = r"^(\*\.)?[\w-]+(\.[\w-]+)*\.?$|^\[?[0-9A-Fa-f:.]+\]?$"  # a name, *.name or an address


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteConfig(_Section):
    title: str = Field(min_length=1)
    url: str
    language: str = "zh-CN"
    timezone: str = "Asia/Shanghai"
    description: str = ""
    author: str = ""


class OutputConfig(_Section):
    dir: str = "public"
    base_url: str = ""  # where `dir` is served; empty: the site's URL


class StoreConfig(_Section):
    url: str = "sqlite:///var/publisher.db"


class TextConfig(_Section):
    convert: Literal[CONVERSIONS] = "none"  # type: ignore[valid-type]
    summary_length: int = Field(default=120, ge=10, le=2000)
    remove_glosses: bool = True


class FeedsConfig(_Section):
    max_items: int = Field(default=50, ge=1, le=1000)


class CategoryConfig(_Section):
    name: str = Field(min_length=1)
    slug: str | None = Field(default=None, pattern=_SLUG)
    description: str = ""


class FilesSourceConfig(_Section):
    type: Literal["files"]
    path: str
    name: str = ""
    default_category: str | None = None
    url_template: str | None = None

    @property
    def source_name(self) -> str:
        """The name that keys this source's articles (and their guids): stable across runs and
        machines, so by default the folder's own name, never its absolute path."""
        return self.name or Path(self.path).name or "files"


class _WebSourceConfig(_Section):
    """What every web source shares: the HTTP layer's politeness and patience (docs/sources.md)."""

    delay: float = Field(default=1.0, ge=0, le=600)  # seconds between requests to one host
    timeout: float = Field(default=30.0, gt=0, le=600)  # seconds for each read from the socket
    deadline: float = Field(default=120.0, gt=0, le=3600)  # seconds for one request whole
    run_deadline: float = Field(default=900.0, gt=0, le=86400)  # seconds for all of a run's requests
    robots: bool = True  # honour the site's robots.txt (turn off only for your own site)
    hosts: list[Annotated[str, Field(pattern=_HOST)]] = []  # more hosts than the configured URLs'
    allow_private: bool = False  # may reach loopback, private, link-local ... addresses (an intranet CMS)

    @property
    def url_template(self) -> None:
        return None

    @property
    def start_urls(self) -> tuple[str, ...]:
        """The configured URLs: their hosts (and `www.` twins) may always be read."""
        return (str(getattr(self, "url", "")),)


class FeedSourceConfig(_WebSourceConfig):
    """An upstream RSS or Atom feed (docs/sources.md)."""

    type: Literal["feed"]
    url: str
    category: str  # a category name or slug: where the feed's items go
    name: str = ""

    @property
    def source_name(self) -> str:
        """Stable across runs: the configured name, else the feed's host and path."""
        if self.name:
            return self.name
        parts = urlsplit(self.url)
        return f"{parts.hostname or 'feed'}{parts.path}".rstrip("/")

    @property
    def default_category(self) -> str | None:
        return self.category


class HtmlListConfig(_Section):
    pages: dict[str, list[str]] = Field(min_length=1)  # category name or slug -> first list pages
    links: str = Field(min_length=1)  # CSS selector of the article links on a list page
    next: str | None = None  # CSS selector of the link to the next list page
    url_pattern: str | None = None  # or list page URLs with {page}: 2, 3, ...
    max_pages: int = Field(default=5, ge=1, le=200)


class HtmlArticleConfig(_Section):
    title: str = "h1"
    body: str | None = None  # CSS selector; none: readability finds the main text
    meta: str | None = None  # CSS selector of the line with date and source; none: the whole page
    date: str | None = None  # regex, first group the date; none: the first date found
    date_format: str | None = None  # strptime format of that date; none: 2023-12-04, 2023年12月4日 ...
    source: str | None = None  # regex, first group the source (shown as the author)
    author: str | None = None  # CSS selector of the author


class HtmlSourceConfig(_WebSourceConfig):
    """The site's own list and article pages (docs/sources.md)."""

    type: Literal["html"]
    name: str = ""
    list: HtmlListConfig
    article: HtmlArticleConfig = HtmlArticleConfig()
    recheck_days: int = Field(default=0, ge=0, le=3650)  # read stored articles again after N days

    @property
    def start_urls(self) -> tuple[str, ...]:
        return tuple(url for urls in self.list.pages.values() for url in urls)

    @property
    def source_name(self) -> str:
        if self.name:
            return self.name
        first = next(iter(u for urls in self.list.pages.values() for u in urls), "")
        return urlsplit(first).hostname or "html"

    @property
    def default_category(self) -> None:
        return None


class JsonFieldsConfig(_Section):
    list: str = ""  # dotted path to the list of items ("": the answer is the list)
    id: str = "id"
    title: str = "title"
    date: str = "date"
    body: str = "content"
    url: str = "url"
    category: str = ""  # dotted path to a category name or slug; "": the source's `category`
    author: str = ""
    summary: str = ""


class JsonPagingConfig(_Section):
    kind: Literal["page", "offset", "next", "none"] = "page"
    page_size: int = Field(default=20, ge=1, le=10000)  # for offset paging
    next: str = ""  # for next paging: dotted path to the next page's URL
    max_pages: int = Field(default=5, ge=1, le=200)


class JsonSourceConfig(_WebSourceConfig):
    """Any JSON API (docs/sources.md)."""

    type: Literal["json"]
    url: str  # with {page} or {offset} for those kinds of paging
    name: str = ""
    category: str | None = None  # for items whose own category field is empty or absent
    fields: JsonFieldsConfig = JsonFieldsConfig()
    paging: JsonPagingConfig = JsonPagingConfig()

    @property
    def source_name(self) -> str:
        return self.name or urlsplit(self.url).hostname or "json"

    @property
    def default_category(self) -> str | None:
        return self.category


class WordPressSourceConfig(_WebSourceConfig):
    """A WordPress site's REST API (docs/sources.md)."""

    type: Literal["wordpress"]
    url: str  # the site's address, e.g. "https://blog.example.org"
    name: str = ""
    categories: dict[str, str] = {}  # WordPress category slug -> our category (name or slug)
    category: str | None = None  # for posts none of whose categories map to ours
    max_pages: int = Field(default=10, ge=1, le=1000)  # of 50 posts each, per run

    @property
    def source_name(self) -> str:
        return self.name or urlsplit(self.url).hostname or "wordpress"

    @property
    def default_category(self) -> str | None:
        return self.category


SourceConfig = Annotated[
    FilesSourceConfig | FeedSourceConfig | HtmlSourceConfig | JsonSourceConfig | WordPressSourceConfig,
    Field(discriminator="type"),
]
SOURCE_TYPES = ("files", "feed", "html", "json", "wordpress")
WebSourceConfig = FeedSourceConfig | HtmlSourceConfig | JsonSourceConfig | WordPressSourceConfig


_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class SmtpConfig(_Section):
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password_env: str = Field(default="", pattern=r"^(|[A-Za-z_][A-Za-z0-9_]*)$")
    timeout: float = Field(default=30.0, gt=0, le=600)


class ApiConfig(_Section):
    """One HTTP mail API: the key comes from the environment variable named here."""

    api_key_env: str = Field(pattern=_ENV_NAME)
    base_url: str = ""  # empty: the provider's documented default (e.g. EU: https://api.eu.mailgun.net)
    domain: str = ""  # Mailgun's sending domain
    message_stream: str = "broadcast"  # Postmark's stream for list mail


class OutboxConfig(_Section):
    dir: str = "var/outbox"


TRANSPORTS = ("outbox", "smtp", "mailgun", "sendgrid", "postmark", "resend")


class MailConfig(_Section):
    transport: Literal[TRANSPORTS] = "outbox"  # type: ignore[valid-type]
    smtp: SmtpConfig | None = None
    mailgun: ApiConfig | None = None
    sendgrid: ApiConfig | None = None
    postmark: ApiConfig | None = None
    resend: ApiConfig | None = None
    outbox: OutboxConfig = OutboxConfig()


class DigestConfig(_Section):
    """The weekly digest. Empty strings mean "derive from [site]" (docs/configuration.md)."""

    schedule: str = "0 8 * * mon"  # cron in the site's zone; day names, never numbers
    subject: str = ""  # Jinja template; empty: the default of the site's language
    sender: str = ""  # "高新院 <newsletter@example.org>"; empty: site title <newsletter@site host>
    reply_to: str = ""
    postal_address: str = ""  # the operator's postal address, in every footer (CAN-SPAM)
    list_name: str = ""  # empty: "<site title>周报" / "<site title> weekly"
    max_items_per_category: int = Field(default=10, ge=1, le=100)
    send_when_empty: bool = False
    messages_per_second: float = Field(default=10.0, ge=0)  # 0: as fast as the transport goes
    max_attempts: int = Field(default=3, ge=1, le=20)
    pause_after: int = Field(default=20, ge=1)  # errors in a row before the digest pauses
    unsubscribe_mailto: str = ""  # an address whose mail you process; adds mailto: to List-Unsubscribe


class WebConfig(_Section):
    public_url: str = ""  # where the subscription pages are reached; empty: the site's URL
    secret_key_env: str = Field(default="PUBLISHER_SECRET_KEY", pattern=_ENV_NAME)
    host: str = "127.0.0.1"  # `publisher run` / `serve` listen here
    port: int = Field(default=8080, ge=0, le=65535)
    trust_proxy: bool = False  # behind nginx: the client address is the last X-Forwarded-For
    trusted_proxy: str = "127.0.0.1"  # the proxy's address, whose X-Forwarded-For is believed
    connection_limit: int = Field(default=500, ge=10, le=100_000)  # open connections at once
    channel_timeout: int = Field(default=15, ge=1, le=3600)  # seconds before an idle connection is closed
    health_token_env: str = Field(default="PUBLISHER_HEALTH_TOKEN", pattern=_ENV_NAME)  # /healthz details
    subscribe_per_address: int = Field(default=3, ge=1)  # sign-up requests per address per hour
    subscribe_per_client: int = Field(default=20, ge=1)  # per client network (IPv4 /24, IPv6 /64) per hour
    confirmation_mails_per_day: int = Field(default=5, ge=1)  # sign-up e-mails per mailbox per day


class ScheduleConfig(_Section):
    ingest_every: int = Field(default=15, ge=1, le=1440)  # minutes between ingest + build runs
    misfire_grace: int = Field(default=360, ge=1, le=10080)  # minutes a missed run may start late


class ThemeConfig(_Section):
    """The operator's look (docs/themes.md); every key optional."""

    templates: str = ""  # a folder whose files override the bundled templates by name
    logo_url: str = ""  # an absolute https URL, shown atop the digest and the pages
    accent_color: str = "#b4232a"  # links, section headings, buttons
    intro: str = ""  # one line under the digest's masthead
    footer: str = ""  # text, or HTML (sanitised), at the foot of the digest and the pages


class Settings(_Section):
    site: SiteConfig
    output: OutputConfig = OutputConfig()
    store: StoreConfig = StoreConfig()
    text: TextConfig = TextConfig()
    feeds: FeedsConfig = FeedsConfig()
    categories: list[CategoryConfig] = Field(min_length=1)
    sources: list[SourceConfig] = Field(min_length=1)
    mail: MailConfig = MailConfig()
    digest: DigestConfig = DigestConfig()
    web: WebConfig = WebConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    theme: ThemeConfig = ThemeConfig()


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
    problems.extend(_check_meaning(_Valid.of(settings) if settings is not None else _Valid.salvage(raw)))
    if problems:
        raise ConfigError(origin, problems)
    assert settings is not None
    return settings


@dataclass(frozen=True)
class _Valid:
    """The parts of a configuration that validated, for the meaning checks: a section that did
    not is None, a list keeps its valid entries with their index (their problems are reported)."""

    site: SiteConfig | None
    output: OutputConfig | None
    store: StoreConfig | None
    categories: list[tuple[int, CategoryConfig]]
    sources: list[tuple[int, SourceConfig]]
    mail: MailConfig | None
    digest: DigestConfig | None
    web: WebConfig | None
    theme: ThemeConfig | None
    unchecked_labels: frozenset[str] = frozenset()  # names and slugs of categories that did not validate

    @classmethod
    def of(cls, settings: Settings) -> _Valid:
        return cls(
            settings.site, settings.output, settings.store, list(enumerate(settings.categories)),
            list(enumerate(settings.sources)), settings.mail, settings.digest, settings.web, settings.theme,
        )  # fmt: skip

    @classmethod
    def salvage(cls, raw: dict[str, Any]) -> _Valid:
        """Each section of `raw` validated on its own; a missing one with defaults takes them."""
        fields = Settings.model_fields
        sections = {
            name: _valid_or_none(fields[name].annotation, raw[name]) if name in raw else fields[name].default
            for name in ("site", "output", "store", "mail", "digest", "web", "theme")
        }
        sections = {name: None if value is PydanticUndefined else value for name, value in sections.items()}
        categories, sources, unchecked = [], [], set()
        for i, entry in enumerate(_entries(raw, "categories")):
            category = _valid_or_none(CategoryConfig, entry)
            if category is not None:
                categories.append((i, category))
            elif isinstance(entry, dict):  # a source may name it: not "not a configured category"
                unchecked |= {v for k, v in entry.items() if k in ("name", "slug") and isinstance(v, str)}
        for i, entry in enumerate(_entries(raw, "sources")):
            source = _valid_or_none(SourceConfig, entry)
            if source is not None:
                sources.append((i, source))
        return cls(categories=categories, sources=sources, unchecked_labels=frozenset(unchecked), **sections)


def _valid_or_none(kind: Any, value: Any) -> Any:
    """`value` validated as `kind`; when its only problems are unknown keys, without them (a
    typo must not hide the meaning of the rest); else None."""
    adapter = TypeAdapter(kind)
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        errors = exc.errors()
    tagged = kind is SourceConfig  # its errors' locations start with the `type` pydantic chose
    unknown = {e["loc"][-1] for e in errors if e["type"] == "extra_forbidden" and len(e["loc"]) == 1 + tagged}
    if len(unknown) < len(errors) or not isinstance(value, dict):
        return None
    try:
        return adapter.validate_python({k: v for k, v in value.items() if k not in unknown})
    except ValidationError:
        return None


def _entries(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key)
    return value if isinstance(value, list) else []


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
    if kind == "string_pattern_mismatch" and key.endswith("slug"):
        return key, f"{error['input']!r} is not a slug", "use lowercase ASCII letters, digits and -"
    if kind == "too_short" and key in ("categories", "sources"):
        return key, "at least one is needed", f"add a [[{key}]] table"
    return key, error["msg"], ""


def _check_meaning(valid: _Valid) -> list[tuple[str, str, str]]:
    """Checks pydantic's types cannot express: zones, URLs, uniqueness, references; each on the
    sections it needs, when they validated."""
    problems: list[tuple[str, str, str]] = []
    site = valid.site
    if site is not None:
        try:
            ZoneInfo(site.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            fix = 'use an IANA name such as "Asia/Shanghai"'
            problems.append(("site.timezone", f"unknown time zone {site.timezone!r}", fix))
        problems += _http_url("site.url", site.url, "https://www.example.org")
        if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", site.language):
            fix = 'use a tag such as "zh-CN" or "en"'
            problems.append(("site.language", f"{site.language!r} is not a language tag", fix))
    if valid.output is not None and valid.output.base_url:
        problems += _http_url("output.base_url", valid.output.base_url, "https://www.example.org/feeds")
    if valid.store is not None:
        problems += _store_url(valid.store.url)

    # Names and slugs share one namespace: front matter may use either.
    labels = [(f"categories[{i}].name", c.name) for i, c in valid.categories]
    labels += [(f"categories[{i}].slug", c.slug) for i, c in valid.categories if c.slug and c.slug != c.name]
    problems += _unique(labels, "give each category its own name and slug")
    problems += _unique(
        [(f"sources[{i}].name", source.source_name) for i, source in valid.sources],
        "give each source its own `name`",
    )
    if valid.mail is not None:
        problems += _check_mail(valid.mail)
    if valid.digest is not None:
        problems += _check_digest(valid.digest)
    if valid.theme is not None:
        problems += _check_theme(valid.theme)
    web = valid.web
    if web is not None and web.public_url:
        problems += _http_url("web.public_url", web.public_url, "https://news.example.org/newsletter")
        if not web.public_url.startswith("https://") and not is_loopback(web.public_url):
            fix = "one-click unsubscribe (RFC 8058) needs an https URL (http only for 127.0.0.1 or localhost)"
            problems.append(("web.public_url", "is not https", fix))

    if web is not None:
        try:
            ipaddress.ip_address(web.trusted_proxy)
        except ValueError:
            fix = "the IP address your proxy connects from, such as 127.0.0.1 for nginx on this machine"
            problems.append(("web.trusted_proxy", f"{web.trusted_proxy!r} is not an IP address", fix))

    known = {value for _key, value in labels} | valid.unchecked_labels
    for i, source in valid.sources:
        if source.default_category and source.default_category not in known:
            with_category = FeedSourceConfig | JsonSourceConfig | WordPressSourceConfig
            field = "category" if isinstance(source, with_category) else "default_category"
            problems.append(
                (
                    f"sources[{i}].{field}",
                    f"{source.default_category!r} is not a configured category",
                    "use the name or slug of one of the [[categories]]",
                )
            )
        if source.url_template:
            problems += _url_template(f"sources[{i}].url_template", source.url_template)
        if isinstance(source, FeedSourceConfig):
            problems += _http_url(f"sources[{i}].url", source.url, "https://other.example.org/feed.xml")
        if isinstance(source, HtmlSourceConfig):
            problems += _check_html(i, source, known)
        if isinstance(source, WordPressSourceConfig):
            problems += _http_url(f"sources[{i}].url", source.url, "https://blog.example.org")
            for wp_slug, ours in source.categories.items():
                if ours not in known:
                    fix = "map it to the name or slug of one of the [[categories]]"
                    problems.append(
                        (f"sources[{i}].categories.{wp_slug}", f"{ours!r} is not a configured category", fix)
                    )
        if isinstance(source, JsonSourceConfig):
            problems += _http_url(f"sources[{i}].url", source.url, "https://cms.example.org/api/articles?page={page}")
            wanted = {"page": "{page}", "offset": "{offset}"}.get(source.paging.kind)
            if wanted and wanted not in source.url:
                problems.append((f"sources[{i}].url", f"has no {wanted} for paging.kind {source.paging.kind!r}",
                                 f'put {wanted} where the page goes, or set paging.kind = "none"'))  # fmt: skip
            if source.paging.kind == "next" and not source.paging.next:
                problems.append((f"sources[{i}].paging.next", "missing", 'the path to the next URL, e.g. "links.next"'))
    return problems


def _check_mail(mail: MailConfig) -> list[tuple[str, str, str]]:
    problems: list[tuple[str, str, str]] = []
    if mail.transport != "outbox" and getattr(mail, mail.transport) is None:
        problems.append(
            (f"mail.{mail.transport}", "missing", f"add a [mail.{mail.transport}] table (docs/configuration.md)")
        )
    if mail.mailgun is not None and not mail.mailgun.domain:
        problems.append(("mail.mailgun.domain", "missing", 'add `domain = "mg.example.org"`, your sending domain'))
    for provider in ("mailgun", "sendgrid", "postmark", "resend"):
        api = getattr(mail, provider)
        if api is not None and api.base_url:
            problems += _http_url(f"mail.{provider}.base_url", api.base_url, "https://api.eu.mailgun.net")
    return problems


def _store_url(url: str) -> list[tuple[str, str, str]]:
    """A URL SQLAlchemy has a dialect for, whose driver is installed: checked without connecting."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    fix = 'use "sqlite:///var/publisher.db", or "postgresql+psycopg://user@host/db" (docs/configuration.md)'
    try:
        dialect = make_url(url).get_dialect()
    except NoSuchModuleError:
        return [("store.url", f"{url.split(':', 1)[0]!r} in {url!r} is not a database SQLAlchemy knows", fix)]
    except (ArgumentError, ValueError):
        return [("store.url", f"{url!r} is not a database URL", fix)]
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        fix = "install its driver (pip install 'publisher[postgres]' for postgresql+psycopg), or use sqlite"
        return [("store.url", f"the database driver for {url.split(':', 1)[0]!r} is not installed ({exc})", fix)]
    return []


def _check_digest(digest: DigestConfig) -> list[tuple[str, str, str]]:
    problems: list[tuple[str, str, str]] = []
    fields = digest.schedule.split()
    if len(fields) != 5:
        problems.append(
            ("digest.schedule", f"{digest.schedule!r} is not a 5-field cron line", 'write it like "0 8 * * mon"')
        )
    elif re.search(r"\d", fields[4]):
        # APScheduler counts day_of_week from Monday = 0, cron from Sunday = 0: names are unambiguous.
        problems.append(("digest.schedule", f"day of week {fields[4]!r} uses numbers", 'use names: "mon", "mon-fri"'))
    else:
        from apscheduler.triggers.cron import CronTrigger

        try:  # in UTC: a bad site.timezone is reported on its own
            CronTrigger.from_crontab(digest.schedule, timezone="UTC")
        except (ValueError, LookupError) as exc:
            problems.append(("digest.schedule", f"{digest.schedule!r}: {exc}", 'write it like "0 8 * * mon"'))
    for key in ("sender", "reply_to"):
        value = getattr(digest, key)
        if value and mailbox(value) is None:
            problems.append(
                (f"digest.{key}", f"{value!r} is not an address", 'write it like "高新院 <news@example.org>"')
            )
    if digest.unsubscribe_mailto and mailbox(digest.unsubscribe_mailto) is None:
        problems.append(("digest.unsubscribe_mailto", "is not an address", 'write it like "unsubscribe@example.org"'))
    if digest.subject:
        from .theme import SUBJECT_VARIABLES, subject_problem

        problem = subject_problem(digest.subject)
        if problem:
            problems.append(("digest.subject", problem, f"variables: {', '.join(SUBJECT_VARIABLES)}"))
    return problems


def _check_theme(theme: ThemeConfig) -> list[tuple[str, str, str]]:
    problems: list[tuple[str, str, str]] = []
    if theme.logo_url:
        problems += _http_url("theme.logo_url", theme.logo_url, "https://www.example.org/logo.png")
        parts = urlsplit(theme.logo_url)
        # Its origin goes into the pages' Content-Security-Policy: a plain host only.
        if not problems and (parts.username is not None or not re.fullmatch(r"[A-Za-z0-9.-]+", parts.hostname or "")
                             or re.search(r"[\s;,'\"]", theme.logo_url)):  # fmt: skip
            fix = "a plain https URL: no user@, no ; , quotes or spaces; an IDN host in its xn-- form"
            problem = f"{theme.logo_url!r} cannot be allowed in a Content-Security-Policy"
            problems.append(("theme.logo_url", problem, fix))
    if not re.fullmatch(r"#(?:[0-9a-fA-F]{3}){1,2}", theme.accent_color):
        problems.append(("theme.accent_color", f"{theme.accent_color!r} is not a colour", 'write it like "#b4232a"'))
    if len(theme.intro) > 300:
        problems.append(("theme.intro", "longer than 300 characters", "keep it to one line; the footer takes more"))
    return problems


def is_loopback(url: str) -> bool:
    """http://127.0.0.1:8080 and the like: a trial on one machine, where https is not needed.
    The host must be a loopback IP address or exactly `localhost`: a name such as
    `127.0.0.1.nip.io` resolves wherever its owner likes."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # an unbalanced [ in the host
        return False
    if parts.scheme not in ("http", "https"):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mailbox(text: str) -> Any:
    """`Name <addr>` or `addr` as an email.headerregistry.Address, None when it is not one."""
    from email.headerregistry import Address
    from email.utils import parseaddr

    name, addr = parseaddr(text)
    if "\r" in text or "\n" in text or not addr or addr.count("@") != 1:
        return None
    try:
        return Address(name, addr_spec=addr)
    except (ValueError, IndexError):
        return None


def _check_html(i: int, source: HtmlSourceConfig, known: set[str]) -> list[tuple[str, str, str]]:
    from cssselect import SelectorError, parse

    problems: list[tuple[str, str, str]] = []
    for category, urls in source.list.pages.items():
        if category not in known:
            fix = "use the name or slug of one of the [[categories]]"
            problems.append((f"sources[{i}].list.pages", f"{category!r} is not a configured category", fix))
        for url in urls:
            problems += _http_url(
                f"sources[{i}].list.pages.{category}", url, "https://www.example.org/news/list_1.html"
            )
    selectors = [("list.links", source.list.links), ("list.next", source.list.next)]
    selectors += [(f"article.{k}", getattr(source.article, k)) for k in ("title", "body", "meta", "author")]
    for key, selector in selectors:
        if selector:
            try:
                parse(selector)
            except SelectorError as exc:
                problems.append((f"sources[{i}].{key}", f"{selector!r} is not a CSS selector: {exc}", ""))
    for key in ("date", "source"):
        pattern = getattr(source.article, key)
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                fix = "write it in single quotes in TOML: date = '日期[:：]\\s*(\\S+)'"
                problems.append((f"sources[{i}].article.{key}", f"not a regular expression: {exc}", fix))
    if source.list.url_pattern and "{page}" not in source.list.url_pattern:
        problems.append((f"sources[{i}].list.url_pattern", "has no {page}", 'write it like ".../list_{page}.html"'))
    return problems


def _url_template(key: str, template: str) -> list[tuple[str, str, str]]:
    fix = 'write it like "https://www.example.org/news/{path}.html" ({path} and {stem} only)'
    try:
        fields = {name for _text, name, _spec, _conv in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        return [(key, f"is not a template: {exc}", fix)]
    if not fields & {"path", "stem"} or fields - {"path", "stem"}:
        return [(key, f"uses {sorted(fields) or 'no placeholder'}", fix)]
    return []


def _http_url(key: str, value: str, example: str) -> list[tuple[str, str, str]]:
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.hostname:
        return []
    return [(key, f"{value!r} is not an absolute http(s) URL", f'write it like "{example}"')]


def _unique(entries: list[tuple[str, str]], fix: str) -> list[tuple[str, str, str]]:
    """A problem for every value that an earlier entry already has."""
    first: dict[str, str] = {}
    problems = []
    for key, value in entries:
        if value in first:
            problems.append((key, f"{value!r} is already {first[value]}", fix))
        else:
            first[value] = key
    return problems


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
