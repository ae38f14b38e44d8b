"""RTCP packets: SR, RR, SDES, BYE and compound packets (RFC 3550 section 6).

Each packet type is a frozen dataclass with ``to_bytes()``; :func:`parse_compound`
reads a whole datagram into a list of them and :func:`build_compound` joins them.
Packet types we do not interpret (APP 204, RTPFB 205, PSFB 206, XR 207...) come back
as :class:`UnknownPacket` so a relay can pass them on. Every defect in received bytes
raises :class:`RtcpError` with a short ``reason`` key for counters.

Theory of operation: the validity checks are those of RFC 3550 appendix A.2 (version
2, lengths that add up to the datagram, padding only on the last packet), except that
the first packet need not be SR or RR unless ``strict=True``: reduced-size RTCP
(RFC 5506) sends lone feedback packets. NTP timestamps are 64-bit integers; the
helpers convert from Unix time and take the middle 32 bits used as LSR (6.4.1).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

logger = logging.getLogger(__name__)

__all__ = [
    "NTP_EPOCH_OFFSET",
    "Bye",
    "PacketType",
    "ReceiverReport",
    "ReportBlock",
    "RtcpError",
    "RtcpPacket",
    "SdesChunk",
    "SdesItem",
    "SenderReport",
    "SourceDescription",
    "UnknownPacket",
    "build_compound",
    "ntp_from_unix",
    "ntp_middle32",
    "ntp_to_unix",
    "parse_compound",
]

# RFC 3550 6.4.1: common header V=2, P, RC/SC (5 bits), PT, length in words minus one.
RTCP_VERSION: Final = 2
HEADER_SIZE: Final = 4
VERSION_MASK: Final = 0xC0
VERSION_BITS: Final = RTCP_VERSION << 6
PADDING_BIT: Final = 0x20
COUNT_MASK: Final = 0x1F
MAX_COUNT: Final = 31
REPORT_BLOCK_SIZE: Final = 24
SENDER_INFO_SIZE: Final = 20
MAX_PACKET_SIZE: Final = 65536  # our limit for one datagram
# RFC 3550 6.4.1: cumulative number of packets lost is a signed 24-bit number
CUMULATIVE_LOST_MAX: Final = 0x7FFFFF
CUMULATIVE_LOST_MIN: Final = -0x800000
# RFC 3550 6.5: SDES item types
SDES_END: Final = 0
SDES_CNAME: Final = 1
SDES_NAME: Final = 2
SDES_EMAIL: Final = 3
SDES_PHONE: Final = 4
SDES_LOC: Final = 5
SDES_TOOL: Final = 6
SDES_NOTE: Final = 7
SDES_PRIV: Final = 8
MAX_SDES_TEXT: Final = 255
MAX_BYE_REASON: Final = 255
# RFC 5905 6: NTP era 0 starts 1900-01-01, 2208988800 s before the Unix epoch
NTP_EPOCH_OFFSET: Final = 2208988800
NTP_FRACTION: Final = 1 << 32

# TODO: RFC 3550 6.3 / A.7 transmission interval (randomised, bandwidth-scaled) is
# not computed here; the caller sends reports on a fixed 5 s timer, which is fine for
# two-party calls but not for large sessions.

_HEADER: Final = struct.Struct("!BBH")
_SSRC: Final = struct.Struct("!I")
_SENDER_INFO: Final = struct.Struct("!IQIII")
_REPORT_BLOCK: Final = struct.Struct("!IIIIII")


class PacketType(IntEnum):
    """RTCP packet types (RFC 3550 12.1; RFC 4585 6.1; RFC 3611), as IANA names them."""

    SR = 200
    RR = 201
    SDES = 202
    BYE = 203
    APP = 204
    RTPFB = 205
    PSFB = 206
    XR = 207


class RtcpError(Exception):
    """A received datagram is not valid RTCP.

    :param reason: short counter key: ``"short"``, ``"version"``, ``"length"``,
        ``"padding"``, ``"count"``, ``"sdes"``, ``"bye"``, ``"first"`` (strict mode:
        the compound does not start with SR or RR) or ``"too_big"``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def ntp_from_unix(seconds: float) -> int:
    """A Unix time as a 64-bit NTP timestamp (32.32 fixed point)."""
    return round((seconds + NTP_EPOCH_OFFSET) * NTP_FRACTION) & 0xFFFFFFFFFFFFFFFF


