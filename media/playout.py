"""Batched playout: the next RTP packet of every played stream built in one numpy pass.

RFC 3550 5.1 (header fields), RFC 3551 4.2 and 4.5.14 (20 ms frames of G.711).

Playing a prompt to 1000 callers is 50 000 packets a second that differ only in
sequence number, timestamp, SSRC and which 160 octets of which cached prompt they carry.
Building each with ``struct.pack`` and a bytes concatenation costs about a microsecond of
Python per packet, 5 % of a core at 1000 legs (PERFORMANCE.md 2.2), so this module keeps
the state of every played stream in numpy arrays and builds all packets of a tick at
once, leaving one ``sendto`` per packet in a tight loop.

Theory of operation.  Each played stream owns one row of a structured array laid out
exactly as the packet on the wire (12-byte header, 160-byte payload), so a row is sent
as a memoryview slice with no copy.  Once per 20 ms tick :meth:`Playout.build`

1. moves streams whose item ended to their playlist's next item (or reports them
   finished: the event comes one tick after the last frame left, as the frame-by-frame
   player did),
2. compacts rows of stopped streams and admits new streams, which take their sequence
   number, timestamp and marker from the endpoint's :class:`~media.endpoint.OutStream`
   (so a prompt continues a bridged call's stream and the reverse),
3. copies payloads with one fancy-indexing gather per distinct item (1000 callers
   hearing the same prompt are one copy) and writes the sequence numbers, timestamps
   and second octets of all rows with array assignments into the big-endian fields.

The timestamp of a row at tick ``t`` is ``base_ts + (t - base_tick) * 160``: derived
from the tick number, it advances exactly one frame per tick, and by the skipped time
when the clock skipped ticks after a stall (sequence numbers stay continuous: no
packet was lost, the source paused).  :meth:`Playout.send` then sends the rows of one
*phase*: streams are spread evenly over the phases of a tick (the least loaded phase
when they start) so that a tick goes out as several small bursts, each row always in
the same phase, hence exactly 20 ms apart.  The engine calls it for phase 0 right
after the build and schedules the other phases at absolute deadlines inside the tick;
a phase still waiting when the next tick is built (the loop stalled for more than a
tick) is sent then, late, instead of never: a late tick catches up with one packet
per stream, no skipping and no larger burst than the stall requires.

While a stream plays, its position lives here, not in the endpoint; :meth:`settle`
writes it back (before an RTCP sender report or a statistics snapshot) and
:meth:`remove` writes it back for good.  A row built but not yet sent when it is
removed or settled counts as not sent; a row whose packet could not be sent (no remote
address yet) gets its sequence number back, so the far end never sees a gap that is
not a loss.
"""

from __future__ import annotations

import array
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, Protocol

import numpy as np
import numpy.typing as npt

from media.clock import TICK_INTERVAL
from media.endpoint import (
    MARKER_BIT,
    PLAIN_FIRST_OCTET,
    SAMPLES_PER_FRAME,
    SEQ_MASK,
    TS_MASK,
    OutStream,
)

if TYPE_CHECKING:
    from media.player import Playback

logger = logging.getLogger(__name__)

# RFC 3550 5.1: the fixed header; RFC 3551 4.5.14: 160 octets are 20 ms of G.711.
HEADER_SIZE: Final = 12
PACKET_SIZE: Final = HEADER_SIZE + SAMPLES_PER_FRAME
PACKET_DTYPE: Final = np.dtype(
    [
        ("first", "u1"),  # V=2, P=0, X=0, CC=0
        ("second", "u1"),  # marker and payload type
        ("sequence", ">u2"),
        ("timestamp", ">u4"),
        ("ssrc", ">u4"),
        ("payload", "u1", (SAMPLES_PER_FRAME,)),
    ]
)
INITIAL_ROWS: Final = 64
NO_TICK: Final = -1

