"""The configuration's shape: one pydantic model per table, with its defaults and limits.

Validated once by `config.load`; the checks pydantic's types cannot express are in
`config.checks`. docs/configuration.md documents every key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from ..text import CONVERSIONS

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
    url: str = ""  # the category's page on the site (checks.py: absolute http(s))


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


class HtmlListOverride(_Section):
    """One category's own way through its list pages; a key left out is the source's."""

    links: str | None = Field(default=None, min_length=1)
    next: str | None = None  # with url_pattern unset: replaces the source's url_pattern too
    url_pattern: str | None = None  # with next unset: replaces the source's next too
    max_pages: int | None = Field(default=None, ge=1, le=200)


class HtmlListConfig(_Section):
    pages: dict[str, list[str]] = Field(min_length=1)  # category name or slug -> first list pages
    links: str = Field(min_length=1)  # CSS selector of the article links on a list page
    next: str | None = None  # CSS selector of the link to the next list page
    url_pattern: str | None = None  # or list page URLs with {page}: 2, 3, ...
    max_pages: int = Field(default=5, ge=1, le=200)
    overrides: dict[str, HtmlListOverride] = {}  # category (as in pages, or its other name) -> its own

    def matched_overrides(self, category_of: Mapping[str, str]) -> tuple[dict[str, HtmlListOverride], list[str]]:
        """(key of `pages` -> its category's override, override keys naming no category of
        `pages`); `category_of`: each category's name and slug -> its name."""
        by_category = {category_of.get(key, key): key for key in self.pages}
        matched, unmatched = {}, []
        for key, override in self.overrides.items():
            page_key = by_category.get(category_of.get(key, key))
            if page_key is None:
                unmatched.append(key)
            else:
                matched[page_key] = override
        return matched, unmatched


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


_OPTIONAL_ENV_NAME = r"^(|[A-Za-z_][A-Za-z0-9_]*)$"


class SesConfig(_Section):
    """Amazon SES v2, signed with an access key whose parts are in the variables named here."""

    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")  # e.g. "eu-west-1", where the identity is verified
    access_key_id_env: str = Field(default="AWS_ACCESS_KEY_ID", pattern=_ENV_NAME)
    secret_access_key_env: str = Field(default="AWS_SECRET_ACCESS_KEY", pattern=_ENV_NAME)
    session_token_env: str = Field(default="", pattern=_OPTIONAL_ENV_NAME)  # temporary credentials only
    configuration_set: str = ""  # SES's configuration set: where its bounce and complaint events go
    base_url: str = ""  # empty: https://email.<region>.amazonaws.com


class AliyunConfig(_Section):
    """Alibaba Cloud DirectMail, signed with an AccessKey whose parts are in the variables named here."""

    region: str = Field(default="cn-hangzhou", pattern=r"^[a-z]{2}(-[a-z]+)+(-[0-9]+)?$")
    access_key_id_env: str = Field(default="ALIBABA_CLOUD_ACCESS_KEY_ID", pattern=_ENV_NAME)
    access_key_secret_env: str = Field(default="ALIBABA_CLOUD_ACCESS_KEY_SECRET", pattern=_ENV_NAME)
    security_token_env: str = Field(default="", pattern=_OPTIONAL_ENV_NAME)  # STS credentials only
    base_url: str = ""  # empty: the region's endpoint, e.g. https://dm.aliyuncs.com for cn-hangzhou


class OutboxConfig(_Section):
    dir: str = "var/outbox"


TRANSPORTS = ("outbox", "smtp", "mailgun", "sendgrid", "postmark", "resend", "ses", "aliyun")


