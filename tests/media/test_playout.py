"""Tests for media.playout: one numpy build per tick, sends spread over phases.

Driven by hand (build and send with chosen tick numbers), with fake endpoints that
record what they send; no sockets, no event loop, nothing asserts on timing.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest

from media.endpoint import OutStream
from media.player import Playback
from media.playout import INITIAL_ROWS, PACKET_SIZE, Playout
from media.rtp import RtpPacket

FRAME = 160
TICK = 0.02


def frames(count: int, first: int = 0) -> npt.NDArray[np.uint8]:
    """``count`` distinguishable 160-octet payloads: frame i is filled with first+i."""
    return np.repeat(
        np.arange(first, first + count, dtype=np.uint8)[:, None], FRAME, axis=1
    )


class FakeEndpoint:
    """What the playout uses of an RtpEndpoint, recording every datagram."""

    def __init__(self, endpoint_id: int, *, audio_pt: int = 0) -> None:
        self.endpoint_id = endpoint_id
        self.audio_pt = audio_pt
        self.out = OutStream()
        self.remote: tuple[str, int] | None = ("127.0.0.1", 40000 + endpoint_id)
        self.send_errors = 0
        self.sent: list[RtpPacket] = []
        self.fail = False
        self.sendto = self.record  # a socket's bound method on a real endpoint

    def record(self, data: memoryview, address: tuple[str, int]) -> int:
        if self.fail:
            raise OSError("no buffer space")
        assert len(data) == PACKET_SIZE
        self.sent.append(RtpPacket.parse(bytes(data)))
        return len(data)


class Driver:
    """A playout with its clock simulated: tick n starts at n * 20 ms."""

    def __init__(self, phases: int = 1) -> None:
        self.finished: list[int] = []
        self.playout = Playout(phases=phases, on_finished=self.on_finished)
        self.on_finished_hook = self.remove

    def on_finished(self, endpoint_id: int) -> None:
        self.finished.append(endpoint_id)
        self.on_finished_hook(endpoint_id)

    def remove(self, endpoint_id: int) -> None:
        self.playout.remove(endpoint_id)

    def tick(self, tick: int, phases: range | None = None) -> None:
        self.playout.build(tick, tick * TICK)
        for phase in phases if phases is not None else range(self.playout.phases):
            self.playout.send(tick, phase)


def assert_one_stream(packets: list[RtpPacket]) -> None:
    """Consecutive sequence numbers, 160 timestamp units a tick, one SSRC."""
    assert len({p.ssrc for p in packets}) == 1
    for before, after in itertools.pairwise(packets):
        assert after.sequence == (before.sequence + 1) & 0xFFFF
        assert (after.timestamp - before.timestamp) & 0xFFFFFFFF == FRAME


def test_tick_batch_keeps_numbering_continuous_and_plays_the_playlist() -> None:
    driver = Driver(phases=4)
    endpoints = [FakeEndpoint(n) for n in range(1, 8)]
    first, second = frames(3), frames(2, first=100)
    for endpoint in endpoints:
        endpoint.out.seq = 0xFFFE  # the sequence number wraps during the test
        driver.playout.add(endpoint, Playback(1, [first, second], loop=True))
    for tick in range(1, 13):
        driver.tick(tick)
    expected = [bytes([v]) * FRAME for v in (0, 1, 2, 100, 101)] * 3
    for endpoint in endpoints:
        packets = endpoint.sent
        assert len(packets) == 12
        assert_one_stream(packets)
        assert packets[0].sequence == 0xFFFF and packets[1].sequence == 0
        assert packets[0].ssrc == endpoint.out.ssrc
        assert [p.payload for p in packets] == expected[:12]
        assert [p.marker for p in packets] == [True] + [False] * 11
        assert {p.payload_type for p in packets} == {0}
    assert driver.finished == []
    assert driver.playout.packets == 7 * 12


def test_streams_are_spread_evenly_and_keep_their_phase() -> None:
    driver = Driver(phases=4)
    endpoints = [FakeEndpoint(n) for n in range(1, 9)]
    for endpoint in endpoints:
        driver.playout.add(endpoint, Playback(1, [frames(50)]))
    first_tick: list[frozenset[int]] = []
    for tick in range(1, 4):
        driver.playout.build(tick, tick * TICK)
        assert driver.playout.busy_phases() == [0, 1, 2, 3]
        senders = []
        for phase in range(4):
            before = [len(e.sent) for e in endpoints]
            assert driver.playout.send(tick, phase) == 2  # 8 streams, 4 phases
            senders.append(
                frozenset(
                    e.endpoint_id
                    for e, count in zip(endpoints, before, strict=True)
                    if len(e.sent) > count
                )
            )
        assert frozenset().union(*senders) == {e.endpoint_id for e in endpoints}
        first_tick = first_tick or senders
        assert senders == first_tick  # the same streams in the same phase every tick
        assert driver.playout.send(tick, 0) == 0  # a phase is sent once per tick


def test_a_stream_continues_the_outstream_and_leaves_it_continued() -> None:
    driver = Driver()
    endpoint = FakeEndpoint(1)
    out = endpoint.out
    # as if a bridge had sent up to seq 500 / ts 8000 at t = 0.1 s
    out.seq, out.ts, out.time, out.marker = 500, 8000, 0.1, True
    driver.playout.add(endpoint, Playback(1, [frames(5)]))
    for tick in range(10, 13):  # 10 -> 0.2 s: 0.1 s after the bridge's last packet
        driver.tick(tick)
    first = endpoint.sent[0]
    assert first.marker
    assert first.sequence == 501
    assert first.timestamp == 8000 + 800  # moved forward by the 100 ms that passed
    assert_one_stream(endpoint.sent)

    driver.playout.remove(1)
    last = endpoint.sent[-1]
    assert (out.seq, out.ts) == (last.sequence, last.timestamp)
    assert out.time == pytest.approx(12 * TICK)
    assert out.packets == 3 and out.octets == 3 * PACKET_SIZE
    assert 1 not in driver.playout

    # the next source (here another playback, after a source change) continues
    out.marker = True
    driver.playout.add(endpoint, Playback(2, [frames(5)]))
    driver.tick(13)
    resumed = endpoint.sent[-1]
    assert resumed.marker
    assert resumed.sequence == last.sequence + 1
    assert resumed.timestamp == last.timestamp + FRAME


def test_a_stream_removed_before_its_phase_is_not_sent_and_not_counted() -> None:
    driver = Driver(phases=2)
    a, b = FakeEndpoint(1), FakeEndpoint(2)
    for endpoint in (a, b):
        driver.playout.add(endpoint, Playback(1, [frames(10)]))
    driver.tick(1)
    driver.playout.build(2, 2 * TICK)
    driver.playout.send(2, 0)  # a's phase (the first admitted takes phase 0)
    driver.playout.remove(2)  # b: built for tick 2, not sent yet
    driver.playout.send(2, 1)
    assert len(a.sent) == 2 and len(b.sent) == 1
    assert b.out.seq == b.sent[-1].sequence
    assert b.out.ts == b.sent[-1].timestamp
    assert b.out.packets == 1
    assert not b.out.marker  # the marker went out with tick 1


def test_settle_writes_the_position_for_rtcp_while_playing() -> None:
    driver = Driver(phases=2)
    endpoint = FakeEndpoint(1)
    driver.playout.add(endpoint, Playback(1, [frames(20)]))
    for tick in range(1, 5):
        driver.tick(tick)
    driver.playout.settle(1)
    assert endpoint.out.packets == 4
    assert endpoint.out.seq == endpoint.sent[-1].sequence
    assert endpoint.out.next_timestamp(5 * TICK) == endpoint.sent[-1].timestamp + FRAME
    driver.playout.settle(1)  # idempotent
    assert endpoint.out.packets == 4
    driver.playout.build(5, 5 * TICK)
    driver.playout.settle(1)  # built, not sent: not counted yet
    assert endpoint.out.packets == 4
    driver.playout.send(5, 0)
    driver.playout.remove(1)
    assert endpoint.out.packets == 5 == len(endpoint.sent)


def test_skipped_ticks_move_the_timestamp_not_the_sequence() -> None:
    driver = Driver()
    endpoint = FakeEndpoint(1)
    driver.playout.add(endpoint, Playback(1, [frames(20)]))
    driver.tick(1)
    driver.tick(6)  # the clock skipped ticks 2..5 after a stall
    first, second = endpoint.sent
    assert second.sequence == first.sequence + 1
    assert second.timestamp == first.timestamp + 5 * FRAME
    assert second.payload == bytes([1]) * FRAME  # the prompt goes on where it was


def test_a_late_phase_is_sent_before_the_next_build_not_dropped() -> None:
    driver = Driver(phases=3)
    endpoints = [FakeEndpoint(n) for n in range(1, 7)]
    for endpoint in endpoints:
        driver.playout.add(endpoint, Playback(1, [frames(20)]))
    driver.tick(1)
    driver.tick(2, phases=range(1))  # the loop stalls after phase 0 of tick 2
    assert sum(len(e.sent) for e in endpoints) == 6 + 2
    driver.tick(3)  # phases 1, 2 of tick 2 go first, then tick 3
    for endpoint in endpoints:
        assert len(endpoint.sent) == 3
        assert_one_stream(endpoint.sent)
    assert driver.playout.send(2, 1) == 0  # the timer of the late phase finds nothing


def test_no_remote_gives_the_sequence_number_and_marker_back() -> None:
    driver = Driver()
    endpoint = FakeEndpoint(1)
    endpoint.remote = None
    driver.playout.add(endpoint, Playback(1, [frames(20)]))
    driver.tick(1)
    driver.tick(2)
    assert endpoint.sent == []
    assert driver.playout.skipped_sends == 2
    endpoint.remote = ("127.0.0.1", 40001)  # e.g. latched
    driver.tick(3)
    driver.tick(4)
    first, second = endpoint.sent
    assert first.marker and not second.marker
    assert first.sequence == (endpoint.out.seq + 1) & 0xFFFF
    assert second.sequence == (first.sequence + 1) & 0xFFFF


def test_a_failed_send_counts_as_lost() -> None:
    driver = Driver()
    endpoint = FakeEndpoint(1)
    driver.playout.add(endpoint, Playback(1, [frames(20)]))
    driver.tick(1)
    endpoint.fail = True
    driver.tick(2)
    endpoint.fail = False
    driver.tick(3)
    first, third = endpoint.sent
    assert endpoint.send_errors == 1
    assert third.sequence == first.sequence + 2  # the far end sees one loss
    driver.playout.remove(1)
    assert endpoint.out.packets == 2


def test_finished_one_tick_after_the_last_frame_and_replayable_from_the_callback() -> (
    None
):
    driver = Driver(phases=2)
    endpoint = FakeEndpoint(1)
    again = Playback(2, [frames(1, first=9)])

    def replay(endpoint_id: int) -> None:
        driver.playout.remove(endpoint_id)
        if len(driver.finished) == 1:
            driver.playout.add(endpoint, again)

    driver.on_finished_hook = replay
    driver.playout.add(endpoint, Playback(1, [frames(2)]))
    driver.tick(1)
    driver.tick(2)
    assert driver.finished == []
    driver.tick(3)  # the playlist ran out: reported, replaced, played in this tick
    assert driver.finished == [1]
    assert [p.payload[0] for p in endpoint.sent] == [0, 1, 9]
    assert_one_stream(endpoint.sent)
    driver.tick(4)
    assert driver.finished == [1, 1]
    assert len(endpoint.sent) == 3
    assert len(driver.playout) == 0


def test_empty_playlist_finishes_at_once() -> None:
    driver = Driver()
    endpoint = FakeEndpoint(1)
    driver.playout.add(endpoint, Playback(1, [np.zeros((0, FRAME), np.uint8)]))
    driver.tick(1)
    assert driver.finished == [1]
    assert endpoint.sent == []
    assert 1 not in driver.playout


def test_many_streams_grow_the_rows_and_compaction_keeps_each_stream() -> None:
    driver = Driver(phases=5)
    count = INITIAL_ROWS * 2 + 3
    endpoints = [FakeEndpoint(n) for n in range(1, count + 1)]
    for endpoint in endpoints:
        driver.playout.add(endpoint, Playback(1, [frames(200)]))
    driver.tick(1)
    for endpoint in endpoints[::3]:  # stop a third of them, rows get compacted
        driver.playout.remove(endpoint.endpoint_id)
    for tick in range(2, 6):
        driver.tick(tick)
    for index, endpoint in enumerate(endpoints):
        assert len(endpoint.sent) == (1 if index % 3 == 0 else 5)
        assert_one_stream(endpoint.sent)
        assert [p.payload[0] for p in endpoint.sent] == list(range(len(endpoint.sent)))


def test_payload_type_change_applies_to_later_packets() -> None:
    driver = Driver()
    endpoint = FakeEndpoint(1)
    driver.playout.add(endpoint, Playback(1, [frames(5)]))
    driver.tick(1)
    driver.playout.set_payload_type(1, 8)
    driver.tick(2)
    assert [p.payload_type for p in endpoint.sent] == [0, 8]


def test_tuples_of_payloads_are_accepted() -> None:
    driver = Driver()
    endpoint = FakeEndpoint(1)
    driver.playout.add(endpoint, Playback(1, [(b"\x01" * FRAME, b"\x02" * FRAME)]))
    driver.tick(1)
    driver.tick(2)
    assert [p.payload for p in endpoint.sent] == [b"\x01" * FRAME, b"\x02" * FRAME]


def test_bad_use() -> None:
    with pytest.raises(ValueError):
        Playout(phases=0, on_finished=lambda endpoint_id: None)
    driver = Driver()
    endpoint = FakeEndpoint(1)
    driver.playout.add(endpoint, Playback(1, [frames(5)]))
    with pytest.raises(ValueError, match="already playing"):
        driver.playout.add(endpoint, Playback(2, [frames(5)]))
    driver.playout.remove(99)  # unknown: nothing to do
    driver.playout.settle(99)


def test_music_on_hold_loops_one_item_in_bulk() -> None:
    driver = Driver(phases=2)
    endpoints = [FakeEndpoint(n) for n in range(1, 5)]
    music = frames(3)
    for endpoint in endpoints:
        playback = Playback(1, [music], loop=True)
        assert playback.repeats_one_item
        driver.playout.add(endpoint, playback)
    for tick in range(1, 9):
        driver.tick(tick)
    for endpoint in endpoints:
        assert [p.payload[0] for p in endpoint.sent] == [0, 1, 2, 0, 1, 2, 0, 1]
        assert_one_stream(endpoint.sent)
    assert driver.finished == []
    assert not Playback(2, [music, music], loop=True).repeats_one_item
    assert not Playback(3, [music]).repeats_one_item
