"""What pydantic's types cannot say: zones, URLs, uniqueness, references, cron lines, templates.

`check_meaning` runs on every part of a configuration that validated (`ValidParts`), so all
problems are reported together, each with its key path and the fix.
"""

from __future__ import annotations

import ipaddress
import re
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined

from .settings import (
    AdminConfig,
    BouncesConfig,
    CategoryConfig,
    DigestConfig,
    FeedSourceConfig,
    HooksConfig,
    HtmlSourceConfig,
    JsonSourceConfig,
    MailConfig,
    OutputConfig,
    Settings,
    SiteConfig,
    SourceConfig,
    StoreConfig,
    ThemeConfig,
    WebConfig,
    WordPressSourceConfig,
    duration_seconds,
)


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

    @classmethod
    def of(cls, settings: Settings) -> ValidParts:
        return cls(
            settings.site, settings.output, settings.store, list(enumerate(settings.categories)),
            list(enumerate(settings.sources)), settings.mail, settings.digest, settings.web, settings.theme,
            bounces=settings.bounces, hooks=settings.hooks, admin=settings.admin,
        )  # fmt: skip

    @classmethod
    def salvage(cls, raw: dict[str, Any]) -> ValidParts:
        """Each section of `raw` validated on its own; a missing one with defaults takes them."""
        fields = Settings.model_fields
        sections = {
            name: _valid_or_none(fields[name].annotation, raw[name]) if name in raw else fields[name].default
            for name in ("site", "output", "store", "mail", "digest", "web", "theme", "bounces", "hooks", "admin")
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
    for i, category in valid.categories:
        if category.url:
            problems += _http_url(f"categories[{i}].url", category.url, "https://www.example.org/news/")
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
    if valid.hooks is not None and valid.hooks.sendgrid is not None:
        from ..bounces.providers.sendgrid import load_public_key

        try:
            load_public_key(valid.hooks.sendgrid.public_key)
        except ValueError as exc:
            fix = "copy the Verification Key from SendGrid's Mail Settings, Signed Event Webhook"
            problems.append(("hooks.sendgrid.public_key", str(exc), fix))
    if valid.bounces is not None:
        problems += _check_bounces(valid.bounces)
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

    if valid.admin is not None:
        problems += _check_admin(valid.admin)

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
            problems += _check_html(i, source, known, [c for _i, c in valid.categories])
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
    for provider in ("mailgun", "sendgrid", "postmark", "resend", "ses", "aliyun"):
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
    problems += _retry_after(digest.retry_after)
    if digest.unsubscribe_mailto and mailbox(digest.unsubscribe_mailto) is None:
        problems.append(("digest.unsubscribe_mailto", "is not an address", 'write it like "unsubscribe@example.org"'))
    if digest.subject:
        from ..theme import SUBJECT_VARIABLES, subject_problem

        problem = subject_problem(digest.subject)
        if problem:
            problems.append(("digest.subject", problem, f"variables: {', '.join(SUBJECT_VARIABLES)}"))
    return problems


def _check_bounces(bounces: BouncesConfig) -> list[tuple[str, str, str]]:
    problems: list[tuple[str, str, str]] = []
    path = bounces.return_path
    if path:
        found = mailbox(path)
        fix = 'a plain ASCII address whose mail you read for bounces, like "bounces@example.org"'
        if found is None or found.display_name or found.addr_spec != path.strip() or not path.isascii():
            problems.append(("bounces.return_path", f"{path!r} is not a plain address", fix))
        elif len(found.username) > 40:
            fix = "a shorter one: with +<token> it must fit the 64 characters a part before @ may have"
            problems.append(("bounces.return_path", "its part before @ is longer than 40 characters", fix))
    box = bounces.mailbox
    if box is not None:
        if box.protocol == "pop3" and box.processed == "move":
            fix = 'POP3 has no folders: set processed = "delete", or protocol = "imap"'
            problems.append(("bounces.mailbox.processed", '"move" needs IMAP', fix))
        if box.security == "none" and not is_loopback(f"http://{box.host}"):
            fix = 'use security = "tls" (or "starttls"): "none" sends the password in the clear, so only to 127.0.0.1'
            problems.append(("bounces.mailbox.security", f'"none" for {box.host}, which is not this machine', fix))
        if box.protocol == "imap" and box.action == "move" and box.processed_folder == box.folder:
            fix = 'a folder of its own, such as "Processed"'
            problems.append(("bounces.mailbox.processed_folder", "is the folder polled", fix))
    return problems


RETRY_WINDOW_LIMIT = 7 * 86400  # seconds: a reader's digest should not arrive after the next one


def _retry_after(delays: list[str]) -> list[tuple[str, str, str]]:
    problems, total = [], 0
    for i, text in enumerate(delays):
        seconds = duration_seconds(text)
        if not seconds:
            fix = 'write a number and a unit, s, m, h or d: ["1m", "5m", "15m", "1h", "4h"]'
            problems.append((f"digest.retry_after[{i}]", f"{text!r} is not a duration longer than 0", fix))
        total += seconds or 0
    if total > RETRY_WINDOW_LIMIT:
        fix = "shorten the waits: greylisting wants minutes, a server that is down a few hours"
        problems.append(("digest.retry_after", f"the waits add up to more than 7 days ({total // 3600} h)", fix))
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


def _check_admin(admin: AdminConfig) -> list[tuple[str, str, str]]:
    problems = []
    if admin.listen:
        try:
            listen_address(admin.listen)
        except ValueError as exc:
            problems.append(("admin.listen", str(exc), 'write it as "127.0.0.1:8081" or "[::1]:8081"'))
    if admin.public_url:
        problems += _http_url("admin.public_url", admin.public_url, "https://admin.example.org")
        if not admin.public_url.startswith("https://") and not is_loopback(admin.public_url):
            fix = "the console's cookie is sent over https only (http only for 127.0.0.1 or localhost)"
            problems.append(("admin.public_url", "is not https", fix))
    return problems


def listen_address(text: str) -> tuple[str, int]:
    """(host, port) of `host:port` or `[v6]:port`; ValueError saying what is wrong."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or any(c in host for c in "/[] "):
        raise ValueError(f"{text!r} has no host")
    return host, int(port)


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


def _check_html(
    i: int, source: HtmlSourceConfig, known: set[str], categories: list[CategoryConfig]
) -> list[tuple[str, str, str]]:
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
    for key in source.list.matched_overrides(category_labels(categories))[1] if source.list.overrides else ():
        fix = f"name one of the categories of [sources.list] pages: {', '.join(source.list.pages)}"
        problems.append((f"sources[{i}].list.overrides.{key}", f"{key!r} is not a category of list.pages", fix))
    for key, override in source.list.overrides.items():
        selectors += [(f"list.overrides.{key}.links", override.links), (f"list.overrides.{key}.next", override.next)]
        if override.url_pattern and "{page}" not in override.url_pattern:
            fix = 'write it like ".../list_{page}.html"'
            problems.append((f"sources[{i}].list.overrides.{key}.url_pattern", "has no {page}", fix))
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


def category_labels(categories: list[CategoryConfig]) -> dict[str, str]:
    """Each category's name and slug (configured, else its pinyin) -> its name."""
    from ..text import slugify

    return {label: c.name for c in categories for label in (c.name, c.slug or slugify(c.name))}


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
