"""DTMF: RFC 4733 telephone-events in RTP, and in-band detection (ITU-T Q.23/Q.24).

Out of band: :func:`encode_event` / :func:`decode_event` handle the 4-byte
telephone-event payload (RFC 4733 section 2.3). :class:`DtmfSender` turns one key press
into its packet train; :class:`DtmfReceiver` turns received packets back into key presses,
one per event however the packets were repeated, lost or reordered. Neither cares which
dynamic payload type was negotiated: the caller routes packets of that type here.

In band: :class:`GoertzelDetector` finds digits in 8 kHz linear audio.

Theory of operation, receiver: RFC 4733 identifies an event by its RTP timestamp (the
event's start), which every update and every repetition of the final packet carries. A
digit is reported on the first packet of a timestamp not seen recently, so a receiver that
only gets the end packets still reports it once, and the same key pressed twice (two
timestamps) is reported twice. A long event split into segments (2.5.1.3) keeps the event
code, carries no marker and starts where the previous segment ended; it is recognised as
a continuation and not reported again.

Theory of operation, detector: audio is cut into 160-sample (20 ms) windows every 80
samples. For each window the detector computes the power at the eight DTMF frequencies
(three probes each: nominal and 1 % either side, so Q.24's 1.5 % deviation is accepted
and 3.5 % is not) and at their second harmonics, the same quantity the Goertzel
recursion yields, as numpy matrix products: each 80-sample half is projected once and
shared by the two windows containing it, which is cheaper than a per-sample Python loop.
A window is a hit for a digit when the strongest row and column tones are loud enough,
carry most of the window's energy (this rejects speech, music and noise, whose energy is
spread out), lie within the twist limits, stand clear of the other tones of their group,
and have weak second harmonics. A digit is reported after ``min_on`` consecutive hit
windows and the detector re-arms after ``min_off`` consecutive windows without it, so
each press is reported once and a short drop-out inside a tone does not split it.
:class:`GoertzelBank` runs the same arithmetic for a ``(streams, samples)`` tick in one
go; per stream, Python work is only done while a tone is plausible.
"""

from __future__ import annotations

import logging
import math
import struct
from collections import deque
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from media.rtp import RtpPacket

logger = logging.getLogger(__name__)

__all__ = [
    "DIGIT_TO_EVENT",
    "DTMF_COLUMN_FREQUENCIES",
    "DTMF_ROW_FREQUENCIES",
    "EVENT_TO_DIGIT",
    "KEYPAD",
    "DetectorSettings",
    "DtmfDigit",
    "DtmfError",
    "DtmfReceiver",
    "DtmfSender",
    "GoertzelBank",
    "GoertzelDetector",
    "TelephoneEvent",
    "decode_event",
    "digit_frequencies",
    "encode_event",
]

# RFC 4733 section 3.2, table 7: DTMF named events; 16 is hook flash.
EVENT_TO_DIGIT: Final = "0123456789*#ABCD!"
DIGIT_TO_EVENT: Final = {digit: event for event, digit in enumerate(EVENT_TO_DIGIT)}
FLASH_EVENT: Final = 16

# RFC 4733 section 2.3: event (8) | E (1) R (1) volume (6) | duration (16)
EVENT_PAYLOAD_SIZE: Final = 4
END_BIT: Final = 0x80
VOLUME_MASK: Final = 0x3F
MAX_VOLUME: Final = 63  # -dBm0
MAX_DURATION: Final = 0xFFFF  # timestamp units (2.5.1.3: longer events are segmented)
FINAL_PACKET_REPEATS: Final = 3  # 2.5.1.4: the final packet is sent three times
DEFAULT_VOLUME: Final = 10  # -10 dBm0
DEFAULT_CLOCK_RATE: Final = 8000  # 3.1: telephone-event/8000 is the usual rate
DEFAULT_PACKET_INTERVAL: Final = 160  # one 20 ms update, in timestamp units at 8 kHz
RECENT_EVENTS: Final = 16  # event timestamps remembered for de-duplication (ours)
# A segment continues the previous event only if that event was already near the 16-bit
# duration limit (ours; RFC 4733 2.5.1.3 lets segments follow without a marker).
SEGMENT_MIN_DURATION: Final = 0x8000

