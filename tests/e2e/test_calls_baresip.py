"""Audio through the B2BUA with real phones: baresip plays a tone and records.

Each test has baresip send a 440 Hz tone and record what it hears (sndfile module);
the far side sends the audio back (SIPp ``-rtp_echo``, or the switch's own echo
app), so finding 440 Hz in the recording proves the media path through ``ccswitch
serve`` in both directions, including PCMU<->PCMA transcoding where the legs differ.
"""

from __future__ import annotations

import math
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import tests.e2e.baresip as baresip_module
from tests.e2e.baresip import BaresipPhone
from tests.harness import LOOPBACK, SwitchProcess, require_tool
from tests.sipp.calls import Callee, call, sipp_ok, start_switch

pytestmark = pytest.mark.baresip

TONE_HZ = 440.0
TONE_SECONDS = 30
CALL_SECONDS = 3.0


def _tone_wav(path: Path) -> None:
    rate = 8000
    t = np.arange(rate * TONE_SECONDS) / rate
    samples = (0.5 * 32767 * np.sin(2 * math.pi * TONE_HZ * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


def dominant_hz(path: Path) -> float:
    """The strongest frequency of the loudest second of a 16-bit mono WAV."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float) / 32768
    assert len(x) > rate, f"{path} holds {len(x) / rate:.1f} s only"
    window = rate // 10
    levels = [
        np.sqrt(np.mean(x[i : i + window] ** 2))
        for i in range(0, len(x) - window, window)
    ]
    start = max(0, min(int(np.argmax(levels)) * window, len(x) - rate))
    seg = x[start : start + rate] * np.hanning(rate)
    spectrum = np.abs(np.fft.rfft(seg))
    return float(np.fft.rfftfreq(rate, 1 / rate)[int(np.argmax(spectrum))])


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[SwitchProcess]:
    require_tool("baresip")
    # baresip 1.0.0 answers the last challenge; offer MD5 alone (see demo.toml).
    process = start_switch(tmp_path, digest_algorithms='"MD5"')
    try:
        yield process
    finally:
        process.stop()


def _phone(
    switch: SwitchProcess,
    workdir: Path,
    user: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    codecs: str = "PCMU,PCMA",
) -> BaresipPhone:
    """A registered baresip that sends a 440 Hz tone and records into workdir/rec."""
    workdir.mkdir(parents=True)
    record = workdir / "rec"
    record.mkdir()
    _tone_wav(workdir / "silence.wav")  # the driver's microphone file
    monkeypatch.setattr(
        baresip_module,
        "CONFIG",
        baresip_module.CONFIG + f"module\t\t\tsndfile.so\nsnd_path\t\t{record}\n",
    )
    monkeypatch.setattr(
        baresip_module,
        "ACCOUNT",
        baresip_module.ACCOUNT.replace("PCMU,PCMA", codecs),
    )
    phone = BaresipPhone(
        workdir=workdir,
        user=user,
        password=f"demo{user}",
        registrar_port=switch.port,
    ).start()
    phone.wait_registered()
    return phone


def _heard(phone: BaresipPhone) -> Path:
    decoded = sorted((phone.workdir / "rec").glob("*-dec.wav"))
    assert decoded, f"no recording in {phone.workdir / 'rec'}"
    return decoded[-1]


def _talk_and_hang_up(phone: BaresipPhone) -> None:
    phone.wait_event("CALL_ESTABLISHED", timeout=15)
    time.sleep(CALL_SECONDS)
    phone.hangup()
    phone.wait_event("CALL_CLOSED", timeout=10)
    time.sleep(0.5)  # the recorder closes its file after the call


def test_echo_app_sends_the_callers_audio_back(
    switch: SwitchProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    phone = _phone(switch, tmp_path / "1001", "1001", monkeypatch)
    try:
        phone.dial(f"sip:600@{LOOPBACK}:{switch.port}")
        _talk_and_hang_up(phone)
        heard = _heard(phone)
    finally:
        phone.stop()
    assert abs(dominant_hz(heard) - TONE_HZ) < 15
    assert "ended by caller" in switch.log()


def test_pcmu_phone_to_pcma_phone_is_transcoded_both_ways(
    switch: SwitchProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    callee = Callee(
        switch,
        "1002",
        "callee-answers-waits-for-bye.xml",
        tmp_path,
        args=(
            "-set",
            "ring_ms",
            "200",
            "-key",
            "codec",
            "8",
            "-key",
            "codec_name",
            "PCMA",
            "-rtp_echo",
        ),
    ).start()
    phone = _phone(switch, tmp_path / "1001", "1001", monkeypatch, codecs="PCMU")
    try:
        phone.dial(f"sip:1002@{LOOPBACK}:{switch.port}")
        _talk_and_hang_up(phone)
        heard = _heard(phone)
        assert callee.wait() == 0, callee.errors()
    finally:
        phone.stop()
        callee.stop()
    assert abs(dominant_hz(heard) - TONE_HZ) < 15
    trace = switch.trace()
    assert "m=audio" in trace and "RTP/AVP 8 101" in trace


def test_trunk_call_to_baresip_audio_both_ways(
    switch: SwitchProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    phone = _phone(switch, tmp_path / "1003", "1003", monkeypatch)
    try:
        result = call(
            switch,
            "trunk-call-answered-caller-hangs-up.xml",
            "1003",
            tmp_path,
            "-d",
            str(int(CALL_SECONDS * 1000)),
            "-rtp_echo",
        )
        sipp_ok(result)
        phone.wait_event("CALL_CLOSED", timeout=10)
        time.sleep(0.5)
        heard = _heard(phone)
    finally:
        phone.stop()
    assert abs(dominant_hz(heard) - TONE_HZ) < 15


def test_tone_app_plays_1khz(
    switch: SwitchProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    phone = _phone(switch, tmp_path / "1001", "1001", monkeypatch)
    try:
        phone.dial(f"sip:601@{LOOPBACK}:{switch.port}")
        phone.wait_event("CALL_ESTABLISHED", timeout=15)
        # The app hangs up after its five seconds of tone (and a missing prompt).
        phone.wait_event("CALL_CLOSED", timeout=15)
        time.sleep(0.5)
        heard = _heard(phone)
    finally:
        phone.stop()
    assert abs(dominant_hz(heard) - 1000.0) < 15
    assert "ended by switch" in switch.log()
