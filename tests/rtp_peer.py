"""A Python RTP peer for end-to-end calls: it sends a tone and records what it gets.

SIPp can play a pcap but cannot record, and its ``-rtp_echo`` reflects whatever it
receives, so a switch that bounced RTP straight back would pass an echo test. Here
SIPp does the signalling only: its SDP names the port of an :class:`RtpPeer` (the
scenario's ``[rtp_port]`` key), and the peer, on that port, sends its own tone at 20 ms
a packet (symmetric RTP, RFC 4961: it sends from the port it receives on) to the
media address the switch put in the SDP it sent to that SIP party (read from the
switch's ``--sip-trace`` file), and keeps every packet the switch sends it.

The tests then decode what each side received with the reference G.711 codec below
(ITU-T G.711, as in the classic Sun ``g711.c``; independent of the product's
``media.g711``) and check by FFT that it is the OTHER side's tone: at the right
frequency, clean (a stream of the wrong law decodes to a distorted, harmonic-rich
signal), and not this side's own tone reflected back.

Every loop is bounded: the peer's thread stops on :meth:`RtpPeer.stop` or after
``lifetime`` seconds, whichever comes first.
"""

from __future__ import annotations

import math
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from tests.e2e.phone import TraceEntry, trace_entries
from tests.harness import LOOPBACK

RATE = 8000
FRAME = 160  # 20 ms of G.711
PCMU, PCMA = 0, 8
TELEPHONE_EVENT = 101
AUDIO_PTS = (PCMU, PCMA)
AMPLITUDE = 0.5  # of full scale: about -6 dBFS, far above any comfort noise

