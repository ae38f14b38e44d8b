"""Per-stream receive statistics and call quality (RFC 3550 6.4 and A.3/A.8; ITU-T G.107).

:class:`ReceiveStatistics` follows one received stream: packets expected and lost
(cumulative and per report interval, RFC 3550 A.3), interarrival jitter (A.8) and the
round-trip time measured from the LSR/DLSR fields of the reports our peer sends back
(6.4.1). It builds the report blocks for our own SR/RR and freezes its state into a
:class:`QualitySnapshot` for the CDR, with an estimated MOS.

Theory of operation, MOS: a simplified ITU-T G.107 E-model with every parameter at its
default except delay and loss (the form popularised by Cole and Rosenbluth, 2001):

* ``R = 93.2 - Id - Ie_eff``; 93.2 is G.107's R for default conditions.
* Delay impairment, with ``d`` the one-way mouth-to-ear delay in ms:
  ``Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)``, H the unit step. We estimate
  ``d = RTT/2 + 2 * jitter (the jitter buffer) + packet time``, RTT being 0 until
  measured.
* Equipment impairment under random loss (G.107 eq. 7-29, BurstR = 1):
  ``Ie_eff = Ie + (95 - Ie) * Ppl / (Ppl + Bpl)``, Ppl the loss in percent. G.711 has
  ``Ie = 0`` and ``Bpl = 25.1`` with packet loss concealment, 4.3 without (G.113
  appendix I).
* ``MOS = 1 + 0.035 R + 7e-6 R (R - 60)(100 - R)`` for 0 < R < 100 (G.107 annex B),
  1 below, 4.5 above. An undisturbed G.711 call scores R = 93.2, MOS 4.41.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from media.rtcp import ReportBlock, ntp_middle32
from media.rtp import MIN_SEQUENTIAL, SequenceTracker, SourceTracker

logger = logging.getLogger(__name__)

__all__ = [
    "G711_BPL_NO_PLC",
    "G711_BPL_PLC",
    "QualitySnapshot",
    "ReceiveStatistics",
    "g711_mos",
    "mos_from_r",
    "r_factor",
    "round_trip_time",
]

# RFC 3550 A.8: the jitter estimate moves 1/16 of the way to each new sample.
JITTER_GAIN: Final = 16.0
TIMESTAMP_MOD: Final = 1 << 32
HALF_TIMESTAMP: Final = 1 << 31
# RFC 3550 6.4.1: LSR and DLSR are in units of 1/65536 s.
DLSR_UNITS: Final = 65536.0
DEFAULT_CLOCK_RATE: Final = 8000
DEFAULT_PACKET_TIME_MS: Final = 20.0

# ITU-T G.107 defaults and simplifications (see the module docstring).
R_DEFAULT: Final = 93.2
DELAY_SLOPE: Final = 0.024
DELAY_KNEE_MS: Final = 177.3
DELAY_SLOPE_ABOVE_KNEE: Final = 0.11
IE_MAX: Final = 95.0
G711_IE: Final = 0.0
G711_BPL_PLC: Final = 25.1  # G.113 appendix I, G.711 with packet loss concealment
G711_BPL_NO_PLC: Final = 4.3  # G.113 appendix I, G.711 without
MOS_MIN: Final = 1.0
MOS_MAX: Final = 4.5
JITTER_BUFFER_FACTOR: Final = 2.0  # jitter buffer depth assumed, in jitters
# TODO: G.107 BurstR is taken as 1 (random loss); bursty loss (a Gilbert model fitted
# to the loss pattern) scores lower in reality, so MOS is optimistic for bursty links.


def r_factor(
    *,
    delay_ms: float,
    loss: float,
    ie: float = G711_IE,
    bpl: float = G711_BPL_PLC,
    burst_ratio: float = 1.0,
) -> float:
    """The E-model transmission rating R for a one-way delay and a loss ratio.

    :param delay_ms: one-way mouth-to-ear delay.
    :param loss: packets lost as a ratio (0.05 is 5 %).
    :param burst_ratio: G.107 BurstR; 1 for random loss.
    """
    delay = max(delay_ms, 0.0)
    delay_impairment = DELAY_SLOPE * delay
    if delay > DELAY_KNEE_MS:
        delay_impairment += DELAY_SLOPE_ABOVE_KNEE * (delay - DELAY_KNEE_MS)
    ppl = min(max(loss, 0.0), 1.0) * 100.0
    effective_ie = ie + (IE_MAX - ie) * ppl / (ppl / burst_ratio + bpl)
    return R_DEFAULT - delay_impairment - effective_ie


def mos_from_r(r: float) -> float:
    """The estimated mean opinion score (1.0 to 4.5) for a rating R (G.107 annex B)."""
    if r <= 0.0:
        return MOS_MIN
    if r >= 100.0:
        return MOS_MAX
    return MOS_MIN + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)


def g711_mos(delay_ms: float, loss: float) -> float:
    """The MOS of a G.711 leg (PLC on) for its delay and loss, to two places."""
    return round(mos_from_r(r_factor(delay_ms=delay_ms, loss=loss)), 2)


def round_trip_time(arrival_ntp: int, lsr: int, dlsr: int) -> float | None:
    """Round-trip time in seconds from a received report block (RFC 3550 6.4.1).

    :param arrival_ntp: our 64-bit NTP time when the report arrived.
    :param lsr: the block's LSR (middle 32 bits of our SR's NTP time); 0 means the
        peer has not seen an SR from us, so there is no measurement.
    :param dlsr: the block's DLSR, in 1/65536 s.
    """
    if lsr == 0:
        return None
    rtt = (ntp_middle32(arrival_ntp) - lsr - dlsr) & 0xFFFFFFFF
    if rtt >= HALF_TIMESTAMP:
        return 0.0  # clocks disagree by more than the RTT: report no delay
    return rtt / DLSR_UNITS


@dataclass(frozen=True, slots=True, kw_only=True)
class QualitySnapshot:
    """One stream's receive quality, frozen for a CDR or a log line.

    :param fraction_lost: cumulative loss ratio, 0.0 to 1.0.
    :param jitter_ms: the RFC 3550 A.8 jitter estimate in milliseconds.
    :param rtt_ms: the latest round-trip time, ``None`` if never measured.
    """

    ssrc: int | None
    packets_expected: int
    packets_received: int
    packets_lost: int
    fraction_lost: float
    jitter_ms: float
    rtt_ms: float | None
    r_factor: float
    mos: float
    ssrc_changes: int = 0


class ReceiveStatistics:
    """Receive statistics for one RTP stream, fed packet by packet.

    Call :meth:`on_packet` for every received RTP packet of the stream, with its
    arrival time in seconds on any monotonic clock. A change of SSRC restarts the loss
    and jitter bookkeeping for the new source (see :class:`media.rtp.SourceTracker`).

    :param clock_rate: the RTP clock rate of the stream's payload format.
    :param bpl: the codec's packet-loss robustness for the MOS estimate.
    """

    def __init__(
        self,
        *,
        clock_rate: int = DEFAULT_CLOCK_RATE,
        packet_time_ms: float = DEFAULT_PACKET_TIME_MS,
        ie: float = G711_IE,
        bpl: float = G711_BPL_PLC,
        min_sequential: int = MIN_SEQUENTIAL,
    ) -> None:
        self.clock_rate = clock_rate
        self.packet_time_ms = packet_time_ms
        self.ie = ie
        self.bpl = bpl
        self.sources = SourceTracker(min_sequential=min_sequential)
        self.jitter = 0.0  # timestamp units
        self.rtt: float | None = None  # seconds
        self._jitter_ssrc: int | None = None
        self._last_arrival = 0.0
        self._last_timestamp = 0
        self._sr_lsr = 0
        self._sr_arrival = 0.0

    def on_packet(
        self, ssrc: int, sequence: int, timestamp: int, arrival: float
    ) -> bool:
        """Account for one RTP packet; ``True`` if it counts (RFC 3550 A.1)."""
        valid = self.sources.update(ssrc, sequence)
        if ssrc != self._jitter_ssrc:
            # A.8 compares packets of one source; a new SSRC starts a new estimate
            if not valid:
                return False
            self._jitter_ssrc = ssrc
            self.jitter = 0.0
        else:
            # D(i-1,i) = (R_i - R_{i-1}) - (S_i - S_{i-1}), in timestamp units
            sent = (timestamp - self._last_timestamp + HALF_TIMESTAMP) % TIMESTAMP_MOD
            sent -= HALF_TIMESTAMP
            delta = (arrival - self._last_arrival) * self.clock_rate - sent
            self.jitter += (abs(delta) - self.jitter) / JITTER_GAIN
        self._last_arrival = arrival
        self._last_timestamp = timestamp
        return valid

    def on_sender_report(self, ntp_timestamp: int, arrival: float) -> None:
        """Remember the peer's latest SR, for the LSR/DLSR of our next report."""
        self._sr_lsr = ntp_middle32(ntp_timestamp)
        self._sr_arrival = arrival

    def on_report_block(self, block: ReportBlock, arrival_ntp: int) -> float | None:
        """Take the RTT from the peer's report about our stream; return it (seconds)."""
        rtt = round_trip_time(arrival_ntp, block.lsr, block.dlsr)
        if rtt is not None:
            self.rtt = rtt
        return rtt

    @property
    def tracker(self) -> SequenceTracker | None:
        """The sequence state of the active SSRC."""
        return self.sources.active

    @property
    def jitter_ms(self) -> float:
        """The jitter estimate in milliseconds."""
        return self.jitter * 1000.0 / self.clock_rate

    @property
    def expected(self) -> int:
        """Packets expected from the active source (A.3)."""
        tracker = self.sources.active
        return tracker.expected if tracker is not None else 0

    @property
    def received(self) -> int:
        """Packets received from the active source, after probation."""
        tracker = self.sources.active
        return tracker.received if tracker is not None else 0

    @property
    def lost(self) -> int:
        """Cumulative packets lost (A.3); negative if duplicates outnumber losses."""
        return self.expected - self.received

    @property
    def fraction_lost(self) -> float:
        """Cumulative loss ratio from 0.0 to 1.0."""
        expected = self.expected
        if expected <= 0:
            return 0.0
        return min(max(self.lost / expected, 0.0), 1.0)

    def report_block(self, now: float) -> ReportBlock | None:
        """The reception report for our next SR/RR (RFC 3550 6.4.1), if heard.

        :param now: the same clock as ``arrival`` in :meth:`on_sender_report`. Moves
            the A.3 interval start, so call it once per report.
        """
        tracker = self.sources.active
        ssrc = self.sources.active_ssrc
        if tracker is None or ssrc is None:
            return None
        dlsr = 0
        if self._sr_lsr:
            dlsr = min(int((now - self._sr_arrival) * DLSR_UNITS), 0xFFFFFFFF)
        return ReportBlock(
            ssrc=ssrc,
            fraction_lost=tracker.interval_fraction_lost(),
            cumulative_lost=tracker.lost,
            highest_sequence=tracker.extended_max & 0xFFFFFFFF,
            jitter=int(self.jitter),
            lsr=self._sr_lsr,
            dlsr=max(dlsr, 0),
        )

    def one_way_delay_ms(self) -> float:
        """The delay estimate the MOS uses (see the module docstring)."""
        network = self.rtt * 500.0 if self.rtt is not None else 0.0
        return network + JITTER_BUFFER_FACTOR * self.jitter_ms + self.packet_time_ms

    def snapshot(self) -> QualitySnapshot:
        """Freeze the statistics, with the E-model R and MOS."""
        rating = r_factor(
            delay_ms=self.one_way_delay_ms(),
            loss=self.fraction_lost,
            ie=self.ie,
            bpl=self.bpl,
        )
        return QualitySnapshot(
            ssrc=self.sources.active_ssrc,
            packets_expected=self.expected,
            packets_received=self.received,
            packets_lost=self.lost,
            fraction_lost=self.fraction_lost,
            jitter_ms=self.jitter_ms,
            rtt_ms=self.rtt * 1000.0 if self.rtt is not None else None,
            r_factor=rating,
            mos=mos_from_r(rating),
            ssrc_changes=self.sources.ssrc_changes,
        )
