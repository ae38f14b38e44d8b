"""Statistics from the queue log, and the log's SQLite round trip."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from acd.log import QueueLog
from acd.records import LogRecord, QueueEvent
from acd.stats import queue_stats, staffed_time
from ccswitch.store import Store
from tests.acd.helpers import make


def scripted() -> list[LogRecord]:
    """Two agents, four callers: answered in 10 s and 40 s, an abandon, a refusal."""
    acd = make(2)  # both log in at 0
    acd.enter("fast", "support", 0.0)
    acd.enter("slow", "support", 0.0)
    acd.enter("gone", "support", 0.0)
    acd.refuse("full", "support", 1.0, "queue full")
    offers = acd.poll(0.0)
    assert len(offers) == 2
    acd.answered("fast", offers[0].agents[0], 10.0)
    acd.no_answer("slow", offers[1].agents[0], 15.0, status=486)
    acd.abandon("gone", 20.0)
    acd.hangup("fast", 70.0)  # 60 s talk, no wrap-up
    acd.poll(30.0)  # offered again after the skip: to the other agent? a1 is in wrap-up
    acd.poll(70.0)
    for caller in list(acd.callers.values()):
        if caller.state.value == "offered":
            acd.answered(caller.caller_id, caller.agents[0], 40.0)
            acd.hangup(caller.caller_id, 100.0)
    acd.logout("a1", 100.0)
    acd.logout("a2", 100.0)
    return acd.records


def test_statistics_for_an_interval() -> None:
    records = scripted()
    stats = queue_stats(
        records, start=0.0, end=200.0, service_level=20.0, queue="support"
    )
    assert stats.offered == 4
    assert stats.refused == 1
    assert stats.handled == 3
    assert stats.answered == 2
    assert stats.abandoned == 1
    assert stats.service_level == pytest.approx(1 / 3)
    assert stats.average_speed_of_answer == pytest.approx((10.0 + 40.0) / 2)
    assert stats.average_handle_time == pytest.approx((60.0 + 60.0) / 2)
    assert stats.abandon_rate == pytest.approx(1 / 3)
    # Two agents staffed for 100 s each; 120 s of handling.
    assert stats.occupancy == pytest.approx(120.0 / 200.0)
    empty = queue_stats(records, start=500.0, end=600.0, service_level=20.0)
    assert (
        empty.offered == 0 and empty.service_level is None and empty.occupancy is None
    )


def test_staffed_time_clips_to_the_interval() -> None:
    records = [
        LogRecord(at=0.0, event=QueueEvent.AGENT_LOGIN, agent="a"),
        LogRecord(at=50.0, event=QueueEvent.AGENT_PAUSE, agent="a"),
        LogRecord(at=70.0, event=QueueEvent.AGENT_UNPAUSE, agent="a"),
    ]
    assert staffed_time(records, 0.0, 100.0) == 80.0
    assert staffed_time(records, 40.0, 80.0) == 20.0
    assert staffed_time(records, 0.0, math.inf) == math.inf


async def test_log_round_trip_and_commands(tmp_path: Path) -> None:
    store = Store(tmp_path / "acd.db")
    await store.open()
    try:
        log = QueueLog(store.db)
        records = scripted()
        await log.append(records)
        back = await log.between(0.0, 1000.0)
        assert back == sorted(records, key=lambda r: r.at)
        stats = queue_stats(back, start=0.0, end=200.0, service_level=20.0)
        assert stats.answered == 2
        await log.add_command("a1", "break", "lunch")
        await log.add_command("a1", "available")
        taken = await log.take_commands()
        assert [(c.action, c.reason) for c in taken] == [
            ("break", "lunch"),
            ("available", ""),
        ]
        assert await log.take_commands() == []
        with pytest.raises(ValueError):
            await log.add_command("a1", "dance")
    finally:
        await store.close()
