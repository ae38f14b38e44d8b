"""Audio through the B2BUA with real phones: each side sends its OWN tone.

baresip sends a 600 Hz tone (its microphone is a WAV) and records what it hears
(sndfile module); the far side is a Python RTP peer (tests/rtp_peer.py) behind SIPp's
signalling, which sends 1000 Hz and records what it gets, or one of the switch's own
apps. Each side must hear the other side's frequency, cleanly, and not its own: a
switch that reflected RTP to where it came from would fail, as would one that passed
PCMU bytes to a PCMA phone untranslated. The echo app test is the one round trip, on
purpose (the app's job is to send the caller's audio back).
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
from tests.rtp_peer import (
    PCMA,
    PCMU,
    RtpPeer,
    Spectrum,
    assert_hears,
    sent_to,
    spectrum,
    switch_media_for,
)
from tests.sipp.calls import Callee, call, free_block, sipp_ok, start_switch

pytestmark = pytest.mark.baresip

BARESIP_HZ = 600.0  # away from ringback's 400-480 Hz and from the far side's tone
FAR_HZ = 1000.0  # what the Python RTP peer on the far side sends
TONE_SECONDS = 30
CALL_SECONDS = 3.0
SIPP_PCMU = ("-key", "codec", "0", "-key", "codec_name", "PCMU")
SIPP_PCMA = ("-key", "codec", "8", "-key", "codec_name", "PCMA")


def _tone_wav(path: Path, hz: float) -> None:
    rate = 8000
    t = np.arange(rate * TONE_SECONDS) / rate
    samples = (0.5 * 32767 * np.sin(2 * math.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


def wav_spectrum(path: Path) -> Spectrum:
    """The spectrum of the loudest second of a 16-bit mono WAV."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return spectrum(samples, rate)


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
    tone_hz: float = BARESIP_HZ,
) -> BaresipPhone:
    """A registered baresip that sends ``tone_hz`` and records into workdir/rec."""
    workdir.mkdir(parents=True)
    record = workdir / "rec"
    record.mkdir()
    _tone_wav(workdir / "silence.wav", tone_hz)  # the driver's microphone file
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


def _heard(phone: BaresipPhone) -> Spectrum:
    """What baresip heard in its last call (sndfile's ``*-dec.wav``)."""
    decoded = sorted((phone.workdir / "rec").glob("*-dec.wav"))
    assert decoded, f"no recording in {phone.workdir / 'rec'}"
    return wav_spectrum(decoded[-1])


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
    # the one round trip on purpose: the echo app returns the caller's own tone
    assert abs(heard.dominant_hz - BARESIP_HZ) <= 15, heard.describe()
    assert heard.share(BARESIP_HZ) >= 0.9, heard.describe()
    assert "ended by caller" in switch.log()


def _far_peer(switch: SwitchProcess, sip_port: int, payload_type: int) -> RtpPeer:
    """The Python RTP peer of the SIPp party on ``sip_port``: it sends FAR_HZ."""
    return RtpPeer(
        port=free_block(2, udp_only=True),
        payload_type=payload_type,
        tone_hz=FAR_HZ,
        locate=switch_media_for(switch.trace_path, sip_port),
    )


def _trunk_calls(
    switch: SwitchProcess, number: str, workdir: Path, peer: RtpPeer, sip_port: int
) -> None:
    """The demo trunk (SIPp, media on ``peer``) calls ``number``, talks, hangs up."""
    sipp_ok(
        call(
            switch,
            "trunk-call-rtp-peer-caller-hangs-up.xml",
            number,
            workdir,
            *SIPP_PCMU,
            "-key",
            "rtp_port",
            str(peer.port),
            "-d",
            str(int(CALL_SECONDS * 1000)),
            local_port=sip_port,
        )
    )