# ITU-T Q.23: the keypad's row (low group) and column (high group) frequencies.
DTMF_ROW_FREQUENCIES: Final = (697.0, 770.0, 852.0, 941.0)
DTMF_COLUMN_FREQUENCIES: Final = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD: Final = ("123A", "456B", "789C", "*0#D")

# In-band detector defaults (ours, in the spirit of ITU-T Q.24).
SAMPLE_RATE: Final = 8000
WINDOW: Final = 160  # 20 ms analysis window
HOP: Final = 80  # 10 ms between windows
MIN_ON_WINDOWS: Final = 2  # ~30 ms of tone before a digit is reported (Q.24: 40 ms)
MIN_OFF_WINDOWS: Final = 3  # windows without the digit before it may be reported again
MIN_TONE_LEVEL_DBFS: Final = -36.0  # weakest tone accepted, dB re a full-scale sine
MIN_PURITY: Final = 0.80  # share of window energy the two tones must carry
# Twist limits: Q.24's 8 dB forward (high group louder) and 4 dB reverse (low group
# louder), plus 2 dB for measurement error, so tones right at the limits pass.
MAX_FORWARD_TWIST_DB: Final = 10.0
MAX_REVERSE_TWIST_DB: Final = 6.0
MIN_RELATIVE_PEAK_DB: Final = 6.0  # winner over the runner-up in its group
MAX_HARMONIC_DB: Final = -10.0  # second harmonics vs the two tones
# Each tone is probed at its nominal frequency and 1 % either side, so a tone off by
# Q.24's 1.5 % is at most 0.5 % from a probe (a 20 ms window's main lobe is 50 Hz wide).
PROBE_OFFSETS: Final = (-0.01, 0.0, 0.01)
FULL_SCALE: Final = 32767.0

_EVENT: Final = struct.Struct("!BBH")