FrameArray = npt.NDArray[np.uint8]
FinishCallback = Callable[[int], None]


class PlayedEndpoint(Protocol):
    """What the playout uses of an :class:`~media.endpoint.RtpEndpoint`."""

    endpoint_id: int
    out: OutStream
    remote: tuple[str, int] | None
    send_errors: int
    sendto: Callable[..., int]

    @property
    def audio_pt(self) -> int: ...


class _Group:
    """The rows currently playing one item (one frame array)."""

    __slots__ = ("frames", "index", "rows")

    def __init__(self, frames: FrameArray) -> None:
        self.frames = frames  # also keeps id(frames), the group's key, from reuse
        self.rows: set[int] = set()
        self.index: npt.NDArray[np.intp] | None = None

    def row_index(self) -> npt.NDArray[np.intp]:
        if self.index is None:
            self.index = np.fromiter(sorted(self.rows), dtype=np.intp)
        return self.index


def as_frame_array(item: Sequence[bytes] | FrameArray) -> FrameArray:
    """A playlist item as a (frames, 160) array (prompt cache items already are)."""
    if isinstance(item, np.ndarray):
        return item
    joined = b"".join(bytes(frame).ljust(SAMPLES_PER_FRAME, b"\0") for frame in item)
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, SAMPLES_PER_FRAME)


