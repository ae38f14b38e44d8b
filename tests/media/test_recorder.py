"""Tests for media.recorder: a stereo WAV valid at every flush, caller left, operator right.

Loops are bounded; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import socket
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from media.commands import (
    Codec,
    Connect,
    CreateEndpoint,
    EndpointCreated,
    MediaEvent,
    Record,
    RecordingStarted,
    RecordingStopped,
    SetCodec,
    SetRemote,
    StopRecord,
)
from media.engine import EngineConfig, MediaEngine
from media.g711 import alaw_encode, ulaw_encode
from media.recorder import WavRecorder
from media.rtp import RtpPacket

PORT_MIN = 46600
RATE = 8000
FRAME = 160


def read_wav(path: Path) -> tuple[int, int, npt.NDArray[np.int16]]:
    with wave.open(str(path), "rb") as wav:
        channels, rate = wav.getnchannels(), wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return channels, rate, data.reshape(-1, channels)


def sine(frequency: float, samples: int, offset: int = 0) -> npt.NDArray[np.int16]:
    t = (offset + np.arange(samples)) / RATE
    return np.round(8000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def dominant(samples: npt.NDArray[np.int16]) -> float:
    spectrum = np.abs(
        np.fft.rfft(samples.astype(np.float64) * np.hanning(samples.size))
    )
    return float(np.argmax(spectrum) * RATE / samples.size)


# ------------------------------------------------------------------ the file


def test_header_is_valid_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    recorder = WavRecorder(str(path))
    channels, rate, data = read_wav(path)
    assert (channels, rate, data.size) == (2, 8000, 0)
    recorder.close()
    assert recorder.closed


def test_readable_after_each_flush_without_close(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = WavRecorder(str(path), flush_frames=5)
    for i in range(12):
        recorder.write(sine(500, FRAME, i * FRAME), sine(1500, FRAME, i * FRAME))
    # as if the process died now: two flushes happened (10 frames), 2 frames buffered
    _, _, data = read_wav(path)
    assert data.shape == (10 * FRAME, 2)
    assert recorder.seconds == pytest.approx(12 * FRAME / RATE)
    recorder.close()
    _, _, data = read_wav(path)
    assert data.shape == (12 * FRAME, 2)
    assert dominant(data[:, 0]) == pytest.approx(500, abs=10)
    assert dominant(data[:, 1]) == pytest.approx(1500, abs=10)
    assert (data[:, 0] == sine(500, 12 * FRAME)).all()


def test_missing_channel_is_silence(tmp_path: Path) -> None:
    path = tmp_path / "half.wav"
    recorder = WavRecorder(str(path))
    recorder.write(None, sine(1000, FRAME))
    recorder.write(sine(1000, FRAME), None)
    recorder.write(None, None)
    recorder.close()
    recorder.write(sine(1000, FRAME), None)  # ignored after close
    _, _, data = read_wav(path)
    assert data.shape == (3 * FRAME, 2)
    assert (data[:FRAME, 0] == 0).all() and (data[FRAME : 2 * FRAME, 1] == 0).all()
    assert (data[2 * FRAME :] == 0).all()


# ------------------------------------------------------------------ a recorded call


class Phone:
    def __init__(self, frequency: float, codec: Codec = Codec.PCMU) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.frequency = frequency
        self.codec = codec
        self.sent = 0

    def send_frame(self, port: int) -> None:
        encode = ulaw_encode if self.codec is Codec.PCMU else alaw_encode
        codes = encode(sine(self.frequency, FRAME, self.sent * FRAME))
        packet = RtpPacket(
            payload_type=self.codec.static_payload_type,
            sequence=self.sent,
            timestamp=self.sent * FRAME,
            ssrc=self.port,
            payload=codes.tobytes(),
        )
        self.sock.sendto(packet.to_bytes(), ("127.0.0.1", port))
        self.sent += 1


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_call_recorded_as_it_goes_caller_left_operator_right(
    tmp_path: Path,
) -> None:
    events: list[MediaEvent] = []
    engine = MediaEngine(
        EngineConfig(port_min=PORT_MIN, port_max=PORT_MIN + 99), on_event=events.append
    )
    caller, operator = Phone(500.0), Phone(1500.0)
    try:
        path = tmp_path / "call.wav"
        legs, started = _recorded_bridge(engine, caller, operator, path)
        await _talk(caller, operator, legs, frames=75)  # 1.5 s of conversation

        # mid-call: the file is already a valid WAV with at least a second in it
        await eventually(lambda: read_wav(path)[2].shape[0] >= RATE)
        channels, rate, data = read_wav(path)
        assert (channels, rate) == (2, 8000)
        assert data.shape[0] >= RATE
        assert dominant(data[:, 0]) == pytest.approx(500, abs=10)
        assert dominant(data[:, 1]) == pytest.approx(1500, abs=10)

        engine.execute(StopRecord(recording_id=started.recording_id))
        stopped = [e for e in events if isinstance(e, RecordingStopped)]
        assert len(stopped) == 1
        assert stopped[0].seconds >= 1.0
        _, _, final = read_wav(path)
        assert final.shape[0] >= data.shape[0]
        assert engine.endpoint(legs[0].endpoint_id).tap_users == 0
    finally:
        engine.close()
        caller.sock.close()
        operator.sock.close()


def _recorded_bridge(
    engine: MediaEngine, caller: Phone, operator: Phone, path: Path
) -> tuple[list[EndpointCreated], RecordingStarted]:
    """Two endpoints in the phones' codecs, bridged and recorded (caller left)."""
    legs = []
    for phone in (caller, operator):
        created = engine.execute(CreateEndpoint())
        assert isinstance(created, EndpointCreated)
        engine.execute(SetCodec(endpoint_id=created.endpoint_id, codec=phone.codec))
        engine.execute(
            SetRemote(
                endpoint_id=created.endpoint_id, host="127.0.0.1", port=phone.port
            )
        )
        legs.append(created)
    engine.execute(
        Connect(endpoint_a=legs[0].endpoint_id, endpoint_b=legs[1].endpoint_id)
    )
    started = engine.execute(
        Record(path=str(path), left=legs[0].endpoint_id, right=legs[1].endpoint_id)
    )
    assert isinstance(started, RecordingStarted)
    return legs, started


