"""Tests for media.mixer: gain matrices per role, saturation, and mixing over real RTP.

Supervisor features are checked by ear, so to speak: each party sends its own tone and
the FFT of what each one receives says who was heard. Loops are bounded; nothing
asserts on timing.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from media.commands import (
    BadCommand,
    Codec,
    Connect,
    CreateEndpoint,
    CreateMixer,
    DestroyMixer,
    EndpointCreated,
    MediaEvent,
    MixerAdd,
    MixerCreated,
    MixerRemove,
    MixRole,
    SetCodec,
    SetRemote,
)
from media.engine import EngineConfig, MediaEngine
from media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from media.mixer import Member, Mixer, gain_matrix, mix
from media.rtp import RtpPacket
from tests.harness import rtp_peer_sockets

PORT_MIN = 46400
RATE = 8000
FRAME = 160

P, L, W, B = MixRole.PARTICIPANT, MixRole.LISTEN, MixRole.WHISPER, MixRole.BARGE


# ------------------------------------------------------------------ matrices


def test_conference_everyone_hears_everyone_but_themselves() -> None:
    gains = gain_matrix([Member(endpoint_id=i) for i in (1, 2, 3)])
    assert gains.tolist() == [[0, 1, 1], [1, 0, 1], [1, 1, 0]]


def test_listen_hears_both_heard_by_none() -> None:
    gains = gain_matrix(
        [Member(endpoint_id=1), Member(endpoint_id=2), Member(endpoint_id=3, role=L)]
    )
    assert gains.tolist() == [[0, 1, 0], [1, 0, 0], [1, 1, 0]]


def test_whisper_heard_by_the_operator_only() -> None:
    gains = gain_matrix(
        [
            Member(endpoint_id=1),  # caller
            Member(endpoint_id=2),  # operator
            Member(endpoint_id=3, role=W, whisper_to=2),
        ]
    )
    assert gains.tolist() == [[0, 1, 0], [1, 0, 1], [1, 1, 0]]


def test_barge_heard_by_all() -> None:
    gains = gain_matrix(
        [Member(endpoint_id=1), Member(endpoint_id=2), Member(endpoint_id=3, role=B)]
    )
    assert gains.tolist() == [[0, 1, 1], [1, 0, 1], [1, 1, 0]]


def test_whisper_needs_a_target_in_the_mixer() -> None:
    with pytest.raises(ValueError, match="no target"):
        gain_matrix(
            [Member(endpoint_id=1), Member(endpoint_id=3, role=W, whisper_to=9)]
        )
    with pytest.raises(ValueError, match="no target"):
        gain_matrix([Member(endpoint_id=3, role=W)])


def test_removing_the_whisper_target_turns_the_whisper_into_listen() -> None:
    mixer = Mixer(1)
    for member in (
        Member(endpoint_id=1),
        Member(endpoint_id=2),
        Member(endpoint_id=3, role=W, whisper_to=2),
    ):
        mixer.add(member)
    mixer.remove(2)
    assert mixer.members[1].role is L
    assert mixer.gains.tolist() == [[0, 0], [1, 0]]
    assert 2 not in mixer
    assert len(mixer) == 2


def test_mix_saturates_instead_of_wrapping() -> None:
    loud = np.full((3, FRAME), 30000, dtype=np.int16)
    quiet = np.full((3, FRAME), -30000, dtype=np.int16)
    gains = gain_matrix([Member(endpoint_id=i) for i in range(3)])
    assert (mix(loud, gains) == 32767).all()
    assert (mix(quiet, gains) == -32768).all()


@given(
    hnp.arrays(np.int16, (4, 16)),
    st.lists(st.sampled_from([P, L, B]), min_size=4, max_size=4),
)
def test_mix_equals_clipped_sum_of_heard_talkers(
    frames: npt.NDArray[np.int16], roles: list[MixRole]
) -> None:
    members = [Member(endpoint_id=i, role=role) for i, role in enumerate(roles)]
    gains = gain_matrix(members)
    out = mix(frames, gains)
    for listener in range(4):
        expected = sum(
            frames[talker].astype(np.int64)
            for talker in range(4)
            if talker != listener and roles[talker] is not L
        )
        assert (out[listener] == np.clip(expected, -32768, 32767)).all()


# ------------------------------------------------------------------ over RTP


class Peer:
    """A phone on loopback: sends a tone to an endpoint, collects what comes back."""

    def __init__(self, frequency: float, amplitude: float = 0.2) -> None:
        # RTP on an even port, the next one taken too: no other phone's RTCP here.
        self.sock, self.rtcp = rtp_peer_sockets()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.port: int = self.sock.getsockname()[1]
        self.frequency = frequency
        self.amplitude = amplitude
        self.codec = Codec.PCMU
        self.received: list[RtpPacket] = []
        self.sent = 0

    def send_frame(self, port: int) -> None:
        start = self.sent * FRAME
        t = (start + np.arange(FRAME)) / RATE
        samples = np.round(
            self.amplitude * 32767 * np.sin(2 * np.pi * self.frequency * t)
        ).astype(np.int16)
        encode = ulaw_encode if self.codec is Codec.PCMU else alaw_encode
        packet = RtpPacket(
            payload_type=0 if self.codec is Codec.PCMU else 8,
            sequence=self.sent,
            timestamp=start,
            ssrc=self.port,
            payload=encode(samples).tobytes(),
        )
        self.sock.sendto(packet.to_bytes(), ("127.0.0.1", port))
        self.sent += 1

    def drain(self) -> list[RtpPacket]:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.received
            self.received.append(RtpPacket.parse(data))

    def audio(self) -> npt.NDArray[np.int16]:
        packets = self.drain()
        decode = ulaw_decode if self.codec is Codec.PCMU else alaw_decode
        codes = np.frombuffer(b"".join(p.payload for p in packets), np.uint8)
        return decode(codes)

    def close(self) -> None:
        self.sock.close()
        self.rtcp.close()


def band_db(samples: npt.NDArray[np.int16], frequency: float) -> float:
    """Level of ``frequency`` (+-30 Hz) in dB relative to a full-scale sine."""
    window = np.hanning(samples.size)
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * window))
    freqs = np.fft.rfftfreq(samples.size, 1 / RATE)
    band = spectrum[np.abs(freqs - frequency) <= 30].max()
    full_scale = 32767 * window.sum() / 2
    return 20 * float(np.log10(max(band, 1e-9) / full_scale))


def voiced_frames_level_db(samples: npt.NDArray[np.int16]) -> float:
    """Median RMS (dBFS) of the frames that carry audio (gaps are silence)."""
    frames = (
        samples[: samples.size // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    )
    rms = np.sqrt((frames**2).mean(axis=1))
    voiced = rms[rms > 100]
    assert voiced.size > 0
    return 20 * float(np.log10(np.median(voiced) / 32767))


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


class Harness:
    def __init__(self, engine: MediaEngine) -> None:
        self.engine = engine
        self.peers: list[Peer] = []
        self.legs: list[tuple[EndpointCreated, Peer]] = []

    def leg(
        self, frequency: float, codec: Codec = Codec.PCMU
    ) -> tuple[EndpointCreated, Peer]:
        endpoint = self.engine.execute(CreateEndpoint())
        assert isinstance(endpoint, EndpointCreated)
        peer = Peer(frequency)
        peer.codec = codec
        self.peers.append(peer)
        self.engine.execute(
            SetRemote(
                endpoint_id=endpoint.endpoint_id, host="127.0.0.1", port=peer.port
            )
        )
        self.engine.execute(SetCodec(endpoint_id=endpoint.endpoint_id, codec=codec))
        self.legs.append((endpoint, peer))
        return endpoint, peer

    def mixer(self) -> int:
        created = self.engine.execute(CreateMixer())
        assert isinstance(created, MixerCreated)
        return created.mixer_id

    async def talk(
        self, frames: int, talkers: list[tuple[EndpointCreated, Peer]]
    ) -> None:
        """Every talker sends ``frames`` frames, paced on a fixed 20 ms schedule."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(frames):
            for endpoint, peer in talkers:
                peer.send_frame(endpoint.rtp_port)
            await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - loop.time()))
        await asyncio.sleep(0.1)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    events: list[MediaEvent] = []
    engine = MediaEngine(
        EngineConfig(port_min=PORT_MIN, port_max=PORT_MIN + 99), on_event=events.append
    )
    harness = Harness(engine)
    yield harness
    engine.close()
    for peer in harness.peers:
        peer.close()


