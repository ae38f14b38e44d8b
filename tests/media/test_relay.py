"""Tests for media.relay: bridged audio arrives intact, transcoded, and as one stream.

A 1 kHz tone is sent as real RTP over loopback and analysed with numpy's FFT at the far
end. Loops are bounded; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator, Callable

import numpy as np
import numpy.typing as npt
import pytest

from media.commands import (
    Codec,
    Connect,
    CreateEndpoint,
    Disconnect,
    EndpointCreated,
    MediaEvent,
    Play,
    PlaybackEnd,
    PlaybackFinished,
    SetCodec,
    SetRemote,
    StopPlay,
    Tone,
    ToneName,
)
from media.engine import EngineConfig, MediaEngine
from media.g711 import alaw_decode, ulaw_decode, ulaw_encode
from media.rtp import RtpPacket
from tests.harness import rtp_peer_sockets

PORT_MIN = 46200
RATE = 8000
FRAME = 160


class Peer:
    """A phone on loopback: sends RTP to an endpoint and collects what comes back."""

    def __init__(self) -> None:
        # RTP on an even port, the next one taken too: no other phone's RTCP here.
        self.sock, self.rtcp = rtp_peer_sockets()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.port: int = self.sock.getsockname()[1]
        self.received: list[RtpPacket] = []

    def send(self, port: int, packet: RtpPacket) -> None:
        self.sock.sendto(packet.to_bytes(), ("127.0.0.1", port))

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


def tone(frequency: float, seconds: float, amplitude: float) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * frequency * t)).astype(
        np.int16
    )


def frames_of(codes: npt.NDArray[np.uint8]) -> list[bytes]:
    raw = codes.tobytes()
    return [raw[i : i + FRAME] for i in range(0, len(raw), FRAME)]


def dominant_frequency(samples: npt.NDArray[np.int16]) -> float:
    spectrum = np.abs(
        np.fft.rfft(samples.astype(np.float64) * np.hanning(samples.size))
    )
    return float(np.argmax(spectrum) * RATE / samples.size)


def rms_db(samples: npt.NDArray[np.int16]) -> float:
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return 20 * float(np.log10(max(rms, 1e-9) / 32767))


class Harness:
    def __init__(self, engine: MediaEngine, events: list[MediaEvent]) -> None:
        self.engine = engine
        self.events = events
        self.peers: list[Peer] = []

    def leg(self) -> tuple[EndpointCreated, Peer]:
        endpoint = self.engine.execute(CreateEndpoint())
        assert isinstance(endpoint, EndpointCreated)
        peer = Peer()
        self.peers.append(peer)
        self.engine.execute(
            SetRemote(
                endpoint_id=endpoint.endpoint_id, host="127.0.0.1", port=peer.port
            )
        )
        return endpoint, peer

    def connect(self, a: EndpointCreated, b: EndpointCreated) -> None:
        self.engine.execute(Connect(endpoint_a=a.endpoint_id, endpoint_b=b.endpoint_id))


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    events: list[MediaEvent] = []
    engine = MediaEngine(
        EngineConfig(port_min=PORT_MIN, port_max=PORT_MIN + 99), on_event=events.append
    )
    harness = Harness(engine, events)
    yield harness
    engine.close()
    for peer in harness.peers:
        peer.close()


def send_frames(
    peer: Peer, port: int, frames: list[bytes], *, pt: int = 0, ssrc: int = 0x5151
) -> None:
    for i, payload in enumerate(frames):
        peer.send(
            port,
            RtpPacket(
                payload_type=pt,
                sequence=1000 + i,
                timestamp=50000 + i * FRAME,
                ssrc=ssrc,
                payload=payload,
            ),
        )


async def test_tone_through_relay_arrives_intact(h: Harness) -> None:
    (a, pa), (b, pb) = h.leg(), h.leg()
    h.connect(a, b)
    sent = tone(1000.0, 1.0, 0.25)
    frames = frames_of(ulaw_encode(sent))
    send_frames(pa, a.rtp_port, frames)
    await eventually(lambda: len(pb.drain()) == len(frames))
    received = pb.drain()
    # same codec: the payload is not touched at all (no decode/encode)
    assert [packet.payload for packet in received] == frames
    audio = ulaw_decode(np.frombuffer(b"".join(p.payload for p in received), np.uint8))
    assert dominant_frequency(audio) == pytest.approx(1000.0, abs=RATE / audio.size)
    assert rms_db(audio) == pytest.approx(rms_db(sent), abs=0.5)


async def test_tone_through_pcmu_to_pcma_transcoding(h: Harness) -> None:
    (a, pa), (b, pb) = h.leg(), h.leg()
    h.engine.execute(SetCodec(endpoint_id=b.endpoint_id, codec=Codec.PCMA))
    h.connect(a, b)
    sent = tone(1000.0, 1.0, 0.25)
    send_frames(pa, a.rtp_port, frames_of(ulaw_encode(sent)))
    await eventually(lambda: len(pb.drain()) == 50)
    received = pb.drain()
    assert {packet.payload_type for packet in received} == {8}
    audio = alaw_decode(np.frombuffer(b"".join(p.payload for p in received), np.uint8))
    assert dominant_frequency(audio) == pytest.approx(1000.0, abs=RATE / audio.size)
    assert rms_db(audio) == pytest.approx(rms_db(sent), abs=0.5)
    # and back: the A-law side's audio reaches the mu-law side as mu-law
    send_frames(pb, b.rtp_port, [p.payload for p in received], pt=8, ssrc=0x6161)
    await eventually(lambda: len(pa.drain()) == 50)
    back = ulaw_decode(np.frombuffer(b"".join(p.payload for p in pa.drain()), np.uint8))
    assert {packet.payload_type for packet in pa.drain()} == {0}
    assert dominant_frequency(back) == pytest.approx(1000.0, abs=RATE / back.size)
    assert rms_db(back) == pytest.approx(rms_db(sent), abs=0.5)


async def test_payload_type_mapping_without_decoding(h: Harness) -> None:
    (a, pa), (b, pb) = h.leg(), h.leg()
    h.engine.execute(SetCodec(endpoint_id=b.endpoint_id, payload_type=96))
    h.connect(a, b)
    noise = [
        bytes(np.random.default_rng(i).integers(0, 256, FRAME, np.uint8))
        for i in range(5)
    ]
    send_frames(pa, a.rtp_port, noise)
    await eventually(lambda: len(pb.drain()) == 5)
    assert [p.payload_type for p in pb.drain()] == [96] * 5
    assert [p.payload for p in pb.drain()] == noise


async def test_one_stream_across_prompt_bridge_and_music(h: Harness) -> None:
    (caller, pc), (operator, po) = h.leg(), h.leg()
    engine = h.engine

    # 1. a prompt (a short beep) to the caller
    engine.execute(
        Play(
            endpoint_id=caller.endpoint_id,
            items=(Tone(name=ToneName.BEEP, duration_ms=200),),
        )
    )
    await eventually(lambda: any(isinstance(e, PlaybackFinished) for e in h.events))
    prompt_count = len(pc.drain())
    assert prompt_count == 10  # 200 ms = ten 20 ms frames

    # 2. bridged to the operator, whose audio arrives with its own numbering
    h.connect(caller, operator)
    voice = frames_of(np.full(FRAME * 8, 0x55, dtype=np.uint8))
    for i, payload in enumerate(voice):
        po.send(
            operator.rtp_port,
            RtpPacket(
                payload_type=0,
                sequence=40000 + i,
                timestamp=7_000_000 + i * FRAME,
                ssrc=0xABCD,
                payload=payload,
            ),
        )
        await asyncio.sleep(0.02)
    await eventually(lambda: len(pc.drain()) == prompt_count + 8)

    # 3. music on hold
    engine.execute(Disconnect(endpoint_id=caller.endpoint_id))
    engine.execute(
        Play(
            endpoint_id=caller.endpoint_id,
            items=(Tone(name=ToneName.DIAL, duration_ms=100),),
            loop=True,
        )
    )
    await eventually(lambda: len(pc.drain()) >= prompt_count + 8 + 12)
    engine.execute(StopPlay(endpoint_id=caller.endpoint_id))
    stopped = [e for e in h.events if isinstance(e, PlaybackFinished)]
    assert stopped[-1].reason is PlaybackEnd.STOPPED

    packets = pc.drain()
    assert len({p.ssrc for p in packets}) == 1
    assert len({p.payload_type for p in packets}) == 1
    for before, after in itertools.pairwise(packets):
        assert after.sequence == (before.sequence + 1) & 0xFFFF
        step = (after.timestamp - before.timestamp) & 0xFFFFFFFF
        assert 0 < step < 0x80000000  # forward, never backwards
    markers = [i for i, p in enumerate(packets) if p.marker]
    assert markers == [0, prompt_count, prompt_count + 8]
    # the relayed part is the operator's audio, untouched
    relayed = packets[prompt_count : prompt_count + 8]
    assert [p.payload for p in relayed] == voice
    # consecutive relayed packets keep the sender's spacing
    assert all(
        (q.timestamp - p.timestamp) & 0xFFFFFFFF == FRAME
        for p, q in itertools.pairwise(relayed)
    )


async def test_connect_replaces_a_playback(h: Harness) -> None:
    (a, _pa), (b, _) = h.leg(), h.leg()
    started = h.engine.execute(
        Play(
            endpoint_id=a.endpoint_id, items=(Tone(name=ToneName.RINGBACK),), loop=True
        )
    )
    h.connect(a, b)
    finished = [e for e in h.events if isinstance(e, PlaybackFinished)]
    assert len(finished) == 1
    assert finished[0].reason is PlaybackEnd.REPLACED
    assert finished[0].playback_id == getattr(started, "playback_id", None)


async def test_play_over_a_bridge_then_bridge_resumes(h: Harness) -> None:
    (a, pa), (b, pb) = h.leg(), h.leg()
    h.connect(a, b)
    h.engine.execute(
        Play(
            endpoint_id=a.endpoint_id, items=(Tone(name=ToneName.BEEP, duration_ms=60),)
        )
    )
    await eventually(lambda: any(isinstance(e, PlaybackFinished) for e in h.events))
    assert len(pa.drain()) == 3
    send_frames(pb, b.rtp_port, [b"\x11" * FRAME] * 3)
    await eventually(lambda: len(pa.drain()) == 6)
    resumed = pa.drain()[3:]
    assert [p.payload for p in resumed] == [b"\x11" * FRAME] * 3
    assert resumed[0].marker
    assert resumed[0].sequence == (pa.drain()[2].sequence + 1) & 0xFFFF
