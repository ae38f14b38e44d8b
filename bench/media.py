"""Media engine benchmark: RTP relay and playback CPU against a minimal reference loop.

Run as ``python -m bench.media --legs 1000 --seconds 10``.  Loopback only, bounded in
legs and time, and it stops by itself (a full run takes one to two minutes).

In one run, side by side, on uvloop (PERFORMANCE.md section 2.2 is the method):

``reference``
    the least a Python relay can do: ``loop.add_reader`` + ``recv_into`` a reused buffer
    + ``sendto`` a memoryview slice, forwarding leg ``i`` to its pair, no RTP work.
``engine_relay``
    the media engine relaying the same legs as ``legs / 2`` bridged pairs (header
    parse, statistics, address check, header rewrite).
``engine_play``
    the engine playing a looping prompt to every leg from its 20 ms media clock while
    every leg also sends audio in (which is received, checked and counted).

A paced generator in a forked process sends 50 packets a second per leg (20 slots of
1 ms, each slot sending to every 20th leg) and counts what comes back.  The server's
CPU is ``getrusage`` of the server process over the measurement window, as a percentage
of one core.  Loss is counted per receiving leg from RTP sequence numbers.  Send-time
jitter of played streams is the deviation of each packet's inter-arrival time from
20 ms, measured at the generator (so it includes the generator's own scheduling noise:
an upper bound).  Optionally the largest number of relayed legs carried with zero loss
is searched by a bounded bisection.  Results go to ``bench/results/media.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import resource
import select
import socket
import struct
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import psutil  # type: ignore[import-untyped]
import uvloop

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
SEND_TIME_SAMPLE_EVERY: Final = 10  # legs whose send times are traced (engine_play)
GOAL_JITTER_P99_MS: Final = 2.0
RESULTS: Final = os.path.join(os.path.dirname(__file__), "results", "media.json")
_HEADER: Final = struct.Struct("!BBHII")

Report = dict[str, Any]


# ------------------------------------------------------------------------ generator


def _generator(
    conn: multiprocessing.connection.Connection,
    legs: int,
    warmup: float,
    seconds: float,
    measure_jitter: bool,
) -> None:
    """Child process: paced RTP sources and sinks, one UDP socket per leg."""
    try:
        conn.send(_generate(conn, legs, warmup, seconds, measure_jitter))
    except Exception as exc:  # report, do not hang the parent
        conn.send({"error": repr(exc)})
    finally:
        conn.close()


def _generate(
    conn: multiprocessing.connection.Connection,
    legs: int,
    warmup: float,
    seconds: float,
    measure_jitter: bool,
) -> Report:
    socks = []
    for _ in range(legs):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.bind((LOCALHOST, 0))
        sock.setblocking(False)
        socks.append(sock)
    conn.send([sock.getsockname()[1] for sock in socks])
    server_ports, t_start = conn.recv()
    destinations = [(LOCALHOST, port) for port in server_ports]

    poller = select.epoll()
    leg_of_fd = {}
    for leg, sock in enumerate(socks):
        poller.register(sock.fileno(), select.EPOLLIN)
        leg_of_fd[sock.fileno()] = leg
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
    buf = bytearray(2048)
    sent = received = window_received = rtcp = 0
    first_seq: list[int | None] = [None] * legs
    last_seq = [0] * legs
    extended = [0] * legs
    counts = [0] * legs
    last_arrival = [0.0] * legs
    deviations: list[float] = []
    max_late = 0.0
    slot = 0
    slot_time = t_start
    monotonic = time.monotonic
    usage_start = None

    def drain(fd: int, now: float) -> None:
        nonlocal received, window_received, rtcp
        leg = leg_of_fd[fd]
        recv_into = socks[leg].recv_into
        in_window = window_start <= now < window_end
        while True:
            try:
                size = recv_into(buf)
            except BlockingIOError:
                return
            if size < 12 or 192 <= buf[1] <= 223:
                rtcp += 1  # our RTCP reports land on port + 1: another leg's socket
                continue
            received += 1
            if not in_window:
                continue
            window_received += 1
            seq = (buf[2] << 8) | buf[3]
            if first_seq[leg] is None:
                first_seq[leg] = seq
                last_seq[leg] = seq
            else:
                delta = (seq - last_seq[leg]) & 0xFFFF
                if delta < 0x8000:
                    extended[leg] += delta
                    last_seq[leg] = seq
            counts[leg] += 1
            if measure_jitter:
                previous = last_arrival[leg]
                if previous:
                    deviations.append(abs(now - previous - INTERVAL))
                last_arrival[leg] = now

    while True:
        now = monotonic()
        if usage_start is None and now >= window_start:
            usage_start = (resource.getrusage(resource.RUSAGE_SELF), now)
        if now >= slot_time:
            if now >= window_end:
                break
            max_late = max(max_late, now - slot_time)
            for leg in slots[slot]:
                seq = seqs[leg] = (seqs[leg] + 1) & 0xFFFF
                stamp = stamps[leg] = (stamps[leg] + PAYLOAD_SIZE) & 0xFFFFFFFF
                _HEADER.pack_into(packets[leg], 0, 0x80, 0, seq, stamp, 0x1000 + leg)
                try:
                    socks[leg].sendto(packets[leg], destinations[leg])
                    sent += 1
                except OSError:
                    pass
            slot = (slot + 1) % SLOTS
            slot_time += INTERVAL / SLOTS
            timeout = 0.0  # behind schedule or not, never starve the receive side
        else:
            timeout = slot_time - now
        for fd, _ in poller.poll(timeout):
            drain(fd, monotonic())
    usage_end = (resource.getrusage(resource.RUSAGE_SELF), monotonic())
    stop = monotonic() + DRAIN
    while (left := stop - monotonic()) > 0:
        for fd, _ in poller.poll(left):
            drain(fd, monotonic())
    for sock in socks:
        sock.close()

    expected = sum(
        extended[leg] + 1 for leg in range(legs) if first_seq[leg] is not None
    )
    cpu = 0.0
    if usage_start is not None:
        (u0, w0), (u1, w1) = usage_start, usage_end
        cpu = _cpu_percent(u0, u1, w1 - w0)
    report: Report = {
        "sent": sent,
        "received": received,
        "window_received": window_received,
        "window_expected": expected,
        "window_lost": max(expected - sum(counts), 0),
        "silent_legs": sum(1 for leg in range(legs) if first_seq[leg] is None),
        "rtcp_received": rtcp,
        "generator_cpu_percent": round(cpu, 1),
        "generator_max_late_ms": round(max_late * 1000, 2),
    }
    if measure_jitter and deviations:
        values = np.array(deviations) * 1000.0
        report["jitter_p50_ms"] = round(float(np.percentile(values, 50)), 3)
        report["jitter_p99_ms"] = round(float(np.percentile(values, 99)), 3)
        report["jitter_max_ms"] = round(float(values.max()), 3)
        report["jitter_samples"] = int(values.size)
    return report


def _cpu_percent(
    before: resource.struct_rusage, after: resource.struct_rusage, wall: float
) -> float:
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return 100.0 * used / wall if wall > 0 else 0.0


# ------------------------------------------------------------------------ servers

Teardown = Callable[[float, float], Report]  # (window start, window end) -> report
Setup = Callable[[list[int]], tuple[list[int], Teardown]]


def _pair(leg: int) -> int:
    return leg ^ 1


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def _serve(
    conn: multiprocessing.connection.Connection,
    setup: Setup,
    warmup: float,
    seconds: float,
) -> Report:
    """Common server timeline: setup, start the generator, measure CPU, tear down."""
    generator_ports = conn.recv()
    server_ports, teardown = setup(generator_ports)
    t_start = time.monotonic() + START_DELAY
    conn.send((server_ports, t_start))
    await _sleep_until(t_start + warmup)
    usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    machine0 = psutil.cpu_times()

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
    await _sleep_until(t_start + warmup + seconds + DRAIN)
    report = teardown(wall0, wall1)
    report["server_cpu_percent"] = round(_cpu_percent(usage0, usage1, wall1 - wall0), 1)
    report["server_cpu_percent_median_1s"] = round(float(np.median(per_second)), 1)
    busy0 = sum(machine0) - machine0.idle - getattr(machine0, "iowait", 0.0)
    busy1 = sum(machine1) - machine1.idle - getattr(machine1, "iowait", 0.0)
    report["machine_cpu_percent"] = round(100.0 * (busy1 - busy0) / (wall1 - wall0), 1)
    return report


def _reference_setup(
    generator_ports: list[int],
) -> tuple[list[int], Teardown]:
    loop = asyncio.get_running_loop()
    legs = len(generator_ports)
    socks = []
    for _ in range(legs):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.bind((LOCALHOST, 0))
        sock.setblocking(False)
        socks.append(sock)
    buf = bytearray(2048)
    view = memoryview(buf)

    def forwarder(leg: int) -> Callable[[], None]:
        recv_into = socks[leg].recv_into
        sendto = socks[_pair(leg)].sendto
        destination = (LOCALHOST, generator_ports[_pair(leg)])

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

    return [sock.getsockname()[1] for sock in socks], teardown


def _engine(legs: int) -> tuple[MediaEngine, list[EndpointCreated]]:
    engine = MediaEngine(
        EngineConfig(port_min=PORT_MIN, port_max=PORT_MAX, rtp_timeout=0),
        on_event=lambda event: None,
    )
    created = []
    for _ in range(legs):
        result = engine.execute(CreateEndpoint())
        assert isinstance(result, EndpointCreated)
        created.append(result)
    return engine, created


def _engine_report(engine: MediaEngine, created: list[EndpointCreated]) -> Report:
    dropped: dict[str, int] = {}
    send_errors = 0
    for endpoint in created:
        for reason, count in engine.stats(endpoint.endpoint_id).dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        send_errors += engine.endpoint(endpoint.endpoint_id).send_errors
    report: Report = {
        "engine_dropped": dropped,
        "engine_send_errors": send_errors,
        "clock_skipped_ticks": engine.clock.skipped,
    }
    engine.close()
    return report


def _relay_setup(generator_ports: list[int]) -> tuple[list[int], Teardown]:
    engine, created = _engine(len(generator_ports))
    for endpoint, port in zip(created, generator_ports, strict=True):
        engine.execute(
            SetRemote(endpoint_id=endpoint.endpoint_id, host=LOCALHOST, port=port)
        )
    for leg in range(0, len(created) - 1, 2):
        engine.execute(
            Connect(
                endpoint_a=created[leg].endpoint_id,
                endpoint_b=created[leg + 1].endpoint_id,
            )
        )
    return [
        endpoint.rtp_port for endpoint in created
    ], lambda start, end: _engine_report(engine, created)


def _play_setup(prompt: str) -> Setup:
    def setup(generator_ports: list[int]) -> tuple[list[int], Teardown]:
        engine, created = _engine(len(generator_ports))
        sent_at: list[list[float]] = []
        for index, (endpoint, port) in enumerate(
            zip(created, generator_ports, strict=True)
        ):
            engine.execute(
                SetRemote(endpoint_id=endpoint.endpoint_id, host=LOCALHOST, port=port)
            )
            engine.execute(
                Play(
                    endpoint_id=endpoint.endpoint_id,
                    items=(Prompt(path=prompt),),
                    loop=True,
                )
            )
            if index % SEND_TIME_SAMPLE_EVERY == 0:
                sent_at.append(_trace_sends(engine, endpoint.endpoint_id))
        report: Report = {"prompt_conversions": engine.prompts.conversions}

        def teardown(window_start: float, window_end: float) -> Report:
            deviations: list[float] = []
            for times in sent_at:
                inside = [t for t in times if window_start <= t < window_end]
                deviations.extend(
                    abs(later - earlier - INTERVAL)
                    for earlier, later in itertools.pairwise(inside)
                )
            if deviations:
                values = np.array(deviations) * 1000.0
                report["send_jitter_p50_ms"] = round(
                    float(np.percentile(values, 50)), 3
                )
                report["send_jitter_p99_ms"] = round(
                    float(np.percentile(values, 99)), 3
                )
                report["send_jitter_max_ms"] = round(float(values.max()), 3)
                report["send_jitter_legs_sampled"] = len(sent_at)
            return {**report, **_engine_report(engine, created)}

        return [endpoint.rtp_port for endpoint in created], teardown

    return setup


def _trace_sends(engine: MediaEngine, endpoint_id: int) -> list[float]:
    """Record when the endpoint's played packets actually leave (sampled legs only)."""
    endpoint = engine.endpoint(endpoint_id)
    original = endpoint.send_frame
    times: list[float] = []
    monotonic = time.monotonic

    def traced(payload: bytes, when: float, samples: int) -> None:
        times.append(monotonic())
        original(payload, when, samples)

    setattr(endpoint, "send_frame", traced)  # noqa: B010 (instance override)
    return times


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
    setup: Setup, legs: int, warmup: float, seconds: float, *, measure_jitter: bool
) -> Report:
    """One server + generator run; returns the merged report."""
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    process = context.Process(
        target=_generator,
        args=(child, legs, warmup, seconds, measure_jitter),
        daemon=True,
    )
    process.start()
    child.close()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            server = runner.run(_serve(parent, setup, warmup, seconds))
        if not parent.poll(warmup + seconds + 30):
            raise RuntimeError("generator did not report")
        generator = parent.recv()
    finally:
        process.join(timeout=5)
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
        and report["silent_legs"] == 0
        and report["received"] >= report["sent"]
    )