class MailConfig(_Section):
    transport: Literal[TRANSPORTS] = "outbox"  # type: ignore[valid-type]
    smtp: SmtpConfig | None = None
    mailgun: ApiConfig | None = None
    sendgrid: ApiConfig | None = None
    postmark: ApiConfig | None = None
    resend: ApiConfig | None = None
    ses: SesConfig | None = None
    aliyun: AliyunConfig | None = None
    outbox: OutboxConfig = OutboxConfig()


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int | None:
    """Seconds in a duration such as "90s", "15m", "4h" or "1d"; None when it is not one."""
    match = re.fullmatch(r"([0-9]{1,6})([smhd])", text.strip())
    return int(match[1]) * DURATION_UNITS[match[2]] if match else None


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
    # Waits before each further try after a temporary error (greylisting, throttling): "30s",
    # "5m", "1h", "1d"; the last one used, a temporary error fails the delivery.
    retry_after: list[str] = Field(default=["1m", "5m", "15m", "1h", "4h"], max_length=20)
    pause_after: int = Field(default=20, ge=1)  # errors in a row before the digest pauses
    unsubscribe_mailto: str = ""  # an address whose mail you process; adds mailto: to List-Unsubscribe

    @property
    def retry_delays(self) -> tuple[timedelta, ...]:
        """`retry_after` as time spans (checks.py has refused any that is not a duration)."""
        return tuple(timedelta(seconds=duration_seconds(t) or 0) for t in self.retry_after)


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


class AdminConfig(_Section):
    """The operator's console at /admin (docs/operations.md, "The console")."""

    enabled: bool = True  # /admin is served; it answers 404 until `publisher admin add` made an account
    listen: str = ""  # "127.0.0.1:8081": the console on its own address, not on the public server
    public_url: str = ""  # where the console is reached, for set-password links; empty: web.public_url
    idle_minutes: int = Field(default=30, ge=1, le=1440)  # a session unused this long ends
    session_hours: int = Field(default=12, ge=1, le=720)  # a session ends this long after sign-in
    lockout_minutes: int = Field(default=15, ge=1, le=10080)  # how long 10 bad passwords lock an account
    failed_logins_per_client: int = Field(default=30, ge=1)  # failed sign-ins per client network an hour


class MailgunHookConfig(_Section):
    signing_key_env: str = Field(default="MAILGUN_WEBHOOK_SIGNING_KEY", pattern=_ENV_NAME)


class SendgridHookConfig(_Section):
    public_key: str = Field(min_length=1)  # the Event Webhook's verification key: base64 DER, not a secret


class PostmarkHookConfig(_Section):
    username: str = Field(min_length=1, pattern=r"^[^:]+$")  # the user in the webhook URL's credentials
    password_env: str = Field(default="POSTMARK_WEBHOOK_PASSWORD", pattern=_ENV_NAME)


class ResendHookConfig(_Section):
    secret_env: str = Field(default="RESEND_WEBHOOK_SECRET", pattern=_ENV_NAME)  # whsec_...


_TOPIC_ARN = r"^arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]{1,256}$"


class SesHookConfig(_Section):
    topic_arns: list[Annotated[str, Field(pattern=_TOPIC_ARN)]] = Field(min_length=1)  # the SNS topics we take


class AliyunHookConfig(_Section):
    token_env: str = Field(default="ALIYUN_WEBHOOK_TOKEN", pattern=_ENV_NAME)


class HooksConfig(_Section):
    """Provider events under /hooks/<provider>; a provider without its table is not served (404)."""

    body_limit: int = Field(default=1_048_576, ge=65_536, le=16_777_216)  # bytes of one request
    mailgun: MailgunHookConfig | None = None
    sendgrid: SendgridHookConfig | None = None
    postmark: PostmarkHookConfig | None = None
    resend: ResendHookConfig | None = None
    ses: SesHookConfig | None = None
    aliyun: AliyunHookConfig | None = None


