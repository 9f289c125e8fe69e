"""The digest's use cases, composed from the store, the renderer, the send engine and a transport.

`plan_scheduled(cadence)` then `send()` is what the scheduler runs (publisher.jobs, one job
per cadence) and what `publisher digest send` runs without dates: open the cadence's digest of
the window ending now, plan one delivery per confirmed subscriber of that cadence who has
something to read, and send. Every step is
recorded first, so a resume after a crash, a kill or a pause continues where it stopped and
never sends a `sent` delivery again.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .bounces.events import EventKind, MailEvent
from .bounces.links import make_delivery_token
from .delivery import Sender, SendReport
from .digest import (
    DigestWindow,
    Draft,
    Renderer,
    explicit_window,
    scheduled_window,
)
from .digest_messages import DigestMessages
from .errors import PublisherError
from .mail import Message
from .model import CADENCE_DAYS, WEEKLY, Article, Delivery, Subscriber, SubscriberStatus
from .private_files import private_folder, write_private
from .store import DigestRow, Store
from .store.backup import resume_paused

if TYPE_CHECKING:
    from .fanout import ChunkQueue
    from .transports import Sent, Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Plan:
    digest: DigestRow
    created: bool  # False: this window's digest existed already (nothing new is planned)
    planned: int  # deliveries planned now
    suppressed: int = 0  # confirmed readers left out: their address is on the suppression list


class Newsletter(DigestMessages):
    """The digest's use cases (DigestMessages makes the messages)."""

    # --- use cases -------------------------------------------------------------------------

    def scheduled_window(self, now: datetime, cadence: str | None = None) -> DigestWindow:
        """The window of the cadence's scheduled digest due at `now` (default: the first cadence)."""
        cadence = cadence or self.settings.digest.cadences[0]
        previous = self.store.last_scheduled_end(cadence)
        other = self.store.last_scheduled_end(None) if previous is None else None
        return scheduled_window(previous, now, cadence, other)

    def window(self, since: date, until: date, cadence: str = WEEKLY) -> DigestWindow:
        return explicit_window(since, until, self.settings.site.timezone, cadence)

    def plan_scheduled(self, cadence: str | None = None) -> Plan:
        """Open the cadence's scheduled digest ending now (see Store.open_scheduled_digest) and
        plan it (default: the first of `[digest] cadences`, as the console's "send now")."""
        cadence = cadence or self.settings.digest.cadences[0]
        self._archive_on()
        with self.store.send_lock():
            digest, created = self.store.open_scheduled_digest(self.clock, CADENCE_DAYS[cadence], cadence)
            return self._plan(digest, created)

    def plan(self, window: DigestWindow) -> Plan:
        """Open the window's digest and plan its deliveries; a window opened before plans nothing
        new (unless a crash stopped it while planning)."""
        self._archive_on()
        with self.store.send_lock():
            digest_id, created = self.store.open_digest(
                window.key, window.start, window.end, self.clock(), window.cadence
            )
            return self._plan(self.store.digest(digest_id), created)

    def _plan(self, digest: DigestRow, created: bool) -> Plan:
        digest_id, now = digest.id, self.clock()
        if digest.status != "planning":
            return Plan(digest, created, 0)
        renderer = self._renderers[digest_id] = self.renderer(digest)  # sending reuses its drafts
        readers = self.recipients(digest.cadence, renderer)
        planned = ((subscriber.email.lower(), self._message_id(digest_id, subscriber)) for subscriber, _ in readers)
        fanout = self.settings.fanout
        if fanout.enabled:  # each chunk's rows with its job, which a worker sends
            queue = self._chunk_queue().for_digest(digest_id)
            self.store.plan_deliveries(digest_id, planned, now, chunk_size=fanout.chunk, queue=queue)
        else:
            self.store.plan_deliveries(digest_id, planned, now)  # read lazily: one batch in memory
        self._archive(digest)
        if readers.left_out:
            log.info("digest %s: %d suppressed reader(s) left out", digest.key, readers.left_out)
        return Plan(self.store.digest(digest_id), created, readers.count, readers.left_out)

    def send(
        self,
        digest: DigestRow,
        transport: Transport,
        tick: Callable[[int], None] = lambda _n: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> SendReport:
        """Send what is due of `digest` (see delivery.Sender.run): what waits for another try
        is left for later, and the report says when. With fan-out, hand it to the workers
        instead: a job for every chunk with an open delivery (`SendReport.queued`)."""
        if self.settings.fanout.enabled:
            with self.store.send_lock():
                digest = self._planned_whole(digest)
                queue = self._chunk_queue().for_digest(digest.id)
                queued = self.store.hand_over(digest.id, self.settings.fanout.chunk, queue)
            self.store.finish_digest(digest.id)  # nothing open: done
            return SendReport(queued=queued)
        paused = _PauseWatch(self.store, digest.id)
        sender = self._sender(transport)
        with self.store.send_lock():
            digest = self._planned_whole(digest)
            report = sender.run(digest.id, self.builder(digest), tick, should_stop=lambda: should_stop() or paused())
        return self._told(digest, report, paused)

    def send_chunk(
        self, digest_id: int, chunk: int, transport: Transport, should_stop: Callable[[], bool]
    ) -> SendReport:
        """A fan-out job: send what is due of the digest's chunk, its tokens taken from the
        fleet's bucket (`_sender`: `messages_per_second` is every worker's together). A digest
        neither planning nor sending (paused, done) sends nothing: `paused` says a resume
        hands the chunk over again. No send lock: Procrastinate's lock keeps each chunk to one job."""
        digest = self.store.digest(digest_id)
        if digest.status not in ("planning", "sending"):
            transport.close()
            log.info("digest %s is %s: chunk %d waits", digest.key, digest.status, chunk)
            return SendReport(paused=digest.status == "paused")
        if digest_id not in self._renderers:  # one digest's renderer kept: its drafts serve every chunk
            self._renderers = {digest_id: self.renderer(digest)}
        paused = _PauseWatch(self.store, digest_id)
        sender = self._sender(transport)
        stop = lambda: should_stop() or paused()  # noqa: E731
        return self._told(digest, sender.run(digest_id, self.builder(digest), should_stop=stop, chunk=chunk), paused)

    def _sender(self, transport: Transport) -> Sender:
        """The send engine for `transport`. On PostgreSQL every sender takes its tokens from
        the transport's bucket in the store (`send_rates`): `messages_per_second` is the rate of
        every process and fan-out chunk together. On SQLite one process sends, paced in it."""
        d = self.settings.digest
        per_second, name, store = d.messages_per_second, self.settings.mail.transport, self.store
        shared = store.engine.dialect.name == "postgresql" and per_second > 0
        return Sender(
            self.store,
            transport,
            self.clock,
            messages_per_second=per_second,
            rate=store.send_tokens(name, per_second) if shared else None,
            retry_after=d.retry_delays,
            pause_after=d.pause_after,
            refused=self.record_refusal,
            counted=self.app.metrics.delivered,
        )

    def _told(self, digest: DigestRow, report: SendReport, paused: _PauseWatch) -> SendReport:
        """The report, the operator's pause kept as a pause, and the operator told when the
        digest paused itself."""
        if paused.seen:  # the operator's pause: the digest stays paused until resumed
            report.paused, report.stopped = True, False
        elif report.paused and self.app.alerts is not None:  # it paused itself: the operator hears of it
            self.app.alerts.digest_paused(digest.key, report.pause_reason)
        return report

    def _chunk_queue(self) -> ChunkQueue:
        from .fanout import ChunkQueue

        return ChunkQueue()

    def _planned_whole(self, digest: DigestRow) -> DigestRow:
        """`digest` as the ledger has it now (under the send lock), resumed if paused, and
        planned to the end: one left `planning` (a crash, a kill, a backup's copy paused it
        while planning) gets the rest of its readers first, as the scheduler's resume does;
        sent as it was, the readers never planned would never get it once it is `done`."""
        digest = self.store.digest(digest.id)
        if digest.status == "paused":
            resume_paused(self.store, digest.id, digest.key)
            if self.app.alerts is not None:
                self.app.alerts.digest_resumed(digest.key)
            digest = self.store.digest(digest.id)
        if digest.status == "planning":
            self._archive_on()
            digest = self._plan(digest, created=False).digest
        return digest

    def pause(self, digest: DigestRow) -> bool:
        """The operator's pause: a digest being sent stops after the message in hand, wherever
        it is sent from (every send reads the ledger once a second, see `send`), and stays
        paused until `send` (resume) continues it. False when it was not sending. A digest still
        `planning` is refused even with fan-out, where workers send while it plans: a resume sets
        a paused digest `sending` (`_planned_whole`), and the planner's own hand-over at its end
        would resume it, so a digest paused mid-plan could be sent, and `done`, without the
        readers not planned yet (docs/scale.md, Pausing)."""
        if self.store.digest(digest.id).status != "sending":
            return False
        self.store.set_digest_status(digest.id, "paused")
        log.info("digest %s paused by the operator", digest.key)
        return True

    def record_refusal(self, delivery: Delivery, reason: str) -> None:
        """The receiver refused the address as we sent (550 to RCPT, an API's invalid address):
        a hard bounce of this delivery, kept and ruled on as one reported later would be."""
        token = make_delivery_token(self.signing_key, delivery.id, delivery.email_key)
        source = self.settings.mail.transport
        event = MailEvent(EventKind.HARD_BOUNCE, delivery.email_key, source, reason, self.clock(), delivery_token=token)
        self.app.record_mail_events([event])

    def retry(self, digest: DigestRow, everything: bool = False) -> int:
        """Due now, with all their tries again: the digest's deliveries that wait for another
        try and those that failed after temporary errors (`everything`: every failed one).
        Readers who no longer get mail are left alone. How many; `send` then sends them."""
        return self.store.retry_deliveries(digest.id, self.clock(), everything)

    def due_count(self, digest: DigestRow) -> int:
        """Deliveries a send would try now (the progress bar's length): not those still waiting."""
        return self.store.due_count(digest.id, self.clock(), self.settings.digest.retry_delays)

    def unfinished(self) -> list[DigestRow]:
        """Digests a crash, a stop or a pause left unfinished, ready to send: one stopped while
        planning is planned again first (planning is idempotent)."""
        rows = []
        for row in self.store.digests(unfinished_only=True):
            if row.status == "planning":
                window = DigestWindow(row.key, row.start, row.end, row.by, row.cadence)  # type: ignore[arg-type]
                row = self.plan(window).digest
            rows.append(row)
        return rows

    def preview(self, window: DigestWindow, subscriber: Subscriber | None, test: bool = False) -> tuple[Message, bool]:
        """The message `subscriber` (default: a reader of every category) would get for the
        window; (message, True) when the window is empty and the newest articles stand in."""
        reader = subscriber or self.sample_reader("reader@" + self.host.removeprefix("www."))
        renderer, script = self.renderer(window), self.script_of(reader)
        draft = renderer.draft(reader.categories, script)
        stand_in = draft is None
        if draft is None:
            renderer = self._newest_renderer(window.end, window.cadence)
            draft = renderer.draft(reader.categories, script)
        if draft is None:  # no articles at all: show the empty digest
            look = replace(self.look, send_when_empty=True)
            renderer = Renderer(look, self.app.categories, [], window.end, cadence=window.cadence)
            draft = renderer.draft(reader.categories, script)
        assert draft is not None
        return self.message(renderer, draft, reader, None, test=test), stand_in

    def test_message(self, to: str) -> Message:
        """One message to `to` (their own digest if they subscribe, else all categories),
        marked as a test in its subject and headers; no ledger rows."""
        from .subscriptions import normalize_email

        email = normalize_email(to)
        reader = self.store.subscriber(email.lower()) or self.sample_reader(email)
        window = self.scheduled_window(self.clock(), self.cadence_of(reader))
        message, _stand_in = self.preview(window, reader, test=True)
        return message

    def sample_reader(self, email: str, cadence: str | None = None) -> Subscriber:
        now, cadence = self.clock(), cadence or self.settings.digest.cadences[0]
        return Subscriber(email, "", (), SubscriberStatus.CONFIRMED, now, "preview", now, id=0, cadence=cadence)

    def dry_run(self, window: DigestWindow, deliver: Callable[[Message], Sent]) -> int:
        """Every message the window would send, handed to `deliver` (an outbox); no ledger rows."""
        renderer = self.renderer(window)
        readers = self.recipients(window.cadence, renderer)
        for subscriber, draft in readers:
            deliver(self.message(renderer, draft, subscriber, None))
        return readers.count

    def recipients(self, cadence: str, renderer: Renderer) -> Recipients:
        """Who gets the cadence's digest, each with their draft, read as it is iterated: the
        confirmed readers whose cadence it is (digest.reader_cadence), not on the suppression
        list, with something new in their categories. The one answer planning and a dry run
        share."""
        return Recipients(self, cadence, renderer)

    # --- helpers ---------------------------------------------------------------------------

    def _archive_on(self) -> None:
        """Before a digest is opened: the archive's `archive_since`, set the first time, so the
        first digest opened with the archive on is archived and none opened before."""
        archive = self.app.archive
        if archive is not None:
            archive.since()

    def _archive(self, digest: DigestRow) -> None:
        """The digest's public page, written before its first mail (which links to it). The
        deliveries are planned already: whatever writing the page raises (a full disk, a folder
        it may not write or read, a theme template's error) is logged and the sending goes on;
        the next build writes the page."""
        from jinja2 import TemplateError

        archive = self.app.archive
        if archive is None:
            return
        try:
            archive.publish(digest.key)
        except (PublisherError, OSError, TemplateError) as exc:
            log.error(
                "digest %s: its archive page was not written under %s (%s: %s); the mails go out and link to it: "
                "fix the folder (or the theme's archive template) and run `publisher build` to write it",
                digest.key, archive.folder, type(exc).__name__, exc,
            )  # fmt: skip

    def _message_id(self, digest_id: int, subscriber: Subscriber) -> str:
        # Fixed at planning: every attempt carries it, so a duplicate is recognisable.
        return f"<digest{digest_id}.{subscriber.id}.{secrets.token_hex(6)}@{self.host}>"

    def _newest_renderer(self, end: datetime, cadence: str) -> Renderer:
        limit = self.settings.digest.max_items_per_category
        seen: dict[str, Article] = {}
        for category in self.app.categories:
            for article in self.store.latest(category.slug, limit):
                seen.setdefault(article.guid, article)
        return Renderer(self.look, self.app.categories, list(seen.values()), end, cadence=cadence)


class Recipients:
    """The readers of one digest with their drafts, streamed from the store (see
    Newsletter.recipients); once iterated, `count` says how many there were and `left_out` how
    many confirmed readers of the cadence were left out for being on the suppression list."""

    def __init__(self, letters: Newsletter, cadence: str, renderer: Renderer) -> None:
        self.letters, self.cadence, self.renderer = letters, cadence, renderer
        self.count = self.left_out = 0

    def __iter__(self) -> Iterator[tuple[Subscriber, Draft]]:
        letters, renderer = self.letters, self.renderer
        for batch in self._batches():
            suppressed = letters.store.suppressed_among([subscriber.email.lower() for subscriber in batch])
            for subscriber in batch:
                if subscriber.email.lower() in suppressed:
                    self.left_out += 1
                    continue
                draft = renderer.draft(subscriber.categories, letters.script_of(subscriber))
                if draft is not None:  # None: nothing new in their categories, no e-mail
                    self.count += 1
                    yield subscriber, draft

    def _batches(self, size: int = 1000) -> Iterator[list[Subscriber]]:
        """The cadence's confirmed readers in sign-up order, `size` at a time: memory holds a
        batch (and the suppression list is asked about a batch), however long the list."""
        batch: list[Subscriber] = []
        for subscriber in self.letters.store.each_subscriber(SubscriberStatus.CONFIRMED, size):
            if self.letters.cadence_of(subscriber) != self.cadence:
                continue  # another cadence's reader: that cadence's digest is theirs
            batch.append(subscriber)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch


class _PauseWatch:
    """True once the digest is `paused` in the ledger (the operator's pause, from any process),
    read at most once a second: the send loop asks before every message."""

    def __init__(self, store: Store, digest_id: int) -> None:
        self.store, self.digest_id = store, digest_id
        self.seen = False
        self._next_read = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.seen and now >= self._next_read:
            self._next_read = now + 1.0
            self.seen = self.store.digest(self.digest_id).status == "paused"
        return self.seen


def preview_files(message: Message, out: Path) -> list[Path]:
    """digest.html, digest.txt and digest.eml in `out`: what a reader's client gets. Private
    (0600 in a 0700 folder): their links unsubscribe and confirm a real reader."""
    private_folder(out)
    paths = [out / "digest.html", out / "digest.txt", out / "digest.eml"]
    write_private(paths[0], message.html.encode("utf-8"))
    write_private(paths[1], message.text.encode("utf-8"))
    write_private(paths[2], message.as_bytes())
    return paths
