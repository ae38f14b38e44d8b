"""The queue log catalogue: one record per thing that happened to a caller or agent.

Every caller who enters a queue gets an ``enter`` record and, later, exactly one
*outcome* record (:data:`OUTCOMES`); between them any number of ``offered``,
``no_answer``, ``callback_requested`` and ``callback_attempt`` records. A connected
call ends with ``complete`` (talk and wrap-up time). Agent records (``agent_*``) carry
no caller and make occupancy computable. Times are the distributor's ``now`` (epoch
seconds in the running switch). The SQLite table is :mod:`acd.log`; the statistics
computed from these records are :mod:`acd.stats`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from acd.queue import LeaveReason


class QueueEvent(enum.Enum):
    """The fixed catalogue of queue log events (docs/events.md lists them)."""

    ENTER = "enter"
    OFFERED = "offered"
    NO_ANSWER = "no_answer"
    CONNECT = "connect"
    ABANDON = "abandon"
    TRANSFER = "transfer"
    CALLBACK_REQUESTED = "callback_requested"
    CALLBACK_ATTEMPT = "callback_attempt"
    CALLBACK_COMPLETED = "callback_completed"
    CALLBACK_FAILED = "callback_failed"
    EXIT_TIMEOUT = "exit_timeout"
    EXIT_ADMISSION = "exit_admission"
    EXIT_KEY = "exit_key"
    COMPLETE = "complete"
    AGENT_LOGIN = "agent_login"
    AGENT_LOGOUT = "agent_logout"
    AGENT_PAUSE = "agent_pause"
    AGENT_UNPAUSE = "agent_unpause"


#: The outcome event of each leave reason.
OUTCOME_OF = {reason: QueueEvent(reason.value) for reason in LeaveReason}
#: Events that end a caller's stay in a queue: exactly one per ``enter``.
OUTCOMES = frozenset(OUTCOME_OF.values())
#: Outcomes that count as answered.
ANSWERED = frozenset({QueueEvent.CONNECT, QueueEvent.CALLBACK_COMPLETED})


@dataclass(frozen=True, kw_only=True, slots=True)
class LogRecord:
    """One queue log line.

    :param wait: seconds the caller had waited in this queue (outcomes, offers).
    :param talk: seconds of talk (``complete``).
    :param wrap_up: seconds of wrap-up that follow (``complete``).
    :param detail: free text: the break reason, admission reason, destination.
    """

    at: float
    event: QueueEvent
    queue: str = ""
    caller_id: str = ""
    agent: str = ""
    wait: float | None = None
    talk: float | None = None
    wrap_up: float | None = None
    detail: str = ""
