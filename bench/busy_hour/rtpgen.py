"""The bench's RTP peer: every caller's and operator's audio, from one process.

Run by the bench as ``python -m bench.busy_hour.rtpgen --ready R --result J ...``.
SIPp does the signalling but cannot measure what it receives, so the callers' and the
operators' SDP point at this process instead: one UDP socket for all callers and one
for all operators (plus one RTCP sink each).  Streams are *learned*: the first packet
the switch sends from a port starts a stream to that port (symmetric RTP, RFC 4961),
which then gets 20 ms of G.711 speech every 20 ms (:mod:`bench.busy_hour.voice`); a
caller's stream also carries one RFC 4733 digit ``1`` a few seconds in, for the IVR's
menu.  A stream that the switch stopped feeding for :data:`IDLE` seconds is over (the
call ended).  With ``--fixed`` the streams are given instead (the forwarder run, where
nothing is sent until something is received).

Why one socket per side and a paced loop: on a two-core box this process shares the
cores with the switch it measures, so it must cost little and never block it.  It
sends in 20 slots of 1 ms (each slot to every 20th stream), sleeps between slots, and
drains both sockets after each slot, one ``recvmsg`` per datagram keeping the first
20 octets and the kernel's arrival time (``SO_TIMESTAMPNS``): loopback delivers a
datagram inside the sender's ``sendto``, so these are the switch's send times however
late this loop runs (bench/media.py measures the same way).  Each second the raw
bytes become compact numpy columns; :mod:`bench.busy_hour.analysis` computes loss,
lateness and jitter from them when the run ends, and the summary goes to ``--result``.
"""

from __future__ import annotations

import argparse
import array
import json
import random
import resource
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from bench.busy_hour.analysis import CHUNK_DTYPE, analyse
from bench.busy_hour.voice import PREFIX, frame_keys, speech_samples, ulaw_frames
from bench.media import _peer_socket

LOOPBACK: Final = "127.0.0.1"
SLOTS: Final = 20  # 1 ms send slots per 20 ms packet interval
SLOT: Final = 0.001
KEEP: Final = 12 + PREFIX  # octets kept of each datagram: header + payload prefix
# Seconds without a packet from the switch before a stream counts as over.  Long, as
# a phone keeps talking through the switch's silences (a stream that stopped here
# would stall the bridge it feeds); a port reused by the next leg is recognised at
# once by the switch's new SSRC instead.
IDLE: Final = 10.0
HOUSEKEEPING: Final = 0.25
PCMU: Final = 0
TELEPHONE_EVENT: Final = 101  # the payload type the bench's SDP offers (RFC 4733)
DTMF_EVENT_1: Final = 1
DTMF_VOLUME: Final = 10  # -10 dBm0
DTMF_PACKETS: Final = 5  # 100 ms of tone, then three end packets (RFC 4733 2.5.1.4)
DTMF_END_PACKETS: Final = 3
SIDES: Final = ("callers", "operators")
_HEADER: Final = struct.Struct("!BBHII")
_EVENT: Final = struct.Struct("!BBH")
_TIMESPEC_SIZE: Final = 16


class Stream:
    """What this process sends to one switch port; ``dtmf_at`` None: no digit."""

    __slots__ = (
        "address",
        "dtmf_at",
        "dtmf_step",
        "dtmf_ts",
        "last",
        "pos",
        "seq",
        "side",
        "ssrc",
        "started",
        "switch_ssrc",
        "ts",
    )

    def __init__(self, side: int, port: int, now: float, dtmf_at: float | None) -> None:
        self.side = side
        self.address = (LOOPBACK, port)
        self.started = self.last = now
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.pos = random.randrange(1 << 20)
        self.dtmf_at = None if dtmf_at is None else now + dtmf_at
        self.dtmf_step = -1  # >= 0 while the digit is being sent
        self.dtmf_ts = 0
        self.switch_ssrc = b""


class Capture:
    """Raw bytes of what one side received, turned into numpy columns each second."""

    def __init__(self, side: int, keys: npt.NDArray[np.uint64]) -> None:
        self.side = side
        self.keys = keys  # payload prefixes of the other side's speech: relayed audio
        self.headers = bytearray()
        self.ports = array.array("H")
        self.times = bytearray()
        self.chunks: list[npt.NDArray[Any]] = []

    def flush(self) -> None:
        count = len(self.ports)
        if not count:
            return
        raw = np.frombuffer(bytes(self.headers), dtype=np.uint8).reshape(count, KEEP)
        spec = np.frombuffer(bytes(self.times), dtype=np.int64).reshape(count, 2)
        chunk = np.empty(count, dtype=CHUNK_DTYPE)
        chunk["side"] = self.side
        chunk["port"] = np.frombuffer(self.ports, dtype=np.uint16)
        chunk["b1"] = raw[:, 1]
        chunk["seq"] = raw[:, 2:4].copy().view(">u2")[:, 0]
        chunk["ts"] = raw[:, 4:8].copy().view(">u4")[:, 0]
        chunk["ssrc"] = raw[:, 8:12].copy().view(">u4")[:, 0]
        prefix = raw[:, 12:KEEP].copy().view(">u8")[:, 0].astype(np.uint64)
        chunk["relayed"] = np.isin(prefix, self.keys, assume_unique=False)
        chunk["arrival_ns"] = spec[:, 0] * 1_000_000_000 + spec[:, 1]
        self.chunks.append(chunk)
        self.headers.clear()
        self.times.clear()
        self.ports = array.array("H")


