"""Tests for media.workers: engines in worker processes behind one ``execute``.

Real processes, real sockets on 127.0.0.1; every wait is bounded; nothing asserts on
timing.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from media.commands import (
    BadCommand,
    CloseEndpoint,
    Connect,
    CreateEndpoint,
    EndpointCreated,
    EndpointStats,
    GetStats,
    MediaEvent,
    Play,
    PlaybackEnd,
    PlaybackFinished,
    PlaybackStarted,
    SetRemote,
    Silence,
    UnknownEndpoint,
)
from media.engine import EngineConfig
from media.rtp import RtpPacket
from media.workers import WorkerPool, split_ports

PORT_MIN, PORT_MAX = 47600, 47699
ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
async def pool() -> AsyncIterator[tuple[WorkerPool, list[MediaEvent]]]:
    events: list[MediaEvent] = []
    workers = WorkerPool(
        EngineConfig(host=HOST, port_min=PORT_MIN, port_max=PORT_MAX, rtp_timeout=0),
        workers=2,
        on_event=events.append,
    )
    try:
        yield workers, events
    finally:
        workers.close()
    assert all(process.poll() is not None for process in workers._processes)


def test_port_range_is_shared_in_whole_pairs() -> None:
    assert split_ports(10000, 10009, 2) == [(10000, 10005), (10006, 10009)]
    assert split_ports(10000, 10003, 1) == [(10000, 10003)]
    with pytest.raises(ValueError, match="2 RTP port pairs cannot be shared by 3"):
        split_ports(10000, 10003, 3)


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(5.0)
    return sock


def _packet(sequence: int) -> bytes:
    return RtpPacket(
        payload_type=0,
        sequence=sequence,
        timestamp=160 * sequence,
        ssrc=0x1234,
        payload=bytes([0xFF]) * 160,
    ).to_bytes()


async def test_endpoints_spread_over_workers_and_near_keeps_a_call_together(
    pool: tuple[WorkerPool, list[MediaEvent]],
) -> None:
    workers, _ = pool
    first = workers.execute(CreateEndpoint(latching=False))
    second = workers.execute(CreateEndpoint(latching=False))
    assert isinstance(first, EndpointCreated) and isinstance(second, EndpointCreated)
    # the least loaded worker is chosen, so two calls' first legs land apart
    assert first.endpoint_id % 2 != second.endpoint_id % 2
    ports = {
        share: (low, high)
        for share, (low, high) in enumerate(split_ports(PORT_MIN, PORT_MAX, 2))
    }
    for created in (first, second):
        low, high = ports[created.endpoint_id % 2]
        assert low <= created.rtp_port <= high and created.rtp_port % 2 == 0
    near = workers.execute(CreateEndpoint(latching=False, near=first.endpoint_id))
    assert isinstance(near, EndpointCreated)
    assert near.endpoint_id % 2 == first.endpoint_id % 2
    # endpoints of two workers cannot be bridged: refused, not half-done
    with pytest.raises(BadCommand, match="different media workers"):
        workers.execute(
            Connect(endpoint_a=first.endpoint_id, endpoint_b=second.endpoint_id)
        )
    assert workers.endpoint_count() == 3
    workers.execute(CloseEndpoint(endpoint_id=near.endpoint_id))
    assert workers.endpoint_count() == 2
    with pytest.raises(UnknownEndpoint):
        workers.execute(GetStats(endpoint_id=near.endpoint_id))


async def test_a_bridge_in_a_worker_relays_rtp_both_ways(
    pool: tuple[WorkerPool, list[MediaEvent]],
) -> None:
    workers, _ = pool
    caller, callee = _udp(), _udp()
    try:
        a = workers.execute(CreateEndpoint(latching=False))
        assert isinstance(a, EndpointCreated)
        b = workers.execute(CreateEndpoint(latching=False, near=a.endpoint_id))
        assert isinstance(b, EndpointCreated)
        for endpoint, peer in ((a, caller), (b, callee)):
            host, port = peer.getsockname()
            workers.execute(
                SetRemote(endpoint_id=endpoint.endpoint_id, host=host, port=port)
            )
        workers.execute(Connect(endpoint_a=a.endpoint_id, endpoint_b=b.endpoint_id))
        loop = asyncio.get_running_loop()
        for sequence in range(1, 6):
            caller.sendto(_packet(sequence), (HOST, a.rtp_port))
            data = await loop.run_in_executor(None, callee.recv, 2048)
            assert RtpPacket.parse(data).payload == bytes([0xFF]) * 160
            callee.sendto(_packet(sequence), (HOST, b.rtp_port))
            data = await loop.run_in_executor(None, caller.recv, 2048)
            assert RtpPacket.parse(data).sequence > 0
        stats = workers.execute(GetStats(endpoint_id=a.endpoint_id))
        assert isinstance(stats, EndpointStats)
        assert stats.endpoint_id == a.endpoint_id and stats.packets_in == 5
    finally:
        caller.close()
        callee.close()


async def test_events_arrive_with_global_ids(
    pool: tuple[WorkerPool, list[MediaEvent]],
) -> None:
    workers, events = pool
    sink = _udp()
    try:
        created = []
        for _ in range(2):  # one on each worker
            endpoint = workers.execute(CreateEndpoint(latching=False))
            assert isinstance(endpoint, EndpointCreated)
            host, port = sink.getsockname()
            workers.execute(
                SetRemote(endpoint_id=endpoint.endpoint_id, host=host, port=port)
            )
            created.append(endpoint)
        started = [
            workers.execute(
                Play(endpoint_id=e.endpoint_id, items=(Silence(duration_ms=60),))
            )
            for e in created
        ]
        assert all(isinstance(s, PlaybackStarted) for s in started)
        await eventually(
            lambda: len([e for e in events if isinstance(e, PlaybackFinished)]) == 2
        )
        finished = {
            (e.endpoint_id, e.playback_id, e.reason)
            for e in events
            if isinstance(e, PlaybackFinished)
        }
        assert finished == {
            (s.endpoint_id, s.playback_id, PlaybackEnd.COMPLETED)
            for s in started
            if isinstance(s, PlaybackStarted)
        }
    finally:
        sink.close()


async def test_closed_pool_refuses_commands() -> None:
    workers = WorkerPool(
        EngineConfig(host=HOST, port_min=PORT_MIN, port_max=PORT_MAX),
        workers=1,
        on_event=lambda event: None,
    )
    workers.close()
    workers.close()  # idempotent
    with pytest.raises(Exception, match="stopped"):
        workers.execute(CreateEndpoint())


async def test_oneway_commands_keep_their_order_and_their_errors_are_logged(
    pool: tuple[WorkerPool, list[MediaEvent]], caplog: pytest.LogCaptureFixture
) -> None:
    """SetRemote, Connect, CloseEndpoint... are not waited for: the next command
    with a result still sees their effect (one pipe, in order), and a failure is a
    warning in the switch's log instead of an exception."""
    workers, _ = pool
    created = workers.execute(CreateEndpoint(latching=False))
    assert isinstance(created, EndpointCreated)
    done = workers.execute(
        SetRemote(endpoint_id=created.endpoint_id, host=HOST, port=40000)
    )
    assert type(done).__name__ == "Done"
    stats = workers.execute(GetStats(endpoint_id=created.endpoint_id))
    assert stats.remote == (HOST, 40000)  # type: ignore[union-attr]

    unknown = created.endpoint_id + 2 * 50  # the same worker, never created
    with caplog.at_level("WARNING", logger="media.workers"):
        workers.execute(SetRemote(endpoint_id=unknown, host=HOST, port=40002))
        workers.execute(GetStats(endpoint_id=created.endpoint_id))  # after it
    assert any("SetRemote failed" in r.getMessage() for r in caplog.records)


