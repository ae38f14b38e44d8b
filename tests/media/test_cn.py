"""Comfort noise payloads (RFC 3389) and their recognition by payload type."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.cn import (
    COMFORT_NOISE_PT,
    CnError,
    ComfortNoise,
    build_comfort_noise,
    comfort_noise,
    is_comfort_noise,
    level_dbov,
    parse_comfort_noise,
)
from media.rtp import PayloadType


def test_payload_type_recognition() -> None:
    assert COMFORT_NOISE_PT == int(PayloadType.CN) == 13
    assert is_comfort_noise(13)
    for audio in (PayloadType.PCMU, PayloadType.PCMA, 101, 127):
        assert not is_comfort_noise(audio)
    assert is_comfort_noise(105, dynamic={105})  # CN/16000 negotiated dynamically
    assert not is_comfort_noise(106, dynamic=(105,))


def test_parse_and_build() -> None:
    assert parse_comfort_noise(b"\x40") == ComfortNoise(level=64)
    parsed = parse_comfort_noise(bytearray(b"\x28\x81\x7f\x00"))
    assert parsed == ComfortNoise(level=40, coefficients=(0x81, 0x7F, 0x00))
    assert parsed.dbov == -40
    assert build_comfort_noise(40, (0x81, 0x7F, 0x00)) == b"\x28\x81\x7f\x00"
    assert build_comfort_noise(127) == b"\x7f"


def test_parse_errors() -> None:
    with pytest.raises(CnError) as info:
        parse_comfort_noise(b"")
    assert info.value.reason == "short"
    with pytest.raises(CnError) as info:
        parse_comfort_noise(b"\x80")
    assert info.value.reason == "level"


def test_build_errors() -> None:
    with pytest.raises(ValueError):
        build_comfort_noise(128)
    with pytest.raises(ValueError):
        build_comfort_noise(-1)
    with pytest.raises(ValueError):
        build_comfort_noise(10, (256,))


@given(st.binary(max_size=40))
def test_fuzz_parse(data: bytes) -> None:
    try:
        parsed = parse_comfort_noise(data)
    except CnError as exc:
        assert exc.reason in {"short", "level"}
    else:
        assert build_comfort_noise(parsed.level, parsed.coefficients) == data


@pytest.mark.parametrize("level", [20, 40, 60])
def test_generated_noise_has_the_signalled_level(level: int) -> None:
    noise = comfort_noise(level, 8000, np.random.default_rng(level))
    assert noise.dtype == np.int16 and noise.shape == (8000,)
    assert abs(level_dbov(noise) - level) <= 1


def test_level_of_silence_and_full_scale() -> None:
    assert level_dbov(np.zeros(160, np.int16)) == 127
    assert level_dbov(np.zeros(0, np.int16)) == 127
    square = np.where(np.arange(160) % 2, 32767, -32767).astype(np.int16)
    assert level_dbov(square) == 0
