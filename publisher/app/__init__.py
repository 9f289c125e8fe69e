"""Composition root: settings -> concrete store, sources and clock; the services the doors call.

`App` is composed like `Store`: this module holds what every door needs (the site, its theme,
the store, the signing key, the categories) and the build; `sources.py` the sources and
`check`, `output.py` the output folder, `mail.py` the transport and the bounce loop, `watch.py`
metrics and alerts, `websub.py` the hub pings, each a mixin over the same settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from ..config import Settings
from ..feeds import FeedLinks
from ..ingest import Clock, Tick, ingest
from ..metrics import Metrics
from ..model import Article, BuildReport, Category, Site
from ..normalize import TextRules
from ..scripts import ScriptConversion, site_script
from ..store import Store
from ..text import slugify
from ..theme import Messages, Theme, check_theme, make_theme
from .mail import MailServices
from .output import OutputServices
from .sources import SourceServices, make_source
from .watch import WatchServices
from .websub import WebSubServices

if TYPE_CHECKING:
    from ..alerts import Alerts
    from ..archive_output import Archive
    from ..build_ahead import BuildAhead
    from ..choices import Offered
    from ..digest import Look
    from ..parallel import Workers
    from ..websub import HubPings

__all__ = ["App", "make_source", "utc_now"]

log = logging.getLogger(__name__)

SIGNING_KEY_META = "signing_key"  # the meta row of a key made when secret_key_env is not set


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class App(SourceServices, MailServices, OutputServices, WatchServices, WebSubServices):
    settings: Settings
    clock: Clock = utc_now
    metrics: Metrics = field(default_factory=Metrics)  # this App's counters (`/metrics`)
    hub_pings: HubPings | None = None  # `publisher run`'s, shared with its jobs; else made when hubs are set
    _store: Store | None = field(default=None, init=False)
    _categories: list[Category] | None = field(default=None, init=False)
    rendering: dict[tuple[str, str], tuple[str, Article]] | None = field(default=None, init=False)
    workers: Workers | None = field(default=None, init=False)  # a build's, shared by its ingest and renders
    _theme: Theme | None = field(default=None, init=False)
    _signing_key: bytes | None = field(default=None, init=False)
    _alerts: Alerts | None = field(default=None, init=False)
    _alerts_made: bool = field(default=False, init=False)
    _owns_hub_pings: bool = field(default=False, init=False)
    ahead: BuildAhead | None = None  # a build's category slugs and walk, done while it loads (build_ahead.py)

    @property
    def site(self) -> Site:
        return Site.of(self.settings.site)

    @property
    def scripts(self) -> ScriptConversion:
        """The site's script and how a reader's other one is made (publisher.scripts)."""
        t = self.settings.text
        return ScriptConversion(site_script(self.settings.site.language, t.convert), t.traditional, t.simplified)

    @property
    def offered(self) -> Offered:
        """The scripts and cadences readers may choose (`[digest] scripts`, `cadences`) and the
        site's own script: what every door (pages, embed, CLI, CSV, console) reads choices by."""
        from ..choices import Offered

        digest = self.settings.digest
        return Offered.of(digest.scripts, digest.cadences, self.scripts.site)

    @property
    def theme(self) -> Theme:
        """The [theme] table, its overrides compiled once: a broken one fails here (ThemeError,
        with file and line), before any page or e-mail is rendered."""
        if self._theme is None:
            t = self.settings.theme
            folder = Path(t.templates) if t.templates else None
            notes = (t.consent, t.privacy, t.privacy_url)
            language = self.settings.site.language
            theme = make_theme(folder, t.logo_url, t.accent_color, t.intro, t.footer, self.site.url, notes, language)
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
        from ..digest import Look, cadence_words
        from ..model import CADENCES

        digest = self.settings.digest
        words = self.messages["digest"]

        def list_name(cadence: str) -> str:  # `[digest] list_name` names them all; else the catalogue's per cadence
            name = digest.list_name or cadence_words(words, cadence)["list"].format(site=self.site.title)
            return name.replace("<", "").replace(">", "")

        return Look(
            site=self.site,
            list_name=list_name(digest.cadences[0]),
            list_names={cadence: list_name(cadence) for cadence in CADENCES},
            feeds_url=self.links.base_url + "/",
            postal_address=digest.postal_address,
            subject_template=digest.subject,
            max_per_category=digest.max_items_per_category,
            theme=self.theme,
            send_when_empty=digest.send_when_empty,
            scripts=self.scripts,
        )

    @property
    def archive(self) -> Archive | None:
        """The digest archive (publisher.archive_output); None when `[digest] archive = false`."""
        if not self.settings.digest.archive:
            return None
        from ..archive import ArchiveLinks, archive_names
        from ..archive_output import Archive
        from ..editions import editions

        links, look, digest = ArchiveLinks(self.links.base_url, self.subscribe_url), self.look, self.settings.digest
        names = archive_names(look, look.list_name if digest.list_name else "", digest.cadences)
        # A copy in the other script when readers may choose it, or the feeds are published in it.
        scripts = [*digest.scripts, *self.settings.feeds.scripts]
        copies = editions(self.scripts, scripts, self.site.language)
        return Archive(self.store, look, self.categories, links, self.out_dir, self.clock, names, copies)

    @property
    def links(self) -> FeedLinks:
        return FeedLinks(
            (self.settings.output.base_url or self.settings.site.url).rstrip("/"), tuple(self.settings.websub.hubs)
        )

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
            self._store.render_bodies = self.render_bodies
        return self._store

    @property
    def signing_key(self) -> bytes:
        """The key that signs links and delivery tokens: from the environment variable
        `[web] secret_key_env`, else one made at first use and kept in the store, so links
        keep working across runs."""
        if self._signing_key is None:
            import os
            import secrets

            from ..errors import ConfigError

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
            from ..output import RESERVED_SLUGS

            wanted = [(c.name, c.slug, c.description) for c in self.settings.categories]
            pages = {c.name: c.url for c in self.settings.categories}
            made = self.ahead or slugify
            synced = self.store.sync_categories(wanted, made, self.clock(), RESERVED_SLUGS)
            self._categories = [replace(c, url=pages[c.name]) for c in synced]
        return self._categories

    @property
    def configured_categories(self) -> list[Category]:
        """The categories as configured, slugs as configured or from pinyin, without the store
        (for `check`; `categories` are the store's, whose slugs were fixed at first sight)."""
        return [Category(c.name, c.slug or slugify(c.name), c.description, c.url) for c in self.settings.categories]

    @property
    def rules(self) -> TextRules:
        return TextRules.of(self.settings.text)

    def close(self) -> None:
        if self.ahead is not None:
            self.ahead.close()
        self.close_websub()
        self.close_watch()
        if self._store is not None:
            self._store.close()

    def check_look(self) -> tuple[list[str], list[str]]:
        """(problems, warnings) of the theme: overrides that fail to render with sample values
        (file and line); an accent that white button text cannot be read on. Needs no store."""
        from ..theme import contrast_with_white
        from ..theme_check import theme_problems

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

    def ingest(
        self, report: BuildReport, strict: bool = False, tick: Tick = lambda _n: None, retry_failed: bool = False
    ) -> None:
        """Ingest every source (`retry_failed`: their failed items asked for now, see `run_sources`)."""
        import json

        sources = self.run_sources(retry_failed)
        before = (report.new, report.changed, report.withdrawn)
        try:
            ingest(self.store, sources, self.context(strict), report, tick)
        except Exception:
            self.metrics.ingest_failed()
            raise
        outcome = "partial" if report.failed_sources or report.failed_parts else "ok"
        new, changed, withdrawn = report.new - before[0], report.changed - before[1], report.withdrawn - before[2]
        self.metrics.ingest_ran(outcome, new, changed, withdrawn)
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
        self.alert_on_sources()

    def build(self, report: BuildReport, strict: bool = False, tick: Tick = lambda _n: None) -> None:
        """Ingest, then write what changed; one pool of worker processes for both (see
        parallel.Workers), closed at the end."""
        from ..normalize import CategoryIndex
        from ..output import load_renderers
        from ..parallel import Workers
        from ..text import grapheme_patterns

        self.workers = Workers(CategoryIndex(self.categories), self.rules, self.site.url)
        self.workers.prepare(load_renderers, self.theme)  # when they have read what ingest gave them
        self.workers.prepare(grapheme_patterns, bodies=True)  # the summaries' (importing `regex`)
        if not self.store.has_articles():  # every article read will render: loaded once, here
            self.workers.load_here()
        try:
            self.ingest(report, strict, tick)
            self.write_output(report)
        finally:
            self.workers.close()
            self.workers = None
