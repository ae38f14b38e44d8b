"""Tests for media.endpoint: receive path, bad input, latching, SSRC changes, RTCP, stats.

Real UDP sockets on 127.0.0.1; loops are bounded; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import functools
import select
import socket
import struct
from collections.abc import AsyncIterator, Callable

import pytest

import media.endpoint as endpoint_module
from media.commands import (
    Codec,
    Connect,
    CreateEndpoint,
    DtmfReceived,
    EndpointCreated,
    MediaEvent,
    RemoteLatched,
    SetCodec,
    SetLatching,
    SetRemote,
)
from media.dtmf import encode_event
from media.endpoint import ReaderGroup, RtpEndpoint
from media.engine import EngineConfig, MediaEngine
from media.ports import PortAllocator, bind_pair
from media.rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    build_compound,
    parse_compound,
)
from media.rtp import RtpExtension, RtpPacket
from tests.harness import rtp_peer_sockets

PORT_MIN = 46000
PAYLOAD = bytes(range(160))


class Peer:
    """A phone on loopback: sends RTP to an endpoint and collects what comes back."""

    def __init__(self) -> None:
        # RTP on an even port, the next one taken too: no other phone's RTCP here.
        self.sock, self.rtcp = rtp_peer_sockets()
        self.port: int = self.sock.getsockname()[1]
        self.received: list[tuple[RtpPacket, tuple[str, int]]] = []

    def send(self, port: int, packet: RtpPacket | bytes) -> None:
        data = packet.to_bytes() if isinstance(packet, RtpPacket) else packet
        self.sock.sendto(data, ("127.0.0.1", port))

    def drain(self) -> list[RtpPacket]:
        while True:
            try:
                data, source = self.sock.recvfrom(65536)
            except BlockingIOError:
                break
            self.received.append((RtpPacket.parse(data), source))
        return [packet for packet, _ in self.received]

    def close(self) -> None:
        self.sock.close()
        self.rtcp.close()


def rtp(
    seq: int,
    *,
    ssrc: int = 0x1111,
    pt: int = 0,
    payload: bytes = PAYLOAD,
    marker: bool = False,
    csrc: tuple[int, ...] = (),
    extension: RtpExtension | None = None,
    padding: int = 0,
) -> RtpPacket:
    return RtpPacket(
        payload_type=pt,
        sequence=seq & 0xFFFF,
        timestamp=(seq * 160) & 0xFFFFFFFF,
        ssrc=ssrc,
        marker=marker,
        payload=payload,
        csrc=csrc,
        extension=extension,
        padding=padding,
    )


async def eventually(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Let the loop run until ``predicate`` holds (bounded)."""
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


class Harness:
    def __init__(self, engine: MediaEngine, events: list[MediaEvent]) -> None:
        self.engine = engine
        self.events = events
        self.peers: list[Peer] = []

    def endpoint(self, *, latching: bool = True) -> EndpointCreated:
        result = self.engine.execute(CreateEndpoint(latching=latching))
        assert isinstance(result, EndpointCreated)
        return result

    def peer(self) -> Peer:
        peer = Peer()
        self.peers.append(peer)
        return peer

    def attach(self, endpoint: EndpointCreated, peer: Peer) -> None:
        self.engine.execute(
            SetRemote(
                endpoint_id=endpoint.endpoint_id, host="127.0.0.1", port=peer.port
            )
        )

    def bridged(
        self, *, latching: bool = True
    ) -> tuple[EndpointCreated, Peer, EndpointCreated, Peer]:
        a, b = self.endpoint(latching=latching), self.endpoint(latching=latching)
        pa, pb = self.peer(), self.peer()
        self.attach(a, pa)
        self.attach(b, pb)
        self.engine.execute(Connect(endpoint_a=a.endpoint_id, endpoint_b=b.endpoint_id))
        return a, pa, b, pb

    def dropped(self, endpoint: EndpointCreated) -> dict[str, int]:
        return self.engine.stats(endpoint.endpoint_id).dropped


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    events: list[MediaEvent] = []
    engine = MediaEngine(
        EngineConfig(port_min=PORT_MIN, port_max=PORT_MIN + 199), on_event=events.append
    )
    harness = Harness(engine, events)
    yield harness
    engine.close()
    for peer in harness.peers:
        peer.close()


