"""Subscribers: add, import from CSV, remove, export, and what readers do on the web pages."""

from __future__ import annotations

import csv
import io
import logging
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TextIO

from .bounces.rules import KIND_NAMES
from .choices import Choices, Offered
from .csv_cells import SafeCsvWriter, from_csv_cell
from .errors import PublisherError
from .model import Subscriber, SubscriberStatus
from .normalize import CategoryIndex
from .store import Store
from .text import clean_line

log = logging.getLogger(__name__)

CSV_COLUMNS = ("email", "name", "categories", "script", "cadence")
EXPORT_COLUMNS = ("email", "name", "categories", "script", "cadence", "status", "status_at", "status_via", "created_at")
# The proof of consent of a reader who confirmed a sign-up (model.Consent); `import` ignores it.
CONSENT_COLUMNS = ("consent_text", "consent_at", "consent_network")
_STOPPED = (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED)


class SubscriberError(PublisherError):
    """A subscriber cannot be added or changed as asked."""


def normalize_email(raw: str) -> str:
    """The address as email-validator normalises it (domain lower-cased, IDN handled); no DNS."""
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{raw.strip()!r} is not an e-mail address: {exc}") from None


def clean_name(raw: str) -> str:
    """A display name as it can go into a From/To header: cleaned as every stored line is
    (text.clean_line: no controls, no bidi overrides, one line), every other invisible format
    character (zero-width space, joiners) a space too, at most 200 characters."""
    visible = "".join(" " if unicodedata.category(c) == "Cf" else c for c in raw)
    return clean_line(visible)[:200].rstrip()


def parse_categories(text: str, index: CategoryIndex) -> tuple[str, ...]:
    """`名称;slug;…` (names or slugs, `;` or `；` between them) as slugs; empty means all."""
    slugs = []
    for part in text.replace("；", ";").split(";"):
        if not part.strip():
            continue
        category = index.find(part)
        if category is None:
            raise ValueError(f"unknown category {part.strip()!r} (known: {index.names()})")
        slugs.append(category.slug)
    return tuple(dict.fromkeys(slugs))


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    not_updated: int = 0  # on the list, the file says otherwise: left as they chose (see `update`)
    kept_stopped: int = 0  # unsubscribed or bounced: an import never signs them up again
    suppressed: int = 0  # on the suppression list (bounces, complaints): left out, whatever the file says
    problems: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # address keys of the file's pending readers


def merge(existing: Subscriber | None, wanted: Subscriber) -> Subscriber | None:
    """What `subscribers add` stores when `wanted` arrives for an address; None when nothing
    may change. The operator names one address and vouches for it: a pending reader becomes
    confirmed, nobody is downgraded to pending, and an unsubscribed or bounced reader is never
    signed up again by the operator."""
    if existing is None:
        return wanted
    if existing.status in _STOPPED:
        return None
    status = existing.status
    if wanted.status is SubscriberStatus.CONFIRMED and status is SubscriberStatus.PENDING:
        status = SubscriberStatus.CONFIRMED
    changed = replace(
        existing,
        name=wanted.name or existing.name,
        categories=wanted.categories,
        status=status,
        script=wanted.script,
        cadence=wanted.cadence,
    )
    if status is not existing.status:
        changed = replace(changed, status_at=wanted.status_at, status_via=wanted.status_via)
    return changed


def updated_by_import(existing: Subscriber, wanted: Subscriber, columns: Iterable[str]) -> Subscriber:
    """A reader already on the list as a row of the file would have them: its name (when the
    row has one), categories, script and cadence (each when the file has its column); never
    their status."""
    has = set(columns)
    return replace(
        existing,
        name=wanted.name or existing.name,
        categories=wanted.categories if "categories" in has else existing.categories,
        script=wanted.script if "script" in has else existing.script,
        cadence=wanted.cadence if "cadence" in has else existing.cadence,
    )