async def _talk(
    caller: Phone, operator: Phone, legs: list[EndpointCreated], *, frames: int
) -> None:
    """Both phones send ``frames`` frames, paced on a fixed 20 ms schedule."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(frames):
        caller.send_frame(legs[0].rtp_port)
        operator.send_frame(legs[1].rtp_port)
        await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - loop.time()))


async def test_transcoded_call_records_each_side_in_its_own_codec(
    tmp_path: Path,
) -> None:
    """PCMU caller, PCMA operator: the relay transcodes a packet's payload in the
    receive buffer before sending it on; the recorder's tap must keep it in the
    receiving endpoint's own codec, or the caller's channel is A-law codes decoded
    as mu-law (a loud buzz, no tone)."""
    engine = MediaEngine(
        EngineConfig(port_min=PORT_MIN + 200, port_max=PORT_MIN + 207),
        on_event=lambda event: None,
    )
    caller, operator = Phone(600.0, Codec.PCMU), Phone(1400.0, Codec.PCMA)
    try:
        path = tmp_path / "call.wav"
        legs, started = _recorded_bridge(engine, caller, operator, path)
        await _talk(caller, operator, legs, frames=60)
        await asyncio.sleep(0.1)
        engine.execute(StopRecord(recording_id=started.recording_id))
        _, _, data = read_wav(path)
        assert data.shape[0] >= 8000
        for channel, hz in ((0, 600), (1, 1400)):
            samples = data[:, channel]
            assert dominant(samples) == pytest.approx(hz, abs=10)
            # a clean tone: nearly all the power within 20 Hz of it
            windowed = samples.astype(np.float64) * np.hanning(samples.size)
            spectrum = np.abs(np.fft.rfft(windowed)) ** 2
            freqs = np.fft.rfftfreq(samples.size, 1 / 8000)
            share = spectrum[np.abs(freqs - hz) <= 20].sum() / spectrum.sum()
            assert share >= 0.9, f"channel {channel}: {share:.0%} at {hz} Hz"
    finally:
        engine.close()
        caller.sock.close()
        operator.sock.close()


async def test_closing_both_endpoints_stops_the_recording(tmp_path: Path) -> None:
    events: list[MediaEvent] = []
    engine = MediaEngine(
        EngineConfig(port_min=PORT_MIN + 100, port_max=PORT_MIN + 199),
        on_event=events.append,
    )
    try:
        created = engine.execute(CreateEndpoint())
        assert isinstance(created, EndpointCreated)
        engine.execute(
            Record(path=str(tmp_path / "x.wav"), left=created.endpoint_id, right=None)
        )
        engine.close()
        assert any(isinstance(e, RecordingStopped) for e in events)
        channels, _, _ = read_wav(tmp_path / "x.wav")
        assert channels == 2
    finally:
        engine.close()