# ------------------------------------------------------------------ bad input


def _with_first_octet(packet: bytes, first: int) -> bytes:
    return bytes([first]) + packet[1:]


GOOD = rtp(1).to_bytes()
BAD_DATAGRAMS: list[tuple[str, bytes]] = [
    ("version", _with_first_octet(GOOD, 0x40)),
    ("version", _with_first_octet(GOOD, 0x00)),
    ("short", b""),
    ("short", GOOD[:11]),
    ("padding", _with_first_octet(GOOD[:-1] + b"\xc8", 0xA0)),  # pads 200 of 172
    ("padding", _with_first_octet(GOOD[:-1] + b"\x00", 0xA0)),  # pad count 0
    ("extension", _with_first_octet(GOOD[:12] + b"\xbe\xde\x00\x64" + b"x" * 8, 0x90)),
    ("extension", _with_first_octet(GOOD[:12] + b"\xbe", 0x90)),
    ("csrc", _with_first_octet(GOOD[:12] + b"\x00" * 20, 0x8F)),
    ("too_big", GOOD + bytes(64000)),
    ("payload_type", rtp(1, pt=96).to_bytes()),
    ("payload_type", rtp(1, pt=127).to_bytes()),
]


@pytest.mark.parametrize(("reason", "datagram"), BAD_DATAGRAMS)
async def test_bad_datagram_counted_dropped_never_bridged(
    h: Harness, reason: str, datagram: bytes
) -> None:
    a, pa, _b, pb = h.bridged()
    pa.send(a.rtp_port, rtp(1))  # latch, and prove the path works
    await eventually(lambda: len(pb.drain()) == 1)
    pa.send(a.rtp_port, datagram)
    pa.send(a.rtp_port, datagram)
    pa.send(a.rtp_port, rtp(2))  # still alive afterwards
    await eventually(lambda: len(pb.drain()) == 2)
    await asyncio.sleep(0.05)
    out = pb.drain()
    assert len(out) == 2
    assert out[1].sequence == (out[0].sequence + 1) & 0xFFFF
    assert h.dropped(a) == {reason: 2}
    assert h.engine.stats(a.endpoint_id).packets_in == 2


async def test_valid_irregular_headers_are_accepted(h: Harness) -> None:
    a, pa, _b, pb = h.bridged()
    fancy = [
        rtp(1, csrc=(1, 2, 3)),
        rtp(2, extension=RtpExtension(0xBEDE, b"\x10\xaa\x00\x00")),
        rtp(3, padding=4),
        rtp(4, csrc=(9,), extension=RtpExtension(0x1000, b""), padding=1),
    ]
    for packet in fancy:
        pa.send(a.rtp_port, packet)
    await eventually(lambda: len(pb.drain()) == 4)
    assert all(packet.payload == PAYLOAD for packet in pb.drain())
    assert h.dropped(a) == {}


async def test_transcoding_skips_csrc_extension_and_padding(h: Harness) -> None:
    a, pa, b, pb = h.bridged()
    h.engine.execute(SetCodec(endpoint_id=b.endpoint_id, codec=Codec.PCMA))
    pa.send(a.rtp_port, rtp(1, csrc=(7,), padding=3, payload=b"\xff" * 160))
    await eventually(lambda: len(pb.drain()) == 1)
    packet = pb.drain()[0]
    assert packet.payload_type == 8
    assert packet.csrc == (7,)
    assert packet.padding == 3
    assert packet.payload == b"\xd5" * 160  # mu-law silence became A-law silence


# ------------------------------------------------------------------ addressing


