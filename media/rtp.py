"""RTP packets and receive-side sequence state (RFC 3550 section 5.1, appendix A.1; RFC 3551).

:class:`RtpPacket` parses and builds the fixed header, CSRC list, header extension
(RFC 3550 5.3.1) and padding. Every defect in received bytes raises :class:`RtpError`
whose ``reason`` is a short key (``"short"``, ``"version"``, ``"padding"``,
``"extension"``, ``"csrc"``, ``"too_big"``) meant to be used as a counter name; the
receive path logs one DEBUG line and drops the datagram.

Theory of operation: this runs at tens of thousands of packets per second, so the hot
path is :func:`peek_header`, which validates a datagram in a reused receive buffer with
one ``struct.unpack_from`` and returns a plain tuple (payload type, marker, sequence,
timestamp, ssrc, payload start, payload end) or ``None``; a relay forwards the bytes
untouched and only calls :meth:`RtpPacket.parse` when it needs an object (or the
``reason`` of a bad datagram for its counters). :func:`is_rtcp` demultiplexes RTP and
RTCP sharing one port (RFC 5761 section 4). :class:`SequenceTracker` is the RFC 3550
A.1 algorithm (probation, MAX_DROPOUT, MAX_MISORDER, cycle counting) that loss
statistics build on, and :class:`SourceTracker` keeps one per SSRC so that a peer that
changes SSRC mid-call (a re-INVITE on its far side, a transfer) keeps being heard: the
new SSRC becomes the active one as soon as it passes probation.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

logger = logging.getLogger(__name__)

__all__ = [
    "HEADER_SIZE",
    "MAX_DROPOUT",
    "MAX_MISORDER",
    "MAX_PACKET_SIZE",
    "MIN_SEQUENTIAL",
    "RTP_SEQ_MOD",
    "RTP_VERSION",
    "PayloadType",
    "RtpError",
    "RtpExtension",
    "RtpHeaderTuple",
    "RtpPacket",
    "SequenceTracker",
    "SourceTracker",
    "is_rtcp",
    "peek_header",
    "seq_delta",
    "seq_newer",
]

# RFC 3550 5.1: fixed header fields.
RTP_VERSION: Final = 2
HEADER_SIZE: Final = 12  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC
CSRC_SIZE: Final = 4
MAX_CSRC: Final = 15  # CC is 4 bits
EXTENSION_HEADER_SIZE: Final = (
    4  # RFC 3550 5.3.1: profile-defined 16 bits + length 16 bits
)
MAX_PAYLOAD_TYPE: Final = 127
MAX_PADDING: Final = (
    255  # RFC 3550 5.1: the last octet counts the padding, itself included
)
VERSION_MASK: Final = 0xC0
VERSION_BITS: Final = RTP_VERSION << 6
PADDING_BIT: Final = 0x20
EXTENSION_BIT: Final = 0x10
CC_MASK: Final = 0x0F
MARKER_BIT: Final = 0x80
PT_MASK: Final = 0x7F

# Our limit, not the RFC's: audio packets are a few hundred bytes and paths keep RTP
# under the MTU; anything larger is garbage or an attack and is refused unparsed.
MAX_PACKET_SIZE: Final = 4096

# RFC 5761 section 4: RTCP packet types 192-223 share the second octet with RTP marker+PT
# 64-95, which is why those RTP payload types must not be used when multiplexing.
RTCP_DEMUX_FIRST: Final = 192
RTCP_DEMUX_LAST: Final = 223

# RFC 3550 appendix A.1: source validation and sequence number bookkeeping.
RTP_SEQ_MOD: Final = 1 << 16
SEQ_MASK: Final = RTP_SEQ_MOD - 1
HALF_SEQ: Final = RTP_SEQ_MOD >> 1
MIN_SEQUENTIAL: Final = 2
MAX_DROPOUT: Final = 3000
MAX_MISORDER: Final = 100
MAX_SOURCES: Final = 4  # SSRCs remembered per stream by SourceTracker (ours)

_FIXED: Final = struct.Struct("!BBHII")
_UINT16: Final = struct.Struct("!H")
_EXTENSION: Final = struct.Struct("!HH")


class PayloadType(IntEnum):
    """Static payload types a contact centre meets (RFC 3551 table 4; RFC 3389).

    Named as the IANA RTP parameters registry names them. Being ints, members compare
    equal to the payload type numbers found in packets.
    """

    PCMU = 0
    GSM = 3
    G723 = 4
    PCMA = 8
    G722 = 9
    CN = 13
    G729 = 18


class RtpError(Exception):
    """A received datagram is not a valid RTP packet.

    :param reason: a short key naming the defect, fit to be a counter name: ``"short"``,
        ``"version"``, ``"padding"``, ``"extension"``, ``"csrc"`` or ``"too_big"``.
    :param message: a human sentence with the numbers that made it fail.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """An RFC 3550 5.3.1 header extension: 16 profile-defined bits and the raw data.

    ``data`` is a multiple of 4 bytes long.
    """

    # TODO: RFC 8285 one-byte/two-byte elements (profile 0xBEDE / 0x100x) are not split
    # out; nothing in a G.711 contact centre needs them, WebRTC's audio level would.

    profile: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.profile <= 0xFFFF:
            raise ValueError(f"extension profile {self.profile} is not 16 bits")
        if len(self.data) % 4 or len(self.data) > 0xFFFF * 4:
            raise ValueError(
                f"extension data of {len(self.data)} bytes is not whole words"
            )


