"""The composition root's WebSub: the hub pings a build starts (publisher.websub)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..feeds import FEED_FILES, FeedLinks
from ..store import Store

if TYPE_CHECKING:
    from ..websub import HubPings

log = logging.getLogger(__name__)


class WebSubServices:
    """`App`'s part that tells the `[websub]` hubs of changed feeds (a mixin: App provides what
    is declared here). `publisher run` shares its own `HubPings` with the jobs' Apps, so one
    thread per process retries a hub (`hub_pings` given: this App does not close it)."""

    settings: Settings
    hub_pings: HubPings | None
    _owns_hub_pings: bool

    if TYPE_CHECKING:

        @property
        def store(self) -> Store: ...
        @property
        def links(self) -> FeedLinks: ...

    @property
    def websub(self) -> HubPings | None:
        """The pings of this App (None without hubs and without shared pings)."""
        if self.hub_pings is None and self.settings.websub.hubs:
            from ..websub import HubPings

            config = self.settings.websub
            self.hub_pings = HubPings(self.store, config.hubs, config.timeout, config.allow_private)
            self._owns_hub_pings = True
        return self.hub_pings

    def keep_pings(self, feeds: Sequence[str]) -> bool:
        """Before a build forgets what it changed (its dirty marks, the site's signature): each
        of `feeds` (paths in the output folder; other files are skipped) waits for each hub in
        the store. False when the store failed: the caller keeps its marks, so the next build
        announces these feeds again (a repeated ping is harmless, a lost one is not)."""
        pings = self.websub
        urls = [self.links.of(path) for path in feeds if path.rsplit("/", 1)[-1] in FEED_FILES]
        if pings is None or not urls:
            return True
        try:
            pings.keep_waiting(self.settings.websub.hubs, urls)
        except Exception as exc:  # noqa: BLE001 - the feeds stand; the next build keeps them waiting
            log.warning("WebSub: could not keep the pings of %d feed(s) for the hubs: %s", len(urls), exc)
            return False
        return True

    def announce_feeds(self) -> None:
        """After a build: what waits for the hubs is sent if due, in the background."""
        if self.websub is not None:
            self.websub.wake()

    def websub_view(self) -> dict[str, Any] | None:
        """The configured hubs' health (`/healthz`, `publisher status`); None without hubs."""
        from ..websub import hubs_view

        hubs = self.settings.websub.hubs
        return hubs_view(self.store, hubs) if hubs else None

    def close_websub(self) -> None:
        if self.hub_pings is not None and self._owns_hub_pings:
            self.hub_pings.close()
