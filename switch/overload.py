"""Overload protection: shed new calls before the calls in progress degrade.

A switch past its capacity does not fail gracefully by itself: every stream's packets
go out a little later, every call's audio gets choppy, and SIP retransmissions add
load just when there is none to spare. So the B2BUA asks this guard before it admits
a new call, and refuses it with 503 and Retry-After (RFC 3261 section 21.5.4; a
trunk then tries its next route or later) while the guard says the switch is
overloaded; established calls are never touched.

Three signals, each with its own threshold (``[limits] shed_*``, 0 turns one off):

* a media engine process used ``cpu`` of its core, two seconds in a row
  (:class:`~media.commands.EngineLoad` ``busy``; only meaningful for worker
  processes, where the engine has the process to itself);
* a media engine's 20 ms clock woke a whole frame (20 ms) late ``late_ticks`` times
  a second, two seconds in a row, or skipped that many ticks after a stall: its
  streams are late enough for the phones' jitter buffers to notice;
* the signalling process's event loop ran ``lag`` seconds late twice in a row: SIP
  is queueing. One late sample alone is a pause that was over when it was measured
  (a garbage collection, the process waiting for a core), not an overload: one such
  pause of 0.6 s once shed 62 calls in a busy-hour run that had room for them.

Each bad report keeps new calls shed for ``hold`` seconds more, so that the switch
does not flap between admitting a burst and refusing it; reports older than that are
forgotten (an engine with no endpoints stops its clock and its reports).

The guard is sans-IO like the SIP core (reports and ``now`` in, a reason or None
out); :func:`watch_loop_lag` is the small task that measures the loop for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from media.commands import EngineLoad

logger = logging.getLogger(__name__)

# Seconds a bad report keeps new calls shed.
HOLD_SECONDS = 3.0
# Bad reports in a row (from one worker, or of the loop's lag) before calls are shed.
SUSTAINED_REPORTS = 2


@dataclass(frozen=True, kw_only=True, slots=True)
class Thresholds:
    """When the switch counts as overloaded; 0 turns a test off.

    :param cpu: share of one core (0-1) a media worker process may use.
    :param late_ticks: late media clock wake-ups per second.
    :param lag: seconds the signalling event loop may run late.
    """

    cpu: float = 0.9
    late_ticks: int = 5
    lag: float = 0.5


class OverloadGuard:
    """Whether new calls are to be shed now, and why."""

    def __init__(
        self, thresholds: Thresholds = Thresholds(), *, hold: float = HOLD_SECONDS
    ) -> None:
        self.thresholds = thresholds
        self.hold = hold
        self.shed_until = float("-inf")
        self.why = ""
        self.shed_calls = 0  # INVITEs refused while overloaded
        self.episodes = 0  # times shedding started
        self._shedding = False
        self._bad: dict[int, int] = {}  # worker -> bad reports in a row
        self._late_loop = 0  # late loop samples in a row

    def on_load(self, load: EngineLoad, now: float) -> None:
        """A media engine's once-a-second report.

        A stall (skipped ticks) trips at once; CPU or late ticks only when the
        worker's report before was bad too, so that one noisy second on a shared
        box (a neighbour's burst, a page fault storm) refuses nobody.
        """
        limits = self.thresholds
        why = self._judge(load)
        if why is None:
            self._bad.pop(load.worker, None)
            return
        run = self._bad[load.worker] = self._bad.get(load.worker, 0) + 1
        stalled = limits.late_ticks and load.skipped_ticks >= limits.late_ticks
        if stalled or run >= SUSTAINED_REPORTS:
            self._trip(now, why)

    def _judge(self, load: EngineLoad) -> str | None:
        limits = self.thresholds
        late = load.late_ticks + load.skipped_ticks  # a skipped tick is the worst late
        if limits.cpu and load.busy >= limits.cpu:
            return f"media worker {load.worker} at {load.busy:.0%} of a core"
        if limits.late_ticks and late >= limits.late_ticks:
            return f"media worker {load.worker}: {late} late clock ticks/s"
        return None

    def on_lag(self, lag: float, now: float) -> None:
        """How late the signalling loop ran a timer it set (seconds); sheds when the
        sample before was late too (see the module doc)."""
        if not self.thresholds.lag or lag < self.thresholds.lag:
            self._late_loop = 0
            return
        self._late_loop += 1
        if self._late_loop >= SUSTAINED_REPORTS:
            self._trip(now, f"signalling loop {lag * 1000:.0f} ms late")

    def reason(self, now: float) -> str | None:
        """Why a new call is to be refused now, or None to admit it."""
        if now < self.shed_until:
            self.shed_calls += 1
            return self.why
        if self._shedding:
            self._shedding = False
            logger.warning(
                "overload over: admitting new calls again (%d refused)", self.shed_calls
            )
        return None

    def _trip(self, now: float, why: str) -> None:
        if not self._shedding:
            self._shedding = True
            self.episodes += 1
            logger.warning("overload: shedding new calls with 503 (%s)", why)
        self.why = why
        self.shed_until = max(self.shed_until, now + self.hold)


async def watch_loop_lag(guard: OverloadGuard, interval: float = 0.1) -> None:
    """Tell ``guard`` how late this event loop runs a timer, every ``interval``
    seconds, until cancelled: a loop busy with more SIP than it can handle wakes
    late, whatever it is busy with."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        now = loop.time()
        guard.on_lag(now - due, time.monotonic())
