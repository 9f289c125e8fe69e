"""What a bounce, complaint or provider unsubscribe does to a reader: `[bounces.rules]`. Pure.

One rule per event kind, as listmonk's, but counted over a window: the rule acts when an
address has had `count` events of that kind within `within_days` of each other, this one among
them (by the events' own dates, so events that arrive out of order count as they happened;
none from before the address's suppression was last lifted; the events of one delivery count
once: a message reported at each retry, or by a DSN naming it for several recipients, is one
failure). Its action:

- `none`: the event is only kept;
- `unsubscribe`: the reader is unsubscribed, as if they had followed the unsubscribe link;
  they may sign up again as anyone may;
- `suppress`: the address goes on the suppression list, and the reader's status becomes
  `bounced` (for a bounce) or `unsubscribed` (for a complaint or an unsubscribe). No digest
  goes to a suppressed address, and signing up again needs a new confirmation, whose
  following lifts the suppression.

A reader who has unsubscribed or bounced already keeps that status (their own choice is the
stronger record); the suppression is written all the same.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..model import SubscriberStatus
from .events import EventKind


class Action(enum.Enum):
    NONE = "none"
    UNSUBSCRIBE = "unsubscribe"
    SUPPRESS = "suppress"


@dataclass(frozen=True, slots=True)
class Rule:
    count: int  # events of the kind ...
    within_days: int  # ... within this many days before the latest, the latest included
    action: Action


# hard bounce 1 -> suppress; soft bounce 3 within 30 days -> suppress; complaint 1 -> suppress
# (and unsubscribed); the provider's unsubscribe -> unsubscribe.
DEFAULT_RULES: dict[EventKind, Rule] = {
    EventKind.HARD_BOUNCE: Rule(1, 365, Action.SUPPRESS),
    EventKind.SOFT_BOUNCE: Rule(3, 30, Action.SUPPRESS),
    EventKind.COMPLAINT: Rule(1, 365, Action.SUPPRESS),
    EventKind.UNSUBSCRIBE: Rule(1, 365, Action.UNSUBSCRIBE),
}

KIND_NAMES = {
    EventKind.HARD_BOUNCE: "hard bounce",
    EventKind.SOFT_BOUNCE: "soft bounce",
    EventKind.COMPLAINT: "complaint",
    EventKind.UNSUBSCRIBE: "unsubscribe",
}

_BOUNCES = (EventKind.HARD_BOUNCE, EventKind.SOFT_BOUNCE)
_MAY_CHANGE = (SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING)


def window_start(rule: Rule, occurred: datetime, lifted_at: datetime | None) -> datetime:
    """The earliest moment another event may have to count with one that `occurred`:
    `within_days` before it, and never before the address's suppression was last lifted."""
    start = occurred - timedelta(days=rule.within_days)
    return max(start, lifted_at) if lifted_at is not None else start


def window_end(rule: Rule, occurred: datetime) -> datetime:
    """The latest moment another event may have to count with one that `occurred`."""
    return occurred + timedelta(days=rule.within_days)


def count_in_window(rule: Rule, occurred: datetime, others: list[datetime]) -> int:
    """The most events that fall within `within_days` of each other with the one that
    `occurred`: of `others` (the kind's events between window_start and window_end, this
    one among them), the fullest span of `within_days` that holds `occurred`."""
    span = timedelta(days=rule.within_days)
    times = sorted(others)
    best = 0
    for i, start in enumerate(times):
        if start > occurred:
            break
        if start + span < occurred:
            continue
        best = max(best, bisect_right(times, start + span) - i)
    return best


def decide(rule: Rule, count: int) -> Action:
    """The action when the address has had `count` events of the rule's kind in its window."""
    return rule.action if count >= rule.count else Action.NONE


def status_after(kind: EventKind, action: Action, current: SubscriberStatus) -> SubscriberStatus | None:
    """The reader's new status after `action` for an event of `kind`, None when it stays."""
    if action is Action.NONE or current not in _MAY_CHANGE:
        return None
    if action is Action.SUPPRESS and kind in _BOUNCES:
        return SubscriberStatus.BOUNCED
    return SubscriberStatus.UNSUBSCRIBED
