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
    try:
        bus.emit(event.name, event)
        bus.emit(ANY, event)
    except Exception:  # a subscriber's bug is not the caller's problem
        logger.exception("listener failed on %s", event.name)


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
