"""Admission control: the queue regulates its own length.

Each queue has zero or more :class:`AdmissionRule` entries (``[[admission]]``), each
active on some days and hours (local time). The first active rule of the queue
applies: when any of its limits is crossed (expected wait of the new caller, recent
average speed of answer, callers waiting per staffed agent, callers waiting) the new
caller is offered a callback, sent to an overflow destination or told to call later,
as the rule says. Independently of the rules, nobody is admitted to a queue with no
agent logged in unless the queue says ``join_empty``; such callers get the action
of the active rule, or "call later" when there is none.

:func:`decide` is pure: the distributor passes a :class:`QueueLoad` snapshot and the
local time, so schedules are tested with any date.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import time as clock_time

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"([0-9]{1,2}):([0-9]{2})-([0-9]{1,2}):([0-9]{2})")


class AdmissionAction(enum.Enum):
    ADMIT = "admit"
    CALLBACK = "callback"
    OVERFLOW = "overflow"
    CALL_LATER = "call-later"


class ScheduleError(ValueError):
    """A days or hours value that cannot be parsed (the message says why)."""


def parse_days(text: str) -> frozenset[int]:
    """``"mon-fri"``, ``"sat,sun"``, ``""`` (every day) -> weekday numbers (Mon=0)."""
    if not text.strip():
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.lower().split(","):
        part = part.strip()
        first, _, last = part.partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise ScheduleError(f"{part!r} is not a day or range like mon-fri")
        start = DAY_NAMES.index(first)
        end = DAY_NAMES.index(last) if last else start
        day = start
        while True:
            days.add(day)
            if day == end:
                break
            day = (day + 1) % 7
    return frozenset(days)


def parse_hours(text: str) -> tuple[clock_time, clock_time] | None:
    """``"08:00-18:00"`` -> (start, end); ``""`` -> None (all day).

    An end before the start spans midnight (``"22:00-06:00"``).
    """
    if not text.strip():
        return None
    match = _HOURS.fullmatch(text.strip())
    if not match:
        raise ScheduleError(f"{text!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise ScheduleError(f"{text!r} has an impossible time")
    end = clock_time(23, 59, 59, 999999) if h2 == 24 else clock_time(h2, m2)
    return clock_time(h1, m1), end


@dataclass(frozen=True, kw_only=True, slots=True)
class AdmissionRule:
    """Limits for one queue during a schedule; a limit of 0 is not checked.

    :param max_expected_wait: seconds of EWT for the new caller.
    :param max_asa: seconds of recent average speed of answer.
    :param max_per_agent: callers waiting per staffed agent.
    :param max_length: callers waiting (virtual ones included).
    :param action: what a caller over the limit gets.
    :param destination: the overflow destination (``queue:NAME``, ``user:NAME``...).
    """

    queue: str
    days: frozenset[int] = frozenset(range(7))
    hours: tuple[clock_time, clock_time] | None = None
    max_expected_wait: float = 0.0
    max_asa: float = 0.0
    max_per_agent: float = 0.0
    max_length: int = 0
    action: AdmissionAction = AdmissionAction.CALLBACK
    destination: str = ""

    def active(self, local: datetime) -> bool:
        if local.weekday() not in self.days:
            return False
        if self.hours is None:
            return True
        start, end = self.hours
        now = local.time()
        if start <= end:
            return start <= now <= end
        return now >= start or now <= end


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueLoad:
    """The queue as admission sees it when a caller arrives."""

    waiting: int
    logged_in: int
    staffed: int
    expected_wait: float | None
    average_speed_of_answer: float
    join_empty: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class AdmissionDecision:
    action: AdmissionAction
    reason: str = ""
    destination: str = ""


ADMITTED = AdmissionDecision(action=AdmissionAction.ADMIT)


def _crossed(rule: AdmissionRule, load: QueueLoad) -> str:
    """The first limit crossed, in words, or ``""``."""
    ewt = load.expected_wait
    if rule.max_expected_wait and ewt is not None and ewt > rule.max_expected_wait:
        return f"expected wait {ewt:.0f}s > {rule.max_expected_wait:.0f}s"
    if rule.max_asa and load.average_speed_of_answer > rule.max_asa:
        return f"ASA {load.average_speed_of_answer:.0f}s > {rule.max_asa:.0f}s"
    if rule.max_per_agent:
        per_agent = load.waiting / max(load.staffed, 1)
        if per_agent >= rule.max_per_agent:
            return f"{per_agent:.1f} callers per agent >= {rule.max_per_agent:g}"
    if rule.max_length and load.waiting >= rule.max_length:
        return f"{load.waiting} waiting >= {rule.max_length}"
    return ""


def decide(
    rules: Sequence[AdmissionRule], load: QueueLoad, local: datetime
) -> AdmissionDecision:
    """Admit, or the action of the first active rule whose limit is crossed."""
    rule = next((r for r in rules if r.active(local)), None)
    if load.logged_in == 0 and not load.join_empty:
        if rule is None:
            return AdmissionDecision(
                action=AdmissionAction.CALL_LATER, reason="no agent logged in"
            )
        return AdmissionDecision(
            action=rule.action,
            reason="no agent logged in",
            destination=rule.destination,
        )
    if rule is None:
        return ADMITTED
    reason = _crossed(rule, load)
    if not reason:
        return ADMITTED
    return AdmissionDecision(
        action=rule.action, reason=reason, destination=rule.destination
    )
