"""Bridging two endpoints: packets forwarded with at most a header rewrite (RFC 3550).

A bridge is two :class:`RelayPath` objects, one per direction.  A path holds everything
the receive path of its *source* endpoint needs to forward a packet out of its *sink*
endpoint's socket (symmetric RTP, RFC 4961) without looking anything up: the sink's
``sendto``, its remote address, its SSRC, the sequence and timestamp offsets that splice
the source's numbering into the sink's one outgoing stream, and the payload type to
write.  The receive loop in :mod:`media.endpoint` applies them inline; this module
computes them.

Theory of operation.  The sink's outgoing stream must stay one stream (RFC 3550 5.1 and
8.2 — a receiver would otherwise see a new, colliding or restarted source) when it goes
from a prompt to bridged audio and back.  When forwarding starts, and whenever the source
changes SSRC, the path is *pending*: the next packet calls :meth:`RelayPath.restart`,
which picks offsets so that this packet gets the sink's next sequence number and a
timestamp moved forward by the wall-clock time since the sink last sent (at least one
packet duration), and it carries the marker bit.  From then on forwarding is two
additions and one ``pack_into``; a sink that has never sent anything simply adopts the
source's numbering (offsets 0, as random as its own would have been), and then only the
payload-type octet and the SSRC word are written.  When forwarding stops,
:meth:`RelayPath.settle` writes the position back into the sink's
:class:`~media.endpoint.OutStream` so whatever sends next continues from there.

Payload types: when the two legs negotiated the same codec nothing is decoded; only the
payload type number is mapped.  PCMU and PCMA legs are bridged by translating every
payload octet through the 256-entry transcoding table of :mod:`media.g711`
(``bytes.translate``, in C).  RFC 4733 telephone-events are mapped to the sink's
negotiated telephone-event type (and reported as DTMF events by the source endpoint);
comfort noise (RFC 3389, PT 13) is forwarded when the sink negotiated it and dropped
otherwise, never decoded as G.711.
"""

from __future__ import annotations

import logging
import struct
import sys
from typing import TYPE_CHECKING, Final

from media.commands import Codec
from media.endpoint import (
    MARKER_BIT,
    RECEIVE_BUFFER,
    RECEIVE_VIEW,
    SAMPLES_PER_FRAME,
    SEQ_MASK,
    TS_MASK,
    Output,
)
from media.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW

if TYPE_CHECKING:
    from media.endpoint import RtpEndpoint, SourceState

logger = logging.getLogger(__name__)

# bytes.translate tables: one output octet per input octet (G.711 is one octet a sample)
TRANSCODE_TABLES: Final[dict[tuple[Codec, Codec], bytes]] = {
    (Codec.PCMU, Codec.PCMA): ULAW_TO_ALAW.tobytes(),
    (Codec.PCMA, Codec.PCMU): ALAW_TO_ULAW.tobytes(),
}

_REWRITE: Final = struct.Struct("!BHII")

# TODO: RTCP is terminated per leg, not relayed end to end, so each phone's RTT figure
# stops at the switch (RFC 3550 7.3 translators may forward it).
# TODO: legs with different packetisation (ptime 20 vs 30 ms, RFC 4566 6) are relayed
# packet for packet without repacketising; most phones cope, some strict trunks do not.


