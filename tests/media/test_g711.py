"""G.711 tables against the standard library's audioop, on every value."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest

from media import g711
from media.tones import tone

ALL_LINEAR = np.arange(65536, dtype=np.uint16).view(np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)


@pytest.fixture(scope="module")
def audioop() -> ModuleType:
    # deprecated in 3.11-3.12, provided by audioop-lts from 3.13: tests only
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module: ModuleType = pytest.importorskip("audioop")
    return module


def _codes(data: bytes) -> npt.NDArray[np.uint8]:
    return np.frombuffer(data, dtype=np.uint8)


def _linear(data: bytes) -> npt.NDArray[np.int16]:
    return np.frombuffer(data, dtype=np.int16)


def test_ulaw_encode_matches_audioop_on_every_sample(audioop: ModuleType) -> None:
    expected = _codes(audioop.lin2ulaw(ALL_LINEAR.tobytes(), 2))
    np.testing.assert_array_equal(g711.ulaw_encode(ALL_LINEAR), expected)


def test_alaw_encode_matches_audioop_on_every_sample(audioop: ModuleType) -> None:
    expected = _codes(audioop.lin2alaw(ALL_LINEAR.tobytes(), 2))
    np.testing.assert_array_equal(g711.alaw_encode(ALL_LINEAR), expected)


def test_ulaw_decode_matches_audioop_on_every_code(audioop: ModuleType) -> None:
    expected = _linear(audioop.ulaw2lin(ALL_CODES.tobytes(), 2))
    np.testing.assert_array_equal(g711.ulaw_decode(ALL_CODES), expected)


def test_alaw_decode_matches_audioop_on_every_code(audioop: ModuleType) -> None:
    expected = _linear(audioop.alaw2lin(ALL_CODES.tobytes(), 2))
    np.testing.assert_array_equal(g711.alaw_decode(ALL_CODES), expected)


def test_byte_helpers_match_audioop(audioop: ModuleType) -> None:
    pcm = ALL_LINEAR.tobytes()
    codes = ALL_CODES.tobytes()
    assert g711.ulaw_encode_bytes(pcm) == audioop.lin2ulaw(pcm, 2)
    assert g711.alaw_encode_bytes(pcm) == audioop.lin2alaw(pcm, 2)
    assert g711.ulaw_decode_bytes(codes) == audioop.ulaw2lin(codes, 2)
    assert g711.alaw_decode_bytes(memoryview(codes)) == audioop.alaw2lin(codes, 2)


def test_transcoding_tables_are_decode_then_encode() -> None:
    np.testing.assert_array_equal(
        g711.ULAW_TO_ALAW, g711.alaw_encode(g711.ulaw_decode(ALL_CODES))
    )
    np.testing.assert_array_equal(
        g711.ALAW_TO_ULAW, g711.ulaw_encode(g711.alaw_decode(ALL_CODES))
    )
    assert g711.ULAW_TO_ALAW.dtype == np.uint8 and g711.ULAW_TO_ALAW.shape == (256,)
    assert g711.ALAW_TO_ULAW.dtype == np.uint8 and g711.ALAW_TO_ULAW.shape == (256,)


def test_transcoding_matches_audioop_through_linear(audioop: ModuleType) -> None:
    codes = ALL_CODES.tobytes()
    via_linear = audioop.lin2alaw(audioop.ulaw2lin(codes, 2), 2)
    assert g711.ulaw_to_alaw(ALL_CODES).tobytes() == via_linear
    via_linear = audioop.lin2ulaw(audioop.alaw2lin(codes, 2), 2)
    assert g711.alaw_to_ulaw(ALL_CODES).tobytes() == via_linear


def test_encode_of_decode_is_identity_except_negative_zero() -> None:
    ulaw = g711.ulaw_encode(g711.ulaw_decode(ALL_CODES))
    assert list(np.nonzero(ulaw != ALL_CODES)[0]) == [0x7F]  # mu-law -0 becomes +0
    np.testing.assert_array_equal(
        g711.alaw_encode(g711.alaw_decode(ALL_CODES)), ALL_CODES
    )


def test_silence_codes() -> None:
    assert g711.ulaw_decode(np.array([g711.ULAW_SILENCE]))[0] == 0
    # A-law has no zero level: its silence code is the smallest positive step, +8
    assert g711.alaw_decode(np.array([g711.ALAW_SILENCE]))[0] == 8
    assert g711.ulaw_encode(np.zeros(1, np.int16))[0] == g711.ULAW_SILENCE
    assert g711.alaw_encode(np.zeros(1, np.int16))[0] == g711.ALAW_SILENCE


@pytest.mark.parametrize(
    ("encode", "decode"),
    [(g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)],
)
def test_batches_of_streams_convert_like_single_frames(
    encode: Callable[[npt.ArrayLike], npt.NDArray[np.uint8]],
    decode: Callable[[npt.ArrayLike], npt.NDArray[np.int16]],
) -> None:
    rng = np.random.default_rng(7)
    frames = rng.integers(-32768, 32768, size=(50, 160)).astype(np.int16)
    codes = encode(frames)
    assert codes.shape == (50, 160) and codes.dtype == np.uint8
    for row in range(50):
        np.testing.assert_array_equal(codes[row], encode(frames[row]))
    linear = decode(codes)
    assert linear.shape == (50, 160) and linear.dtype == np.int16
    np.testing.assert_array_equal(linear[3], decode(codes[3]))


def test_non_contiguous_and_list_inputs() -> None:
    frames = np.arange(-800, 800, dtype=np.int16).reshape(10, 160)
    column = frames[:, 5]  # a strided view
    np.testing.assert_array_equal(
        g711.ulaw_encode(column), g711.ulaw_encode(column.copy())
    )
    assert g711.alaw_encode([0, 1000, -1000]).tolist() == (
        g711.alaw_encode(np.array([0, 1000, -1000], np.int16)).tolist()
    )


def test_tables_are_read_only() -> None:
    with pytest.raises(ValueError):
        g711.ULAW_ENCODE_TABLE[0] = 1
    with pytest.raises(ValueError):
        g711.ALAW_TO_ULAW[0] = 1


def _spectrum_peak(samples: npt.NDArray[np.int16]) -> tuple[float, float]:
    """(frequency of the strongest bin, RMS level in dBFS re a full-scale sine)."""
    signal = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    frequency = float(np.fft.rfftfreq(signal.size, 1 / 8000)[int(np.argmax(spectrum))])
    rms = float(np.sqrt(np.mean(signal**2)))
    return frequency, 20 * np.log10(rms * np.sqrt(2) / 32767)


def test_1khz_tone_survives_encode_transcode_decode() -> None:
    original = tone([1000.0], 500, -10.0)
    for encode, transcode, decode in [
        (g711.ulaw_encode, g711.ulaw_to_alaw, g711.alaw_decode),
        (g711.alaw_encode, g711.alaw_to_ulaw, g711.ulaw_decode),
    ]:
        received = decode(transcode(encode(original)))
        frequency, level = _spectrum_peak(received)
        assert frequency == pytest.approx(1000.0, abs=8000 / original.size)
        assert level == pytest.approx(-10.0, abs=0.2)
        # companding noise stays well below the tone (G.711 SQNR is about 35 dB)
        noise = received.astype(np.float64) - original
        snr = 10 * np.log10(
            np.mean(original.astype(np.float64) ** 2) / np.mean(noise**2)
        )
        assert snr > 30.0
