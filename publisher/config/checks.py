"""What pydantic's types cannot say: zones, URLs, uniqueness, references, cron lines, templates.

`check_meaning` runs on every part of a configuration that validated (`ValidParts`), so all
problems are reported together, each with its key path and the fix. The site's and the
service's tables are checked here, the mail tables in `config.mail_checks`, the sources in
`config.source_checks`; `config.addresses` checks one URL or address.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined

from .addresses import http_url, is_loopback, listen_address, web_origin
from .mail import BouncesConfig, DigestConfig, FanoutConfig, HooksConfig, MailConfig
from .mail_checks import check_bounces, check_digest, check_fanout, check_hooks, check_mail
from .settings import (
    AdminConfig,
    CategoryConfig,
    OutputConfig,
    Settings,
    SiteConfig,
    StoreConfig,
    ThemeConfig,
    WebConfig,
    WebSubConfig,
)
from .source_checks import check_sources
from .sources import SourceConfig

_URL_CHARACTERS = "%:/?#[]@!$&'()*+,;=~"  # RFC 3986's, besides letters, digits and -._ (quote's own)


@dataclass(frozen=True)
class ValidParts:
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
    bounces: BouncesConfig | None = None
    hooks: HooksConfig | None = None
    admin: AdminConfig | None = None
    websub: WebSubConfig | None = None
    fanout: FanoutConfig | None = None

    @classmethod
    def of(cls, settings: Settings) -> ValidParts:
        return cls(
            settings.site, settings.output, settings.store, list(enumerate(settings.categories)),
            list(enumerate(settings.sources)), settings.mail, settings.digest, settings.web, settings.theme,
            bounces=settings.bounces, hooks=settings.hooks, admin=settings.admin, websub=settings.websub,
            fanout=settings.fanout,
        )  # fmt: skip

    @classmethod
    def salvage(cls, raw: dict[str, Any]) -> ValidParts:
        """Each section of `raw` validated on its own; a missing one with defaults takes them."""
        fields = Settings.model_fields
        names = "site output store mail digest fanout web theme bounces hooks admin websub".split()
        sections = {
            name: _valid_or_none(fields[name].annotation, raw[name]) if name in raw else fields[name].default
            for name in names
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


def check_meaning(valid: ValidParts) -> list[tuple[str, str, str]]:
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
        problems += http_url("site.url", site.url, "https://www.example.org")
        if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", site.language):
            fix = 'use a tag such as "zh-CN" or "en"'
            problems.append(("site.language", f"{site.language!r} is not a language tag", fix))
    if valid.output is not None and valid.output.base_url:
        problems += http_url("output.base_url", valid.output.base_url, "https://www.example.org/feeds")
    if valid.store is not None:
        problems += _store_url(valid.store.url)

    # Names and slugs share one namespace: front matter may use either.
    labels = [(f"categories[{i}].name", c.name) for i, c in valid.categories]
    labels += [(f"categories[{i}].slug", c.slug) for i, c in valid.categories if c.slug and c.slug != c.name]
    problems += _unique(labels, "give each category its own name and slug")
    problems += _reserved_slugs(valid.categories)
    for i, category in valid.categories:
        if category.url:
            problems += http_url(f"categories[{i}].url", category.url, "https://www.example.org/news/")
    problems += _unique(
        [(f"sources[{i}].name", source.source_name) for i, source in valid.sources],
        "give each source its own `name`",
    )
    if valid.mail is not None:
        problems += check_mail(valid.mail)
    if valid.digest is not None:
        problems += check_digest(valid.digest)
    if valid.fanout is not None:
        problems += check_fanout(valid.fanout, valid.store.url if valid.store is not None else None)
    if valid.theme is not None:
        problems += _check_theme(valid.theme)
    if valid.hooks is not None:
        problems += check_hooks(valid.hooks)
    if valid.bounces is not None:
        problems += check_bounces(valid.bounces)
    web = valid.web
    if web is not None and web.public_url:
        problems += http_url("web.public_url", web.public_url, "https://news.example.org/newsletter")
        if not web.public_url.startswith("https://") and not is_loopback(web.public_url):
            fix = "one-click unsubscribe (RFC 8058) needs an https URL (http only for 127.0.0.1 or localhost)"
            problems.append(("web.public_url", "is not https", fix))

    if web is not None:
        try:
            ipaddress.ip_address(web.trusted_proxy)
        except ValueError:
            fix = "the IP address your proxy connects from, such as 127.0.0.1 for nginx on this machine"
            problems.append(("web.trusted_proxy", f"{web.trusted_proxy!r} is not an IP address", fix))
        for i, entry in enumerate(web.embed_origins):
            origin = web_origin(entry)
            if origin is None or entry.rstrip("/").lower() != origin:
                fix = 'an origin alone, scheme and host (and port): "https://www.example.org"'
                problems.append((f"web.embed_origins[{i}]", f"{entry!r} is not an origin", fix))

    if valid.admin is not None:
        problems += _check_admin(valid.admin)
    if valid.websub is not None:
        problems += _check_websub(valid.websub)

    known = {value for _key, value in labels} | valid.unchecked_labels
    problems += check_sources(valid.sources, known, [c for _i, c in valid.categories])
    return problems


def _reserved_slugs(categories: list[tuple[int, CategoryConfig]]) -> list[tuple[str, str, str]]:
    """A configured slug that is one of the output folder's own folders (`zh-hant/`, `zh-hans/`,
    `digests/`): its feeds and page would overwrite theirs, or theirs its. A slug made from the
    name never is one (the store adds `-2`)."""
    from ..output import RESERVED_SLUGS

    return [
        (f"categories[{i}].slug", f"{c.slug!r} is {RESERVED_SLUGS[c.slug]}",
         f'give the category another slug, such as "{c.slug}-news"; {", ".join(RESERVED_SLUGS)} are publisher\'s own')
        for i, c in categories if c.slug in RESERVED_SLUGS
    ]  # fmt: skip


def _store_url(url: str) -> list[tuple[str, str, str]]:
    """A URL SQLAlchemy has a dialect for, whose driver is installed: checked without connecting.
    A file's SQLite URL always is (the driver is Python's own): checked without SQLAlchemy, which
    a command that opens no store (`init`) then does not import."""
    if url.startswith("sqlite:///"):
        return []
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


def _check_theme(theme: ThemeConfig) -> list[tuple[str, str, str]]:
    problems: list[tuple[str, str, str]] = []
    if theme.logo_url:
        problems += http_url("theme.logo_url", theme.logo_url, "https://www.example.org/logo.png")
        parts = urlsplit(theme.logo_url)
        # Its origin goes into the pages' Content-Security-Policy: a plain host only.
        if not problems and (parts.username is not None or not re.fullmatch(r"[A-Za-z0-9.-]+", parts.hostname or "")
                             or re.search(r"[\s;,'\"]", theme.logo_url)):  # fmt: skip
            fix = "a plain https URL: no user@, no ; , quotes or spaces; an IDN host in its xn-- form"
            problem = f"{theme.logo_url!r} cannot be allowed in a Content-Security-Policy"
            problems.append(("theme.logo_url", problem, fix))
    if not re.fullmatch(r"#(?:[0-9a-fA-F]{3}){1,2}", theme.accent_color):
        problems.append(("theme.accent_color", f"{theme.accent_color!r} is not a colour", 'write it like "#b4232a"'))
    if theme.privacy_url:
        problems += http_url("theme.privacy_url", theme.privacy_url, "https://www.example.org/privacy")
    if len(theme.intro) > 300:
        problems.append(("theme.intro", "longer than 300 characters", "keep it to one line; the footer takes more"))
    return problems


def _check_admin(admin: AdminConfig) -> list[tuple[str, str, str]]:
    problems = []
    if admin.listen:
        try:
            listen_address(admin.listen)
        except ValueError as exc:
            problems.append(("admin.listen", str(exc), 'write it as "127.0.0.1:8081" or "[::1]:8081"'))
    if admin.public_url:
        problems += http_url("admin.public_url", admin.public_url, "https://admin.example.org")
        if not admin.public_url.startswith("https://") and not is_loopback(admin.public_url):
            fix = "the console's cookie is sent over https only (http only for 127.0.0.1 or localhost)"
            problems.append(("admin.public_url", "is not https", fix))
    return problems


def _check_websub(websub: WebSubConfig) -> list[tuple[str, str, str]]:
    """Each hub an absolute http(s) URL of plain URL characters (it goes into every feed and a
    `Link` header), with no user name or password (they would be published there too; the
    message does not repeat them), named once, and public unless `allow_private` (checked again
    as it connects)."""
    if not websub.hubs:
        return []  # and no import of the address guard (it brings requests: a build without hubs needs neither)
    from ..sources.addresses import private_host

    problems = _unique([(f"websub.hubs[{i}]", hub) for i, hub in enumerate(websub.hubs)], "name each hub once")
    for i, hub in enumerate(websub.hubs):
        key = f"websub.hubs[{i}]"
        if "@" in urlsplit(hub).netloc:
            fix = "remove them: a hub is named in every public feed, and a publish ping needs no account"
            problems.append((key, "holds a user name or password, which every feed would publish", fix))
            continue
        found = http_url(key, hub, "https://pubsubhubbub.appspot.com/")
        if not found and quote(hub, safe=_URL_CHARACTERS) != hub:
            fix = "percent-encode it (%20 for a space; an IDN host in its xn-- form); no <, >, quotes or spaces"
            found = [(key, f"{hub!r} has characters a URL may not hold", fix)]
        if not found and not websub.allow_private and (private := private_host(hub)):
            fix = "set websub.allow_private = true if the hub is yours on this network or machine"
            found = [(key, f"{hub!r}: its host is {private}", fix)]
        problems += found
    return problems


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