# -- reference G.711 (ITU-T G.711; the algorithm of Sun's public-domain g711.c) ------

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # of the 14-bit magnitude
_ULAW_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def ulaw_encode_sample(value: int) -> int:
    pcm = value >> 2  # 14-bit
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = next((i for i, end in enumerate(_ULAW_SEG_END) if pcm <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((pcm >> (segment + 1)) & 0x0F)) ^ mask


def ulaw_decode_sample(code: int) -> int:
    code = ~code & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = (((code & 0x0F) << 3) + _ULAW_BIAS) << exponent
    magnitude -= _ULAW_BIAS
    return -magnitude if code & 0x80 else magnitude


def alaw_encode_sample(value: int) -> int:
    pcm = value >> 3  # 13-bit
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    segment = next((i for i, end in enumerate(_ALAW_SEG_END) if pcm <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    code = segment << 4
    code |= (pcm >> 1) & 0x0F if segment < 2 else (pcm >> segment) & 0x0F
    return code ^ mask


def alaw_decode_sample(code: int) -> int:
    code ^= 0x55
    value = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        value += 8
    else:
        value += 0x108
        if segment > 1:
            value <<= segment - 1
    return value if code & 0x80 else -value


ULAW_TABLE = np.array([ulaw_decode_sample(c) for c in range(256)], dtype=np.int16)
ALAW_TABLE = np.array([alaw_decode_sample(c) for c in range(256)], dtype=np.int16)


def encode(samples: Iterable[int], payload_type: int) -> bytes:
    encoder = ulaw_encode_sample if payload_type == PCMU else alaw_encode_sample
    return bytes(encoder(int(s)) for s in samples)


def decode(payload: bytes, payload_type: int) -> np.ndarray:
    table = ULAW_TABLE if payload_type == PCMU else ALAW_TABLE
    return table[np.frombuffer(payload, dtype=np.uint8)]


def tone(hz: float, seconds: float = 1.0, amplitude: float = AMPLITUDE) -> np.ndarray:
    """16-bit samples of a sine; one second of a whole-Hz tone loops seamlessly."""
    t = np.arange(int(RATE * seconds)) / RATE
    return np.round(amplitude * 32767 * np.sin(2 * math.pi * hz * t)).astype(np.int16)


# -- spectrum ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Spectrum:
    """Power spectrum of the loudest second of a signal."""

    freqs: np.ndarray
    power: np.ndarray
    seconds: float  # how long the whole signal was
    rms: float  # of the loudest second, full scale = 1.0

    @property
    def dominant_hz(self) -> float:
        return float(self.freqs[int(np.argmax(self.power))])

    def share(self, hz: float, width: float = 20.0) -> float:
        """Fraction of the power within ``width`` Hz of ``hz``."""
        total = float(self.power.sum())
        if total <= 0:
            return 0.0
        band = np.abs(self.freqs - hz) <= width
        return float(self.power[band].sum()) / total

    def describe(self) -> str:
        return (
            f"{self.seconds:.2f} s, loudest second rms {self.rms:.3f}, "
            f"dominant {self.dominant_hz:.0f} Hz"
        )


def spectrum(samples: np.ndarray, rate: int = RATE) -> Spectrum:
    """The spectrum of the loudest one-second stretch of 16-bit ``samples``."""
    x = samples.astype(float) / 32768.0
    seconds = len(x) / rate
    if len(x) < rate:
        raise AssertionError(f"only {seconds:.2f} s of audio to analyse")
    window = rate // 10
    levels = [
        float(np.mean(x[i : i + window] ** 2))
        for i in range(0, len(x) - window, window)
    ]
    # the loudest second: the one-second run of 100 ms windows with the most energy
    runs = [sum(levels[i : i + 10]) for i in range(max(1, len(levels) - 9))]
    start = min(int(np.argmax(runs)) * window, len(x) - rate)
    segment = x[start : start + rate]
    power = np.abs(np.fft.rfft(segment * np.hanning(rate))) ** 2
    return Spectrum(
        freqs=np.fft.rfftfreq(rate, 1 / rate),
        power=power,
        seconds=seconds,
        rms=float(np.sqrt(np.mean(segment**2))),
    )


def assert_hears(
    heard: Spectrum, *, expected_hz: float, own_hz: float, who: str
) -> None:
    """``heard`` is the other side's clean tone, not this side's own tone."""
    detail = f"{who}: {heard.describe()}"
    assert abs(heard.dominant_hz - expected_hz) <= 15, (
        f"{detail}; expected the other side's {expected_hz:.0f} Hz"
    )
    # A clean G.711 sine keeps >99% of its power in its band; a stream decoded with
    # the wrong law (no transcoding) is distorted and spread over harmonics.
    assert heard.share(expected_hz) >= 0.9, (
        f"{detail}; only {heard.share(expected_hz):.0%} of the power is at "
        f"{expected_hz:.0f} Hz"
    )
    assert heard.share(own_hz) <= 0.01, (
        f"{detail}; {heard.share(own_hz):.1%} of the power is at its own "
        f"{own_hz:.0f} Hz: its own audio came back"
    )


# -- the switch's SDP, from its SIP trace -----------------------------------------------


def entry_time(entry: TraceEntry) -> float:
    """The trace entry's time as a POSIX timestamp (the trace writes UTC ISO times)."""
    return datetime.fromisoformat(entry.stamp).timestamp()


def sdp_address(text: str) -> tuple[str, int] | None:
    """The audio address (c= host, m=audio port) of the SDP in a SIP message."""
    host = port = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("c=IN IP4 ") and host is None:
            host = line.split()[2]
        elif line.startswith("m=audio "):
            port = int(line.split()[1])
    if host is None or port is None:
        return None
    return host, port


def audio_payload_types(text: str) -> list[int]:
    """The payload type list of the m=audio line of the SDP in a SIP message."""
    for line in text.splitlines():
        fields = line.strip().split()
        if fields and fields[0] == "m=audio":
            # m=audio <port> <proto> <fmt> ... (RFC 4566 5.14)
            return [int(fmt) for fmt in fields[3:]]
    raise AssertionError(f"no m=audio line in:\n{text}")


def sent_to(trace: str, sip_port: int) -> list[TraceEntry]:
    """The messages the switch sent to 127.0.0.1:``sip_port``, in order."""
    return [
        entry
        for entry in trace_entries(trace)
        if entry.direction == "sent" and entry.remote == f"{LOOPBACK}:{sip_port}"
    ]


def received_from(trace: str, sip_port: int) -> list[TraceEntry]:
    """The messages the switch received from 127.0.0.1:``sip_port``, in order."""
    return [
        entry
        for entry in trace_entries(trace)
        if entry.direction == "recv" and entry.remote == f"{LOOPBACK}:{sip_port}"
    ]


def switch_media_for(
    trace_path: Path, sip_port: int
) -> Callable[[], tuple[str, int] | None]:
    """A locator: where the switch wants the media of the party on ``sip_port``.

    That is the address of the first SDP the switch sent there (its offer in an
    INVITE to a callee, its answer in a 183/200 to a caller).
    """

    def locate() -> tuple[str, int] | None:
        if not trace_path.exists():
            return None
        for entry in sent_to(trace_path.read_text(errors="replace"), sip_port):
            address = sdp_address(entry.text)
            if address is not None:
                return address
        return None

    return locate


# -- the peer ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Packet:
    arrival: float  # time.time() when read
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    source: tuple[str, int]


class RtpPeer:
    """Sends a tone from ``port`` to the switch and records what arrives on ``port``.

    :param port: the local RTP port (named in this party's SDP).
    :param payload_type: 0 (PCMU) or 8 (PCMA), what this side sends.
    :param tone_hz: the frequency this side sends.
    :param locate: returns the switch's media address for this party once known.
    :param lifetime: the thread stops after this many seconds at the latest.
    """

    def __init__(
        self,
        *,
        port: int,
        payload_type: int,
        tone_hz: float,
        locate: Callable[[], tuple[str, int] | None],
        lifetime: float = 60.0,
    ) -> None:
        self.port = port
        self.payload_type = payload_type
        self.tone_hz = tone_hz
        self.locate = locate
        self.lifetime = lifetime
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, port))
        self.port = int(self.sock.getsockname()[1])  # the one bound, if port was 0
        self.received: list[Packet] = []
        self.sent = 0
        self.target: tuple[str, int] | None = None
        self.sending = True  # cleared by a test to go quiet
        self._frames = self._encode_frames()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    def _encode_frames(self) -> list[bytes]:
        payload = encode(tone(self.tone_hz), self.payload_type)
        return [payload[i : i + FRAME] for i in range(0, len(payload), FRAME)]

    def start(self) -> RtpPeer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def __enter__(self) -> RtpPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        ssrc = random.getrandbits(32)
        seq = random.getrandbits(16)
        ts = random.getrandbits(32)
        started = time.monotonic()
        next_send = started
        next_locate = started
        frame = 0
        while not self._stop.is_set() and time.monotonic() - started < self.lifetime:
            now = time.monotonic()
            if self.target is None and now >= next_locate:
                self.target = self.locate()
                next_locate = now + 0.05
                next_send = now
            if self.target is not None and now >= next_send:
                if self.sending:
                    header = struct.pack(
                        "!BBHII",
                        0x80,
                        (0x80 if frame == 0 else 0) | self.payload_type,
                        seq,
                        ts,
                        ssrc,
                    )
                    try:
                        self.sock.sendto(
                            header + self._frames[frame % len(self._frames)],
                            self.target,
                        )
                        self.sent += 1
                    except OSError:
                        pass
                seq = (seq + 1) & 0xFFFF
                ts = (ts + FRAME) & 0xFFFFFFFF
                frame += 1
                next_send += FRAME / RATE
                if next_send < now - 0.2:  # far behind (a busy box): do not burst
                    next_send = now
            wait = 0.05 if self.target is None else max(0.0, next_send - now)
            self.sock.settimeout(max(0.001, min(wait, 0.05)))
            try:
                data, source = self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            self._record(data, source)

    def _record(self, data: bytes, source: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        csrc = data[0] & 0x0F
        offset = 12 + 4 * csrc
        if data[0] & 0x10 and len(data) >= offset + 4:  # header extension
            offset += 4 + 4 * struct.unpack("!H", data[offset + 2 : offset + 4])[0]
        end = len(data)
        if data[0] & 0x20:  # padding
            end -= data[-1]
        seq, ts, ssrc = struct.unpack("!HII", data[2:12])
        packet = Packet(
            arrival=time.time(),
            payload_type=data[1] & 0x7F,
            marker=bool(data[1] & 0x80),
            seq=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            source=source,
        )
        with self._lock:
            self.received.append(packet)

    # -- what arrived ---------------------------------------------------------------

    def packets(
        self, *, after: float | None = None, before: float | None = None
    ) -> list[Packet]:
        """Packets that arrived in (after, before), by wall-clock arrival time."""
        with self._lock:
            packets = list(self.received)
        return [
            p
            for p in packets
            if (after is None or p.arrival > after)
            and (before is None or p.arrival < before)
        ]

    def audio_types(self, packets: Sequence[Packet] | None = None) -> set[int]:
        """The payload types of the audio (non telephone-event) packets received."""
        packets = self.packets() if packets is None else packets
        return {p.payload_type for p in packets if p.payload_type != TELEPHONE_EVENT}

    def heard(
        self, packets: Sequence[Packet] | None = None, *, payload_type: int
    ) -> Spectrum:
        """The spectrum of the received audio packets, decoded with ``payload_type``'s
        law, in arrival order."""
        packets = self.packets() if packets is None else packets
        audio = [p.payload for p in packets if p.payload_type in AUDIO_PTS]
        if not audio:
            raise AssertionError(
                f"no audio packets arrived at RTP port {self.port} "
                f"({len(packets)} packets in all, {self.sent} sent, "
                f"switch media {self.target})"
            )
        return spectrum(decode(b"".join(audio), payload_type))

    def summary(self) -> str:
        packets = self.packets()
        kinds: dict[int, int] = {}
        for p in packets:
            kinds[p.payload_type] = kinds.get(p.payload_type, 0) + 1
        return (
            f"RTP peer :{self.port} sent {self.sent} x PT {self.payload_type} "
            f"{self.tone_hz:.0f} Hz to {self.target}; received {kinds}"
        )