async def test_tone_through_the_mixer(h: Harness) -> None:
    caller, pc = h.leg(1000.0)
    operator, po = h.leg(0.0, Codec.PCMA)  # an A-law operator: decode, mix, encode
    pc.amplitude = 0.25
    mixer_id = h.mixer()
    for endpoint in (caller, operator):
        h.engine.execute(MixerAdd(mixer_id=mixer_id, endpoint_id=endpoint.endpoint_id))
    await h.talk(50, [(caller, pc)])
    audio = po.audio()
    assert {p.payload_type for p in po.drain()} == {8}
    assert audio.size >= 40 * FRAME
    spectrum_peak = np.argmax(np.abs(np.fft.rfft(audio.astype(np.float64))))
    assert spectrum_peak * RATE / audio.size == pytest.approx(
        1000.0, abs=2 * RATE / audio.size
    )
    sent_level = 20 * np.log10(0.25 / np.sqrt(2))
    assert voiced_frames_level_db(audio) == pytest.approx(sent_level, abs=1.0)
    # the caller does not hear themselves: only silence comes back
    assert np.abs(pc.audio()).max() < 100


async def test_whisper_reaches_only_the_operator(h: Harness) -> None:
    caller, pc = h.leg(500.0)
    operator, po = h.leg(800.0)
    supervisor, ps = h.leg(1500.0)
    h.engine.execute(
        Connect(endpoint_a=caller.endpoint_id, endpoint_b=operator.endpoint_id)
    )
    mixer_id = h.mixer()
    h.engine.execute(MixerAdd(mixer_id=mixer_id, endpoint_id=caller.endpoint_id))
    h.engine.execute(MixerAdd(mixer_id=mixer_id, endpoint_id=operator.endpoint_id))
    h.engine.execute(
        MixerAdd(
            mixer_id=mixer_id,
            endpoint_id=supervisor.endpoint_id,
            role=W,
            whisper_to=operator.endpoint_id,
        )
    )
    await h.talk(40, [(caller, pc), (operator, po), (supervisor, ps)])
    heard_by_caller = pc.audio()
    heard_by_operator = po.audio()
    heard_by_supervisor = ps.audio()
    assert band_db(heard_by_caller, 800.0) > -30  # the operator
    assert band_db(heard_by_caller, 1500.0) < -50  # NOT the supervisor
    assert band_db(heard_by_caller, 500.0) < -50  # not themselves
    assert band_db(heard_by_operator, 500.0) > -30  # the caller
    assert band_db(heard_by_operator, 1500.0) > -30  # the whisper
    assert band_db(heard_by_supervisor, 500.0) > -30  # hears both
    assert band_db(heard_by_supervisor, 800.0) > -30


