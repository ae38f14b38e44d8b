"""One side of a B2BUA call: a SIP dialog plus the media endpoint anchoring its RTP.

A :class:`Leg` is either the *inbound* leg (we are the UAS of the caller's INVITE) or an
*outbound* leg (we are the UAC of an INVITE we sent). It carries the dialog of RFC 3261
section 12, our SDP session of RFC 3264 (``o=`` line, last offer sent), the negotiated
stream, and what the CDR wants to know at the end (status, Q.850 cause, who hung up).
Legs hold state only; :mod:`switch.call` and :mod:`switch.b2bua` drive them.

The Q.850 causes follow the SIP-to-ISUP mapping of RFC 3398 section 8.2.6.1 and the
``Reason`` header of RFC 3326.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import re
import secrets
import time
from dataclasses import dataclass

from switch.session_timer import Negotiated, SessionTimer
from switch.sip.dialog import Dialog
from switch.sip.message import Request, Response
from switch.sip.offer_answer import (
    DEFAULT_CODECS,
    Codec,
    LocalSession,
    NegotiatedMedia,
)
from switch.sip.sdp import SessionDescription
from switch.sip.transaction import CallIdAdapter
from switch.transport import Address

logger = logging.getLogger(__name__)

# RFC 3398 section 8.2.6.1 (SIP status -> Q.850 cause) and ITU-T Q.850 table 1.
CAUSE_UNALLOCATED_NUMBER = 1
CAUSE_NORMAL_CLEARING = 16
CAUSE_USER_BUSY = 17
CAUSE_NO_USER_RESPONDING = 18
CAUSE_NO_ANSWER = 19
CAUSE_CALL_REJECTED = 21
CAUSE_NO_CIRCUIT = 34
CAUSE_NORMAL_UNSPECIFIED = 31
CAUSE_TEMPORARY_FAILURE = 41
CAUSE_SWITCHING_CONGESTION = 42
CAUSE_INCOMPATIBLE_DESTINATION = 88
CAUSE_RECOVERY_ON_TIMER_EXPIRY = 102
CAUSE_INTERWORKING = 127

STATUS_TO_CAUSE: dict[int, int] = {
    400: CAUSE_INTERWORKING,
    401: CAUSE_CALL_REJECTED,
    403: CAUSE_CALL_REJECTED,
    404: CAUSE_UNALLOCATED_NUMBER,
    407: CAUSE_CALL_REJECTED,
    408: CAUSE_RECOVERY_ON_TIMER_EXPIRY,
    410: 22,  # number changed
    480: CAUSE_NO_USER_RESPONDING,
    484: 28,  # invalid number format
    486: CAUSE_USER_BUSY,
    487: CAUSE_NORMAL_CLEARING,  # originator cancel
    488: CAUSE_INCOMPATIBLE_DESTINATION,
    500: CAUSE_TEMPORARY_FAILURE,
    502: 38,  # network out of order
    503: CAUSE_SWITCHING_CONGESTION,
    504: CAUSE_RECOVERY_ON_TIMER_EXPIRY,
    600: CAUSE_USER_BUSY,
    603: CAUSE_CALL_REJECTED,
    604: CAUSE_UNALLOCATED_NUMBER,
}

# RFC 3326 section 2: Reason: Q.850 ;cause=16 ;text="..."
_REASON_CAUSE = re.compile(r"^\s*Q\.850\s*;(?:.*;)?\s*cause\s*=\s*(\d+)", re.IGNORECASE)

# Leg ids key the CDR's legs table, so they must not repeat after a restart: a
# per-process random prefix, then a counter (short in logs, ordered within a run).
_LEG_ID_PREFIX = secrets.token_hex(3)
_leg_ids = itertools.count(1)


class Ringback(enum.Enum):
    """What an unanswered caller hears while the callee rings (``[limits] ringback``).

    ``RELAY`` passes the callee's 180 and early media (183 with SDP) through;
    ``LOCAL`` answers the caller's offer in a 183 and plays our own ringback tone,
    whatever the callee sends early (carriers' announcements, odd tones).
    """

    RELAY = "relay"
    LOCAL = "local"


RINGBACK_MODES = tuple(mode.value for mode in Ringback)


def cause_for_status(status: int) -> int:
    """The Q.850 cause a final SIP status maps to (RFC 3398 8.2.6.1)."""
    if 200 <= status < 300:
        return CAUSE_NORMAL_CLEARING
    return STATUS_TO_CAUSE.get(status, CAUSE_NORMAL_UNSPECIFIED)


def reason_cause(message: Request | Response) -> int | None:
    """The Q.850 cause of a ``Reason`` header (RFC 3326), if the message has one."""
    for value in message.headers.get_all("Reason"):
        match = _REASON_CAUSE.match(value)
        if match:
            return int(match.group(1))
    return None


def reason_header(cause: int) -> tuple[str, str]:
    """A ``Reason`` header line carrying a Q.850 cause (RFC 3326 section 2)."""
    return ("Reason", f"Q.850;cause={cause}")


class LegRole(enum.Enum):
    """Which side of the B2BUA a leg is on."""

    __hash__ = object.__hash__  # by identity, see sip.transaction.TransactionKind

    INBOUND = "inbound"  # we are the UAS (RFC 3261 13.3)
    OUTBOUND = "outbound"  # we are the UAC (RFC 3261 13.2)


class LegState(enum.Enum):
    """A leg's progress; the dialog's own state is in :attr:`Leg.dialog`."""

    __hash__ = object.__hash__  # by identity, see sip.transaction.TransactionKind

    TRYING = "trying"  # INVITE received or sent, nothing else yet
    RINGING = "ringing"  # 180/183 sent or received
    ANSWERED = "answered"  # 2xx sent (inbound: waiting for the ACK) or received
    CONFIRMED = "confirmed"  # the 2xx was ACKed
    ENDED = "ended"


class HangupBy(enum.Enum):
    """Who ended a leg, as :class:`~switch.events.LegEnded` reports it."""

    __hash__ = object.__hash__  # by identity, see sip.transaction.TransactionKind

    LOCAL = "local"
    REMOTE = "remote"
    OTHER = "other"


@dataclass(slots=True)
class Target:
    """Where an outbound leg goes: Request-URI, To, the address to send to."""

    uri: str
    to: str
    destination: Address
    peer: str  # for events and logs: user name, trunk name, app
    trunk: str | None = None  # the outbound trunk (its credentials answer 401/407)


class Leg:
    """One dialog of a call and its media endpoint.

    :param role: inbound or outbound.
    :param call_id: the SIP Call-ID of this leg (each leg has its own).
    :param peer: a name for events (the caller's number, the user rung, the trunk).
    :param destination: where in-dialog requests to the peer are sent (the source of
        its INVITE, or the binding's source address: the phone may be behind NAT).
    """

    # Slots: a leg is made twice per call, and with its 40-odd attributes in slots
    # instead of an instance dict it costs about a quarter less to build.
    __slots__ = (
        "ack",
        "answer_sdp",
        "answered_at",
        "awaiting_ack",
        "call_id",
        "cancel_headers",
        "cancel_requested",
        "cancel_sent",
        "cause",
        "codecs",
        "destination",
        "dialog",
        "early_dialogs",
        "early_media",
        "ended_at",
        "endpoint_id",
        "final_response",
        "got_provisional",
        "hangup_by",
        "held",
        "inband_dtmf",
        "invite",
        "leg_id",
        "log",
        "media",
        "offer",
        "peer",
        "peer_allows_update",
        "pracked",
        "queued",
        "reinvite_pending",
        "reliable",
        "ringing_reported",
        "role",
        "rseq",
        "rtp_port",
        "session",
        "session_timer",
        "session_timer_handle",
        "started_at",
        "state",
        "status",
        "timer_negotiated",
        "trunk",
        "trunk_slot",
        "unacked",
    )

    def __init__(
        self,
        *,
        role: LegRole,
        call_id: str,
        peer: str,
        destination: Address,
        media_host: str,
    ) -> None:
        self.leg_id = f"L{_LEG_ID_PREFIX}-{next(_leg_ids)}"
        self.role = role
        self.call_id = call_id
        self.peer = peer
        self.destination = destination
        self.state = LegState.TRYING
        self.dialog: Dialog | None = None
        self.invite: Request | None = None  # the dialog-creating INVITE
        self.trunk: str | None = None  # outbound leg through this trunk
        # The trunk whose call slot this leg holds (inbound from or outbound to it).
        self.trunk_slot: str | None = None
        self.inband_dtmf = False  # its endpoint listens for DTMF tones in the audio
        self.session = LocalSession(address=media_host)
        self.endpoint_id: int | None = None
        self.rtp_port = 0
        self.offer: SessionDescription | None = None  # our offer awaiting its answer
        self.answer_sdp: SessionDescription | None = None  # our answer to its offer
        self.ack: Request | None = None  # outbound: our ACK for the 2xx (re-sent)
        self.awaiting_ack: int | None = None  # inbound: CSeq of a 2xx not yet ACKed
        self.cancel_headers: tuple[tuple[str, str], ...] = ()
        self.media: NegotiatedMedia | None = None
        self.codecs: tuple[Codec, ...] = DEFAULT_CODECS
        self.held = False  # the peer put us on hold (its offer was not sendrecv)
        self.reinvite_pending = False  # our re-INVITE is outstanding (RFC 3261 14.1)
        self.got_provisional = False
        self.cancel_requested = False
        self.cancel_sent = False
        self.ringing_reported = False
        self.early_media = False
        # RFC 3262, inbound: the caller requires our 18x to be sent reliably.
        self.reliable = False
        self.rseq = 0  # the RSeq of our last reliable provisional
        self.unacked: Response | None = None  # our reliable 18x awaiting its PRACK
        self.queued: list[Response] = []  # reliable 18x waiting for that PRACK
        # RFC 3262, outbound: early dialogs by the callee's To tag, RSeqs PRACKed.
        self.early_dialogs: dict[str, Dialog] = {}
        self.pracked: set[tuple[str, int]] = set()
        # RFC 4028: what the caller's INVITE asked for (answered in our 2xx), the
        # running timer and its loop handle, and whether the peer takes UPDATE.
        self.timer_negotiated: Negotiated | None = None
        self.session_timer: SessionTimer | None = None
        self.session_timer_handle: asyncio.TimerHandle | None = None
        self.peer_allows_update = False
        self.status = 0
        self.cause = CAUSE_NORMAL_CLEARING
        self.hangup_by = HangupBy.LOCAL
        self.started_at = time.time()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.final_response: Response | None = None  # inbound: our last 2xx
        self.log = CallIdAdapter(logger, {"call_id": call_id})

    @property
    def ended(self) -> bool:
        return self.state is LegState.ENDED

    @property
    def answered(self) -> bool:
        return self.state in (LegState.ANSWERED, LegState.CONFIRMED)

    def set_state(self, state: LegState) -> None:
        if state is not self.state:
            if logger.isEnabledFor(logging.DEBUG):
                self.log.debug(
                    "leg %s %s -> %s", self.leg_id, self.state.value, state.value
                )
            self.state = state

    def __repr__(self) -> str:
        return f"<Leg {self.leg_id} {self.role.value} {self.state.value} {self.peer}>"
