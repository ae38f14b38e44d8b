"""A transcoded bridge (PCMU caller, PCMA operator) recorded: each channel clean.

The relay transcodes a packet's payload in the receive buffer before sending it on;
the recorder's tap must keep the payload in the receiving endpoint's own codec,
or the caller's channel is A-law codes decoded as mu-law (a loud buzz, no tone).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np
import pytest

from media.commands import (
    Codec,
    Connect,
    CreateEndpoint,
    EndpointCreated,
    Record,
    SetCodec,
    SetRemote,
    StopRecord,
)
from media.engine import EngineConfig, MediaEngine
from media.g711 import alaw_encode, ulaw_encode
from media.rtp import RtpPacket
from tests.harness import free_range
from tests.media.test_recorder import FRAME, dominant, read_wav, sine


class Phone:
    """Sends a tone in one codec to an endpoint, paced by the test."""

    def __init__(self, frequency: float, codec: Codec) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.frequency = frequency
        self.codec = codec
        self.sent = 0

    def send_frame(self, port: int) -> None:
        samples = sine(self.frequency, FRAME, self.sent * FRAME)
        encode = ulaw_encode if self.codec is Codec.PCMU else alaw_encode
        packet = RtpPacket(
            payload_type=self.codec.static_payload_type,
            sequence=self.sent,
            timestamp=self.sent * FRAME,
            ssrc=self.port,
            payload=encode(samples).tobytes(),
        )
        self.sock.sendto(packet.to_bytes(), ("127.0.0.1", port))
        self.sent += 1


async def test_transcoded_call_records_each_side_in_its_own_codec(
    tmp_path: Path,
) -> None:
    low, high = free_range(8)
    engine = MediaEngine(
        EngineConfig(port_min=low, port_max=high), on_event=lambda event: None
    )
    caller, operator = Phone(600.0, Codec.PCMU), Phone(1400.0, Codec.PCMA)
    try:
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
        path = tmp_path / "call.wav"
        started = engine.execute(
            Record(path=str(path), left=legs[0].endpoint_id, right=legs[1].endpoint_id)
        )
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(60):  # 1.2 s, paced on a fixed schedule
            caller.send_frame(legs[0].rtp_port)
            operator.send_frame(legs[1].rtp_port)
            await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - loop.time()))
        await asyncio.sleep(0.1)
        engine.execute(StopRecord(recording_id=started.recording_id))  # type: ignore[union-attr]
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