class BounceMailboxConfig(_Section):
    """A dedicated mailbox that receives bounces and complaints, polled over IMAP or POP3
    (docs/digest.md, "Bounce mailbox")."""

    protocol: Literal["imap", "pop3"] = "imap"
    host: str = Field(min_length=1)
    port: int = Field(default=0, ge=0, le=65535)  # 0: 993 / 995 with tls, else 143 / 110
    security: Literal["tls", "starttls", "none"] = "tls"  # none: only for a server on this machine
    username: str = Field(min_length=1)
    password_env: str = Field(pattern=_ENV_NAME)
    folder: str = Field(default="INBOX", min_length=1)  # IMAP: the folder bounces arrive in
    processed: Literal["", "move", "delete"] = ""  # what is done with a message read; "": move (IMAP), delete (POP3)
    processed_folder: str = Field(default="Processed", min_length=1)  # IMAP: where "move" puts it
    interval: int = Field(default=15, ge=1, le=1440)  # minutes between polls in `publisher run`
    max_messages: int = Field(default=500, ge=1, le=10_000)  # read in one poll; the rest wait for the next
    timeout: float = Field(default=30.0, gt=0, le=600)  # seconds for each read from the server

    @property
    def action(self) -> Literal["move", "delete"]:
        if self.processed:
            return self.processed
        return "move" if self.protocol == "imap" else "delete"

    @property
    def server_port(self) -> int:
        """The configured port, else the protocol's: 993 / 995 for implicit TLS, else 143 / 110."""
        defaults = {("imap", True): 993, ("imap", False): 143, ("pop3", True): 995, ("pop3", False): 110}
        return self.port or defaults[(self.protocol, self.security == "tls")]


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


class BounceRuleConfig(_Section):
    """One kind's rule (publisher.bounces.rules): `count` events within `within_days` -> `action`."""

    count: int = Field(ge=1, le=1000)
    within_days: int = Field(ge=1, le=3650)
    action: Literal["none", "unsubscribe", "suppress"]


class BounceRulesConfig(_Section):
    hard: BounceRuleConfig = BounceRuleConfig(count=1, within_days=365, action="suppress")
    soft: BounceRuleConfig = BounceRuleConfig(count=3, within_days=30, action="suppress")
    complaint: BounceRuleConfig = BounceRuleConfig(count=1, within_days=365, action="suppress")
    unsubscribe: BounceRuleConfig = BounceRuleConfig(count=1, within_days=365, action="unsubscribe")


class BouncesConfig(_Section):
    """Bounces and complaints (docs/digest.md, "Bounces and complaints")."""

    return_path: str = ""  # "bounces@example.org": the envelope sender, as bounces+<token>@example.org (VERP)
    rules: BounceRulesConfig = BounceRulesConfig()
    mailbox: BounceMailboxConfig | None = None  # the bounce mailbox, read over IMAP or POP3


class MetricsConfig(_Section):
    """`/metrics` (docs/operations.md, "Metrics")."""

    enabled: bool = True  # served by `publisher run` and `serve`
    public: bool = False  # anyone may read it; else only the health token's bearer or this machine


class AlertsConfig(_Section):
    """A webhook told when something needs the operator (docs/operations.md, "Alerts")."""

    url_env: str = Field(pattern=_ENV_NAME)  # the variable holding the webhook's URL (a robot's token is in it)
    format: Literal["generic", "dingtalk", "wecom"] = "generic"
    msgtype: Literal["markdown", "text"] = "markdown"  # dingtalk and wecom: the robot message's type
    secret_env: str = Field(default="", pattern=_OPTIONAL_ENV_NAME)  # dingtalk: the signing secret; generic: HMAC
    timeout: float = Field(default=5.0, gt=0, le=30)  # seconds for the webhook's whole answer
    allow_private: bool = False  # may post to a loopback or private address (a robot on the intranet)
    source_failures: int = Field(default=3, ge=1, le=1000)  # runs in a row a source or part fails before an alert
    bounce_rate: float = Field(default=0.05, gt=0, le=1)  # hard-bounced share of a digest's sent deliveries
    complaint_rate: float = Field(default=0.003, gt=0, le=1)  # complaints' share (Gmail's bulk-sender limit: 0.3 %)
    min_sent: int = Field(default=100, ge=1)  # a digest's rates are judged once this many went out


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
    admin: AdminConfig = AdminConfig()
    hooks: HooksConfig = HooksConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    theme: ThemeConfig = ThemeConfig()
    bounces: BouncesConfig = BouncesConfig()
    metrics: MetricsConfig = MetricsConfig()
    alerts: AlertsConfig | None = None
