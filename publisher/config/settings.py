"""The configuration's shape: `Settings`, one pydantic model per table with its defaults and
limits. Here the site's own tables and the service's (`[web]`, `[admin]`, `[metrics]`,
`[websub]`, `[alerts]`); the sources' tables are in `config.sources`, the mail tables in `config.mail`.

Validated once by `config.load`; the checks pydantic's types cannot express are in
`config.checks`. docs/configuration.md documents every key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..config_file import DEFAULT_STORE_URL
from ..text import CONVERSIONS
from .addresses import ConfiguredUrl
from .mail import BouncesConfig, DigestConfig, FanoutConfig, HooksConfig, MailConfig
from .section import ENV_NAME, OPTIONAL_ENV_NAME, Section
from .sources import SourceConfig

_SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"


class SiteConfig(Section):
    title: str = Field(min_length=1)
    url: ConfiguredUrl
    language: str = "zh-CN"
    timezone: str = "Asia/Shanghai"
    description: str = ""
    author: str = ""


class OutputConfig(Section):
    dir: str = "public"
    base_url: ConfiguredUrl = ""  # where `dir` is served; empty: the site's URL


class StoreConfig(Section):
    url: str = DEFAULT_STORE_URL


class TextConfig(Section):
    convert: Literal[CONVERSIONS] = "none"  # type: ignore[valid-type]
    summary_length: int = Field(default=120, ge=10, le=2000)
    remove_glosses: bool = True
    traditional: Literal["s2t", "s2tw", "s2twp", "s2hk"] = "s2t"  # how Simplified becomes a reader's 繁體
    simplified: Literal["t2s", "tw2s", "tw2sp", "hk2s"] = "t2s"  # how Traditional becomes a reader's 简体


class FeedsConfig(Section):
    max_items: int = Field(default=50, ge=1, le=1000)
    # the scripts the feeds and pages are published in: the site's own at the root, the other
    # under /zh-hant/ or /zh-hans/ (publisher.scripts); empty: the site's own only
    scripts: list[Literal["zh-Hans", "zh-Hant"]] = Field(default=[], max_length=2)


class CategoryConfig(Section):
    name: str = Field(min_length=1)
    slug: str | None = Field(default=None, pattern=_SLUG)
    description: str = ""
    url: ConfiguredUrl = ""  # the category's page on the site (checks.py: absolute http(s))


class ScheduleConfig(Section):
    ingest_every: int = Field(default=15, ge=1, le=1440)  # minutes between ingest + build runs
    misfire_grace: int = Field(default=360, ge=1, le=10080)  # minutes a missed run may start late


class ThemeConfig(Section):
    """The operator's look (docs/themes.md); every key optional."""

    templates: str = ""  # a folder whose files override the bundled templates by name
    logo_url: ConfiguredUrl = ""  # an absolute https URL, shown atop the digest and the pages
    accent_color: str = "#b4232a"  # links, section headings, buttons
    intro: str = ""  # one line under the digest's masthead
    footer: str = ""  # text, or HTML (sanitised), at the foot of the digest and the pages
    consent: str = ""  # the words beside every sign-up form; empty: the catalogue's pages.consent
    privacy: str = ""  # the privacy line of every mail and page; empty: the catalogue's pages.privacy
    privacy_url: ConfiguredUrl = ""  # the privacy policy, linked from that line


class WebConfig(Section):
    public_url: ConfiguredUrl = ""  # where the subscription pages are reached; empty: the site's URL
    secret_key_env: str = Field(default="PUBLISHER_SECRET_KEY", pattern=ENV_NAME)
    host: str = "127.0.0.1"  # `publisher run` / `serve` listen here
    port: int = Field(default=8080, ge=0, le=65535)
    trust_proxy: bool = False  # behind nginx: the client address is the last X-Forwarded-For
    trusted_proxy: str = "127.0.0.1"  # the proxy's address, whose X-Forwarded-For is believed
    connection_limit: int = Field(default=500, ge=10, le=100_000)  # open connections at once
    channel_timeout: int = Field(default=15, ge=1, le=3600)  # seconds before an idle connection is closed
    health_token_env: str = Field(default="PUBLISHER_HEALTH_TOKEN", pattern=ENV_NAME)  # /healthz details
    subscribe_per_address: int = Field(default=3, ge=1)  # sign-up requests per address per hour
    subscribe_per_client: int = Field(default=20, ge=1)  # per client network (IPv4 /24, IPv6 /64) per hour
    confirmation_mails_per_day: int = Field(default=5, ge=1)  # sign-up e-mails per mailbox per day
    # Sites whose pages hold the sign-up snippet (`publisher embed`), as origins
    # ("https://www.example.org"): the form returns to their pages, the JSON endpoint answers them.
    embed_origins: list[str] = []


