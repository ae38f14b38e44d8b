"""RTP packets, demultiplexing and sequence bookkeeping (RFC 3550 5.1, A.1; RFC 5761)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.rtp import (
    MAX_PACKET_SIZE,
    RtpError,
    RtpExtension,
    RtpPacket,
    SequenceTracker,
    SourceTracker,
    is_rtcp,
    peek_header,
    seq_delta,
    seq_newer,
)

# V=2 P=0 X=0 CC=0, M=1 PT=0, seq 0x1234, ts 0x11223344, ssrc 0xdeadbeef, 4 bytes payload
SIMPLE = bytes.fromhex("8080123411223344deadbeef") + b"\xff\xfe\xfd\xfc"


def _full_packet() -> RtpPacket:
    return RtpPacket(
        payload_type=8,
        sequence=65535,
        timestamp=0xFFFFFFFF,
        ssrc=0x01020304,
        marker=True,
        payload=bytes(range(20)),
        csrc=(1, 0xFFFFFFFF),
        extension=RtpExtension(0xBEDE, b"\x10\x20\x00\x00"),
        padding=4,
    )


def _check_parse(data: bytes) -> RtpPacket | None:
    """Parse, and check that peek_header agrees (in a longer, dirty buffer)."""
    buffer = bytearray(data) + b"\xaa" * 64
    header = peek_header(buffer, len(data))
    try:
        packet = RtpPacket.parse(data)
    except RtpError as exc:
        assert header is None, exc.reason
        assert exc.reason in {
            "short",
            "version",
            "padding",
            "extension",
            "csrc",
            "too_big",
        }
        return None
    assert header is not None
    pt, marker, sequence, timestamp, ssrc, start, end = header
    assert (pt, marker, sequence, timestamp, ssrc) == (
        packet.payload_type,
        packet.marker,
        packet.sequence,
        packet.timestamp,
        packet.ssrc,
    )
    assert bytes(buffer[start:end]) == packet.payload
    return packet


def _reason(data: bytes | bytearray | memoryview) -> str:
    with pytest.raises(RtpError) as info:
        RtpPacket.parse(data)
    assert str(info.value)  # a human message too
    return info.value.reason


def test_parse_known_bytes() -> None:
    packet = RtpPacket.parse(SIMPLE)
    assert packet == RtpPacket(
        payload_type=0,
        sequence=0x1234,
        timestamp=0x11223344,
        ssrc=0xDEADBEEF,
        marker=True,
        payload=b"\xff\xfe\xfd\xfc",
    )
    assert packet.to_bytes() == SIMPLE


def test_parse_accepts_bytearray_and_memoryview() -> None:
    assert RtpPacket.parse(bytearray(SIMPLE)) == RtpPacket.parse(memoryview(SIMPLE))


@pytest.mark.parametrize(
    "packet",
    [
        RtpPacket(0, 0, 0, 0),
        RtpPacket(127, 1, 2, 3, marker=False, payload=b"x" * 160),
        RtpPacket(101, 7, 8, 9, payload=b"\x01\x8a\x03\x20", padding=1),
        RtpPacket(0, 1, 2, 3, csrc=tuple(range(15))),
        RtpPacket(0, 1, 2, 3, extension=RtpExtension(0x1000)),
        RtpPacket(0, 1, 2, 3, payload=b"", padding=255),
        _full_packet(),
    ],
)
def test_round_trip(packet: RtpPacket) -> None:
    data = packet.to_bytes()
    assert RtpPacket.parse(data) == packet
    assert _check_parse(data) == packet


def test_header_bits_of_full_packet() -> None:
    data = _full_packet().to_bytes()
    assert data[0] == 0x80 | 0x20 | 0x10 | 2  # V=2, P, X, CC=2
    assert data[1] == 0x80 | 8
    assert data[-1] == 4 and data[-4:-1] == b"\x00\x00\x00"


def test_cut_at_every_length_raises_only_rtp_error() -> None:
    data = _full_packet().to_bytes()
    unpadded = RtpPacket(0, 1, 2, 3, csrc=(5, 6), extension=RtpExtension(1, b"abcd"))
    plain = unpadded.to_bytes() + b"payload"
    for length in range(len(data)):
        _check_parse(data[:length])
    reasons = [_reason(plain[:length]) for length in range(12 + 8 + 8)]
    assert reasons[:12] == ["short"] * 12
    assert reasons[12:20] == ["csrc"] * 8
    assert reasons[20:28] == ["extension"] * 8
    # from there on the cut only shortens the payload
    for length in range(28, len(plain) + 1):
        assert RtpPacket.parse(plain[:length]).payload == b"payload"[: length - 28]


@pytest.mark.parametrize("version", [0, 1, 3])
def test_wrong_version(version: int) -> None:
    data = bytes([(version << 6) | (SIMPLE[0] & 0x3F)]) + SIMPLE[1:]
    assert _reason(data) == "version"
    assert peek_header(data, len(data)) is None


def test_padding_lies() -> None:
    header = bytes.fromhex("a000000100000002 00000003")  # P bit set
    assert _reason(header + b"abc\x00") == "padding"  # count 0 is impossible
    assert _reason(header + b"abc\x05") == "padding"  # more than the 4 bytes there
    assert _reason(header) == "padding"  # P bit but no byte to count
    assert RtpPacket.parse(header + b"abc\x04").payload == b""  # all padding is fine
    assert RtpPacket.parse(header + b"abc\x01").payload == b"abc"


def test_padding_cannot_eat_the_extension() -> None:
    packet = RtpPacket(0, 1, 2, 3, extension=RtpExtension(7, b"1234"), padding=2)
    data = bytearray(packet.to_bytes())
    data[-1] = 3  # 2 bytes after the extension, claims 3
    assert _reason(bytes(data)) == "padding"


def test_extension_lies() -> None:
    base = bytes.fromhex("9000000100000002 00000003")  # X bit set
    assert _reason(base + b"\xbe\xde") == "extension"  # no room for its header
    assert (
        _reason(base + b"\xbe\xde\x00\x02" + b"1234") == "extension"
    )  # 2 words, has 1
    assert _reason(base + b"\xbe\xde\xff\xff" + b"1234") == "extension"
    packet = RtpPacket.parse(base + b"\xbe\xde\x00\x01" + b"1234" + b"pay")
    assert packet.extension == RtpExtension(0xBEDE, b"1234")
    assert packet.payload == b"pay"


def test_csrc_count_lies() -> None:
    data = bytes([0x8F]) + SIMPLE[1:]  # CC=15 needs 60 bytes, has 4
    assert _reason(data) == "csrc"


def test_too_big_datagram() -> None:
    big = SIMPLE + bytes(65536 - len(SIMPLE))
    assert _reason(big) == "too_big"
    assert peek_header(big, len(big)) is None
    limit = SIMPLE + bytes(MAX_PACKET_SIZE - len(SIMPLE))
    assert len(RtpPacket.parse(limit).payload) == MAX_PACKET_SIZE - 12


def test_peek_header_honours_size_not_buffer_length() -> None:
    buffer = bytearray(2048)
    buffer[: len(SIMPLE)] = SIMPLE
    assert peek_header(buffer, len(SIMPLE)) == (
        0,
        True,
        0x1234,
        0x11223344,
        0xDEADBEEF,
        12,
        16,
    )
    assert peek_header(memoryview(buffer), 11) is None


@pytest.mark.parametrize(
    "packet",
    [
        RtpPacket(128, 0, 0, 0),
        RtpPacket(-1, 0, 0, 0),
        RtpPacket(0, 65536, 0, 0),
        RtpPacket(0, 0, 1 << 32, 0),
        RtpPacket(0, 0, 0, -1),
        RtpPacket(0, 0, 0, 0, csrc=tuple(range(16))),
        RtpPacket(0, 0, 0, 0, padding=256),
    ],
)
def test_to_bytes_refuses_bad_fields(packet: RtpPacket) -> None:
    with pytest.raises(ValueError):
        packet.to_bytes()


def test_extension_validation() -> None:
    with pytest.raises(ValueError):
        RtpExtension(0x10000)
    with pytest.raises(ValueError):
        RtpExtension(1, b"abc")


def test_is_rtcp_demultiplexing() -> None:
    for packet_type in range(192, 224):  # RFC 5761 4: SR 200, RR 201, ..., 223
        assert is_rtcp(bytes([0x80, packet_type]))
    for second in (0, 8, 101, 127, 128, 136, 191, 224, 255):
        assert not is_rtcp(bytes([0x80, second]))
    assert not is_rtcp(b"")
    assert not is_rtcp(b"\x80")
    assert not is_rtcp(SIMPLE)
    assert is_rtcp(memoryview(bytes.fromhex("80c8000600000001")))


def test_sequence_arithmetic_across_the_wrap() -> None:
    assert seq_delta(0, 65535) == 1
    assert seq_delta(65535, 0) == -1
    assert seq_delta(5, 5) == 0
    assert seq_delta(32767, 0) == 32767
    assert seq_delta(32768, 0) == -32768
    assert seq_newer(0, 65535)
    assert not seq_newer(65535, 0)
    assert not seq_newer(7, 7)
    assert seq_newer(100, 65500)


def test_tracker_probation() -> None:
    tracker = SequenceTracker()
    assert tracker.update(100) is False  # first packet of a new source
    assert tracker.expected == 0
    assert tracker.update(101) is True  # second in sequence: valid
    assert (tracker.received, tracker.expected, tracker.lost) == (1, 1, 0)
    restarted = SequenceTracker()
    assert restarted.update(100) is False
    assert restarted.update(300) is False  # out of sequence: probation starts over
    assert restarted.update(301) is True
    assert restarted.base_seq == 301


def test_tracker_trusted_source_skips_probation() -> None:
    tracker = SequenceTracker(min_sequential=0)
    assert tracker.update(9) is True
    assert tracker.received == 1 and tracker.expected == 1


def test_tracker_counts_loss_and_wraps() -> None:
    tracker = SequenceTracker(min_sequential=0)
    for seq in [65530, 65531, 65533, 65534, 0, 1, 3]:  # 65532, 65535 and 2 lost
        assert tracker.update(seq)
    assert tracker.cycles == 65536
    assert tracker.extended_max == 65536 + 3
    assert tracker.expected == 10
    assert tracker.received == 7
    assert tracker.lost == 3
    assert tracker.extend(65535) == 65535
    assert tracker.extend(4) == 65536 + 4


def test_tracker_duplicates_and_reordering() -> None:
    tracker = SequenceTracker(min_sequential=0)
    for seq in [10, 12, 11, 12]:
        assert tracker.update(seq)
    assert tracker.extended_max == 12
    assert tracker.received == 4 and tracker.expected == 3
    assert tracker.lost == -1  # A.3: duplicates can make it negative


def test_tracker_large_jump_needs_confirmation() -> None:
    tracker = SequenceTracker(min_sequential=0)
    tracker.update(1000)
    assert tracker.update(20000) is False  # beyond MAX_DROPOUT: suspicious
    assert tracker.update(1001) is True  # the old numbering continues
    assert tracker.update(40000) is False
    assert tracker.update(40001) is True  # confirmed: the sender restarted
    assert tracker.base_seq == 40001 and tracker.received == 1


def test_tracker_late_packets_within_misorder_are_counted() -> None:
    tracker = SequenceTracker(min_sequential=0)
    tracker.update(500)
    assert tracker.update(450) is True  # 50 behind: reordered, counted
    assert tracker.extended_max == 500


def test_tracker_interval_fraction_lost() -> None:
    tracker = SequenceTracker(min_sequential=0)
    for seq in range(0, 100):
        if seq % 4 != 3:  # every fourth lost
            tracker.update(seq)
    tracker.update(100)
    # 101 expected, 76 received: 25 lost -> 25 * 256 // 101 = 63
    assert tracker.interval_fraction_lost() == 63
    for seq in range(101, 111):
        tracker.update(seq)
    assert tracker.interval_fraction_lost() == 0  # nothing lost since
    assert tracker.interval_fraction_lost() == 0  # nothing expected since


def test_source_tracker_follows_an_ssrc_change() -> None:
    sources = SourceTracker()
    assert sources.update(0xAAAA, 10) is False
    assert sources.update(0xAAAA, 11) is True
    assert sources.active_ssrc == 0xAAAA
    sources.update(0xAAAA, 12)
    # the peer changes SSRC (and sequence numbering) mid-call
    assert sources.update(0xBBBB, 5000) is False
    assert sources.active_ssrc == 0xAAAA
    assert sources.update(0xBBBB, 5001) is True
    assert sources.active_ssrc == 0xBBBB
    assert sources.ssrc_changes == 1
    active = sources.active
    assert active is not None and active.received == 1 and active.lost == 0
    old = sources.tracker(0xAAAA)
    assert old is not None and old.received == 2
    # and back again: the old source is remembered and validated
    assert sources.update(0xAAAA, 13) is True
    assert sources.active_ssrc == 0xAAAA and sources.ssrc_changes == 2


def test_source_tracker_forgets_old_ssrcs_but_not_the_active_one() -> None:
    sources = SourceTracker(max_sources=3)
    sources.update(1, 0)
    sources.update(1, 1)
    for ssrc in range(2, 50):  # an SSRC spray
        sources.update(ssrc, 0)
    assert len(sources.ssrcs) == 3
    assert 1 in sources.ssrcs
    assert sources.active_ssrc == 1
    assert sources.tracker(2) is None


def test_source_tracker_empty() -> None:
    sources = SourceTracker()
    assert sources.active is None and sources.active_ssrc is None


@given(st.binary(max_size=200))
def test_fuzz_parse_raises_only_rtp_error(data: bytes) -> None:
    packet = _check_parse(data)
    if packet is not None:
        again = RtpPacket.parse(packet.to_bytes())
        assert again == packet


@given(st.binary(min_size=12, max_size=120))
def test_fuzz_version_two_headers(data: bytes) -> None:
    _check_parse(bytes([0x80 | (data[0] & 0x3F)]) + data[1:])


@given(
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 65535),
    timestamp=st.integers(0, 2**32 - 1),
    ssrc=st.integers(0, 2**32 - 1),
    marker=st.booleans(),
    payload=st.binary(max_size=300),
    csrc=st.lists(st.integers(0, 2**32 - 1), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(
        RtpExtension,
        st.integers(0, 0xFFFF),
        st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4]),
    ),
    padding=st.integers(0, 255),
)
def test_fuzz_build_parse_round_trip(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    marker: bool,
    payload: bytes,
    csrc: tuple[int, ...],
    extension: RtpExtension | None,
    padding: int,
) -> None:
    packet = RtpPacket(
        payload_type,
        sequence,
        timestamp,
        ssrc,
        marker,
        payload,
        csrc,
        extension,
        padding,
    )
    assert _check_parse(packet.to_bytes()) == packet


def test_struct_layout_of_fixed_header() -> None:
    data = RtpPacket(96, 0xABCD, 0x01020304, 0x0A0B0C0D).to_bytes()
    assert struct.unpack("!BBHII", data) == (0x80, 96, 0xABCD, 0x01020304, 0x0A0B0C0D)