def bisect_max_legs(start: int, time_budget: float) -> Report:
    """Largest even leg count relayed with zero loss (bounded trials and time)."""
    deadline = time.monotonic() + time_budget
    trials: list[Report] = []

    def trial(legs: int) -> bool:
        try:
            report = run_scenario(
                _relay_setup, legs, BISECT_WARMUP, BISECT_SECONDS, measure_jitter=False
            )
        except (MediaError, OSError, RuntimeError) as exc:  # e.g. ports, fd limit
            trials.append({"legs": legs, "pass": False, "error": str(exc)})
            logger.info("bisection: %d legs -> error %s", legs, exc)
            return False
        ok = _passes(report)
        trials.append(
            {
                "legs": legs,
                "pass": ok,
                "loss_percent": report["loss_percent"],
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
            "legs",
            "server CPU % (1 s median)",
            "box CPU %",
            "loss %",
            "send jitter p50/p99 ms",
            "arrival jitter p50/p99 ms",
            "gen CPU %",
        )
    ]
    for name, report in results["scenarios"].items():
        rows.append(
            (
                name,
                str(report["legs"]),
                f"{report['server_cpu_percent']} ({report['server_cpu_percent_median_1s']})",
                str(report["machine_cpu_percent"]),
                str(report["loss_percent"]),
                _pair_text(report, "send_jitter"),
                _pair_text(report, "jitter"),
                str(report["generator_cpu_percent"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = zip(row, widths, strict=True)
        print("  ".join(cell.ljust(width) for cell, width in cells))
    print(
        f"engine/reference CPU ratio: {results['ratio_engine_relay_vs_reference']}"
        f" (median of 1 s samples: "
        f"{results['ratio_engine_relay_vs_reference_median_1s']}; goal <= {GOAL_RATIO})"
        f"; box CPU % is all processes on"
        f" {results['machine']['cpus']} CPUs (200 = both busy)"
    )
    if "bisection" in results:
        bisection = results["bisection"]
        failure = bisection["first_failure"]
        print(
            f"max relayed legs with zero loss: {bisection['max_legs_zero_loss']}"
            + (f" (first failure at {failure})" if failure else " (no failure found)")
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
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    legs = max(2, min(args.legs, MAX_LEGS) // 2 * 2)
    seconds = min(max(args.seconds, 1.0), 60.0)
    warmup = min(max(args.warmup, 0.5), 10.0)

    load_before = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ccswitch-bench-") as directory:
        prompt = _write_prompt(directory)
        scenarios: dict[str, Report] = {}
        for name, setup, jitter in (
            ("reference", _reference_setup, False),
            ("engine_relay", _relay_setup, False),
            ("engine_play", _play_setup(prompt), True),
        ):
            logger.info("running %s with %d legs for %.0f s", name, legs, seconds)
            scenarios[name] = run_scenario(
                setup, legs, warmup, seconds, measure_jitter=jitter
            )
    reference_cpu = scenarios["reference"]["server_cpu_percent"]
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
        },
        "legs": legs,
        "seconds": seconds,
        "warmup": warmup,
        "scenarios": scenarios,
        "ratio_engine_relay_vs_reference": (
            round(scenarios["engine_relay"]["server_cpu_percent"] / reference_cpu, 2)
            if reference_cpu
            else None
        ),
        "ratio_engine_relay_vs_reference_median_1s": _ratio(
            scenarios["engine_relay"]["server_cpu_percent_median_1s"],
            scenarios["reference"]["server_cpu_percent_median_1s"],
        ),
        "ratio_engine_play_vs_reference": (
            round(scenarios["engine_play"]["server_cpu_percent"] / reference_cpu, 2)
            if reference_cpu
            else None
        ),
        "goals": {
            "ratio_max": GOAL_RATIO,
            "play_jitter_p99_ms_max": GOAL_JITTER_P99_MS,
        },
    }
    if not args.no_bisect:
        results["bisection"] = bisect_max_legs(legs, args.bisect_budget)
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