# bench.media's peer socket: big buffer, kernel arrival timestamps, loopback
_socket = _peer_socket


class Generator:
    """The paced send/receive loop over both sides (see the module docstring)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        base = args.port
        self.socks = [_socket(base), _socket(base + 2)]
        self.rtcp = [_socket(base + 1), _socket(base + 3)]
        self.frames = [ulaw_frames(speech_samples(seed)) for seed in (1, 2)]
        # a caller receives the operator's speech relayed, and the other way round
        self.captures = [
            Capture(0, frame_keys(self.frames[1])),
            Capture(1, frame_keys(self.frames[0])),
        ]
        self.streams: list[dict[int, Stream]] = [{}, {}]
        self.ended: list[dict[int, Stream]] = [{}, {}]
        self.slots: list[list[Stream]] = [[] for _ in range(SLOTS)]
        self.counter = 0
        self.stopping = False
        self.sent = [0, 0]
        self.dtmf_sent = 0
        self.learned = [0, 0]
        self.resumed = 0
        self.replaced = 0
        self.skips = 0
        self.resume_gaps: list[tuple[int, float]] = []  # (side, seconds silent)
        self.rtcp_received = 0
        self.slot_late = array.array("f")
        self.series: list[tuple[float, int, int]] = []  # epoch, callers, operators

    # -- streams

    def _add(self, side: int, port: int, now: float) -> Stream:
        dtmf = self.args.dtmf_at if side == 0 and self.args.dtmf_at >= 0 else None
        stream = Stream(side, port, now, dtmf)
        self.streams[side][port] = stream
        self.slots[self.counter % SLOTS].append(stream)
        self.counter += 1
        self.learned[side] += 1
        return stream

    def _learn(self, side: int, port: int, data: bytes, now: float) -> Stream:
        """A packet from a port with no stream: a new leg, or one that paused."""
        old = self.ended[side].pop(port, None)
        if old is not None and old.switch_ssrc == data[8:12]:
            if len(self.resume_gaps) < 100:
                self.resume_gaps.append((side, round(now - old.last, 2)))
            old.last = now
            self.streams[side][port] = old
            self.slots[self.counter % SLOTS].append(old)
            self.counter += 1
            self.resumed += 1
            return old
        stream = self._add(side, port, now)
        stream.switch_ssrc = data[8:12]
        return stream

    def _replace(self, old: Stream, port: int, data: bytes, now: float) -> Stream:
        """The switch's port now belongs to another leg (new SSRC): a new stream."""
        self._unslot(old)
        self.replaced += 1
        stream = self._add(old.side, port, now)
        stream.switch_ssrc = data[8:12]
        return stream

    def _unslot(self, stream: Stream) -> None:
        for slot in self.slots:
            if stream in slot:
                slot.remove(stream)
                return

    def _expire(self, now: float) -> None:
        for side in (0, 1):
            streams = self.streams[side]
            for port in [p for p, s in streams.items() if now - s.last > IDLE]:
                stream = streams.pop(port)
                self.ended[side][port] = stream
                self._unslot(stream)

    # -- sending

    def _send_slot(self, slot: list[Stream], tick: int) -> None:
        """One packet to each stream of ``slot``, stamped for 20 ms ``tick``.

        Timestamps follow the wall clock (tick counts 20 ms since the start), not the
        packets sent: a stream that paused, or a loop that had to skip ahead, resumes
        with the timestamp a real phone's clock would have reached.
        """
        pack = _HEADER.pack
        socks = self.socks
        advance = 160 * tick
        for stream in slot:
            stream.seq = seq = (stream.seq + 1) & 0xFFFF
            ts = (stream.ts + advance) & 0xFFFFFFFF
            if stream.dtmf_step >= 0 or (
                stream.dtmf_at is not None and stream.last >= stream.dtmf_at
            ):
                packet = self._dtmf_packet(stream, seq, ts)
            else:
                frames = self.frames[stream.side]
                stream.pos += 1
                packet = (
                    pack(0x80, PCMU, seq, ts, stream.ssrc)
                    + frames[stream.pos % len(frames)]
                )
            try:
                socks[stream.side].sendto(packet, stream.address)
                self.sent[stream.side] += 1
            except OSError:
                pass

    def _dtmf_packet(self, stream: Stream, seq: int, ts: int) -> bytes:
        """The next RFC 4733 packet of digit 1: same SSRC, one event timestamp."""
        if stream.dtmf_step < 0:
            stream.dtmf_step = 0
            stream.dtmf_ts = ts
            stream.dtmf_at = None
            self.dtmf_sent += 1
        step = stream.dtmf_step
        end = step >= DTMF_PACKETS
        duration = 160 * min(step + 1, DTMF_PACKETS)
        flags = (0x80 if end else 0) | DTMF_VOLUME
        marker = 0x80 if step == 0 else 0
        stream.dtmf_step = (
            -1 if step + 1 >= DTMF_PACKETS + DTMF_END_PACKETS else step + 1
        )
        header = _HEADER.pack(
            0x80, marker | TELEPHONE_EVENT, seq, stream.dtmf_ts, stream.ssrc
        )
        return header + _EVENT.pack(DTMF_EVENT_1, flags, duration)

    # -- receiving

    def _drain(self, now: float) -> None:
        ancillary = socket.CMSG_SPACE(_TIMESPEC_SIZE)
        zero = bytes(_TIMESPEC_SIZE)
        for side in (0, 1):
            sock = self.socks[side]
            recvmsg = sock.recvmsg
            streams = self.streams[side]
            capture = self.captures[side]
            headers, ports, times = capture.headers, capture.ports, capture.times
            learn = self.args.fixed is None
            while True:
                try:
                    data, ancdata, _, address = recvmsg(KEEP, ancillary)
                except BlockingIOError:
                    break
                if len(data) < 12:
                    continue
                port = address[1]
                stream = streams.get(port)
                if stream is None:
                    if not learn:
                        continue
                    stream = self._learn(side, port, data, now)
                elif learn and stream.switch_ssrc != data[8:12]:
                    stream = self._replace(stream, port, data, now)
                stream.last = now
                headers += data if len(data) == KEEP else data.ljust(KEEP, b"\0")
                ports.append(port)
                times += ancdata[0][2] if ancdata else zero
            while True:
                try:
                    self.rtcp[side].recv(2048)
                except BlockingIOError:
                    break
                self.rtcp_received += 1

    # -- the loop

    def run(self) -> dict[str, Any]:
        args = self.args
        started = time.monotonic()
        deadline = started + args.max_seconds
        if args.fixed is not None:
            ports = json.loads(Path(args.fixed).read_text())
            for side, name in enumerate(SIDES):
                for port in ports[name]:
                    self._add(side, port, started)
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        count = 0  # 1 ms slots since the start: slot time, slot and 20 ms tick
        next_house = next_second = started + 1.0
        offset = time.time() - time.monotonic()
        while not self.stopping:
            now = time.monotonic()
            if now >= deadline:
                break
            slot_time = started + count * SLOT
            if now < slot_time:
                time.sleep(slot_time - now)
                continue
            self.slot_late.append(now - slot_time)
            self._send_slot(self.slots[count % SLOTS], count // SLOTS)
            count += 1
            if now - slot_time > 0.1:  # far behind: skip ahead rather than burst
                count = int((now - started) / SLOT)
                self.skips += 1
            self._drain(now)
            if now >= next_house:
                next_house = now + HOUSEKEEPING
                if args.fixed is None:
                    self._expire(now)
            if now >= next_second:
                next_second += 1.0
                for capture in self.captures:
                    capture.flush()
                active = [len(streams) for streams in self.streams]
                self.series.append((round(now + offset, 3), active[0], active[1]))
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.monotonic() - started
        for capture in self.captures:
            capture.flush()
        cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
        late = np.asarray(self.slot_late, dtype=np.float64) * 1000.0
        report: dict[str, Any] = {
            "generator_cpu_cores": round(cpu / wall, 3) if wall > 0 else None,
            "generator_wall_s": round(wall, 1),
            "generator_slot_late_p99_ms": _percentile(late, 99),
            "generator_slot_late_max_ms": round(float(late.max()), 2)
            if late.size
            else None,
            "sent": dict(zip(SIDES, self.sent, strict=True)),
            "streams_learned": dict(zip(SIDES, self.learned, strict=True)),
            "streams_resumed": self.resumed,
            "streams_replaced": self.replaced,
            "resume_gaps": self.resume_gaps,
            "generator_skips": self.skips,
            "dtmf_digits_sent": self.dtmf_sent,
            "rtcp_received": self.rtcp_received,
            "active_series": self.series,
        }
        chunks = [c for capture in self.captures for c in capture.chunks]
        report.update(
            analyse(chunks, jitter_buffer_ms=args.jitter_buffer, offset=offset)
        )
        return report


def _percentile(values: npt.NDArray[np.float64], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values.size else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="first of 4 ports")
    parser.add_argument("--ready", required=True, help="file written once bound")
    parser.add_argument("--result", required=True, help="JSON summary written here")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--dtmf-at", type=float, default=5.0, help="<0: no digit")
    parser.add_argument("--jitter-buffer", type=float, default=60.0, help="ms")
    parser.add_argument("--fixed", help="JSON {callers: [ports], operators: [ports]}")
    args = parser.parse_args(argv)
    generator = Generator(args)

    def stop(signum: int, frame: object) -> None:
        generator.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    Path(args.ready).write_text(
        json.dumps({"callers": args.port, "operators": args.port + 2})
    )
    try:
        report = generator.run()
    except Exception as exc:  # the parent reads the reason instead of a missing file
        report = {"error": repr(exc)}
    Path(args.result).write_text(json.dumps(report))
    return 0 if "error" not in report else 1


if __name__ == "__main__":
    sys.exit(main())
