"""Queue statistics computed from queue log records, for any interval.

Definitions (a caller belongs to the interval in which their outcome falls):

- *offered*: outcomes in the interval, admission refusals included.
- *handled*: offered minus admission refusals (callers who actually waited).
- *answered*: ``connect`` and ``callback_completed`` outcomes.
- *service level*: answered within ``service_level`` seconds / handled.
- *ASA* (average speed of answer): mean wait of the answered.
- *AHT* (average handle time): mean talk + wrap-up of ``complete`` records.
- *abandon rate*: ``abandon`` outcomes / handled.
- *occupancy*: talk + wrap-up time of ``complete`` records in the interval / the time
  agents were logged in and not on break in the interval (agent records replayed).

The same function serves the CLI (rows read back from SQLite) and the simulation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from acd.records import ANSWERED, OUTCOMES, LogRecord, QueueEvent

_STAFFED_AFTER = {
    QueueEvent.AGENT_LOGIN: True,
    QueueEvent.AGENT_UNPAUSE: True,
    QueueEvent.AGENT_PAUSE: False,
    QueueEvent.AGENT_LOGOUT: False,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueStats:
    offered: int
    handled: int
    answered: int
    abandoned: int
    refused: int
    service_level: float | None
    average_speed_of_answer: float | None
    average_handle_time: float | None
    abandon_rate: float | None
    occupancy: float | None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def staffed_time(records: Iterable[LogRecord], start: float, end: float) -> float:
    """Agent-seconds logged in and not on break within [start, end)."""
    since: dict[str, float] = {}
    total = 0.0
    for record in sorted(records, key=lambda r: r.at):
        staffed = _STAFFED_AFTER.get(record.event)
        if staffed is None or not record.agent:
            continue
        if staffed and record.agent not in since:
            since[record.agent] = record.at
        elif not staffed and record.agent in since:
            began = since.pop(record.agent)
            total += max(0.0, min(record.at, end) - max(began, start))
    for began in since.values():
        total += max(0.0, end - max(began, start))
    return total


def queue_stats(
    records: Iterable[LogRecord],
    *,
    start: float,
    end: float,
    service_level: float,
    queue: str | None = None,
) -> QueueStats:
    """Statistics of ``queue`` (all queues if None) for outcomes in [start, end)."""
    every = list(records)
    chosen = [
        r
        for r in every
        if start <= r.at < end and (queue is None or r.queue == queue or not r.queue)
    ]
    outcomes = [r for r in chosen if r.event in OUTCOMES and r.queue]
    answered = [r for r in outcomes if r.event in ANSWERED]
    abandoned = [r for r in outcomes if r.event is QueueEvent.ABANDON]
    refused = [r for r in outcomes if r.event is QueueEvent.EXIT_ADMISSION]
    handled = len(outcomes) - len(refused)
    waits = [r.wait or 0.0 for r in answered]
    within = sum(1 for w in waits if w <= service_level)
    complete = [r for r in chosen if r.event is QueueEvent.COMPLETE]
    busy = sum((r.talk or 0.0) + (r.wrap_up or 0.0) for r in complete)
    # TODO: occupancy is over all agents' staffed time, not per queue: an agent in
    # two queues counts fully in both (agent records carry no queue).
    # An open interval (end = inf) ends with the last record: agents still logged
    # in are staffed until then, not forever.
    horizon = end if math.isfinite(end) else max((r.at for r in every), default=start)
    staffed = staffed_time(
        (r for r in every if r.event in _STAFFED_AFTER), start, horizon
    )
    return QueueStats(
        offered=len(outcomes),
        handled=handled,
        answered=len(answered),
        abandoned=len(abandoned),
        refused=len(refused),
        service_level=within / handled if handled else None,
        average_speed_of_answer=_mean(waits),
        average_handle_time=_mean(
            [(r.talk or 0.0) + (r.wrap_up or 0.0) for r in complete]
        ),
        abandon_rate=len(abandoned) / handled if handled else None,
        occupancy=min(1.0, busy / staffed) if staffed > 0 else None,
    )
