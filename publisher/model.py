"""The domain: frozen dataclasses and enums. No I/O here."""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from operator import attrgetter
from typing import TYPE_CHECKING

from .frozen_init import quick_init

if TYPE_CHECKING:
    from .config import SiteConfig


@dataclass(frozen=True, slots=True)
class Category:
    """A configured category; `slug` is the stored, never-regenerated URL part."""

    name: str
    slug: str
    description: str = ""
    url: str = ""  # the category's page on the site, when configured


@quick_init
@dataclass(frozen=True, slots=True)
class SourceItem:
    """What a source read, before normalising. Dates are timezone-aware; HTML is raw."""

    source: str  # the source's configured name
    key: str  # stable key inside the source (relative path, remote id)
    title: str
    content: str  # HTML, or Markdown when `markdown` is set; rendered and cleaned by normalize
    published: datetime
    markdown: bool = False
    categories: tuple[str, ...] = ()  # names or slugs as written; empty: the source's default
    location: str = ""  # file path or URL, for messages
    url: str | None = None
    author: str | None = None
    summary: str | None = None
    image: str | None = None
    tags: tuple[str, ...] = ()
    updated: datetime | None = None
    explicit_id: str | None = None  # front matter `id`: identity that survives renames
    fingerprint: str | None = None  # cheap change marker (mtime+size) to skip re-reading
    folder: str | None = None  # the containing folder's name: a category hint
    default_category: str | None = None  # the source's fallback category
    warnings: tuple[str, ...] = ()  # what was fixed on reading (the item is used), for the log
    # `content` as UTF-8, when the source has those bytes anyway (a file read as UTF-8):
    # normalize hashes them instead of encoding the content again. The same text, so not compared.
    content_utf8: bytes | None = field(default=None, compare=False, repr=False)

    def __reduce__(self) -> tuple[type[SourceItem], tuple[object, ...]]:
        return SourceItem, _source_item_fields(self)


@quick_init
@dataclass(frozen=True, slots=True)
class ReadItem:
    """What ingest keeps of an item once it is normalized, beside its article (which holds its
    text, dates and categories now): which item it is, where it came from, and what was noticed
    reading it. The worker pool sends this back instead of the whole item: a cold build of
    100,000 files loads every result on the main process, and the whole item took half of it."""

    source: str
    key: str
    location: str = ""
    explicit_id: str | None = None
    fingerprint: str | None = None
    dated: bool = False  # the source gave an `updated` date: it stands over a change's own
    warnings: tuple[str, ...] = ()

    @classmethod
    def of(cls, item: SourceItem) -> ReadItem:
        return cls(
            item.source, item.key, item.location, item.explicit_id, item.fingerprint,
            item.updated is not None, item.warnings,
        )  # fmt: skip

    def __reduce__(self) -> tuple[type[ReadItem], tuple[object, ...]]:
        return ReadItem, _read_item_fields(self)


@dataclass(frozen=True, slots=True)
class Unchanged:
    """A source's word that the items under `keys` are as they were (same fingerprints).
    One object for many keys: an unchanged build of 100,000 files should cost next to nothing."""

    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Folder:
    """A source's word that it listed one folder: `name` is its key prefix ("" or ending in
    "/"), `digest` sums up the names and fingerprints of the `listed` items found there, and
    `unchanged` are the keys among them that matched the last ingest (as an `Unchanged` would
    say; the others came before it as items or problems). Once every item listed in a folder
    is stored as listed, ingest keeps its digest, and a later scan that finds the same digest
    takes the whole folder as unchanged without looking up each item's fingerprint (its
    `unchanged` then makes each key only when asked: an unchanged build of 100,000 files
    never makes them)."""

    name: str
    digest: str
    listed: int
    unchanged: Collection[str]


@quick_init
@dataclass(frozen=True, slots=True)
class Deferred:
    """An item a source will read on request: `read` may run in another process, so it and
    everything it refers to must pickle. It returns the item, a problem, or None (a draft)."""

    key: str
    read: Callable[[], SourceItem | ItemProblem | None]
    location: str = ""  # the file's path, for messages
    fingerprint: str | None = None  # what it was listed with: a read done ahead stands for it only under the same

    def __reduce__(self) -> tuple[type[Deferred], tuple[object, ...]]:
        return Deferred, _deferred_fields(self)


