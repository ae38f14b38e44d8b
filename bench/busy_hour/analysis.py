"""Loss, lateness and send-time jitter of every stream the RTP peer received.

A *stream* is one (side, switch port, SSRC): the switch keeps one SSRC per leg from
the first prompt to the last relayed packet (media/relay.py splices sources into it)
and picks a new one for a new leg, so a port reused by the next call is a new stream.

* **loss**: per stream, sequence numbers expected (highest - lowest + 1, unwrapped)
  minus packets received; loopback neither drops nor reorders on its own, so every
  missing packet was dropped by a full socket buffer or never sent.
* **lateness**: packet ``k`` of a *segment* is due ``(ts_k - ts_0) / 8000`` s after the
  segment's start; its lateness is its kernel arrival time minus that, taking as the
  start the moment that makes the segment's earliest packet exactly on time.  A segment
  starts with a stream and again at every marker bit, which the switch sets when what
  feeds a stream changes (prompt, music, relayed audio; RFC 3550 5.1), because the
  schedule restarts there.  Lateness is what a phone's jitter buffer must absorb:
  a packet later than ``jitter_buffer_ms`` counts as *late* (a fixed buffer of that
  depth would have played silence instead).
* **gaps**: stretches over 100 ms in which a leg received nothing at all.
* **played** packets are the switch's own (prompts, music, announcements): their
  lateness is the switch's send-time jitter.  **Relayed** packets (recognised by their
  payload, the other side's speech) also carry the RTP peer's own pacing jitter.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

# TODO: relayed lateness includes the RTP peer's own pacing (its 1 ms slots and any
# time it was descheduled); transmit timestamps (SO_TIMESTAMPING) would isolate the
# switch's forwarding delay.
CHUNK_DTYPE: Final = np.dtype(
    [
        ("side", np.uint8),
        ("port", np.uint16),
        ("b1", np.uint8),  # marker bit and payload type
        ("seq", np.uint16),
        ("ts", np.uint32),
        ("ssrc", np.uint32),
        ("relayed", np.bool_),
        ("arrival_ns", np.int64),  # CLOCK_REALTIME, from SO_TIMESTAMPNS
    ]
)
CLOCK_RATE: Final = 8000  # G.711 and telephone-event timestamps (RFC 3551)
SIDE_NAMES: Final = ("callers", "operators")

Array = npt.NDArray[Any]


def _unwrap(values: Array, starts: Array, sizes: Array, modulus: int) -> Array:
    """Per stream (sorted by arrival), undo the wrap of a sequence or timestamp."""
    step: Array = np.diff(values.astype(np.int64), prepend=np.int64(values[0]))
    step = (step + modulus // 2) % modulus - modulus // 2
    step[starts] = 0
    total = np.cumsum(step)
    base = values[starts].astype(np.int64) - total[starts]
    unwrapped: Array = base.repeat(sizes) + total
    return unwrapped


def _stats(values: Array, prefix: str) -> dict[str, float | None]:
    if not values.size:
        return {f"{prefix}_{name}_ms": None for name in ("p50", "p99", "p999", "max")}
    p50, p99, p999 = np.percentile(values, (50, 99, 99.9))
    return {
        f"{prefix}_p50_ms": round(float(p50), 3),
        f"{prefix}_p99_ms": round(float(p99), 3),
        f"{prefix}_p999_ms": round(float(p999), 3),
        f"{prefix}_max_ms": round(float(values.max()), 3),
    }


def _per_second(
    second: Array, stream: Array, lateness: Array, played: Array
) -> list[list[float | int | None]]:
    """[epoch second, streams heard, played-jitter p99 ms] for every second."""
    first = int(second.min())
    bins = second - first
    count = int(bins.max()) + 1
    pairs = np.unique(bins * (int(stream.max()) + 1) + stream)
    heard = np.bincount(pairs // (int(stream.max()) + 1), minlength=count)
    p99 = np.full(count, np.nan)
    if played.any():
        b, late = bins[played], lateness[played]
        order = np.lexsort((late, b))
        b, late = b[order], late[order]
        starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
        sizes = np.diff(np.r_[starts, b.size])
        p99[b[starts]] = late[starts + np.ceil(0.99 * sizes).astype(np.int64) - 1]
    return [
        [
            first + i,
            int(heard[i]),
            None if np.isnan(p99[i]) else round(float(p99[i]), 3),
        ]
        for i in range(count)
    ]


def analyse(
    chunks: list[Array], *, jitter_buffer_ms: float, offset: float = 0.0
) -> dict[str, Any]:
    """The figures of :mod:`bench.busy_hour.analysis` over every packet received."""
    if not chunks:
        return {"rtp_received": 0, "rtp_lost": 0, "rtp_late": 0, "streams": {}}
    data = np.concatenate(chunks)
    key = (
        (data["side"].astype(np.uint64) << np.uint64(48))
        | (data["port"].astype(np.uint64) << np.uint64(32))
        | data["ssrc"].astype(np.uint64)
    )
    keys, stream = np.unique(key, return_inverse=True)
    order = np.lexsort((data["arrival_ns"], stream))
    data, stream = data[order], stream[order]
    starts = np.flatnonzero(np.r_[True, stream[1:] != stream[:-1]])
    sizes = np.diff(np.r_[starts, stream.size])
    side_of_stream = (keys >> np.uint64(48)).astype(np.int64)

    # loss and reordering, per stream
    seq = _unwrap(data["seq"], starts, sizes, 1 << 16)
    expected = np.maximum.reduceat(seq, starts) - np.minimum.reduceat(seq, starts) + 1
    lost = np.maximum(expected - sizes, 0)
    backwards = np.diff(seq, prepend=seq[0]) < 0
    backwards[starts] = False

    # lateness against each segment's own RTP-timestamp schedule
    ts = _unwrap(data["ts"], starts, sizes, 1 << 32)
    segment_start = (data["b1"] & 0x80).astype(bool)
    segment_start[starts] = True
    segment = np.cumsum(segment_start) - 1
    seg_starts = np.flatnonzero(segment_start)
    arrival = (data["arrival_ns"] - data["arrival_ns"][0]) / 1e9
    due = (ts - ts[seg_starts][segment]) / CLOCK_RATE
    slack = arrival - due
    lateness = (slack - np.minimum.reduceat(slack, seg_starts)[segment]) * 1000.0
    late = lateness > jitter_buffer_ms
    relayed = data["relayed"]
    played = ~relayed & ((data["b1"] & 0x7F) != 101)
    late_per_stream = np.add.reduceat(late.astype(np.int64), starts)
    relayed_per_stream = np.add.reduceat(relayed.astype(np.int64), starts)

    # silences: the switch sent nothing to a leg for a while (invisible to loss and
    # lateness when it resumes with the next sequence number and a later timestamp)
    pause = np.diff(arrival, prepend=arrival[0]) * 1000.0
    pause[starts] = 0.0
    second = (data["arrival_ns"] // 1_000_000_000).astype(np.int64)
    streams = {
        name: int((side_of_stream == side).sum())
        for side, name in enumerate(SIDE_NAMES)
    }
    caller_streams = side_of_stream == 0
    return {
        "rtp_received": int(data.size),
        "rtp_lost": int(lost.sum()),
        "rtp_late": int(late.sum()),
        "rtp_late_played": int((late & played).sum()),
        "rtp_late_relayed": int((late & relayed).sum()),
        "rtp_reordered": int(backwards.sum()),
        "jitter_buffer_ms": jitter_buffer_ms,
        "streams": streams,
        "streams_with_loss": int((lost > 0).sum()),
        "streams_with_late": int((late_per_stream > 0).sum()),
        "lost_per_stream_max": int(lost.max()),
        "late_per_stream_max": int(late_per_stream.max()),
        "caller_streams_with_relayed_audio": int(
            ((relayed_per_stream > 0) & caller_streams).sum()
        ),
        "segments": int(seg_starts.size),
        "gaps_over_100ms": int((pause > 100.0).sum()),
        "streams_with_gap": int((np.maximum.reduceat(pause, starts) > 100.0).sum()),
        "gap_max_ms": round(float(pause.max()), 1),
        "played_packets": int(played.sum()),
        "relayed_packets": int(relayed.sum()),
        **_stats(lateness[played], "jitter_played"),
        **_stats(lateness[relayed], "jitter_relayed"),
        "stream_seconds_median": round(
            float(np.median(np.maximum(sizes, 1) / 50.0)), 1
        ),
        "series": _per_second(second, stream, lateness, played),
        "realtime_minus_monotonic": offset,
    }
