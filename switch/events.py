"""The event catalogue's base: how the switch tells the world what happened.

Everything above the core (web desk, supervisor, dialer, quality management) watches
the switch through one pyee ``EventEmitter`` and never reaches into it. Each
happening is one frozen dataclass with a dotted ``name``; :func:`publish` emits it
under that name and again under :data:`ANY`, so a recorder or a websocket feed can
take every event with one subscription. The full list, with fields, is
``docs/events.md``; a test keeps that page and the classes in step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from pyee import EventEmitter

logger = logging.getLogger(__name__)

#: The channel on which every event is emitted a second time.
ANY = "event"


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """Base of every catalogued event; ``at`` is the wall-clock time (epoch s)."""

    name: ClassVar[str] = "event"
    at: float


def publish(bus: EventEmitter | None, event: Event) -> None:
    """Emit ``event`` under its own name and under :data:`ANY`.

    A listener that raises must not break the switch: pyee routes the exception to
    the bus's ``error`` event, which we log here if nobody else listens.
    """
    if bus is None:
        return
    # Ten or so events per call, most with no listener: an emit without one is
    # still several calls into pyee (and its "error" check), so skip it. pyee's
    # event_names() builds a new set on every call; its table answers the same.
    listened = getattr(bus, "_events", None)
    if listened is None:
        listened = bus.event_names()
    try:
        if event.name in listened:
            bus.emit(event.name, event)
        if ANY in listened:
            bus.emit(ANY, event)
    except Exception:  # a subscriber's bug is not the caller's problem
        logger.exception("listener failed on %s", event.name)


def listened(bus: EventEmitter | None, name: str) -> bool:
    """Whether anyone takes the events called ``name`` (directly or through ANY)."""
    if bus is None:
        return False
    table = getattr(bus, "_events", None)
    if table is None:
        names = bus.event_names()
        return name in names or ANY in names
    return bool(table.get(name)) or bool(table.get(ANY))


def new_bus() -> EventEmitter:
    """An emitter whose listener errors are logged instead of raised."""
    bus = EventEmitter()

    @bus.on("error")
    def _log_error(exc: BaseException) -> None:
        logger.error("event listener error: %s", exc)

    return bus


# -- registrations (RFC 3261 section 10) --------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class RegistrationAdded(Event):
    """A contact was bound to a user (a phone registered)."""

    name: ClassVar[str] = "registration.added"
    user: str
    contact: str
    source: str
    expires: int
    user_agent: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class RegistrationRefreshed(Event):
    """An existing binding was renewed."""

    name: ClassVar[str] = "registration.refreshed"
    user: str
    contact: str
    expires: int


@dataclass(frozen=True, kw_only=True, slots=True)
class RegistrationRemoved(Event):
    """A binding ended: ``reason`` is ``unregistered``, ``expired`` or ``replaced``."""

    name: ClassVar[str] = "registration.removed"
    user: str
    contact: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ContactReachability(Event):
    """A registered contact stopped or started answering OPTIONS keep-alives."""

    name: ClassVar[str] = "registration.reachability"
    user: str
    contact: str
    reachable: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthenticationFailed(Event):
    """A request failed digest authentication (wrong password, unknown user)."""

    name: ClassVar[str] = "security.auth_failed"
    method: str
    user: str | None
    source: str
    reason: str


# -- calls (B2BUA, RFC 3261 sections 13-15) -----------------------------------------
#
# A call is one inbound leg and zero or more outbound legs; ``call_id`` is the switch's
# own identifier of the call (not a SIP Call-ID: each leg has its own, ``sip_call_id``).


@dataclass(frozen=True, kw_only=True, slots=True)
class CallStarted(Event):
    """An INVITE was accepted for routing: the call exists from now on."""

    name: ClassVar[str] = "call.started"
    call_id: str
    sip_call_id: str
    caller: str
    called: str
    source: str
    trunk: str | None
    user: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class CallRouted(Event):
    """The dialplan chose a destination (``kind``: user, trunk, app, queue, ivr)."""

    name: ClassVar[str] = "call.routed"
    call_id: str
    kind: str
    target: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CallRejected(Event):
    """An INVITE was refused before any leg rang (403, 404, 503, ...)."""

    name: ClassVar[str] = "call.rejected"
    call_id: str
    caller: str
    called: str
    source: str
    status: int
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class LegStarted(Event):
    """A leg was created: ``role`` is ``inbound`` or ``outbound``."""

    name: ClassVar[str] = "leg.started"
    call_id: str
    leg_id: str
    role: str
    sip_call_id: str
    peer: str


@dataclass(frozen=True, kw_only=True, slots=True)
class LegRinging(Event):
    """An outbound leg got 180/183; ``early_media`` if it carried SDP."""

    name: ClassVar[str] = "leg.ringing"
    call_id: str
    leg_id: str
    early_media: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class LegAnswered(Event):
    """A leg was answered (2xx); ``codec`` is the negotiated voice codec."""

    name: ClassVar[str] = "leg.answered"
    call_id: str
    leg_id: str
    codec: str


@dataclass(frozen=True, kw_only=True, slots=True)
class LegEnded(Event):
    """A leg ended; ``status`` is its final SIP status (200 for an answered leg).

    ``hangup_by`` is ``local`` (the switch), ``remote`` (this leg's peer) or ``other``
    (the other party of the call). ``cause`` is the Q.850 cause (RFC 3326 Reason).
    The media figures come from RTCP and our own receive statistics (``None`` when
    the leg never had media).
    """

    name: ClassVar[str] = "leg.ended"
    call_id: str
    leg_id: str
    status: int
    cause: int
    hangup_by: str
    packets_lost: int | None
    jitter_ms: float | None
    mos: float | None


@dataclass(frozen=True, kw_only=True, slots=True)
class CallBridged(Event):
    """Two legs' media were connected."""

    name: ClassVar[str] = "call.bridged"
    call_id: str
    leg_a: str
    leg_b: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CallRecording(Event):
    """A bridged call's recording started: ``path`` is the stereo WAV (caller left)."""

    name: ClassVar[str] = "call.recording"
    call_id: str
    path: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CallHeld(Event):
    """A party put the call on hold (``held`` True) or took it off hold (False)."""

    name: ClassVar[str] = "call.held"
    call_id: str
    leg_id: str
    held: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class CallTransferred(Event):
    """A party transferred the call (``kind``: ``blind`` REFER or ``attended``)."""

    name: ClassVar[str] = "call.transferred"
    call_id: str
    leg_id: str
    target: str
    kind: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CallEnded(Event):
    """The whole call is over; ``hangup_by`` is ``caller``, ``callee`` or ``switch``."""

    name: ClassVar[str] = "call.ended"
    call_id: str
    hangup_by: str
    status: int
    cause: int
    duration: float
    answered: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class DtmfReceived(Event):
    """A caller pressed a key (RFC 4733 or in-band)."""

    name: ClassVar[str] = "call.dtmf"
    call_id: str
    leg_id: str
    digit: str


# -- trunks (issue 4: outbound registration, OPTIONS monitoring) ---------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class TrunkStateChanged(Event):
    """A trunk went down (``available`` False) or came back up (OPTIONS monitoring).

    ``reason`` says why: ``options timeout`` (N probes in a row went unanswered) or
    ``options answered``.
    """

    name: ClassVar[str] = "trunk.state"
    trunk: str
    available: bool
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TrunkRegistrationChanged(Event):
    """The switch's registration at a carrier succeeded or failed (RFC 3261 10.2).

    ``status`` is the carrier's final answer (0 for a timeout); ``expires`` the granted
    lifetime in seconds (0 when not registered).
    """

    name: ClassVar[str] = "trunk.registration"
    trunk: str
    registered: bool
    status: int
    expires: int