# (payload_type, marker, sequence, timestamp, ssrc, payload_start, payload_end)
RtpHeaderTuple = tuple[int, bool, int, int, int, int, int]


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 5.1).

    :param padding: the number of padding octets after the payload, the count octet
        included (RFC 3550 5.1, P bit); 0 means no padding.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool = False
    payload: bytes = b""
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Parse one datagram; raise :class:`RtpError` if it is not valid RTP."""
        size = len(data)
        if size > MAX_PACKET_SIZE:
            raise RtpError(
                "too_big", f"{size} bytes is over the {MAX_PACKET_SIZE} limit"
            )
        if size < HEADER_SIZE:
            raise RtpError("short", f"{size} bytes is shorter than the RTP header")
        first, second, sequence, timestamp, ssrc = _FIXED.unpack_from(data, 0)
        if first & VERSION_MASK != VERSION_BITS:
            raise RtpError(
                "version", f"RTP version {first >> 6}, expected {RTP_VERSION}"
            )

        # CSRC list (RFC 3550 5.1, CC)
        start = HEADER_SIZE
        count = first & CC_MASK
        csrc: tuple[int, ...] = ()
        if count:
            start += count * CSRC_SIZE
            if start > size:
                raise RtpError("csrc", f"{count} CSRCs do not fit in {size} bytes")
            csrc = struct.unpack_from(f"!{count}I", data, HEADER_SIZE)

        # header extension (RFC 3550 5.3.1)
        extension = None
        if first & EXTENSION_BIT:
            if start + EXTENSION_HEADER_SIZE > size:
                raise RtpError(
                    "extension", "X bit set but no room for the extension header"
                )
            profile, words = _EXTENSION.unpack_from(data, start)
            data_start = start + EXTENSION_HEADER_SIZE
            start = data_start + words * 4
            if start > size:
                raise RtpError(
                    "extension",
                    f"extension of {words} words does not fit in {size} bytes",
                )
            extension = RtpExtension(profile, bytes(data[data_start:start]))

        # padding (RFC 3550 5.1, P bit): the last octet counts itself and the padding
        end = size
        padding = 0
        if first & PADDING_BIT:
            padding = data[size - 1]
            if padding == 0 or padding > size - start:
                raise RtpError(
                    "padding",
                    f"padding count {padding} with {size - start} bytes after header",
                )
            end -= padding

        return cls(
            payload_type=second & PT_MASK,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            marker=bool(second & MARKER_BIT),
            payload=bytes(data[start:end]),
            csrc=csrc,
            extension=extension,
            padding=padding,
        )

    def to_bytes(self) -> bytes:
        """Serialise; raise :class:`ValueError` on fields that do not fit the header."""
        if not 0 <= self.payload_type <= MAX_PAYLOAD_TYPE:
            raise ValueError(f"payload type {self.payload_type} is not 7 bits")
        if len(self.csrc) > MAX_CSRC:
            raise ValueError(f"{len(self.csrc)} CSRCs, at most {MAX_CSRC}")
        if not 0 <= self.padding <= MAX_PADDING:
            raise ValueError(f"padding {self.padding} is not in 0..{MAX_PADDING}")
        first = VERSION_BITS | len(self.csrc)
        if self.padding:
            first |= PADDING_BIT
        if self.extension is not None:
            first |= EXTENSION_BIT
        second = self.payload_type | (MARKER_BIT if self.marker else 0)
        try:
            parts = [
                _FIXED.pack(first, second, self.sequence, self.timestamp, self.ssrc)
            ]
            if self.csrc:
                parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        except struct.error as exc:
            raise ValueError(f"RTP header field out of range: {exc}") from None
        if self.extension is not None:
            ext = self.extension
            parts.append(_EXTENSION.pack(ext.profile, len(ext.data) // 4))
            parts.append(ext.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1))
            parts.append(bytes((self.padding,)))
        return b"".join(parts)


def peek_header(
    buf: bytes | bytearray | memoryview, size: int
) -> RtpHeaderTuple | None:
    """Validate the RTP datagram in ``buf[:size]`` and return its header as a tuple.

    The tuple is ``(payload_type, marker, sequence, timestamp, ssrc, payload_start,
    payload_end)``; the payload is ``buf[payload_start:payload_end]``. Returns ``None``
    for anything :meth:`RtpPacket.parse` would refuse (call it to learn the reason).
    ``buf`` may be longer than ``size`` (a reused ``recv_into`` buffer).
    """
    if size < HEADER_SIZE or size > MAX_PACKET_SIZE:
        return None
    first, second, sequence, timestamp, ssrc = _FIXED.unpack_from(buf, 0)
    if first & VERSION_MASK != VERSION_BITS:
        return None
    start = HEADER_SIZE + (first & CC_MASK) * CSRC_SIZE
    if first & EXTENSION_BIT:
        if start + EXTENSION_HEADER_SIZE > size:
            return None
        start += EXTENSION_HEADER_SIZE + _UINT16.unpack_from(buf, start + 2)[0] * 4
    if start > size:
        return None
    end = size
    if first & PADDING_BIT:
        padding = buf[size - 1]
        if padding == 0 or padding > size - start:
            return None
        end -= padding
    return (
        second & PT_MASK,
        second >= MARKER_BIT,
        sequence,
        timestamp,
        ssrc,
        start,
        end,
    )


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """Tell RTCP from RTP on a multiplexed port (RFC 5761 section 4).

    Looks at the second octet only: RTCP packet types 192-223 (SR 200, RR 201, SDES 202,
    BYE 203, APP 204, feedback 205/206...). Fewer than two bytes is not RTCP.
    """
    return len(data) >= 2 and RTCP_DEMUX_FIRST <= data[1] <= RTCP_DEMUX_LAST


def seq_delta(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 16-bit sequence numbers, in [-32768, 32767]."""
    return ((a - b + HALF_SEQ) & SEQ_MASK) - HALF_SEQ