def test_pcmu_phone_to_pcma_phone_is_transcoded_both_ways(
    switch: SwitchProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # baresip offers PCMU only; the SIPp phone answers PCMA only, its media a Python
    # peer sending A-law (PT 8) 1000 Hz.
    callee_sip = free_block(1)
    peer = _far_peer(switch, callee_sip, PCMA)
    callee = Callee(
        switch,
        "1002",
        "callee-rtp-peer-answers-waits-for-bye.xml",
        tmp_path,
        args=("-set", "ring_ms", "200", *SIPP_PCMA, "-key", "rtp_port", str(peer.port)),
        port=callee_sip,
    )
    phone = _phone(switch, tmp_path / "1001", "1001", monkeypatch, codecs="PCMU")
    try:
        with peer:
            callee.start()
            phone.dial(f"sip:1002@{LOOPBACK}:{switch.port}")
            _talk_and_hang_up(phone)
            assert callee.wait() == 0, callee.errors()
        heard = _heard(phone)
    finally:
        phone.stop()
        callee.stop()
    # baresip (PCMU) hears the PCMA phone's tone, re-encoded
    assert_hears(heard, expected_hz=FAR_HZ, own_hz=BARESIP_HZ, who="baresip")
    # the PCMA phone got PT 8 only, and as A-law it is baresip's clean tone
    assert peer.audio_types() == {PCMA}, peer.summary()
    assert_hears(
        peer.heard(payload_type=PCMA),
        expected_hz=BARESIP_HZ,
        own_hz=FAR_HZ,
        who="PCMA phone",
    )


def test_trunk_call_to_baresip_audio_both_ways(
    switch: SwitchProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    caller_sip = free_block(1)
    peer = _far_peer(switch, caller_sip, PCMU)
    phone = _phone(switch, tmp_path / "1003", "1003", monkeypatch)
    try:
        with peer:
            _trunk_calls(switch, "1003", tmp_path, peer, caller_sip)
            phone.wait_event("CALL_CLOSED", timeout=10)
        time.sleep(0.5)  # the recorder closes its file after the call
        heard = _heard(phone)
    finally:
        phone.stop()
    assert_hears(heard, expected_hz=FAR_HZ, own_hz=BARESIP_HZ, who="baresip")
    assert peer.audio_types() == {PCMU}, peer.summary()
    assert_hears(
        peer.heard(payload_type=PCMU),
        expected_hz=BARESIP_HZ,
        own_hz=FAR_HZ,
        who="trunk caller",
    )


def test_fork_to_sipp_and_baresip_as_one_user_baresip_answers_sipp_cancelled(
    switch: SwitchProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1004 is registered twice: a SIPp phone that rings until cancelled, and an
    # auto-answering baresip. The trunk's call rings both; baresip answers, the
    # SIPp phone gets the CANCEL (its scenario: 200 to it, 487, ACK), and audio
    # flows both ways between the trunk and baresip.
    sipp_phone = Callee(
        switch, "1004", "callee-rings-until-cancelled.xml", tmp_path
    ).start()
    caller_sip = free_block(1)
    peer = _far_peer(switch, caller_sip, PCMU)
    phone = _phone(switch, tmp_path / "1004", "1004", monkeypatch)
    try:
        with peer:
            _trunk_calls(switch, "1004", tmp_path, peer, caller_sip)
            assert sipp_phone.wait() == 0, sipp_phone.errors()
            phone.wait_event("CALL_CLOSED", timeout=10)
        time.sleep(0.5)  # the recorder closes its file after the call
        heard = _heard(phone)
    finally:
        sipp_phone.stop()
        phone.stop()
    trace = switch.trace()
    to_sipp = [e.start_line for e in sent_to(trace, sipp_phone.port)]
    assert any(line.startswith("INVITE sip:") for line in to_sipp), to_sipp
    assert any(line.startswith("CANCEL sip:") for line in to_sipp), to_sipp
    to_baresip = [e.start_line for e in sent_to(trace, phone.sip_port)]
    assert any(line.startswith("INVITE sip:") for line in to_baresip), to_baresip
    assert not any(line.startswith("CANCEL") for line in to_baresip), to_baresip
    assert_hears(heard, expected_hz=FAR_HZ, own_hz=BARESIP_HZ, who="baresip")
    assert peer.audio_types() == {PCMU}, peer.summary()
    assert_hears(
        peer.heard(payload_type=PCMU),
        expected_hz=BARESIP_HZ,
        own_hz=FAR_HZ,
        who="trunk caller",
    )
    assert "ended by caller (200, cause 16)" in switch.log()


def test_tone_app_plays_1khz(
    switch: SwitchProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    phone = _phone(switch, tmp_path / "1001", "1001", monkeypatch)
    try:
        phone.dial(f"sip:601@{LOOPBACK}:{switch.port}")
        phone.wait_event("CALL_ESTABLISHED", timeout=15)
        # The app hangs up after its five seconds of tone and the goodbye prompt.
        phone.wait_event("CALL_CLOSED", timeout=15)
        time.sleep(0.5)
        heard = _heard(phone)
        decoded = sorted((phone.workdir / "rec").glob("*-dec.wav"))[-1]
        with wave.open(str(decoded)) as wav:
            seconds = wav.getnframes() / wav.getframerate()
    finally:
        phone.stop()
    assert_hears(heard, expected_hz=1000.0, own_hz=BARESIP_HZ, who="baresip")
    assert "ended by switch" in switch.log()
    # the prompt was found and played after the tone (no warning, a longer call)
    assert "WARNING switch.apps" not in switch.log()
    assert seconds > 5.5, seconds
