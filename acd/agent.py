"""Agents: the people who take queue calls, as two orthogonal enums and timestamps.

An agent's *status* is their intent (logged out, available, on break with a reason);
their *state* is what they are doing (idle, reserved for a call, ringing, talking, in
wrap-up). The two are independent: an agent on break can still be talking (they asked
for a break during a call and get it when the call ends), and an agent logs out only
when idle. Wrap-up and "skip" periods are timestamps compared with an injected
``now``: nothing here sleeps or reads a clock, so the distributor and its tests drive
time explicitly.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

#: The break reason set by ring-no-answer (issue 6: the agent goes on break).
NO_ANSWER = "no answer"
#: Seconds a busy or unreachable agent is skipped before being offered again.
SKIP_SECONDS = 10.0


class AgentStatus(enum.Enum):
    """Intent: what the agent wants (changed by login, logout, break)."""

    LOGGED_OUT = "logged out"
    AVAILABLE = "available"
    ON_BREAK = "on break"


class AgentState(enum.Enum):
    """Activity: what the agent is doing (changed by offers and calls)."""

    IDLE = "idle"
    RESERVED = "reserved"
    RINGING = "ringing"
    TALKING = "talking"
    WRAP_UP = "wrap-up"


#: States in which an agent holds exactly one call.
BUSY_STATES = frozenset({AgentState.RESERVED, AgentState.RINGING, AgentState.TALKING})


@dataclass(frozen=True, kw_only=True, slots=True)
class Membership:
    """An agent's membership of one queue; lower ``penalty`` is offered first."""

    queue: str
    penalty: int = 0


@dataclass(kw_only=True, slots=True)
class Agent:
    """One agent and their runtime status and state.

    :param name: the agent's account name (CLI, queue log, events).
    :param users: the SIP users whose phones ring for this agent.
    :param memberships: queues served, with penalty tiers.
    :param skills: skill name -> level (1-10, higher is better).
    :param wrap_up: seconds of wrap-up after each call, overriding the queue's.
    :param auto_login: logged in and available as soon as a phone registers.
    """

    name: str
    users: tuple[str, ...]
    memberships: tuple[Membership, ...] = ()
    skills: dict[str, int] = field(default_factory=dict)
    wrap_up: float | None = None
    auto_login: bool = False
    # Runtime.
    status: AgentStatus = AgentStatus.LOGGED_OUT
    break_reason: str | None = None
    state: AgentState = AgentState.IDLE
    call: str | None = None  # the caller id held while reserved/ringing/talking
    state_since: float = 0.0
    wrap_up_until: float = 0.0
    skip_until: float = 0.0
    idle_since: float = 0.0
    registered: bool = False
    calls_taken: int = 0
    talk_time: float = 0.0
    last_offered: float = 0.0  # round robin offers to the least recently offered

    def penalty(self, queue: str) -> int | None:
        """This agent's penalty in ``queue``, or None if not a member."""
        for membership in self.memberships:
            if membership.queue == queue:
                return membership.penalty
        return None

    def settle(self, now: float) -> None:
        """End a wrap-up whose time is up (a deadline reached at ``now``)."""
        if self.state is AgentState.WRAP_UP and now >= self.wrap_up_until:
            self.set_state(AgentState.IDLE, now)
            self.idle_since = self.wrap_up_until

    def free(self, now: float) -> bool:
        """May be offered a call at ``now``: available, idle, reachable, not skipped.

        A wrap-up whose time is up counts as idle (without changing the state).
        """
        idle = self.state is AgentState.IDLE or (
            self.state is AgentState.WRAP_UP and now >= self.wrap_up_until
        )
        return (
            self.status is AgentStatus.AVAILABLE
            and idle
            and self.call is None
            and self.registered
            and now >= self.skip_until
        )

    def set_state(self, state: AgentState, now: float) -> None:
        logger.debug("agent %s: %s -> %s", self.name, self.state.value, state.value)
        self.state = state
        self.state_since = now

    def set_status(self, status: AgentStatus, now: float, reason: str | None) -> None:
        logger.debug(
            "agent %s: status %s -> %s (%s)",
            self.name,
            self.status.value,
            status.value,
            reason,
        )
        self.status = status
        self.break_reason = reason if status is AgentStatus.ON_BREAK else None