def seq_newer(a: int, b: int) -> bool:
    """True if sequence number ``a`` comes after ``b`` (RFC 1982 serial arithmetic)."""
    return 0 < ((a - b) & SEQ_MASK) < HALF_SEQ


class SequenceTracker:
    """Receive state of one SSRC: RFC 3550 appendix A.1, plus A.3 interval loss.

    Feed every packet's sequence number to :meth:`update`. It returns ``False`` while the
    source is on probation (the first ``min_sequential`` packets must be in sequence) and
    for a jump larger than ``MAX_DROPOUT`` ahead or ``MAX_MISORDER`` behind until a
    second packet confirms the new numbering (the sender restarted); ``True`` packets
    are counted in :attr:`received`. ``False`` means "not counted", not "drop it": the
    caller decides whether to play such a packet.

    :param min_sequential: packets in sequence needed before a new source is valid;
        0 trusts the first packet (the source is already known from signalling).
    """

    __slots__ = (
        "bad_seq",
        "base_seq",
        "cycles",
        "expected_prior",
        "max_seq",
        "min_sequential",
        "probation",
        "received",
        "received_prior",
        "started",
    )

    def __init__(self, *, min_sequential: int = MIN_SEQUENTIAL) -> None:
        self.started = False
        self.min_sequential = min_sequential
        self.probation = min_sequential
        self.base_seq = 0
        self.max_seq = 0
        self.bad_seq = RTP_SEQ_MOD + 1  # so seq == bad_seq is false
        self.cycles = 0  # count of sequence number wraps, times RTP_SEQ_MOD
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def _restart(self, seq: int) -> None:
        """``init_seq`` of A.1: start counting afresh at ``seq``."""
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def update(self, seq: int) -> bool:
        """Account for one packet; see the class docstring for the return value."""
        if not self.started:
            self.started = True
            self._restart(seq)
            if self.probation:
                self.max_seq = (seq - 1) & SEQ_MASK
            else:
                self.received = 1
                return True
        udelta = (seq - self.max_seq) & SEQ_MASK
        if self.probation:
            # A.1: a new source must send MIN_SEQUENTIAL packets in sequence
            if seq == (self.max_seq + 1) & SEQ_MASK:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._restart(seq)
                    self.received = 1
                    return True
            else:
                self.probation = self.min_sequential - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            # in order, with a permissible gap
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # a very large jump: believe it only when the next packet follows it
            if seq == self.bad_seq:
                self._restart(seq)
            else:
                self.bad_seq = (seq + 1) & SEQ_MASK
                return False
        # else: a duplicate or a reordered packet, counted as received (A.1 does too)
        self.received += 1
        return True

    @property
    def extended_max(self) -> int:
        """The extended highest sequence number received (RFC 3550 6.4.1)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected since the base sequence number (RFC 3550 A.3)."""
        if not self.started or self.probation:
            return 0
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost; negative when duplicates outnumber losses (A.3)."""
        return self.expected - self.received

    def extend(self, seq: int) -> int:
        """Map a 16-bit sequence number onto the extended numbering near the maximum."""
        return self.extended_max + seq_delta(seq, self.max_seq)

    def interval_fraction_lost(self) -> int:
        """Fraction lost since the previous call, 8-bit fixed point (RFC 3550 A.3).

        Call once per report interval: it moves the interval start to now.
        """
        expected = self.expected
        expected_interval = expected - self.expected_prior
        self.expected_prior = expected
        received_interval = self.received - self.received_prior
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval <= 0 or lost_interval <= 0:
            return 0
        return min((lost_interval << 8) // expected_interval, 255)


@dataclass(slots=True)
class SourceTracker:
    """The SSRCs one peer sends on one stream, each with a :class:`SequenceTracker`.

    :meth:`update` feeds the packet to its SSRC's tracker. A new SSRC starts on
    probation and becomes :attr:`active_ssrc` once it sends ``min_sequential`` packets
    in sequence, so a peer that changes SSRC mid-call keeps being heard and its loss
    statistics start afresh instead of counting a bogus jump. At most ``max_sources``
    SSRCs are remembered; the least recently heard inactive one is forgotten first.
    """

    max_sources: int = MAX_SOURCES
    min_sequential: int = MIN_SEQUENTIAL
    active_ssrc: int | None = None
    ssrc_changes: int = 0
    _sources: dict[int, SequenceTracker] = field(default_factory=dict, repr=False)

    def update(self, ssrc: int, seq: int) -> bool:
        """Account for one packet; ``True`` if it counts (see :class:`SequenceTracker`)."""
        tracker = self._sources.get(ssrc)
        if tracker is None:
            tracker = self._add(ssrc)
        elif ssrc != self.active_ssrc:
            # keep recency order: the dict's last entries are the recently heard
            del self._sources[ssrc]
            self._sources[ssrc] = tracker
        valid = tracker.update(seq)
        if valid and ssrc != self.active_ssrc:
            if self.active_ssrc is not None:
                self.ssrc_changes += 1
                logger.debug("SSRC changed from %08x to %08x", self.active_ssrc, ssrc)
            self.active_ssrc = ssrc
        return valid

    def _add(self, ssrc: int) -> SequenceTracker:
        while len(self._sources) >= max(self.max_sources, 1):
            victim = next((s for s in self._sources if s != self.active_ssrc), None)
            if victim is None:
                break
            del self._sources[victim]
        tracker = SequenceTracker(min_sequential=self.min_sequential)
        self._sources[ssrc] = tracker
        return tracker

    @property
    def active(self) -> SequenceTracker | None:
        """The tracker of the SSRC currently heard, if any has passed probation."""
        if self.active_ssrc is None:
            return None
        return self._sources.get(self.active_ssrc)

    def tracker(self, ssrc: int) -> SequenceTracker | None:
        """The tracker of ``ssrc`` if it is remembered."""
        return self._sources.get(ssrc)

    @property
    def ssrcs(self) -> tuple[int, ...]:
        """The SSRCs remembered, least recently heard first."""
        return tuple(self._sources)