def ntp_to_unix(ntp: int) -> float:
    """A 64-bit NTP timestamp as Unix time (era 0)."""
    return ntp / NTP_FRACTION - NTP_EPOCH_OFFSET


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR of RFC 3550 6.4.1."""
    return (ntp >> 16) & 0xFFFFFFFF


def _header(padding: bool, count: int, packet_type: int, body_size: int) -> bytes:
    if not 0 <= count <= MAX_COUNT:
        raise ValueError(f"count {count} does not fit in 5 bits")
    if body_size % 4:
        raise ValueError("RTCP packets are whole 32-bit words")
    first = VERSION_BITS | (PADDING_BIT if padding else 0) | count
    return _HEADER.pack(first, packet_type, (HEADER_SIZE + body_size) // 4 - 1)


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBlock:
    """One reception report (RFC 3550 6.4.1).

    :param fraction_lost: lost share since the last report, 8-bit fixed point.
    :param cumulative_lost: signed 24-bit; duplicates can make it negative.
    :param highest_sequence: the extended highest sequence number received.
    :param jitter: interarrival jitter in timestamp units.
    :param lsr: middle 32 bits of the last SR's NTP timestamp, 0 if none.
    :param dlsr: delay since that SR, in 1/65536 s.
    """

    ssrc: int
    fraction_lost: int = 0
    cumulative_lost: int = 0
    highest_sequence: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    def to_bytes(self) -> bytes:
        """Serialise; ``cumulative_lost`` is clamped to 24 bits as 6.4.1 says."""
        lost = min(max(self.cumulative_lost, CUMULATIVE_LOST_MIN), CUMULATIVE_LOST_MAX)
        if not 0 <= self.fraction_lost <= 0xFF:
            raise ValueError(f"fraction lost {self.fraction_lost} is not 8 bits")
        return _REPORT_BLOCK.pack(
            self.ssrc,
            (self.fraction_lost << 24) | (lost & 0xFFFFFF),
            self.highest_sequence,
            self.jitter,
            self.lsr,
            self.dlsr,
        )

    @classmethod
    def parse(cls, data: bytes | memoryview, offset: int) -> ReportBlock:
        """Read the block at ``offset`` (the caller checked the length)."""
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(
            data, offset
        )
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(
            ssrc=ssrc,
            fraction_lost=lost_word >> 24,
            cumulative_lost=lost,
            highest_sequence=highest,
            jitter=jitter,
            lsr=lsr,
            dlsr=dlsr,
        )


def _parse_blocks(body: memoryview, offset: int, count: int) -> tuple[ReportBlock, ...]:
    if offset + count * REPORT_BLOCK_SIZE > len(body):
        raise RtcpError("count", f"{count} report blocks do not fit in the packet")
    return tuple(
        ReportBlock.parse(body, offset + i * REPORT_BLOCK_SIZE) for i in range(count)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderReport:
    """SR (RFC 3550 6.4.1): sender info plus up to 31 reception reports.

    :param ntp_timestamp: 64-bit NTP wallclock time of this report.
    :param extension: profile-specific extension bytes (whole words), kept opaque.
    """

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    def to_bytes(self) -> bytes:
        """Serialise."""
        body = (
            _SENDER_INFO.pack(
                self.ssrc,
                self.ntp_timestamp,
                self.rtp_timestamp,
                self.packet_count & 0xFFFFFFFF,
                self.octet_count & 0xFFFFFFFF,
            )
            + b"".join(block.to_bytes() for block in self.reports)
            + self.extension
        )
        return _header(False, len(self.reports), PacketType.SR, len(body)) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverReport:
    """RR (RFC 3550 6.4.2): reception reports from a participant that is not sending."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    def to_bytes(self) -> bytes:
        """Serialise."""
        body = (
            _SSRC.pack(self.ssrc)
            + b"".join(block.to_bytes() for block in self.reports)
            + self.extension
        )
        return _header(False, len(self.reports), PacketType.RR, len(body)) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class SdesItem:
    """One SDES item (RFC 3550 6.5): type (CNAME=1...) and up to 255 octets of text."""

    item_type: int
    value: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SdesChunk:
    """The SDES items about one SSRC or CSRC."""

    ssrc: int
    items: tuple[SdesItem, ...] = ()

    @property
    def cname(self) -> str | None:
        """The CNAME item decoded as UTF-8, if present."""
        for item in self.items:
            if item.item_type == SDES_CNAME:
                return item.value.decode("utf-8", "replace")
        return None

    def to_bytes(self) -> bytes:
        """Serialise, with the null item and padding to a word boundary (6.5)."""
        parts = [_SSRC.pack(self.ssrc)]
        for item in self.items:
            if not 0 < item.item_type <= 0xFF or len(item.value) > MAX_SDES_TEXT:
                raise ValueError(f"bad SDES item type {item.item_type} or length")
            parts.append(bytes((item.item_type, len(item.value))) + item.value)
        data = b"".join(parts) + b"\x00"
        return _pad4(data)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceDescription:
    """SDES (RFC 3550 6.5): one chunk per source."""

    chunks: tuple[SdesChunk, ...] = ()

    @classmethod
    def with_cname(cls, ssrc: int, cname: str) -> SourceDescription:
        """The usual SDES: a single chunk holding our CNAME (6.5.1)."""
        item = SdesItem(item_type=SDES_CNAME, value=cname.encode("utf-8"))
        return cls(chunks=(SdesChunk(ssrc=ssrc, items=(item,)),))

    def to_bytes(self) -> bytes:
        """Serialise."""
        body = b"".join(chunk.to_bytes() for chunk in self.chunks)
        return _header(False, len(self.chunks), PacketType.SDES, len(body)) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye:
    """BYE (RFC 3550 6.6): sources leaving, with an optional reason."""

    sources: tuple[int, ...] = ()
    reason: str | None = None

    def to_bytes(self) -> bytes:
        """Serialise; the reason is UTF-8 and at most 255 octets."""
        body = b"".join(_SSRC.pack(ssrc) for ssrc in self.sources)
        if self.reason is not None:
            text = self.reason.encode("utf-8")
            if len(text) > MAX_BYE_REASON:
                raise ValueError("BYE reason longer than 255 octets")
            body = _pad4(body + bytes((len(text),)) + text)
        return _header(False, len(self.sources), PacketType.BYE, len(body)) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownPacket:
    """An RTCP packet we carry but do not interpret (APP, feedback, XR...).

    ``body`` is everything after the 4-byte header, padding removed.
    """

    packet_type: int
    count: int
    body: bytes

    def to_bytes(self) -> bytes:
        """Serialise."""
        return _header(False, self.count, self.packet_type, len(self.body)) + self.body


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | UnknownPacket


