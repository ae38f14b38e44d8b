"""A discrete-event simulation of one queue driven through the real distributor.

Callers arrive as a Poisson process, agents answer every offer after a fixed ring
delay, talk for an exponential (or log-normal) handle time and wrap up; callers may
abandon after an exponential patience. Time is the simulation clock passed as
``now``, so the run is exact and repeatable for a seed. For every caller the EWT
announced at entry (:mod:`acd.estimate`) and the naive average past hold time are
kept next to the wait that actually followed: :func:`simulate` reports both errors,
the queue statistics and the distributor's decision time per call.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from dataclasses import dataclass, field

from acd.agent import Agent, Membership
from acd.distributor import Distributor, Offer
from acd.queue import QueueSettings
from acd.stats import QueueStats, queue_stats
from acd.strategies import load_strategies

QUEUE = "sim"


@dataclass(frozen=True, kw_only=True, slots=True)
class SimulationResult:
    callers: int
    answered: int
    ewt_mean_abs_error: float
    hold_time_mean_abs_error: float
    stats: QueueStats
    decision_seconds_per_call: float
    errors: list[tuple[float, float, float]] = field(default_factory=list)
    violations: int = 0


def simulate(
    *,
    agents: int,
    arrival_rate: float,
    handle_time: float,
    seconds: float,
    seed: int = 1,
    wrap_up: float = 0.0,
    ring_delay: float = 0.0,
    patience: float = 0.0,
    lognormal: bool = False,
    strategy: str = "longest-idle",
) -> SimulationResult:
    """Run the simulation; ``patience`` 0 means nobody abandons.

    :param arrival_rate: callers per second.
    :param handle_time: mean talk time in seconds.
    """
    rng = random.Random(seed)
    settings = QueueSettings(name=QUEUE, strategy=strategy, wrap_up=wrap_up)
    members = [
        Agent(name=f"a{i}", users=(f"u{i}",), memberships=(Membership(queue=QUEUE),))
        for i in range(agents)
    ]
    acd = Distributor(queues=[settings], agents=members, strategies=load_strategies())
    acd.handle_times[QUEUE].default = handle_time + wrap_up
    for agent in members:
        acd.registered(agent.users[0], True, 0.0)
        acd.login(agent.name, 0.0)

    events: list[tuple[float, int, str, str, str]] = []
    order = itertools.count()

    def at(when: float, kind: str, caller: str, agent: str = "") -> None:
        heapq.heappush(events, (when, next(order), kind, caller, agent))

    def talk() -> float:
        if lognormal:  # same mean, heavier tail
            sigma = 0.8
            return rng.lognormvariate(math.log(handle_time) - sigma**2 / 2, sigma)
        return rng.expovariate(1.0 / handle_time)

    at(rng.expovariate(arrival_rate), "arrive", "")
    estimates: dict[str, tuple[float, float]] = {}
    entered: dict[str, float] = {}
    errors: list[tuple[float, float, float]] = []
    decision = 0.0
    count = 0
    violations = 0
    wakes: set[float] = set()
    while events:
        now, _, kind, caller, agent_name = heapq.heappop(events)
        if kind == "arrive":
            if now >= seconds:
                continue
            count += 1
            caller = f"c{count}"
            started = time.perf_counter()
            position = len(acd.queued(QUEUE)) + 1
            ewt = acd.expected_wait(QUEUE, position, now) or 0.0
            acd.enter(caller, QUEUE, now)
            decision += time.perf_counter() - started
            estimates[caller] = (ewt, acd.hold_times[QUEUE].estimate)
            entered[caller] = now
            at(now + rng.expovariate(arrival_rate), "arrive", "")
            if patience > 0:
                at(now + rng.expovariate(1.0 / patience), "abandon", caller)
        elif kind == "answer":
            if acd.answered(caller, agent_name, now):
                ewt, naive = estimates.pop(caller)
                actual = now - entered[caller]
                errors.append((ewt, naive, actual))
                at(now + talk(), "hangup", caller)
        elif kind == "hangup":
            acd.hangup(caller, now)
        elif kind == "abandon":
            if caller in acd.callers and acd.callers[caller].state.value == "waiting":
                acd.abandon(caller, now)
        elif kind == "wake":
            pass
        started = time.perf_counter()
        actions = acd.poll(now)
        decision += time.perf_counter() - started
        violations += len(acd.violations()) if count % 50 == 0 else 0
        for action in actions:
            if isinstance(action, Offer):
                at(now + ring_delay, "answer", action.caller_id, action.agents[0])
        deadline = acd.next_deadline(now)
        if deadline is not None and deadline > now and deadline not in wakes:
            wakes.add(deadline)
            at(deadline, "wake", "")
    answered = len(errors)
    ewt_error = sum(abs(e - a) for e, _, a in errors) / max(answered, 1)
    naive_error = sum(abs(n - a) for _, n, a in errors) / max(answered, 1)
    return SimulationResult(
        callers=count,
        answered=answered,
        ewt_mean_abs_error=ewt_error,
        hold_time_mean_abs_error=naive_error,
        stats=queue_stats(
            acd.records, start=0.0, end=math.inf, service_level=20.0, queue=QUEUE
        ),
        decision_seconds_per_call=decision / max(count, 1),
        errors=errors,
        violations=violations,
    )
