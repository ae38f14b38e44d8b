"""One RTP/RTCP endpoint: a socket pair, its receive path and its one outgoing stream.

RFC 3550 (RTP), RFC 4961 (symmetric RTP), RFC 5761 section 4 (RTP/RTCP demultiplexing),
RFC 4733 (telephone-event), RFC 3389 (comfort noise).

Theory of operation.  The receive path is the hot path of the whole switch: 1000 legs at
50 packets a second are 50 000 wake-ups a second, and every microsecond of Python per
packet costs 5 % of a core (PERFORMANCE.md 2.2).  So it is written out by hand:
``loop.add_reader`` on the raw socket (an asyncio ``DatagramProtocol`` allocates 256 KiB
per read and costs four times as much), ONE ``recvfrom_into`` a buffer shared by every
endpoint per wake-up (the poll is level-triggered, so a socket holding more is simply
reported again; reading on to ``BlockingIOError`` would add a failed syscall and an
exception to nearly every packet), one ``struct.unpack_from`` of the fixed header, one
comparison that covers version, CSRC count, extension, padding and payload type, one
of the source address, a handful of attribute updates for the statistics, and when
bridged one ``struct.pack_into`` rewriting the header in place before ``sendto`` of a
precomputed memoryview slice.  Packets that are not plain 12-byte-header audio of the
negotiated payload type from the expected address (CSRCs, extensions, padding,
telephone-event, comfort noise, RTCP on the RTP port, strangers, the packet to latch
on, garbage) leave the straight line for slower methods.  Nothing on the receive path
raises: every bad datagram is counted under a reason and dropped, with one DEBUG line.
The RTCP sockets, read a few times a minute, share one epoll set that is a single loop
reader (:class:`ReaderGroup`): set-up and teardown are where a short call spends most
of its media time, and a loop reader per socket is the dearest part of them.

Symmetric RTP (RFC 4961): everything is sent from the socket packets are received on.
With ``latching`` on (phones behind NAT) the first valid packet fixes the remote address
to its source; afterwards, or when latching is off and the remote is known (trunks),
packets from any other address are dropped under ``address`` and never bridged.

Outgoing stream.  Whatever feeds it (a prompt, the bridged peer, the mixer, music on
hold), the endpoint sends ONE RTP stream: one SSRC, sequence numbers that continue by
one, timestamps that never go backwards.  :class:`OutStream` remembers where the stream
is; when the source changes the next packet carries the marker bit and a timestamp moved
forward by the time that passed (at least one frame).  Bridged packets are rewritten
with offsets computed once per change (:mod:`media.relay`), so per packet forwarding is
two additions.

Receive state is kept per SSRC (:class:`SourceState`, a lean inline version of RFC 3550
A.1 and A.8), so a peer that changes SSRC mid-call keeps being heard and its loss
figures restart cleanly.
"""

from __future__ import annotations

import _socket
import asyncio
import enum
import logging
import random
import select
import struct
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from media.commands import (
    PT_CN,
    PT_PCMU,
    PT_TELEPHONE_EVENT_DEFAULT,
    Codec,
    EndpointStats,
)
from media.dtmf import DtmfDigit, DtmfReceiver
from media.quality import g711_mos, round_trip_time
from media.rtcp import (
    ReceiverReport,
    ReportBlock,
    RtcpError,
    SenderReport,
    SourceDescription,
    build_compound,
    ntp_from_unix,
    ntp_middle32,
    parse_compound,
)
from media.rtp import (
    HEADER_SIZE,
    MAX_PACKET_SIZE,
    RtpError,
    RtpPacket,
    peek_header,
)

if TYPE_CHECKING:
    from media.relay import RelayPath

logger = logging.getLogger(__name__)

# RFC 3550 5.1: V=2, P=0, X=0, CC=0 -- the first octet of every ordinary audio packet.
PLAIN_FIRST_OCTET: Final = 0x80
VERSION_MASK: Final = 0xC0
VERSION_BITS: Final = 0x80
MARKER_BIT: Final = 0x80
PT_MASK: Final = 0x7F
SEQ_MASK: Final = 0xFFFF
RTP_SEQ_MOD: Final = 0x10000
TS_MASK: Final = 0xFFFFFFFF
# RFC 3550 A.1: sequence jumps beyond these are not "in order".
MAX_DROPOUT: Final = 3000
MAX_MISORDER: Final = 100
# RFC 5761 section 4: second octet 192..223 is RTCP on a multiplexed port.
RTCP_DEMUX_FIRST: Final = 192
RTCP_DEMUX_LAST: Final = 223
# RFC 3551 4.5.14: G.711 is 8000 samples a second, one octet per sample.
CLOCK_RATE: Final = 8000
SAMPLES_PER_FRAME: Final = 160  # 20 ms (RFC 3551 4.2 default packetisation)
# RFC 3550 A.8: J += (|D| - J) / 16
JITTER_GAIN: Final = 1.0 / 16.0
# A transit jump larger than this (timestamp wrap, sender restart) is not jitter (ours).
JITTER_MAX_STEP: Final = float(CLOCK_RATE * 10)
# A datagram filling more than MAX_PACKET_SIZE of the buffer is oversized; the extra
# 4 bytes also keep the buffer a whole number of 32-bit words (see RECEIVE_WORDS).
RECEIVE_BUFFER_SIZE: Final = MAX_PACKET_SIZE + 4
# Received audio kept for the mixer/recorder, in samples (G.711: one octet each).
TAP_MAX_SAMPLES: Final = SAMPLES_PER_FRAME * 3
TAP_KEEP_SAMPLES: Final = SAMPLES_PER_FRAME
# SSRCs remembered per endpoint (the oldest is forgotten beyond this).
MAX_SOURCES: Final = 8

