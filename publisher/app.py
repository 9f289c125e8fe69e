"""Composition root: settings -> concrete store, sources and clock; the services the doors call."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from .config import (
    FeedSourceConfig,
    HtmlSourceConfig,
    JsonSourceConfig,
    Settings,
    SourceConfig,
    WebSourceConfig,
    WordPressSourceConfig,
)
from .errors import ConfigError, SourceError
from .feeds import FeedLinks
from .ingest import Clock, IngestContext, Tick, ingest
from .model import BuildReport, Category, Folder, ItemProblem, ScopeRead, Site, Unchanged
from .normalize import CategoryIndex, NormalizeError, TextRules
from .sources import Source
from .sources.failed_items import FailedItems
from .sources.files import FilesSource
from .store import SourceHealth, Store
from .theme import Messages, Theme, check_theme, make_theme

if TYPE_CHECKING:
    from .bounces.events import EventKind, MailEvent
    from .bounces.mailbox import PollReport
    from .bounces.providers import Door
    from .bounces.recorder import RecordReport
    from .bounces.rules import Rule
    from .digest import Look
    from .parallel import Prepared
    from .sources.html import ListRules
    from .sources.http import Fetcher, RobotsCache
    from .transports import Transport
from .text import slugify

log = logging.getLogger(__name__)

SIGNING_KEY_META = "signing_key"  # the meta row of a key made when secret_key_env is not set
LEFT_IN_POP3_META = "bounce_mailbox_left"  # the UIDLs of POP3 messages the bounce mailbox could not read


def utc_now() -> datetime:
    return datetime.now(UTC)


def _folder_state(folder: Path | None) -> list[tuple[str, int, int]]:
    """Names, sizes and mtimes of a theme folder's files: an edited override re-renders the pages."""
    if folder is None:
        return []
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [(p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def make_source(
    config: SourceConfig,
    timezone: str,
    fetcher: Callable[[WebSourceConfig], Fetcher],
    known: frozenset[str] = frozenset(),
    categories: Sequence[Category] = (),
    convert: Callable[[str], str] = str,
    failed: Callable[[str], FailedItems] | None = None,
) -> Source:
    """The registry from a config `type` to a source; config validation rejects unknown types.
    `known`: our category names and slugs (a WordPress site's categories are matched to them);
    `categories`: ours (an html source's overrides name them); `convert`: text converted as
    the content will be (`[text] convert`: an html source's meta-line regexes read it too);
    `failed`: a source's memory of its failed items, by its name (None: none, as for `check`).
    Web sources are imported only when configured: they bring requests and lxml.html, a tenth
    of a second of every build of a site that reads only files."""
    if isinstance(config, WordPressSourceConfig):
        from .sources.wordpress import WordPressSource

        return WordPressSource(
            config.source_name, config.url, config.categories, config.category, fetcher(config), known, config.max_pages
        )
    if isinstance(config, FeedSourceConfig):
        from .sources.feed import FeedSource

        return FeedSource(config.source_name, config.url, config.category, fetcher(config))
    if isinstance(config, JsonSourceConfig):
        from .sources.json_api import Fields, JsonSource, Paging

        f, p = config.fields, config.paging
        fields = Fields(f.list, f.id, f.title, f.date, f.body, f.url or None, f.category or None, f.author or None,
                        f.summary or None)  # fmt: skip
        paging = Paging(p.kind, p.page_size, p.next or None, p.max_pages)
        return JsonSource(config.source_name, config.url, fields, paging, config.category, fetcher(config), timezone)
    if isinstance(config, HtmlSourceConfig):
        from .sources.html import ArticleRules, HtmlSource

        article = ArticleRules(**config.article.model_dump())
        lists = _list_rules(config, categories)
        return HtmlSource(
            config.source_name, lists, article, fetcher(config), timezone, config.recheck_days, convert=convert,
            failed=failed(config.source_name) if failed is not None else None,
        )  # fmt: skip
    return FilesSource(
        name=config.source_name,
        root=Path(config.path),
        timezone=timezone,
        default_category=config.default_category,
        url_template=config.url_template,
    )


def _list_rules(config: HtmlSourceConfig, categories: Sequence[Category]) -> ListRules:
    """An html source's list rules, each category's override laid over the source's own."""
    from .sources.html import ListRules, Walk

    l = config.list  # noqa: E741
    walk = Walk(l.links, l.next, l.url_pattern, l.max_pages)
    category_of = {label: c.name for c in categories for label in (c.name, c.slug)}
    overrides = {}
    for page_key, o in l.matched_overrides(category_of)[0].items():
        paging = (o.next, o.url_pattern) if o.next or o.url_pattern else (l.next, l.url_pattern)
        overrides[page_key] = Walk(o.links or l.links, *paging, o.max_pages or l.max_pages)
    return ListRules(l.pages, walk, overrides)


@dataclass
class App:
    settings: Settings
    clock: Clock = utc_now
    _store: Store | None = field(default=None, init=False)
    _categories: list[Category] | None = field(default=None, init=False)
    _theme: Theme | None = field(default=None, init=False)
    _signing_key: bytes | None = field(default=None, init=False)

    @property
    def site(self) -> Site:
        s = self.settings.site
        return Site(
            title=s.title,
            url=s.url.rstrip("/"),
            language=s.language,
            timezone=s.timezone,
            description=s.description,
            author=s.author,
        )

    @property
    def theme(self) -> Theme:
        """The [theme] table, its overrides compiled once: a broken one fails here (ThemeError,
        with file and line), before any page or e-mail is rendered."""
        if self._theme is None:
            t = self.settings.theme
            folder = Path(t.templates) if t.templates else None
            theme = make_theme(folder, t.logo_url, t.accent_color, t.intro, t.footer, self.site.url)
            check_theme(theme)
            self._theme = theme
        return self._theme

    @property
    def messages(self) -> Messages:
        """Every word a reader sees, in the site's language, with the theme's own laid over."""
        return self.theme.messages(self.settings.site.language)

    @property
    def look(self) -> Look:
        """What every digest and sign-up e-mail shows besides articles."""
        from .digest import Look

        digest = self.settings.digest
        words = self.messages["digest"]
        list_name = (digest.list_name or words["list"].format(site=self.site.title)).replace("<", "").replace(">", "")
        return Look(
            site=self.site,
            list_name=list_name,
            feeds_url=self.links.base_url + "/",
            postal_address=digest.postal_address,
            subject_template=digest.subject,
            max_per_category=digest.max_items_per_category,
            theme=self.theme,
            send_when_empty=digest.send_when_empty,
        )

    @property
    def links(self) -> FeedLinks:
        return FeedLinks((self.settings.output.base_url or self.settings.site.url).rstrip("/"))

    @property
    def subscribe_url(self) -> str:
        """The sign-up page of `publisher run`, linked from index.html."""
        return (self.settings.web.public_url or self.settings.site.url).rstrip("/") + "/subscribe"

    @property
    def out_dir(self) -> Path:
        return Path(self.settings.output.dir)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings.store.url)
        return self._store

    @property
    def signing_key(self) -> bytes:
        """The key that signs links and delivery tokens: from the environment variable
        `[web] secret_key_env`, else one made at first use and kept in the store, so links
        keep working across runs."""
        if self._signing_key is None:
            import os
            import secrets

            from .errors import ConfigError

            name = self.settings.web.secret_key_env
            value = os.environ.get(name, "")
            if value:
                if len(value.encode()) < 16:
                    fix = f"export {name}=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
                    raise ConfigError(
                        "(environment)", [("web.secret_key_env", f"{name} is shorter than 16 bytes", fix)]
                    )
                self._signing_key = value.encode()
            else:
                stored = self.store.get_meta(SIGNING_KEY_META)
                if stored is None:  # the first use: made once, whoever gets there first
                    made = secrets.token_urlsafe(32)
                    stored = self.store.setdefault_meta(SIGNING_KEY_META, made)
                    if stored == made:
                        log.info("made a signing key for links and kept it in the store (%s is not set)", name)
                self._signing_key = stored.encode()
        return self._signing_key

    @property
    def categories(self) -> list[Category]:
        """Configured categories with the slugs the store fixed at first sight."""
        if self._categories is None:
            wanted = [(c.name, c.slug, c.description) for c in self.settings.categories]
            pages = {c.name: c.url for c in self.settings.categories}
            synced = self.store.sync_categories(wanted, slugify, self.clock())
            self._categories = [replace(c, url=pages[c.name]) for c in synced]
        return self._categories

    @property
    def configured_categories(self) -> list[Category]:
        """The categories as configured, slugs as configured or from pinyin, without the store
        (for `check`; `categories` are the store's, whose slugs were fixed at first sight)."""
        return [Category(c.name, c.slug or slugify(c.name), c.description, c.url) for c in self.settings.categories]

    @property
    def sources(self) -> list[Source]:
        """One run's sources (their web sources share the run's robots.txt cache)."""
        categories = self.categories
        known = frozenset(name for c in categories for name in (c.name, c.slug))
        tz, fetchers = self.settings.site.timezone, self.run_fetchers()
        return [
            make_source(s, tz, fetchers, known, categories, self.convert, failed=self.failed_items)
            for s in self.settings.sources
        ]

    @property
    def convert(self) -> Callable[[str], str]:
        """Text converted as normalising converts the content (`[text] convert`)."""
        from .text import convert_script

        return partial(convert_script, mode=self.settings.text.convert)

    def source_health(self) -> list[SourceHealth]:
        """Every configured source and its parts as their last runs left them (`publisher
        status`, `/healthz`)."""
        return self.store.health_of_sources([s.source_name for s in self.settings.sources])

    def failed_items(self, source: str) -> FailedItems:
        """`source`'s items that failed, as the store keeps them, for one run; what the run
        learns is written when the source's `committed()` calls `commit()`."""
        store = self.store
        return FailedItems(
            stored=store.failed_items(source),
            clock=self.clock,
            save=lambda upserts, cleared: store.save_failed_items(source, upserts, cleared),
        )

    def run_fetchers(self, conditional: bool = True) -> Callable[[WebSourceConfig], Fetcher]:
        """The fetchers of one run's web sources: they share one robots.txt cache, so a site is
        asked for it once per run however many sources read it."""
        shared: list[RobotsCache] = []

        def fetcher(config: WebSourceConfig) -> Fetcher:
            from .sources.http import RobotsCache

            if not shared:
                shared.append(RobotsCache())
            return self.fetcher(config, conditional, shared[0])

        return fetcher

    def fetcher(self, config: WebSourceConfig, conditional: bool = True, robots: RobotsCache | None = None) -> Fetcher:
        """The HTTP layer for a web source; conditional: remember ETag/Last-Modified in the store;
        `robots`: the run's robots.txt cache (None: the fetcher's own)."""
        from .sources.addresses import AddressGuard
        from .sources.http import Fetcher, Validators, source_hosts, user_agent

        store, name = self.store, config.source_name
        validators = None
        if conditional:  # per source: two sources reading one URL keep their own
            validators = Validators(
                lambda url: store.http_validators(name, url), lambda kept: store.save_http_validators(name, kept)
            )
        return Fetcher(
            user_agent(self.site.url),
            validators,
            delay=config.delay,
            timeout=(min(10.0, config.timeout), config.timeout),
            robots=config.robots,
            hosts=source_hosts(config.start_urls, config.hosts),
            guard=AddressGuard(allow_private=config.allow_private),
            deadline=config.deadline,
            run_deadline=config.run_deadline,
            robots_cache=robots,
        )

    @property
    def rules(self) -> TextRules:
        t = self.settings.text
        return TextRules(t.convert, t.summary_length, t.remove_glosses)

    def context(self, strict: bool) -> IngestContext:
        return IngestContext(
            index=CategoryIndex(self.categories),
            rules=self.rules,
            site_url=self.site.url,
            clock=self.clock,
            strict=strict,
            signatures={s.source_name: self.reading_signature(s) for s in self.settings.sources},
        )

    def reading_signature(self, source: SourceConfig) -> str:
        """Everything besides a file's bytes that shapes its article. When it changes (a new
        [text] rule, site URL, category, source setting or version), every file is read again."""
        import hashlib
        import json

        from . import __version__
        from .text import CLEANING

        shape = {
            "version": __version__,
            "cleaning": CLEANING,
            "text": self.settings.text.model_dump(),
            "site": [self.site.url, self.site.timezone],
            "categories": [(c.name, c.slug) for c in self.categories],
            "source": source.model_dump(),
        }
        return hashlib.sha256(json.dumps(shape, ensure_ascii=False, sort_keys=True).encode()).hexdigest()

    def transport(self) -> Transport:
        """The configured transport; its secret is read from the environment now."""
        from .config import secret
        from .transports.http_api import HttpApiTransport
        from .transports.outbox import OutboxTransport
        from .transports.smtp import SmtpTransport

        mail = self.settings.mail
        if mail.transport == "outbox":
            return OutboxTransport(Path(mail.outbox.dir))
        if mail.transport == "smtp":
            smtp = mail.smtp
            assert smtp is not None  # validated
            password = secret(smtp.password_env, "mail.smtp.password_env") if smtp.password_env else None
            return SmtpTransport(
                smtp.host, smtp.port, smtp.security, smtp.username or None, password, timeout=smtp.timeout
            )
        if mail.transport == "ses" and mail.ses is not None:
            from .transports import ses

            c = mail.ses
            token = secret(c.session_token_env, "mail.ses.session_token_env") if c.session_token_env else ""
            key_id = secret(c.access_key_id_env, "mail.ses.access_key_id_env")
            options = {"region": c.region, "access_key_id": key_id, "session_token": token}
            options["configuration_set"] = c.configuration_set
            key = secret(c.secret_access_key_env, "mail.ses.secret_access_key_env")
            return HttpApiTransport(ses.PROVIDER, key, c.base_url or ses.endpoint(c.region), options)
        if mail.transport == "aliyun" and mail.aliyun is not None:
            from .transports import aliyun

            d = mail.aliyun
            token = secret(d.security_token_env, "mail.aliyun.security_token_env") if d.security_token_env else ""
            key_id = secret(d.access_key_id_env, "mail.aliyun.access_key_id_env")
            key = secret(d.access_key_secret_env, "mail.aliyun.access_key_secret_env")
            options = {"access_key_id": key_id, "security_token": token}
            return HttpApiTransport(aliyun.PROVIDER, key, d.base_url or aliyun.endpoint(d.region), options)
        api = getattr(mail, mail.transport)
        key = secret(api.api_key_env, f"mail.{mail.transport}.api_key_env")
        options = {"domain": api.domain, "message_stream": api.message_stream}
        return HttpApiTransport(mail.transport, key, base_url=api.base_url or None, options=options)

    def hook_doors(self) -> dict[str, Door]:
        """The webhooks of the providers configured under [hooks], by name; their secrets are
        read from the environment now (ConfigError naming the key when one is missing)."""
        from .bounces.providers import Aliyun, Mailgun, Postmark, Resend, Sendgrid, Ses
        from .config import secret

        hooks = self.settings.hooks
        doors: dict[str, Door] = {}
        if hooks.mailgun is not None:
            doors["mailgun"] = Mailgun(secret(hooks.mailgun.signing_key_env, "hooks.mailgun.signing_key_env"))
        if hooks.sendgrid is not None:
            doors["sendgrid"] = Sendgrid(hooks.sendgrid.public_key)  # checked when the config loaded
        if hooks.postmark is not None:
            password = secret(hooks.postmark.password_env, "hooks.postmark.password_env")
            doors["postmark"] = Postmark(hooks.postmark.username, password)
        if hooks.resend is not None:
            key = "hooks.resend.secret_env"
            try:
                doors["resend"] = Resend(secret(hooks.resend.secret_env, key))
            except ValueError as exc:
                fix = "copy the signing secret from Resend's webhook page, whsec_ and all"
                raise ConfigError("(environment)", [(key, f"{hooks.resend.secret_env}: {exc}", fix)]) from None
        if hooks.ses is not None:
            doors["ses"] = Ses(hooks.ses.topic_arns)
        if hooks.aliyun is not None:
            doors["aliyun"] = Aliyun(secret(hooks.aliyun.token_env, "hooks.aliyun.token_env"))
        return doors

    @property
    def bounce_rules(self) -> dict[EventKind, Rule]:
        """`[bounces.rules]`: what each kind of mail event does to a reader."""
        from .bounces.events import EventKind
        from .bounces.rules import Action, Rule

        config = self.settings.bounces.rules
        kinds = {"hard": EventKind.HARD_BOUNCE, "soft": EventKind.SOFT_BOUNCE, "complaint": EventKind.COMPLAINT,
                 "unsubscribe": EventKind.UNSUBSCRIBE}  # fmt: skip
        configured = {kind: getattr(config, name) for name, kind in kinds.items()}
        return {kind: Rule(c.count, c.within_days, Action(c.action)) for kind, c in configured.items()}

    def record_mail_events(self, events: Iterable[MailEvent]) -> RecordReport:
        """What a provider's webhook or the bounce mailbox said: each event linked to its
        delivery, kept once, and its rule applied (bounces.recorder)."""
        from .bounces.recorder import record_events

        return record_events(self.store, self.signing_key, self.bounce_rules, events, self.clock)

    def poll_bounce_mailbox(self) -> PollReport:
        """Read `[bounces.mailbox]` once: its bounces and complaints recorded (and their rules
        applied), the messages read moved or deleted, the rest left and counted."""
        import json

        from .bounces.mailbox import ImapMailbox, MailboxAccess, Pop3Mailbox, poll
        from .config import secret

        box = self.settings.bounces.mailbox
        assert box is not None, "no [bounces.mailbox] configured"
        access = MailboxAccess(
            box.protocol, box.host, box.server_port, box.username,
            secret(box.password_env, "bounces.mailbox.password_env"), box.security, box.folder, box.action,
            box.processed_folder, box.timeout, box.max_messages,
        )  # fmt: skip
        if box.protocol == "imap":
            with ImapMailbox(access) as imap:
                return poll(imap, self.record_mail_events, "imap", self.clock(), self.settings.bounces.return_path)
        # POP3 has no flags: the UIDLs of the messages left are kept in the store.
        left = set(json.loads(self.store.get_meta(LEFT_IN_POP3_META) or "[]"))
        try:
            with Pop3Mailbox(access, left) as pop3:
                return poll(pop3, self.record_mail_events, "pop3", self.clock(), self.settings.bounces.return_path)
        finally:
            self.store.set_meta(LEFT_IN_POP3_META, json.dumps(sorted(left)))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # --- services ----------------------------------------------------------------------------

    def check(self, tick: Tick = lambda _n: None) -> BuildReport:
        """Read and normalize every item of every source as ingest would, writing nothing;
        `checked` counts the good items."""
        from .parallel import prepare_all

        report = BuildReport()
        configured = self.configured_categories
        index, rules = CategoryIndex(configured), self.rules
        tz = self.settings.site.timezone
        known = frozenset(name for c in configured for name in (c.name, c.slug))
        fetchers = self.run_fetchers(conditional=False)
        sources = [make_source(s, tz, fetchers, known, configured, self.convert) for s in self.settings.sources]
        for source in sources:
            try:
                inspect = getattr(source, "inspect", None)
                if inspect is not None:  # an html source: what each category and one article show
                    seen = inspect()
                    report.source_notes.append(seen.note)
                    report.problems.extend(seen.problems)
                    report.failed_sources.extend(seen.failed)
                    report.checked += seen.readable
                    report.skipped += seen.skipped
                    continue
                probe = getattr(source, "probe", None)
                if probe is not None:  # a web source: reached once, and what it shows is reported
                    count, first, problems = probe()
                    shown = f", the first: {first}" if first else ""
                    report.source_notes.append(f"{source.name}: {count} item(s) at {source.url}{shown}")  # type: ignore[attr-defined]
                    report.problems.extend(str(p) for p in problems)
                    report.skipped += len(problems)
                    continue
                for fetched in source.fetch({}):
                    if isinstance(fetched, (Folder, Unchanged, ScopeRead)):  # unchanged never (no fingerprints)
                        continue
                    tick(1)
                    if isinstance(fetched, ItemProblem):
                        outcome: Prepared = fetched
                    else:
                        [outcome] = prepare_all([fetched], index, rules, self.site.url)
                    if isinstance(outcome, tuple):
                        item, article = outcome
                        if isinstance(article, NormalizeError):
                            outcome = ItemProblem(item.key, item.location, article.reason, article.hint)
                    if isinstance(outcome, ItemProblem):
                        report.skipped += 1
                        report.problems.append(str(outcome))
                    elif outcome is not None:
                        report.checked += 1
            except SourceError as exc:
                report.failed_sources.append(str(exc))
            finally:
                close = getattr(getattr(source, "fetcher", None), "close", None)
                if close is not None:
                    close()
        return report

    def check_look(self) -> tuple[list[str], list[str]]:
        """(problems, warnings) of the theme: overrides that fail to render with sample values
        (file and line); an accent that white button text cannot be read on. Needs no store."""
        from .theme import contrast_with_white
        from .theme_check import theme_problems

        theme = self.theme
        configured = self.configured_categories
        problems = theme_problems(self.look, configured, self.links, self.subscribe_url)
        warnings = []
        ratio = contrast_with_white(theme.accent_color)
        if ratio < 4.5:
            warnings.append(
                f"theme.accent_color {theme.accent_color}: white button text on it has a contrast of {ratio:.1f}:1, "
                "below the 4.5:1 readers need (WCAG 2); choose a darker colour"
            )
        return problems, warnings

    def ingest(self, report: BuildReport, strict: bool = False, tick: Tick = lambda _n: None) -> None:
        import json

        sources = self.sources
        ingest(self.store, sources, self.context(strict), report, tick)
        try:
            self.store.forget_sources_except([source.name for source in sources])
        except SQLAlchemyError as exc:
            log.warning("could not forget the state of sources no longer configured: %s", exc)
        summary = {
            "at": self.clock().isoformat(timespec="seconds"),
            "new": report.new,
            "changed": report.changed,
            "withdrawn": report.withdrawn,
            "skipped": report.skipped,
            "failed_sources": len(report.failed_sources),
            "failed_parts": len(report.failed_parts),
        }
        self.store.set_meta("last_ingest", json.dumps(summary))  # for /healthz

    def render_signature(self) -> str:
        """Everything besides articles that shapes the output; when it changes, all is rewritten."""
        import hashlib
        import json

        from . import __version__

        shape = {
            "version": __version__,
            "site": self.site.__repr__(),
            "links": self.links.base_url,
            "subscribe": self.subscribe_url,
            "max_items": self.settings.feeds.max_items,
            "categories": [(c.name, c.slug, c.description, c.url) for c in self.categories],
            "theme": [self.settings.theme.model_dump(), _folder_state(self.theme.templates)],
        }
        return hashlib.sha256(json.dumps(shape, ensure_ascii=False, sort_keys=True).encode()).hexdigest()

    def write_output(self, report: BuildReport) -> None:
        """Feeds whose articles changed (or whose files are missing), and index.html and
        feeds.opml when the site's shape changed; only changed bytes reach the disk."""
        from .atomic import remove_stale_temporaries
        from .feeds import write_feeds, write_if_changed
        from .model import FeedFormat
        from .pages import render_index, render_opml
        from .store import SITE_SCOPE

        store, out = self.store, self.out_dir
        for stale in remove_stale_temporaries(out, recursive=True):
            log.info("removed %s, left by a write that was killed", stale)
        categories = self.categories
        signature = self.render_signature()
        reshaped = store.get_meta("render_signature") != signature
        dirty = store.dirty_scopes()

        def needed(scope: Category | None) -> bool:
            prefix = out / scope.slug if scope else out
            missing = any(not (prefix / fmt.value).is_file() for fmt in FeedFormat)
            return reshaped or missing or (scope.slug if scope else SITE_SCOPE) in dirty

        scopes: list[Category | None] = [s for s in [None, *categories] if needed(s)]
        limit = self.settings.feeds.max_items
        written, unchanged = write_feeds(
            out, self.site, self.links, categories, lambda c: store.latest(c.slug if c else None, limit), scopes
        )
        pages: list[tuple[str, Callable[[], bytes]]] = [
            ("index.html", lambda: render_index(self.site, self.links, categories, self.theme, self.subscribe_url)),
            ("feeds.opml", lambda: render_opml(self.site, self.links, categories)),
        ]
        for name, render in pages:
            if reshaped or not (out / name).is_file():
                (written if write_if_changed(out / name, render()) else unchanged).append(name)
        store.clear_dirty(dirty)
        if reshaped:
            store.set_meta("render_signature", signature)
        report.feeds_written += len(written)
        report.feeds_unchanged += (len(categories) + 1) * len(FeedFormat) + len(pages) - len(written)
        report.written_paths = written

    def build(self, report: BuildReport, strict: bool = False, tick: Tick = lambda _n: None) -> None:
        self.ingest(report, strict, tick)
        self.write_output(report)
