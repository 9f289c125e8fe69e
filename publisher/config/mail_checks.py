"""The meaning checks of the mail tables: `[mail]`'s transport and providers, `[digest]` (its
cron line, addresses, retry waits, subject), `[hooks]` and `[bounces]`."""

from __future__ import annotations

import re

from .addresses import http_url, is_loopback, mailbox
from .mail import BouncesConfig, DigestConfig, FanoutConfig, HooksConfig, MailConfig, duration_seconds


def check_mail(mail: MailConfig) -> list[tuple[str, str, str]]:
    problems: list[tuple[str, str, str]] = []
    if mail.transport != "outbox" and getattr(mail, mail.transport) is None:
        problems.append(
            (f"mail.{mail.transport}", "missing", f"add a [mail.{mail.transport}] table (docs/configuration.md)")
        )
    if mail.mailgun is not None and not mail.mailgun.domain:
        problems.append(("mail.mailgun.domain", "missing", 'add `domain = "mg.example.org"`, your sending domain'))
    for provider in ("mailgun", "sendgrid", "postmark", "resend", "ses", "aliyun"):
        api = getattr(mail, provider)
        if api is not None and api.base_url:
            problems += http_url(f"mail.{provider}.base_url", api.base_url, "https://api.eu.mailgun.net")
    return problems


def check_digest(digest: DigestConfig) -> list[tuple[str, str, str]]:
    problems = []
    for key, example in (("schedule", '"0 8 * * mon"'), ("daily_schedule", '"0 7 * * *"')):
        # A default is a good line (tested): APScheduler's cron parser, which imports asyncio,
        # is read only for a line the file gives (15 ms of every command's start)
        if key in digest.model_fields_set:
            problems += _cron(f"digest.{key}", getattr(digest, key), example)
    if "daily_schedule" in digest.model_fields_set and "daily" not in digest.cadences:
        # Set for a digest that is never sent: most likely "daily" was meant to be offered.
        unused = 'is set, but there is no daily digest: "daily" is not in digest.cadences'
        fix = 'add "daily" to digest.cadences (e.g. ["weekly", "daily"]), or remove daily_schedule'
        problems.append(("digest.daily_schedule", unused, fix))
    if len(set(digest.cadences)) != len(digest.cadences):
        problems.append(("digest.cadences", "names a cadence twice", 'write each once, like ["weekly", "daily"]'))
    if len(digest.scripts) == 1 or len(set(digest.scripts)) != len(digest.scripts):
        fix = 'leave it empty (every reader gets the site\'s script) or offer both: ["zh-Hans", "zh-Hant"]'
        problems.append(("digest.scripts", f"{digest.scripts!r} offers no choice", fix))
    for key in ("sender", "reply_to"):
        value = getattr(digest, key)
        if value and mailbox(value) is None:
            problems.append(
                (f"digest.{key}", f"{value!r} is not an address", 'write it like "高新院 <news@example.org>"')
            )
    problems += _retry_after(digest.retry_after)
    if digest.unsubscribe_mailto and mailbox(digest.unsubscribe_mailto) is None:
        problems.append(("digest.unsubscribe_mailto", "is not an address", 'write it like "unsubscribe@example.org"'))
    if digest.subject:
        from ..theme import SUBJECT_VARIABLES, subject_problem

        problem = subject_problem(digest.subject)
        if problem:
            problems.append(("digest.subject", problem, f"variables: {', '.join(SUBJECT_VARIABLES)}"))
    return problems


def check_fanout(fanout: FanoutConfig, store_url: str | None) -> list[tuple[str, str, str]]:
    """Fan-out's store (PostgreSQL: the jobs live in it) and its worker timings."""
    problems: list[tuple[str, str, str]] = []
    if fanout.enabled and store_url is not None and not store_url.startswith("postgresql"):
        why = "fan-out needs a PostgreSQL store: the workers' jobs are written in its database with the deliveries"
        fix = 'set store.url = "postgresql+psycopg://user@host/db" (docs/scale.md), or fanout.enabled = false'
        problems.append(("fanout.enabled", why, fix + ": with SQLite one process sends (`publisher run`)"))
    for key in ("heartbeat", "stalled_after"):
        if duration_seconds(getattr(fanout, key)) in (None, 0):
            problems.append((f"fanout.{key}", f"{getattr(fanout, key)!r} is not a duration", 'write it like "30s"'))
    if not problems and fanout.stalled_seconds < 2 * fanout.heartbeat_seconds:
        fix = f"make it at least twice fanout.heartbeat ({fanout.heartbeat}): a live worker must not look dead"
        problems.append(("fanout.stalled_after", f"{fanout.stalled_after!r} is too short", fix))
    return problems