def _parse_sr(count: int, body: memoryview) -> SenderReport:
    if len(body) < 4 + SENDER_INFO_SIZE:
        raise RtcpError("length", f"SR body of {len(body)} bytes is too short")
    ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body, 0)
    offset = 4 + SENDER_INFO_SIZE  # SSRC then sender info
    reports = _parse_blocks(body, offset, count)
    return SenderReport(
        ssrc=ssrc,
        ntp_timestamp=ntp,
        rtp_timestamp=rtp_ts,
        packet_count=packets,
        octet_count=octets,
        reports=reports,
        extension=bytes(body[offset + count * REPORT_BLOCK_SIZE :]),
    )


def _parse_rr(count: int, body: memoryview) -> ReceiverReport:
    if len(body) < 4:
        raise RtcpError("length", "RR without an SSRC")
    (ssrc,) = _SSRC.unpack_from(body, 0)
    reports = _parse_blocks(body, 4, count)
    return ReceiverReport(
        ssrc=ssrc,
        reports=reports,
        extension=bytes(body[4 + count * REPORT_BLOCK_SIZE :]),
    )


def _parse_sdes(count: int, body: memoryview) -> SourceDescription:
    chunks: list[SdesChunk] = []
    offset = 0
    size = len(body)
    for _ in range(count):
        if offset + 4 > size:
            raise RtcpError("sdes", "SDES chunk cut short before its SSRC")
        (ssrc,) = _SSRC.unpack_from(body, offset)
        offset += 4
        items: list[SdesItem] = []
        while True:
            if offset >= size:
                raise RtcpError("sdes", "SDES chunk without its null item")
            item_type = body[offset]
            if item_type == SDES_END:
                # the null octet(s) run to the next word boundary
                offset = (offset + 4) & ~3
                break
            if offset + 2 > size or offset + 2 + body[offset + 1] > size:
                raise RtcpError("sdes", f"SDES item {item_type} overruns the packet")
            length = body[offset + 1]
            value = bytes(body[offset + 2 : offset + 2 + length])
            items.append(SdesItem(item_type=item_type, value=value))
            offset += 2 + length
        chunks.append(SdesChunk(ssrc=ssrc, items=tuple(items)))
    return SourceDescription(chunks=tuple(chunks))