async def test_latching_follows_the_first_source_and_drops_strangers(
    h: Harness,
) -> None:
    a, pa, b, pb = h.bridged()
    nat = h.peer()  # the phone's real (NAT-mapped) address, not the one in SDP
    stranger = h.peer()
    nat.send(a.rtp_port, rtp(1))
    await eventually(lambda: h.engine.stats(a.endpoint_id).latched)
    assert (
        RemoteLatched(endpoint_id=a.endpoint_id, host="127.0.0.1", port=nat.port)
        in h.events
    )
    stranger.send(a.rtp_port, rtp(2, ssrc=0x666))
    stranger.send(a.rtp_port, rtp(3, ssrc=0x666))
    # the other side's audio now goes to the latched address, from a's socket
    pb.send(b.rtp_port, rtp(1, ssrc=0x2222))
    await eventually(lambda: len(nat.drain()) == 1)
    assert nat.received[0][1] == ("127.0.0.1", a.rtp_port)  # symmetric RTP
    await eventually(lambda: h.dropped(a).get("address") == 2)
    assert len(pb.drain()) == 1  # only nat's packet was bridged
    assert pa.drain() == []


async def test_latching_off_only_the_remote_is_heard(h: Harness) -> None:
    a, pa, _b, pb = h.bridged(latching=False)
    stranger = h.peer()
    stranger.send(a.rtp_port, rtp(1, ssrc=0x666))
    pa.send(a.rtp_port, rtp(2))
    await eventually(lambda: len(pb.drain()) == 1)
    await eventually(lambda: h.dropped(a).get("address") == 1)
    assert not h.engine.stats(a.endpoint_id).latched
    assert len(pb.drain()) == 1
    assert h.engine.stats(a.endpoint_id).ssrc_in == 0x1111


async def test_latching_switched_off_pins_the_remote(h: Harness) -> None:
    a, _pa, _b, pb = h.bridged()
    h.engine.execute(SetLatching(endpoint_id=a.endpoint_id, enabled=False))
    other = h.peer()
    other.send(a.rtp_port, rtp(1))
    await eventually(lambda: h.dropped(a).get("address") == 1)
    assert pb.drain() == []


async def test_set_remote_forgets_the_latch(h: Harness) -> None:
    a, pa, _b, _pb = h.bridged()
    pa.send(a.rtp_port, rtp(1))
    await eventually(lambda: h.engine.stats(a.endpoint_id).latched)
    moved = h.peer()
    h.attach(a, moved)
    assert not h.engine.stats(a.endpoint_id).latched
    moved.send(a.rtp_port, rtp(2))
    await eventually(
        lambda: h.engine.stats(a.endpoint_id).remote == ("127.0.0.1", moved.port)
    )


async def test_no_remote_and_no_latching_accepts_anyone(h: Harness) -> None:
    a = h.endpoint(latching=False)
    peer = h.peer()
    peer.send(a.rtp_port, rtp(1))
    await eventually(lambda: h.engine.stats(a.endpoint_id).packets_in == 1)
    assert h.engine.stats(a.endpoint_id).remote is None


# ------------------------------------------------------------------ SSRC and stats


async def test_ssrc_change_keeps_being_heard(h: Harness) -> None:
    a, pa, _b, pb = h.bridged()
    for seq in range(1, 6):
        pa.send(a.rtp_port, rtp(seq, ssrc=0xAAAA))
    await eventually(lambda: len(pb.drain()) == 5)
    for seq in range(5000, 5005):  # new SSRC, unrelated numbering
        pa.send(a.rtp_port, rtp(seq, ssrc=0xBBBB))
    await eventually(lambda: len(pb.drain()) == 10)
    out = pb.drain()
    assert len({packet.ssrc for packet in out}) == 1  # still our one stream
    seqs = [packet.sequence for packet in out]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(10)]
    assert out[5].marker
    assert (out[5].timestamp - out[4].timestamp) & 0xFFFFFFFF < 0x80000000
    stats = h.engine.stats(a.endpoint_id)
    assert stats.ssrcs_heard == 2
    assert stats.ssrc_in == 0xBBBB
    assert stats.packets_in == 10
    assert stats.lost == 0


