"""Expected wait time (EWT): from position, staffed agents and recent handle times.

The formula
-----------
For a caller at position ``k`` (1 = next to be served; every caller ahead counts,
virtual callback callers included), with ``N`` staffed agents (logged in and
available, whatever they are doing), ``F`` of them free now, and ``AHT`` the mean
handle time (talk plus wrap-up) of the last :data:`HANDLE_TIME_SAMPLES` calls::

    EWT(k) = max(0, k - F) * AHT / N

When all agents are busy, one of them finishes every ``AHT / N`` seconds on average
(exactly so for exponential handle times, where the time left in a call does not
depend on how long it has run), and the caller needs ``k - F`` such completions. With
no staffed agent the estimate is unknown (``None``).

Other systems announce the *average past hold time*: the mean wait of recently
answered callers (:class:`AverageHoldTime`, Asterisk's ``holdtime``). It ignores the
position, so it is early for the first caller and late for the last;
``tests/acd/test_estimate.py`` measures both against a discrete-event simulation.
"""

from __future__ import annotations

from collections import deque

#: How many recent handle times the mean is taken over.
HANDLE_TIME_SAMPLES = 50
#: The handle time assumed before the first call of a queue completes (seconds).
DEFAULT_HANDLE_TIME = 180.0


class HandleTimes:
    """The recent handle times of one queue.

    :param default: the mean used while no call has completed yet.
    """

    def __init__(
        self,
        *,
        default: float = DEFAULT_HANDLE_TIME,
        samples: int = HANDLE_TIME_SAMPLES,
    ) -> None:
        self.default = default
        self._samples: deque[float] = deque(maxlen=samples)

    def add(self, seconds: float) -> None:
        self._samples.append(max(0.0, seconds))

    @property
    def mean(self) -> float:
        if not self._samples:
            return self.default
        return sum(self._samples) / len(self._samples)


def expected_wait(
    *, position: int, staffed: int, free: int, handle_time: float
) -> float | None:
    """EWT in seconds for ``position`` (1-based); ``None`` with nobody staffed."""
    if staffed <= 0:
        return None
    ahead = max(0, position - free)
    return ahead * handle_time / staffed


class AverageHoldTime:
    """The naive estimate: the mean wait of the last answered callers.

    Kept for comparison (and because some callers expect it): every answered
    caller's wait goes in; the estimate is the same for every position.
    """

    def __init__(self, *, samples: int = HANDLE_TIME_SAMPLES) -> None:
        self._waits: deque[float] = deque(maxlen=samples)

    def add(self, wait: float) -> None:
        self._waits.append(wait)

    @property
    def estimate(self) -> float:
        return sum(self._waits) / len(self._waits) if self._waits else 0.0