# TODO: RFC 3711 (SRTP) is not supported: media is plain RTP, fine on a trusted LAN or
# behind an SBC, not across the internet.
# TODO: the tap (audio for mixer/recorder) appends payloads in arrival order with no
# reordering or loss concealment: a reordered packet costs a 20 ms glitch in mixes and
# recordings (bridged audio is unaffected: the phones' jitter buffers reorder).

# One buffer for every endpoint: the loop is single-threaded and a callback finishes
# with the datagram before the next one is read.
RECEIVE_BUFFER: Final = bytearray(RECEIVE_BUFFER_SIZE)
RECEIVE_VIEW: Final = memoryview(RECEIVE_BUFFER)
# The buffer as native 32-bit words: word 2 is the SSRC (stored pre-swapped).
RECEIVE_WORDS: Final = RECEIVE_VIEW.cast("I")
_BUFFER: Final = RECEIVE_BUFFER
_VIEW: Final = RECEIVE_VIEW
# The buffer sliced once at every length: a list lookup per forwarded packet instead of
# a new memoryview (about 0.8 MB per process, shared like the buffer).
_SLICES: Final = [RECEIVE_VIEW[:size] for size in range(RECEIVE_BUFFER_SIZE + 1)]
_HEADER: Final = struct.Struct("!BBHII")
_FIXED: Final = struct.Struct("!HHII")  # first two octets as one word, seq, ts, SSRC
# The first two octets of a plain packet per payload type, as the receive path reads
# them: one int object per PT shared by every endpoint rather than one per endpoint,
# since each object the receive path touches is a likely cache miss with 1000 legs.
_PLAIN_WORDS: Final = [PLAIN_FIRST_OCTET << 8 | pt for pt in range(PT_MASK + 1)]
_REWRITE: Final = struct.Struct("!BHII")  # everything after the first octet
_unpack_fixed = _FIXED.unpack_from
_pack_rewrite = _REWRITE.pack_into
_monotonic = time.monotonic


class Output(enum.Enum):
    """What feeds the endpoint's outgoing stream."""

    NONE = "none"
    RELAY = "relay"
    PLAYER = "player"
    MIXER = "mixer"


class PayloadKind(enum.Enum):
    """What a received payload type carries."""

    AUDIO = "audio"
    TELEPHONE_EVENT = "telephone-event"  # RFC 4733
    COMFORT_NOISE = "CN"  # RFC 3389


# Enum members read at every call set-up, bound to module names once: on CPython 3.11
# each read of an attribute of an Enum class goes through the slot hook installed for
# EnumType.__getattr__, some ten times the cost of reading a global.
_PCMU: Final = Codec.PCMU
_OUTPUT_NONE: Final = Output.NONE
_OUTPUT_RELAY: Final = Output.RELAY
_AUDIO: Final = PayloadKind.AUDIO
_TELEPHONE_EVENT: Final = PayloadKind.TELEPHONE_EVENT
_COMFORT_NOISE: Final = PayloadKind.COMFORT_NOISE

# What ``set_codec(Codec.PCMU)`` with the default events maps, shared by new endpoints
# (set_codec replaces an endpoint's map, it never changes one in place).
_DEFAULT_KINDS: Final = {
    PT_PCMU: _AUDIO,
    PT_TELEPHONE_EVENT_DEFAULT: _TELEPHONE_EVENT,
    PT_CN: _COMFORT_NOISE,
}


class DropReason:
    """Counter keys for dropped datagrams besides :class:`media.rtp.RtpError` reasons."""

    PAYLOAD_TYPE: Final = "payload_type"  # not negotiated on this endpoint
    ADDRESS: Final = "address"  # from a stranger (after latching, or fixed remote)
    TOO_BIG: Final = "too_big"
    MALFORMED: Final = "malformed"
    SEQUENCE: Final = "sequence"  # A.1 big jump awaiting confirmation (still counted)