async def test_loss_and_counters(h: Harness) -> None:
    a, pa, b, pb = h.bridged()
    for seq in (10, 11, 13, 14, 17):  # 12, 15, 16 lost
        pa.send(a.rtp_port, rtp(seq))
    await eventually(lambda: len(pb.drain()) == 5)
    stats = h.engine.stats(a.endpoint_id)
    assert stats.packets_in == 5
    assert stats.bytes_in == 5 * 172
    assert stats.lost == 3
    assert stats.jitter_ms >= 0.0
    assert 1.0 <= stats.mos <= 4.5
    assert h.engine.stats(b.endpoint_id).packets_out == 5
    assert h.engine.stats(b.endpoint_id).bytes_out == 5 * 172


async def test_sequence_wrap_is_not_loss(h: Harness) -> None:
    a, pa, _b, pb = h.bridged()
    for seq in (65533, 65534, 65535, 0, 1, 2):
        pa.send(a.rtp_port, rtp(seq))
    await eventually(lambda: len(pb.drain()) == 6)
    assert h.engine.stats(a.endpoint_id).lost == 0


# ------------------------------------------------------------------ RTCP and DTMF


async def test_rtcp_counted_and_garbage_dropped(h: Harness) -> None:
    a, pa, _b, pb = h.bridged()
    report = build_compound(
        [ReceiverReport(ssrc=0x1111), SourceDescription.with_cname(0x1111, "phone")]
    )
    pa.send(a.rtcp_port, report)
    pa.send(a.rtcp_port, b"\x80")
    pa.send(a.rtp_port, report)  # RFC 5761 rtcp-mux on the RTP port
    await eventually(lambda: h.engine.stats(a.endpoint_id).rtcp_in == 2)
    await eventually(lambda: sum(h.dropped(a).values()) == 1)
    assert next(iter(h.dropped(a))).startswith("rtcp_")
    assert pb.drain() == []  # RTCP is never relayed as RTP


async def test_rtcp_report_and_round_trip_time(h: Harness) -> None:
    a, pa, b, pb = h.bridged()
    pa.send(a.rtp_port, rtp(1))
    pb.send(b.rtp_port, rtp(1, ssrc=0x2222))
    await eventually(lambda: len(pa.drain()) == 1)
    endpoint = h.engine.endpoint(a.endpoint_id)
    packets = parse_compound(endpoint.rtcp_report())
    assert isinstance(packets[0], SenderReport)  # a sent the relayed packet
    assert packets[0].packet_count == 1
    assert packets[0].reports[0].ssrc == 0x1111
    assert isinstance(packets[1], SourceDescription)
    # the peer echoes our SR: LSR = middle 32 bits of its NTP time, DLSR 0
    lsr = (packets[0].ntp_timestamp >> 16) & 0xFFFFFFFF
    echo = ReceiverReport(
        ssrc=0x1111, reports=(ReportBlock(ssrc=endpoint.out.ssrc, lsr=lsr, dlsr=0),)
    )
    pa.send(a.rtcp_port, build_compound([echo]))
    await eventually(lambda: h.engine.stats(a.endpoint_id).round_trip_ms is not None)
    rtt = h.engine.stats(a.endpoint_id).round_trip_ms
    assert rtt is not None and rtt >= 0.0


async def test_telephone_event_reported_once_and_relayed_with_pt_mapping(
    h: Harness,
) -> None:
    a, pa, b, pb = h.bridged()
    h.engine.execute(SetCodec(endpoint_id=b.endpoint_id, telephone_event_pt=96))
    packets = [
        encode_event(5, end=False, volume=10, duration=160),
        encode_event(5, end=False, volume=10, duration=320),
        encode_event(5, end=True, volume=10, duration=480),
        encode_event(5, end=True, volume=10, duration=480),
        encode_event(5, end=True, volume=10, duration=480),
    ]
    for i, payload in enumerate(packets):
        pa.send(
            a.rtp_port,
            RtpPacket(
                payload_type=101,
                sequence=100 + i,
                timestamp=8000,
                ssrc=0x1111,
                marker=i == 0,
                payload=payload,
            ),
        )
    await eventually(lambda: len(pb.drain()) == 5)
    assert {packet.payload_type for packet in pb.drain()} == {96}
    dtmf = [event for event in h.events if isinstance(event, DtmfReceived)]
    assert dtmf == [DtmfReceived(endpoint_id=a.endpoint_id, digit="5", timestamp=8000)]
    assert h.engine.stats(a.endpoint_id).dtmf_events == 1