def _cron(key: str, line: str, example: str) -> list[tuple[str, str, str]]:
    """A 5-field cron line APScheduler reads, its day of week in names."""
    fields = line.split()
    if len(fields) != 5:
        return [(key, f"{line!r} is not a 5-field cron line", f"write it like {example}")]
    if re.search(r"\d", fields[4]):
        # APScheduler counts day_of_week from Monday = 0, cron from Sunday = 0: names are unambiguous.
        return [(key, f"day of week {fields[4]!r} uses numbers", 'use names: "mon", "mon-fri"')]
    from apscheduler.triggers.cron import CronTrigger

    try:  # in UTC: a bad site.timezone is reported on its own
        CronTrigger.from_crontab(line, timezone="UTC")
    except (ValueError, LookupError) as exc:
        return [(key, f"{line!r}: {exc}", f"write it like {example}")]
    return []


def check_bounces(bounces: BouncesConfig) -> list[tuple[str, str, str]]:
    problems: list[tuple[str, str, str]] = []
    path = bounces.return_path
    if path:
        found = mailbox(path)
        fix = 'a plain ASCII address whose mail you read for bounces, like "bounces@example.org"'
        if found is None or found.display_name or found.addr_spec != path.strip() or not path.isascii():
            problems.append(("bounces.return_path", f"{path!r} is not a plain address", fix))
        elif len(found.username) > 40:
            fix = "a shorter one: with +<token> it must fit the 64 characters a part before @ may have"
            problems.append(("bounces.return_path", "its part before @ is longer than 40 characters", fix))
    box = bounces.mailbox
    if box is not None:
        if box.protocol == "pop3" and box.processed == "move":
            fix = 'POP3 has no folders: set processed = "delete", or protocol = "imap"'
            problems.append(("bounces.mailbox.processed", '"move" needs IMAP', fix))
        if box.security == "none" and not is_loopback(f"http://{box.host}"):
            fix = 'use security = "tls" (or "starttls"): "none" sends the password in the clear, so only to 127.0.0.1'
            problems.append(("bounces.mailbox.security", f'"none" for {box.host}, which is not this machine', fix))
        if box.protocol == "imap" and box.action == "move" and box.processed_folder == box.folder:
            fix = 'a folder of its own, such as "Processed"'
            problems.append(("bounces.mailbox.processed_folder", "is the folder polled", fix))
    return problems


RETRY_WINDOW_LIMIT = 7 * 86400  # seconds: a reader's digest should not arrive after the next one


def _retry_after(delays: list[str]) -> list[tuple[str, str, str]]:
    problems, total = [], 0
    for i, text in enumerate(delays):
        seconds = duration_seconds(text)
        if not seconds:
            fix = 'write a number and a unit, s, m, h or d: ["1m", "5m", "15m", "1h", "4h"]'
            problems.append((f"digest.retry_after[{i}]", f"{text!r} is not a duration longer than 0", fix))
        total += seconds or 0
    if total > RETRY_WINDOW_LIMIT:
        fix = "shorten the waits: greylisting wants minutes, a server that is down a few hours"
        problems.append(("digest.retry_after", f"the waits add up to more than 7 days ({total // 3600} h)", fix))
    return problems


def check_hooks(hooks: HooksConfig) -> list[tuple[str, str, str]]:
    problems: list[tuple[str, str, str]] = []
    if hooks.sendgrid is not None:
        from ..bounces.providers.sendgrid import load_public_key

        try:
            load_public_key(hooks.sendgrid.public_key)
        except ValueError as exc:
            fix = "copy the Verification Key from SendGrid's Mail Settings, Signed Event Webhook"
            problems.append(("hooks.sendgrid.public_key", str(exc), fix))
    return problems
