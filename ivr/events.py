"""IVR events: where each caller went through a flow, published on the switch's bus.

One frozen dataclass per happening, as in :mod:`switch.events` (catalogue in
``docs/events.md``). They are the record reports are built from: the CDR keeps them per
call (:mod:`ivr.record`), so "where do callers leave" is a query over ``ivr.node`` and
``ivr.exited``, not a log search.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import ClassVar

from switch.events import Event

logger = logging.getLogger(__name__)


class DigitsOutcome(enum.Enum):
    """How a wait for keys ended."""

    MATCHED = "matched"  # a menu choice, a language, or enough digits collected
    INVALID = "invalid"  # a key that is not a choice, or too few digits
    TIMEOUT = "timeout"  # nothing pressed


class DipOutcome(enum.Enum):
    """How a data dip ended; anything but OK takes the fallback branch."""

    OK = "ok"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    HTTP_ERROR = "http_error"
    BAD_RESPONSE = "bad_response"


class ExitReason(enum.Enum):
    """Why the caller left the flow."""

    HANGUP = "hangup"  # a hangup node ended the call
    CALLER_HANGUP = "caller_hangup"
    QUEUED = "queued"  # handed to an ACD queue
    TRANSFERRED = "transferred"
    ERROR = "error"  # a bug or a media failure; the call is ended


@dataclass(frozen=True, kw_only=True, slots=True)
class IvrEntered(Event):
    """A call started a flow."""

    name: ClassVar[str] = "ivr.entered"
    call_id: str
    flow: str
    caller: str
    language: str


@dataclass(frozen=True, kw_only=True, slots=True)
class IvrNodeEntered(Event):
    """The call reached a node (``node_type`` is the flow file's ``type``)."""

    name: ClassVar[str] = "ivr.node"
    call_id: str
    flow: str
    node: str
    node_type: str


@dataclass(frozen=True, kw_only=True, slots=True)
class IvrDigits(Event):
    """A menu, collect or language node finished waiting for keys."""

    name: ClassVar[str] = "ivr.digits"
    call_id: str
    flow: str
    node: str
    digits: str
    outcome: DigitsOutcome
    attempt: int


@dataclass(frozen=True, kw_only=True, slots=True)
class IvrDataDip(Event):
    """An http node asked a CRM; ``fields`` are the variables it set."""

    name: ClassVar[str] = "ivr.data_dip"
    call_id: str
    flow: str
    node: str
    url: str
    outcome: DipOutcome
    status: int | None
    elapsed_ms: float
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class IvrExited(Event):
    """The call left the flow at ``node`` (``target``: the queue or transfer target)."""

    name: ClassVar[str] = "ivr.exited"
    call_id: str
    flow: str
    node: str
    reason: ExitReason
    target: str
