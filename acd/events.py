"""ACD events on the switch's bus: agents' status and state, callers in queues.

Frozen dataclasses on :class:`switch.events.Event`, published by the ACD service
from what the distributor reports; the catalogue is docs/events.md (Queues and
agents). Times are the distributor's ``now`` (epoch seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from switch.events import Event

__all__ = [
    "AgentStateChanged",
    "AgentStatusChanged",
    "CallerConnected",
    "CallerEntered",
    "CallerLeft",
    "Event",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentStatusChanged(Event):
    """An agent logged in, out, or went on or off a break (``reason``)."""

    name: ClassVar[str] = "agent.status"
    agent: str
    status: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentStateChanged(Event):
    """An agent became idle, reserved, ringing, talking or wrap-up."""

    name: ClassVar[str] = "agent.state"
    agent: str
    state: str
    call_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CallerEntered(Event):
    """A caller (or a virtual callback caller) entered a queue."""

    name: ClassVar[str] = "queue.entered"
    queue: str
    caller_id: str
    number: str
    priority: int
    position: int


@dataclass(frozen=True, kw_only=True, slots=True)
class CallerConnected(Event):
    """A queue caller was connected to an agent after ``wait`` seconds."""

    name: ClassVar[str] = "queue.connected"
    queue: str
    caller_id: str
    agent: str
    wait: float


@dataclass(frozen=True, kw_only=True, slots=True)
class CallerLeft(Event):
    """A caller left a queue without an agent (``reason``: a queue log outcome)."""

    name: ClassVar[str] = "queue.left"
    queue: str
    caller_id: str
    reason: str
    wait: float
