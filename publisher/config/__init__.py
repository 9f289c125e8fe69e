"""The configuration: the only reader of TOML and the environment. Validates once and reports
every problem at once, each with its key path and the fix.

`settings` holds the shape (one pydantic model per table), `checks` what types cannot say,
`load` where the file is, reading it and the secrets it names.
"""

from .checks import is_loopback, mailbox
from .load import DEFAULT_PATHS, find_config, load_settings, optional_secret, secret, validate
from .settings import (
    SOURCE_TYPES,
    TRANSPORTS,
    AlertsConfig,
    ApiConfig,
    BounceMailboxConfig,
    BounceRuleConfig,
    BounceRulesConfig,
    BouncesConfig,
    CategoryConfig,
    DigestConfig,
    FeedsConfig,
    FeedSourceConfig,
    FilesSourceConfig,
    HtmlArticleConfig,
    HtmlListConfig,
    HtmlSourceConfig,
    JsonFieldsConfig,
    JsonPagingConfig,
    JsonSourceConfig,
    MailConfig,
    MetricsConfig,
    OutboxConfig,
    OutputConfig,
    ScheduleConfig,
    Settings,
    SiteConfig,
    SmtpConfig,
    SourceConfig,
    StoreConfig,
    TextConfig,
    ThemeConfig,
    WebConfig,
    WebSourceConfig,
    WordPressSourceConfig,
)

__all__ = [
    "DEFAULT_PATHS", "SOURCE_TYPES", "TRANSPORTS", "AlertsConfig", "ApiConfig", "BounceMailboxConfig",
    "BounceRuleConfig", "BounceRulesConfig", "BouncesConfig", "CategoryConfig", "DigestConfig", "FeedSourceConfig",
    "FeedsConfig", "FilesSourceConfig", "HtmlArticleConfig", "HtmlListConfig", "HtmlSourceConfig", "JsonFieldsConfig",
    "JsonPagingConfig", "JsonSourceConfig", "MailConfig", "MetricsConfig", "OutboxConfig", "OutputConfig",
    "ScheduleConfig", "Settings", "SiteConfig", "SmtpConfig", "SourceConfig", "StoreConfig", "TextConfig",
    "ThemeConfig", "WebConfig", "WebSourceConfig", "WordPressSourceConfig", "find_config", "is_loopback",
    "load_settings", "mailbox", "optional_secret", "secret", "validate",
]  # fmt: skip
