"""Admission control: limits, schedules and the empty-queue rule."""

from __future__ import annotations

from datetime import datetime
from datetime import time as clock_time

import pytest

from acd.admission import (
    AdmissionAction,
    AdmissionRule,
    QueueLoad,
    ScheduleError,
    decide,
    parse_days,
    parse_hours,
)
from acd.queue import QueueSettings
from tests.acd.helpers import make

MONDAY_NOON = datetime(2026, 11, 30, 12, 0)
SUNDAY_NOON = datetime(2026, 12, 6, 12, 0)


def load(**fields: object) -> QueueLoad:
    values: dict[str, object] = {
        "waiting": 0,
        "logged_in": 2,
        "staffed": 2,
        "expected_wait": 0.0,
        "average_speed_of_answer": 0.0,
        "join_empty": False,
    }
    values.update(fields)
    return QueueLoad(**values)  # type: ignore[arg-type]


def test_days_and_hours() -> None:
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("sat,sun") == frozenset({5, 6})
    assert parse_days("fri-mon") == frozenset({4, 5, 6, 0})
    assert parse_days("") == frozenset(range(7))
    assert parse_hours("08:00-18:30") == (clock_time(8), clock_time(18, 30))
    assert parse_hours("") is None
    for bad in ("funday", "mon-xyz"):
        with pytest.raises(ScheduleError):
            parse_days(bad)
    for bad in ("8-18", "25:00-26:00"):
        with pytest.raises(ScheduleError):
            parse_hours(bad)


@pytest.mark.parametrize(
    ("rule", "queue_load", "reason"),
    [
        ({"max_expected_wait": 60}, {"expected_wait": 61.0}, "expected wait"),
        ({"max_asa": 30}, {"average_speed_of_answer": 31.0}, "ASA"),
        ({"max_per_agent": 2}, {"waiting": 4}, "per agent"),
        ({"max_length": 3}, {"waiting": 3}, "waiting"),
    ],
)
def test_each_limit_triggers_the_action(
    rule: dict[str, object], queue_load: dict[str, object], reason: str
) -> None:
    limits = AdmissionRule(
        queue="q", action=AdmissionAction.OVERFLOW, destination="queue:sales", **rule
    )  # type: ignore[arg-type]
    decision = decide([limits], load(**queue_load), MONDAY_NOON)
    assert decision.action is AdmissionAction.OVERFLOW
    assert reason in decision.reason and decision.destination == "queue:sales"
    assert decide([limits], load(), MONDAY_NOON).action is AdmissionAction.ADMIT


def test_schedule_picks_the_active_rule() -> None:
    weekdays = AdmissionRule(
        queue="q",
        days=parse_days("mon-fri"),
        hours=parse_hours("08:00-18:00"),
        max_length=10,
    )
    weekend = AdmissionRule(queue="q", max_length=1, action=AdmissionAction.CALL_LATER)
    busy = load(waiting=2)
    assert (
        decide([weekdays, weekend], busy, MONDAY_NOON).action is AdmissionAction.ADMIT
    )
    assert (
        decide([weekdays, weekend], busy, SUNDAY_NOON).action
        is AdmissionAction.CALL_LATER
    )
    night = AdmissionRule(queue="q", hours=parse_hours("22:00-06:00"))
    assert night.active(datetime(2026, 12, 1, 23, 0))
    assert not night.active(MONDAY_NOON)


def test_no_agent_logged_in() -> None:
    empty = load(logged_in=0, staffed=0, expected_wait=None)
    assert decide([], empty, MONDAY_NOON).action is AdmissionAction.CALL_LATER
    rule = AdmissionRule(queue="q", action=AdmissionAction.CALLBACK)
    assert decide([rule], empty, MONDAY_NOON).action is AdmissionAction.CALLBACK
    joined = load(logged_in=0, staffed=0, expected_wait=None, join_empty=True)
    assert decide([], joined, MONDAY_NOON).action is AdmissionAction.ADMIT


def test_distributor_admission_uses_ewt() -> None:
    rule = AdmissionRule(queue="support", max_expected_wait=100.0)
    acd = make(1, queue=QueueSettings(name="support"), rules=[rule])
    acd.handle_times["support"].default = 60.0
    assert acd.admission("support", 0.0, MONDAY_NOON).action is AdmissionAction.ADMIT
    for number in range(3):
        acd.enter(f"c{number}", "support", 0.0)
    acd.poll(0.0)  # c0 goes to the agent; two wait: EWT for the next = 3 * 60
    decision = acd.admission("support", 1.0, MONDAY_NOON)
    assert decision.action is AdmissionAction.CALLBACK
    assert "expected wait 180s" in decision.reason