async def test_comfort_noise_forwarded_or_dropped_never_decoded(h: Harness) -> None:
    a, pa, b, pb = h.bridged()
    endpoint_a = h.engine.endpoint(a.endpoint_id)
    endpoint_a.open_tap()
    cn = rtp(1, pt=13, payload=b"\x40")
    pa.send(a.rtp_port, cn)
    await eventually(lambda: len(pb.drain()) == 1)
    assert pb.drain()[0].payload == b"\x40"
    assert endpoint_a.take_frame() is None  # nothing went to the audio tap
    h.engine.execute(SetCodec(endpoint_id=b.endpoint_id, comfort_noise_pt=None))
    pa.send(a.rtp_port, rtp(2, pt=13, payload=b"\x40"))
    pa.send(a.rtp_port, rtp(3))
    await eventually(lambda: len(pb.drain()) == 2)
    assert pb.drain()[1].payload_type == 0
    assert h.engine.stats(a.endpoint_id).packets_in == 3


async def test_unknown_pt_counted_when_cn_not_negotiated(h: Harness) -> None:
    a, pa, _b, _pb = h.bridged()
    h.engine.execute(SetCodec(endpoint_id=a.endpoint_id, comfort_noise_pt=None))
    pa.send(a.rtp_port, rtp(1, pt=13, payload=b"\x40"))
    await eventually(lambda: h.dropped(a) == {"payload_type": 1})


async def test_tap_keeps_a_bounded_backlog(h: Harness) -> None:
    a, pa, _b, pb = h.bridged()
    endpoint_a = h.engine.endpoint(a.endpoint_id)
    endpoint_a.open_tap()
    h.engine.clock.stop()  # nobody consumes the tap while we flood it
    for seq in range(1, 11):
        pa.send(a.rtp_port, rtp(seq))
    await eventually(lambda: len(pb.drain()) == 10)
    assert endpoint_a.take_frame() == PAYLOAD
    assert endpoint_a.take_frame() == PAYLOAD
    assert endpoint_a.take_frame() is None  # the backlog was cut to one frame


def test_header_layout_assumption() -> None:
    # the receive path reads V/P/X/CC as one octet: a plain packet starts with 0x80
    assert struct.unpack_from("!B", GOOD)[0] == 0x80


async def test_sender_restart_is_not_counted_as_loss(h: Harness) -> None:
    a, pa, _b, pb = h.bridged()
    for seq in (100, 101, 103):  # 102 lost
        pa.send(a.rtp_port, rtp(seq))
    for seq in (30000, 30001, 30002):  # a big jump, confirmed by the next packet
        pa.send(a.rtp_port, rtp(seq))
    await eventually(lambda: len(pb.drain()) == 6)
    stats = h.engine.stats(a.endpoint_id)
    assert stats.packets_in == 6
    assert stats.lost == 1


# ------------------------------------------------------------------ one datagram a wake-up


async def test_a_backlog_is_read_to_the_end_one_datagram_per_wakeup(h: Harness) -> None:
    # the receive path reads one datagram per wake-up and relies on the loop's
    # level-triggered polling for the rest: a burst queued at once is all relayed
    a, pa, _b, pb = h.bridged()
    stranger = h.peer()
    pa.send(a.rtp_port, rtp(1))
    await eventually(lambda: len(pb.drain()) == 1)
    for seq in range(2, 42):
        pa.send(a.rtp_port, rtp(seq))
        if seq % 10 == 0:
            stranger.send(a.rtp_port, rtp(seq, ssrc=0x666))
    await eventually(lambda: len(pb.drain()) == 41)
    await eventually(lambda: h.dropped(a) == {"address": 4})
    out = pb.drain()
    assert [packet.sequence for packet in out] == [
        (out[0].sequence + i) & 0xFFFF for i in range(41)
    ]
    stats = h.engine.stats(a.endpoint_id)
    assert (stats.packets_in, stats.lost, stats.ssrcs_heard) == (41, 0, 1)


