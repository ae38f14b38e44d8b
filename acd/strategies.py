"""Routing strategies: pure rankers of candidate agents, loaded as plug-ins.

A :class:`Strategy` is data plus two pure functions. ``rank(call, candidate, now)``
returns a sort key (lowest is offered first); ``eligible(call, candidate, now)`` may
hold a candidate back (skills not good enough yet, a penalty tier not open yet). The
distributor builds the :class:`WaitingCall` and :class:`Candidate` snapshots, so a
strategy sees no mutable state and no clock but ``now``. Every built-in key starts
with the member's penalty: a lower tier is always preferred.

Strategies are found through the entry point group :data:`ENTRY_POINT_GROUP`; a
package that declares ``[project.entry-points."ccswitch.acd.strategies"]
my-rule = "mypkg:STRATEGY"`` adds ``strategy = "my-rule"`` to the configuration
without any change here. The built-ins are declared the same way in pyproject.toml.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ccswitch.acd.strategies"
#: The lowest skill level a widened requirement drops to before it is dropped.
SKILL_LEVEL_MIN = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class WaitingCall:
    """What a strategy knows about the call being placed."""

    caller_id: str
    queue: str
    priority: int
    waited: float
    skills: Mapping[str, int] = field(default_factory=dict)
    language: str = ""
    widen_after: float = 0.0
    tier_after: float = 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Candidate:
    """A free agent who is a member of the call's queue."""

    name: str
    penalty: int
    skills: Mapping[str, int]
    idle_since: float
    last_offered: float
    calls_taken: int
    talk_time: float


SortKey = tuple[float, ...]
Ranker = Callable[[WaitingCall, Candidate, float], SortKey]
Filter = Callable[[WaitingCall, Candidate, float], bool]


def _always(call: WaitingCall, candidate: Candidate, now: float) -> bool:
    return True


@dataclass(frozen=True, kw_only=True, slots=True)
class Strategy:
    """A routing strategy.

    :param rank: (call, candidate, now) -> sort key, lowest offered first.
    :param eligible: (call, candidate, now) -> may this candidate take it now.
    :param ring_all: offer to every eligible candidate of the best key at once.
    """

    name: str
    rank: Ranker
    eligible: Filter = _always
    ring_all: bool = False


# -- skills ----------------------------------------------------------------------


def required_skills(call: WaitingCall) -> dict[str, int]:
    """The skill levels still required after widening for the time waited.

    Every ``widen_after`` seconds each required level drops by one; a requirement
    that would drop below :data:`SKILL_LEVEL_MIN` is dropped (any agent qualifies).
    """
    steps = int(call.waited // call.widen_after) if call.widen_after > 0 else 0
    required = {}
    for skill, level in call.skills.items():
        if level - steps >= SKILL_LEVEL_MIN:
            required[skill] = level - steps
    return required


def has_skills(call: WaitingCall, candidate: Candidate, now: float) -> bool:
    return all(
        candidate.skills.get(skill, 0) >= level
        for skill, level in required_skills(call).items()
    )


def _skill_score(call: WaitingCall, candidate: Candidate) -> float:
    return float(sum(candidate.skills.get(skill, 0) for skill in call.skills))


# -- the built-in rankers (penalty first, always) --------------------------------


def _longest_idle(call: WaitingCall, candidate: Candidate, now: float) -> SortKey:
    return (candidate.penalty, candidate.idle_since)


def _round_robin(call: WaitingCall, candidate: Candidate, now: float) -> SortKey:
    return (candidate.penalty, candidate.last_offered)


def _fewest_calls(call: WaitingCall, candidate: Candidate, now: float) -> SortKey:
    return (candidate.penalty, candidate.calls_taken, candidate.idle_since)


def _least_talk(call: WaitingCall, candidate: Candidate, now: float) -> SortKey:
    return (candidate.penalty, candidate.talk_time, candidate.idle_since)


def _ring_all(call: WaitingCall, candidate: Candidate, now: float) -> SortKey:
    return (candidate.penalty,)


def _skills(call: WaitingCall, candidate: Candidate, now: float) -> SortKey:
    # Best match first; among equals the longest idle.
    return (candidate.penalty, -_skill_score(call, candidate), candidate.idle_since)


def _tier_open(call: WaitingCall, candidate: Candidate, now: float) -> bool:
    """Penalty tier N opens after N * ``tier_after`` seconds of waiting."""
    if call.tier_after <= 0:
        return True
    return call.waited >= candidate.penalty * call.tier_after


LONGEST_IDLE = Strategy(name="longest-idle", rank=_longest_idle)
ROUND_ROBIN = Strategy(name="round-robin", rank=_round_robin)
FEWEST_CALLS = Strategy(name="fewest-calls", rank=_fewest_calls)
LEAST_TALK_TIME = Strategy(name="least-talk-time", rank=_least_talk)
RING_ALL = Strategy(name="ring-all", rank=_ring_all, ring_all=True)
SKILLS = Strategy(name="skills", rank=_skills, eligible=has_skills)
PENALTY_TIERS = Strategy(name="penalty-tiers", rank=_longest_idle, eligible=_tier_open)

BUILTIN: dict[str, Strategy] = {
    s.name: s
    for s in (
        LONGEST_IDLE,
        ROUND_ROBIN,
        FEWEST_CALLS,
        LEAST_TALK_TIME,
        RING_ALL,
        SKILLS,
        PENALTY_TIERS,
    )
}


class StrategyError(Exception):
    """A configured strategy name has no entry point, or it is not a Strategy."""


def load_strategies() -> dict[str, Strategy]:
    """Every strategy registered under :data:`ENTRY_POINT_GROUP`, by name.

    The built-ins are declared there too; when the package metadata is older than
    this module (an editable install not yet re-installed) they are added from
    :data:`BUILTIN`, with a DEBUG line.
    """
    found: dict[str, Strategy] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        loaded = point.load()
        if not isinstance(loaded, Strategy):
            raise StrategyError(
                f"entry point {point.name} ({point.value}) is not an acd Strategy"
            )
        found[point.name] = loaded
    for name, strategy in BUILTIN.items():
        if name not in found:
            logger.debug("strategy %s not in package metadata; using built-in", name)
            found[name] = strategy
    return found