class SourceState:
    """Receive state of one SSRC heard on an endpoint (RFC 3550 A.1, A.3, A.8).

    The fields are updated inline by the receive path, hence plain slots.
    """

    __slots__ = (
        "bad_seq",
        "base_seq",
        "cycles",
        "expected_prior",
        "jitter",
        "last_ts",
        "max_seq",
        "octets",
        "received",
        "ssrc",
        "transit",
    )

    def __init__(self, ssrc: int, seq: int, ts: int, now: float) -> None:
        self.ssrc = ssrc
        self.base_seq = seq
        self.max_seq = seq
        self.cycles = 0
        self.expected_prior = 0
        self.bad_seq = RTP_SEQ_MOD + 1
        self.received = 0
        self.octets = 0
        self.transit = now * CLOCK_RATE - ts
        self.jitter = 0.0
        self.last_ts = ts

    @property
    def expected(self) -> int:
        """Packets expected from the first sequence number to the highest (A.3)."""
        return self.expected_prior + self.cycles + self.max_seq - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost, never negative (duplicates do not hide losses)."""
        return max(self.expected - self.received, 0)

    @property
    def last_arrival(self) -> float:
        """When the last packet arrived (monotonic seconds), recovered from transit."""
        return (self.transit + self.last_ts) / CLOCK_RATE

    def jump(self, seq: int) -> None:
        """A.1: a big jump is believed when the next packet continues it."""
        if seq == self.bad_seq:
            # the sender restarted its numbering at the previous packet (seq - 1):
            # keep what was expected so far, start a new range there
            self.expected_prior = self.expected
            self.base_seq = seq - 1
            self.max_seq = seq
            self.cycles = 0
            self.bad_seq = RTP_SEQ_MOD + 1
        else:
            self.bad_seq = (seq + 1) & SEQ_MASK


_NO_SOURCE: Final = SourceState(-1, 0, 0, 0.0)


class OutStream:
    """Our single outgoing RTP stream (RFC 3550 5.1): where it is and what it sent.

    ``seq``/``ts`` are the last sequence number and timestamp sent (random at first,
    RFC 3550 5.1), ``time`` when (monotonic seconds, None before the first packet),
    ``samples`` the duration of that packet.  ``marker`` asks for the marker bit on the
    next locally generated packet (a new source starts).
    """

    __slots__ = ("marker", "octets", "packets", "samples", "seq", "ssrc", "time", "ts")

    def __init__(self) -> None:
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.time: float | None = None
        self.samples = SAMPLES_PER_FRAME
        self.marker = True
        self.packets = 0
        self.octets = 0

    def next_timestamp(self, when: float) -> int:
        """The timestamp of a packet starting at ``when``: forward by elapsed time.

        Never backwards and at least one packet duration after the last one sent.
        """
        if self.time is None:
            return self.ts
        elapsed = round((when - self.time) * CLOCK_RATE)
        step = elapsed if elapsed > self.samples else self.samples
        return (self.ts + step) & TS_MASK


def _shared(address: tuple[str, int]) -> tuple[str, int]:
    """``address`` with its host string interned.

    Endpoints talking to one host (an SBC, a trunk, phones behind one NAT) then share
    one string, which the receive path compares and ``sendto`` reads for every packet:
    one object in cache instead of one per endpoint.
    """
    return (sys.intern(address[0]), *address[1:])


class ReaderGroup:
    """Sockets that are seldom readable (RTCP: a compound every 5 s) behind ONE reader.

    Giving the loop a reader per socket costs, on uvloop, a poll handle, an ioctl, a
    weak-dictionary lookup and an ``epoll_ctl`` to add it and as much again to remove
    it: a fifth of an endpoint's set-up and teardown.  Here the sockets sit in an
    epoll set of our own whose descriptor is the loop's one reader; adding or
    removing a socket is one ``epoll_ctl``.  Readiness is level-triggered as with the
    loop's own readers, so a socket still holding datagrams is reported again, and a
    datagram is handled in the same loop iteration as it would be with its own
    reader (the RTT from RTCP is unchanged).  Linux only (:attr:`available`); elsewhere
    endpoints keep their own readers.

    :param loop: the loop the group's descriptor is read on.
    """

    __slots__ = ("_callbacks", "_epoll", "_loop", "_poll")

    available: Final = hasattr(select, "epoll")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self._poll = self._epoll.poll
        self._callbacks: dict[int, Callable[[], None]] = {}
        loop.add_reader(self._epoll.fileno(), self._on_ready)

    def __len__(self) -> int:
        return len(self._callbacks)

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` (no arguments) whenever ``fd`` is readable."""
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def remove(self, fd: int) -> None:
        """Stop watching ``fd`` (before it is closed); unknown descriptors are ignored."""
        if self._callbacks.pop(fd, None) is not None:
            self._epoll.unregister(fd)

    def close(self) -> None:
        """Forget every socket and give the descriptor back (the sockets stay open)."""
        if self._epoll.closed:
            return
        self._loop.remove_reader(self._epoll.fileno())
        self._callbacks.clear()
        self._epoll.close()

    def _on_ready(self) -> None:
        callbacks = self._callbacks
        for fd, _ in self._poll(0):
            callback = callbacks.get(fd)
            if callback is not None:  # removed by an earlier callback of this batch
                callback()


DtmfCallback = Callable[["RtpEndpoint", DtmfDigit], None]
LatchCallback = Callable[["RtpEndpoint"], None]


