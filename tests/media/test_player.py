"""Tests for media.player: any WAV/MP3 converted once to 8 kHz mono, cached per codec.

Loops are bounded; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from media.commands import (
    BadCommand,
    Codec,
    CreateEndpoint,
    DtmfReceived,
    EndpointCreated,
    MediaEvent,
    Play,
    PlaybackEnd,
    PlaybackFinished,
    PlaybackStarted,
    Prompt,
    SetCodec,
    SetRemote,
    Silence,
    Tone,
    ToneName,
)
from media.dtmf import encode_event
from media.engine import EngineConfig, MediaEngine
from media.g711 import ULAW_SILENCE, ulaw_decode
from media.player import (
    Playback,
    PromptCache,
    PromptError,
    encode_frames,
    load_prompt,
    resample,
    tone_samples,
)
from media.rtp import RtpPacket
from tests.harness import rtp_peer_sockets

PORT_MIN = 46800
RATE = 8000
FRAME = 160
FFMPEG = shutil.which("ffmpeg")


def write_wav(
    path: Path,
    *,
    rate: int,
    frequency: float,
    seconds: float = 0.5,
    channels: int = 1,
    width: int = 2,
    amplitude: float = 0.5,
) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    signal = amplitude * np.sin(2 * np.pi * frequency * t)
    interleaved = np.repeat(signal, channels)
    if width == 1:
        raw = np.round(interleaved * 127 + 128).astype(np.uint8).tobytes()
    elif width == 3:
        values = np.round(interleaved * (2**23 - 1)).astype(np.int32)
        raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in values)
    else:
        dtype = {2: "<i2", 4: "<i4"}[width]
        raw = np.round(interleaved * (2 ** (8 * width - 1) - 1)).astype(dtype).tobytes()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(raw)
    return path


def dominant(samples: npt.NDArray[np.int16]) -> float:
    spectrum = np.abs(
        np.fft.rfft(samples.astype(np.float64) * np.hanning(samples.size))
    )
    return float(np.argmax(spectrum) * RATE / samples.size)


def rms_db(samples: npt.NDArray[np.int16]) -> float:
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return 20 * float(np.log10(max(rms, 1e-9) / 32767))


# ------------------------------------------------------------------ conversion


@pytest.mark.parametrize(
    ("rate", "channels", "width"),
    [
        (8000, 1, 2),
        (16000, 1, 2),
        (44100, 2, 2),
        (48000, 2, 3),
        (22050, 1, 1),
        (11025, 1, 4),
    ],
)
def test_any_wav_becomes_8k_mono_int16(
    tmp_path: Path, rate: int, channels: int, width: int
) -> None:
    path = write_wav(
        tmp_path / "p.wav", rate=rate, frequency=1000.0, channels=channels, width=width
    )
    samples = load_prompt(str(path))
    assert samples.dtype == np.int16
    assert samples.size == pytest.approx(RATE * 0.5, abs=1)
    assert dominant(samples) == pytest.approx(1000.0, abs=20)
    assert rms_db(samples) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.5)


def test_resampling_filters_what_8k_cannot_carry(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "hi.wav", rate=44100, frequency=6000.0)
    samples = load_prompt(str(path))
    assert rms_db(samples) < -60  # not folded down to 2 kHz


def test_resample_identity_and_empty() -> None:
    signal = np.linspace(-1, 1, 100)
    assert resample(signal, RATE) is signal
    assert resample(np.zeros(0), 16000).size == 0


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed")
def test_mp3_through_pydub(tmp_path: Path) -> None:
    source = write_wav(tmp_path / "s.wav", rate=44100, frequency=1000.0, seconds=1.0)
    mp3 = tmp_path / "s.mp3"
    subprocess.run(
        [str(FFMPEG), "-loglevel", "error", "-y", "-i", str(source), str(mp3)],
        check=True,
        timeout=60,
    )
    samples = load_prompt(str(mp3))
    assert samples.size == pytest.approx(RATE, rel=0.1)  # MP3 adds encoder delay
    assert dominant(samples) == pytest.approx(1000.0, abs=20)


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed")
def test_float_wav_through_pydub(tmp_path: Path) -> None:
    source = write_wav(tmp_path / "s.wav", rate=16000, frequency=700.0)
    float_wav = tmp_path / "f.wav"
    subprocess.run(
        [
            str(FFMPEG), "-loglevel", "error", "-y", "-i", str(source),
            "-c:a", "pcm_f32le", str(float_wav),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    samples = load_prompt(str(float_wav))
    assert dominant(samples) == pytest.approx(700.0, abs=20)


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="no such prompt"):
        load_prompt(str(tmp_path / "nope.wav"))
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(PromptError):
        load_prompt(str(garbage))


# ------------------------------------------------------------------ cache and frames


def test_prompt_converted_once_and_encoded_once_per_codec(tmp_path: Path) -> None:
    path = str(write_wav(tmp_path / "p.wav", rate=16000, frequency=440.0))
    cache = PromptCache()
    first = cache.frames(Prompt(path=path), Codec.PCMU)
    again = cache.frames(Prompt(path=path), Codec.PCMU)
    alaw = cache.frames(Prompt(path=path), Codec.PCMA)
    assert again is first
    assert alaw != first
    assert cache.conversions == 1
    assert cache.encodings == 2
    assert all(len(frame) == FRAME for frame in first)
    assert len(first) == 25


def test_rewritten_prompt_is_converted_again(tmp_path: Path) -> None:
    path = tmp_path / "p.wav"
    cache = PromptCache()
    write_wav(path, rate=8000, frequency=440.0)
    cache.frames(Prompt(path=str(path)), Codec.PCMU)
    write_wav(path, rate=8000, frequency=880.0, seconds=0.7)
    frames = cache.frames(Prompt(path=str(path)), Codec.PCMU)
    assert cache.conversions == 2
    assert len(frames) == 35


def test_cache_evicts_least_recently_used(tmp_path: Path) -> None:
    cache = PromptCache(max_entries=2)
    paths = [
        str(write_wav(tmp_path / f"{i}.wav", rate=8000, frequency=300.0 + i))
        for i in range(3)
    ]
    for path in paths:
        cache.frames(Prompt(path=path), Codec.PCMU)
    cache.frames(Prompt(path=paths[2]), Codec.PCMU)
    assert cache.conversions == 3
    cache.frames(Prompt(path=paths[0]), Codec.PCMU)  # was evicted
    assert cache.conversions == 4


def test_encode_frames_pads_the_last_frame_with_silence() -> None:
    frames = encode_frames(np.full(200, 1000, dtype=np.int16), Codec.PCMU)
    assert len(frames) == 2
    assert frames[1][40:] == bytes([ULAW_SILENCE]) * 120
    decoded = ulaw_decode(np.frombuffer(frames[0], np.uint8))
    assert abs(int(decoded[0]) - 1000) < 40


def test_tones_and_silence() -> None:
    ringback = tone_samples(ToneName.RINGBACK, None, "eu")
    assert ringback.size == 5 * RATE  # one cadence cycle: 1 s on, 4 s off
    assert np.abs(ringback[RATE + 100 :]).max() == 0
    assert dominant(ringback[:RATE]) == pytest.approx(425.0, abs=10)
    assert tone_samples(ToneName.DIAL, None, "us").size == RATE
    assert tone_samples(ToneName.BUSY, 2000, "us").size == 2 * RATE
    beep = tone_samples(ToneName.BEEP, None, "eu")
    assert dominant(beep) == pytest.approx(1000.0, abs=10)
    with pytest.raises(PromptError):
        tone_samples(ToneName.BUSY, None, "mars")
    cache = PromptCache()
    assert cache.frames(Silence(duration_ms=100), Codec.PCMA) == (b"\xd5" * FRAME,) * 5


def test_playback_walks_the_playlist_and_loops() -> None:
    a, b = (b"a",), (b"b1", b"b2")
    once = Playback(1, [a, (), b])
    assert [once.next_frame() for _ in range(4)] == [b"a", b"b1", b"b2", None]
    looping = Playback(2, [a, b], loop=True)
    assert [looping.next_frame() for _ in range(7)] == [
        b"a", b"b1", b"b2", b"a", b"b1", b"b2", b"a",
    ]  # fmt: skip
    assert Playback(3, [()], loop=True).next_frame() is None


# ------------------------------------------------------------------ through the engine


class Phone:
    def __init__(self) -> None:
        # RTP on an even port, the next one taken too: no other phone's RTCP here.
        self.sock, self.rtcp = rtp_peer_sockets()
        self.port: int = self.sock.getsockname()[1]
        self.received: list[RtpPacket] = []

    def drain(self) -> list[RtpPacket]:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.received
            self.received.append(RtpPacket.parse(data))

    def close(self) -> None:
        self.sock.close()
        self.rtcp.close()


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


class Harness:
    def __init__(self, engine: MediaEngine, events: list[MediaEvent]) -> None:
        self.engine = engine
        self.events = events
        self.phones: list[Phone] = []

    def leg(self) -> tuple[EndpointCreated, Phone]:
        created = self.engine.execute(CreateEndpoint())
        assert isinstance(created, EndpointCreated)
        phone = Phone()
        self.phones.append(phone)
        self.engine.execute(
            SetRemote(
                endpoint_id=created.endpoint_id, host="127.0.0.1", port=phone.port
            )
        )
        return created, phone

    def finished(self) -> list[PlaybackFinished]:
        return [e for e in self.events if isinstance(e, PlaybackFinished)]


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    events: list[MediaEvent] = []
    engine = MediaEngine(
        EngineConfig(port_min=PORT_MIN, port_max=PORT_MIN + 99), on_event=events.append
    )
    harness = Harness(engine, events)
    yield harness
    engine.close()
    for phone in harness.phones:
        phone.close()


async def test_prompt_played_frame_by_frame_then_finished(
    h: Harness, tmp_path: Path
) -> None:
    path = str(
        write_wav(tmp_path / "hello.wav", rate=16000, frequency=1000.0, seconds=0.3)
    )
    (a, pa), (b, pb) = h.leg(), h.leg()
    h.engine.execute(SetCodec(endpoint_id=b.endpoint_id, codec=Codec.PCMA))
    started_a = h.engine.execute(
        Play(endpoint_id=a.endpoint_id, items=(Prompt(path=path),))
    )
    started_b = h.engine.execute(
        Play(endpoint_id=b.endpoint_id, items=(Prompt(path=path),))
    )
    assert isinstance(started_a, PlaybackStarted) and isinstance(
        started_b, PlaybackStarted
    )
    await eventually(lambda: len(h.finished()) == 2)
    assert h.engine.prompts.conversions == 1  # two legs, two codecs, one conversion
    assert [p.payload for p in pa.drain()] == list(
        h.engine.prompts.frames(Prompt(path=path), Codec.PCMU)
    )
    assert {p.payload_type for p in pb.drain()} == {8}
    assert len(pb.drain()) == 15
    assert {(e.playback_id, e.reason) for e in h.finished()} == {
        (started_a.playback_id, PlaybackEnd.COMPLETED),
        (started_b.playback_id, PlaybackEnd.COMPLETED),
    }
    audio = ulaw_decode(
        np.frombuffer(b"".join(p.payload for p in pa.drain()), np.uint8)
    )
    assert dominant(audio) == pytest.approx(1000.0, abs=30)


async def test_music_on_hold_loops_until_replaced(h: Harness) -> None:
    a, pa = h.leg()
    first = h.engine.execute(
        Play(
            endpoint_id=a.endpoint_id,
            items=(Tone(name=ToneName.BEEP, duration_ms=40), Silence(duration_ms=20)),
            loop=True,
        )
    )
    await eventually(lambda: len(pa.drain()) >= 9)
    assert h.finished() == []
    second = h.engine.execute(
        Play(endpoint_id=a.endpoint_id, items=(Silence(duration_ms=20),))
    )
    assert isinstance(first, PlaybackStarted) and isinstance(second, PlaybackStarted)
    await eventually(lambda: len(h.finished()) == 2)
    assert [(e.playback_id, e.reason) for e in h.finished()] == [
        (first.playback_id, PlaybackEnd.REPLACED),
        (second.playback_id, PlaybackEnd.COMPLETED),
    ]
    payloads = [p.payload for p in pa.drain()]
    beep = h.engine.prompts.frames(Tone(name=ToneName.BEEP, duration_ms=40), Codec.PCMU)
    assert payloads[:6] == [beep[0], beep[1], bytes([ULAW_SILENCE]) * FRAME] * 2


async def test_stop_on_dtmf(h: Harness) -> None:
    a, pa = h.leg()
    started = h.engine.execute(
        Play(
            endpoint_id=a.endpoint_id,
            items=(Tone(name=ToneName.RINGBACK),),
            loop=True,
            stop_on_dtmf=True,
        )
    )
    assert isinstance(started, PlaybackStarted)
    await eventually(lambda: len(pa.drain()) >= 2)
    event = RtpPacket(
        payload_type=101,
        sequence=7,
        timestamp=1600,
        ssrc=0x77,
        marker=True,
        payload=encode_event(11, end=False, volume=10, duration=160),
    )
    pa.sock.sendto(event.to_bytes(), ("127.0.0.1", a.rtp_port))
    await eventually(lambda: len(h.finished()) == 1)
    assert h.finished()[0].reason is PlaybackEnd.DTMF
    assert (
        DtmfReceived(endpoint_id=a.endpoint_id, digit="#", timestamp=1600) in h.events
    )


async def test_play_errors(h: Harness, tmp_path: Path) -> None:
    a, _ = h.leg()
    with pytest.raises(BadCommand, match="no such prompt"):
        h.engine.execute(
            Play(
                endpoint_id=a.endpoint_id, items=(Prompt(path=str(tmp_path / "x.wav")),)
            )
        )
    with pytest.raises(BadCommand, match="empty playlist"):
        h.engine.execute(Play(endpoint_id=a.endpoint_id, items=()))


@pytest.mark.parametrize("precise_timer", [True, False])
async def test_many_legs_each_hear_one_continuous_stream(precise_timer: bool) -> None:
    events: list[MediaEvent] = []
    engine = MediaEngine(
        EngineConfig(
            port_min=PORT_MIN + 200,
            port_max=PORT_MIN + 299,
            send_phases=4,
            precise_timer=precise_timer,
        ),
        on_event=events.append,
    )
    harness = Harness(engine, events)
    try:
        legs = [harness.leg() for _ in range(9)]
        beep = Tone(name=ToneName.BEEP, duration_ms=200)
        for created, _ in legs:
            engine.execute(Play(endpoint_id=created.endpoint_id, items=(beep,)))
        await eventually(lambda: len(harness.finished()) == len(legs))
        expected = list(engine.prompts.frames(beep, Codec.PCMU))
        for created, phone in legs:
            packets = phone.drain()
            assert [p.payload for p in packets] == expected
            assert [p.marker for p in packets] == [True] + [False] * 9
            for before, after in itertools.pairwise(packets):
                assert after.sequence == (before.sequence + 1) & 0xFFFF
                assert (after.timestamp - before.timestamp) & 0xFFFFFFFF == FRAME
            stats = engine.stats(created.endpoint_id)
            assert stats.packets_out == 10
            assert stats.ssrc_out == packets[0].ssrc
        assert engine.playout.packets == 90
        assert len(engine.playout) == 0
    finally:
        engine.close()
        for phone in harness.phones:
            phone.close()


async def test_stats_while_playing_count_what_was_sent(h: Harness) -> None:
    a, pa = h.leg()
    h.engine.execute(
        Play(endpoint_id=a.endpoint_id, items=(Tone(name=ToneName.DIAL),), loop=True)
    )
    await eventually(lambda: len(pa.drain()) >= 3)
    stats = h.engine.stats(a.endpoint_id)
    assert 3 <= stats.packets_out <= len(pa.drain()) + 1
    assert stats.bytes_out == stats.packets_out * (12 + FRAME)
