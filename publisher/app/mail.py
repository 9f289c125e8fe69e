"""The composition root's mail: the configured transport (its secrets read from the
environment when it is made), the providers' webhooks, the bounce rules, and the service
every bounce door hands its events to."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from ..errors import ConfigError
from ..ingest import Clock
from ..metrics import Metrics
from ..store import Store

if TYPE_CHECKING:
    from ..bounces.events import EventKind, MailEvent
    from ..bounces.mailbox import PollReport
    from ..bounces.providers import Door
    from ..bounces.recorder import RecordReport
    from ..bounces.rules import Rule
    from ..transports import Transport

LEFT_IN_POP3_META = "bounce_mailbox_left"  # the UIDLs of POP3 messages the bounce mailbox could not read

SES_THREADS_MOST = 16  # SES calls made at once (`[mail] batch_size`), each from a thread of its own


class MailServices:
    """`App`'s part that sends and hears back about mail (a mixin: App provides what is declared here)."""

    settings: Settings
    clock: Clock
    metrics: Metrics

    if TYPE_CHECKING:

        @property
        def store(self) -> Store: ...
        @property
        def signing_key(self) -> bytes: ...
        def alert_on_digests(self, digest_ids: set[int]) -> None: ...

    def transport(self) -> Transport:
        """The configured transport; its secret is read from the environment now."""
        from ..config import secret

        mail = self.settings.mail
        if mail.transport == "outbox":
            from ..transports.outbox import OutboxTransport

            return OutboxTransport(Path(mail.outbox.dir))
        if mail.transport == "smtp":
            from ..transports.smtp import SmtpTransport

            smtp = mail.smtp
            assert smtp is not None  # validated
            password = secret(smtp.password_env, "mail.smtp.password_env") if smtp.password_env else None
            return SmtpTransport(
                smtp.host, smtp.port, smtp.security, smtp.username or None, password, timeout=smtp.timeout,
                data_timeout=smtp.data_timeout,
            )  # fmt: skip
        from ..transports.http_api import HttpApiTransport  # with requests: only the HTTP APIs import it

        if mail.transport == "ses" and mail.ses is not None:
            from ..transports import ses

            c = mail.ses
            token = secret(c.session_token_env, "mail.ses.session_token_env") if c.session_token_env else ""
            key_id = secret(c.access_key_id_env, "mail.ses.access_key_id_env")
            options = {"region": c.region, "access_key_id": key_id, "session_token": token}
            options["configuration_set"] = c.configuration_set
            key = secret(c.secret_access_key_env, "mail.ses.secret_access_key_env")
            url = c.base_url or ses.endpoint(c.region)
            if mail.batch_size == 1:
                return HttpApiTransport(ses.PROVIDER, key, url, options)
            from ..transports.batch import ConcurrentTransport

            threads = min(mail.batch_size or 8, SES_THREADS_MOST)  # a thread each: not 1,000
            return ConcurrentTransport(lambda: HttpApiTransport(ses.PROVIDER, key, url, options), threads)
        if mail.transport == "aliyun" and mail.aliyun is not None:
            from ..transports import aliyun

            d = mail.aliyun
            token = secret(d.security_token_env, "mail.aliyun.security_token_env") if d.security_token_env else ""
            key_id = secret(d.access_key_id_env, "mail.aliyun.access_key_id_env")
            key = secret(d.access_key_secret_env, "mail.aliyun.access_key_secret_env")
            options = {"access_key_id": key_id, "security_token": token}
            return HttpApiTransport(aliyun.PROVIDER, key, d.base_url or aliyun.endpoint(d.region), options)
        api = getattr(mail, mail.transport)
        key = secret(api.api_key_env, f"mail.{mail.transport}.api_key_env")
        options = {"domain": api.domain, "message_stream": api.message_stream}
        single = HttpApiTransport(mail.transport, key, base_url=api.base_url or None, options=options)
        if mail.batch_size == 1:
            return single
        from ..transports.batch import BATCH_APIS, BatchApiTransport

        return BatchApiTransport(single, BATCH_APIS[mail.transport], mail.batch_size or None)

    def hook_doors(self) -> dict[str, Door]:
        """The webhooks of the providers configured under [hooks], by name; their secrets are
        read from the environment now (ConfigError naming the key when one is missing)."""
        hooks = self.settings.hooks
        # No provider's table: their modules (requests, cryptography) are not imported. A key
        # that is not a provider and is set would only turn this shortcut off, never skip one.
        if all(getattr(hooks, name) is None for name in type(hooks).model_fields if name != "body_limit"):
            return {}
        from ..bounces.providers import Aliyun, Mailgun, Postmark, Resend, Sendgrid, Ses
        from ..config import secret

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
        from ..bounces.events import EventKind
        from ..bounces.rules import Action, Rule

        config = self.settings.bounces.rules
        kinds = {"hard": EventKind.HARD_BOUNCE, "soft": EventKind.SOFT_BOUNCE, "complaint": EventKind.COMPLAINT,
                 "unsubscribe": EventKind.UNSUBSCRIBE}  # fmt: skip
        configured = {kind: getattr(config, name) for name, kind in kinds.items()}
        return {kind: Rule(c.count, c.within_days, Action(c.action)) for kind, c in configured.items()}

    def record_mail_events(self, events: Iterable[MailEvent]) -> RecordReport:
        """What a provider's webhook or the bounce mailbox said: each event linked to its
        delivery, kept once, and its rule applied (bounces.recorder)."""
        from ..bounces.recorder import record_events

        events = list(events)
        report = record_events(self.store, self.signing_key, self.bounce_rules, events, self.clock)
        for event, recorded in zip(events, report.outcomes, strict=True):
            if recorded.id is not None:
                self.metrics.mail_event(event.kind.value, event.source[:40])
        self.alert_on_digests(report.digests)
        return report

    def poll_bounce_mailbox(self) -> PollReport:
        """Read `[bounces.mailbox]` once: its bounces and complaints recorded (and their rules
        applied), the messages read moved or deleted, the rest left and counted."""
        import json

        from ..bounces.mailbox import ImapMailbox, MailboxAccess, Pop3Mailbox, poll
        from ..config import secret

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