class RtpEndpoint:
    """An RTP/RTCP socket pair with its receive path and its outgoing stream.

    Driven by the event loop (``add_reader`` on both sockets) for reception and by the
    engine (bridging, :meth:`send_frame` from the media clock) for sending.

    :param endpoint_id: the engine's id, carried in events and statistics.
    :param loop: the loop the sockets are registered with.
    :param rtp_socket: bound non-blocking UDP socket on an even port (``socket.socket``
        or its C base, which :func:`media.ports.bind_pair` returns).
    :param rtcp_socket: bound non-blocking UDP socket on the next port.
    :param latching: latch the remote to the first valid packet's source.
    :param on_dtmf: called with each RFC 4733 key press received.
    :param on_latched: called when the remote address was latched.
    :param address: ``(host, rtp_port, rtcp_port)`` the sockets are bound to, when the
        caller knows it (spares two ``getsockname`` calls per endpoint).
    :param rtcp_readers: the group the RTCP socket waits in (default: a reader of its
        own on ``loop``).
    """

    # Slots, not an instance dict: with more than 30 attributes CPython 3.11 gives up
    # the compact shared-key layout and each endpoint gets a real dict, grown four
    # times while __init__ runs and searched by hash on every attribute read of the
    # receive path; slots are fixed offsets (CPython lays them out in sorted order,
    # so the receive loop's underscored fields sit together in front).
    __slots__ = (
        "_audio_pt",
        "_dtmf",
        "_expected",
        "_expected_prior",
        "_forward",
        "_kinds",
        "_last_sr",
        "_loop",
        "_on_dtmf",
        "_on_latched",
        "_packets_at_report",
        "_plain_word",
        "_received_prior",
        "_recvfrom_into",
        "_rtcp_latched",
        "_rtcp_readers",
        "_source",
        "_sources",
        "_tap",
        "closed",
        "codec",
        "comfort_noise_pt",
        "dropped",
        "dtmf_events",
        "endpoint_id",
        "feeder",
        "host",
        "latched",
        "latching",
        "out",
        "output",
        "relayed_octets",
        "relayed_packets",
        "remote",
        "retired_lost",
        "retired_octets",
        "retired_received",
        "round_trip_time",
        "rtcp_in",
        "rtcp_out",
        "rtcp_port",
        "rtcp_remote",
        "rtcp_socket",
        "rtp_port",
        "rtp_socket",
        "send_errors",
        "sendto",
        "tap_users",
        "telephone_event_pt",
        "underruns",
    )

    def __init__(
        self,
        endpoint_id: int,
        loop: asyncio.AbstractEventLoop,
        rtp_socket: _socket.socket,
        rtcp_socket: _socket.socket,
        *,
        latching: bool = True,
        on_dtmf: DtmfCallback | None = None,
        on_latched: LatchCallback | None = None,
        address: tuple[str, int, int] | None = None,
        rtcp_readers: ReaderGroup | None = None,
    ) -> None:
        # the receive loop's attributes
        self._recvfrom_into = rtp_socket.recvfrom_into
        self._expected: tuple[str, int] | None = None
        self._source = _NO_SOURCE
        self._forward: RelayPath | None = None  # where our received packets go
        self._tap: bytearray | None = None
        self.endpoint_id = endpoint_id
        self._loop = loop
        self.rtp_socket = rtp_socket
        self.rtcp_socket = rtcp_socket
        if address is None:
            self.host, self.rtp_port = rtp_socket.getsockname()[:2]
            self.rtcp_port: int = rtcp_socket.getsockname()[1]
        else:
            self.host, self.rtp_port, self.rtcp_port = address
        self.sendto = rtp_socket.sendto
        self._on_dtmf = on_dtmf
        self._on_latched = on_latched

        # addressing (RFC 4961)
        self.latching = latching
        self.latched = False
        self.remote: tuple[str, int] | None = None
        self.rtcp_remote: tuple[str, int] | None = None

        # payload types: PCMU with the default events, as set_codec(Codec.PCMU) sets
        self.codec = _PCMU
        self._audio_pt = PT_PCMU
        self._plain_word = _PLAIN_WORDS[PT_PCMU]
        self.telephone_event_pt: int | None = PT_TELEPHONE_EVENT_DEFAULT
        self.comfort_noise_pt: int | None = PT_CN
        self._kinds: dict[int, PayloadKind] = _DEFAULT_KINDS  # replaced, never changed

        # receive state
        self._sources: dict[int, SourceState] = {}
        self._dtmf: DtmfReceiver | None = None  # made by the first telephone-event
        self.dropped: dict[str, int] = {}
        self.rtcp_in = 0
        self.rtcp_out = 0
        self.dtmf_events = 0
        self.retired_received = 0  # packets of forgotten SSRCs
        self.retired_octets = 0
        self.retired_lost = 0
        self.round_trip_time: float | None = None
        self._last_sr: tuple[int, float] | None = None  # (LSR, monotonic arrival)
        self._expected_prior = 0
        self._received_prior = 0
        self._packets_at_report = 0
        self._rtcp_latched = False

        # sending and routing
        self.out = OutStream()
        self.output = _OUTPUT_NONE
        self.feeder: RelayPath | None = None  # the path whose sink we are
        self.relayed_packets = 0  # packets sent by retired paths feeding us
        self.relayed_octets = 0
        self.send_errors = 0
        self.tap_users = 0
        self.underruns = 0
        self.closed = False

        self._rtcp_readers = rtcp_readers
        loop.add_reader(rtp_socket.fileno(), self._on_rtp_readable)
        try:
            if rtcp_readers is None:
                loop.add_reader(rtcp_socket.fileno(), self._on_rtcp_readable)
            else:
                rtcp_readers.add(rtcp_socket.fileno(), self._on_rtcp_readable)
        except BaseException:
            loop.remove_reader(rtp_socket.fileno())  # the caller closes the sockets
            raise

    @property
    def cname(self) -> str:
        """Our RTCP CNAME (RFC 3550 6.5.1), unique per endpoint of this switch."""
        return f"ccswitch-{self.endpoint_id}@{self.host}"

    # ---------------------------------------------------------------- configuration

    def set_codec(
        self,
        codec: Codec,
        payload_type: int | None = None,
        *,
        telephone_event_pt: int | None = PT_TELEPHONE_EVENT_DEFAULT,
        comfort_noise_pt: int | None = PT_CN,
    ) -> None:
        """Set the negotiated encoding and payload types (same in both directions)."""
        audio_pt = codec.static_payload_type if payload_type is None else payload_type
        kinds = {audio_pt: _AUDIO}
        for pt, kind in (
            (telephone_event_pt, _TELEPHONE_EVENT),
            (comfort_noise_pt, _COMFORT_NOISE),
        ):
            if pt is None:
                continue
            if not 0 <= pt <= PT_MASK or pt in kinds:
                raise ValueError(f"payload type {pt} is invalid or used twice")
            kinds[pt] = kind
        if not 0 <= audio_pt <= PT_MASK:
            raise ValueError(f"payload type {audio_pt} is not 7 bits")
        self.codec = codec
        self._audio_pt = audio_pt
        self._plain_word = _PLAIN_WORDS[audio_pt]
        self.telephone_event_pt = telephone_event_pt
        self.comfort_noise_pt = comfort_noise_pt
        self._kinds = kinds
        if self._tap is not None:
            self._tap.clear()  # codes of the old codec must not be decoded as the new

    @property
    def audio_pt(self) -> int:
        """The negotiated audio payload type."""
        return self._audio_pt

    def set_remote(self, host: str, port: int, rtcp_port: int | None = None) -> None:
        """Send to ``host:port`` from now on; a previous latch is forgotten."""
        self.remote = _shared((host, port))
        self.rtcp_remote = (host, port + 1 if rtcp_port is None else rtcp_port)
        self.latched = False
        self._rtcp_latched = False
        self._expected = None if self.latching else self.remote
        self._remote_changed()

    def set_latching(self, enabled: bool) -> None:
        """Switch latching; turning it off pins the current remote."""
        self.latching = enabled
        if enabled:
            self._expected = self.remote if self.latched else None
        else:
            self.latched = False
            self._expected = self.remote

    def _remote_changed(self) -> None:
        if self.feeder is not None:
            self.feeder.destination = self.remote

    # ---------------------------------------------------------------- routing

    def set_output(self, output: Output) -> None:
        """Change what feeds the outgoing stream; the next packet carries the marker.

        Leaving ``RELAY`` settles the stream position from the bridged packets, so the
        next source continues the sequence and timestamps.
        """
        if output is self.output:
            return
        feeder = self.feeder
        if self.output is _OUTPUT_RELAY and feeder is not None:
            feeder.source.stop_forwarding(feeder)
        self.output = output
        self.out.marker = True
        if output is _OUTPUT_RELAY and feeder is not None:
            feeder.pending = True
            feeder.source.start_forwarding(feeder)

    def start_forwarding(self, path: RelayPath) -> None:
        """Send our received packets along ``path`` (called by the sink)."""
        self._forward = path

    def stop_forwarding(self, path: RelayPath) -> None:
        """Stop sending along ``path`` and leave its sink's stream where it was."""
        if self._forward is path:
            path.settle(self._source)
            self._forward = None

    @property
    def forwarding(self) -> RelayPath | None:
        """The path our received packets are currently sent along."""
        return self._forward

    # ---------------------------------------------------------------- tap (mixer, recorder)

    def open_tap(self) -> None:
        """Start keeping received audio for :meth:`take_frame` (reference counted)."""
        self.tap_users += 1
        if self._tap is None:
            self._tap = bytearray()

    def close_tap(self) -> None:
        """Release one :meth:`open_tap`."""
        self.tap_users = max(self.tap_users - 1, 0)
        if self.tap_users == 0:
            self._tap = None

    def take_frame(self, samples: int = SAMPLES_PER_FRAME) -> bytes | None:
        """The next ``samples`` received G.711 codes, or None on underrun.

        A backlog beyond :data:`TAP_MAX_SAMPLES` (a burst after a stall) is cut back to
        one frame so the delay through the mixer stays bounded.
        """
        tap = self._tap
        if tap is None:
            return None
        if len(tap) < samples:
            self.underruns += 1
            return None
        frame = bytes(tap[:samples])
        del tap[:samples]
        if len(tap) > TAP_MAX_SAMPLES:
            del tap[: len(tap) - TAP_KEEP_SAMPLES]
        return frame

    # ---------------------------------------------------------------- sending

    def send_frame(self, payload: bytes, when: float, samples: int) -> None:
        """Send one locally generated audio packet (player, mixer) at time ``when``.

        :param payload: encoded audio in this endpoint's codec.
        :param when: the packet's start on the monotonic clock (a tick's deadline).
        :param samples: its duration in timestamp units.
        """
        destination = self.remote
        if destination is None:
            return
        out = self.out
        seq = (out.seq + 1) & SEQ_MASK
        if out.time is None:
            ts = out.ts
        else:  # OutStream.next_timestamp, inlined: this runs for every played frame
            elapsed = round((when - out.time) * CLOCK_RATE)
            ts = (
                out.ts + (elapsed if elapsed > out.samples else out.samples)
            ) & TS_MASK
        second = self._audio_pt
        if out.marker:
            second |= MARKER_BIT
            out.marker = False
        out.seq = seq
        out.ts = ts
        out.time = when
        out.samples = samples
        # a fresh 172-byte bytes object is cheaper than pack_into + copy + memoryview
        packet = _HEADER.pack(PLAIN_FIRST_OCTET, second, seq, ts, out.ssrc) + payload
        try:
            self.sendto(packet, destination)
        except OSError as exc:
            self.send_errors += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("endpoint %d: send failed: %s", self.endpoint_id, exc)
            return
        out.packets += 1
        out.octets += len(packet)

    def send_rtcp(self, data: bytes) -> None:
        """Send one RTCP compound packet from the RTCP socket (symmetric, RFC 4961)."""
        if self.rtcp_remote is None:
            return
        try:
            self.rtcp_socket.sendto(data, self.rtcp_remote)
        except OSError:
            self.send_errors += 1
            return
        self.rtcp_out += 1

    # ---------------------------------------------------------------- receive path

    def _on_rtp_readable(self) -> None:
        """Receive ONE datagram: the loop polls level-triggered, so a socket still
        holding datagrams is reported again on its next iteration.  Draining until
        ``BlockingIOError`` would cost a failed recvfrom and a raised exception for
        almost every packet: at 50 packets a second a socket rarely holds two."""
        # bound methods kept as attributes are called from a local: a method call on
        # the attribute would take the interpreter's generic, unspecialised road
        # TODO: recvfrom formats the source as a string for every packet (glibc
        # sprintf, some 3000 instructions); a connected socket plus a SO_REUSEPORT
        # sibling that still catches and counts strangers would spare it.
        recvfrom_into = self._recvfrom_into
        try:
            size, addr = recvfrom_into(_BUFFER)
        except BlockingIOError:  # a spurious wake-up
            return
        except OSError as exc:  # e.g. ICMP port unreachable from an earlier send
            self._socket_error(exc)
            return
        # V/P/X/CC and M/PT as one 16-bit word; stale bytes if size < 12 (checked next)
        word, seq, ts, ssrc = _unpack_fixed(_BUFFER, 0)

        # plain audio of the negotiated PT from the expected address: straight on;
        # anything else (strangers, latching, other headers and PTs) takes the slow road
        if (
            word & 0xFF7F == self._plain_word
            and 11 < size < 4097  # HEADER_SIZE <= size <= MAX_PACKET_SIZE
            and addr == self._expected
        ):
            start = 12
            end = size
        else:
            bounds = self._irregular(size, addr, word & 0xFF, seq, ts, ssrc)
            if bounds is None:
                return
            start, end = bounds

        # per-SSRC statistics (RFC 3550 A.1, A.8)
        now = _monotonic()
        src = self._source
        if ssrc != src.ssrc:
            src = self._change_source(ssrc, seq, ts, now)
        max_seq = src.max_seq
        delta = (seq - max_seq) & 0xFFFF
        if delta < 3000:  # MAX_DROPOUT
            if seq < max_seq:
                src.cycles += 0x10000
            src.max_seq = seq
        elif delta <= 0xFFFF - 100:  # beyond MAX_MISORDER: a jump
            src.jump(seq)
        src.received += 1
        src.octets += size
        transit = now * 8000.0 - ts
        step = transit - src.transit
        src.transit = transit
        if step < 0.0:
            step = -step
        if step < 80000.0:  # JITTER_MAX_STEP
            src.jitter += (step - src.jitter) * 0.0625
        src.last_ts = ts

        # mixer / recorder want the audio itself (decoded per tick, in batches), in
        # this endpoint's codec: before the forward path transcodes it in place
        tap = self._tap
        if tap is not None:
            tap += _VIEW[start:end]

        # bridged: rewrite the header in place and send from the peer's socket
        path = self._forward
        if path is not None:
            # slow: restart after a source change, or transcoding
            marker = (
                path.prepare(word & 0xFF, seq, ts, now, start, end)
                if path.slow
                else word & 0x80
            )
            if path.renumber:
                _pack_rewrite(
                    _BUFFER,
                    1,
                    marker | path.audio_pt,
                    (seq + path.seq_offset) & 0xFFFF,
                    (ts + path.ts_offset) & 0xFFFFFFFF,
                    path.ssrc,
                )
            else:  # the sink's stream adopted this numbering: PT and SSRC only
                _BUFFER[1] = marker | path.audio_pt
                RECEIVE_WORDS[2] = path.ssrc_word
            destination = path.destination
            if destination is not None:
                sendto = path.sendto
                try:
                    sendto(_SLICES[size], destination)
                except OSError:
                    path.send_errors += 1
                else:
                    path.packets += 1
                    path.octets += size

    def _admit(self, addr: tuple[str, int]) -> bool:
        """A datagram from an address other than the expected one: latch or drop."""
        # TODO: RFC 4961 section 4 hints at re-latching when a phone's NAT binding
        # changes mid-call; we latch once per SetRemote, so such a phone goes silent
        # until the owner re-sends SetRemote (e.g. on its re-INVITE).
        if self.latching:
            if not self.latched:
                addr = _shared(addr)
                self.latched = True
                self.remote = addr
                self.rtcp_remote = (addr[0], addr[1] + 1)
                self._expected = addr
                self._remote_changed()
                logger.debug("endpoint %d latched to %s:%d", self.endpoint_id, *addr)
                if self._on_latched is not None:
                    self._on_latched(self)
                return True
        elif self.remote is None:
            return True  # no remote yet and no latching: nothing to compare with
        elif addr[:2] == self.remote:
            # IPv6 sources come as (host, port, flowinfo, scope_id); remember the
            # full tuple so the receive loop's comparison matches from now on
            self._expected = _shared(addr)
            return True
        self._drop(DropReason.ADDRESS, addr)
        return False

    def _change_source(self, ssrc: int, seq: int, ts: int, now: float) -> SourceState:
        """A packet of another SSRC than the last one: switch per-SSRC state."""
        path = self._forward
        if path is not None and self._source is not _NO_SOURCE:
            path.settle(self._source)
            path.pending = True  # the new SSRC continues our outgoing stream
        src = self._sources.get(ssrc)
        if src is None:
            if len(self._sources) >= MAX_SOURCES:
                oldest = next(iter(self._sources))
                old = self._sources.pop(oldest)
                self.retired_received += old.received
                self.retired_octets += old.octets
                self.retired_lost += old.lost
            src = SourceState(ssrc, seq, ts, now)
            if self._source is not _NO_SOURCE:
                logger.debug(
                    "endpoint %d: SSRC %08x -> %08x",
                    self.endpoint_id,
                    self._source.ssrc,
                    ssrc,
                )
            self._sources[ssrc] = src
        self._source = src
        return src

    def _drop(self, reason: str, addr: tuple[str, int] | None = None) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "endpoint %d: dropped datagram from %s: %s",
                self.endpoint_id,
                addr,
                reason,
            )

    def _irregular(
        self,
        size: int,
        addr: tuple[str, int],
        second: int,
        seq: int,
        ts: int,
        ssrc: int,
    ) -> tuple[int, int] | None:
        """The slow road of the receive path; returns the payload bounds of audio.

        For whatever the fast path does not take: validates the datagram (counting the
        reason when it is bad), admits or drops its source (latching on the first one),
        and handles non-audio payload types itself.  The header fields were unpacked
        before validation: they are only used once the datagram is known to be RTP at
        least 12 bytes long.
        """
        if size > MAX_PACKET_SIZE:
            self._drop(DropReason.TOO_BIG, addr)
            return None
        buf = _BUFFER
        if buf[0] == PLAIN_FIRST_OCTET and size >= HEADER_SIZE:
            bounds = (HEADER_SIZE, size)
        elif (
            size >= 2
            and RTCP_DEMUX_FIRST <= buf[1] <= RTCP_DEMUX_LAST
            and buf[0] & VERSION_MASK == VERSION_BITS
        ):
            self._receive_rtcp(size, addr)
            return None
        else:
            header = peek_header(buf, size)
            if header is None:
                try:
                    RtpPacket.parse(_VIEW[:size])
                except RtpError as exc:
                    self._drop(exc.reason, addr)
                else:
                    self._drop(DropReason.MALFORMED, addr)
                return None
            bounds = header[5], header[6]

        # RFC 4961: strangers are never heard, let alone bridged
        if addr != self._expected and not self._admit(addr):
            return None
        if second & PT_MASK != self._audio_pt:
            self._other_payload(second, seq, ts, ssrc, bounds[0], bounds[1], size)
            return None
        return bounds

    def _other_payload(
        self, second: int, seq: int, ts: int, ssrc: int, start: int, end: int, size: int
    ) -> None:
        """Telephone-event, comfort noise, RTCP on the RTP port, or unknown PT."""
        payload_type = second & PT_MASK
        kind = self._kinds.get(payload_type)
        if kind is None or kind is PayloadKind.AUDIO:
            if RTCP_DEMUX_FIRST <= second <= RTCP_DEMUX_LAST:
                self._receive_rtcp(size, None)
            else:
                self._drop(DropReason.PAYLOAD_TYPE)
            return

        # the same SSRC numbering as the audio: keep the loss statistics right
        now = _monotonic()
        src = self._source
        if ssrc != src.ssrc:
            src = self._change_source(ssrc, seq, ts, now)
        delta = (seq - src.max_seq) & SEQ_MASK
        if delta < MAX_DROPOUT:
            if seq < src.max_seq:
                src.cycles += RTP_SEQ_MOD
            src.max_seq = seq
        elif delta <= RTP_SEQ_MOD - MAX_MISORDER:
            src.jump(seq)
        src.received += 1
        src.octets += size

        path = self._forward
        if kind is PayloadKind.TELEPHONE_EVENT:
            receiver = self._dtmf
            if receiver is None:
                receiver = self._dtmf = DtmfReceiver()
            digit = receiver.feed(
                ts, _VIEW[start:end], marker=bool(second & MARKER_BIT), ssrc=ssrc
            )
            out_pt = path.event_pt if path is not None else None
        else:
            digit = None
            out_pt = path.cn_pt if path is not None else None
        if path is not None and out_pt is not None:
            path.forward_other(second, out_pt, seq, ts, size, now)
        if digit is not None:
            self.dtmf_events += 1
            if self._on_dtmf is not None:
                self._on_dtmf(self, digit)

    def _on_rtcp_readable(self) -> None:
        recvfrom_into = self.rtcp_socket.recvfrom_into
        while True:
            try:
                size, addr = recvfrom_into(_BUFFER)
            except BlockingIOError:
                return
            except OSError as exc:
                self._socket_error(exc)
                return
            self._receive_rtcp(size, addr)

    def _receive_rtcp(self, size: int, addr: tuple[str, int] | None) -> None:
        """Read an RTCP compound from the peer's host (RFC 3550 6.4).

        Datagrams from another host are dropped.  With latching on, the RTCP remote
        latches to the first RTCP source separately: a NAT maps the RTCP port on its
        own, rarely to RTP port + 1.
        """
        if addr is not None and self.remote is not None and addr[0] != self.remote[0]:
            self._drop(DropReason.ADDRESS, addr)
            return
        try:
            packets = parse_compound(_VIEW[:size])
        except RtcpError as exc:
            self._drop(f"rtcp_{exc.reason}", addr)
            return
        self.rtcp_in += 1
        if addr is not None and self.latching and not self._rtcp_latched:
            self._rtcp_latched = True
            self.rtcp_remote = addr
        arrival_ntp = ntp_from_unix(time.time())
        for packet in packets:
            if isinstance(packet, SenderReport):
                # 6.4.1: echo the middle 32 bits as LSR, DLSR from arrival
                self._last_sr = (ntp_middle32(packet.ntp_timestamp), _monotonic())
            if isinstance(packet, SenderReport | ReceiverReport):
                for block in packet.reports:
                    if block.ssrc == self.out.ssrc:
                        rtt = round_trip_time(arrival_ntp, block.lsr, block.dlsr)
                        if rtt is not None:
                            self.round_trip_time = rtt

    def rtcp_report(self) -> bytes:
        """Our next RTCP compound: SR if we sent since the last one, else RR, + CNAME.

        RFC 3550 6.4: one report block about the SSRC we hear now.
        """
        now = _monotonic()
        blocks: tuple[ReportBlock, ...] = ()
        src = self._source
        if src is not _NO_SOURCE:
            expected = src.expected
            expected_interval = expected - self._expected_prior
            received_interval = src.received - self._received_prior
            self._expected_prior = expected
            self._received_prior = src.received
            lost_interval = expected_interval - received_interval
            fraction = 0
            if expected_interval > 0 and lost_interval > 0:
                fraction = min((lost_interval << 8) // expected_interval, 255)
            lsr, dlsr = 0, 0
            if self._last_sr is not None:
                lsr = self._last_sr[0]
                dlsr = min(round((now - self._last_sr[1]) * 65536), 0xFFFFFFFF)
            blocks = (
                ReportBlock(
                    ssrc=src.ssrc,
                    fraction_lost=fraction,
                    cumulative_lost=min(src.lost, 0x7FFFFF),
                    highest_sequence=(src.cycles + src.max_seq) & 0xFFFFFFFF,
                    jitter=min(int(src.jitter), 0xFFFFFFFF),
                    lsr=lsr,
                    dlsr=dlsr,
                ),
            )
        packets_out, octets_out = self._sent_counts()
        report: SenderReport | ReceiverReport
        if packets_out != self._packets_at_report:
            report = SenderReport(
                ssrc=self.out.ssrc,
                ntp_timestamp=ntp_from_unix(time.time()),
                rtp_timestamp=self.out.next_timestamp(now),
                packet_count=packets_out & 0xFFFFFFFF,
                octet_count=octets_out & 0xFFFFFFFF,
                reports=blocks,
            )
        else:
            report = ReceiverReport(ssrc=self.out.ssrc, reports=blocks)
        self._packets_at_report = packets_out
        return build_compound(
            [report, SourceDescription.with_cname(self.out.ssrc, self.cname)]
        )

    def _sent_counts(self) -> tuple[int, int]:
        feeder = self.feeder
        packets = self.out.packets + self.relayed_packets
        octets = self.out.octets + self.relayed_octets
        if feeder is not None:
            packets += feeder.packets
            octets += feeder.octets
        return packets, octets

    def _socket_error(self, exc: OSError) -> None:
        self.dropped["socket_error"] = self.dropped.get("socket_error", 0) + 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("endpoint %d: socket error %s", self.endpoint_id, exc)

    # ---------------------------------------------------------------- statistics

    @property
    def packets_received(self) -> int:
        """Valid RTP packets accepted, every SSRC and payload type."""
        return self.retired_received + sum(s.received for s in self._sources.values())

    @property
    def current_ssrc(self) -> int | None:
        """The SSRC last heard."""
        return None if self._source is _NO_SOURCE else self._source.ssrc

    def stats(self) -> EndpointStats:
        """A snapshot of the counters."""
        # one pass over the SSRCs (usually one) for what the properties add up
        packets_in = self.retired_received
        bytes_in = self.retired_octets
        lost = self.retired_lost
        for src in self._sources.values():
            packets_in += src.received
            bytes_in += src.octets
            lost += src.lost
        packets_out, octets_out = self._sent_counts()
        source = self._source
        jitter_ms = 0.0 if source is _NO_SOURCE else source.jitter * 1000.0 / CLOCK_RATE
        rtt = self.round_trip_time
        rtt_ms = None if rtt is None else rtt * 1000
        # ITU-T G.107 via media.quality: delay = RTT/2 + jitter buffer + packet time
        delay_ms = (rtt_ms or 0.0) / 2 + 2 * jitter_ms + 20.0
        loss = lost / (lost + packets_in) if lost + packets_in else 0.0
        return EndpointStats.from_values(
            {
                "endpoint_id": self.endpoint_id,
                "packets_in": packets_in,
                "bytes_in": bytes_in,
                "packets_out": packets_out,
                "bytes_out": octets_out,
                "lost": lost,
                "jitter_ms": jitter_ms,
                "round_trip_ms": rtt_ms,
                "mos": g711_mos(delay_ms, loss),
                "ssrcs_heard": len(self._sources),
                "ssrc_in": self.current_ssrc,
                "ssrc_out": self.out.ssrc,
                "remote": self.remote,
                "latched": self.latched,
                "rtcp_in": self.rtcp_in,
                "rtcp_out": self.rtcp_out,
                "dtmf_events": self.dtmf_events,
                "dropped": dict(self.dropped),
            }
        )

    # ---------------------------------------------------------------- teardown

    def close(self) -> None:
        """Unregister and close both sockets (the engine releases the ports)."""
        if self.closed:
            return
        self.closed = True
        rtp, rtcp = self.rtp_socket, self.rtcp_socket
        loop = self._loop
        # try/except rather than contextlib.suppress: no context manager per socket
        try:  # noqa: SIM105
            loop.remove_reader(rtp.fileno())
        except (ValueError, OSError):
            pass
        try:
            if self._rtcp_readers is None:
                loop.remove_reader(rtcp.fileno())
            else:
                self._rtcp_readers.remove(rtcp.fileno())
        except (ValueError, OSError):
            pass
        rtp.close()
        rtcp.close()
        self._tap = None
