"""The engine's once-a-second load report (EngineLoad), which overload shedding reads.

Real engine and clock on loopback: an idle engine with one endpoint reports little
CPU and no late ticks; a loop blocked for longer than a tick shows as late ticks.
"""

from __future__ import annotations

import asyncio
import time

from media.commands import CreateEndpoint, EngineLoad, MediaEvent
from media.engine import EngineConfig, MediaEngine
from tests.harness import free_range


async def _reports(block_for: float) -> list[EngineLoad]:
    events: list[MediaEvent] = []
    low, high = free_range(4)
    engine = MediaEngine(
        EngineConfig(port_min=low, port_max=high, load_reports=True),
        on_event=events.append,
    )
    try:
        engine.execute(CreateEndpoint())  # the clock runs while endpoints exist
        await asyncio.sleep(1.1)
        if block_for:
            time.sleep(block_for)  # the loop cannot wake the clock meanwhile
        await asyncio.sleep(1.1)
    finally:
        engine.close()
    return [event for event in events if isinstance(event, EngineLoad)]


async def test_an_idle_engine_reports_its_load_every_second() -> None:
    reports = await _reports(0.0)
    assert len(reports) >= 2
    assert all(r.endpoints == 1 and 0.0 <= r.busy < 1.0 for r in reports)
    assert all(r.worker == 0 for r in reports)


async def test_a_stalled_loop_shows_as_late_ticks() -> None:
    reports = await _reports(0.3)
    assert sum(r.late_ticks for r in reports) >= 1
    # 300 ms is more than the 5-tick catch-up: the oldest ticks were skipped
    assert sum(r.skipped_ticks for r in reports) >= 1


async def test_each_media_worker_reports_under_its_own_index() -> None:
    from media.workers import WorkerPool

    events: list[MediaEvent] = []
    low, high = free_range(8)
    pool = WorkerPool(
        EngineConfig(port_min=low, port_max=high, load_reports=True),
        workers=2,
        on_event=events.append,
    )
    try:
        pool.execute(CreateEndpoint())  # placed on the emptier worker each time
        pool.execute(CreateEndpoint())
        for _ in range(40):  # bounded: reports come once a second
            await asyncio.sleep(0.1)
            if {e.worker for e in events if isinstance(e, EngineLoad)} == {0, 1}:
                break
    finally:
        pool.close()
    assert {e.worker for e in events if isinstance(e, EngineLoad)} == {0, 1}
