"""Receive statistics (RFC 3550 A.3, A.8, 6.4.1) and the E-model MOS (ITU-T G.107)."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.quality import (
    G711_BPL_NO_PLC,
    QualitySnapshot,
    ReceiveStatistics,
    g711_mos,
    mos_from_r,
    r_factor,
    round_trip_time,
)
from media.rtcp import ReportBlock, ntp_from_unix, ntp_middle32


def _feed(
    stats: ReceiveStatistics, packets: list[tuple[int, int, float]], ssrc: int = 1
) -> None:
    for sequence, timestamp, arrival in packets:
        stats.on_packet(ssrc, sequence, timestamp, arrival)


def test_jitter_against_a_hand_calculation() -> None:
    stats = ReceiveStatistics(min_sequential=0)
    # 20 ms packets (160 units at 8 kHz) arriving 0, 20, 45, 60, 80, 110 ms
    arrivals = [0.000, 0.020, 0.045, 0.060, 0.080, 0.110]
    _feed(stats, [(i, 160 * i, arrival) for i, arrival in enumerate(arrivals)])
    # D = transit difference in units: 0, +40, -40, 0, +80; J += (|D| - J) / 16
    j = 0.0
    for d in (0, 40, 40, 0, 80):
        j += (d - j) / 16
    assert j == pytest.approx(9.2572021484375)
    assert stats.jitter == pytest.approx(j)
    assert stats.jitter_ms == pytest.approx(j / 8)


def test_jitter_is_zero_for_a_perfect_stream_and_survives_timestamp_wrap() -> None:
    stats = ReceiveStatistics(min_sequential=0)
    start = 2**32 - 480
    _feed(stats, [(i, (start + 160 * i) % 2**32, 0.02 * i) for i in range(10)])
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_loss_cumulative_and_fraction() -> None:
    stats = ReceiveStatistics(min_sequential=0)
    sequences = [s for s in range(200) if s % 10 != 5]  # 10 % lost
    _feed(stats, [(s, 160 * s, 0.02 * s) for s in sequences])
    assert (stats.expected, stats.received, stats.lost) == (200, 180, 20)
    assert stats.fraction_lost == pytest.approx(0.1)
    block = stats.report_block(now=4.0)
    assert block is not None
    assert block.fraction_lost == 20 * 256 // 200
    assert block.cumulative_lost == 20
    assert block.highest_sequence == 199
    assert block.lsr == 0 and block.dlsr == 0


def test_report_block_lsr_dlsr_and_interval() -> None:
    stats = ReceiveStatistics(min_sequential=0)
    _feed(stats, [(s, 160 * s, 0.02 * s) for s in range(50)])
    sr_ntp = ntp_from_unix(1_700_000_000.0)
    stats.on_sender_report(sr_ntp, arrival=10.0)
    first = stats.report_block(now=10.25)
    assert first is not None
    assert first.lsr == ntp_middle32(sr_ntp)
    assert first.dlsr == 16384  # 0.25 s in 1/65536 s
    assert first.fraction_lost == 0
    _feed(stats, [(s, 160 * s, 0.02 * s) for s in range(50, 100) if s % 2])  # half lost
    second = stats.report_block(now=11.0)
    assert second is not None and second.fraction_lost == 128
    assert second.cumulative_lost == 25


def test_round_trip_time_from_lsr_and_dlsr() -> None:
    sent = 1_700_000_000.0
    lsr = ntp_middle32(ntp_from_unix(sent))
    arrival = ntp_from_unix(sent + 0.6)
    rtt = round_trip_time(arrival, lsr, dlsr=int(0.5 * 65536))
    assert rtt == pytest.approx(0.1, abs=1e-4)
    assert round_trip_time(arrival, 0, 0) is None  # no SR seen by the peer
    assert round_trip_time(ntp_from_unix(sent), lsr, 65536) == 0.0  # clocks disagree
    stats = ReceiveStatistics()
    block = ReportBlock(ssrc=1, lsr=lsr, dlsr=int(0.5 * 65536))
    assert stats.on_report_block(block, arrival) == pytest.approx(0.1, abs=1e-4)
    assert stats.snapshot().rtt_ms == pytest.approx(100.0, abs=0.1)
    stats.on_report_block(ReportBlock(ssrc=1), arrival)  # no measurement: RTT kept
    assert stats.rtt == pytest.approx(0.1, abs=1e-4)


def test_e_model_reference_points() -> None:
    assert r_factor(delay_ms=0.0, loss=0.0) == pytest.approx(93.2)
    assert mos_from_r(93.2) == pytest.approx(4.41, abs=0.005)
    assert mos_from_r(-5.0) == 1.0
    assert mos_from_r(120.0) == 4.5
    # Id = 0.024 d + 0.11 (d - 177.3) above the knee
    assert r_factor(delay_ms=100.0, loss=0.0) == pytest.approx(93.2 - 2.4)
    assert r_factor(delay_ms=300.0, loss=0.0) == pytest.approx(
        93.2 - 7.2 - 0.11 * 122.7
    )
    # Ie_eff = 95 Ppl / (Ppl + Bpl) for G.711 (Ie = 0)
    assert r_factor(delay_ms=0.0, loss=0.05) == pytest.approx(
        93.2 - 95 * 5 / (5 + 25.1)
    )


def test_mos_falls_as_loss_and_delay_grow() -> None:
    by_loss = [
        mos_from_r(r_factor(delay_ms=40.0, loss=p)) for p in (0, 0.01, 0.03, 0.1, 0.3)
    ]
    assert by_loss == sorted(by_loss, reverse=True) and len(set(by_loss)) == 5
    by_delay = [
        mos_from_r(r_factor(delay_ms=d, loss=0.01)) for d in (20, 150, 250, 400)
    ]
    assert by_delay == sorted(by_delay, reverse=True) and len(set(by_delay)) == 4
    # without concealment the same loss hurts more
    assert r_factor(delay_ms=0, loss=0.02, bpl=G711_BPL_NO_PLC) < r_factor(
        delay_ms=0, loss=0.02
    )


def test_snapshot_orders_streams_by_quality() -> None:
    def mos_with_loss(every: int | None) -> float:
        stats = ReceiveStatistics(min_sequential=0)
        kept = [s for s in range(500) if every is None or s % every]
        _feed(stats, [(s, 160 * s, 0.02 * s) for s in kept])
        return stats.snapshot().mos

    assert (
        mos_with_loss(None) > mos_with_loss(50) > mos_with_loss(10) > mos_with_loss(3)
    )


def test_snapshot_is_frozen_and_complete() -> None:
    stats = ReceiveStatistics(min_sequential=0)
    _feed(stats, [(s, 160 * s, 0.02 * s) for s in (0, 1, 3)], ssrc=0xABC)
    snapshot = stats.snapshot()
    assert snapshot == QualitySnapshot(
        ssrc=0xABC,
        packets_expected=4,
        packets_received=3,
        packets_lost=1,
        fraction_lost=0.25,
        jitter_ms=snapshot.jitter_ms,
        rtt_ms=None,
        r_factor=snapshot.r_factor,
        mos=snapshot.mos,
        ssrc_changes=0,
    )
    assert 1.0 <= snapshot.mos < 4.41
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.mos = 5.0  # type: ignore[misc]


def test_empty_statistics() -> None:
    stats = ReceiveStatistics()
    assert stats.report_block(now=0.0) is None
    snapshot = stats.snapshot()
    assert snapshot.ssrc is None and snapshot.packets_expected == 0
    assert snapshot.fraction_lost == 0.0


def test_ssrc_change_restarts_loss_and_jitter() -> None:
    stats = ReceiveStatistics()
    _feed(
        stats,
        [(s, 160 * s, 0.02 * s + (0.01 if s % 2 else 0)) for s in range(100)],
        ssrc=1,
    )
    assert stats.jitter > 10
    base = 2.0
    # the peer switches SSRC with new numbering: probation, then fresh statistics
    assert not stats.on_packet(2, 30000, 999, base)
    assert stats.sources.active_ssrc == 1
    assert stats.on_packet(2, 30001, 999 + 160, base + 0.02)
    assert stats.sources.active_ssrc == 2
    assert stats.jitter == 0.0
    _feed(
        stats,
        [(30002 + i, 999 + 320 + 160 * i, base + 0.04 + 0.02 * i) for i in range(10)],
        2,
    )
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)
    assert (stats.expected, stats.lost) == (
        11,
        0,
    )  # A.1: counting starts after probation
    assert stats.snapshot().ssrc_changes == 1


@given(
    delay_ms=st.floats(allow_nan=True, allow_infinity=True, width=64),
    loss=st.floats(allow_nan=True, allow_infinity=True, width=64),
)
def test_g711_mos_is_the_rounded_e_model(delay_ms: float, loss: float) -> None:
    """The engine's one-call score equals the documented composition, bit for bit."""
    expected = round(mos_from_r(r_factor(delay_ms=delay_ms, loss=loss)), 2)
    got = g711_mos(delay_ms, loss)
    assert got == expected or (math.isnan(got) and math.isnan(expected))


@pytest.mark.parametrize(
    ("delay_ms", "loss"),
    [(20.0, 0.0), (-0.0, 0.0), (-5.0, -0.1), (177.3, 0.5), (400.0, 1.0), (30.0, 2.0)],
)
def test_g711_mos_edges(delay_ms: float, loss: float) -> None:
    expected = round(mos_from_r(r_factor(delay_ms=delay_ms, loss=loss)), 2)
    assert g711_mos(delay_ms, loss) == expected