def import_csv(
    store: Store,
    path: Path,
    index: CategoryIndex,
    status: SubscriberStatus,
    now: datetime,
    offered: Offered,
    update: bool = False,
) -> ImportReport:
    """Import `email,name,categories,script,cadence` rows (script and cadence as `offered`
    by `[digest]`; empty: the site's script, the first cadence). Bad rows are reported by line number and skipped;
    the good ones are written together in one transaction, so nothing is half-written.

    New people are added with `status`; a `status` column (as `export` writes it) is honoured
    where it says less: an exported unsubscribed, bounced or pending reader comes back as such,
    never confirmed. Readers already on the list keep what they chose: their name and
    categories change only with `update`, and their status never (an import confirms nobody
    who did not confirm, and signs up again nobody who left)."""
    report = ImportReport()
    seen: dict[str, int] = {}
    to_save: list[Subscriber] = []
    suppressed = store.suppressed_keys()
    for line, row in read_rows(path):
        try:
            email = normalize_email(row.get("email") or "")
            categories = parse_categories(row.get("categories") or "", index)
            script, cadence = offered.script(row.get("script") or ""), offered.cadence(row.get("cadence") or "")
        except ValueError as exc:
            report.problems.append(f"{path}:{line}: {exc}")
            continue
        key = email.lower()
        if key in seen:
            report.problems.append(f"{path}:{line}: {email} is already on line {seen[key]}")
            continue
        seen[key] = line
        if key in suppressed:
            report.suppressed += 1
            continue
        row_status = _row_status(row.get("status"), status)
        if row_status is None:
            report.problems.append(f"{path}:{line}: unknown status {row.get('status')!r} (use {_STATUS_NAMES})")
            continue
        name = clean_name(row.get("name") or "")
        wanted = Subscriber(email, name, categories, row_status, now, "import", now, script=script, cadence=cadence)
        existing = store.subscriber(key)
        if existing is None:
            if row_status in _STOPPED:  # recorded as they left, so nobody re-adds them
                report.kept_stopped += 1
            else:
                report.added += 1
            if row_status is SubscriberStatus.PENDING:
                report.pending.append(key)
            to_save.append(wanted)
            continue
        if existing.status in _STOPPED:
            report.kept_stopped += 1
            continue
        if existing.status is SubscriberStatus.PENDING:
            report.pending.append(key)
        changed = updated_by_import(existing, wanted, row)
        if changed == existing:
            report.unchanged += 1
        elif not update:
            report.not_updated += 1
        else:
            report.updated += 1
            to_save.append(changed)
    store.save_subscribers(to_save)
    return report


_STATUS_NAMES = ", ".join(s.value for s in SubscriberStatus)


def _row_status(text: str | None, default: SubscriberStatus) -> SubscriberStatus | None:
    """The row's own status when it has one and it is not more than `default` grants."""
    if not text or not text.strip():
        return default
    try:
        own = SubscriberStatus(text.strip().lower())
    except ValueError:
        return None
    if own is SubscriberStatus.CONFIRMED:
        return default  # --pending still makes a confirmed row pending
    return own


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV file with a header row; UTF-8 (Excel's BOM too) or GB18030,
    which is what Excel on a Chinese Windows saves."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError:
            raise SubscriberError(f"{path}: neither UTF-8 nor GB18030 text", "save the file as UTF-8 CSV") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "email" not in header:
        raise SubscriberError(
            f"{path}: the first line must name the columns, with at least `email`",
            f"write the header `{','.join(CSV_COLUMNS)}`",
        )
    reader.fieldnames = header
    for row in reader:
        yield reader.line_num, {k: from_csv_cell(v or "") for k, v in row.items() if isinstance(k, str)}


def add(
    store: Store,
    email: str,
    name: str,
    categories: tuple[str, ...],
    status: SubscriberStatus,
    now: datetime,
    offered: Offered,  # App.offered: required, so a caller never silently reads choices as weekly-only
    script: str | None = None,
    cadence: str | None = None,
) -> tuple[Subscriber, bool]:
    """Add or update one subscriber from the command line; returns (subscriber, was it new).
    `script` and `cadence` as written (`offered` reads them; None: not given, so a new reader
    gets the defaults and one on the list keeps theirs). ValueError for an invalid address or
    choice; SubscriberError when they may not be signed up (they left, or their address is on
    the suppression list)."""
    address = normalize_email(email)
    held = store.suppression(address.lower())
    if held is not None and held.active:
        raise SubscriberError(
            f"{address} is on the suppression list since {held.since:%Y-%m-%d} "
            f"({KIND_NAMES[held.kind]}: {held.reason[:100]})",
            f"mail to it bounced or was reported as spam; if that is fixed, `publisher bounces unsuppress {address}` "
            "first (or let them sign up again on the subscribe page, which asks them to confirm)",
        )
    existing = store.subscriber(address.lower())
    kept = Choices(existing.script, existing.cadence) if existing else offered.default
    chosen_script = offered.script(script) if script is not None else kept.script
    chosen_cadence = offered.cadence(cadence) if cadence is not None else kept.cadence
    wanted = Subscriber(address, clean_name(name), categories, status, now, "cli", now)
    merged = merge(existing, replace(wanted, script=chosen_script, cadence=chosen_cadence))
    if merged is None:
        assert existing is not None
        raise SubscriberError(
            f"{address} is {existing.status.value} (since {existing.status_at:%Y-%m-%d}, via {existing.status_via})",
            "only they can sign up again, on the subscribe page; `subscribers remove --erase` forgets them",
        )
    store.save_subscribers([merged])
    return merged, existing is None


def remove(store: Store, email: str, now: datetime, erase: bool = False, via: str = "cli") -> Subscriber | None:
    """Unsubscribe (kept, so no import signs them up again), or erase every trace of them;
    `via` says who did it ("cli", "console")."""
    key = email.strip().lower()
    existing = store.subscriber(key)
    if existing is None:
        return None
    if erase:
        store.delete_subscriber(key)
    elif existing.status is not SubscriberStatus.UNSUBSCRIBED:
        store.save_subscribers([replace(existing, status=SubscriberStatus.UNSUBSCRIBED, status_at=now, status_via=via)])
    return existing


def export_csv(subscribers: Iterable[Subscriber], index: CategoryIndex, out: TextIO) -> int:
    """Every subscriber as CSV (categories by name), in a shape `import` reads back."""
    count = -1  # the header is not a subscriber
    for line in export_lines(subscribers, index):
        out.write(line)
        count += 1
    return count


def export_lines(subscribers: Iterable[Subscriber], index: CategoryIndex) -> Iterator[str]:
    """`export_csv`'s CSV a line at a time, the header first: the console streams it while
    `subscribers` is read page by page."""
    names = {c.slug: c.name for c in index.categories}
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer)

    def drained() -> str:
        line = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return line

    writer.writerow(EXPORT_COLUMNS + CONSENT_COLUMNS)
    yield drained()
    for s in subscribers:
        writer.writerow(
            [
                s.email,
                s.name,
                ";".join(names.get(slug, slug) for slug in s.categories),
                s.script or "",
                s.cadence,
                s.status.value,
                s.status_at.isoformat(),
                s.status_via,
                s.created_at.isoformat(),
                *((s.consent.text, s.consent.at.isoformat(), s.consent.network) if s.consent else ("", "", "")),
            ]
        )
        yield drained()