def _parse_bye(count: int, body: memoryview) -> Bye:
    end = count * 4
    if end > len(body):
        raise RtcpError("bye", f"{count} SSRCs do not fit in the BYE")
    sources = struct.unpack_from(f"!{count}I", body, 0)
    reason = None
    if end < len(body):
        length = body[end]
        if end + 1 + length > len(body):
            raise RtcpError("bye", "BYE reason overruns the packet")
        reason = bytes(body[end + 1 : end + 1 + length]).decode("utf-8", "replace")
    return Bye(sources=sources, reason=reason)


def parse_compound(
    data: bytes | bytearray | memoryview, *, strict: bool = False
) -> list[RtcpPacket]:
    """Parse an RTCP datagram (one or more packets); raise :class:`RtcpError`.

    :param strict: also require the first packet to be SR or RR (RFC 3550 6.1); off
        by default so reduced-size RTCP (RFC 5506) is accepted.
    """
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    size = len(view)
    if size > MAX_PACKET_SIZE:
        raise RtcpError("too_big", f"{size} bytes is over the {MAX_PACKET_SIZE} limit")
    if size < HEADER_SIZE:
        raise RtcpError("short", f"{size} bytes is shorter than an RTCP header")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < size:
        if offset + HEADER_SIZE > size:
            raise RtcpError(
                "length", f"{size - offset} stray bytes after the last packet"
            )
        first, packet_type, words = _HEADER.unpack_from(view, offset)
        if first & VERSION_MASK != VERSION_BITS:
            raise RtcpError(
                "version", f"RTCP version {first >> 6}, expected {RTCP_VERSION}"
            )
        end = offset + (words + 1) * 4
        if end > size:
            raise RtcpError(
                "length", f"packet of {(words + 1) * 4} bytes overruns {size}"
            )
        body_end = end
        if first & PADDING_BIT:
            # A.2: only the last packet of a compound may be padded
            if end != size:
                raise RtcpError("padding", "padding on a packet that is not the last")
            padding = view[end - 1]
            if padding == 0 or padding > end - offset - HEADER_SIZE:
                raise RtcpError("padding", f"padding count {padding} is impossible")
            body_end -= padding
        if strict and not packets and packet_type not in (PacketType.SR, PacketType.RR):
            raise RtcpError("first", f"compound starts with packet type {packet_type}")
        count = first & COUNT_MASK
        body = view[offset + HEADER_SIZE : body_end]
        packets.append(_parse_one(packet_type, count, body))
        offset = end
    return packets


def _parse_one(packet_type: int, count: int, body: memoryview) -> RtcpPacket:
    if packet_type == PacketType.SR:
        return _parse_sr(count, body)
    if packet_type == PacketType.RR:
        return _parse_rr(count, body)
    if packet_type == PacketType.SDES:
        return _parse_sdes(count, body)
    if packet_type == PacketType.BYE:
        return _parse_bye(count, body)
    return UnknownPacket(packet_type=packet_type, count=count, body=bytes(body))


def build_compound(packets: list[RtcpPacket] | tuple[RtcpPacket, ...]) -> bytes:
    """Join packets into one datagram (RFC 3550 6.1: put SR or RR first)."""
    return b"".join(packet.to_bytes() for packet in packets)
