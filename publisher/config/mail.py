"""The mail tables: `[mail]` (the transport and each provider's table), `[digest]`, `[hooks]`
(the providers' webhooks) and `[bounces]`. docs/configuration.md documents every key."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field

from .section import ENV_NAME, OPTIONAL_ENV_NAME, Section


class SmtpConfig(Section):
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password_env: str = Field(default="", pattern=OPTIONAL_ENV_NAME)
    timeout: float = Field(default=30.0, gt=0, le=600)
    # seconds for the reply to the final "." of DATA, when a relay scans the message (RFC 5321
    # 4.5.3.2.6: 10 minutes); silence past it makes the delivery uncertain
    data_timeout: float = Field(default=600.0, gt=0, le=3600)


class ApiConfig(Section):
    """One HTTP mail API: the key comes from the environment variable named here."""

    api_key_env: str = Field(pattern=ENV_NAME)
    base_url: str = ""  # empty: the provider's documented default (e.g. EU: https://api.eu.mailgun.net)
    domain: str = ""  # Mailgun's sending domain
    message_stream: str = "broadcast"  # Postmark's stream for list mail


class SesConfig(Section):
    """Amazon SES v2, signed with an access key whose parts are in the variables named here."""

    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")  # e.g. "eu-west-1", where the identity is verified
    access_key_id_env: str = Field(default="AWS_ACCESS_KEY_ID", pattern=ENV_NAME)
    secret_access_key_env: str = Field(default="AWS_SECRET_ACCESS_KEY", pattern=ENV_NAME)
    session_token_env: str = Field(default="", pattern=OPTIONAL_ENV_NAME)  # temporary credentials only
    configuration_set: str = ""  # SES's configuration set: where its bounce and complaint events go
    base_url: str = ""  # empty: https://email.<region>.amazonaws.com


class AliyunConfig(Section):
    """Alibaba Cloud DirectMail, signed with an AccessKey whose parts are in the variables named here."""

    region: str = Field(default="cn-hangzhou", pattern=r"^[a-z]{2}(-[a-z]+)+(-[0-9]+)?$")
    access_key_id_env: str = Field(default="ALIBABA_CLOUD_ACCESS_KEY_ID", pattern=ENV_NAME)
    access_key_secret_env: str = Field(default="ALIBABA_CLOUD_ACCESS_KEY_SECRET", pattern=ENV_NAME)
    security_token_env: str = Field(default="", pattern=OPTIONAL_ENV_NAME)  # STS credentials only
    base_url: str = ""  # empty: the region's endpoint, e.g. https://dm.aliyuncs.com for cn-hangzhou


class OutboxConfig(Section):
    dir: str = "var/outbox"


TRANSPORTS = ("outbox", "smtp", "mailgun", "sendgrid", "postmark", "resend", "ses", "aliyun")


class MailConfig(Section):
    transport: Literal[TRANSPORTS] = "outbox"  # type: ignore[valid-type]
    # Messages per call of a provider's batch API (mailgun, sendgrid, postmark, resend; ses: calls
    # made at once): 0 the provider's own limit (1,000, 1,000, 500, 100; 8), 1 one message a call.
    batch_size: int = Field(default=0, ge=0, le=1000)
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


class DigestConfig(Section):
    """The digest, weekly and/or daily. Empty strings mean "derive from [site]" (docs/configuration.md)."""

    # The cadences readers may choose, the first one theirs unless they chose (docs/digest.md).
    cadences: list[Literal["weekly", "daily"]] = Field(default=["weekly"], min_length=1)
    schedule: str = "0 8 * * mon"  # the weekly digest's cron in the site's zone; day names, never numbers
    daily_schedule: str = "0 7 * * *"  # the daily digest's, when "daily" is one of `cadences`
    # The scripts readers may choose: [] (only the site's, no choice shown) or both, zh-Hans and zh-Hant.
    scripts: list[Literal["zh-Hans", "zh-Hant"]] = Field(default=[], max_length=2)
    subject: str = ""  # Jinja template; empty: the default of the site's language
    sender: str = ""  # "高新院 <newsletter@example.org>"; empty: site title <newsletter@site host>
    reply_to: str = ""
    postal_address: str = ""  # the operator's postal address, in every footer (CAN-SPAM)
    list_name: str = ""  # every cadence's list; empty: the catalogue's per cadence, "<site title>周报" / "…日报"
    max_items_per_category: int = Field(default=10, ge=1, le=100)
    send_when_empty: bool = False
    messages_per_second: float = Field(default=10.0, ge=0)  # 0: as fast as the transport goes
    # Waits before each further try after a temporary error (greylisting, throttling): "30s",
    # "5m", "1h", "1d"; the last one used, a temporary error fails the delivery.
    retry_after: list[str] = Field(default=["1m", "5m", "15m", "1h", "4h"], max_length=20)
    pause_after: int = Field(default=20, ge=1)  # errors in a row before the digest pauses
    unsubscribe_mailto: str = ""  # an address whose mail you process; adds mailto: to List-Unsubscribe
    # Each sent digest's public page under <output>/digests/, its index and Atom feed, and the
    # "View in browser" link in every mail (docs/digest.md); false: no pages and no link.
    archive: bool = True

    def schedule_of(self, cadence: str) -> str:
        """The cron line of a cadence's digest."""
        return self.daily_schedule if cadence == "daily" else self.schedule

    @property
    def retry_delays(self) -> tuple[timedelta, ...]:
        """`retry_after` as time spans (mail_checks.py has refused any that is not a duration)."""
        return tuple(timedelta(seconds=duration_seconds(t) or 0) for t in self.retry_after)


