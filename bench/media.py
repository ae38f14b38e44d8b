"""Media engine benchmark: RTP relay and playback against minimal reference loops.

Run as ``python -m bench.media --legs 1000 --seconds 10``.  Loopback only, bounded in
legs and time, and it stops by itself (a full run with the default three repeats and
both capacity searches takes about four minutes).

Side by side in one run, on uvloop (PERFORMANCE.md section 2.2 is the method), each
scenario ``--repeat`` times, taking turns so that load from elsewhere on the box hits
them alike:

``reference``
    the least a Python relay can do: ``loop.add_reader`` + ``recv_into`` a reused buffer
    + ``sendto`` a memoryview slice, forwarding leg ``i`` to its pair, no RTP work.
``engine_relay``
    the media engine relaying the same legs as ``legs / 2`` bridged pairs (header
    parse, statistics, address check, header rewrite).
``reference_play``
    the least a Python player can do: every 20 ms one ``pack_into`` (sequence number,
    timestamp) and one ``sendto`` per leg, on the engine's timer and phase scheme.
``engine_play``
    the engine playing a looping prompt to every leg (its batched playout: one numpy
    build per tick, sends spread over the tick's phases).  The legs send nothing in,
    so the engine only sends; ``--play-inbound`` adds ``engine_play_duplex`` where
    every leg also sends 50 packets a second in, received, checked and counted.

The load generator is a forked process with ONE UDP socket for all legs, so that on a
2-core box it does not starve what it measures: it sends (relay scenarios) 50 packets
a second per leg in 20 slots of 1 ms, sleeping between slots, and drains what came
back after each slot (5 ms naps when it only receives), one ``recvmsg`` per datagram
with its kernel arrival timestamp (``SO_TIMESTAMPNS``).  Loopback delivers a datagram
inside the sender's ``sendto``, so these timestamps are the server's send times, taken
by the kernel, however late the generator itself runs.  Streams are told apart by the
server port they come from.  Everything is analysed with numpy after the run.

Figures, per run:

* server CPU: ``getrusage`` of the server process over the window, % of one core (and
  the median of its one-second samples); CPU per stream and per packet in the summary.
* loss: per stream, from the RTP sequence numbers received in the window.
* send-time jitter (``send_jitter_*``, played streams): packet ``k`` of a stream
  (``k`` from its RTP timestamp, 160 per 20 ms) is due at ``t0 + k * 20 ms``; its
  lateness is its kernel send time minus that slot, with ``t0`` placed where the
  stream's earliest packet in the window was exactly on time.  p50/p99/p99.9/max are
  over all packets of all streams.  A clock that drifted would show as lateness
  growing without bound; a burst, a stall or a late tick as the packets it delayed.
  ``frames_not_sent`` counts 20 ms slots of a stream with no packet.
* ``jitter_*`` (relay scenarios): the same lateness of the relayed packets, which
  includes the generator's own pacing (it sleeps between its 1 ms slots).
* ``engine_slot_late_*``: inside the engine, when each phase's last ``sendto``
  returned, against that phase's deadline (user space, an upper bound per phase).
* ``cpu_pressure_percent``: Linux PSI, the share of the window in which some runnable
  task of the box had no CPU; high values mean the run was contended (ours or others'
  processes), and jitter then measures the scheduler more than the engine.

Optionally the largest number of relayed legs with zero loss (and the generator having
offered at least 99 % of the load in the window: a generator that fell behind proves
nothing), and of played streams with zero loss, no unsent frame and send jitter p99
under 2 ms, are searched by bounded bisections.  Results go to
``bench/results/media.json``.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import resource
import socket
import struct
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import psutil  # type: ignore[import-untyped]
import uvloop

from media.clock import TimerFd, precise_scheduler
from media.commands import (
    Connect,
    CreateEndpoint,
    EndpointCreated,
    MediaError,
    Play,
    Prompt,
    SetRemote,
)
from media.engine import EngineConfig, MediaEngine

logger = logging.getLogger(__name__)

LOCALHOST: Final = "127.0.0.1"
PACKETS_PER_SECOND: Final = 50
INTERVAL: Final = 1.0 / PACKETS_PER_SECOND
SLOTS: Final = 20  # generator pacing: 1 ms slots, each sending to every 20th leg
PAYLOAD_SIZE: Final = 160  # 20 ms of G.711
PACKET_SIZE: Final = 12 + PAYLOAD_SIZE
START_DELAY: Final = 0.5  # seconds between setup and the first packet
DRAIN: Final = 0.4  # seconds after the last packet for the stragglers
SOCKET_BUFFER: Final = 1 << 20
# Below the kernel's ephemeral range (32768+ by default), where the generator's and
# other programs' sockets live; wide, so ports other programs hold are simply skipped.
PORT_MIN: Final = 10000
PORT_MAX: Final = 32000
MAX_LEGS: Final = 8000  # upper bound of the bisection (ports: 2 per leg)
BISECT_SECONDS: Final = 3.0
BISECT_WARMUP: Final = 1.0
BISECT_MAX_TRIALS: Final = 6
BISECT_TOLERANCE: Final = 0.1  # stop when (hi - lo) / hi is below this
GOAL_RATIO: Final = 1.3
GOAL_JITTER_P99_MS: Final = 2.0
# A relay trial counts only if the generator really offered the load in the window.
MIN_OFFERED_PERCENT: Final = 99.0
# CPU pressure (PSI "some", % of the window) above which a run counts as contended:
# on a quiet box our own server, generator and softirq work stay well below it.
CONTENDED_PRESSURE: Final = 10.0
RESULTS: Final = os.path.join(os.path.dirname(__file__), "results", "media.json")
_HEADER: Final = struct.Struct("!BBHII")
HEADER_BYTES: Final = 12  # what the generator keeps of each datagram it receives

Report = dict[str, Any]


# ------------------------------------------------------------------------ generator

# Linux <asm-generic/socket.h>; the socket module does not export them.
SO_TIMESTAMPNS: Final = 35  # also SCM_TIMESTAMPNS: struct timespec of the arrival
SO_RCVBUFFORCE: Final = 33  # root may exceed net.core.rmem_max
PEER_BUFFER: Final = 64 << 20  # 2.5 s of 1000 legs at 50 pps (truesize ~1.3 KB)
DRAIN_EVERY: Final = 0.005  # a receive-only peer sleeps this long between drains
_TIMESPEC: Final = struct.Struct("=qq")


def _peer_socket(port: int = 0) -> socket.socket:
    """The generator's one UDP socket: kernel arrival timestamps, a big buffer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, PEER_BUFFER)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PEER_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((LOCALHOST, port))
    sock.setblocking(False)
    return sock