def _may_raise_priority() -> bool:
    """CAP_SYS_NICE in this process's effective set (root in a container may lack it)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 23))  # CAP_SYS_NICE
    return False


CAN_RAISE = os.geteuid() == 0 and _may_raise_priority()
OWN_NICE = os.getpriority(os.PRIO_PROCESS, 0)


def _granted_in_child(wanted: str, *, as_nobody: bool) -> tuple[str, int, int]:
    """``raise_priority(wanted)`` in a fresh interpreter: (granted, policy, nice)."""
    code = (
        "import os, sys\n"
        "from media.priority import raise_priority\n"
        "if sys.argv[2] == '1':  # after the imports: the interpreter may be root's\n"
        "    os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "granted = raise_priority(sys.argv[1])\n"
        "print(granted, os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, wanted, "1" if as_nobody else "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=ROOT,
    )
    granted, policy, nice = done.stdout.split()
    return granted, int(policy), int(nice)


@pytest.mark.skipif(not CAN_RAISE, reason="needs root with CAP_SYS_NICE")
def test_worker_priority_is_granted_or_falls_back_step_by_step() -> None:
    granted = _granted_in_child("realtime", as_nobody=False)
    assert granted == ("realtime", os.SCHED_RR, OWN_NICE)
    assert _granted_in_child("high", as_nobody=False) == ("high", os.SCHED_OTHER, -10)
    normal = _granted_in_child("normal", as_nobody=False)
    assert normal == ("normal", os.SCHED_OTHER, OWN_NICE)
    # an ordinary user may neither go real time nor lower its niceness: it still runs
    dropped = _granted_in_child("realtime", as_nobody=True)
    assert dropped == ("normal", os.SCHED_OTHER, OWN_NICE)


@pytest.mark.skipif(not CAN_RAISE, reason="needs root with CAP_SYS_NICE")
async def test_pool_workers_run_at_the_priority_asked_for() -> None:
    for priority, policy in (("realtime", os.SCHED_RR), ("normal", os.SCHED_OTHER)):
        workers = WorkerPool(
            EngineConfig(host=HOST, port_min=PORT_MIN, port_max=PORT_MAX),
            workers=2,
            on_event=lambda event: None,
            priority=priority,
        )
        try:
            workers.execute(CreateEndpoint())  # a round trip: the worker is up
            pids = [process.pid for process in workers._processes]
            assert [os.sched_getscheduler(pid) for pid in pids] == [policy, policy]
        finally:
            workers.close()
    with pytest.raises(ValueError, match="priority"):
        WorkerPool(
            EngineConfig(host=HOST, port_min=PORT_MIN, port_max=PORT_MAX),
            workers=1,
            on_event=lambda event: None,
            priority="urgent",
        )