class FakeClock:
    """Stands in for the receive path's monotonic clock: arrival times chosen."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _read_one(endpoint: RtpEndpoint) -> None:
    """Run the receive path by hand until the datagram sent last has been read."""
    before = endpoint.packets_received + sum(endpoint.dropped.values())
    for _ in range(100):  # bounded: select() waits at most 1 s each time
        select.select([endpoint.rtp_socket], [], [], 1.0)
        endpoint._on_rtp_readable()
        if endpoint.packets_received + sum(endpoint.dropped.values()) > before:
            return
    raise AssertionError("datagram not received")


async def test_each_wakeup_reads_exactly_one_datagram(h: Harness) -> None:
    a, pa, _b, pb = h.bridged()
    endpoint = h.engine.endpoint(a.endpoint_id)
    for seq in (1, 2, 3):
        pa.send(a.rtp_port, rtp(seq))
    _read_one(endpoint)
    assert endpoint.packets_received == 1  # the other two wait for the next wake-ups
    await eventually(lambda: len(pb.drain()) == 3)
    assert endpoint.packets_received == 3


async def test_jitter_and_loss_follow_rfc3550_on_the_relay_path(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(endpoint_module, "_monotonic", clock)
    a, pa, _b, pb = h.bridged()
    endpoint = h.engine.endpoint(a.endpoint_id)
    # (arrival offset in seconds, sequence number): 13 is lost, 16 comes late
    arrivals = [(0.0, 10), (0.021, 11), (0.039, 12), (0.085, 14), (0.1, 15), (0.15, 17)]
    arrivals += [(0.151, 16), (0.16, 18)]
    expected_jitter = 0.0
    previous_transit: float | None = None
    for offset, seq in arrivals:
        clock.now = 1000.0 + offset
        pa.send(a.rtp_port, rtp(seq))
        _read_one(endpoint)
        # RFC 3550 A.8, in timestamp units
        transit = clock.now * 8000 - seq * 160
        if previous_transit is not None:
            expected_jitter += (abs(transit - previous_transit) - expected_jitter) / 16
        previous_transit = transit
    await eventually(lambda: len(pb.drain()) == len(arrivals))
    stats = h.engine.stats(a.endpoint_id)
    assert stats.jitter_ms == pytest.approx(expected_jitter / 8, rel=1e-9)
    assert (stats.packets_in, stats.lost) == (8, 1)
    report = parse_compound(endpoint.rtcp_report())[0]
    assert isinstance(report, ReceiverReport | SenderReport)
    block = report.reports[0]
    assert block.jitter == int(expected_jitter)
    assert (block.highest_sequence, block.cumulative_lost) == (18, 1)


# ------------------------------------------------------------------ set-up shortcuts


async def test_an_endpoint_on_its_own_asks_its_sockets_and_reads_rtcp() -> None:
    """Without the engine's address and reader group (the defaults)."""
    allocator = PortAllocator(PORT_MIN + 200, PORT_MIN + 209)
    port, rtp_socket, rtcp_socket = bind_pair(allocator, "127.0.0.1")
    endpoint = RtpEndpoint(3, asyncio.get_running_loop(), rtp_socket, rtcp_socket)
    peer = Peer()
    try:
        assert (endpoint.host, endpoint.rtp_port, endpoint.rtcp_port) == (
            "127.0.0.1",
            port,
            port + 1,
        )
        assert endpoint.cname == "ccswitch-3@127.0.0.1"
        peer.send(port + 1, build_compound([ReceiverReport(ssrc=0x1111)]))
        await eventually(lambda: endpoint.rtcp_in == 1)
    finally:
        endpoint.close()
        endpoint.close()  # idempotent
        peer.close()
    assert rtp_socket.fileno() == -1
    assert rtcp_socket.fileno() == -1


