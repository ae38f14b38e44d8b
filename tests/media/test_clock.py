"""Tests for media.clock: fixed-origin 20 ms schedule, no drift, bounded catch-up."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

from media.clock import MediaClock, TimerFd, precise_scheduler


class FakeHandle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """Just enough of an event loop: time() and call_at(), advanced by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.handles: list[FakeHandle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeHandle:
        handle = FakeHandle(when, callback)
        self.handles.append(handle)
        return handle

    def pending(self) -> list[FakeHandle]:
        return [handle for handle in self.handles if not handle.cancelled]

    def run_next(self, lateness: float = 0.0) -> None:
        """Jump to the earliest pending timer (plus ``lateness``) and run it."""
        handle = min(self.pending(), key=lambda h: h.when)
        self.handles.remove(handle)
        self.now = max(self.now, handle.when + lateness)
        handle.callback()


def make_clock(**kwargs: Any) -> tuple[FakeLoop, MediaClock, list[tuple[int, float]]]:
    loop = FakeLoop()
    ticks: list[tuple[int, float]] = []
    clock = MediaClock(
        cast(asyncio.AbstractEventLoop, loop),
        lambda tick, when: ticks.append((tick, when)),
        **kwargs,
    )
    return loop, clock, ticks


def test_deadlines_are_origin_plus_n_intervals() -> None:
    loop, clock, ticks = make_clock()
    clock.start()
    for _ in range(100):
        loop.run_next(lateness=0.003)  # every wake-up 3 ms late...
    assert [tick for tick, _ in ticks] == list(range(1, 101))
    # ...yet the schedule does not drift: deadlines stay on the 20 ms grid
    for tick, when in ticks:
        assert when == pytest.approx(clock.origin + tick * 0.02)
    assert loop.pending()[0].when == pytest.approx(clock.origin + 101 * 0.02)


def test_catch_up_is_bounded_and_skips_are_counted() -> None:
    loop, clock, ticks = make_clock(max_catchup=5)
    clock.start()
    loop.run_next()
    assert len(ticks) == 1
    loop.run_next(lateness=0.2)  # a 200 ms stall: 10 ticks overdue
    assert len(ticks) == 6  # 1 + at most 5 in one wake-up
    assert clock.skipped == 6  # ticks 2..7 were skipped
    assert [tick for tick, _ in ticks[1:]] == [8, 9, 10, 11, 12]
    assert clock.max_lateness == pytest.approx(0.2)


def test_small_lateness_runs_every_tick() -> None:
    loop, clock, ticks = make_clock(max_catchup=5)
    clock.start()
    loop.run_next(lateness=0.05)  # 2.5 ticks late: ticks 1..3 all run
    assert [tick for tick, _ in ticks] == [1, 2, 3]
    assert clock.skipped == 0


def test_early_wake_up_runs_nothing_and_reschedules() -> None:
    loop, clock, ticks = make_clock()
    clock.start()
    handle = loop.pending()[0]
    loop.handles.remove(handle)
    loop.now = handle.when - 0.005
    handle.callback()
    assert ticks == []
    assert loop.pending()[0].when == pytest.approx(handle.when)


def test_stop_from_inside_a_tick() -> None:
    loop = FakeLoop()
    seen: list[int] = []
    clock: MediaClock

    def on_tick(tick: int, when: float) -> None:
        seen.append(tick)
        clock.stop()

    clock = MediaClock(cast(asyncio.AbstractEventLoop, loop), on_tick)
    clock.start()
    loop.run_next(lateness=0.05)  # three ticks due, but stop() wins
    assert seen == [1]
    assert not loop.pending()
    assert not clock.running


def test_restart_keeps_the_origin() -> None:
    loop, clock, ticks = make_clock()
    origin = clock.origin
    clock.start()
    loop.run_next()
    clock.stop()
    loop.now += 1.0
    clock.start()
    loop.run_next()
    assert clock.origin == origin
    tick, when = ticks[-1]
    assert when == pytest.approx(origin + tick * 0.02)
    assert tick > 50


def test_start_twice_schedules_once() -> None:
    loop, clock, _ = make_clock()
    clock.start()
    clock.start()
    assert len(loop.pending()) == 1


def test_bad_parameters() -> None:
    loop = cast(asyncio.AbstractEventLoop, FakeLoop())
    with pytest.raises(ValueError):
        MediaClock(loop, lambda tick, when: None, interval=0)
    with pytest.raises(ValueError):
        MediaClock(loop, lambda tick, when: None, max_catchup=0)


async def test_runs_on_a_real_loop() -> None:
    loop = asyncio.get_running_loop()
    ticks: list[int] = []
    done = loop.create_future()

    def on_tick(tick: int, when: float) -> None:
        ticks.append(tick)
        if len(ticks) == 5 and not done.done():
            done.set_result(None)

    clock = MediaClock(loop, on_tick)
    clock.start()
    try:
        await asyncio.wait_for(done, timeout=5)
    finally:
        clock.stop()
    assert ticks == sorted(ticks)


# ------------------------------------------------------------------ timerfd


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux")
async def test_timerfd_calls_in_deadline_order_and_skips_cancelled() -> None:
    loop = asyncio.get_running_loop()
    timer = TimerFd(loop)
    calls: list[str] = []
    done = loop.create_future()
    try:
        now = timer.time()
        assert abs(now - time.monotonic()) < 0.01  # deadlines on time.monotonic
        timer.call_at(now + 0.03, calls.append, "c")
        timer.call_at(now + 0.01, calls.append, "a")
        timer.call_at(now + 0.02, calls.append, "b").cancel()
        timer.call_at(now - 1.0, calls.append, "past")  # overdue: runs at once
        timer.call_at(now + 0.04, lambda: done.set_result(None))
        await asyncio.wait_for(done, timeout=5)
        assert calls == ["past", "a", "c"]
        assert timer.wakeups >= 1
    finally:
        timer.close()
    timer.close()  # twice is fine


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux")
async def test_timerfd_rearms_from_a_callback_and_after_a_failure() -> None:
    loop = asyncio.get_running_loop()
    timer = TimerFd(loop)
    seen: list[int] = []
    done = loop.create_future()
    errors: list[object] = []
    loop.set_exception_handler(lambda loop, context: errors.append(context))

    def step(n: int) -> None:
        seen.append(n)
        if n == 2:
            timer.call_at(timer.time() + 0.005, step, 3)
            raise RuntimeError("a failing callback")
        if n == 3:
            done.set_result(None)

    try:
        timer.call_at(timer.time() + 0.005, step, 1)
        timer.call_at(timer.time() + 0.01, step, 2)
        await asyncio.wait_for(done, timeout=5)
        assert seen == [1, 2, 3]
    finally:
        loop.set_exception_handler(None)
        timer.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux")
async def test_clock_on_a_timerfd() -> None:
    loop = asyncio.get_running_loop()
    timer = TimerFd(loop)
    ticks: list[tuple[int, float]] = []
    done = loop.create_future()

    def on_tick(tick: int, when: float) -> None:
        ticks.append((tick, when))
        if len(ticks) == 5 and not done.done():
            done.set_result(None)

    clock = MediaClock(timer, on_tick)
    clock.start()
    try:
        await asyncio.wait_for(done, timeout=5)
    finally:
        clock.stop()
        timer.close()
    numbers = [tick for tick, _ in ticks]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    for (_, earlier), (_, later) in itertools.pairwise(ticks):
        assert later - earlier == pytest.approx(0.02)


def test_precise_scheduler_falls_back_to_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    loop = FakeLoop()
    assert precise_scheduler(cast(asyncio.AbstractEventLoop, loop)) is loop
