"""How a media worker process asks the scheduler to run it first.

Kept apart from :mod:`media.workers` (which loads the engine and numpy) so that the
benchmark's bare forwarder can ask for the same priority at the cost of ``os`` alone.
"""

from __future__ import annotations

import os

from media.commands import PRIORITIES

__all__ = ["PRIORITIES", "WORKER_NICE", "WORKER_RT_PRIORITY", "raise_priority"]

# How a worker asks the scheduler to run it first: it sleeps between 20 ms ticks and
# must run the moment its timer fires, or every stream it plays goes out late, while
# signalling can wait a few ms.  FreeSWITCH's packaged service runs it round-robin
# real-time for the same reason; Asterisk's -p does the same.
#
# * ``realtime``: SCHED_RR at :data:`WORKER_RT_PRIORITY` (a worker preempts every
#   ordinary process the moment it wakes; the kernel's RT throttling still keeps 5 %
#   of each core for the rest), falling back to ``high`` without CAP_SYS_NICE;
# * ``high``: niceness :data:`WORKER_NICE`, a larger share when the cores are full
#   but no preemption (measured in bench/busy_hour: played jitter p99 25 ms at 1200
#   legs on two full cores, against 2 ms with ``realtime``);
# * ``normal``: the switch's own priority.
WORKER_RT_PRIORITY = 10
WORKER_NICE = -10


def raise_priority(wanted: str) -> str:
    """Ask for ``wanted`` (one of :data:`PRIORITIES`); return what was granted.

    Without CAP_SYS_NICE (or an RLIMIT_RTPRIO) each step falls back to the next, so a
    switch run by an ordinary user still starts, at its own priority.
    """
    if wanted == "realtime":
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(WORKER_RT_PRIORITY))
        except (OSError, AttributeError):  # AttributeError: not Linux
            wanted = "high"
        else:
            return "realtime"
    if wanted == "high":
        try:
            os.setpriority(os.PRIO_PROCESS, 0, WORKER_NICE)
        except OSError:
            return "normal"
        return "high"
    return "normal"