# --- what readers do on the web pages (the subscribe form itself: signup.py) -------------------


def _change(store: Store, subscriber_id: int, **changes: object) -> Subscriber | None:
    existing = store.subscriber_by_id(subscriber_id)
    if existing is None:
        return None
    changed = replace(existing, **changes)  # type: ignore[arg-type]
    if changed != existing:
        store.save_subscribers([changed])
    return changed


def confirm(store: Store, subscriber_id: int, now: datetime, issued: datetime) -> tuple[Subscriber | None, bool]:
    """A confirmation link naming the subscriber (as `subscribers import --send-confirmation`
    mails them, and sign-ups did before signup.py's requests), issued at `issued`, was
    followed: the row as it is becomes confirmed; an unsubscribed or bounced address only by a
    link issued after it stopped (an old link cannot undo an opt-out). Idempotent. With it,
    whether THIS call confirmed the row (a conditional UPDATE: of two clicks at once, one)."""
    existing = store.subscriber_by_id(subscriber_id)
    if existing is None or existing.status is SubscriberStatus.CONFIRMED:
        return existing, False
    if existing.status in _STOPPED and issued < existing.status_at.replace(microsecond=0):
        return existing, False
    key = existing.email.lower()
    if not store.confirm_subscriber(key, now, "web"):
        return store.subscriber_by_id(subscriber_id), False  # another click confirmed it meanwhile
    if store.lift_suppression(key, now, "re-subscribed"):
        log.info("subscriber #%s confirmed again: their address is off the suppression list", subscriber_id)
    return store.subscriber_by_id(subscriber_id), True


def unsubscribe(store: Store, subscriber_id: int, now: datetime, via: str) -> Subscriber | None:
    """Unsubscribe at once; a second time changes nothing (one-click POSTs are retried)."""
    existing = store.subscriber_by_id(subscriber_id)
    if existing is None or existing.status is SubscriberStatus.UNSUBSCRIBED:
        return existing
    return _change(store, subscriber_id, status=SubscriberStatus.UNSUBSCRIBED, status_at=now, status_via=via)


def choose_categories(
    store: Store, subscriber_id: int, slugs: tuple[str, ...], choices: Choices | None = None
) -> Subscriber | None:
    """The preferences page saved: the reader's categories, and their script and cadence."""
    if choices is None:
        return _change(store, subscriber_id, categories=slugs)
    return _change(store, subscriber_id, categories=slugs, script=choices.script, cadence=choices.cadence)
