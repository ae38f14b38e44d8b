"""Tests for switch.cdr (CdrRecorder) with the real SQLite store, and `ccswitch cdr`."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccswitch.cli import main
from ccswitch.store import Store
from switch.cdr import CallRecord, CdrRecorder, LegRecord
from switch.events import (
    CallEnded,
    CallRejected,
    CallRouted,
    CallStarted,
    Event,
    LegAnswered,
    LegEnded,
    LegRinging,
    LegStarted,
    new_bus,
    publish,
)

T0 = 1_700_000_000.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = Store(tmp_path / "cdr.db")
    await db.open()
    try:
        yield db
    finally:
        await db.close()


def answered_call(call_id: str = "c1", t0: float = T0) -> list[Event]:
    """A trunk call to 1001, answered after ringing, the callee hangs up."""
    return [
        CallStarted(
            at=t0,
            call_id=call_id,
            sip_call_id=f"{call_id}@carrier",
            caller="+74951234567",
            called="1001",
            source="127.0.0.1:5090",
            trunk="demo",
            user=None,
        ),
        LegStarted(
            at=t0,
            call_id=call_id,
            leg_id=f"{call_id}-a",
            role="inbound",
            sip_call_id=f"{call_id}@carrier",
            peer="sip:+74951234567@127.0.0.1:5090",
        ),
        CallRouted(at=t0 + 0.01, call_id=call_id, kind="user", target="1001"),
        LegStarted(
            at=t0 + 0.02,
            call_id=call_id,
            leg_id=f"{call_id}-b",
            role="outbound",
            sip_call_id=f"{call_id}-b@ccswitch",
            peer="sip:1001@127.0.0.1:5070",
        ),
        LegRinging(
            at=t0 + 0.5, call_id=call_id, leg_id=f"{call_id}-b", early_media=False
        ),
        LegRinging(
            at=t0 + 0.7, call_id=call_id, leg_id=f"{call_id}-b", early_media=True
        ),
        LegAnswered(at=t0 + 3.0, call_id=call_id, leg_id=f"{call_id}-b", codec="PCMA"),
        LegAnswered(at=t0 + 3.01, call_id=call_id, leg_id=f"{call_id}-a", codec="PCMU"),
        LegEnded(
            at=t0 + 13.0,
            call_id=call_id,
            leg_id=f"{call_id}-b",
            status=200,
            cause=16,
            hangup_by="remote",
            packets_lost=3,
            jitter_ms=1.5,
            mos=4.3,
        ),
        LegEnded(
            at=t0 + 13.01,
            call_id=call_id,
            leg_id=f"{call_id}-a",
            status=200,
            cause=16,
            hangup_by="other",
            packets_lost=0,
            jitter_ms=0.5,
            mos=4.4,
        ),
        CallEnded(
            at=t0 + 13.02,
            call_id=call_id,
            hangup_by="callee",
            status=200,
            cause=16,
            duration=13.02,
            answered=True,
        ),
    ]


def feed(recorder: CdrRecorder, events: Sequence[Event]) -> None:
    for event in events:
        publish(recorder.bus, event)


async def test_answered_call_gives_one_call_row_and_two_leg_rows(store: Store) -> None:
    recorder = CdrRecorder(bus=new_bus(), store=store)
    recorder.start()
    feed(recorder, answered_call())
    await recorder.stop()

    [call] = await store.recent_calls(10)
    assert call == CallRecord(
        call_id="c1",
        sip_call_id="c1@carrier",
        started_at=T0,
        ring_at=T0 + 0.5,
        answered_at=T0 + 3.0,
        ended_at=T0 + 13.02,
        caller="+74951234567",
        called="1001",
        source="127.0.0.1:5090",
        trunk="demo",
        user=None,
        route_kind="user",
        route_target="1001",
        callee="sip:1001@127.0.0.1:5070",
        status=200,
        reason=None,
        cause=16,
        hangup_by="callee",
        duration=13.02,
        answered=True,
        legs=["c1-a", "c1-b"],
    )
    assert call.billable == pytest.approx(10.02)
    inbound, outbound = await store.call_legs("c1")
    assert outbound == LegRecord(
        leg_id="c1-b",
        call_id="c1",
        role="outbound",
        sip_call_id="c1-b@ccswitch",
        peer="sip:1001@127.0.0.1:5070",
        started_at=T0 + 0.02,
        ring_at=T0 + 0.5,
        early_media=True,
        answered_at=T0 + 3.0,
        codec="PCMA",
        ended_at=T0 + 13.0,
        status=200,
        cause=16,
        hangup_by="remote",
        packets_lost=3,
        jitter_ms=1.5,
        mos=4.3,
    )
    assert (inbound.role, inbound.codec, inbound.hangup_by) == (
        "inbound",
        "PCMU",
        "other",
    )
    assert inbound.ring_at is None and inbound.early_media is None
    assert recorder.written_calls == 1 and recorder.written_legs == 2
    assert recorder.open_calls == 0


async def test_rejected_call_without_start(store: Store) -> None:
    recorder = CdrRecorder(bus=new_bus(), store=store)
    recorder.start()
    publish(
        recorder.bus,
        CallRejected(
            at=T0,
            call_id="r1",
            caller="anonymous",
            called="984951234567",
            source="203.0.113.9:5060",
            status=403,
            reason="Outbound calls not allowed",
        ),
    )
    await recorder.stop()
    [call] = await store.recent_calls(10)
    assert (call.status, call.reason, call.answered) == (
        403,
        "Outbound calls not allowed",
        False,
    )
    assert (call.started_at, call.ended_at, call.duration) == (T0, T0, 0.0)
    assert (call.caller, call.called, call.hangup_by) == (
        "anonymous",
        "984951234567",
        "switch",
    )
    assert call.billable is None
    assert call.legs == []


async def test_rejected_after_start_keeps_the_start(store: Store) -> None:
    recorder = CdrRecorder(bus=new_bus(), store=store)
    recorder.start()
    start, *_rest = answered_call("r2")
    feed(
        recorder,
        [
            start,
            CallRejected(
                at=T0 + 1,
                call_id="r2",
                caller="x",
                called="y",
                source="z",
                status=404,
                reason="Not Found",
            ),
        ],
    )
    await recorder.stop()
    [call] = await store.recent_calls(10)
    assert (call.started_at, call.ended_at, call.caller, call.trunk) == (
        T0,
        T0 + 1,
        "+74951234567",
        "demo",
    )


async def test_a_leg_ending_after_its_call_completes_the_row(store: Store) -> None:
    recorder = CdrRecorder(bus=new_bus(), store=store)
    recorder.start()
    events = answered_call("c2")
    late = events.pop(8)  # the outbound leg's leg.ended
    assert isinstance(late, LegEnded)
    feed(recorder, events)
    await recorder.flush()
    [_inbound, outbound] = await store.call_legs("c2")
    assert outbound.ended_at is None and outbound.codec == "PCMA"

    feed(recorder, [late])
    await recorder.stop()
    [_inbound, outbound] = await store.call_legs("c2")
    assert (outbound.ended_at, outbound.mos) == (T0 + 13.0, 4.3)
    assert (outbound.codec, outbound.peer) == ("PCMA", "sip:1001@127.0.0.1:5070")


async def test_open_calls_are_written_on_stop(store: Store) -> None:
    recorder = CdrRecorder(bus=new_bus(), store=store)
    recorder.start()
    feed(recorder, answered_call("open")[:7])  # answered, never ended
    assert recorder.open_calls == 1
    await recorder.stop()
    [call] = await store.recent_calls(10)
    assert (call.answered_at, call.ended_at, call.answered) == (T0 + 3.0, None, None)
    assert len(await store.call_legs("open")) == 2


async def test_events_after_stop_are_ignored(store: Store) -> None:
    bus = new_bus()
    recorder = CdrRecorder(bus=bus, store=store)
    recorder.start()
    await recorder.stop()
    for event in answered_call("late"):
        publish(bus, event)
    assert recorder.open_calls == 0
    assert await store.recent_calls(10) == []


async def test_the_writer_flushes_in_the_background(store: Store) -> None:
    recorder = CdrRecorder(bus=new_bus(), store=store, flush_delay=0.0)
    recorder.start()
    for number in range(50):
        feed(recorder, answered_call(f"bg{number}", T0 + number))
    for _ in range(500):
        if recorder.written_calls == 50:
            break
        await asyncio.sleep(0.01)
    assert recorder.written_calls == 50
    calls = await store.recent_calls(5)
    assert [c.call_id for c in calls] == ["bg49", "bg48", "bg47", "bg46", "bg45"]
    between = await store.calls_between(T0 + 10, T0 + 13)
    assert [c.call_id for c in between] == ["bg10", "bg11", "bg12"]
    await recorder.stop()


class BrokenStore:
    async def save_cdrs(
        self, calls: Sequence[CallRecord], legs: Sequence[LegRecord]
    ) -> None:
        raise sqlite3.OperationalError("disk full")


async def test_a_failing_store_loses_rows_not_calls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = CdrRecorder(bus=new_bus(), store=BrokenStore())
    recorder.start()
    feed(recorder, answered_call())
    with caplog.at_level(logging.ERROR, logger="switch.cdr"):
        await recorder.stop()
    assert "cannot write 1 call and 2 leg CDRs; dropped" in caplog.text
    assert recorder.written_calls == 0


async def test_schema_has_indexes_on_start_time(tmp_path: Path, store: Store) -> None:
    with sqlite3.connect(tmp_path / "cdr.db") as db:
        indexes = {
            row[0]
            for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
    assert {"calls_started_at", "legs_started_at", "legs_call_id"} <= indexes


# --- ccswitch cdr --------------------------------------------------------------------


async def _write_sample(path: Path) -> None:
    db = Store(path)
    await db.open()
    recorder = CdrRecorder(bus=new_bus(), store=db)
    recorder.start()
    feed(recorder, answered_call("c1"))
    publish(
        recorder.bus,
        CallRejected(
            at=T0 + 60,
            call_id="r1",
            caller="1002",
            called="999",
            source="127.0.0.1:5070",
            status=404,
            reason="Not Found",
        ),
    )
    await recorder.stop()
    await db.close()


def test_cli_prints_recent_calls(tmp_path: Path) -> None:
    path = tmp_path / "cli.db"
    asyncio.run(_write_sample(path))
    result = CliRunner().invoke(main, ["cdr", "--db", str(path), "--legs"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "start",
        "caller",
        "->",
        "called",
        "route",
        "result",
        "talk",
        "hangup",
        "cause",
        "mos",
    ]
    assert lines[1].split()[2:] == [
        "1002",
        "->",
        "999",
        "-",
        "404",
        "-",
        "switch",
        "-",
        "-",
    ]
    assert lines[2].split()[2:] == [
        "+74951234567",
        "->",
        "1001",
        "user:1001",
        "ANSWERED",
        "10.0",
        "callee",
        "16",
        "4.30",
    ]
    assert lines[3].split()[:3] == [
        "inbound",
        "sip:+74951234567@127.0.0.1:5090",
        "codec=PCMU",
    ]
    assert (
        "mos=4.30" in lines[4] and "lost=3" in lines[4] and "jitter=1.5ms" in lines[4]
    )

    limited = CliRunner().invoke(main, ["cdr", "--db", str(path), "-n", "1"])
    assert limited.exit_code == 0
    assert len(limited.output.splitlines()) == 2


def test_cli_missing_database(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["cdr", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 2
    assert result.output == f"{tmp_path / 'none.db'}: no such database\n"


def test_cli_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"junk" * 1000)
    result = CliRunner().invoke(main, ["cdr", "--db", str(path)])
    assert result.exit_code == 2
    assert result.output.startswith(f"{path}: ")
    assert len(result.output.splitlines()) == 1
