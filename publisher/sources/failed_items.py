"""A web source's memory of the items it could not read (a 404 article, a page without a date).

An item that failed is not asked for again on every ingest: it waits, longer each time it
fails again (the next run, then 1 hour, 6 hours, a day, then weekly; an item that is gone, a
404 or 410, starts at the hour, as it seldom comes back within minutes), and a link that failed
no longer counts as new when a source decides whether to walk on to the next list page.
Like HTTP validators, what a run learnt is kept only once the ingest that used it committed
(`FailedItems.commit`), through the `load` and `save` the composition root gives.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

WALK = "list-walk:"  # a key's prefix: the walk of list pages from the URL after it failed past that page
# The wait after the 1st, 2nd, ... failure; the last one repeats.
BACKOFF = (timedelta(0), timedelta(hours=1), timedelta(hours=6), timedelta(days=1), timedelta(days=7))


@dataclass(frozen=True, slots=True)
class FailedItem:
    key: str
    url: str
    failures: int  # in a row
    first_failed: datetime
    last_failed: datetime
    next_try: datetime
    reason: str


def next_try(failures: int, at: datetime, gone: bool = False) -> datetime:
    """When an item that failed `failures` times in a row, the last at `at`, is asked for again;
    `gone` (it answered 404 or 410) skips the first step, the next run."""
    return at + BACKOFF[min(failures + gone, len(BACKOFF)) - 1]


@dataclass
class FailedItems:
    """One source's failed items for one run. `stored`: what the store holds (key -> item);
    `save(upserts, cleared_keys)` writes what changed, called by `commit`."""

    stored: Mapping[str, FailedItem]
    clock: Callable[[], datetime]
    save: Callable[[list[FailedItem], list[str]], None] = lambda _u, _c: None
    retry_now: bool = False  # `ingest --retry-failed`: every item is due, whatever its wait
    changed: dict[str, FailedItem | None] = field(default_factory=dict)  # None: cleared

    def _current(self, key: str) -> FailedItem | None:
        return self.changed[key] if key in self.changed else self.stored.get(key)

    def known(self, key: str) -> bool:
        """The item failed before and has not been read since: not new for a walk."""
        return self._current(key) is not None

    def waiting(self, key: str) -> bool:
        """The item failed and its next try is not due yet: do not ask for it now."""
        item = self._current(key)
        return item is not None and not self.retry_now and item.next_try > self.clock()

    def keys(self) -> list[str]:
        """The keys of the items failed as this run left them so far."""
        return [key for key in {**self.stored, **self.changed} if self._current(key) is not None]

    def forget(self, key: str) -> None:
        """Forget the item as failed (read at last, or no longer listed anywhere)."""
        if self._current(key) is not None:
            self.changed[key] = None

    def failed(self, key: str, url: str, reason: str, gone: bool = False) -> FailedItem:
        """The item failed again (`gone`: it answered 404 or 410); when it is next due."""
        now = self.clock()
        before = self._current(key)
        if before is None:
            item = FailedItem(key, url, 1, now, now, next_try(1, now, gone), reason)
        else:
            failures = before.failures + 1
            item = replace(before, url=url, failures=failures, last_failed=now,
                           next_try=next_try(failures, now, gone), reason=reason)  # fmt: skip
        self.changed[key] = item
        return item

    def succeeded(self, key: str) -> None:
        self.forget(key)

    # A walk of list or API pages that failed past its first page is kept as an item too (its
    # key WALK + the first page's URL, its url the page that failed): the next run reads on to
    # that page whatever the pages before it say (a 304, nothing new), so what it held is not
    # skipped for good.

    def walk_resume(self, first: str) -> str | None:
        """The page where the last walk from `first` failed, to be read again; None: none failed."""
        item = self._current(WALK + first)
        return item.url if item is not None else None

    def keep_walks_from(self, firsts: Collection[str]) -> None:
        """Forget the walks whose first page is none of `firsts` (the source's first pages as
        configured now): their category or URL left the config, and no run would resume them."""
        for key in self.keys():
            if key.startswith(WALK) and key.removeprefix(WALK) not in firsts:
                self.forget(key)

    def walk_ended(self, first: str, failed_at: str | None = None, reason: str = "") -> None:
        """The walk from `first` went through (`failed_at` None), or failed at that page; a
        failure of the first page itself is no cut walk (the next run starts there anyway)."""
        if failed_at is None:
            self.forget(WALK + first)
        elif failed_at != first:
            self.failed(WALK + first, failed_at, reason)

    def commit(self) -> None:
        upserts = [item for item in self.changed.values() if item is not None]
        cleared = [key for key, item in self.changed.items() if item is None]
        if upserts or cleared:
            self.save(upserts, cleared)
        self.stored = {**self.stored, **{i.key: i for i in upserts}}
        self.stored = {k: v for k, v in self.stored.items() if k not in cleared}
        self.changed.clear()
