"""RTCP SR, RR, SDES, BYE and compound packets (RFC 3550 section 6, appendix A.2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.rtcp import (
    NTP_EPOCH_OFFSET,
    Bye,
    PacketType,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    SdesChunk,
    SdesItem,
    SenderReport,
    SourceDescription,
    UnknownPacket,
    build_compound,
    ntp_from_unix,
    ntp_middle32,
    ntp_to_unix,
    parse_compound,
)

BLOCK = ReportBlock(
    ssrc=0x11111111,
    fraction_lost=64,
    cumulative_lost=-3,
    highest_sequence=0x0001FFFF,
    jitter=42,
    lsr=0xABCD1234,
    dlsr=65536,
)
SR = SenderReport(
    ssrc=0xCAFEBABE,
    ntp_timestamp=0xE1234567_89ABCDEF,
    rtp_timestamp=160000,
    packet_count=1000,
    octet_count=160000,
    reports=(BLOCK,),
)
SDES = SourceDescription.with_cname(0xCAFEBABE, "leg-1@ccswitch")
BYE = Bye(sources=(0xCAFEBABE,), reason="hangup")
REASONS = {"short", "version", "length", "padding", "count", "sdes", "bye", "too_big"}


def _parse(data: bytes) -> list[RtcpPacket] | None:
    try:
        return parse_compound(data)
    except RtcpError as exc:
        assert exc.reason in REASONS, exc.reason
        return None


def _reason(data: bytes, *, strict: bool = False) -> str:
    with pytest.raises(RtcpError) as info:
        parse_compound(data, strict=strict)
    assert str(info.value)
    return info.value.reason


@pytest.mark.parametrize(
    "packet",
    [
        SR,
        SenderReport(
            ssrc=1, ntp_timestamp=0, rtp_timestamp=0, packet_count=0, octet_count=0
        ),
        ReceiverReport(ssrc=7),
        ReceiverReport(ssrc=7, reports=(BLOCK,) * 31),
        ReceiverReport(ssrc=7, extension=b"\x01\x02\x03\x04"),
        SDES,
        SourceDescription(),
        SourceDescription(
            chunks=(
                SdesChunk(ssrc=1),
                SdesChunk(
                    ssrc=2,
                    items=(
                        SdesItem(item_type=1, value=b"a"),
                        SdesItem(item_type=6, value=b"ccswitch/0.1"),
                    ),
                ),
                SdesChunk(ssrc=3, items=(SdesItem(item_type=1, value=b"x" * 255),)),
            )
        ),
        BYE,
        Bye(),
        Bye(sources=(1, 2, 3)),
        Bye(sources=(1,), reason=""),
        UnknownPacket(packet_type=PacketType.RTPFB, count=1, body=bytes(8)),
    ],
)
def test_round_trip(packet: RtcpPacket) -> None:
    data = packet.to_bytes()
    assert len(data) % 4 == 0
    assert parse_compound(data) == [packet]


def test_sender_report_layout() -> None:
    data = SR.to_bytes()
    assert data[:4] == bytes([0x81, 200, 0, 12])  # RC=1, 13 words
    assert len(data) == 52
    assert data[4:8] == bytes.fromhex("cafebabe")
    assert data[8:16] == bytes.fromhex("e123456789abcdef")
    # report block: cumulative lost -3 as signed 24 bits after fraction 64
    assert data[32:36] == bytes([64, 0xFF, 0xFF, 0xFD])


def test_cumulative_lost_is_clamped_to_24_bits() -> None:
    block = ReportBlock(ssrc=1, cumulative_lost=10**9)
    parsed = parse_compound(ReceiverReport(ssrc=2, reports=(block,)).to_bytes())[0]
    assert isinstance(parsed, ReceiverReport)
    assert parsed.reports[0].cumulative_lost == 0x7FFFFF
    block = ReportBlock(ssrc=1, cumulative_lost=-(10**9))
    parsed = parse_compound(ReceiverReport(ssrc=2, reports=(block,)).to_bytes())[0]
    assert isinstance(parsed, ReceiverReport)
    assert parsed.reports[0].cumulative_lost == -0x800000


def test_sdes_cname() -> None:
    (parsed,) = parse_compound(SDES.to_bytes())
    assert isinstance(parsed, SourceDescription)
    assert parsed.chunks[0].cname == "leg-1@ccswitch"
    assert SdesChunk(ssrc=1).cname is None


def test_compound_round_trip() -> None:
    packets: list[RtcpPacket] = [SR, SDES, BYE]
    assert parse_compound(build_compound(packets)) == packets
    assert parse_compound(bytearray(build_compound(packets)), strict=True) == packets


def test_strict_requires_a_report_first() -> None:
    data = build_compound([SDES, SR])
    assert parse_compound(data)[0] == SDES
    assert _reason(data, strict=True) == "first"


def test_padding_on_last_packet_only() -> None:
    bye = bytearray(Bye(sources=(5,)).to_bytes())
    padded = bytes([bye[0] | 0x20, bye[1], 0, 2]) + bye[4:] + b"\x00\x00\x00\x04"
    assert parse_compound(SR.to_bytes() + padded)[-1] == Bye(sources=(5,))
    assert _reason(padded + SR.to_bytes()) == "padding"
    zero = padded[:-1] + b"\x00"
    assert _reason(zero) == "padding"
    huge = padded[:-1] + b"\x09"
    assert _reason(huge) == "padding"


def test_bad_inputs() -> None:
    assert _reason(b"") == "short"
    assert _reason(b"\x81\xc8\x00") == "short"
    assert _reason(b"\x41\xc8\x00\x00") == "version"
    assert _reason(b"\x80\xc8\x00\x06" + bytes(8)) == "length"  # claims 28 bytes
    assert _reason(SR.to_bytes() + b"\x80\xc9") == "length"  # stray bytes
    assert _reason(bytes([0x80, 200, 0, 0])) == "length"  # SR without sender info
    assert _reason(bytes([0x80, 201, 0, 0])) == "length"  # RR without SSRC
    assert (
        _reason(bytes([0x82, 201, 0, 6]) + bytes(24)) == "count"
    )  # 2 blocks, room for 1
    assert _reason(bytes([0x82, 203, 0, 1]) + bytes(4)) == "bye"  # 2 SSRCs, room for 1
    assert _reason(bytes([0x81, 203, 0, 2]) + bytes(4) + b"\x09abc") == "bye"
    assert _reason(bytes([0x81, 202, 0, 0])) == "sdes"  # chunk without SSRC
    assert (
        _reason(bytes([0x81, 202, 0, 1]) + bytes([0, 0, 0, 1])) == "sdes"
    )  # no null item
    assert _reason(bytes([0x81, 202, 0, 2]) + bytes(4) + b"\x01\x09ab") == "sdes"
    assert _reason(bytes(70000)) == "too_big"


def test_cut_at_every_length_raises_only_rtcp_error() -> None:
    data = build_compound([SR, SDES, BYE, ReceiverReport(ssrc=9, reports=(BLOCK,))])
    boundaries = {0}
    for packet in (SR, SDES, BYE):
        boundaries.add(max(boundaries) + len(packet.to_bytes()))
    for length in range(len(data)):
        result = _parse(data[:length])
        assert (result is not None) == (length in boundaries and length > 0)


def test_unknown_packet_types_pass_through() -> None:
    app = bytes([0x81, 204, 0, 2]) + b"\x00\x00\x00\x01" + b"name"
    (packet,) = parse_compound(app)
    assert packet == UnknownPacket(packet_type=204, count=1, body=app[4:])
    assert packet.to_bytes() == app


def test_build_refuses_bad_fields() -> None:
    with pytest.raises(ValueError):
        ReceiverReport(ssrc=1, reports=(BLOCK,) * 32).to_bytes()
    with pytest.raises(ValueError):
        ReportBlock(ssrc=1, fraction_lost=256).to_bytes()
    with pytest.raises(ValueError):
        Bye(reason="x" * 256).to_bytes()
    with pytest.raises(ValueError):
        SdesChunk(ssrc=1, items=(SdesItem(item_type=0, value=b""),)).to_bytes()
    with pytest.raises(ValueError):
        UnknownPacket(packet_type=204, count=0, body=b"abc").to_bytes()


def test_ntp_helpers() -> None:
    assert ntp_from_unix(0.0) == NTP_EPOCH_OFFSET << 32
    assert ntp_from_unix(1.5) == ((NTP_EPOCH_OFFSET + 1) << 32) | 0x80000000
    assert ntp_to_unix(ntp_from_unix(1_700_000_000.25)) == pytest.approx(
        1_700_000_000.25
    )
    assert ntp_middle32(0x1122334455667788) == 0x33445566


@given(st.binary(max_size=300))
def test_fuzz_parse_raises_only_rtcp_error(data: bytes) -> None:
    _parse(data)


@given(st.binary(min_size=4, max_size=200), st.sampled_from([200, 201, 202, 203, 204]))
def test_fuzz_well_framed_bodies(body: bytes, packet_type: int) -> None:
    body = body[: len(body) // 4 * 4]
    data = bytes([0x80 | (body[0] & 0x1F), packet_type]) + (len(body) // 4).to_bytes(2)
    packets = _parse(data + body)
    if packets is not None:
        assert parse_compound(build_compound(packets)) == packets


@given(
    ssrc=st.integers(0, 2**32 - 1),
    blocks=st.lists(
        st.builds(
            ReportBlock,
            ssrc=st.integers(0, 2**32 - 1),
            fraction_lost=st.integers(0, 255),
            cumulative_lost=st.integers(-0x800000, 0x7FFFFF),
            highest_sequence=st.integers(0, 2**32 - 1),
            jitter=st.integers(0, 2**32 - 1),
            lsr=st.integers(0, 2**32 - 1),
            dlsr=st.integers(0, 2**32 - 1),
        ),
        max_size=31,
    ),
    cname=st.text(max_size=60),
    reason=st.none() | st.text(max_size=60),
)
def test_fuzz_compound_round_trip(
    ssrc: int, blocks: list[ReportBlock], cname: str, reason: str | None
) -> None:
    packets: list[RtcpPacket] = [
        ReceiverReport(ssrc=ssrc, reports=tuple(blocks)),
        SourceDescription.with_cname(ssrc, cname),
        Bye(sources=(ssrc,), reason=reason),
    ]
    assert parse_compound(build_compound(packets)) == packets
