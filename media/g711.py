"""G.711 mu-law and A-law companding on numpy arrays (ITU-T G.711, RFC 3551 section 4.5.14).

Every conversion is one table lookup: the encoders index a 65536-entry ``uint8`` table with
the int16 samples viewed as ``uint16``; the decoders index a 256-entry ``int16`` table with
the codes. A lookup works on any shape, so one call converts a single 160-sample frame or a
``(streams, 160)`` batch holding every leg of a 20 ms tick.

Theory of operation: the tables are built once at import with vectorised integer
arithmetic and reproduce the standard library's ``audioop`` bit for bit (the tests compare
all 65536 linear values and all 256 codes). That matters because two G.711-valid encoders
can differ by one step on negative samples: audioop's mu-law encoder first drops the two
low bits (16 -> 14 bit, arithmetic shift) before adding the bias, and its A-law encoder
drops three (16 -> 13 bit). The common "bias 0x84, clip 32635" 16-bit formula differs from
it on many frames and would break golden-file tests (docs: PERFORMANCE.md section 2.3).

The transcoding tables :data:`ULAW_TO_ALAW` and :data:`ALAW_TO_ULAW` are by definition
decode-then-encode through these tables, so transcoding a stream directly gives the same
bytes as going through linear PCM.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

__all__ = [
    "ALAW_DECODE_TABLE",
    "ALAW_ENCODE_TABLE",
    "ALAW_SILENCE",
    "ALAW_TO_ULAW",
    "ULAW_DECODE_TABLE",
    "ULAW_ENCODE_TABLE",
    "ULAW_SILENCE",
    "ULAW_TO_ALAW",
    "alaw_decode",
    "alaw_decode_bytes",
    "alaw_encode",
    "alaw_encode_bytes",
    "alaw_to_ulaw",
    "ulaw_decode",
    "ulaw_decode_bytes",
    "ulaw_encode",
    "ulaw_encode_bytes",
    "ulaw_to_alaw",
]

# G.711 table 2a (mu-law): codes are sent complemented; 8 segments of 16 steps.
ULAW_BIAS = 0x84  # 132: decoder bias (33 in the 14-bit domain, shifted left 2)
ULAW_BIAS_14 = (
    0x21  # 33: encoder bias in the 14-bit domain (audioop's st_14linear2ulaw)
)
ULAW_CLIP_14 = 8159  # largest 14-bit magnitude before the bias is added
ULAW_SEGMENT_ENDS = np.array(
    [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32
)
# G.711 table 1a (A-law): even bits inverted (XOR 0x55) on the line.
ALAW_EVEN_BIT_MASK = 0x55
ALAW_SEGMENT_ENDS = np.array(
    [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32
)
SIGN_BIT = 0x80
SEGMENT_SHIFT = 4
QUANT_MASK = 0x0F

# Codes for digital silence (linear 0), handy for filling gaps.
ULAW_SILENCE = 0xFF  # RFC 3551 4.5.14 (mu-law zero is 0xFF; 0x7F is "negative zero")
ALAW_SILENCE = 0xD5  # A-law has no zero: this is what 0 encodes to, it decodes to +8

Codes = npt.NDArray[np.uint8]
Samples = npt.NDArray[np.int16]


def _all_linear_values() -> npt.NDArray[np.int32]:
    """Every int16 value, ordered by its uint16 bit pattern (the encode table's index)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode_table() -> Codes:
    pcm = _all_linear_values() >> 2  # 16 -> 14 bit, arithmetic shift
    negative = pcm < 0
    mask = np.where(negative, 0x7F, 0xFF)
    magnitude = np.minimum(np.where(negative, -pcm, pcm), ULAW_CLIP_14) + ULAW_BIAS_14
    segment = np.searchsorted(ULAW_SEGMENT_ENDS, magnitude, side="left").astype(
        np.int32
    )
    mantissa = (magnitude >> np.minimum(segment + 1, 15)) & QUANT_MASK
    code = np.where(segment >= 8, 0x7F, (segment << SEGMENT_SHIFT) | mantissa)
    return (code ^ mask).astype(np.uint8)


def _build_ulaw_decode_table() -> Samples:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> SEGMENT_SHIFT) & 0x07
    mantissa = code & QUANT_MASK
    magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS
    return np.where(code & SIGN_BIT, -magnitude, magnitude).astype(np.int16)