def _generator(
    conn: multiprocessing.connection.Connection,
    legs: int,
    warmup: float,
    seconds: float,
    send: bool,
    played: bool,
) -> None:
    """Child process: paced RTP sources and one timestamping sink for every leg."""
    try:
        conn.send(_generate(conn, legs, warmup, seconds, send, played))
    except Exception as exc:  # report, do not hang the parent
        conn.send({"error": repr(exc)})
    finally:
        conn.close()


def _generate(
    conn: multiprocessing.connection.Connection,
    legs: int,
    warmup: float,
    seconds: float,
    send: bool,
    played: bool,
) -> Report:
    """Send 50 pps per leg (if ``send``) and record every packet that comes back.

    ``played``: what comes back are played streams (send jitter), not relayed ones.

    One socket sends to all legs and receives from all of them, so the generator costs
    one syscall per packet and no wake-up per packet: it sleeps until its next 1 ms
    send slot (or 5 ms when it only receives) and then drains what arrived.  Each
    datagram is read with its kernel arrival timestamp (SO_TIMESTAMPNS), taken when
    loopback delivers it, i.e. during the sender's ``sendto``: however late the
    generator drains, the times are the server's send times.
    """
    peer = _peer_socket()
    rtcp = _peer_socket()  # the servers' RTCP goes here, counted and ignored
    conn.send((peer.getsockname()[1], rtcp.getsockname()[1]))
    server_ports, t_start = conn.recv()
    destinations = [(LOCALHOST, port) for port in server_ports]
    leg_of_port = np.full(65536, -1, dtype=np.int64)
    leg_of_port[np.asarray(server_ports)] = np.arange(legs)

    packets = []
    for _ in range(legs):
        packet = bytearray(PACKET_SIZE)
        packet[12:] = bytes([0xFF]) * PAYLOAD_SIZE
        packets.append(packet)
    seqs = [(leg * 7919) & 0xFFFF for leg in range(legs)]
    stamps = [leg * 1000 for leg in range(legs)]
    slots = [list(range(slot, legs, SLOTS)) for slot in range(SLOTS)]
    window_start = t_start + warmup
    window_end = window_start + seconds

    # what arrived: 12-byte headers, source ports, kernel arrival times (timespec)
    headers = bytearray()
    sources: list[int] = []
    arrivals = bytearray()
    rtcp_count = 0
    recvmsg = peer.recvmsg
    ancillary = socket.CMSG_SPACE(_TIMESPEC.size)
    sent = 0
    offered = 0  # sent for slots inside the window (a late generator sends fewer)
    max_late = 0.0
    monotonic = time.monotonic
    realtime_offset0 = time.time() - monotonic()

    def drain() -> None:
        nonlocal rtcp_count
        while True:
            try:
                data, ancdata, _, address = recvmsg(HEADER_BYTES, ancillary)
            except BlockingIOError:
                break
            if len(data) < HEADER_BYTES or not ancdata:
                continue
            headers.extend(data)
            sources.append(address[1])
            arrivals.extend(ancdata[0][2])
        while True:
            try:
                rtcp.recv(2048)
            except BlockingIOError:
                return
            rtcp_count += 1

    usage_start = usage_end = None
    slot = 0
    slot_time = t_start
    step = INTERVAL / SLOTS if send else DRAIN_EVERY
    while True:
        now = monotonic()
        if usage_start is None and now >= window_start:
            usage_start = (resource.getrusage(resource.RUSAGE_SELF), now)
        if now >= window_end:
            break
        if now < slot_time:
            time.sleep(slot_time - now)
            continue
        max_late = max(max_late, now - slot_time)
        if send:
            sendto = peer.sendto
            before = sent
            for leg in slots[slot]:
                seq = seqs[leg] = (seqs[leg] + 1) & 0xFFFF
                stamp = stamps[leg] = (stamps[leg] + PAYLOAD_SIZE) & 0xFFFFFFFF
                _HEADER.pack_into(packets[leg], 0, 0x80, 0, seq, stamp, 0x1000 + leg)
                try:
                    sendto(packets[leg], destinations[leg])
                    sent += 1
                except OSError:
                    pass
            if window_start <= slot_time < window_end:
                offered += sent - before
            slot = (slot + 1) % SLOTS
        slot_time += step
        drain()
    usage_end = (resource.getrusage(resource.RUSAGE_SELF), monotonic())
    stop = monotonic() + DRAIN
    while monotonic() < stop:
        time.sleep(DRAIN_EVERY)
        drain()
    realtime_offset1 = time.time() - monotonic()
    peer.close()
    rtcp.close()

    cpu = 0.0
    if usage_start is not None:
        (u0, w0), (u1, w1) = usage_start, usage_end
        cpu = _cpu_percent(u0, u1, w1 - w0)
    report: Report = {
        "sent": sent,
        "offered_percent": (
            round(100.0 * offered / (legs * PACKETS_PER_SECOND * seconds), 2)
            if send
            else None
        ),
        "rtcp_received": rtcp_count,
        "generator_cpu_percent": round(cpu, 1),
        "generator_max_late_ms": round(max_late * 1000, 2),
        "realtime_offset_change_ms": round(
            (realtime_offset1 - realtime_offset0) * 1000, 3
        ),
    }
    report.update(
        _analyse(
            "send_jitter" if played else "jitter",
            np.frombuffer(bytes(headers), dtype=np.uint8).reshape(-1, HEADER_BYTES),
            leg_of_port[np.asarray(sources, dtype=np.int64)],
            np.frombuffer(bytes(arrivals), dtype=np.int64).reshape(-1, 2),
            (realtime_offset0 + realtime_offset1) / 2,
            legs,
            window_start,
            window_end,
        )
    )
    return report