class RelayPath:
    """One direction of a bridge: what ``source`` receives, ``sink`` sends.

    The fields are read by the source's receive loop for every packet.
    """

    __slots__ = (
        "_pending",
        "audio_pt",
        "cn_pt",
        "destination",
        "event_pt",
        "octets",
        "packets",
        "renumber",
        "send_errors",
        "sendto",
        "seq_offset",
        "sink",
        "slow",
        "source",
        "ssrc",
        "ssrc_word",
        "translate",
        "ts_offset",
    )

    def __init__(self, source: RtpEndpoint, sink: RtpEndpoint) -> None:
        self.source = source
        self.sink = sink
        self.sendto = sink.sendto
        self.destination = sink.remote
        self.ssrc = sink.out.ssrc
        # the SSRC as the native 32-bit word that holds it in network order
        self.ssrc_word = int.from_bytes(self.ssrc.to_bytes(4, "big"), sys.byteorder)
        self.renumber = True
        self.seq_offset = 0
        self.ts_offset = 0
        self._pending = True
        self.slow = True
        self.packets = 0
        self.octets = 0
        self.send_errors = 0
        self.audio_pt = sink.audio_pt
        self.translate: bytes | None = None
        self.event_pt: int | None = None
        self.cn_pt: int | None = None
        self.refresh()

    def refresh(self) -> None:
        """Recompute payload type mapping and transcoding after a codec change."""
        source, sink = self.source, self.sink
        self.audio_pt = sink.audio_pt
        if source.codec is sink.codec:
            self.translate = None
        else:
            self.translate = TRANSCODE_TABLES[(source.codec, sink.codec)]
        self.event_pt = (
            sink.telephone_event_pt if source.telephone_event_pt is not None else None
        )
        self.cn_pt = (
            sink.comfort_noise_pt if source.comfort_noise_pt is not None else None
        )
        self.destination = sink.remote
        self.slow = self._pending or self.translate is not None

    @property
    def pending(self) -> bool:
        """The next packet starts a new stretch of the sink's stream (restart)."""
        return self._pending

    @pending.setter
    def pending(self, value: bool) -> None:
        self._pending = value
        # one flag for the receive loop: restart pending or payload to transcode
        self.slow = value or self.translate is not None

    def prepare(
        self, second: int, seq: int, ts: int, now: float, start: int, end: int
    ) -> int:
        """The uncommon steps before the header rewrite; returns the marker bit.

        Restarts the splice when pending and transcodes the payload in the receive
        buffer (``bytes.translate`` through a 256-entry G.711 table).
        """
        marker = self.restart(seq, ts, now) if self._pending else second & MARKER_BIT
        if self.translate is not None:
            payload = RECEIVE_BUFFER[start:end]
            RECEIVE_BUFFER[start:end] = payload.translate(self.translate)
        return marker

    def restart(self, seq: int, ts: int, now: float) -> int:
        """Splice the source's numbering into the sink's stream at this packet.

        :returns: the marker bit, which the first packet of a new source carries.
        """
        out = self.sink.out
        if out.time is None and out.packets == 0:
            # the sink never sent: its stream may as well start with this numbering
            # (as random as ours, RFC 3550 5.1), which spares the per-packet renumbering
            self.seq_offset = 0
            self.ts_offset = 0
        else:
            self.seq_offset = (out.seq + 1 - seq) & SEQ_MASK
            self.ts_offset = (out.next_timestamp(now) - ts) & TS_MASK
        self.renumber = bool(self.seq_offset or self.ts_offset)
        self.pending = False
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "relay %d->%d restarts at seq %d",
                self.source.endpoint_id,
                self.sink.endpoint_id,
                (seq + self.seq_offset) & SEQ_MASK,
            )
        return MARKER_BIT

    def settle(self, source_state: SourceState) -> None:
        """Write the stream position reached by forwarding back into the sink.

        ``source_state`` is the SSRC that was being forwarded.
        """
        if self.pending or source_state.received == 0:
            return  # nothing forwarded since the last restart
        out = self.sink.out
        out.seq = (source_state.max_seq + self.seq_offset) & SEQ_MASK
        out.ts = (source_state.last_ts + self.ts_offset) & TS_MASK
        out.time = source_state.last_arrival
        out.samples = SAMPLES_PER_FRAME
        self.pending = True

    def forward_other(
        self, second: int, out_pt: int, seq: int, ts: int, size: int, now: float
    ) -> None:
        """Forward the non-audio packet in the receive buffer with PT ``out_pt``."""
        marker = self.restart(seq, ts, now) if self.pending else second & MARKER_BIT
        _REWRITE.pack_into(
            RECEIVE_BUFFER,
            1,
            marker | out_pt,
            (seq + self.seq_offset) & SEQ_MASK,
            (ts + self.ts_offset) & TS_MASK,
            self.ssrc,
        )
        if self.destination is None:
            return
        try:
            self.sendto(RECEIVE_VIEW[:size], self.destination)
        except OSError:
            self.send_errors += 1
            return
        self.packets += 1
        self.octets += size


class Bridge:
    """Two endpoints connected both ways.

    Creating a bridge makes each endpoint the other's feeder and switches both outputs
    to :attr:`~media.endpoint.Output.RELAY`.
    """

    __slots__ = ("a", "a_to_b", "b", "b_to_a")

    def __init__(self, a: RtpEndpoint, b: RtpEndpoint) -> None:
        if a is b:
            raise ValueError("cannot bridge an endpoint to itself")
        self.a = a
        self.b = b
        self.a_to_b = RelayPath(a, b)
        self.b_to_a = RelayPath(b, a)
        b.feeder = self.a_to_b
        a.feeder = self.b_to_a
        a.set_output(Output.RELAY)
        b.set_output(Output.RELAY)

    def other(self, endpoint: RtpEndpoint) -> RtpEndpoint:
        """The endpoint at the other end."""
        return self.b if endpoint is self.a else self.a

    def refresh(self) -> None:
        """Recompute both paths after a codec or remote change."""
        self.a_to_b.refresh()
        self.b_to_a.refresh()

    def unbridge(self) -> None:
        """Stop forwarding both ways; both streams stay where they were."""
        for sink, path in ((self.b, self.a_to_b), (self.a, self.b_to_a)):
            if sink.output is Output.RELAY:
                sink.set_output(Output.NONE)
            path.source.stop_forwarding(path)
            if sink.feeder is path:
                sink.feeder = None
                sink.relayed_packets += path.packets
                sink.relayed_octets += path.octets
                sink.send_errors += path.send_errors
