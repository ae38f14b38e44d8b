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
from it advance by exactly one frame per tick.

Wake-ups use ``call_at`` of a :class:`Scheduler`: the event loop itself, or on Linux a
:class:`TimerFd`.  uvloop keeps time in whole milliseconds (libuv's ``uv_now``), so a
``loop.call_at`` fires anywhere up to a millisecond after its deadline (0.6 ms late on
average, 1.1 ms at p99 on the project's machine), which alone would use up half of a
2 ms send-jitter budget.  A timerfd armed with the absolute deadline on
``CLOCK_MONOTONIC`` (the clock of ``time.monotonic``) makes the loop's poll return at
the deadline itself, to within the scheduler's wake-up latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import heapq
import itertools
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

logger = logging.getLogger(__name__)

# RFC 3551 section 4.2: the default packetisation interval for audio is 20 ms.
TICK_INTERVAL = 0.020
# Ticks run back to back after a stall before older ones are skipped (100 ms of audio).
MAX_CATCHUP_TICKS = 5
# A wake-up this early still runs its tick (uvloop timers have 1 ms resolution), instead
# of spinning on zero-delay timers until the deadline passes.
EARLY_TOLERANCE = 0.0005
# A wake-up later than this (a whole frame) counts in ``late_wakeups``: the streams
# then go out late enough for phones to notice, and the switch sheds new calls when
# it keeps happening (switch/overload.py). A few ms late is a shared box's noise.
LATE_WAKEUP = 0.020

# <sys/timerfd.h>, <time.h>
CLOCK_MONOTONIC = 1
TFD_TIMER_ABSTIME = 1
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = os.O_CLOEXEC
NANOSECONDS = 1_000_000_000

TickCallback = Callable[[int, float], None]


class Cancellable(Protocol):
    """A scheduled call (an ``asyncio.TimerHandle`` or a :class:`TimerFdHandle`)."""

    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """What the clock needs of an event loop: a clock and absolute-time calls."""

    def time(self) -> float: ...

    def call_at(
        self, when: float, callback: Callable[..., object], *args: Any
    ) -> Cancellable: ...


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class TimerFdHandle:
    """A call scheduled on a :class:`TimerFd`."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(
        self, when: float, callback: Callable[..., object], args: tuple[Any, ...]
    ) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        """The call will not be made."""
        self.cancelled = True


class TimerFd:
    """``call_at`` on ``time.monotonic`` with nanosecond deadlines (Linux).

    One timerfd, armed for the earliest pending call with an absolute
    ``CLOCK_MONOTONIC`` deadline and watched by ``loop.add_reader``; due calls run in
    deadline order.

    :param loop: the loop whose reader runs the calls.
    :raises OSError: when timerfds are not available (not Linux, no libc symbol).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        if not sys.platform.startswith("linux"):
            raise OSError("timerfd is Linux only")
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        try:
            create, self._settime = libc.timerfd_create, libc.timerfd_settime
        except AttributeError:
            raise OSError("libc has no timerfd") from None
        create.argtypes = [ctypes.c_int, ctypes.c_int]
        self._settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        ]
        fd = create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
        self._fd: int | None = fd
        self._loop = loop
        self._spec = _Itimerspec()
        self._spec_ref = ctypes.byref(self._spec)
        self._heap: list[tuple[float, int, TimerFdHandle]] = []
        self._order = itertools.count()
        self._armed: float | None = None
        self.wakeups = 0
        loop.add_reader(fd, self._on_ready)

    def time(self) -> float:
        """The clock deadlines are on: ``time.monotonic``."""
        return time.monotonic()

    def call_at(
        self, when: float, callback: Callable[..., object], *args: Any
    ) -> TimerFdHandle:
        """Call ``callback(*args)`` once ``time.monotonic()`` reaches ``when``."""
        handle = TimerFdHandle(when, callback, args)
        heapq.heappush(self._heap, (when, next(self._order), handle))
        if self._armed is None or when < self._armed:
            self._arm(when)
        return handle

    def close(self) -> None:
        """Stop watching and close the timerfd; pending calls are dropped."""
        if self._fd is None:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = None
        self._heap.clear()

    def _arm(self, when: float) -> None:
        if self._fd is None:
            return
        nanoseconds = max(int(when * NANOSECONDS), 1)  # all zero would disarm it
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(nanoseconds, NANOSECONDS)
        if self._settime(self._fd, TFD_TIMER_ABSTIME, self._spec_ref, None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
        self._armed = when

    def _on_ready(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(BlockingIOError):  # another reader got there first
            os.read(self._fd, 8)  # the expiration count; reading re-arms the poll
        self.wakeups += 1
        self._armed = None
        heap = self._heap
        now = time.monotonic()
        try:
            while heap and heap[0][0] <= now:
                handle = heapq.heappop(heap)[2]
                if not handle.cancelled:
                    handle.callback(*handle.args)
        finally:  # a failing callback must not stop the clock
            self._arm_earliest()

    def _arm_earliest(self) -> None:
        """Arm for the earliest pending call unless a callback already did."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        if heap and (self._armed is None or heap[0][0] < self._armed):
            self._arm(heap[0][0])


def precise_scheduler(loop: asyncio.AbstractEventLoop) -> Scheduler:
    """A :class:`TimerFd` where the platform has one, else the loop itself."""
    try:
        return TimerFd(loop)
    except OSError as exc:
        logger.info("no timerfd (%s): media clock on loop.call_at", exc)
        return loop


class MediaClock:
    """Calls ``on_tick(tick, scheduled_time)`` every ``interval`` seconds while running.

    :param loop: the event loop (or a :class:`TimerFd`) whose ``time()`` and
        ``call_at`` drive the clock.
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
        "late_wakeups",
        "max_catchup",
        "max_lateness",
        "origin",
        "skipped",
        "ticks",
    )

    def __init__(
        self,
        loop: Scheduler,
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
        self._handle: Cancellable | None = None
        self._running = False
        self.ticks = 0  # ticks run
        self.skipped = 0  # ticks skipped after a stall
        self.max_lateness = 0.0  # worst wake-up delay past a deadline, seconds
        self.late_wakeups = 0  # wake-ups more than LATE_WAKEUP past their deadline

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
        if lateness > LATE_WAKEUP:
            self.late_wakeups += 1

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