class Playout:
    """Every played stream of an engine, built per tick and sent per phase.

    Driven by the engine's media clock: :meth:`build` once per tick (before the sends
    of its first phase), :meth:`send` once per phase.

    :param phases: slots a tick's sends are spread over.
    :param on_finished: called with the endpoint id of a playlist that ran out; it is
        expected to :meth:`remove` the stream.
    """

    def __init__(self, *, phases: int, on_finished: FinishCallback) -> None:
        if phases < 1:
            raise ValueError("phases must be >= 1")
        self.phases = phases
        self._on_finished = on_finished
        self._count = 0  # rows in use, stopped ones included until compaction
        self._dead = 0
        self._rows = 0
        self._allocate(INITIAL_ROWS)
        self._row_of: dict[int, int] = {}
        self._pending: dict[int, tuple[PlayedEndpoint, Playback]] = {}
        self._groups: dict[int, _Group] = {}
        self._phase_load = [0] * phases
        self._phase_rows: list[list[int]] = [[] for _ in range(phases)]
        self._phase_sent = [True] * phases
        self._tick = NO_TICK
        self._when = 0.0
        self.packets = 0  # sent, all streams
        self.skipped_sends = 0  # built but not sent: no remote address yet
        # set to an array("d") to record (deadline, first send, last send, packets) per
        # phase sent: doubles, so recording creates no objects for the GC to scan
        self.trace: array.array[float] | None = None

    # ---------------------------------------------------------------- membership

    def __contains__(self, endpoint_id: object) -> bool:
        return endpoint_id in self._row_of or endpoint_id in self._pending

    def __len__(self) -> int:
        return len(self._row_of) + len(self._pending)

    def add(self, endpoint: PlayedEndpoint, playback: Playback) -> None:
        """Start playing ``playback`` on ``endpoint`` from the next tick on."""
        if endpoint.endpoint_id in self:
            raise ValueError(f"endpoint {endpoint.endpoint_id} is already playing")
        self._pending[endpoint.endpoint_id] = (endpoint, playback)

    def remove(self, endpoint_id: int) -> None:
        """Stop the endpoint's stream and leave its position in its OutStream."""
        if self._pending.pop(endpoint_id, None) is not None:
            return
        row = self._row_of.pop(endpoint_id, None)
        if row is None:
            return
        endpoint = self._endpoints[row]
        marker = self._settle(row)
        if endpoint is not None:
            endpoint.out.marker = marker
        self._leave_group(row)
        self._phase_load[int(self._phase[row])] -= 1
        self._endpoints[row] = None
        self._playbacks[row] = None
        self._dead += 1

    def settle(self, endpoint_id: int) -> None:
        """Write the stream position into the endpoint's OutStream (it keeps playing)."""
        row = self._row_of.get(endpoint_id)
        if row is not None:
            self._settle(row)

    def set_payload_type(self, endpoint_id: int, payload_type: int) -> None:
        """A codec change: later packets carry the new payload type number."""
        row = self._row_of.get(endpoint_id)
        if row is not None:
            self._payload_type[row] = payload_type

    # ---------------------------------------------------------------- per tick

    def build(self, tick: int, when: float) -> None:
        """Build every stream's packet of ``tick`` (starting at ``when``, monotonic)."""
        # phases of the previous tick still waiting (the loop was stalled for more
        # than a tick): they go now, late, rather than never
        if self._tick != NO_TICK:
            for phase, sent in enumerate(self._phase_sent):
                if not sent:
                    self.send(self._tick, phase)

        # items that ended with the previous tick: the next item, or finished; a
        # looping one-item playlist (music on hold) just starts over, in bulk
        count = self._count
        if count:
            ended = np.flatnonzero(self._position[:count] >= self._length[:count])
            if ended.size:
                again = self._repeat[ended]
                self._position[ended[again]] = 0
                ended = ended[~again]
            for row in ended.tolist():
                endpoint, playback = self._endpoints[row], self._playbacks[row]
                if endpoint is None or playback is None:
                    continue
                item = playback.next_item()
                if item is None:
                    self._on_finished(endpoint.endpoint_id)
                else:
                    self._set_item(row, as_frame_array(item))

        # compact stopped rows, admit new streams
        if self._dead:
            self._compact()
        if self._pending:
            self._admit(tick, when)
        self._tick = tick
        self._when = when
        count = self._count
        if not count:
            self._phase_rows = [[] for _ in range(self.phases)]
            return

        # payloads: one gather per distinct item
        payload = self._packets["payload"]
        position = self._position
        for group in self._groups.values():
            rows = group.row_index()
            payload[rows] = group.frames[position[rows]]

        # headers: sequence, timestamp and second octet of every row at once
        packets = self._packets[:count]
        self._sequence[:count] += 1  # uint16: wraps as RFC 3550 5.1 wants
        packets["sequence"] = self._sequence[:count]
        packets["timestamp"] = (
            self._base_ts[:count] + (tick - self._base_tick[:count]) * SAMPLES_PER_FRAME
        ) & TS_MASK
        packets["second"] = self._payload_type[:count] | (
            self._marker[:count].view(np.uint8) << 7
        )
        self._marker[:count] = False
        self._previous_tick[:count] = self._last_tick[:count]
        self._last_tick[:count] = tick
        self._sent[:count] += 1
        position[:count] += 1

        # the rows each phase sends
        phases = self._phase[:count]
        order = np.argsort(phases, kind="stable")
        bounds = np.searchsorted(phases[order], np.arange(self.phases + 1)).tolist()
        rows_in_order = order.tolist()
        self._phase_rows = [
            rows_in_order[bounds[p] : bounds[p + 1]] for p in range(self.phases)
        ]
        self._phase_sent = [False] * self.phases

    def busy_phases(self) -> list[int]:
        """The phases of the current tick that have packets to send."""
        return [phase for phase, rows in enumerate(self._phase_rows) if rows]

    def send(self, tick: int, phase: int) -> int:
        """Send the packets ``phase`` of ``tick`` holds; returns how many left."""
        if tick != self._tick or self._phase_sent[phase]:
            return 0  # sent already, or a later tick was built (this one caught up)
        self._phase_sent[phase] = True
        rows = self._phase_rows[phase]
        if not rows:
            return 0
        trace = self.trace
        started = time.monotonic() if trace is not None else 0.0
        endpoints = self._endpoints
        slices = self._slices
        unsent: list[int] = []
        failed: list[int] = []
        for row in rows:
            endpoint = endpoints[row]
            if endpoint is None:
                continue  # stopped after the build
            destination = endpoint.remote
            if destination is None:
                unsent.append(row)
                continue
            try:
                endpoint.sendto(slices[row], destination)
            except OSError as exc:
                endpoint.send_errors += 1
                failed.append(row)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "endpoint %d: send failed: %s", endpoint.endpoint_id, exc
                    )
        for row in unsent:
            self._unsend(row)
        for row in failed:  # a failed send is a lost packet: the sequence moves on
            self._sent[row] -= 1
        sent = len(rows) - len(unsent) - len(failed)
        self.packets += sent
        if trace is not None:
            deadline = self._when + phase * TICK_INTERVAL / self.phases
            trace.extend((deadline, started, time.monotonic(), sent))
        return sent

    # ---------------------------------------------------------------- rows

    def _allocate(self, rows: int) -> None:
        """(Re)allocate the row arrays for ``rows`` streams, keeping the used ones."""
        used = self._count
        old = self.__dict__.copy() if used else {}
        self._packets = np.zeros(rows, dtype=PACKET_DTYPE)
        self._packets["first"] = PLAIN_FIRST_OCTET
        self._sequence = np.zeros(rows, dtype=np.uint16)  # last built
        self._base_ts = np.zeros(rows, dtype=np.int64)
        self._base_tick = np.zeros(rows, dtype=np.int64)
        self._position = np.zeros(rows, dtype=np.int64)  # next frame of the item
        self._length = np.zeros(rows, dtype=np.int64)  # frames in the item
        self._marker = np.zeros(rows, dtype=np.bool_)
        self._repeat = np.zeros(rows, dtype=np.bool_)  # a looping one-item playlist
        self._payload_type = np.zeros(rows, dtype=np.uint8)
        self._sent = np.zeros(rows, dtype=np.int64)  # since admitted or settled
        self._phase = np.zeros(rows, dtype=np.int64)
        self._last_tick = np.full(rows, NO_TICK, dtype=np.int64)
        self._previous_tick = np.full(rows, NO_TICK, dtype=np.int64)
        self._endpoints: list[PlayedEndpoint | None] = [None] * rows
        self._playbacks: list[Playback | None] = [None] * rows
        self._item_of: list[int] = [0] * rows  # group key per row
        for name in self._ROW_ARRAYS:
            if name in old:
                getattr(self, name)[:used] = old[name][:used]
        for name in ("_endpoints", "_playbacks", "_item_of"):
            if name in old:
                getattr(self, name)[:used] = old[name][:used]
        view = self._packets.view(np.uint8).data  # a memoryview of the rows' octets
        self._slices = [
            view[row * PACKET_SIZE : (row + 1) * PACKET_SIZE] for row in range(rows)
        ]
        self._rows = rows

    _ROW_ARRAYS: Final = (
        "_packets",
        "_sequence",
        "_base_ts",
        "_base_tick",
        "_position",
        "_length",
        "_marker",
        "_repeat",
        "_payload_type",
        "_sent",
        "_phase",
        "_last_tick",
        "_previous_tick",
    )

    def _admit(self, tick: int, when: float) -> None:
        """Give each pending stream a row, continuing its endpoint's OutStream."""
        pending, self._pending = self._pending, {}
        finished: list[int] = []
        for endpoint_id, (endpoint, playback) in pending.items():
            item = playback.next_item()
            if item is None:
                finished.append(endpoint_id)
                continue
            if self._count == self._rows:
                self._allocate(self._rows * 2)
            row = self._count
            self._count += 1
            out = endpoint.out
            self._sequence[row] = out.seq
            self._base_ts[row] = out.next_timestamp(when)
            self._base_tick[row] = tick
            self._marker[row] = out.marker
            self._repeat[row] = playback.repeats_one_item
            self._payload_type[row] = endpoint.audio_pt
            self._packets["ssrc"][row] = out.ssrc
            self._sent[row] = 0
            self._last_tick[row] = NO_TICK
            self._previous_tick[row] = NO_TICK
            phase = self._phase_load.index(min(self._phase_load))
            self._phase[row] = phase
            self._phase_load[phase] += 1
            self._endpoints[row] = endpoint
            self._playbacks[row] = playback
            self._row_of[endpoint_id] = row
            self._item_of[row] = 0
            self._set_item(row, as_frame_array(item))
        for endpoint_id in finished:
            self._on_finished(endpoint_id)

    def _compact(self) -> None:
        """Close the holes stopped streams left, keeping the order of the others."""
        count = self._count
        alive = [row for row in range(count) if self._endpoints[row] is not None]
        keep = np.asarray(alive, dtype=np.intp)
        for name in self._ROW_ARRAYS:
            array = getattr(self, name)
            array[: keep.size] = array[keep]
        self._endpoints[: keep.size] = [self._endpoints[row] for row in alive]
        self._playbacks[: keep.size] = [self._playbacks[row] for row in alive]
        self._item_of[: keep.size] = [self._item_of[row] for row in alive]
        for row in range(keep.size, count):
            self._endpoints[row] = None
            self._playbacks[row] = None
        self._count = keep.size
        self._dead = 0
        self._row_of = {}
        for group in self._groups.values():
            group.rows.clear()
            group.index = None
        for row in range(keep.size):
            endpoint = self._endpoints[row]
            assert endpoint is not None
            self._row_of[endpoint.endpoint_id] = row
            self._groups[self._item_of[row]].rows.add(row)

    def _leave_group(self, row: int) -> None:
        group = self._groups.get(self._item_of[row])
        if group is None:
            return
        group.rows.discard(row)
        group.index = None
        if not group.rows:
            del self._groups[self._item_of[row]]

    def _set_item(self, row: int, frames: FrameArray) -> None:
        """Start ``row`` on the first frame of ``frames``."""
        self._leave_group(row)
        key = id(frames)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(frames)
        group.rows.add(row)
        group.index = None
        self._item_of[row] = key
        self._position[row] = 0
        self._length[row] = len(frames)

    def _settle(self, row: int) -> bool:
        """Write ``row``'s position into its OutStream, as of the packets sent.

        :returns: whether the next packet of the stream is still due the marker bit.
        """
        endpoint = self._endpoints[row]
        marker = bool(self._marker[row])
        if endpoint is None:
            return marker
        sequence = int(self._sequence[row])
        last = int(self._last_tick[row])
        sent = int(self._sent[row])
        if (
            self._tick != NO_TICK
            and last == self._tick
            and not self._phase_sent[int(self._phase[row])]
        ):
            # built for this tick, not sent yet: not part of the stream so far
            sequence = (sequence - 1) & SEQ_MASK
            last = int(self._previous_tick[row])
            sent -= 1
            marker = marker or bool(self._packets["second"][row] & MARKER_BIT)
        out = endpoint.out
        if last != NO_TICK:
            out.seq = sequence
            out.ts = (
                int(
                    self._base_ts[row]
                    + (last - int(self._base_tick[row])) * SAMPLES_PER_FRAME
                )
                & TS_MASK
            )
            out.time = self._when - (self._tick - last) * TICK_INTERVAL
            out.samples = SAMPLES_PER_FRAME
        out.packets += sent
        out.octets += sent * PACKET_SIZE
        self._sent[row] -= sent
        return marker

    def _unsend(self, row: int) -> None:
        """The row's packet of the current tick did not leave: take it back."""
        self._sequence[row] = (int(self._sequence[row]) - 1) & SEQ_MASK
        self._sent[row] -= 1
        self._last_tick[row] = self._previous_tick[row]
        if self._packets["second"][row] & MARKER_BIT:
            self._marker[row] = True
        self.skipped_sends += 1
