"""RFC 4028 session timers, sans-IO: negotiation as UAS, and one timer per leg.

A caller that sends ``Session-Expires`` (and perhaps ``Min-SE`` and ``Supported:
timer``) asks that the session be refreshed by a re-INVITE or UPDATE at least every
``Session-Expires`` seconds, by the side the ``refresher`` parameter names.
:func:`negotiate_uas` applies RFC 4028 section 9 to such a request: an interval below
our minimum gets 422 with our ``Min-SE`` when the caller supports timers (raised as a
:class:`~switch.sip.errors.ProtocolError` carrying that header), the refresher is the
one asked for, else the caller when it supports timers, else us; the result says what
to put in our 2xx. :func:`from_response` reads a callee's 2xx to our INVITE the same
way (section 7.2).

:class:`SessionTimer` is the running timer of one leg. It reports one deadline
(:meth:`SessionTimer.next_deadline`): as refresher, half the interval (section 7.2);
otherwise the expiry minus min(32 s, a third of the interval) (section 10), at which
the call is ended with BYE on both sides. :meth:`SessionTimer.handle_deadline` says
what is due at ``now``; :meth:`SessionTimer.refreshed` restarts it after a refresh
in either direction. No clock is read here: the caller passes ``now``.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from switch.sip.errors import ProtocolError
from switch.sip.message import Request, Response

logger = logging.getLogger(__name__)

# RFC 4028 section 4: Min-SE may not be below 90 s; section 4 recommends 1800 s.
MIN_SE = 90
DEFAULT_SESSION_EXPIRES = 1800
# RFC 4028 section 10: the side that does not refresh sends BYE this much before expiry.
BYE_MARGIN_MAX = 32.0
OPTION_TIMER = "timer"
STATUS_INTERVAL_TOO_SMALL = 422
REASON_INTERVAL_TOO_SMALL = "Session Interval Too Small"


class Refresher(enum.Enum):
    """Who refreshes, as the ``refresher`` parameter names it (RFC 4028 section 4)."""

    UAC = "uac"
    UAS = "uas"


class TimerAction(enum.Enum):
    """What :meth:`SessionTimer.handle_deadline` found due."""

    NONE = "none"
    REFRESH = "refresh"  # send a re-INVITE or UPDATE now
    EXPIRE = "expire"  # no refresh came: end the session (BYE)


@dataclass(frozen=True, slots=True)
class SessionExpires:
    """A parsed ``Session-Expires: delta-seconds [;refresher=uac|uas]``."""

    interval: int
    refresher: Refresher | None


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The outcome for one leg: the interval and whether we are the refresher.

    :param headers: the lines for our 2xx (``Session-Expires``, maybe ``Require``).
    """

    interval: int
    refresher: Refresher
    we_refresh: bool
    headers: tuple[tuple[str, str], ...]


def _option_tags(message: Request | Response, name: str) -> set[str]:
    tags: set[str] = set()
    for value in message.headers.get_all(name):
        tags.update(tag.strip().lower() for tag in value.split(",") if tag.strip())
    return tags


def parse_session_expires(value: str) -> SessionExpires:
    """RFC 4028 section 4: ``Session-Expires = delta-seconds *(SEMI se-params)``.

    :raises ProtocolError: 400 for a value that is not delta-seconds.
    """
    interval_text, *params = (part.strip() for part in value.split(";"))
    if not interval_text.isdigit():
        raise ProtocolError(f"Bad Session-Expires: {value!r}", status=400)
    refresher: Refresher | None = None
    for param in params:
        name, _, setting = param.partition("=")
        if name.strip().lower() == "refresher":
            try:
                refresher = Refresher(setting.strip().lower())
            except ValueError:
                raise ProtocolError(
                    f"Bad Session-Expires refresher: {value!r}", status=400
                ) from None
    return SessionExpires(interval=int(interval_text), refresher=refresher)


def parse_min_se(value: str) -> int:
    """RFC 4028 section 5: ``Min-SE = delta-seconds *(SEMI generic-param)``."""
    text = value.split(";")[0].strip()
    if not text.isdigit():
        raise ProtocolError(f"Bad Min-SE: {value!r}", status=400)
    return int(text)