class AdminConfig(Section):
    """The operator's console at /admin (docs/operations.md, "The console")."""

    enabled: bool = True  # /admin is served; it answers 404 until `publisher admin add` made an account
    listen: str = ""  # "127.0.0.1:8081": the console on its own address, not on the public server
    public_url: ConfiguredUrl = ""  # where the console is reached, for set-password links; empty: web.public_url
    idle_minutes: int = Field(default=30, ge=1, le=1440)  # a session unused this long ends
    session_hours: int = Field(default=12, ge=1, le=720)  # a session ends this long after sign-in
    lockout_minutes: int = Field(default=15, ge=1, le=10080)  # how long 10 bad passwords lock an account
    failed_logins_per_client: int = Field(default=30, ge=1)  # failed sign-ins per client network an hour


class MetricsConfig(Section):
    """`/metrics` (docs/operations.md, "Metrics")."""

    enabled: bool = True  # served by `publisher run` and `serve`
    public: bool = False  # anyone may read it; else only the health token's bearer or this machine


class WebSubConfig(Section):
    """WebSub: the hubs every feed names, pinged after a build that changed feeds (docs/feeds.md, "WebSub")."""

    hubs: list[str] = []  # absolute http(s) URLs of the hubs; empty: no hub links, no pings
    timeout: float = Field(default=10.0, gt=0, le=60)  # seconds for a hub's whole answer to one ping
    allow_private: bool = False  # may ping a hub on a loopback or private address (one on your own network)


class AlertsConfig(Section):
    """A webhook told when something needs the operator (docs/operations.md, "Alerts")."""

    url_env: str = Field(pattern=ENV_NAME)  # the variable holding the webhook's URL (a robot's token is in it)
    format: Literal["generic", "dingtalk", "wecom"] = "generic"
    msgtype: Literal["markdown", "text"] = "markdown"  # dingtalk and wecom: the robot message's type
    secret_env: str = Field(default="", pattern=OPTIONAL_ENV_NAME)  # dingtalk: the signing secret; generic: HMAC
    timeout: float = Field(default=5.0, gt=0, le=30)  # seconds for the webhook's whole answer
    allow_private: bool = False  # may post to a loopback or private address (a robot on the intranet)
    source_failures: int = Field(default=3, ge=1, le=1000)  # runs in a row a source or part fails before an alert
    bounce_rate: float = Field(default=0.05, gt=0, le=1)  # hard-bounced share of a digest's sent deliveries
    complaint_rate: float = Field(default=0.003, gt=0, le=1)  # complaints' share (Gmail's bulk-sender limit: 0.3 %)
    min_sent: int = Field(default=100, ge=1)  # a digest's rates are judged once this many went out


class Settings(Section):
    site: SiteConfig
    output: OutputConfig = OutputConfig()
    store: StoreConfig = StoreConfig()
    text: TextConfig = TextConfig()
    feeds: FeedsConfig = FeedsConfig()
    categories: list[CategoryConfig] = Field(min_length=1)
    sources: list[SourceConfig] = Field(min_length=1)
    mail: MailConfig = MailConfig()
    digest: DigestConfig = DigestConfig()
    fanout: FanoutConfig = FanoutConfig()
    web: WebConfig = WebConfig()
    admin: AdminConfig = AdminConfig()
    hooks: HooksConfig = HooksConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    theme: ThemeConfig = ThemeConfig()
    bounces: BouncesConfig = BouncesConfig()
    metrics: MetricsConfig = MetricsConfig()
    websub: WebSubConfig = WebSubConfig()
    alerts: AlertsConfig | None = None