async def test_a_new_endpoint_is_set_up_as_set_codec_pcmu_would() -> None:
    """The constructor inlines set_codec(Codec.PCMU); a codec change of one endpoint
    must not reach the map new endpoints start from."""
    allocator = PortAllocator(PORT_MIN + 210, PORT_MIN + 219)
    loop = asyncio.get_running_loop()
    endpoints: list[RtpEndpoint] = []
    for _ in range(2):
        _port, rtp_socket, rtcp_socket = bind_pair(allocator, "127.0.0.1")
        endpoints.append(RtpEndpoint(len(endpoints), loop, rtp_socket, rtcp_socket))
    fresh, changed = endpoints
    try:
        changed.set_codec(Codec.PCMA, telephone_event_pt=96, comfort_noise_pt=None)
        changed.set_codec(Codec.PCMU)
        for name in ("codec", "audio_pt", "telephone_event_pt", "comfort_noise_pt"):
            assert getattr(fresh, name) == getattr(changed, name)
        assert fresh._kinds == changed._kinds
        assert fresh._plain_word == changed._plain_word
        changed.set_codec(Codec.PCMA, telephone_event_pt=96)
        assert fresh._kinds == endpoint_module._DEFAULT_KINDS
        assert endpoint_module._DEFAULT_KINDS == {
            0: endpoint_module.PayloadKind.AUDIO,
            101: endpoint_module.PayloadKind.TELEPHONE_EVENT,
            13: endpoint_module.PayloadKind.COMFORT_NOISE,
        }
        assert not hasattr(fresh, "__dict__")  # slots: see RtpEndpoint.__slots__
    finally:
        for endpoint in endpoints:
            endpoint.close()


def _datagram_pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    return ours, theirs


@pytest.mark.skipif(not ReaderGroup.available, reason="epoll is Linux only")
async def test_reader_group_is_level_triggered_and_forgets_removed_sockets() -> None:
    group = ReaderGroup(asyncio.get_running_loop())
    ours, theirs = _datagram_pair()
    read: list[bytes] = []
    group.add(ours.fileno(), lambda: read.append(ours.recv(100)))  # one per call
    try:
        assert len(group) == 1
        theirs.send(b"one")
        theirs.send(b"two")
        await eventually(lambda: read == [b"one", b"two"])
        group.remove(ours.fileno())
        group.remove(ours.fileno())  # unknown now: ignored
        assert len(group) == 0
        theirs.send(b"three")
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert read == [b"one", b"two"]
        assert ours.recv(100) == b"three"  # still open: the group never closes it
    finally:
        group.close()
        group.close()  # idempotent
        ours.close()
        theirs.close()


@pytest.mark.skipif(not ReaderGroup.available, reason="epoll is Linux only")
async def test_reader_group_skips_a_socket_removed_by_an_earlier_callback() -> None:
    group = ReaderGroup(asyncio.get_running_loop())
    pairs = [_datagram_pair(), _datagram_pair()]
    called: list[int] = []

    def on_readable(index: int) -> None:
        called.append(index)
        ours, _ = pairs[index]
        ours.recv(100)
        group.remove(pairs[1 - index][0].fileno())  # the other one, maybe also ready

    try:
        for index, (ours, _) in enumerate(pairs):
            group.add(ours.fileno(), functools.partial(on_readable, index))
        for _, theirs in pairs:
            theirs.send(b"x")
        await eventually(lambda: len(called) >= 1)
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert len(called) == 1  # the other was removed before its turn
    finally:
        group.close()
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


@pytest.mark.skipif(not ReaderGroup.available, reason="epoll is Linux only")
async def test_a_failed_rtcp_registration_leaves_no_rtp_reader_behind() -> None:
    loop = asyncio.get_running_loop()
    group = ReaderGroup(loop)
    allocator = PortAllocator(PORT_MIN + 220, PORT_MIN + 229)
    _port, rtp_socket, rtcp_socket = bind_pair(allocator, "127.0.0.1")
    group.add(rtcp_socket.fileno(), lambda: None)  # taken: the endpoint's add fails
    try:
        with pytest.raises(FileExistsError):
            RtpEndpoint(1, loop, rtp_socket, rtcp_socket, rtcp_readers=group)
        assert not loop.remove_reader(rtp_socket.fileno())  # nothing was left there
    finally:
        group.close()
        rtp_socket.close()
        rtcp_socket.close()