class FanoutConfig(Section):
    """Digest fan-out on Procrastinate workers, PostgreSQL stores only (docs/scale.md)."""

    # True: planning defers one job per chunk of readers (in the transaction of its delivery
    # rows) and `publisher worker` processes send them; false: one process sends (`publisher run`).
    enabled: bool = False
    chunk: int = Field(default=1000, ge=1, le=100_000)  # readers per chunk (one job), by subscriber id
    concurrency: int = Field(default=1, ge=1, le=64)  # chunks a worker sends at once; together at messages_per_second
    heartbeat: str = "10s"  # how often a worker tells the store it is alive
    # A worker silent this long is taken for dead: its chunks go to another worker, and the
    # message it had in flight is recorded uncertain (never sent twice by itself).
    stalled_after: str = "30s"

    @property
    def heartbeat_seconds(self) -> int:
        return duration_seconds(self.heartbeat) or 10

    @property
    def stalled_seconds(self) -> int:
        return duration_seconds(self.stalled_after) or 30


class MailgunHookConfig(Section):
    signing_key_env: str = Field(default="MAILGUN_WEBHOOK_SIGNING_KEY", pattern=ENV_NAME)


class SendgridHookConfig(Section):
    public_key: str = Field(min_length=1)  # the Event Webhook's verification key: base64 DER, not a secret


class PostmarkHookConfig(Section):
    username: str = Field(min_length=1, pattern=r"^[^:]+$")  # the user in the webhook URL's credentials
    password_env: str = Field(default="POSTMARK_WEBHOOK_PASSWORD", pattern=ENV_NAME)


class ResendHookConfig(Section):
    secret_env: str = Field(default="RESEND_WEBHOOK_SECRET", pattern=ENV_NAME)  # whsec_...


_TOPIC_ARN = r"^arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]{1,256}$"


class SesHookConfig(Section):
    topic_arns: list[Annotated[str, Field(pattern=_TOPIC_ARN)]] = Field(min_length=1)  # the SNS topics we take


class AliyunHookConfig(Section):
    token_env: str = Field(default="ALIYUN_WEBHOOK_TOKEN", pattern=ENV_NAME)


class HooksConfig(Section):
    """Provider events under /hooks/<provider>; a provider without its table is not served (404)."""

    body_limit: int = Field(default=1_048_576, ge=65_536, le=16_777_216)  # bytes of one request
    mailgun: MailgunHookConfig | None = None
    sendgrid: SendgridHookConfig | None = None
    postmark: PostmarkHookConfig | None = None
    resend: ResendHookConfig | None = None
    ses: SesHookConfig | None = None
    aliyun: AliyunHookConfig | None = None


class BounceMailboxConfig(Section):
    """A dedicated mailbox that receives bounces and complaints, polled over IMAP or POP3
    (docs/digest.md, "Bounce mailbox")."""

    protocol: Literal["imap", "pop3"] = "imap"
    host: str = Field(min_length=1)
    port: int = Field(default=0, ge=0, le=65535)  # 0: 993 / 995 with tls, else 143 / 110
    security: Literal["tls", "starttls", "none"] = "tls"  # none: only for a server on this machine
    username: str = Field(min_length=1)
    password_env: str = Field(pattern=ENV_NAME)
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


class BounceRuleConfig(Section):
    """One kind's rule (publisher.bounces.rules): `count` events within `within_days` -> `action`."""

    count: int = Field(ge=1, le=1000)
    within_days: int = Field(ge=1, le=3650)
    action: Literal["none", "unsubscribe", "suppress"]


class BounceRulesConfig(Section):
    hard: BounceRuleConfig = BounceRuleConfig(count=1, within_days=365, action="suppress")
    soft: BounceRuleConfig = BounceRuleConfig(count=3, within_days=30, action="suppress")
    complaint: BounceRuleConfig = BounceRuleConfig(count=1, within_days=365, action="suppress")
    unsubscribe: BounceRuleConfig = BounceRuleConfig(count=1, within_days=365, action="unsubscribe")


class BouncesConfig(Section):
    """Bounces and complaints (docs/digest.md, "Bounces and complaints")."""

    return_path: str = ""  # "bounces@example.org": the envelope sender, as bounces+<token>@example.org (VERP)
    rules: BounceRulesConfig = BounceRulesConfig()
    mailbox: BounceMailboxConfig | None = None  # the bounce mailbox, read over IMAP or POP3
