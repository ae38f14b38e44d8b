"""The audio checks of the end-to-end tests can fail: their instrument, tested.

tests/rtp_peer.py is what the SIPp and baresip call tests use to say "each side
heard the other": a reference G.711 codec, an FFT check and an RTP peer. Here, on
loopback with no switch, a relay that crosses the two peers' streams passes, and the
two faults the reviewers named fail: a "switch" that reflects each stream back to its
sender, and one that hands mu-law bytes to an A-law side untranslated.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.harness import LOOPBACK
from tests.rtp_peer import (
    PCMA,
    PCMU,
    RtpPeer,
    alaw_decode_sample,
    alaw_encode_sample,
    assert_hears,
    decode,
    encode,
    spectrum,
    tone,
    ulaw_decode_sample,
    ulaw_encode_sample,
)

A_HZ, B_HZ = 600.0, 1000.0


def test_reference_g711_known_codes() -> None:
    # ITU-T G.711: silence is 0xFF in mu-law and 0xD5 in A-law (even bits inverted)
    assert ulaw_encode_sample(0) == 0xFF
    assert alaw_encode_sample(0) == 0xD5
    assert ulaw_decode_sample(0xFF) == 0
    assert alaw_decode_sample(0xD5) == 8
    assert ulaw_decode_sample(0x00) == -32124
    assert ulaw_decode_sample(0x80) == 32124
    assert alaw_decode_sample(0xAA) == 32256
    assert alaw_decode_sample(0x2A) == -32256
    # every code decodes and re-encodes to itself (but mu-law's two zeros)
    for code in range(256):
        assert alaw_encode_sample(alaw_decode_sample(code)) == code
        if code != 0x7F:
            assert ulaw_encode_sample(ulaw_decode_sample(code)) == code


@pytest.mark.parametrize("law", [PCMU, PCMA])
def test_a_tone_through_either_law_is_heard_cleanly(law: int) -> None:
    heard = spectrum(decode(encode(tone(A_HZ, 2.0), law), law))
    assert_hears(heard, expected_hz=A_HZ, own_hz=B_HZ, who="decoder")


def test_mu_law_bytes_read_as_a_law_fail_the_check() -> None:
    untranslated = spectrum(decode(encode(tone(A_HZ, 2.0), PCMU), PCMA))
    with pytest.raises(AssertionError):
        assert_hears(untranslated, expected_hz=A_HZ, own_hz=B_HZ, who="A-law side")


def test_own_tone_leaking_back_under_the_other_fails() -> None:
    mixed = tone(B_HZ, 2.0, 0.4).astype(int) + tone(A_HZ, 2.0, 0.1).astype(int)
    heard = spectrum(mixed.astype("int16"))
    assert abs(heard.dominant_hz - B_HZ) < 15
    with pytest.raises(AssertionError, match="its own 600 Hz"):
        assert_hears(heard, expected_hz=B_HZ, own_hz=A_HZ, who="a")


class Relay:
    """A fake switch on two UDP ports: ``cross`` relays a->b and b->a, otherwise
    each packet goes back where it came from; ``translate`` maps payload octets."""

    def __init__(self, *, cross: bool, translate: bytes | None = None) -> None:
        self.cross = cross
        self.translate = translate
        self.socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in "ab"]
        for sock in self.socks:
            sock.bind((LOOPBACK, 0))
            sock.settimeout(0.05)
        self.peers: list[tuple[str, int] | None] = [None, None]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def address(self, index: int) -> tuple[str, int]:
        host, port = self.socks[index].getsockname()
        return str(host), int(port)

    def _run(self) -> None:
        deadline = time.monotonic() + 20
        while not self._stop.is_set() and time.monotonic() < deadline:
            for index, sock in enumerate(self.socks):
                try:
                    data, source = sock.recvfrom(2048)
                except OSError:
                    continue
                self.peers[index] = source
                if self.translate is not None:
                    data = data[:12] + data[12:].translate(self.translate)
                out = 1 - index if self.cross else index
                destination = self.peers[out]
                if destination is not None:
                    self.socks[out].sendto(data, destination)

    def __enter__(self) -> Relay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.socks:
            sock.close()


def _talk(
    relay: Relay, a_law: int = PCMU, b_law: int = PCMU
) -> tuple[RtpPeer, RtpPeer]:
    a = RtpPeer(
        port=0, payload_type=a_law, tone_hz=A_HZ, locate=lambda: relay.address(0)
    )
    b = RtpPeer(
        port=0, payload_type=b_law, tone_hz=B_HZ, locate=lambda: relay.address(1)
    )
    with a, b:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            len(a.packets()) < 75 or len(b.packets()) < 75
        ):
            time.sleep(0.05)
    return a, b


def test_a_crossing_relay_passes() -> None:
    with Relay(cross=True) as relay:
        a, b = _talk(relay)
    assert_hears(a.heard(payload_type=PCMU), expected_hz=B_HZ, own_hz=A_HZ, who="a")
    assert_hears(b.heard(payload_type=PCMU), expected_hz=A_HZ, own_hz=B_HZ, who="b")


def test_a_reflecting_switch_fails() -> None:
    with Relay(cross=False) as relay:
        a, _ = _talk(relay)
    with pytest.raises(AssertionError, match="expected the other side"):
        assert_hears(a.heard(payload_type=PCMU), expected_hz=B_HZ, own_hz=A_HZ, who="a")


def test_a_relay_that_does_not_transcode_fails() -> None:
    # a sends mu-law, b expects A-law: without translation b's A-law decode is junk
    with Relay(cross=True) as relay:
        _, b = _talk(relay, a_law=PCMU, b_law=PCMA)
    with pytest.raises(AssertionError):
        assert_hears(b.heard(payload_type=PCMA), expected_hz=A_HZ, own_hz=B_HZ, who="b")


def test_a_relay_that_transcodes_passes() -> None:
    table = bytes(alaw_encode_sample(int(s)) for s in decode(bytes(range(256)), PCMU))
    with Relay(cross=True, translate=table) as relay:
        _, b = _talk(relay, a_law=PCMU, b_law=PCMA)
    assert_hears(b.heard(payload_type=PCMA), expected_hz=A_HZ, own_hz=B_HZ, who="b")
