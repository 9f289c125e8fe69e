"""The configuration: the only reader of TOML and the environment (with `config_file`). Validates once and reports
every problem at once, each with its key path and the fix.

The shape, one pydantic model per table: `settings` (`Settings`, the site's and the service's
tables), `sources` (`[[sources]]`), `mail` (`[mail]`, `[digest]`, `[hooks]`, `[bounces]`), on
`section`'s base. What types cannot say: `checks` (`check_meaning`), `source_checks`,
`mail_checks`, `addresses` (one URL or address). `load`: reading the file (found by
`publisher.config_file`) and the secrets it names. Everything public is imported from here,
`from publisher.config import ...`.
"""

from ..config_file import DEFAULT_PATHS, find_config
from .addresses import is_loopback, listen_address, mailbox, web_origin
from .load import load_settings, optional_secret, secret, validate
from .mail import (
    TRANSPORTS,
    ApiConfig,
    BounceMailboxConfig,
    BounceRuleConfig,
    BounceRulesConfig,
    BouncesConfig,
    DigestConfig,
    FanoutConfig,
    MailConfig,
    OutboxConfig,
    SmtpConfig,
)
from .settings import (
    AdminConfig,
    AlertsConfig,
    CategoryConfig,
    FeedsConfig,
    MetricsConfig,
    OutputConfig,
    ScheduleConfig,
    Settings,
    SiteConfig,
    StoreConfig,
    TextConfig,
    ThemeConfig,
    WebConfig,
    WebSubConfig,
)
from .sources import (
    SOURCE_TYPES,
    FeedSourceConfig,
    FilesSourceConfig,
    HtmlArticleConfig,
    HtmlListConfig,
    HtmlSourceConfig,
    JsonFieldsConfig,
    JsonPagingConfig,
    JsonSourceConfig,
    SourceConfig,
    WebSourceConfig,
    WordPressSourceConfig,
)

__all__ = [
    "DEFAULT_PATHS", "SOURCE_TYPES", "TRANSPORTS", "AdminConfig", "AlertsConfig", "ApiConfig", "BounceMailboxConfig",
    "BounceRuleConfig", "BounceRulesConfig", "BouncesConfig", "CategoryConfig", "DigestConfig", "FanoutConfig",
    "FeedSourceConfig", "FeedsConfig", "FilesSourceConfig", "HtmlArticleConfig", "HtmlListConfig", "HtmlSourceConfig",
    "JsonFieldsConfig", "JsonPagingConfig", "JsonSourceConfig", "MailConfig", "MetricsConfig", "OutboxConfig",
    "OutputConfig", "ScheduleConfig", "Settings", "SiteConfig", "SmtpConfig", "SourceConfig", "StoreConfig",
    "TextConfig", "ThemeConfig", "WebConfig", "WebSourceConfig", "WebSubConfig", "WordPressSourceConfig", "find_config",
    "is_loopback", "listen_address", "web_origin", "load_settings", "mailbox", "optional_secret", "secret",
    "validate",
]  # fmt: skip