def negotiate_uas(request: Request, *, min_se: int = MIN_SE) -> Negotiated | None:
    """Our answer, as UAS, to a request's session timer (RFC 4028 section 9).

    :returns: None when the request asks for no session timer.
    :raises ProtocolError: 422 with our ``Min-SE`` (interval too small, caller
        supports timers), or 400 for unreadable headers.
    """
    value = request.headers.get("Session-Expires")
    if value is None:
        return None
    asked = parse_session_expires(value)
    supported = OPTION_TIMER in _option_tags(request, "Supported")
    floor = min_se
    request_min = request.headers.get("Min-SE")
    if request_min is not None:
        floor = max(floor, parse_min_se(request_min))
    interval = asked.interval
    if interval < min_se:
        if supported:
            raise ProtocolError(
                REASON_INTERVAL_TOO_SMALL,
                status=STATUS_INTERVAL_TOO_SMALL,
                headers=(("Min-SE", str(min_se)),),
            )
        interval = floor  # it cannot take a 422 (section 9): we refresh, longer
    interval = max(interval, floor)
    # A caller without timers cannot refresh; else its choice, by default itself.
    refresher = (asked.refresher or Refresher.UAC) if supported else Refresher.UAS
    headers: list[tuple[str, str]] = [
        ("Session-Expires", f"{interval};refresher={refresher.value}")
    ]
    if refresher is Refresher.UAC:
        headers.append(("Require", OPTION_TIMER))  # section 9: the UAC must refresh
    return Negotiated(
        interval=interval,
        refresher=refresher,
        we_refresh=refresher is Refresher.UAS,
        headers=tuple(headers),
    )


def from_response(response: Response) -> Negotiated | None:
    """A session timer in a 2xx to our request (we were UAC; section 7.2).

    No refresher parameter means we refresh (section 7.2: the UAC does).
    """
    value = response.headers.get("Session-Expires")
    if value is None:
        return None
    try:
        parsed = parse_session_expires(value)
    except ProtocolError:
        return None
    refresher = parsed.refresher or Refresher.UAC
    interval = max(parsed.interval, MIN_SE)
    return Negotiated(
        interval=interval,
        refresher=refresher,
        we_refresh=refresher is Refresher.UAC,
        headers=(),
    )


class SessionTimer:
    """The session timer of one leg; see the module doc.

    :param interval: the negotiated Session-Expires, in seconds.
    :param we_refresh: we send the refreshes (else we only watch for them).
    :param now: the time of the 2xx that started the session.
    """

    def __init__(self, *, interval: float, we_refresh: bool, now: float) -> None:
        self.interval = interval
        self.we_refresh = we_refresh
        self.started = now
        self.refresh_sent = False

    def refreshed(
        self,
        now: float,
        *,
        interval: float | None = None,
        we_refresh: bool | None = None,
    ) -> None:
        """A refresh succeeded (sent or received): the session runs from ``now``."""
        self.started = now
        self.refresh_sent = False
        if interval is not None:
            self.interval = interval
        if we_refresh is not None:
            self.we_refresh = we_refresh

    @property
    def expires_at(self) -> float:
        """When we give up on the session (section 10)."""
        margin = min(BYE_MARGIN_MAX, self.interval / 3)
        return self.started + self.interval - margin

    def next_deadline(self) -> float:
        """The next time :meth:`handle_deadline` has something to do."""
        if self.we_refresh and not self.refresh_sent:
            return self.started + self.interval / 2
        return self.expires_at

    def handle_deadline(self, now: float) -> TimerAction:
        """What is due at ``now`` (marks a refresh as sent)."""
        if now >= self.expires_at:
            return TimerAction.EXPIRE
        due = now >= self.started + self.interval / 2
        if self.we_refresh and not self.refresh_sent and due:
            self.refresh_sent = True
            return TimerAction.REFRESH
        return TimerAction.NONE


__all__ = [
    "MIN_SE",
    "Negotiated",
    "Refresher",
    "SessionExpires",
    "SessionTimer",
    "TimerAction",
    "from_response",
    "negotiate_uas",
    "parse_min_se",
    "parse_session_expires",
]