async def test_listen_and_barge(h: Harness) -> None:
    caller, pc = h.leg(500.0)
    operator, po = h.leg(800.0)
    supervisor, ps = h.leg(1500.0)
    mixer_id = h.mixer()
    for endpoint in (caller, operator):
        h.engine.execute(MixerAdd(mixer_id=mixer_id, endpoint_id=endpoint.endpoint_id))
    h.engine.execute(
        MixerAdd(mixer_id=mixer_id, endpoint_id=supervisor.endpoint_id, role=L)
    )
    await h.talk(25, [(caller, pc), (operator, po), (supervisor, ps)])
    assert band_db(pc.audio(), 1500.0) < -50
    assert band_db(po.audio(), 1500.0) < -50
    assert band_db(ps.audio(), 500.0) > -30
    assert band_db(ps.audio(), 800.0) > -30
    for peer in (pc, po, ps):
        peer.received.clear()
    # the supervisor barges in: now everyone hears them
    h.engine.execute(
        MixerAdd(mixer_id=mixer_id, endpoint_id=supervisor.endpoint_id, role=B)
    )
    await h.talk(25, [(caller, pc), (operator, po), (supervisor, ps)])
    assert band_db(pc.audio(), 1500.0) > -30
    assert band_db(po.audio(), 1500.0) > -30


async def test_mixer_commands_validate(h: Harness) -> None:
    caller, _ = h.leg(500.0)
    operator, _ = h.leg(800.0)
    mixer_id = h.mixer()
    other_mixer = h.mixer()
    h.engine.execute(MixerAdd(mixer_id=mixer_id, endpoint_id=caller.endpoint_id))
    with pytest.raises(BadCommand, match="no target"):
        h.engine.execute(
            MixerAdd(
                mixer_id=mixer_id,
                endpoint_id=operator.endpoint_id,
                role=W,
                whisper_to=99,
            )
        )
    with pytest.raises(BadCommand, match="already in mixer"):
        h.engine.execute(MixerAdd(mixer_id=other_mixer, endpoint_id=caller.endpoint_id))
    with pytest.raises(BadCommand, match="in a mixer"):
        h.engine.execute(
            Connect(endpoint_a=caller.endpoint_id, endpoint_b=operator.endpoint_id)
        )
    h.engine.execute(MixerRemove(mixer_id=mixer_id, endpoint_id=caller.endpoint_id))
    h.engine.execute(
        Connect(endpoint_a=caller.endpoint_id, endpoint_b=operator.endpoint_id)
    )
    h.engine.execute(DestroyMixer(mixer_id=mixer_id))
    assert h.engine.endpoint(caller.endpoint_id).tap_users == 0
