"""Queues and the callers waiting in them, ordered by priority then arrival.

A :class:`Caller` keeps the ``arrival`` time of their first queue when moved to
another one, so nobody jumps ahead by being transferred. A virtual caller (a callback
request) waits like any other and counts in position announcements, but has no live
call: when their turn comes an agent is reserved and the customer is dialled. The
ordering key is ``(-priority, arrival, sequence)``; the sequence number breaks ties
between callers entering at the same instant, in the order they entered.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class CallerState(enum.Enum):
    """Where a caller is in the queue's life cycle."""

    WAITING = "waiting"
    OFFERED = "offered"  # an agent (or several, ring all) is reserved for them
    CONNECTED = "connected"
    GONE = "gone"


class LeaveReason(enum.Enum):
    """Why a caller left a queue: each caller gets exactly one (the outcome)."""

    CONNECTED = "connect"
    ABANDONED = "abandon"
    TIMEOUT = "exit_timeout"
    ADMISSION = "exit_admission"
    EXIT_KEY = "exit_key"
    TRANSFERRED = "transfer"
    CALLBACK_COMPLETED = "callback_completed"
    CALLBACK_FAILED = "callback_failed"


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueSettings:
    """One queue's configuration (``[[queues]]``).

    :param strategy: a name from the ``ccswitch.acd.strategies`` entry points.
    :param wrap_up: seconds of wrap-up after each call (an agent's own value wins).
    :param ring_timeout: seconds an agent may ring before ring-no-answer.
    :param max_wait: seconds before a waiting caller leaves by timeout (0: never).
    :param service_level: the answer-time target in seconds (service level stats).
    :param join_empty: admit callers when no agent is logged in.
    :param announce_interval: seconds between position announcements (0: none).
    :param exit_key: a key that leaves the queue for ``exit_destination`` ("": none).
    :param skills: skills every caller of this queue needs, name -> minimum level.
    :param widen_after: seconds of waiting after which required skill levels drop
        by one (0: never widen), down to level 1.
    :param tier_after: seconds of waiting after which the next penalty tier joins
        (the ``penalty-tiers`` strategy; 0: all tiers at once).
    :param callback_retries: dial attempts for a callback before giving up.
    :param callback_retry_interval: seconds between callback attempts.
    """

    name: str
    strategy: str = "longest-idle"
    wrap_up: float = 0.0
    ring_timeout: float = 15.0
    max_wait: float = 0.0
    service_level: float = 20.0
    join_empty: bool = False
    announce_interval: float = 30.0
    exit_key: str = ""
    exit_destination: str = ""
    skills: tuple[tuple[str, int], ...] = ()
    widen_after: float = 0.0
    tier_after: float = 0.0
    callback_retries: int = 3
    callback_retry_interval: float = 60.0


@dataclass(kw_only=True, slots=True)
class Caller:
    """One caller (or virtual callback caller) in a queue.

    :param caller_id: unique id (the switch's call id, or ``cb-...`` for callbacks).
    :param arrival: when they first entered any queue (kept across transfers).
    :param entered: when they entered this queue.
    :param skills: skill name -> minimum level this call needs.
    :param callback_number: set for a virtual caller: the number to dial back.
    :param calling_agent: the agent placing the call from their own phone, who is
        never offered it.
    """

    caller_id: str
    queue: str
    arrival: float
    entered: float
    sequence: int
    priority: int = 0
    skills: dict[str, int] = field(default_factory=dict)
    language: str = ""
    number: str = ""
    callback_number: str | None = None
    # The agent whose own phone placed this call (an agent dialling a queue to test
    # it, or by mistake): never offered it, or their phone would ring for itself.
    calling_agent: str = ""
    state: CallerState = CallerState.WAITING
    agents: tuple[str, ...] = ()  # reserved while OFFERED; the one while CONNECTED
    offered_at: float = 0.0
    connected_at: float = 0.0
    attempts: int = 0  # callback dial attempts made
    not_before: float = 0.0  # a callback waits until its retry time

    @property
    def virtual(self) -> bool:
        return self.callback_number is not None

    def order(self) -> tuple[int, float, int]:
        """The queue ordering key: priority (high first), arrival, entry sequence."""
        return (-self.priority, self.arrival, self.sequence)

    def waited(self, now: float) -> float:
        """Seconds since entering this queue."""
        return max(0.0, now - self.entered)