@quick_init
@dataclass(frozen=True, slots=True)
class ItemProblem:
    """An item a source could not read; it is skipped and the rest goes on."""

    key: str
    location: str
    reason: str
    hint: str = ""
    gone: bool = False  # its page answered 404 or 410: gone, which seldom heals within minutes

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}" + (f" ({self.hint})" if self.hint else "")


@dataclass(frozen=True, slots=True)
class SourceWarning:
    """What a source noticed that costs no item but may cost articles (a next-page selector that
    matched nothing on a page with a pager): logged and reported, never counted as skipped."""

    location: str
    reason: str
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}" + (f" ({self.hint})" if self.hint else "")


WHOLE_SOURCE_LABEL = "(the source)"  # the part shown for a source that failed as a whole (status, /metrics)


@dataclass(frozen=True, slots=True)
class ScopeRead:
    """A web source's word on one part of it (a category's list pages, a list URL, an API
    page): read (`error` None), or not, with the URL that failed and what to do. A failing
    part is reported while the other parts ingest; ingest keeps each part's last success and
    last error for `publisher status` and `/healthz`."""

    scope: str  # a category's name (html), or the URL the part starts at (json, wordpress)
    url: str  # the part's first URL, or, on an error, the URL that failed
    error: str | None = None
    hint: str = ""


@quick_init
@dataclass(frozen=True, slots=True)
class Rendition:
    """An article's body as the feeds show it: sanitised, converted HTML and its summary."""

    content_html: str
    summary: str


@quick_init
@dataclass(frozen=True, slots=True)
class Article:
    """A normalised article as the store keeps it and the feeds show it."""

    source: str
    key: str
    guid: str
    title: str
    content_html: str
    summary: str
    published: datetime  # UTC
    updated: datetime  # UTC; the content's last change as we saw it
    categories: tuple[str, ...]  # category slugs
    content_hash: str
    url: str | None = None
    author: str | None = None
    image: str | None = None
    tags: tuple[str, ...] = ()
    # The key of the body's rendition (content_html and summary): the raw body and everything its
    # rendering depends on. An article read from a source that can read it again (a file) is
    # stored unrendered (`rendered` False, content_html and summary empty) and rendered when a
    # feed, page or digest first shows it (docs/architecture.md, "Bodies rendered when shown").
    body_hash: str = ""
    rendered: bool = True

    def __reduce__(self) -> tuple[type[Article], tuple[object, ...]]:
        return Article, _article_fields(self)


# The worker pool is sent every item to read and sends every item and article back, pickled:
# as constructor arguments they pickle and load a third faster (a Deferred pickles in half the
# time) than through a slotted dataclass's generated __getstate__; `quick_init` halves the
# constructor's own time.
_deferred_fields = attrgetter(*(f.name for f in fields(Deferred)))
_read_item_fields = attrgetter(*(f.name for f in fields(ReadItem)))
_source_item_fields = attrgetter(*(f.name for f in fields(SourceItem)))
_article_fields = attrgetter(*(f.name for f in fields(Article)))


class FeedFormat(enum.Enum):
    RSS = "rss.xml"
    ATOM = "atom.xml"
    JSON = "feed.json"

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self]


_MEDIA_TYPES = {
    FeedFormat.RSS: "application/rss+xml",
    FeedFormat.ATOM: "application/atom+xml",
    FeedFormat.JSON: "application/feed+json",
}


@dataclass(frozen=True, slots=True)
class Site:
    """What every feed needs to know about the site."""

    title: str
    url: str  # no trailing slash
    language: str
    timezone: str
    description: str
    author: str

    @classmethod
    def of(cls, site: SiteConfig) -> Site:
        """The `[site]` table's."""
        return cls(site.title, site.url.rstrip("/"), site.language, site.timezone, site.description, site.author)


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One feed file: the whole site (category None) or one category, in one format."""

    format: FeedFormat
    category: Category | None = None

    @property
    def path(self) -> str:
        """Path under the output folder, POSIX style."""
        return f"{self.category.slug}/{self.format.value}" if self.category else self.format.value


@dataclass(slots=True)
class BuildReport:
    """Counts for the closing summary table; mutable while a build runs."""

    new: int = 0
    checked: int = 0  # `publisher check`: items that read and normalize cleanly
    changed: int = 0
    unchanged: int = 0
    skipped: int = 0
    withdrawn: int = 0
    feeds_written: int = 0
    feeds_unchanged: int = 0
    problems: list[str] = field(default_factory=list)  # items skipped
    warnings: list[str] = field(default_factory=list)  # what sources noticed (SourceWarning), no item lost
    failed_sources: list[str] = field(default_factory=list)
    failed_parts: list[str] = field(default_factory=list)  # a source's part (a category) that failed, and its hint
    written_paths: list[str] = field(default_factory=list)
    source_notes: list[str] = field(default_factory=list)  # `check`: what each web source showed


# How often a reader gets the digest: each cadence has its own schedule, windows and ledger rows.
WEEKLY, DAILY = "weekly", "daily"
CADENCES = (WEEKLY, DAILY)
CADENCE_DAYS = {WEEKLY: 7, DAILY: 1}  # what a cadence's very first digest looks back over on a new install
FIRST_AFTER_OTHER_MAX_DAYS = 7  # how far a cadence's first digest reaches back to another cadence's last


def cadence_key(cadence: str, key: str) -> str:
    """A digest's key in the ledger: the weekly cadence's as before cadences existed (so no
    stored digest is sent again), another's prefixed with its name (`daily/scheduled:…`)."""
    return key if cadence == WEEKLY else f"{cadence}/{key}"


