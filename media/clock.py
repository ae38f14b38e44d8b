"""The media clock: one 20 ms schedule for every endpoint of an engine.

Everything the engine generates or processes per packet time (players, mixers, recorders,
RTP timeouts) runs from one tick callback, so 1000 endpoints cost 50 timer wake-ups a
second instead of 50 000, and every stream it sends is in step.

Theory of operation: tick ``n`` is due at ``origin + n * interval`` where ``origin`` is
fixed when the clock is created, so lateness never accumulates into drift (a
``sleep(0.02)`` loop drifts by its own wake-up latency every tick).  Each wake-up runs the
ticks that are due, oldest first, at most ``max_catchup`` of them; if the loop was
stalled for longer than that, the older ticks are skipped and counted instead of sent as
a burst that would overflow the phones' jitter buffers.  The tick callback receives the
tick number and its scheduled time (not the wake-up time), so RTP timestamps derived
from it advance by exactly one frame per tick.  Wake-ups use ``loop.call_at`` on the
loop's own clock.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

logger = logging.getLogger(__name__)

# RFC 3551 section 4.2: the default packetisation interval for audio is 20 ms.
TICK_INTERVAL = 0.020
# Ticks run back to back after a stall before older ones are skipped (100 ms of audio).
MAX_CATCHUP_TICKS = 5
# A wake-up this early still runs its tick (uvloop timers have 1 ms resolution), instead
# of spinning on zero-delay timers until the deadline passes.
EARLY_TOLERANCE = 0.0005

TickCallback = Callable[[int, float], None]


class MediaClock:
    """Calls ``on_tick(tick, scheduled_time)`` every ``interval`` seconds while running.

    :param loop: the event loop whose ``time()`` and ``call_at`` drive the clock.
    :param on_tick: called once per tick with the tick number and its scheduled time.
    :param interval: seconds between ticks.
    :param max_catchup: ticks run per wake-up at most; older overdue ticks are skipped.
    """

    __slots__ = (
        "_handle",
        "_loop",
        "_next",
        "_on_tick",
        "_running",
        "interval",
        "max_catchup",
        "max_lateness",
        "origin",
        "skipped",
        "ticks",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_tick: TickCallback,
        *,
        interval: float = TICK_INTERVAL,
        max_catchup: int = MAX_CATCHUP_TICKS,
    ) -> None:
        if interval <= 0 or max_catchup < 1:
            raise ValueError("interval must be > 0 and max_catchup >= 1")
        self._loop = loop
        self._on_tick = on_tick
        self.interval = interval
        self.max_catchup = max_catchup
        self.origin = loop.time()
        self._next = 1
        self._handle: asyncio.TimerHandle | None = None
        self._running = False
        self.ticks = 0  # ticks run
        self.skipped = 0  # ticks skipped after a stall
        self.max_lateness = 0.0  # worst wake-up delay past a deadline, seconds

    @property
    def running(self) -> bool:
        """Whether the clock is ticking."""
        return self._running

    def deadline(self, tick: int) -> float:
        """The scheduled time of ``tick`` on the loop's clock."""
        return self.origin + tick * self.interval

    def start(self) -> None:
        """Schedule the next due tick; a restarted clock keeps its origin."""
        if self._running:
            return
        self._running = True
        now = self._loop.time()
        due = math.floor((now - self.origin) / self.interval)
        self._next = max(self._next, due + 1)
        self._handle = self._loop.call_at(self.deadline(self._next), self._wake)

    def stop(self) -> None:
        """Cancel the scheduled wake-up (also from inside a tick callback)."""
        self._running = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _wake(self) -> None:
        now = self._loop.time()
        due = math.floor((now + EARLY_TOLERANCE - self.origin) / self.interval)
        lateness = now - self.deadline(self._next)
        if lateness > self.max_lateness:
            self.max_lateness = lateness

        # stalled for longer than the catch-up limit: skip the oldest ticks
        if due - self._next >= self.max_catchup:
            first = due - self.max_catchup + 1
            self.skipped += first - self._next
            logger.debug("media clock skipped %d ticks", first - self._next)
            self._next = first

        self._handle = None
        try:
            while self._next <= due and self._running:
                tick = self._next
                self._next += 1
                self.ticks += 1
                self._on_tick(tick, self.deadline(tick))
        finally:
            # stop() from inside a tick callback wins over rescheduling
            if self._running:
                self._handle = self._loop.call_at(self.deadline(self._next), self._wake)
