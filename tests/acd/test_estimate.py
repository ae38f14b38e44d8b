"""EWT: the formula, and its error against a discrete-event simulation.

The simulation (acd/simulate.py) runs the real distributor on a simulated clock;
the errors are reported by ``bench/acd.py`` and here only compared with each
other: the position-aware EWT must beat the average past hold time that other
systems announce, at every load tried, with exponential and heavy-tailed talk.
"""

from __future__ import annotations

import pytest

from acd.estimate import AverageHoldTime, HandleTimes, expected_wait
from acd.simulate import simulate


def test_formula() -> None:
    assert expected_wait(position=1, staffed=0, free=0, handle_time=100) is None
    assert expected_wait(position=1, staffed=2, free=1, handle_time=100) == 0.0
    assert expected_wait(position=5, staffed=2, free=0, handle_time=100) == 250.0
    assert expected_wait(position=5, staffed=4, free=1, handle_time=100) == 100.0


def test_handle_times_window_and_default() -> None:
    times = HandleTimes(default=60.0, samples=3)
    assert times.mean == 60.0
    for value in (10.0, 20.0, 30.0, 40.0):
        times.add(value)
    assert times.mean == 30.0
    naive = AverageHoldTime()
    assert naive.estimate == 0.0
    naive.add(10.0)
    naive.add(30.0)
    assert naive.estimate == 20.0


@pytest.mark.parametrize(
    ("agents", "load", "lognormal"),
    [(5, 0.95, False), (5, 0.85, True), (10, 0.9, False), (3, 0.8, True)],
)
def test_ewt_beats_average_hold_time_in_simulation(
    agents: int, load: float, lognormal: bool
) -> None:
    handle = 120.0
    result = simulate(
        agents=agents,
        arrival_rate=load * agents / handle,
        handle_time=handle,
        seconds=6 * 3600,
        seed=7,
        lognormal=lognormal,
    )
    assert result.answered > 400
    assert result.violations == 0
    assert result.ewt_mean_abs_error < result.hold_time_mean_abs_error, result
    # Every simulated caller got exactly one outcome (no patience: all answered).
    assert result.stats.answered == result.callers
