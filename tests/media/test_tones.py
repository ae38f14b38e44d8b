"""Tone generators: sines, cadences and DTMF at 8 kHz."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from media.tones import (
    BUSY,
    FRAME_SAMPLES,
    RINGBACK,
    CadenceGenerator,
    SineGenerator,
    busy,
    dtmf_tone,
    ringback,
    silence_frame,
    tone,
)

FS = 8000


def _peaks(samples: npt.NDArray[np.int16], count: int) -> list[float]:
    spectrum = np.abs(
        np.fft.rfft(samples.astype(np.float64) * np.hanning(samples.size))
    )
    frequencies = np.fft.rfftfreq(samples.size, 1 / FS)
    order = np.argsort(spectrum)[::-1]
    peaks: list[float] = []
    for index in order:
        if all(abs(frequencies[index] - p) > 20 for p in peaks):
            peaks.append(float(frequencies[index]))
        if len(peaks) == count:
            break
    return sorted(peaks)


def _level_dbfs(samples: npt.NDArray[np.int16]) -> float:
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return float(20 * np.log10(rms * np.sqrt(2) / 32767))


def test_sine_frequency_and_level() -> None:
    samples = tone([1000.0], 1000, -10.0)
    assert samples.dtype == np.int16 and samples.size == FS
    assert _peaks(samples, 1) == [pytest.approx(1000.0, abs=1.0)]
    assert _level_dbfs(samples) == pytest.approx(-10.0, abs=0.05)


def test_phase_is_continuous_across_frames() -> None:
    for frequency in (425.0, 1000.0, 1336.7):
        framed = SineGenerator([frequency], -6.0)
        frames = np.concatenate([framed.frame() for _ in range(50)])
        whole = SineGenerator([frequency], -6.0).generate(50 * FRAME_SAMPLES)
        assert np.max(np.abs(frames.astype(int) - whole.astype(int))) <= 1
        # no jump at frame joins: the steepest step is the sine's own
        step = np.max(np.abs(np.diff(frames.astype(np.float64))))
        amplitude = 32767 * 10 ** (-6 / 20)
        assert step <= amplitude * 2 * np.pi * frequency / FS + 2


def test_dual_tone_levels() -> None:
    samples = SineGenerator([440.0, 480.0], levels_dbfs=[-10.0, -20.0]).generate(FS)
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    ratio = spectrum[480] / spectrum[440]  # 1 Hz bins over one second
    assert 20 * np.log10(ratio) == pytest.approx(-10.0, abs=0.1)


def test_full_scale_does_not_wrap() -> None:
    samples = SineGenerator([500.0, 600.0], 0.0).generate(800)
    assert samples.max() == 32767 and samples.min() == -32768


def _on_runs(samples: npt.NDArray[np.int16]) -> list[tuple[bool, int]]:
    """Cadence as (on, milliseconds) runs, judged per 10 ms block."""
    blocks = samples.reshape(-1, 80)
    active = [bool(np.any(block != 0)) for block in blocks]
    runs: list[tuple[bool, int]] = []
    for flag in active:
        if runs and runs[-1][0] == flag:
            runs[-1] = (flag, runs[-1][1] + 10)
        else:
            runs.append((flag, 10))
    return runs


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("eu", [(True, 1000), (False, 4000), (True, 1000), (False, 4000)]),
        ("us", [(True, 2000), (False, 4000), (True, 2000), (False, 2000)]),
        (
            "uk",
            [(True, 400), (False, 200), (True, 400), (False, 2000)] * 2 + [(True, 400)],
        ),
    ],
)
def test_ringback_cadence(region: str, expected: list[tuple[bool, int]]) -> None:
    samples = _frames(ringback(region), 500)  # 10 s
    runs = _on_runs(samples)
    assert runs[: len(expected)] == expected


def _frames(generator: CadenceGenerator, count: int) -> npt.NDArray[np.int16]:
    return np.concatenate([generator.frame() for _ in range(count)])


def test_ringback_frequencies() -> None:
    us = _frames(ringback("us"), 50)
    assert _peaks(us, 2) == [pytest.approx(440, abs=2), pytest.approx(480, abs=2)]
    eu = _frames(ringback("eu"), 50)
    assert _peaks(eu, 1) == [pytest.approx(425, abs=2)]
    assert RINGBACK["eu"].level_dbfs == pytest.approx(_level_dbfs(eu), abs=0.1)


def test_busy_cadence() -> None:
    for region in ("eu", "us"):
        samples = _frames(busy(region), 100)
        assert _on_runs(samples)[:4] == [(True, 500), (False, 500)] * 2
        assert BUSY[region].cadence == (500, 500)


def test_cadence_not_a_multiple_of_a_frame() -> None:
    samples = _frames(CadenceGenerator([400.0], (375, 375)), 75)  # 1.5 s
    on = samples != 0
    # on for samples [0, 3000), off for [3000, 6000), on again from 6000
    assert on[:3000].mean() > 0.85 and on[2990:3000].any()  # 400 Hz hits 0 exactly
    assert not on[3000:6000].any()
    assert on[6000:6010].any()


def test_silence_and_dtmf() -> None:
    silence = silence_frame()
    assert silence.dtype == np.int16 and silence.shape == (160,) and not silence.any()
    assert _peaks(dtmf_tone("9", 500), 2) == [
        pytest.approx(852, abs=3),
        pytest.approx(1477, abs=3),
    ]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        SineGenerator([])
    with pytest.raises(ValueError):
        SineGenerator([1.0, 2.0], levels_dbfs=[0.0])
    with pytest.raises(ValueError):
        CadenceGenerator([425.0], (100,))
    with pytest.raises(ValueError):
        CadenceGenerator([425.0], (0, 0))
    with pytest.raises(ValueError):
        ringback("mars")
    with pytest.raises(KeyError):
        dtmf_tone("x", 100)
