"""The composition root's watch: the metrics every service counts into, and the `[alerts]`
webhook with the conditions it is told about."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..config import Settings
from ..errors import ConfigError
from ..metrics import Metrics
from ..store import SourceHealth, Store

if TYPE_CHECKING:
    from ..alerts import Alerts, Webhook

log = logging.getLogger(__name__)


class WatchServices:
    """`App`'s part that counts and alerts (a mixin: App provides what is declared here)."""

    settings: Settings
    metrics: Metrics
    _alerts: Alerts | None
    _alerts_made: bool

    if TYPE_CHECKING:

        @property
        def store(self) -> Store: ...
        def source_health(self) -> list[SourceHealth]: ...

    def alert_webhook(self) -> Webhook | None:
        """The `[alerts]` webhook, its URL and secret read from the environment now (None: no
        [alerts]). ConfigError when a variable is missing or the URL is not https."""
        config = self.settings.alerts
        if config is None:
            return None  # and nothing imported: alerts bring requests, which a build without them never needs
        from ..alerts import Webhook
        from ..config import is_loopback, secret
        from ..sources.addresses import private_host

        url = secret(config.url_env, "alerts.url_env").strip()
        if not url.startswith("https://") and not (url.startswith("http://") and is_loopback(url)):
            fix = "the robot's or receiver's https:// URL (http:// only for one on this machine)"
            raise ConfigError("(environment)", [("alerts.url_env", f"{config.url_env} is not an https URL", fix)])
        private = private_host(url)
        if private and not config.allow_private:
            fix = "set alerts.allow_private = true if the robot or receiver is yours on this network"
            raise ConfigError("(environment)", [("alerts.url_env", f"{config.url_env}'s host is {private}", fix)])
        key = secret(config.secret_env, "alerts.secret_env") if config.secret_env else ""
        return Webhook(url, config.format, config.msgtype, key, config.timeout, self.settings.site.title,
                       allow_private=config.allow_private)  # fmt: skip

    @property
    def alerts(self) -> Alerts | None:
        """The alerts service, or None without [alerts]. A webhook that cannot be made (its
        variable unset since the start) is logged once and no alert is sent: the work goes on."""
        if not self._alerts_made:
            self._alerts_made = True
            if self.settings.alerts is None:
                return None
            from ..alerts import Alerts, Thresholds

            try:
                webhook = self.alert_webhook()
            except ConfigError as exc:
                log.error("no alerts will be sent: %s", exc)
                webhook = None
            config = self.settings.alerts
            if webhook is not None and config is not None:
                limits = Thresholds(config.source_failures, config.bounce_rate, config.complaint_rate, config.min_sent)
                self._alerts = Alerts(self.store, webhook, limits, self.metrics.alert_posted)
        return self._alerts

    def watch_store(self) -> None:
        """Add the store's gauges to this App's metrics (the web's `/metrics` does, once)."""
        self.metrics.watch(self.store.store_counts)

    def alert_on_sources(self) -> None:
        """After an ingest: the sources' health told to the alerts; never fails the ingest."""
        alerts = self.alerts
        if alerts is None:
            return
        try:
            alerts.sources(self.source_health())
        except Exception as exc:  # noqa: BLE001 - an alert never fails the work that raised it
            log.warning("could not check the sources for alerts: %s", exc)

    def alert_on_digests(self, digest_ids: set[int]) -> None:
        """After mail events: each digest they name, its bounce and complaint rates judged."""
        alerts = self.alerts
        if alerts is None:
            return
        for digest_id in sorted(digest_ids):
            try:
                alerts.digest_rates(self.store.digest_rates(digest_id))
            except Exception as exc:  # noqa: BLE001
                log.warning("could not check digest %d's rates for alerts: %s", digest_id, exc)

    def close_watch(self) -> None:
        if self._alerts is not None:
            self._alerts.close()