class DtmfError(Exception):
    """A telephone-event payload cannot be read.

    :param reason: short counter key, ``"short"`` for a payload under 4 bytes.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    """One decoded telephone-event payload (RFC 4733 section 2.3)."""

    event: int
    end: bool
    volume: int
    duration: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfDigit:
    """A key press, reported once.

    :param digit: one of ``0-9 * # A-D``, or ``!`` for hook flash (event 16).
    :param timestamp: the RTP timestamp of the event's start (0 for in-band digits).
    :param volume: the power level in -dBm0 (RFC 4733 2.3.4); 0 for in-band digits.
    """

    digit: str
    event: int
    timestamp: int = 0
    volume: int = 0


def encode_event(event: int, *, end: bool, volume: int, duration: int) -> bytes:
    """Build a telephone-event payload; raise :class:`ValueError` on bad fields."""
    if not 0 <= event <= 0xFF:
        raise ValueError(f"event {event} is not 8 bits")
    if not 0 <= volume <= MAX_VOLUME:
        raise ValueError(f"volume {volume} is not in 0..{MAX_VOLUME}")
    if not 0 <= duration <= MAX_DURATION:
        raise ValueError(f"duration {duration} is not 16 bits")
    return _EVENT.pack(event, (END_BIT if end else 0) | volume, duration)


def decode_event(payload: bytes | bytearray | memoryview) -> TelephoneEvent:
    """Read a telephone-event payload; bytes after the first event are ignored."""
    if len(payload) < EVENT_PAYLOAD_SIZE:
        raise DtmfError("short", f"telephone-event payload of {len(payload)} bytes")
    event, flags, duration = _EVENT.unpack_from(payload, 0)
    return TelephoneEvent(
        event=event,
        end=bool(flags & END_BIT),
        volume=flags & VOLUME_MASK,
        duration=duration,
    )


def digit_frequencies(digit: str) -> tuple[float, float]:
    """The (row, column) frequencies of a keypad digit; ``KeyError`` if none."""
    for row, keys in enumerate(KEYPAD):
        column = keys.find(digit.upper())
        if column >= 0 and len(digit) == 1:
            return DTMF_ROW_FREQUENCIES[row], DTMF_COLUMN_FREQUENCIES[column]
    raise KeyError(digit)


class DtmfSender:
    """Builds the RFC 4733 packet train for one key press.

    The packets share the event's start timestamp; the first carries the marker bit
    (2.5.1.2); each later one reports the duration so far, one ``packet_interval``
    more per packet; the final one has the E bit and the full duration and is sent
    :data:`FINAL_PACKET_REPEATS` times (2.5.1.4). The repetitions are the same packet,
    sequence number included; packet *i* of the list is meant to leave *i* packet
    intervals after the first. The caller's audio resumes at sequence
    ``sequence + len(packets) - FINAL_PACKET_REPEATS + 1`` and timestamp
    ``timestamp + duration``.

    :param payload_type: the negotiated telephone-event payload type.
    """

    def __init__(
        self,
        payload_type: int,
        ssrc: int,
        *,
        clock_rate: int = DEFAULT_CLOCK_RATE,
        packet_interval: int = DEFAULT_PACKET_INTERVAL,
        volume: int = DEFAULT_VOLUME,
    ) -> None:
        if packet_interval <= 0:
            raise ValueError("packet_interval must be positive")
        self.payload_type = payload_type
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.packet_interval = packet_interval
        self.volume = volume

    def duration_units(self, duration_ms: int) -> int:
        """A duration in milliseconds as timestamp units at this clock rate."""
        return duration_ms * self.clock_rate // 1000

    def packets(
        self, digit: str, *, sequence: int, timestamp: int, duration_ms: int = 100
    ) -> list[RtpPacket]:
        """The packets for one press of ``digit`` lasting ``duration_ms``."""
        try:
            event = DIGIT_TO_EVENT[digit.upper()]
        except KeyError:
            raise ValueError(f"{digit!r} is not a DTMF digit") from None
        duration = self.duration_units(duration_ms)
        if not 0 < duration <= MAX_DURATION:
            # TODO: RFC 4733 2.5.1.3 segments events over 65535 units (8.19 s at
            # 8 kHz); we refuse them, which no IVR key press comes near.
            raise ValueError(f"duration {duration_ms} ms is out of range")
        packets: list[RtpPacket] = []
        elapsed = self.packet_interval
        while elapsed < duration:
            packets.append(
                self._packet(event, sequence, timestamp, False, elapsed, not packets)
            )
            sequence = (sequence + 1) & 0xFFFF
            elapsed += self.packet_interval
        final = self._packet(event, sequence, timestamp, True, duration, not packets)
        packets.extend([final] * FINAL_PACKET_REPEATS)
        return packets

    def _packet(
        self,
        event: int,
        sequence: int,
        timestamp: int,
        end: bool,
        duration: int,
        first: bool,
    ) -> RtpPacket:
        return RtpPacket(
            payload_type=self.payload_type,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=self.ssrc,
            marker=first,
            payload=encode_event(event, end=end, volume=self.volume, duration=duration),
        )


class DtmfReceiver:
    """Turns received telephone-event packets into key presses, each reported once.

    Feed every packet of the negotiated telephone-event payload type to :meth:`feed`
    (or :meth:`feed_packet`); it returns a :class:`DtmfDigit` on the first packet of a
    new event and ``None`` otherwise. Events other than DTMF digits and flash (RFC
    4733 has hundreds) are ignored and counted in :attr:`ignored`; payloads that are
    too short are counted in :attr:`malformed`.
    """

    def __init__(self) -> None:
        self._recent: deque[tuple[int, int]] = deque(maxlen=RECENT_EVENTS)
        self._last_key: tuple[int, int] | None = None
        self._last_event = -1
        self._last_duration = 0
        self._last_ended = True
        self.ignored = 0
        self.malformed = 0

    def feed_packet(self, packet: RtpPacket) -> DtmfDigit | None:
        """:meth:`feed` with the fields of a parsed packet."""
        return self.feed(
            packet.timestamp, packet.payload, marker=packet.marker, ssrc=packet.ssrc
        )

    def feed(
        self,
        timestamp: int,
        payload: bytes | bytearray | memoryview,
        *,
        marker: bool = False,
        ssrc: int = 0,
    ) -> DtmfDigit | None:
        """Account for one packet; return the digit if it starts a new event."""
        try:
            report = decode_event(payload)
        except DtmfError:
            self.malformed += 1
            return None
        if report.event > FLASH_EVENT:
            self.ignored += 1
            return None
        key = (ssrc, timestamp)
        if key == self._last_key:
            self._note(report)
            return None
        if key in self._recent:
            return None  # a late packet of an older event
        continuation = (
            not marker
            and not self._last_ended
            and self._last_key is not None
            and self._last_key[0] == ssrc
            and report.event == self._last_event
            and self._last_duration >= SEGMENT_MIN_DURATION
            and 0 < (timestamp - self._last_key[1]) % (1 << 32) <= MAX_DURATION + 1
        )
        self._recent.append(key)
        self._last_key = key
        self._last_event = report.event
        self._last_duration = 0
        self._last_ended = False
        self._note(report)
        if continuation:
            return None
        digit = DtmfDigit(
            digit=EVENT_TO_DIGIT[report.event],
            event=report.event,
            timestamp=timestamp,
            volume=report.volume,
        )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("RFC 4733 digit %s at timestamp %d", digit.digit, timestamp)
        return digit

    def _note(self, report: TelephoneEvent) -> None:
        self._last_duration = max(self._last_duration, report.duration)
        if report.end:
            self._last_ended = True


def _frequencies() -> npt.NDArray[np.float64]:
    """Three probes around each of the 8 DTMF tones, then the 8 second harmonics."""
    fundamentals = np.array(DTMF_ROW_FREQUENCIES + DTMF_COLUMN_FREQUENCIES)
    probes = fundamentals[:, None] * (1.0 + np.array(PROBE_OFFSETS))[None, :]
    return np.concatenate([probes.ravel(), 2.0 * fundamentals])


def _basis() -> npt.NDArray[np.float64]:
    """(WINDOW, 2 * frequencies): cosine and sine of each probe, interleaved.

    Scaled by sqrt(2 / WINDOW) so that a sine alone in a window has a power equal to
    the window's energy (its share is 1.0).
    """
    omega = 2.0 * np.pi * _frequencies() / SAMPLE_RATE
    phase = np.arange(WINDOW)[:, None] * omega[None, :]
    basis = np.empty((WINDOW, 2 * omega.size))
    basis[:, 0::2] = np.cos(phase)
    basis[:, 1::2] = np.sin(phase)
    basis *= math.sqrt(2.0 / WINDOW)
    return basis


_BASIS: Final = _basis()
_PROBES: Final = len(PROBE_OFFSETS)
_PROBE_COLUMNS: Final = 8 * _PROBES


def _analyse(
    halves: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Powers of the windows made of consecutive 80-sample halves.

    :param halves: ``(streams, k + 1, 80)``: the previous call's last half, then k new.
    :return: tone power ``(streams, k, 8)`` (best probe of each DTMF tone), second
        harmonic power ``(streams, k, 8)`` and window energy ``(streams, k)``.
    """
    streams, count, _ = halves.shape
    windows = np.concatenate([halves[:, :-1], halves[:, 1:]], axis=2)
    # one real matrix product: |X(f)|^2 = (sum x cos)^2 + (sum x sin)^2, as Goertzel
    products = windows.reshape(-1, WINDOW) @ _BASIS
    products *= products
    power = products[:, 0::2] + products[:, 1::2]
    tones = power[:, 0:_PROBE_COLUMNS:_PROBES]
    for probe in range(1, _PROBES):
        tones = np.maximum(tones, power[:, probe:_PROBE_COLUMNS:_PROBES])
    half_energy = np.einsum("sbi,sbi->sb", halves, halves)
    energy = half_energy[:, :-1] + half_energy[:, 1:]
    return (
        tones.reshape(streams, count - 1, 8),
        power[:, _PROBE_COLUMNS:].reshape(streams, count - 1, 8),
        energy,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectorSettings:
    """Thresholds of the in-band detector (defaults in the spirit of ITU-T Q.24).

    :param min_level_dbfs: weakest tone accepted, in dB relative to a full-scale sine.
    :param max_forward_twist_db: how much louder the high (column) tone may be.
    :param max_reverse_twist_db: how much louder the low (row) tone may be.
    :param min_purity: share of a window's energy the two tones must carry.
    :param min_on: consecutive hit windows (10 ms apart) before a digit is reported.
    :param min_off: consecutive windows without the digit before it re-arms.
    """

    min_level_dbfs: float = MIN_TONE_LEVEL_DBFS
    max_forward_twist_db: float = MAX_FORWARD_TWIST_DB
    max_reverse_twist_db: float = MAX_REVERSE_TWIST_DB
    min_purity: float = MIN_PURITY
    min_relative_peak_db: float = MIN_RELATIVE_PEAK_DB
    max_harmonic_db: float = MAX_HARMONIC_DB
    min_on: int = MIN_ON_WINDOWS
    min_off: int = MIN_OFF_WINDOWS


class _Judge:
    """The per-window tests, with the settings turned into linear ratios."""

    __slots__ = (
        "max_forward",
        "max_harmonic",
        "max_reverse",
        "min_energy",
        "min_purity",
        "min_tone_power",
        "relative_peak",
    )

    def __init__(self, settings: DetectorSettings) -> None:
        # a sine of amplitude A holds A*A/2 power per sample
        amplitude = FULL_SCALE * 10.0 ** (settings.min_level_dbfs / 20.0)
        self.min_tone_power = amplitude * amplitude / 2.0
        # the least energy a window holding two tones at the minimum level can have
        self.min_energy = 2.0 * self.min_tone_power * WINDOW
        self.max_forward = 10.0 ** (settings.max_forward_twist_db / 10.0)
        self.max_reverse = 10.0 ** (settings.max_reverse_twist_db / 10.0)
        self.relative_peak = 10.0 ** (settings.min_relative_peak_db / 10.0)
        self.max_harmonic = 10.0 ** (settings.max_harmonic_db / 10.0)
        self.min_purity = settings.min_purity

    def screen(
        self, tones: npt.NDArray[np.float64], energy: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.bool_]:
        """Which windows are loud and pure enough to hold a digit (vector test)."""
        row = tones[..., 0:4].max(axis=-1)
        column = tones[..., 4:8].max(axis=-1)
        loud = np.minimum(row, column) >= self.min_tone_power * WINDOW
        # the two tones' share of the window's energy
        pure = row + column >= self.min_purity * energy
        return np.asarray(loud & pure)

    def judge(
        self, tones: npt.NDArray[np.float64], harmonics: npt.NDArray[np.float64]
    ) -> str | None:
        """Twist, relative peak and harmonic tests for a loud, pure window."""
        rows, columns = tones[0:4], tones[4:8]
        row = int(np.argmax(rows))
        column = int(np.argmax(columns))
        row_power, column_power = float(rows[row]), float(columns[column])
        if column_power > row_power * self.max_forward:
            return None
        if row_power > column_power * self.max_reverse:
            return None
        # each tone stands clear of the others of its group
        if np.count_nonzero(rows * self.relative_peak > row_power) > 1:
            return None
        if np.count_nonzero(columns * self.relative_peak > column_power) > 1:
            return None
        # talk-off: real voices and instruments have harmonics, DTMF tones do not.
        # TODO: talk-off was measured on synthetic speech and music only (about one
        # false digit per 1000 s of sustained notes); the Bellcore/Q.24 talk-off
        # recordings were not available to tune against.
        overtones = float(harmonics[row] + harmonics[4 + column])
        if overtones > (row_power + column_power) * self.max_harmonic:
            return None
        return KEYPAD[row][column]


class _Debouncer:
    """Per-stream on/off state: report a digit once per press."""

    __slots__ = ("candidate", "min_off", "min_on", "off", "on", "reported")

    def __init__(self, min_on: int, min_off: int) -> None:
        self.min_on = min_on
        self.min_off = min_off
        self.candidate: str | None = None
        self.reported: str | None = None
        self.on = 0
        self.off = 0

    @property
    def idle(self) -> bool:
        """True when a window without a digit would change nothing."""
        return self.candidate is None and self.reported is None

    def step(self, hit: str | None) -> str | None:
        """Advance by one window; return a digit to report."""
        if hit is not None and hit == self.candidate:
            self.on += 1
        else:
            self.candidate = hit
            self.on = 1 if hit is not None else 0
        if hit != self.reported:
            self.off += 1
            if self.off >= self.min_off:
                self.reported = None
        else:
            self.off = 0
        if hit is not None and self.reported is None and self.on >= self.min_on:
            self.reported = hit
            self.off = 0
            return hit
        return None


class GoertzelDetector:
    """In-band DTMF detector for one stream of 8 kHz int16 audio.

    Feed frames (any length, usually 160 samples = 20 ms) to :meth:`feed`; it returns
    the digits whose tones started being recognised in that audio, each press once.
    For many streams at once use :class:`GoertzelBank`.

    :param settings: the thresholds; :class:`DetectorSettings` defaults if omitted.
    """

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()
        self._judge = _Judge(self.settings)
        self.reset()

    def reset(self) -> None:
        """Forget buffered audio and any digit in progress."""
        self._pending: npt.NDArray[np.float64] = np.zeros(HOP)  # starts on silence
        self._debouncer = _Debouncer(self.settings.min_on, self.settings.min_off)

    def feed(self, frame: npt.ArrayLike) -> list[str]:
        """Analyse more audio; return the digits newly detected in it."""
        samples = np.concatenate(
            [self._pending, np.asarray(frame, dtype=np.float64).ravel()]
        )
        halves = samples.size // HOP  # at least 1: the pending half is always kept
        self._pending = samples[(halves - 1) * HOP :]
        if halves < 2:
            return []
        debouncer = self._debouncer
        if debouncer.idle and float(np.dot(samples, samples)) < self._judge.min_energy:
            return []  # too quiet for any window to hold two tones: skip the analysis
        tones, harmonics, energy = _analyse(samples[: halves * HOP].reshape(1, -1, HOP))
        plausible = self._judge.screen(tones, energy)[0]
        if debouncer.idle and not plausible.any():
            return []
        digits: list[str] = []
        for i in range(halves - 1):
            hit = (
                self._judge.judge(tones[0, i], harmonics[0, i])
                if plausible[i]
                else None
            )
            digit = debouncer.step(hit)
            if digit is not None:
                digits.append(digit)
        return digits


class GoertzelBank:
    """In-band DTMF detectors for many streams, fed one tick of frames at a time.

    :meth:`feed` takes a ``(streams, samples)`` array (``samples`` a multiple of 80,
    usually 160) and does the arithmetic for every stream in a few numpy calls; only
    streams with a plausible tone or a digit in progress cost Python work.

    :param streams: the number of rows :meth:`feed` expects.
    """

    def __init__(self, streams: int, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()
        self.streams = streams
        self._judge = _Judge(self.settings)
        self._last_half = np.zeros((streams, 1, HOP))
        self._debouncers = [
            _Debouncer(self.settings.min_on, self.settings.min_off)
            for _ in range(streams)
        ]

    def reset(self, stream: int) -> None:
        """Forget one stream's history (a new call took its row)."""
        self._last_half[stream] = 0.0
        self._debouncers[stream] = _Debouncer(
            self.settings.min_on, self.settings.min_off
        )

    def feed(self, frames: npt.ArrayLike) -> list[tuple[int, str]]:
        """Analyse one tick; return ``(stream, digit)`` for each digit detected."""
        samples = np.asarray(frames, dtype=np.float64)
        if (
            samples.ndim != 2
            or samples.shape[0] != self.streams
            or samples.shape[1] % HOP
        ):
            raise ValueError(
                f"expected ({self.streams}, k*{HOP}) samples, got {samples.shape}"
            )
        halves = np.concatenate(
            [self._last_half, samples.reshape(self.streams, -1, HOP)], axis=1
        )
        self._last_half = halves[:, -1:].copy()
        tones, harmonics, energy = _analyse(halves)
        plausible = self._judge.screen(tones, energy)
        busy = np.flatnonzero(plausible.any(axis=1)).tolist()
        active = [s for s, d in enumerate(self._debouncers) if not d.idle]
        found: list[tuple[int, str]] = []
        for stream in sorted(set(busy).union(active)):
            debouncer = self._debouncers[stream]
            for i in range(tones.shape[1]):
                hit = (
                    self._judge.judge(tones[stream, i], harmonics[stream, i])
                    if plausible[stream, i]
                    else None
                )
                digit = debouncer.step(hit)
                if digit is not None:
                    found.append((stream, digit))
        return found
