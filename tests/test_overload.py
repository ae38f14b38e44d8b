"""Overload shedding, call recording and a busy loop's 2xx race (fake stack, engine).

The guard is sans-IO: reports and times go in, so every threshold and the hold time
are checked without waiting. The B2BUA side checks that a tripped guard refuses new
calls with 503 + Retry-After while the call in progress goes on, and that a bridged
call is recorded (caller left) when a recordings folder is set.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from media.commands import EngineLoad, Record, RecordingStarted
from switch.b2bua import Limits
from switch.events import CallRecording, CallRejected
from switch.overload import OverloadGuard, Thresholds, watch_loop_lag
from switch.sip.message import Response
from tests.test_b2bua import (
    PHONE_B,
    TRUNK,
    FakeBinding,
    FakeEngine,
    answer_sdp,
    invite,
    make_world,
    reply,
    settle,
)


def load(
    busy: float = 0.1, late: int = 0, worker: int = 0, skipped: int = 0
) -> EngineLoad:
    return EngineLoad(
        busy=busy, late_ticks=late, skipped_ticks=skipped, endpoints=10, worker=worker
    )


def test_a_quiet_switch_admits_calls() -> None:
    guard = OverloadGuard()
    guard.on_load(load(busy=0.89, late=4), now=0.0)
    guard.on_lag(0.49, now=0.0)
    assert guard.reason(0.1) is None
    assert guard.shed_calls == 0


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (load(busy=0.95, worker=1), "media worker 1 at 95%"),
        (load(late=7), "7 late clock ticks/s"),
        (load(late=3, skipped=4), "7 late clock ticks/s"),
    ],
)
def test_one_noisy_second_sheds_nothing_two_in_a_row_do(
    bad: EngineLoad, why: str
) -> None:
    guard = OverloadGuard(hold=3.0)
    guard.on_load(bad, now=8.0)
    assert guard.reason(8.5) is None
    guard.on_load(load(worker=bad.worker), now=9.0)  # a good second in between
    guard.on_load(bad, now=10.0)
    assert guard.reason(10.5) is None
    guard.on_load(bad, now=11.0)
    reason = guard.reason(11.5)
    assert reason is not None and why in reason
    assert guard.reason(13.9) is not None
    assert guard.reason(14.1) is None


def test_other_workers_reports_do_not_make_a_run() -> None:
    guard = OverloadGuard()
    guard.on_load(load(busy=0.95, worker=0), now=1.0)
    guard.on_load(load(busy=0.95, worker=1), now=1.0)
    assert guard.reason(1.5) is None


@pytest.mark.parametrize(
    ("report", "why"),
    [
        (lambda g, t: g.on_load(load(skipped=5), t), "5 late clock ticks/s"),
        (
            lambda g, t: (g.on_lag(0.6, t - 0.7), g.on_lag(0.8, t)),
            "signalling loop 800 ms late",
        ),
    ],
)
def test_a_stall_sheds_at_once_for_the_hold_time(report, why: str) -> None:  # type: ignore[no-untyped-def]
    guard = OverloadGuard(hold=3.0)
    report(guard, 10.0)
    reason = guard.reason(10.5)
    assert reason is not None and why in reason
    assert guard.reason(12.9) is not None
    assert guard.reason(13.1) is None
    assert (guard.shed_calls, guard.episodes) == (2, 1)


def test_one_pause_of_the_loop_sheds_nothing_a_late_loop_twice_in_a_row_does() -> None:
    guard = OverloadGuard(hold=3.0)
    guard.on_lag(0.7, now=10.0)  # a collection, say: over when it is measured
    guard.on_lag(0.0, now=10.1)
    guard.on_lag(0.9, now=11.0)
    assert guard.reason(11.1) is None
    guard.on_lag(0.6, now=11.7)
    reason = guard.reason(11.8)
    assert reason is not None and "signalling loop 600 ms late" in reason


def test_sustained_overload_keeps_shedding_and_zero_turns_a_test_off() -> None:
    guard = OverloadGuard(hold=3.0)
    for second in range(10):
        guard.on_load(load(busy=0.99), now=float(second))
    assert guard.reason(11.5) is not None  # 3 s after the last bad report
    assert guard.episodes == 1
    off = OverloadGuard(Thresholds(cpu=0, late_ticks=0, lag=0))
    off.on_load(load(busy=1.0, late=50), now=0.0)
    off.on_lag(5.0, now=0.0)
    assert off.reason(0.1) is None


async def test_loop_lag_watch_reports_a_blocked_loop() -> None:
    guard = OverloadGuard(Thresholds(lag=0.05))
    task = asyncio.ensure_future(watch_loop_lag(guard, interval=0.01))
    try:
        await asyncio.sleep(0.03)
        time.sleep(0.1)  # the loop is stuck: the watch's timer fires late
        for _ in range(1000):  # until the watch has taken that late sample
            if guard._late_loop:
                break
            await asyncio.sleep(0.001)
        assert guard.reason(time.monotonic()) is None  # one late sample sheds nothing
        time.sleep(0.1)  # stuck again: its next sample is late too
        await asyncio.sleep(0.03)
    finally:
        task.cancel()
    reason = guard.reason(time.monotonic())
    assert reason is not None and "signalling loop" in reason


async def test_overloaded_switch_sheds_new_calls_and_keeps_the_call_in_progress() -> (
    None
):
    bindings = {"1002": [FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B)]}
    world = make_world(bindings, limits=Limits(retry_after=9))
    world.b2bua.overload = OverloadGuard()
    assert world.b2bua.handle_invite(invite("1002"), TRUNK) is None
    await settle()
    (ringing,) = world.stack.by_method("INVITE")
    ringing.future.set_result(reply(ringing, 200, body=answer_sdp()))
    await settle()

    world.b2bua.on_media_event(load(busy=0.97))
    world.b2bua.on_media_event(load(busy=0.97))  # a second second
    refused = world.b2bua.handle_invite(invite("1002", branch="z9hG4bK2"), TRUNK)
    assert isinstance(refused, Response) and refused.status == 503
    assert refused.headers.get("Retry-After") == "9"
    assert [e.status for e in world.events if isinstance(e, CallRejected)] == [503]
    (call,) = world.b2bua.calls.values()
    assert call.bridged is not None and not call.ended

    world.b2bua.overload.shed_until = 0.0  # the hold time is over
    assert world.b2bua.handle_invite(invite("1002", branch="z9hG4bK3"), TRUNK) is None
    await world.b2bua.stop()


class RecordingEngine(FakeEngine):
    def execute(self, command: object) -> object:
        if isinstance(command, Record):
            self.commands.append(command)
            return RecordingStarted(recording_id=99, path=command.path)
        return super().execute(command)


async def test_bridged_call_is_recorded_caller_left(tmp_path: Path) -> None:
    bindings = {"1002": [FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B)]}
    world = make_world(bindings)
    world.b2bua.engine = world.engine = RecordingEngine()
    world.b2bua.recordings = str(tmp_path / "rec")
    assert world.b2bua.handle_invite(invite("1002"), TRUNK) is None
    await settle()
    (ringing,) = world.stack.by_method("INVITE")
    ringing.future.set_result(reply(ringing, 200, body=answer_sdp()))
    await settle()

    (call,) = world.b2bua.calls.values()
    (record,) = [c for c in world.engine.commands if isinstance(c, Record)]
    assert record.left == call.inbound.endpoint_id
    assert record.right == call.outbound[0].endpoint_id
    path = Path(record.path)
    assert path.parent.parent == tmp_path / "rec" and path.parent.is_dir()
    assert path.name == f"{call.call_id}.wav"
    (event,) = [e for e in world.events if isinstance(e, CallRecording)]
    assert (event.call_id, event.path) == (call.call_id, record.path)
    await world.b2bua.stop()


async def test_no_folder_no_recording() -> None:
    bindings = {"1002": [FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B)]}
    world = make_world(bindings)
    assert world.b2bua.handle_invite(invite("1002"), TRUNK) is None
    await settle()
    (ringing,) = world.stack.by_method("INVITE")
    ringing.future.set_result(reply(ringing, 200, body=answer_sdp()))
    await settle()
    assert not any(isinstance(c, Record) for c in world.engine.commands)
    await world.b2bua.stop()


async def test_a_2xx_retransmitted_before_the_first_is_handled_keeps_the_call() -> None:
    """Under load the callee's 200 can come again before the first one reached the
    call (its coroutine runs on a later loop turn): that copy must not be taken for
    another fork's answer, which would ACK and BYE the dialog being set up."""
    bindings = {"1002": [FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B)]}
    world = make_world(bindings)
    assert world.b2bua.handle_invite(invite("1002"), TRUNK) is None
    await settle()
    (ringing,) = world.stack.by_method("INVITE")
    answer = reply(ringing, 200, body=answer_sdp())
    ringing.future.set_result(answer)
    world.b2bua.handle_late_2xx(reply(ringing, 200, body=answer_sdp()))  # the copy
    await settle()
    (call,) = world.b2bua.calls.values()
    assert call.bridged is not None and not call.ended
    assert world.stack.by_method("BYE") == []
    assert len(world.stack.acks) == 1
    # a later copy (the dialog exists now) is ACKed again, still no BYE
    world.b2bua.handle_late_2xx(reply(ringing, 200, body=answer_sdp()))
    assert len(world.stack.acks) == 2 and world.stack.by_method("BYE") == []
    await world.b2bua.stop()