def first_scheduled(end: datetime, cadence: str, first_days: int, other_end: datetime | None) -> tuple[str, datetime]:
    """(key, start) of a cadence's first scheduled digest, ending at `end`.

    It looks back `first_days` (CADENCE_DAYS), picking what was both ingested and published
    then (`scheduled-first:`), not the site's whole archive; or, when another cadence's last
    scheduled digest ended earlier than that (`other_end`: a site that sent weekly digests now
    offers, or only offers, the daily one), from there, at most FIRST_AFTER_OTHER_MAX_DAYS back,
    by first ingest as every later digest (`scheduled:`): readers moved from weekly to daily
    miss none of the days since their last weekly. Another cadence's digest that ended within
    the look-back changes nothing: a weekly digest's first week is a week, even when the first
    daily ones went out on a new install before it."""
    stamp = f"{end:%Y-%m-%dT%H:%M:%SZ}"
    start, cap = end - timedelta(days=first_days), end - timedelta(days=FIRST_AFTER_OTHER_MAX_DAYS)
    if other_end is not None and other_end < start:
        if other_end >= cap:
            return cadence_key(cadence, f"scheduled:{stamp}"), other_end
        start = cap  # a longer gap: the cap's days, picked as on a new install
    return cadence_key(cadence, f"scheduled-first:{stamp}"), start


ROLES = ("viewer", "editor", "admin")  # of a console account: each may do what the ones before it may


class SubscriberStatus(enum.Enum):
    PENDING = "pending"  # signed up, not yet confirmed (double opt-in)
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"

    @property
    def receives_mail(self) -> bool:
        return self is SubscriberStatus.CONFIRMED


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A mailing-list reader. `categories` holds slugs; empty means every category. `script`
    is the one they read ("zh-Hans", "zh-Hant"; None: the site's own), `cadence` how often
    their digest comes (`CADENCES`)."""

    email: str
    name: str
    categories: tuple[str, ...]
    status: SubscriberStatus
    status_at: datetime  # UTC: when the status was reached
    status_via: str  # how: "import", "cli", "web", "unsubscribe link", ...
    created_at: datetime  # UTC
    id: int | None = None  # the store's id, once stored: what tokens name
    script: str | None = None
    cadence: str = WEEKLY
    consent: Consent | None = None  # the proof of their consent, when they confirmed a sign-up


@dataclass(frozen=True, slots=True)
class Consent:
    """What a reader agreed to and when (PIPL and GDPR ask the operator to prove consent): the
    words shown beside the form they sent, when they followed the confirmation link, and the
    network that link was followed from (IPv4 /24, IPv6 /64: enough to show, not to track)."""

    text: str
    at: datetime  # UTC
    network: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """One planned e-mail of a digest, with its subscriber as the store has them now."""

    id: int
    email_key: str
    message_id: str  # fixed at planning, the same on every attempt
    status: str  # pending | sending (tried, no answer recorded)
    attempts: int
    subscriber: Subscriber | None  # None: erased since the plan
    updated_at: datetime | None = None  # UTC: when its state last changed
    retrying: bool = False  # an attempt ended in an error (not a crash): wait before the next
    # An earlier try may have been delivered (it was uncertain, and the operator sent it again):
    # a success now may be a second copy, and is recorded as uncertain (store.retries.EARLIER).
    doubtful: bool = False