def _build_alaw_encode_table() -> Codes:
    pcm = _all_linear_values() >> 3  # 16 -> 13 bit, arithmetic shift
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5)
    magnitude = np.where(negative, -pcm - 1, pcm)
    segment = np.searchsorted(ALAW_SEGMENT_ENDS, magnitude, side="left").astype(
        np.int32
    )
    shift = np.where(segment < 2, 1, segment)
    mantissa = (magnitude >> np.minimum(shift, 15)) & QUANT_MASK
    code = np.where(segment >= 8, 0x7F, (segment << SEGMENT_SHIFT) | mantissa)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_decode_table() -> Samples:
    code = np.arange(256, dtype=np.int32) ^ ALAW_EVEN_BIT_MASK
    exponent = (code >> SEGMENT_SHIFT) & 0x07
    mantissa = (code & QUANT_MASK) << 4
    magnitude = np.where(
        exponent == 0,
        mantissa + 8,
        (mantissa + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(code & SIGN_BIT, magnitude, -magnitude).astype(np.int16)


ULAW_ENCODE_TABLE: Codes = _build_ulaw_encode_table()
ULAW_DECODE_TABLE: Samples = _build_ulaw_decode_table()
ALAW_ENCODE_TABLE: Codes = _build_alaw_encode_table()
ALAW_DECODE_TABLE: Samples = _build_alaw_decode_table()

ULAW_TO_ALAW: Codes = ALAW_ENCODE_TABLE[ULAW_DECODE_TABLE.view(np.uint16)]
ALAW_TO_ULAW: Codes = ULAW_ENCODE_TABLE[ALAW_DECODE_TABLE.view(np.uint16)]

for _table in (
    ULAW_ENCODE_TABLE,
    ULAW_DECODE_TABLE,
    ALAW_ENCODE_TABLE,
    ALAW_DECODE_TABLE,
    ULAW_TO_ALAW,
    ALAW_TO_ULAW,
):
    _table.flags.writeable = False


def _as_index16(samples: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    return np.asarray(samples, dtype=np.int16).view(np.uint16)


def _as_codes(codes: npt.ArrayLike) -> Codes:
    return np.asarray(codes, dtype=np.uint8)


def ulaw_encode(samples: npt.ArrayLike) -> Codes:
    """Encode int16 linear samples (any shape, e.g. ``(160,)`` or ``(streams, 160)``)."""
    return ULAW_ENCODE_TABLE[_as_index16(samples)]


def ulaw_decode(codes: npt.ArrayLike) -> Samples:
    """Decode mu-law codes (uint8, any shape) to int16 linear samples."""
    return ULAW_DECODE_TABLE[_as_codes(codes)]


def alaw_encode(samples: npt.ArrayLike) -> Codes:
    """Encode int16 linear samples (any shape) to A-law codes."""
    return ALAW_ENCODE_TABLE[_as_index16(samples)]


def alaw_decode(codes: npt.ArrayLike) -> Samples:
    """Decode A-law codes (uint8, any shape) to int16 linear samples."""
    return ALAW_DECODE_TABLE[_as_codes(codes)]


def ulaw_to_alaw(codes: npt.ArrayLike) -> Codes:
    """Transcode mu-law codes to A-law without going through linear PCM."""
    return ULAW_TO_ALAW[_as_codes(codes)]


def alaw_to_ulaw(codes: npt.ArrayLike) -> Codes:
    """Transcode A-law codes to mu-law without going through linear PCM."""
    return ALAW_TO_ULAW[_as_codes(codes)]


def ulaw_encode_bytes(pcm: bytes | bytearray | memoryview) -> bytes:
    """Encode native-endian 16-bit PCM bytes (an RTP payload's worth) to mu-law bytes."""
    return ULAW_ENCODE_TABLE[np.frombuffer(pcm, dtype=np.uint16)].tobytes()


def ulaw_decode_bytes(payload: bytes | bytearray | memoryview) -> bytes:
    """Decode a mu-law payload to native-endian 16-bit PCM bytes."""
    return ULAW_DECODE_TABLE[np.frombuffer(payload, dtype=np.uint8)].tobytes()


def alaw_encode_bytes(pcm: bytes | bytearray | memoryview) -> bytes:
    """Encode native-endian 16-bit PCM bytes to A-law bytes."""
    return ALAW_ENCODE_TABLE[np.frombuffer(pcm, dtype=np.uint16)].tobytes()


def alaw_decode_bytes(payload: bytes | bytearray | memoryview) -> bytes:
    """Decode an A-law payload to native-endian 16-bit PCM bytes."""
    return ALAW_DECODE_TABLE[np.frombuffer(payload, dtype=np.uint8)].tobytes()
