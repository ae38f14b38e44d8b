"""Comfort noise payloads (RFC 3389), static payload type 13 (RFC 3551 section 4.5.8).

A CN packet says "the sender went silent; play noise of this level until audio
resumes". Its payload is one octet of noise level in -dBov (RFC 3389 section 3.1)
followed by optional reflection coefficients describing the noise spectrum (3.2). It
must never be fed to a G.711 decoder: a one-byte payload would play as one loud sample
and a click. :func:`is_comfort_noise` is the check to make before decoding.

Theory of operation: levels are in dBov, 0 dBov being a full-scale square wave. For
16-bit linear audio we take the RMS of 32767 as the reference (RFC 3389's G.711 mu-law
example, a +/-8031 square wave in the 14-bit domain, is 0.17 dB below it). The spectral
coefficients are carried opaquely; :func:`comfort_noise` makes white noise at the level.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

__all__ = [
    "COMFORT_NOISE_PT",
    "CnError",
    "ComfortNoise",
    "build_comfort_noise",
    "comfort_noise",
    "is_comfort_noise",
    "level_dbov",
    "parse_comfort_noise",
]

# RFC 3551 section 4.5.8 / table 4: CN is static payload type 13 at 8000 Hz.
COMFORT_NOISE_PT: Final = 13
# RFC 3389 section 3.1: the level is 7 bits of -dBov, the top bit of the octet is 0.
LEVEL_MASK: Final = 0x7F
MAX_LEVEL: Final = 127
# RFC 3389 section 3.2: at most this many reflection coefficients is sensible (ours;
# the RFC bounds the model order only by the packet).
MAX_COEFFICIENTS: Final = 255
REFERENCE_RMS: Final = 32767.0  # 0 dBov: full-scale square wave, 16-bit linear

Samples = npt.NDArray[np.int16]


class CnError(Exception):
    """A comfort noise payload cannot be read.

    :param reason: short counter key: ``"short"`` (empty payload) or ``"level"`` (the
        reserved top bit of the level octet is set).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class ComfortNoise:
    """A parsed CN payload.

    :param level: the noise level as a positive number of -dBov (0 loudest, 127
        quietest): ``level=40`` means -40 dBov.
    :param coefficients: the quantised reflection coefficients, as sent.
    """

    level: int
    coefficients: tuple[int, ...] = ()

    @property
    def dbov(self) -> int:
        """The level in dBov (a negative number or 0)."""
        return -self.level


def is_comfort_noise(payload_type: int, dynamic: Collection[int] = ()) -> bool:
    """True if packets of ``payload_type`` carry comfort noise, not audio.

    :param dynamic: payload types negotiated as ``CN`` at other clock rates in SDP.
    """
    return payload_type == COMFORT_NOISE_PT or payload_type in dynamic


def parse_comfort_noise(payload: bytes | bytearray | memoryview) -> ComfortNoise:
    """Read a CN payload; raise :class:`CnError` if it is empty or malformed."""
    if len(payload) == 0:
        raise CnError("short", "comfort noise payload is empty")
    first = payload[0]
    if first > MAX_LEVEL:
        raise CnError(
            "level", f"noise level octet {first:#04x} has the reserved bit set"
        )
    return ComfortNoise(level=first, coefficients=tuple(payload[1:]))


def build_comfort_noise(level: int, coefficients: tuple[int, ...] = ()) -> bytes:
    """Build a CN payload for a noise ``level`` in -dBov (0..127)."""
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"noise level {level} is not in 0..{MAX_LEVEL}")
    if len(coefficients) > MAX_COEFFICIENTS or any(
        not 0 <= c <= 0xFF for c in coefficients
    ):
        raise ValueError("reflection coefficients must be octets")
    return bytes((level, *coefficients))


def level_dbov(samples: npt.ArrayLike) -> int:
    """The level of some audio as a CN level octet (positive -dBov, 0..127)."""
    data = np.asarray(samples, dtype=np.float64)
    if data.size == 0:
        return MAX_LEVEL
    rms = math.sqrt(float(np.mean(data * data)))
    if rms <= 0.0:
        return MAX_LEVEL
    level = -20.0 * math.log10(rms / REFERENCE_RMS)
    return min(max(round(level), 0), MAX_LEVEL)


def comfort_noise(
    level: int, samples: int = 160, rng: np.random.Generator | None = None
) -> Samples:
    """White noise at a CN ``level`` (positive -dBov) as int16 samples."""
    # TODO: RFC 3389 3.2 spectral shaping from the reflection coefficients is not
    # applied; the caller hears white noise at the right level, not the peer's hiss.
    generator = rng if rng is not None else np.random.default_rng()
    rms = REFERENCE_RMS * 10.0 ** (-level / 20.0)
    noise = generator.normal(0.0, rms, samples)
    return np.clip(np.rint(noise), -32768, 32767).astype(np.int16)
