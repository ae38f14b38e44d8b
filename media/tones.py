"""Tone generators: sines, call-progress cadences and DTMF, as 8 kHz int16 numpy frames.

Call-progress tones follow ITU-T E.180 and its national supplements: the CEPT 425 Hz
plan (ETSI ES 201 970) for ``"eu"``, the North American precise tone plan for ``"us"``
and the BT plan for ``"uk"``. DTMF frequencies are ITU-T Q.23.

Theory of operation: a :class:`SineGenerator` keeps each oscillator's phase between
calls, so consecutive 160-sample frames join without a click whatever the frequency. A
:class:`CadenceGenerator` gates such an oscillator with an on/off pattern counted in
samples, so a cadence that is not a multiple of 20 ms still switches on the right
sample. Levels are in dBFS per tone, where 0 dBFS is a full-scale sine (amplitude
32767); G.711's 0 dBm0 is about -3.2 dBFS, so the usual -13 dBm0 call-progress level is
about -16 dBFS.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from media.dtmf import digit_frequencies

logger = logging.getLogger(__name__)

__all__ = [
    "BUSY",
    "CONGESTION",
    "DIAL",
    "FRAME_SAMPLES",
    "RINGBACK",
    "SAMPLE_RATE",
    "CadenceGenerator",
    "SineGenerator",
    "ToneSpec",
    "busy",
    "dtmf_tone",
    "ringback",
    "silence_frame",
    "tone",
]

SAMPLE_RATE: Final = 8000  # RFC 3551 4.5.14: G.711 is sampled at 8 kHz
FRAME_SAMPLES: Final = 160  # 20 ms, RFC 3551 4.2 default packetisation
FULL_SCALE: Final = 32767.0
TWO_PI: Final = 2.0 * math.pi
DEFAULT_LEVEL_DBFS: Final = -16.0  # about -13 dBm0, the usual call-progress level
DTMF_LEVEL_DBFS: Final = -10.0  # per tone, about -7 dBm0 (Q.23 sends -6 to -9 dBm0)

Samples = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToneSpec:
    """A call-progress tone: frequencies in Hz and a cadence of on/off milliseconds.

    ``cadence`` alternates on, off, on, off... and repeats; empty means continuous.
    """

    frequencies: tuple[float, ...]
    cadence: tuple[int, ...] = ()
    level_dbfs: float = DEFAULT_LEVEL_DBFS


# ITU-T E.180 supplement 2 / ETSI ES 201 970 (eu), ANSI T1.401 precise tones (us), BT (uk)
RINGBACK: Final = {
    "eu": ToneSpec(frequencies=(425.0,), cadence=(1000, 4000)),
    "us": ToneSpec(frequencies=(440.0, 480.0), cadence=(2000, 4000)),
    "uk": ToneSpec(frequencies=(400.0, 450.0), cadence=(400, 200, 400, 2000)),
}
BUSY: Final = {
    "eu": ToneSpec(frequencies=(425.0,), cadence=(500, 500)),
    "us": ToneSpec(frequencies=(480.0, 620.0), cadence=(500, 500)),
    "uk": ToneSpec(frequencies=(400.0,), cadence=(375, 375)),
}
CONGESTION: Final = {
    "eu": ToneSpec(frequencies=(425.0,), cadence=(250, 250)),
    "us": ToneSpec(frequencies=(480.0, 620.0), cadence=(250, 250)),
    "uk": ToneSpec(frequencies=(400.0,), cadence=(400, 350, 225, 525)),
}
DIAL: Final = {
    "eu": ToneSpec(frequencies=(425.0,)),
    "us": ToneSpec(frequencies=(350.0, 440.0)),
    "uk": ToneSpec(frequencies=(350.0, 440.0)),
}


def _amplitude(level_dbfs: float) -> float:
    return float(FULL_SCALE * 10.0 ** (level_dbfs / 20.0))


def _to_int16(signal: npt.NDArray[np.float64]) -> Samples:
    return np.clip(np.rint(signal), -32768, 32767).astype(np.int16)


def silence_frame(samples: int = FRAME_SAMPLES) -> Samples:
    """A frame of digital silence."""
    return np.zeros(samples, dtype=np.int16)


class SineGenerator:
    """A sum of sines at one level each, with continuous phase across calls.

    :param frequencies: the tones in Hz (one for a pure tone, two for dual tones).
    :param level_dbfs: the level of each tone, 0 dBFS being a full-scale sine.
    """

    def __init__(
        self,
        frequencies: Sequence[float],
        level_dbfs: float = DEFAULT_LEVEL_DBFS,
        *,
        sample_rate: int = SAMPLE_RATE,
        levels_dbfs: Sequence[float] | None = None,
    ) -> None:
        if not frequencies:
            raise ValueError("at least one frequency is needed")
        if levels_dbfs is not None and len(levels_dbfs) != len(frequencies):
            raise ValueError("one level per frequency is needed")
        levels = (
            levels_dbfs if levels_dbfs is not None else [level_dbfs] * len(frequencies)
        )
        self._step = np.array([TWO_PI * f / sample_rate for f in frequencies])
        self._amplitude = np.array([_amplitude(level) for level in levels])
        self._phase = np.zeros(len(frequencies))

    def generate_float(self, samples: int) -> npt.NDArray[np.float64]:
        """The next ``samples`` samples, unrounded."""
        n = np.arange(samples, dtype=np.float64)[:, None]
        signal = (self._amplitude * np.sin(self._phase + self._step * n)).sum(axis=1)
        self._phase = (self._phase + self._step * samples) % TWO_PI
        return np.asarray(signal, dtype=np.float64)

    def generate(self, samples: int) -> Samples:
        """The next ``samples`` samples as int16."""
        return _to_int16(self.generate_float(samples))

    def frame(self) -> Samples:
        """The next 20 ms frame."""
        return self.generate(FRAME_SAMPLES)


class CadenceGenerator:
    """A tone switched on and off by a repeating cadence.

    :param cadence: milliseconds on, off, on, off...; empty means always on.
    """

    def __init__(
        self,
        frequencies: Sequence[float],
        cadence: Sequence[int] = (),
        level_dbfs: float = DEFAULT_LEVEL_DBFS,
        *,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        if len(cadence) % 2:
            raise ValueError("a cadence alternates on and off: give an even count")
        if any(ms < 0 for ms in cadence) or (cadence and sum(cadence) == 0):
            raise ValueError("cadence durations must be non-negative and not all 0")
        self._sine = SineGenerator(frequencies, level_dbfs, sample_rate=sample_rate)
        pattern = np.zeros(0, dtype=bool)
        for i, ms in enumerate(cadence):
            span = np.full(ms * sample_rate // 1000, i % 2 == 0, dtype=bool)
            pattern = np.concatenate([pattern, span])
        self._gate = pattern
        self._position = 0

    @classmethod
    def from_spec(
        cls, spec: ToneSpec, *, sample_rate: int = SAMPLE_RATE
    ) -> CadenceGenerator:
        """A generator playing a :class:`ToneSpec`."""
        return cls(
            spec.frequencies, spec.cadence, spec.level_dbfs, sample_rate=sample_rate
        )

    def generate(self, samples: int) -> Samples:
        """The next ``samples`` samples as int16."""
        signal = self._sine.generate_float(samples)
        if self._gate.size:
            index = (self._position + np.arange(samples)) % self._gate.size
            signal = np.where(self._gate[index], signal, 0.0)
            self._position = (self._position + samples) % self._gate.size
        return _to_int16(signal)

    def frame(self) -> Samples:
        """The next 20 ms frame."""
        return self.generate(FRAME_SAMPLES)


def _spec(table: dict[str, ToneSpec], region: str) -> ToneSpec:
    try:
        return table[region]
    except KeyError:
        raise ValueError(f"no tone plan for region {region!r}") from None


def ringback(region: str = "eu") -> CadenceGenerator:
    """Ringback (audible ringing) for ``region`` ("eu", "us" or "uk")."""
    return CadenceGenerator.from_spec(_spec(RINGBACK, region))


def busy(region: str = "eu") -> CadenceGenerator:
    """Busy tone for ``region`` ("eu", "us" or "uk")."""
    return CadenceGenerator.from_spec(_spec(BUSY, region))


def tone(
    frequencies: Sequence[float],
    duration_ms: int,
    level_dbfs: float = DEFAULT_LEVEL_DBFS,
    *,
    sample_rate: int = SAMPLE_RATE,
) -> Samples:
    """A one-off steady tone of ``duration_ms`` milliseconds."""
    generator = SineGenerator(frequencies, level_dbfs, sample_rate=sample_rate)
    return generator.generate(duration_ms * sample_rate // 1000)


def dtmf_tone(
    digit: str,
    duration_ms: int,
    level_dbfs: float = DTMF_LEVEL_DBFS,
    *,
    twist_db: float = 0.0,
    sample_rate: int = SAMPLE_RATE,
) -> Samples:
    """The dual tone of a keypad digit (ITU-T Q.23).

    :param twist_db: how much louder the high (column) tone is than the low (row) one;
        ``level_dbfs`` is the low tone's level.
    """
    row, column = digit_frequencies(digit)
    generator = SineGenerator(
        (row, column),
        sample_rate=sample_rate,
        levels_dbfs=(level_dbfs, level_dbfs + twist_db),
    )
    return generator.generate(duration_ms * sample_rate // 1000)