def _analyse(
    prefix: str,
    headers: npt.NDArray[np.uint8],
    leg: npt.NDArray[np.int64],
    timespec: npt.NDArray[np.int64],
    realtime_offset: float,
    legs: int,
    window_start: float,
    window_end: float,
) -> Report:
    """Loss and send-time jitter of every stream that came back, from kernel times.

    Send-time jitter: a stream's packet ``k`` (counted by RTP timestamp, 160 per 20 ms)
    is due at ``t0 + k * 20 ms``.  Its lateness is its kernel arrival time minus that
    slot, with ``t0`` put where the stream's earliest packet of the window was exactly
    on time; the percentiles are over all packets of all streams in the window.  It is
    what a phone's jitter buffer has to absorb (drift would show as lateness growing
    without bound), free of the receiver's own scheduling.
    """
    arrival = timespec[:, 0] + timespec[:, 1] * 1e-9 - realtime_offset
    known = leg >= 0
    inside = known & (arrival >= window_start) & (arrival < window_end)
    received = int(known.sum())
    report: Report = {
        "received": received,
        "stranger_packets": int((~known).sum()),
        "window_received": int(inside.sum()),
    }
    if not inside.any():
        return {**report, "window_expected": 0, "window_lost": 0, "silent_legs": legs}
    headers, leg, arrival = headers[inside], leg[inside], arrival[inside]
    order = np.lexsort((arrival, leg))  # by leg, then by arrival
    headers, leg, arrival = headers[order], leg[order], arrival[order]
    seq = (headers[:, 2].astype(np.int64) << 8) | headers[:, 3]
    ts = (
        (headers[:, 4].astype(np.int64) << 24)
        | (headers[:, 5].astype(np.int64) << 16)
        | (headers[:, 6].astype(np.int64) << 8)
        | headers[:, 7]
    )
    starts = np.flatnonzero(np.r_[True, leg[1:] != leg[:-1]])

    sizes = np.diff(np.r_[starts, seq.size])

    def unwrap(values: npt.NDArray[np.int64], modulus: int) -> npt.NDArray[np.int64]:
        """Per stream: undo the wrap of sequence numbers or timestamps."""
        step = np.diff(values, prepend=values[:1])
        step = (step + modulus // 2) % modulus - modulus // 2
        step[starts] = 0
        total = np.cumsum(step)
        unwrapped: npt.NDArray[np.int64] = (
            values[starts].repeat(sizes) + total - total[starts].repeat(sizes)
        )
        return unwrapped

    extended_seq = unwrap(seq, 1 << 16)
    expected = (
        np.maximum.reduceat(extended_seq, starts)
        - np.minimum.reduceat(extended_seq, starts)
        + 1
    )
    report["window_expected"] = int(expected.sum())
    report["window_lost"] = int(np.maximum(expected - sizes, 0).sum())
    report["silent_legs"] = legs - starts.size
    report["legs_heard"] = int(starts.size)

    # send-time jitter: lateness against each stream's own 20 ms grid
    extended_ts = unwrap(ts, 1 << 32)
    frame = (extended_ts - extended_ts[starts].repeat(sizes)) / PAYLOAD_SIZE
    offset = arrival - frame * INTERVAL
    lateness = (offset - np.minimum.reduceat(offset, starts).repeat(sizes)) * 1000.0
    slots = np.maximum.reduceat(frame, starts) + 1
    report[f"{prefix}_p50_ms"] = round(float(np.percentile(lateness, 50)), 3)
    report[f"{prefix}_p99_ms"] = round(float(np.percentile(lateness, 99)), 3)
    report[f"{prefix}_p999_ms"] = round(float(np.percentile(lateness, 99.9)), 3)
    report[f"{prefix}_max_ms"] = round(float(lateness.max()), 3)
    report[f"{prefix}_samples"] = int(lateness.size)
    report["frames_not_sent"] = int(np.maximum(slots - sizes, 0).sum())
    return report


def _cpu_percent(
    before: resource.struct_rusage, after: resource.struct_rusage, wall: float
) -> float:
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return 100.0 * used / wall if wall > 0 else 0.0


# ------------------------------------------------------------------------ servers


class Server:
    """What a scenario's setup hands back: its ports and two hooks.

    :param ports: the server's RTP port per leg (the generator sends there and tells
        the legs apart by these source ports).
    :param teardown: called after the window with (window start, window end).
    :param window_started: called when the measurement window opens.
    """

    def __init__(
        self,
        ports: list[int],
        teardown: Callable[[float, float], Report],
        window_started: Callable[[], None] = lambda: None,
    ) -> None:
        self.ports = ports
        self.teardown = teardown
        self.window_started = window_started


Setup = Callable[[int, int, int], Server]  # (legs, peer port, peer RTCP port)


def _pair(leg: int) -> int:
    return leg ^ 1


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _cpu_pressure() -> float | None:
    """Seconds any task of the box waited for a CPU so far (Linux PSI), if known."""
    try:
        with open("/proc/pressure/cpu") as file:
            line = file.readline()
    except OSError:
        return None
    return int(line.rsplit("total=", 1)[1]) / 1e6


async def _serve(
    conn: multiprocessing.connection.Connection,
    setup: Setup,
    legs: int,
    warmup: float,
    seconds: float,
) -> Report:
    """Common server timeline: setup, start the generator, measure CPU, tear down."""
    peer_port, rtcp_port = conn.recv()
    server = setup(legs, peer_port, rtcp_port)
    t_start = time.monotonic() + START_DELAY
    conn.send((server.ports, t_start))
    await _sleep_until(t_start + warmup)
    server.window_started()
    usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    machine0 = psutil.cpu_times()
    pressure0 = _cpu_pressure()

    # one-second samples too: their median shrugs off a burst of load elsewhere
    per_second: list[float] = []
    previous, previous_wall = usage0, wall0
    for second in range(1, math.floor(seconds) + 1):
        await _sleep_until(wall0 + second)
        usage, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        per_second.append(_cpu_percent(previous, usage, wall - previous_wall))
        previous, previous_wall = usage, wall
    await _sleep_until(t_start + warmup + seconds)
    usage1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    machine1 = psutil.cpu_times()
    pressure1 = _cpu_pressure()
    await _sleep_until(t_start + warmup + seconds + DRAIN)
    report = server.teardown(wall0, wall1)
    report["server_cpu_percent"] = round(_cpu_percent(usage0, usage1, wall1 - wall0), 1)
    report["server_cpu_percent_median_1s"] = round(float(np.median(per_second)), 1)
    report["server_user_percent"] = round(
        100.0 * (usage1.ru_utime - usage0.ru_utime) / (wall1 - wall0), 1
    )
    report["server_system_percent"] = round(
        100.0 * (usage1.ru_stime - usage0.ru_stime) / (wall1 - wall0), 1
    )
    busy0 = sum(machine0) - machine0.idle - getattr(machine0, "iowait", 0.0)
    busy1 = sum(machine1) - machine1.idle - getattr(machine1, "iowait", 0.0)
    report["machine_cpu_percent"] = round(100.0 * (busy1 - busy0) / (wall1 - wall0), 1)
    steal = getattr(machine1, "steal", 0.0) - getattr(machine0, "steal", 0.0)
    report["machine_steal_percent"] = round(100.0 * steal / (wall1 - wall0), 1)
    if pressure0 is not None and pressure1 is not None:
        # share of the window in which some runnable task (ours or not) had no CPU
        report["cpu_pressure_percent"] = round(
            100.0 * (pressure1 - pressure0) / (wall1 - wall0), 1
        )
    return report


def _reference_setup(legs: int, peer_port: int, rtcp_port: int) -> Server:
    loop = asyncio.get_running_loop()
    socks = []
    for _ in range(legs):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.bind((LOCALHOST, 0))
        sock.setblocking(False)
        socks.append(sock)
    buf = bytearray(2048)
    view = memoryview(buf)
    destination = (LOCALHOST, peer_port)

    def forwarder(leg: int) -> Callable[[], None]:
        recv_into = socks[leg].recv_into
        sendto = socks[_pair(leg)].sendto

        def readable() -> None:
            while True:
                try:
                    size = recv_into(buf)
                except BlockingIOError:
                    return
                sendto(view[:size], destination)

        return readable

    for leg, sock in enumerate(socks):
        loop.add_reader(sock.fileno(), forwarder(leg))

    def teardown(window_start: float, window_end: float) -> Report:
        for sock in socks:
            loop.remove_reader(sock.fileno())
            sock.close()
        return {}

    return Server([sock.getsockname()[1] for sock in socks], teardown)


def _reference_play_setup(phases: int, precise: bool) -> Setup:
    """The least a Python player can do: a fixed packet per socket every 20 ms.

    Same timer scheme as the engine (``call_at`` on absolute deadlines of the same
    scheduler, a timerfd or the loop, the legs spread over ``phases`` slots of the
    tick), one ``pack_into`` of sequence number and timestamp per packet, no prompt,
    no RTP state, no RTCP.
    """

    def setup(legs: int, peer_port: int, rtcp_port: int) -> Server:
        loop = asyncio.get_running_loop()
        timer = precise_scheduler(loop) if precise else loop
        socks = []
        for _ in range(legs):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((LOCALHOST, 0))
            sock.setblocking(False)
            socks.append(sock)
        sendtos = [sock.sendto for sock in socks]
        packets = [bytearray(PACKET_SIZE) for _ in range(legs)]
        for packet in packets:
            packet[12:] = bytes([0xFF]) * PAYLOAD_SIZE
        seqs = [0] * legs
        groups = [list(range(phase, legs, phases)) for phase in range(phases)]
        destination = (LOCALHOST, peer_port)
        origin = timer.time() + START_DELAY
        step = INTERVAL / phases
        running = [True]
        pack_into = _HEADER.pack_into

        def send_phase(tick: int, phase: int) -> None:
            if not running[0]:
                return
            stamp = (tick * PAYLOAD_SIZE) & 0xFFFFFFFF
            for leg in groups[phase]:
                seq = seqs[leg] = (seqs[leg] + 1) & 0xFFFF
                pack_into(packets[leg], 0, 0x80, 0, seq, stamp, 0x2000 + leg)
                sendtos[leg](packets[leg], destination)
            timer.call_at(
                origin + (tick + 1) * INTERVAL + phase * step,
                send_phase,
                tick + 1,
                phase,
            )

        for phase in range(phases):
            timer.call_at(origin + phase * step, send_phase, 0, phase)

        def teardown(window_start: float, window_end: float) -> Report:
            running[0] = False
            if isinstance(timer, TimerFd):
                timer.close()
            for sock in socks:
                sock.close()
            return {}

        return Server([sock.getsockname()[1] for sock in socks], teardown)

    return setup


def _engine(
    legs: int, peer_port: int, rtcp_port: int, phases: int, precise: bool
) -> tuple[MediaEngine, list[EndpointCreated]]:
    engine = MediaEngine(
        EngineConfig(
            port_min=PORT_MIN,
            port_max=PORT_MAX,
            rtp_timeout=0,
            send_phases=phases,
            precise_timer=precise,
        ),
        on_event=lambda event: None,
    )
    created = []
    for _ in range(legs):
        result = engine.execute(CreateEndpoint())
        assert isinstance(result, EndpointCreated)
        engine.execute(
            SetRemote(
                endpoint_id=result.endpoint_id,
                host=LOCALHOST,
                port=peer_port,
                rtcp_port=rtcp_port,
            )
        )
        created.append(result)
    return engine, created


class _ClockWindow:
    """The media clock's counters over the measurement window only."""

    def __init__(self, engine: MediaEngine) -> None:
        self.engine = engine
        self.skipped = 0
        self.ticks = 0
        self.end = math.inf

    def slots(self, engine: MediaEngine) -> npt.NDArray[np.float64]:
        """The playout's trace rows whose deadline is inside the window."""
        if engine.playout.trace is None:
            return np.zeros((0, 4))
        rows = np.frombuffer(engine.playout.trace, dtype=np.float64).reshape(-1, 4)
        return rows[rows[:, 0] < self.end]

    def start(self) -> None:
        clock = self.engine.clock
        self.skipped, self.ticks = clock.skipped, clock.ticks
        clock.max_lateness = 0.0
        if self.engine.playout.trace is not None:
            del self.engine.playout.trace[:]

    def report(self) -> Report:
        clock = self.engine.clock
        return {
            "send_phases": self.engine.config.send_phases,
            "precise_timer": self.engine.config.precise_timer,
            "clock_ticks": clock.ticks - self.ticks,
            "clock_skipped_ticks": clock.skipped - self.skipped,
            "clock_max_lateness_ms": round(clock.max_lateness * 1000, 3),
        }


def _engine_report(
    engine: MediaEngine, created: list[EndpointCreated], window: _ClockWindow
) -> Report:
    dropped: dict[str, int] = {}
    send_errors = 0
    for endpoint in created:
        for reason, count in engine.stats(endpoint.endpoint_id).dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        send_errors += engine.endpoint(endpoint.endpoint_id).send_errors
    report: Report = {
        "engine_dropped": dropped,
        "engine_send_errors": send_errors,
        **window.report(),
    }
    trace = window.slots(engine)
    if trace.size:
        # lateness of the last packet of each send slot against the slot's deadline,
        # measured inside the engine (user space, upper bound for its packets)
        late = (trace[:, 2] - trace[:, 0]) * 1000.0
        burst = (trace[:, 2] - trace[:, 1]) * 1000.0
        report["engine_slot_late_p50_ms"] = round(float(np.percentile(late, 50)), 3)
        report["engine_slot_late_p99_ms"] = round(float(np.percentile(late, 99)), 3)
        report["engine_slot_late_max_ms"] = round(float(late.max()), 3)
        report["engine_slot_send_p99_ms"] = round(float(np.percentile(burst, 99)), 3)
        report["engine_played_packets"] = int(trace[:, 3].sum())
        report["engine_skipped_sends"] = engine.playout.skipped_sends
    engine.close()
    return report


def _relay_setup(phases: int, precise: bool) -> Setup:
    def setup(legs: int, peer_port: int, rtcp_port: int) -> Server:
        engine, created = _engine(legs, peer_port, rtcp_port, phases, precise)
        for leg in range(0, len(created) - 1, 2):
            engine.execute(
                Connect(
                    endpoint_a=created[leg].endpoint_id,
                    endpoint_b=created[leg + 1].endpoint_id,
                )
            )
        window = _ClockWindow(engine)
        return Server(
            [endpoint.rtp_port for endpoint in created],
            lambda start, end: _engine_report(engine, created, window),
            window.start,
        )

    return setup


def _play_setup(prompt: str, phases: int, precise: bool) -> Setup:
    def setup(legs: int, peer_port: int, rtcp_port: int) -> Server:
        engine, created = _engine(legs, peer_port, rtcp_port, phases, precise)
        for endpoint in created:
            engine.execute(
                Play(
                    endpoint_id=endpoint.endpoint_id,
                    items=(Prompt(path=prompt),),
                    loop=True,
                )
            )
        engine.playout.trace = array.array("d")
        window = _ClockWindow(engine)
        conversions = engine.prompts.conversions

        def teardown(start: float, end: float) -> Report:
            window.end = end
            return {
                "prompt_conversions": conversions,
                **_engine_report(engine, created, window),
            }

        return Server(
            [endpoint.rtp_port for endpoint in created], teardown, window.start
        )

    return setup


# ------------------------------------------------------------------------ driver


def _write_prompt(directory: str) -> str:
    """A 3 s 16 kHz WAV (tone plus noise): the engine converts it once to 8 kHz."""
    rate = 16000
    t = np.arange(3 * rate) / rate
    rng = np.random.default_rng(1)
    signal = 0.3 * np.sin(2 * math.pi * 440.0 * t) + 0.05 * rng.standard_normal(t.size)
    path = os.path.join(directory, "prompt.wav")
    with wave.open(path, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((signal * 32767).astype("<i2").tobytes())
    return path


def run_scenario(
    setup: Setup,
    legs: int,
    warmup: float,
    seconds: float,
    *,
    send: bool,
    played: bool = False,
) -> Report:
    """One server + generator run; returns the merged report."""
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    process = context.Process(
        target=_generator,
        args=(child, legs, warmup, seconds, send, played),
        daemon=True,
    )
    process.start()
    child.close()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            server = runner.run(_serve(parent, setup, legs, warmup, seconds))
        if not parent.poll(warmup + seconds + 60):
            raise RuntimeError("generator did not report")
        generator = parent.recv()
    finally:
        process.join(timeout=10)
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, 9)
            process.join(timeout=5)
        parent.close()
    if "error" in generator:
        raise RuntimeError(f"generator failed: {generator['error']}")
    report: Report = {"legs": legs, **server, **generator}
    expected = report["window_expected"]
    report["loss_percent"] = (
        round(100.0 * report["window_lost"] / expected, 4) if expected else None
    )
    return report


def _passes(report: Report) -> bool:
    return bool(
        report["window_lost"] == 0
        and (report["offered_percent"] or 0.0) >= MIN_OFFERED_PERCENT
        and report["silent_legs"] == 0
        and report["received"] >= report["sent"]
    )


def _plays_in_time(report: Report) -> bool:
    return bool(
        report["window_lost"] == 0
        and report["silent_legs"] == 0
        and report.get("frames_not_sent", 1) == 0
        and report.get("send_jitter_p99_ms", GOAL_JITTER_P99_MS) < GOAL_JITTER_P99_MS
    )


def bisect_max_legs(
    start: int,
    time_budget: float,
    *,
    play: Setup | None = None,
    phases: int,
    precise: bool,
) -> Report:
    """Largest even leg count relayed with zero loss (bounded trials and time).

    With ``play``, the largest number of played streams with zero loss, no frame
    left unsent and send-time jitter p99 under the goal.
    """
    deadline = time.monotonic() + time_budget
    trials: list[Report] = []
    setup = play if play is not None else _relay_setup(phases, precise)
    passes = _plays_in_time if play is not None else _passes

    def trial(legs: int) -> bool:
        try:
            report = run_scenario(
                setup,
                legs,
                BISECT_WARMUP,
                BISECT_SECONDS,
                send=play is None,
                played=play is not None,
            )
        except (MediaError, OSError, RuntimeError) as exc:  # e.g. ports, fd limit
            trials.append({"legs": legs, "pass": False, "error": str(exc)})
            logger.info("bisection: %d legs -> error %s", legs, exc)
            return False
        ok = passes(report)
        trials.append(
            {
                "legs": legs,
                "pass": ok,
                "loss_percent": report["loss_percent"],
                "send_jitter_p99_ms": report.get("send_jitter_p99_ms"),
                "relay_jitter_p99_ms": report.get("jitter_p99_ms"),
                "offered_percent": report["offered_percent"],
                "cpu_pressure_percent": report.get("cpu_pressure_percent"),
                "server_cpu_percent": report["server_cpu_percent"],
                "generator_cpu_percent": report["generator_cpu_percent"],
            }
        )
        logger.info("bisection: %d legs -> %s", legs, "pass" if ok else "fail")
        return ok

    def even(value: float) -> int:
        return max(2, int(value) // 2 * 2)

    lo, hi = 0, MAX_LEGS
    candidate = even(start)
    while len(trials) < BISECT_MAX_TRIALS and time.monotonic() < deadline:
        if trial(candidate):
            lo = candidate
            if hi == MAX_LEGS and candidate * 2 < MAX_LEGS:
                candidate = even(candidate * 2)
                continue
        else:
            hi = candidate
        if lo and (hi - lo) / hi <= BISECT_TOLERANCE:
            break
        candidate = even((lo + hi) / 2) if lo else even(hi / 2)
        if candidate in (lo, hi):
            break
    failed = [trial["legs"] for trial in trials if not trial["pass"]]
    return {
        "max_legs_zero_loss": lo,
        "first_failure": min(failed) if failed else None,
        "stopped_by": "tolerance"
        if failed and (hi - lo) / hi <= BISECT_TOLERANCE
        else "budget",
        "trials": trials,
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator else None


def _pair_text(report: Report, prefix: str) -> str:
    if f"{prefix}_p99_ms" not in report:
        return "-"
    return f"{report[f'{prefix}_p50_ms']}/{report[f'{prefix}_p99_ms']}"


def _print_table(results: Report) -> None:
    rows = [
        (
            "scenario",
            "run",
            "legs",
            "server CPU % (1 s median)",
            "loss %",
            "send jitter p50/p99 ms",
            "relay jitter p50/p99 ms",
            "gen CPU %",
            "CPU pressure %",
        )
    ]
    for name, reports in results["scenarios"].items():
        for run, report in enumerate(reports, 1):
            rows.append(
                (
                    name,
                    str(run),
                    str(report["legs"]),
                    f"{report['server_cpu_percent']}"
                    f" ({report['server_cpu_percent_median_1s']})",
                    str(report["loss_percent"]),
                    _pair_text(report, "send_jitter"),
                    _pair_text(report, "jitter"),
                    str(report["generator_cpu_percent"]),
                    str(report.get("cpu_pressure_percent", "-")),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = zip(row, widths, strict=True)
        print("  ".join(cell.ljust(width) for cell, width in cells))
    summary = results["summary"]
    print(
        "medians over runs: engine_relay/reference CPU "
        f"{summary['ratio_engine_relay_vs_reference']}"
        f" (goal <= {GOAL_RATIO}); engine_play/reference_play CPU "
        f"{summary.get('ratio_engine_play_vs_reference_play')}; engine_play send jitter"
        f" p50 {summary.get('engine_play_send_jitter_p50_ms')} ms,"
        f" p99 {summary.get('engine_play_send_jitter_p99_ms')} ms"
        f" (goal < {GOAL_JITTER_P99_MS}), reference_play p99"
        f" {summary.get('reference_play_send_jitter_p99_ms')} ms"
    )
    for key, what in (
        ("bisection", "relayed legs with zero loss"),
        ("play_bisection", "played streams with zero loss and jitter p99 < 2 ms"),
    ):
        if key in results:
            bisection = results[key]
            failure = bisection["first_failure"]
            print(
                f"max {what}: {bisection['max_legs_zero_loss']}"
                + (f" (first failure at {failure})" if failure else " (no failure)")
                + f", search stopped by {bisection['stopped_by']}"
            )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--no-bisect", action="store_true")
    parser.add_argument("--bisect-budget", type=float, default=45.0)
    parser.add_argument(
        "--phases",
        type=int,
        default=EngineConfig().send_phases,
        help="engine send slots per 20 ms tick (EngineConfig.send_phases)",
    )
    parser.add_argument(
        "--loop-timer",
        action="store_true",
        help="wake on loop.call_at instead of a timerfd (EngineConfig.precise_timer)",
    )
    parser.add_argument(
        "--play-inbound",
        action="store_true",
        help="also run engine_play_duplex: every played leg also sends 50 pps in",
    )
    parser.add_argument(
        "--relay-only",
        action="store_true",
        help="run only reference and engine_relay (quicker, for the relay ratio)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of every scenario (medians)"
    )
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    legs = max(2, min(args.legs, MAX_LEGS) // 2 * 2)
    seconds = min(max(args.seconds, 1.0), 60.0)
    warmup = min(max(args.warmup, 0.5), 10.0)

    load_before = os.getloadavg()
    started = time.monotonic()
    scenarios: dict[str, list[Report]] = {}
    with tempfile.TemporaryDirectory(prefix="ccswitch-bench-") as directory:
        prompt = _write_prompt(directory)
        precise = not args.loop_timer
        play = _play_setup(prompt, args.phases, precise)
        runs: list[tuple[str, Setup, bool, bool]] = [  # name, setup, send, played
            ("reference", _reference_setup, True, False),
            ("engine_relay", _relay_setup(args.phases, precise), True, False),
            (
                "reference_play",
                _reference_play_setup(args.phases, precise),
                False,
                True,
            ),
            ("engine_play", play, False, True),
        ]
        if args.play_inbound:
            runs.append(("engine_play_duplex", play, True, True))
        if args.relay_only:
            runs = runs[:2]
        # the scenarios take turns, so load from elsewhere hits them alike
        for repeat in range(args.repeat):
            for name, setup, send, played in runs:
                logger.info(
                    "run %d/%d: %s with %d legs for %.0f s",
                    repeat + 1,
                    args.repeat,
                    name,
                    legs,
                    seconds,
                )
                scenarios.setdefault(name, []).append(
                    run_scenario(setup, legs, warmup, seconds, send=send, played=played)
                )
        if not args.no_bisect:
            bisection = bisect_max_legs(
                legs, args.bisect_budget, phases=args.phases, precise=precise
            )
            play_bisection = bisect_max_legs(
                legs, args.bisect_budget, play=play, phases=args.phases, precise=precise
            )

    def ratios(engine: str, reference: str, key: str) -> list[float | None]:
        return [
            _ratio(e[key], r[key])
            for e, r in zip(scenarios[engine], scenarios[reference], strict=True)
        ]

    def median(values: list[Any]) -> float | None:
        known = [value for value in values if value is not None]
        return round(float(np.median(known)), 3) if known else None

    summary: Report = {}
    for engine, reference in (
        ("engine_relay", "reference"),
        ("engine_play", "reference_play"),
    ):
        if engine not in scenarios:
            continue
        for key, suffix in (
            ("server_cpu_percent", ""),
            ("server_cpu_percent_median_1s", "_median_1s"),
        ):
            values = ratios(engine, reference, key)
            summary[f"ratio_{engine}_vs_{reference}{suffix}"] = median(values)
            summary[f"ratio_{engine}_vs_{reference}{suffix}_runs"] = values
    for name in ("reference_play", "engine_play", "engine_play_duplex"):
        for key in ("send_jitter_p50_ms", "send_jitter_p99_ms", "send_jitter_max_ms"):
            if name in scenarios:
                values = [report.get(key) for report in scenarios[name]]
                summary[f"{name}_{key}"] = median(values)
                summary[f"{name}_{key}_runs"] = values
    for name in scenarios:
        cpu = median([report["server_cpu_percent"] for report in scenarios[name]])
        summary[f"{name}_server_cpu_percent"] = cpu
        summary[f"{name}_cpu_percent_per_stream"] = (
            round(cpu / legs, 4) if cpu is not None else None
        )
        summary[f"{name}_cpu_us_per_packet"] = (
            round(cpu / 100 * 1e6 / (legs * PACKETS_PER_SECOND), 2)
            if cpu is not None
            else None
        )
    summary["contended_runs"] = [
        f"{name}#{run}"
        for name, reports in scenarios.items()
        for run, report in enumerate(reports, 1)
        if report.get("cpu_pressure_percent", 0.0) > CONTENDED_PRESSURE
    ]
    results: Report = {
        "command": " ".join(
            [os.path.basename(sys.executable), "-m", "bench.media"]
            + (argv if argv is not None else sys.argv[1:])
        ),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "uvloop": getattr(uvloop, "__version__", "?"),
            "loadavg_before": [round(value, 2) for value in load_before],
            "loadavg_after": [round(value, 2) for value in os.getloadavg()],
        },
        "legs": legs,
        "seconds": seconds,
        "warmup": warmup,
        "repeat": args.repeat,
        "send_phases": args.phases,
        "precise_timer": precise,
        "summary": summary,
        "goals": {
            "ratio_max": GOAL_RATIO,
            "play_jitter_p99_ms_max": GOAL_JITTER_P99_MS,
        },
        "scenarios": scenarios,
    }
    if not args.no_bisect:
        results["bisection"] = bisection
        results["play_bisection"] = play_bisection
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as file:
        json.dump(results, file, indent=2)
        file.write("\n")
    _print_table(results)
    print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
