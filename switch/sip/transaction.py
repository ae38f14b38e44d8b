"""SIP transaction layer, sans-IO (RFC 3261 section 17, corrected by RFC 6026).

:class:`TransactionLayer` matches every received request and response to a client or
server transaction, runs the four transaction state machines (INVITE client, non-INVITE
client, INVITE server, non-INVITE server), retransmits over UDP, absorbs the peer's
retransmissions and reports what the transaction user (TU) must see as frozen event
dataclasses. It owns no socket and reads no clock: the caller passes ``now`` in, drains
:class:`Transmit` records with :meth:`TransactionLayer.take_outgoing` and arranges a call
to :meth:`TransactionLayer.handle_timer` at :meth:`TransactionLayer.next_deadline`.

Theory of operation
-------------------
Each state machine is a table keyed by ``(state, input)``. An input is a received
message class (1xx, 2xx, 300-699, a request retransmission, an ACK), a response the TU
sends, a fired timer or a transport error. A table entry names the next state, the
actions to run (pass up, send, resend, build the ACK, report) and the timers to start.
Timers a state does not list in :data:`STATE_TIMERS` are cancelled on entering it, so
the table never has to say "stop timer A". A ``(state, input)`` pair missing from the
table is our own misuse (for instance the TU sending a 180 after the 486): the machine
goes to Terminated and raises :class:`~switch.sip.errors.LocalProtocolError`. Every
network input is listed for every live state, so the network can never trigger that.

Timers are absolute deadlines kept per transaction and mirrored in one queue in the layer
(a FIFO for the 64*T1 timers, a heap for the rest; stale entries are skipped lazily), so
:meth:`TransactionLayer.next_deadline` is cheap with thousands of calls. A timer of
zero seconds (D, I, J, K over TCP or TLS) is a deadline at ``now``: the next
:meth:`TransactionLayer.handle_timer` ends the transaction. A terminated transaction
is forgotten at once (RFC 3261 17.1.1.2) and a :class:`TransactionTerminated` event
says so.

What the layer deliberately leaves to the TU: the ACK for a 2xx and the 2xx
retransmissions (RFC 3261 13.2.2.4, 13.3.1.4); answering CANCEL (the event tells which
INVITE transaction it matches); stateless responses (use :func:`response_destination`).
Stray responses are dropped (RFC 6026's update of RFC 3261 18.1.2).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from switch.sip.errors import LocalProtocolError, ProtocolError
from switch.sip.headers import Via
from switch.sip.message import Headers, Request, Response, make_response
from switch.sip.timers import TimerName, Timers
from switch.sip.tokens import token_hex

logger = logging.getLogger(__name__)

#: (transport, host, port); transport is "UDP", "TCP", "TLS", ... (upper case).
Address = tuple[str, str, int]

# RFC 3261 section 8.1.1.7: every RFC 3261 branch starts with this magic cookie.
MAGIC_COOKIE = "z9hG4bK"
# RFC 3261 section 8.1.1.7 / 19.3: branch and tag must be globally unique and carry at
# least 32 bits of randomness; we use 64.
RANDOM_BYTES = 8
# RFC 3261 section 8.1.1.6: the recommended initial Max-Forwards.
MAX_FORWARDS = 70
# RFC 3261 section 18: UDP is the only unreliable transport we speak.
UNRELIABLE_TRANSPORT = "UDP"
# RFC 3261 section 18.2.2 and 19.1.2: default ports; RFC 7118 section 5 for WS/WSS.
DEFAULT_PORT = 5060
DEFAULT_PORTS = {
    "UDP": 5060,
    "TCP": 5060,
    "SCTP": 5060,
    "TLS": 5061,
    "WS": 80,
    "WSS": 443,
}
# RFC 3261 section 21.1.1 and 21.4.20.
STATUS_TRYING = 100
STATUS_LOOP_DETECTED = 482
REASON_TRYING = "Trying"
REASON_LOOP_DETECTED = "Loop Detected"
# RFC 3261 section 17.1.1.1 and table 4 defaults.
DEFAULT_TIMERS = Timers()


class TransactionKind(enum.Enum):
    """The four state machines of RFC 3261 sections 17.1.1, 17.1.2, 17.2.1, 17.2.2."""

    # Members are singletons compared by identity; Enum's own __hash__ is Python
    # code, run on every table lookup keyed by a member.
    __hash__ = object.__hash__

    INVITE_CLIENT = "INVITE client"
    NON_INVITE_CLIENT = "non-INVITE client"
    INVITE_SERVER = "INVITE server"
    NON_INVITE_SERVER = "non-INVITE server"


class TransactionState(enum.Enum):
    """Transaction states, named as in RFC 3261 figures 5-8 and RFC 6026 ("Accepted")."""

    __hash__ = object.__hash__  # by identity, see TransactionKind

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class TransactionInput(enum.Enum):
    """What can happen to a transaction (the arrows of RFC 3261 figures 5-8)."""

    __hash__ = object.__hash__  # by identity, see TransactionKind

    RECEIVE_1XX = "1xx received"
    RECEIVE_2XX = "2xx received"
    RECEIVE_300_699 = "300-699 received"
    RECEIVE_REQUEST = "request retransmission received"
    RECEIVE_ACK = "ACK received"
    SEND_1XX = "1xx from TU"
    SEND_2XX = "2xx from TU"
    SEND_300_699 = "300-699 from TU"
    TIMER_A = "Timer A fires"
    TIMER_B = "Timer B fires"
    TIMER_D = "Timer D fires"
    TIMER_E = "Timer E fires"
    TIMER_F = "Timer F fires"
    TIMER_G = "Timer G fires"
    TIMER_H = "Timer H fires"
    TIMER_I = "Timer I fires"
    TIMER_J = "Timer J fires"
    TIMER_K = "Timer K fires"
    TIMER_L = "Timer L fires"
    TIMER_M = "Timer M fires"
    TRANSPORT_ERROR = "transport error"


class Action(enum.Enum):
    """What a transition does besides changing state (run in table order)."""

    __hash__ = object.__hash__  # by identity, see TransactionKind

    PASS_TO_TU = "pass the message to the TU"
    SEND_ACK = "build and send the ACK for a non-2xx final (17.1.1.3)"
    RESEND_ACK = "resend the ACK"
    RETRANSMIT_REQUEST = "retransmit the request"
    SEND_RESPONSE = "send the TU's response"
    RESEND_RESPONSE = "resend the most recent response"
    REPORT_TIMEOUT = "inform the TU of a timeout"
    REPORT_TRANSPORT_ERROR = "inform the TU of a transport error"


TIMER_INPUTS: dict[TimerName, TransactionInput] = {
    TimerName.A: TransactionInput.TIMER_A,
    TimerName.B: TransactionInput.TIMER_B,
    TimerName.D: TransactionInput.TIMER_D,
    TimerName.E: TransactionInput.TIMER_E,
    TimerName.F: TransactionInput.TIMER_F,
    TimerName.G: TransactionInput.TIMER_G,
    TimerName.H: TransactionInput.TIMER_H,
    TimerName.I: TransactionInput.TIMER_I,
    TimerName.J: TransactionInput.TIMER_J,
    TimerName.K: TransactionInput.TIMER_K,
    TimerName.L: TransactionInput.TIMER_L,
    TimerName.M: TransactionInput.TIMER_M,
}
_INPUT_TIMERS = {event: name for name, event in TIMER_INPUTS.items()}


# --- events ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """Base class of everything the transaction layer reports to the TU."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestReceived(Event):
    """A new request for the TU (retransmissions never show up here).

    :param transaction_key: the server transaction to answer through, or ``None`` for
        an ACK, which has no server transaction of its own (ACK for a 2xx, RFC 3261
        section 17.2.3 and RFC 6026 section 8.7).
    :param cancelled_transaction_key: for a CANCEL, the INVITE server transaction it
        matches (RFC 3261 section 9.2); ``None`` means the TU should answer 481.
    """

    request: Request
    source: Address
    transaction_key: str | None
    cancelled_transaction_key: str | None = None

    def __post_init__(self) -> None:
        # RFC 3261 17.2.3: every request but an ACK creates a server transaction.
        if self.transaction_key is None and self.request.method != "ACK":
            raise LocalProtocolError(f"{self.request.method} without a transaction")
        # RFC 3261 9.2: only a CANCEL matches another transaction.
        if (
            self.cancelled_transaction_key is not None
            and self.request.method != "CANCEL"
        ):
            raise LocalProtocolError(f"{self.request.method} cannot cancel")


@dataclass(frozen=True, kw_only=True, slots=True)
class ResponseReceived(Event):
    """A response the client transaction passes up (RFC 3261 17.1.1.2, 17.1.2.2)."""

    response: Response
    transaction_key: str

    def __post_init__(self) -> None:
        # RFC 3261 section 7.2: status codes are 100 to 699.
        if not 100 <= self.response.status <= 699:
            raise LocalProtocolError(f"status {self.response.status} out of range")


@dataclass(frozen=True, kw_only=True, slots=True)
class TransactionTimedOut(Event):
    """Timer B, F or H fired: no final response, or no ACK (17.1.1.2, 17.1.2.2, 17.2.1).

    A timed-out client transaction means RFC 3261 8.1.3.1 applies: treat it as a 408.
    """

    transaction_key: str
    request: Request


@dataclass(frozen=True, kw_only=True, slots=True)
class TransactionTransportError(Event):
    """The transport reported a failure for this transaction (RFC 3261 17.1.4, 17.2.4)."""

    transaction_key: str
    request: Request


@dataclass(frozen=True, kw_only=True, slots=True)
class TransactionTerminated(Event):
    """The transaction reached Terminated and is forgotten; its key is free again."""

    transaction_key: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Transmit:
    """Bytes to put on the wire to ``destination`` (over its transport)."""

    data: bytes
    destination: Address


# --- transition tables ----------------------------------------------------------------


class Transition(NamedTuple):
    """One table entry: where to go, what to do, which timers to (re)start."""

    target: TransactionState
    actions: tuple[Action, ...] = ()
    start: tuple[TimerName, ...] = ()


_S = TransactionState
_I = TransactionInput
_A = Action
_T = TimerName

INITIAL_STATES: dict[TransactionKind, TransactionState] = {
    TransactionKind.INVITE_CLIENT: _S.CALLING,
    TransactionKind.NON_INVITE_CLIENT: _S.TRYING,
    TransactionKind.INVITE_SERVER: _S.PROCEEDING,
    TransactionKind.NON_INVITE_SERVER: _S.TRYING,
}

# The timers each state may run; entering a state cancels every other timer.
STATE_TIMERS: dict[TransactionKind, dict[TransactionState, frozenset[TimerName]]] = {
    TransactionKind.INVITE_CLIENT: {
        _S.CALLING: frozenset({_T.A, _T.B}),
        _S.PROCEEDING: frozenset(),
        _S.COMPLETED: frozenset({_T.D}),
        _S.ACCEPTED: frozenset({_T.M}),
        _S.TERMINATED: frozenset(),
    },
    TransactionKind.NON_INVITE_CLIENT: {
        _S.TRYING: frozenset({_T.E, _T.F}),
        _S.PROCEEDING: frozenset({_T.E, _T.F}),
        _S.COMPLETED: frozenset({_T.K}),
        _S.TERMINATED: frozenset(),
    },
    TransactionKind.INVITE_SERVER: {
        _S.PROCEEDING: frozenset(),
        _S.COMPLETED: frozenset({_T.G, _T.H}),
        _S.CONFIRMED: frozenset({_T.I}),
        _S.ACCEPTED: frozenset({_T.L}),
        _S.TERMINATED: frozenset(),
    },
    TransactionKind.NON_INVITE_SERVER: {
        _S.TRYING: frozenset(),
        _S.PROCEEDING: frozenset(),
        _S.COMPLETED: frozenset({_T.J}),
        _S.TERMINATED: frozenset(),
    },
}

# Where a server transaction only waits, its TU done with the messages it keeps
# (see Transaction._shed_parse_caches).
_LINGER_STATES: dict[TransactionKind, frozenset[TransactionState]] = {
    TransactionKind.INVITE_CLIENT: frozenset(),
    TransactionKind.NON_INVITE_CLIENT: frozenset(),
    TransactionKind.INVITE_SERVER: frozenset({_S.COMPLETED, _S.CONFIRMED, _S.ACCEPTED}),
    TransactionKind.NON_INVITE_SERVER: frozenset({_S.COMPLETED}),
}

_PASS = (_A.PASS_TO_TU,)
_SEND = (_A.SEND_RESPONSE,)
_RESEND = (_A.RESEND_RESPONSE,)
_TIMEOUT = (_A.REPORT_TIMEOUT,)
_ERROR = (_A.REPORT_TRANSPORT_ERROR,)
_TERMINATED = Transition(_S.TERMINATED)
_TRANSPORT_ERROR = Transition(_S.TERMINATED, _ERROR)

# RFC 3261 17.1.1.2 figure 5 as replaced by RFC 6026 section 8.4 figure 5.
_INVITE_CLIENT: dict[tuple[TransactionState, TransactionInput], Transition] = {
    (_S.CALLING, _I.RECEIVE_1XX): Transition(_S.PROCEEDING, _PASS),
    (_S.CALLING, _I.RECEIVE_2XX): Transition(_S.ACCEPTED, _PASS, (_T.M,)),
    (_S.CALLING, _I.RECEIVE_300_699): Transition(
        _S.COMPLETED, (_A.SEND_ACK, _A.PASS_TO_TU), (_T.D,)
    ),
    (_S.CALLING, _I.TIMER_A): Transition(_S.CALLING, (_A.RETRANSMIT_REQUEST,), (_T.A,)),
    (_S.CALLING, _I.TIMER_B): Transition(_S.TERMINATED, _TIMEOUT),
    (_S.CALLING, _I.TRANSPORT_ERROR): _TRANSPORT_ERROR,
    (_S.PROCEEDING, _I.RECEIVE_1XX): Transition(_S.PROCEEDING, _PASS),
    (_S.PROCEEDING, _I.RECEIVE_2XX): Transition(_S.ACCEPTED, _PASS, (_T.M,)),
    (_S.PROCEEDING, _I.RECEIVE_300_699): Transition(
        _S.COMPLETED, (_A.SEND_ACK, _A.PASS_TO_TU), (_T.D,)
    ),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): _TRANSPORT_ERROR,
    # Neither RFC says what a 1xx after the final means: it is a late stray, absorbed.
    (_S.COMPLETED, _I.RECEIVE_1XX): Transition(_S.COMPLETED),
    # A forking proxy forwards every 2xx even after our non-2xx final (RFC 3261 16.7
    # step 5); the TU must see it to ACK and BYE that dialog.
    (_S.COMPLETED, _I.RECEIVE_2XX): Transition(_S.COMPLETED, _PASS),
    (_S.COMPLETED, _I.RECEIVE_300_699): Transition(_S.COMPLETED, (_A.RESEND_ACK,)),
    (_S.COMPLETED, _I.TIMER_D): _TERMINATED,
    (_S.COMPLETED, _I.TRANSPORT_ERROR): _TRANSPORT_ERROR,
    (_S.ACCEPTED, _I.RECEIVE_1XX): Transition(_S.ACCEPTED),
    (_S.ACCEPTED, _I.RECEIVE_2XX): Transition(_S.ACCEPTED, _PASS),
    (_S.ACCEPTED, _I.RECEIVE_300_699): Transition(_S.ACCEPTED),
    (_S.ACCEPTED, _I.TIMER_M): _TERMINATED,
    (_S.ACCEPTED, _I.TRANSPORT_ERROR): _TRANSPORT_ERROR,
}

# RFC 3261 17.1.2.2 figure 6.
_NON_INVITE_CLIENT: dict[tuple[TransactionState, TransactionInput], Transition] = {
    (_S.TRYING, _I.RECEIVE_1XX): Transition(_S.PROCEEDING, _PASS),
    (_S.TRYING, _I.RECEIVE_2XX): Transition(_S.COMPLETED, _PASS, (_T.K,)),
    (_S.TRYING, _I.RECEIVE_300_699): Transition(_S.COMPLETED, _PASS, (_T.K,)),
    (_S.TRYING, _I.TIMER_E): Transition(_S.TRYING, (_A.RETRANSMIT_REQUEST,), (_T.E,)),
    (_S.TRYING, _I.TIMER_F): Transition(_S.TERMINATED, _TIMEOUT),
    (_S.TRYING, _I.TRANSPORT_ERROR): _TRANSPORT_ERROR,
    (_S.PROCEEDING, _I.RECEIVE_1XX): Transition(_S.PROCEEDING, _PASS),
    (_S.PROCEEDING, _I.RECEIVE_2XX): Transition(_S.COMPLETED, _PASS, (_T.K,)),
    (_S.PROCEEDING, _I.RECEIVE_300_699): Transition(_S.COMPLETED, _PASS, (_T.K,)),
    (_S.PROCEEDING, _I.TIMER_E): Transition(
        _S.PROCEEDING, (_A.RETRANSMIT_REQUEST,), (_T.E,)
    ),
    (_S.PROCEEDING, _I.TIMER_F): Transition(_S.TERMINATED, _TIMEOUT),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): _TRANSPORT_ERROR,
    (_S.COMPLETED, _I.RECEIVE_1XX): Transition(_S.COMPLETED),
    (_S.COMPLETED, _I.RECEIVE_2XX): Transition(_S.COMPLETED),
    (_S.COMPLETED, _I.RECEIVE_300_699): Transition(_S.COMPLETED),
    (_S.COMPLETED, _I.TIMER_K): _TERMINATED,
    (_S.COMPLETED, _I.TRANSPORT_ERROR): _TRANSPORT_ERROR,
}

# RFC 3261 17.2.1 figure 7 as replaced by RFC 6026 section 8.7 figure 7.
_INVITE_SERVER: dict[tuple[TransactionState, TransactionInput], Transition] = {
    (_S.PROCEEDING, _I.RECEIVE_REQUEST): Transition(_S.PROCEEDING, _RESEND),
    # An ACK before any final answers nothing (a broken or RFC 2543 peer): absorbed.
    (_S.PROCEEDING, _I.RECEIVE_ACK): Transition(_S.PROCEEDING),
    (_S.PROCEEDING, _I.SEND_1XX): Transition(_S.PROCEEDING, _SEND),
    (_S.PROCEEDING, _I.SEND_2XX): Transition(_S.ACCEPTED, _SEND, (_T.L,)),
    (_S.PROCEEDING, _I.SEND_300_699): Transition(_S.COMPLETED, _SEND, (_T.G, _T.H)),
    # RFC 6026 figure 7: a failed provisional informs the TU, which still owes the
    # final response; the transaction stays.
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): Transition(_S.PROCEEDING, _ERROR),
    (_S.COMPLETED, _I.RECEIVE_REQUEST): Transition(_S.COMPLETED, _RESEND),
    (_S.COMPLETED, _I.RECEIVE_ACK): Transition(_S.CONFIRMED, (), (_T.I,)),
    (_S.COMPLETED, _I.TIMER_G): Transition(_S.COMPLETED, _RESEND, (_T.G,)),
    (_S.COMPLETED, _I.TIMER_H): Transition(_S.TERMINATED, _TIMEOUT),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): _TRANSPORT_ERROR,
    (_S.CONFIRMED, _I.RECEIVE_REQUEST): Transition(_S.CONFIRMED),
    (_S.CONFIRMED, _I.RECEIVE_ACK): Transition(_S.CONFIRMED),
    (_S.CONFIRMED, _I.TIMER_I): _TERMINATED,
    (_S.CONFIRMED, _I.TRANSPORT_ERROR): _TRANSPORT_ERROR,
    (_S.ACCEPTED, _I.RECEIVE_REQUEST): Transition(_S.ACCEPTED),
    # RFC 6026 8.7: an ACK matching in Accepted acknowledges the 2xx: the TU's.
    (_S.ACCEPTED, _I.RECEIVE_ACK): Transition(_S.ACCEPTED, _PASS),
    # RFC 6026 8.7: the TU's own 2xx retransmissions (RFC 3261 13.3.1.4) go out.
    (_S.ACCEPTED, _I.SEND_2XX): Transition(_S.ACCEPTED, _SEND),
    (_S.ACCEPTED, _I.TIMER_L): _TERMINATED,
    # RFC 6026 figure 7: a transport error in Accepted informs the TU and the
    # transaction stays to absorb INVITE retransmissions until Timer L.
    # (Confirmed sends nothing, so a late error report there just ends it.)
    (_S.ACCEPTED, _I.TRANSPORT_ERROR): Transition(_S.ACCEPTED, _ERROR),
}

# RFC 3261 17.2.2 figure 8.
_NON_INVITE_SERVER: dict[tuple[TransactionState, TransactionInput], Transition] = {
    (_S.TRYING, _I.RECEIVE_REQUEST): Transition(_S.TRYING),
    (_S.TRYING, _I.SEND_1XX): Transition(_S.PROCEEDING, _SEND),
    (_S.TRYING, _I.SEND_2XX): Transition(_S.COMPLETED, _SEND, (_T.J,)),
    (_S.TRYING, _I.SEND_300_699): Transition(_S.COMPLETED, _SEND, (_T.J,)),
    (_S.TRYING, _I.TRANSPORT_ERROR): _TRANSPORT_ERROR,
    (_S.PROCEEDING, _I.RECEIVE_REQUEST): Transition(_S.PROCEEDING, _RESEND),
    (_S.PROCEEDING, _I.SEND_1XX): Transition(_S.PROCEEDING, _SEND),
    (_S.PROCEEDING, _I.SEND_2XX): Transition(_S.COMPLETED, _SEND, (_T.J,)),
    (_S.PROCEEDING, _I.SEND_300_699): Transition(_S.COMPLETED, _SEND, (_T.J,)),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): _TRANSPORT_ERROR,
    (_S.COMPLETED, _I.RECEIVE_REQUEST): Transition(_S.COMPLETED, _RESEND),
    (_S.COMPLETED, _I.TIMER_J): _TERMINATED,
    (_S.COMPLETED, _I.TRANSPORT_ERROR): _TRANSPORT_ERROR,
}

TRANSITIONS: dict[
    TransactionKind, dict[tuple[TransactionState, TransactionInput], Transition]
] = {
    TransactionKind.INVITE_CLIENT: _INVITE_CLIENT,
    TransactionKind.NON_INVITE_CLIENT: _NON_INVITE_CLIENT,
    TransactionKind.INVITE_SERVER: _INVITE_SERVER,
    TransactionKind.NON_INVITE_SERVER: _NON_INVITE_SERVER,
}


# --- helpers --------------------------------------------------------------------------


class CallIdAdapter(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every log line with the Call-ID it concerns (STYLE point 11).

    ``debug`` and ``info`` say no below the logger's level in one call (the generic
    adapter path makes four): a call logs half a dozen INFO lines that a switch run at
    WARNING drops. A line that is logged names its caller, not this class
    (``stacklevel``).
    """

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
            super().debug(msg, *args, **kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
            super().info(msg, *args, **kwargs)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        # A Call-ID may hold '%' (RFC 4475 intmeth): keep it out of the format string.
        call_id = str(extra.get("call_id")).replace("%", "%%")
        return f"[{call_id}] {msg}", kwargs


def new_branch() -> str:
    """A fresh Via branch: the RFC 3261 magic cookie plus 64 random bits (8.1.1.7)."""
    return MAGIC_COOKIE + token_hex(RANDOM_BYTES)


def new_tag() -> str:
    """A fresh From/To tag with 64 random bits (RFC 3261 section 19.3)."""
    return token_hex(RANDOM_BYTES)


def is_reliable(address: Address) -> bool:
    """Whether ``address`` names a reliable transport (anything but UDP, RFC 3261 18)."""
    return address[0].upper() != UNRELIABLE_TRANSPORT


def _unbracket(host: str) -> str:
    # RFC 5118 section 4.1: IPv6 references are bracketed in Via; sockets want them bare.
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def response_destination(top_via: Via, source: Address | None = None) -> Address:
    """Where a response to a request with ``top_via`` goes (RFC 3261 18.2.2, RFC 3581).

    :param top_via: the topmost Via of the request (copied into the response).
    :param source: where the request came from, if known. Over a reliable transport the
        response goes back to it (the same connection). Over UDP its address stands in
        for a missing ``received`` parameter, which 18.2.1 requires whenever sent-by is
        a name or differs from the packet source; with ``rport`` present (RFC 3581
        section 4) its port is the reply port too.
    """
    transport = top_via.transport.upper()
    if source is not None and transport != UNRELIABLE_TRANSPORT:
        return source
    default_port = DEFAULT_PORTS.get(transport, DEFAULT_PORT)
    maddr = top_via.params.get("maddr")
    if maddr:
        # RFC 3261 18.2.2: multicast to maddr at the sent-by port.
        return (transport, _unbracket(maddr), top_via.port or default_port)
    if top_via.received:
        host = top_via.received
    elif source is not None:
        host = source[1]
    else:
        host = top_via.host
    rport = top_via.rport
    if rport is not None and source is not None:
        port = source[2]
    elif isinstance(rport, int):
        port = rport
    else:
        port = top_via.port or default_port
    return (transport, _unbracket(host), port)


def _copy_headers(source: Headers, target: Headers, name: str) -> None:
    for value in source.get_all(name):
        target.add(name, value)


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise LocalProtocolError(f"request has no {name} header")
    return value


def make_cancel(request: Request) -> Request:
    """The CANCEL for ``request`` (RFC 3261 section 9.1).

    Request-URI, Call-ID, From, To, CSeq number and Route are the request's; the single
    Via is the request's top Via, so the branch matches its client transaction.
    """
    headers = Headers()
    headers.add("Via", str(request.top_via))
    _copy_headers(request.headers, headers, "Route")
    headers.add("Max-Forwards", str(MAX_FORWARDS))
    headers.add("From", _required(request.headers, "From"))
    headers.add("To", _required(request.headers, "To"))
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq.number} CANCEL")
    return Request(method="CANCEL", uri=request.uri, headers=headers)


def make_non_2xx_ack(request: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 300-699 (RFC 3261 17.1.1.3).

    Request-URI, Call-ID, From and Route come from the INVITE, To (with the tag) from
    the response; one Via, the INVITE's top Via, so the server transaction matches it.
    """
    headers = Headers()
    headers.add("Via", str(request.top_via))
    _copy_headers(request.headers, headers, "Route")
    headers.add("Max-Forwards", str(MAX_FORWARDS))
    headers.add("From", _required(request.headers, "From"))
    to = response.headers.get("To")
    if to is None:
        raise ProtocolError("response has no To header")
    headers.add("To", to)
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq.number} ACK")
    return Request(method="ACK", uri=request.uri, headers=headers)


def _server_key(
    via: Via, method: str, from_tag: str | None, call_id: str, cseq_number: int
) -> str:
    # The caller passes INVITE for an ACK: RFC 3261 17.2.3 matches it to the INVITE.
    branch = via.params.get("branch")
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        # RFC 3261 17.2.3: branch, sent-by and method.
        port = via.port
        return f"S|{branch}|{via.host.lower()}:{'' if port is None else port}|{method}"
    # RFC 3261 17.2.3, last paragraphs (RFC 2543 peers): top Via, From tag, Call-ID,
    # CSeq; Request-URI and To tag are checked on the transaction itself since a
    # response (which send_response must map to its transaction) carries neither.
    return f"2543|{via}|{from_tag}|{call_id}|{cseq_number}|{method}"


def _request_server_key(request: Request, method: str) -> str:
    return _server_key(
        request.top_via, method, request.from_.tag, request.call_id, request.cseq.number
    )


# --- the state machine ----------------------------------------------------------------


def _misuse(
    kind: TransactionKind, event: TransactionInput, state: TransactionState
) -> LocalProtocolError:
    """The error for an input the table has no entry for in ``state`` (our misuse)."""
    return LocalProtocolError(
        f"{kind.value} transaction cannot take {event.value!r} in {state.value}"
    )


class TransactionStateMachine:
    """The bare ``(state, input)`` table of one transaction kind; no messages, no time.

    :param kind: which of the four machines.
    :param state: start here instead of the kind's initial state (for tests and tools).
    :param log: where to log transitions (a :class:`CallIdAdapter` normally).
    """

    def __init__(
        self,
        kind: TransactionKind,
        *,
        state: TransactionState | None = None,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
    ) -> None:
        self.kind = kind
        self.state = INITIAL_STATES[kind] if state is None else state
        if self.state not in STATE_TIMERS[kind]:
            raise LocalProtocolError(f"{kind.value} has no state {self.state.value}")
        self._log = log

    def process(self, event: TransactionInput) -> Transition:
        """Take one input; return the transition taken.

        :raises LocalProtocolError: the pair is not in the table (our misuse); the
            machine is then Terminated.
        """
        transition = TRANSITIONS[self.kind].get((self.state, event))
        if transition is None:
            old = self.state
            self._set_state(_S.TERMINATED)
            raise _misuse(self.kind, event, old)
        self._set_state(transition.target)
        return transition

    def _set_state(self, state: TransactionState) -> None:
        if state is not self.state:
            if logger.isEnabledFor(logging.DEBUG):
                self._log.debug(
                    "%s transaction %s -> %s",
                    self.kind.value,
                    self.state.value,
                    state.value,
                )
            self.state = state


# --- one transaction ------------------------------------------------------------------

#: Called with (transaction key, timer, deadline) whenever a timer is armed.
TimerScheduler = Callable[[str, TimerName, float], None]

# One armed timer of a layer: deadline, push order (ties never compare the rest), the
# deadlines of its transaction, timer, transaction key. The entry is live while those
# deadlines still hold it: a stopped timer, or a forgotten transaction (whose deadlines
# are empty), is stale without a lookup by key.
_TimerEntry = tuple[float, int, dict[TimerName, float], TimerName, str]


class _TimerQueue:
    """Every timer armed in one layer, earliest first; stale entries are dropped lazily.

    Most timers run 64*T1 (B, F, H, L, M, J): armed at a ``now`` that never decreases,
    they expire in the order they were armed, so a FIFO keeps them sorted at O(1) per
    timer, where a heap of every timer of the last 32 seconds cost a sift through
    thousands of entries for each push and pop. The other timers (A, E, G, K, I, D...)
    go to a heap only seconds deep. Entries come out in (deadline, push order) order
    across both, exactly as from one heap.

    :param fifo_interval: the interval (64*T1) whose timers take the FIFO.
    """

    __slots__ = (
        "_fifo",
        "_fifo_interval",
        "_head",
        "_head_known",
        "_heap",
        "_next_sequence",
    )

    def __init__(self, fifo_interval: float) -> None:
        self._fifo: deque[_TimerEntry] = deque()
        self._fifo_interval = fifo_interval
        self._heap: list[_TimerEntry] = []
        # Ties are broken by push order, never by comparing the rest of an entry.
        self._next_sequence = itertools.count().__next__
        # The entry next_deadline last found earliest among the live ones (None: no
        # live timer), while _head_known. The stack asks after every message; most
        # times that entry is still live and no push came earlier, so the answer
        # stands without looking at the heap and the FIFO again.
        self._head: _TimerEntry | None = None
        self._head_known = False

    def push(
        self,
        deadline: float,
        interval: float,
        deadlines: dict[TimerName, float],
        name: TimerName,
        key: str,
    ) -> None:
        """Arm timer ``name`` of transaction ``key`` (``deadlines`` holds it)."""
        entry = (deadline, self._next_sequence(), deadlines, name, key)
        fifo = self._fifo
        # A caller whose clock went back would break the FIFO's order: heap, then.
        if interval == self._fifo_interval and (not fifo or fifo[-1][0] <= deadline):
            fifo.append(entry)
        else:
            heapq.heappush(self._heap, entry)
        if self._head_known:
            # A push can only bring the earliest deadline forward.
            head = self._head
            if head is None or deadline < head[0]:
                self._head = entry

    def pop_due(self, now: float) -> _TimerEntry | None:
        """The earliest entry due at ``now`` (live or stale), removed; else ``None``."""
        heap = self._heap
        fifo = self._fifo
        if fifo and (not heap or fifo[0] < heap[0]):
            if fifo[0][0] <= now:
                self._head_known = False  # the entry popped may be the one kept
                return fifo.popleft()
        elif heap and heap[0][0] <= now:
            self._head_known = False
            return heapq.heappop(heap)
        return None

    def next_deadline(self) -> float | None:
        """The earliest live deadline.

        The entry found last time answers again while it is live (a push that comes
        earlier replaces it, a pop forgets it); else the stale entries before the
        earliest live one are dropped and that one is kept.
        """
        if self._head_known:
            head = self._head
            if head is None:
                return None
            if head[2].get(head[3]) == head[0]:
                return head[0]
        heap = self._heap
        while heap:
            entry = heap[0]
            if entry[2].get(entry[3]) == entry[0]:
                break
            heapq.heappop(heap)
        fifo = self._fifo
        while fifo:
            entry = fifo[0]
            if entry[2].get(entry[3]) == entry[0]:
                break
            fifo.popleft()
        if not heap:
            head = fifo[0] if fifo else None
        elif not fifo:
            head = heap[0]
        else:
            head = fifo[0] if fifo[0] < heap[0] else heap[0]
        self._head = head
        self._head_known = True
        return None if head is None else head[0]


def _ignore_timer(key: str, name: TimerName, deadline: float) -> None:
    """The default scheduler of a transaction driven by hand."""


# Timers.initial answered once per (Timers, reliable) rather than per timer started.
# Keyed by id: a Timers' generated __hash__ is Python code; the entry keeps the
# Timers alive, so its id cannot be reused while the entry exists.
_INITIAL_INTERVALS: dict[
    tuple[int, bool], tuple[Timers, dict[TimerName, float | None]]
] = {}
_INITIAL_INTERVALS_LIMIT = 64


def _initial_intervals(timers: Timers, reliable: bool) -> dict[TimerName, float | None]:
    entry = _INITIAL_INTERVALS.get((id(timers), reliable))
    if entry is not None and entry[0] is timers:
        return entry[1]
    if len(_INITIAL_INTERVALS) >= _INITIAL_INTERVALS_LIMIT:
        _INITIAL_INTERVALS.clear()
    intervals = {name: timers.initial(name, reliable=reliable) for name in TimerName}
    _INITIAL_INTERVALS[id(timers), reliable] = (timers, intervals)
    return intervals


class Transaction:
    """One transaction: its state machine plus messages, destination and deadlines.

    Driven by :meth:`handle` (one input at ``now``); bytes to send are appended to
    ``outgoing``; armed timers are reported to ``scheduler`` and kept in
    :meth:`deadline`.

    The ``(state, input)`` table is the one :class:`TransactionStateMachine` runs,
    read here directly rather than through a machine object: a bridged call drives a
    dozen transactions, and the extra object and call per input were a measurable
    share of the switch's cost per call.

    :param peer: the request's destination (client) or the response destination
        (server, from :func:`response_destination`).
    """

    __slots__ = (
        "_ack_bytes",
        "_adapter",
        "_deadlines",
        "_initial",
        "_intervals",
        "_last_response_bytes",
        "_outgoing",
        "_request_bytes",
        "_scheduler",
        "_state",
        "_state_timers",
        "_table",
        "_timer_queue",
        "_timers",
        "key",
        "kind",
        "last_response",
        "peer",
        "reliable",
        "request",
    )

    def __init__(
        self,
        *,
        kind: TransactionKind,
        key: str,
        request: Request,
        peer: Address,
        timers: Timers,
        outgoing: list[Transmit],
        scheduler: TimerScheduler = _ignore_timer,
        timer_queue: _TimerQueue | None = None,
    ) -> None:
        self.kind = kind
        self.key = key
        self.request = request
        self.peer = peer
        self.reliable = reliable = peer[0].upper() != UNRELIABLE_TRANSPORT
        self.last_response: Response | None = None
        self._timers = timers
        self._initial = _initial_intervals(timers, reliable)
        self._outgoing = outgoing
        self._scheduler = scheduler
        # The timers of the layer that owns this transaction, armed there directly
        # (``scheduler`` serves a transaction driven on its own).
        self._timer_queue = timer_queue
        self._adapter: CallIdAdapter | None = None
        self._state = INITIAL_STATES[kind]
        self._table = TRANSITIONS[kind]
        self._state_timers = STATE_TIMERS[kind]
        self._request_bytes: bytes | None = None
        self._last_response_bytes: bytes | None = None
        self._ack_bytes: bytes | None = None
        self._deadlines: dict[TimerName, float] = {}
        self._intervals: dict[TimerName, float] = {}

    @property
    def state(self) -> TransactionState:
        """The current state."""
        return self._state

    @property
    def _log(self) -> CallIdAdapter:
        # Made on first use: most transactions never log above DEBUG.
        adapter = self._adapter
        if adapter is None:
            adapter = self._adapter = CallIdAdapter(
                logger, {"call_id": self.request.call_id}
            )
        return adapter

    def deadline(self, name: TimerName) -> float | None:
        """When timer ``name`` fires, or ``None`` if it is not running."""
        return self._deadlines.get(name)

    def next_deadline(self) -> float | None:
        """The earliest running timer's deadline."""
        return min(self._deadlines.values(), default=None)

    def start(self, now: float, *, data: bytes | None = None) -> None:
        """Start a client transaction: send the request, arm the first timers.

        :param data: the request as already rendered, if the caller has it.
        """
        if self.kind not in _CLIENT_KINDS:
            raise LocalProtocolError("only a client transaction sends its request")
        self._request_bytes = data = data or self.request.to_bytes()
        self._outgoing.append(Transmit(data=data, destination=self.peer))
        for name in self._state_timers[self._state]:
            self._start_timer(name, now, fired=False)

    def handle(
        self,
        event: TransactionInput,
        now: float,
        *,
        message: Request | Response | None = None,
        source: Address | None = None,
    ) -> list[Event]:
        """Take one input at ``now``; return the events for the TU.

        :param message: the response received or to send, or the request received.
        :param source: where a received request came from.
        :raises LocalProtocolError: the input is not allowed in this state (the
            transaction is then Terminated and sends nothing more).
        """
        old_state = self._state
        deadlines = self._deadlines
        fired = _INPUT_TIMERS.get(event)
        if fired is not None:
            deadlines.pop(fired, None)
        transition = self._table.get((old_state, event))
        if transition is None:
            self._set_state(_S.TERMINATED)
            deadlines.clear()
            raise _misuse(self.kind, event, old_state)
        target = transition.target
        if target is not old_state:
            # _set_state, inlined for the inputs that reach the table.
            if logger.isEnabledFor(logging.DEBUG):
                self._log_transition(target)
            self._state = target
        events: list[Event] = []
        for action in transition.actions:
            self._run(action, events, message, source)
        if target is not old_state:
            if deadlines:
                allowed = self._state_timers[target]
                for name in [name for name in deadlines if name not in allowed]:
                    del deadlines[name]
            if target in _LINGER_STATES[self.kind]:
                self._shed_parse_caches()
        for name in transition.start:
            self._start_timer(name, now, fired=name is fired)
        return events

    def _set_state(self, state: TransactionState) -> None:
        if state is self._state:
            return
        if logger.isEnabledFor(logging.DEBUG):
            self._log_transition(state)
        self._state = state

    def _log_transition(self, state: TransactionState) -> None:
        self._log.debug(
            "%s transaction %s -> %s", self.kind.value, self._state.value, state.value
        )

    def _shed_parse_caches(self) -> None:
        """Drop the parsed headers of the messages kept only to absorb retransmissions.

        A server transaction lingers up to 64*T1 after its final response (Timers J
        and L); by then the TU has read the request and built the response. What is
        kept is only re-read for RFC 2543 matching or an error report, and parses
        again on demand, while thousands of lingering copies of parsed Vias, URIs and
        addresses make every garbage collection of the process slower.
        """
        self.request.headers._cache.clear()
        if self.last_response is not None:
            self.last_response.headers._cache.clear()

    # --- actions

    def _run(
        self,
        action: Action,
        events: list[Event],
        message: Request | Response | None,
        source: Address | None,
    ) -> None:
        if action is _A.SEND_RESPONSE:
            if isinstance(message, Response):
                self.last_response = message
                self._last_response_bytes = data = message.to_bytes()
                self._outgoing.append(Transmit(data=data, destination=self.peer))
        elif action is _A.PASS_TO_TU:
            if isinstance(message, Response):
                events.append(
                    ResponseReceived(response=message, transaction_key=self.key)
                )
            elif isinstance(message, Request):
                # RFC 6026 8.7: the ACK for a 2xx is the TU's, outside the transaction.
                events.append(
                    RequestReceived(
                        request=message,
                        source=source or self.peer,
                        transaction_key=None,
                    )
                )
        elif action is _A.SEND_ACK:
            if isinstance(message, Response):
                self._ack_bytes = make_non_2xx_ack(self.request, message).to_bytes()
                self._transmit(self._ack_bytes)
        elif action is _A.RESEND_ACK:
            if self._ack_bytes is not None:
                self._transmit(self._ack_bytes)
        elif action is _A.RETRANSMIT_REQUEST:
            self._transmit(self._request_bytes or self.request.to_bytes())
        elif action is _A.RESEND_RESPONSE:
            if self._last_response_bytes is not None:
                self._transmit(self._last_response_bytes)
        elif action is _A.REPORT_TIMEOUT:
            self._log.info("%s transaction timed out", self.kind.value)
            events.append(
                TransactionTimedOut(transaction_key=self.key, request=self.request)
            )
        else:  # _A.REPORT_TRANSPORT_ERROR
            self._log.warning("%s transaction: transport error", self.kind.value)
            events.append(
                TransactionTransportError(
                    transaction_key=self.key, request=self.request
                )
            )

    def _start_timer(self, name: TimerName, now: float, *, fired: bool) -> None:
        previous = self._intervals.get(name) if fired else None
        if previous is not None:
            interval: float | None = self._timers.backoff(
                name, previous, proceeding=self._state is _S.PROCEEDING
            )
        else:
            interval = self._initial[name]
        if interval is None:
            return
        self._intervals[name] = interval
        deadline = now + interval
        deadlines = self._deadlines
        deadlines[name] = deadline
        queue = self._timer_queue
        if queue is not None:
            queue.push(deadline, interval, deadlines, name, self.key)
        else:
            self._scheduler(self.key, name, deadline)

    def _transmit(self, data: bytes) -> None:
        self._outgoing.append(Transmit(data=data, destination=self.peer))


# --- the layer ------------------------------------------------------------------------


_CLIENT_KINDS = (TransactionKind.INVITE_CLIENT, TransactionKind.NON_INVITE_CLIENT)
# RFC 3261 8.2.2.2: From tag, Call-ID, CSeq number and method of an ongoing request.
_MergeKey = tuple[str | None, str, int, str]


class TransactionLayer:
    """Every transaction of one SIP element, matched and timed (RFC 3261 section 17).

    Driven by three calls: :meth:`receive` for each parsed message from the transport,
    :meth:`send_request` / :meth:`send_response` from the TU, and :meth:`handle_timer`
    when :meth:`next_deadline` is reached. After each call, :meth:`take_outgoing`
    returns what to transmit. ``now`` must never decrease between calls.

    :param timers: T1, T2, T4 and Timer D.
    :param send_trying: an INVITE server transaction answers 100 Trying at once
        (RFC 3261 17.2.1 asks for it within 200 ms unless the TU answers first).
    """

    def __init__(
        self, *, timers: Timers = DEFAULT_TIMERS, send_trying: bool = True
    ) -> None:
        self.timers = timers
        self.send_trying = send_trying
        self._client: dict[str, Transaction] = {}
        self._server: dict[str, Transaction] = {}
        # RFC 3261 8.2.2.2: requests without To tag, by From tag/Call-ID/CSeq.
        self._merge_index: dict[_MergeKey, str] = {}
        self._merge_keys: dict[str, _MergeKey] = {}
        self._timer_queue = _TimerQueue(timers.transaction_timeout)
        self._outgoing: list[Transmit] = []
        self._pending: list[Event] = []
        # Transactions the layer runs for itself (the 482 answers): no events.
        self._silent: set[str] = set()
        # Server transactions by id() of the request that created them, for
        # server_transaction_key; each entry lives as long as its transaction, which
        # holds the request, so the id cannot be reused meanwhile.
        self._server_by_request: dict[int, Transaction] = {}

    # --- public API

    def receive(
        self, message: Request | Response, source: Address, now: float
    ) -> list[Event]:
        """Feed one message from the transport; return the events for the TU.

        :raises ProtocolError: a request lacks a header matching needs (Via, CSeq,
            Call-ID, From, To); answer it statelessly. A response that bad raises
            :class:`~switch.sip.errors.BadMessage` too; the caller drops it.
        """
        if isinstance(message, Response):
            events = self._receive_response(message, now)
        else:
            events = self._receive_request(message, source, now)
        if self._pending:
            return self._take_pending() + events
        return events

    def send_request(
        self,
        request: Request,
        destination: Address,
        now: float,
        *,
        data: bytes | None = None,
    ) -> str:
        """Start a client transaction for ``request`` and send it; return its key.

        The request must carry a top Via whose branch begins with the magic cookie
        (RFC 3261 8.1.1.7; :func:`new_branch`). An ACK (for a 2xx, RFC 3261 13.2.2.4)
        is sent once without a transaction; its key is returned but never used.

        :param data: ``request.to_bytes()`` when the caller rendered it already (to
            check its size against the UDP limit), so that it is not rendered twice.

        :raises LocalProtocolError: no usable Via, or the branch is already in use.
        """
        try:
            branch = request.top_via.params.get("branch")
        except ProtocolError as error:
            raise LocalProtocolError(f"request has no usable Via: {error}") from error
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise LocalProtocolError(f"branch {branch!r} lacks the magic cookie")
        # RFC 3261 17.1.3: a client transaction is its branch and method (the same
        # key is built in _receive_response).
        key = f"C|{branch}|{request.method}"
        if request.method == "ACK":
            self._outgoing.append(
                Transmit(data=data or request.to_bytes(), destination=destination)
            )
            return key
        if key in self._client:
            raise LocalProtocolError(f"branch {branch} already has a {request.method}")
        kind = (
            TransactionKind.INVITE_CLIENT
            if request.method == "INVITE"
            else TransactionKind.NON_INVITE_CLIENT
        )
        transaction = self._new_transaction(kind, key, request, destination)
        self._client[key] = transaction
        transaction.start(now, data=data)
        return key

    def send_response(
        self, response: Response, now: float, *, transaction_key: str | None = None
    ) -> None:
        """Send ``response`` through its server transaction.

        :param transaction_key: the key from :class:`RequestReceived`; found from the
            response's Via, From tag, Call-ID and CSeq when omitted.
        :raises LocalProtocolError: no such server transaction (send a stateless answer
            to :func:`response_destination` instead), or the transaction's state does
            not allow this response (the transaction is then terminated).
        """
        key = transaction_key
        if key is None:
            key = _server_key(
                response.top_via,
                response.cseq.method,
                response.from_.tag,
                response.call_id,
                response.cseq.number,
            )
        transaction = self._server.get(key)
        if transaction is None:
            raise LocalProtocolError(f"no server transaction {key}")
        status = response.status
        if status < 200:
            event = _I.SEND_1XX
        elif status < 300:
            event = _I.SEND_2XX
        else:
            event = _I.SEND_300_699
        self._pending.extend(self._drive(transaction, event, now, message=response))

    def server_transaction_key(self, request: Request) -> str | None:
        """The key of the live server transaction that ``request`` created, if any.

        Found by the request object itself (the one :class:`RequestReceived` carried),
        so a TU answering it needs neither the key nor a parse of its response's Via
        and From, which :meth:`send_response` would otherwise match on.
        """
        transaction = self._server_by_request.get(id(request))
        if transaction is not None and transaction.request is request:
            return transaction.key
        return None

    def transport_error(self, key: str, now: float) -> list[Event]:
        """The transport failed to send for transaction ``key`` (RFC 3261 17.1.4)."""
        transaction = self._lookup(key)
        events = []
        if transaction is not None:
            events = self._drive(transaction, _I.TRANSPORT_ERROR, now)
        return self._take_pending() + events

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at ``now``; return the events for the TU."""
        events = self._take_pending()
        pop_due = self._timer_queue.pop_due
        client = self._client
        server = self._server
        # Timers of zero seconds armed meanwhile (D, I, J, K over TCP) are due at once.
        while (entry := pop_due(now)) is not None:
            deadline, _, deadlines, name, key = entry
            # Most entries are stale (a timer stopped early): no lookup for those.
            if deadlines.get(name) != deadline:
                continue
            transaction = client.get(key) or server.get(key)
            if transaction is not None:
                events.extend(self._drive(transaction, TIMER_INPUTS[name], now))
        return events

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must next run, or ``None`` with no timer running."""
        return self._timer_queue.next_deadline()

    def take_outgoing(self) -> list[Transmit]:
        """Everything to put on the wire since the last call, in order."""
        # Cleared in place: every transaction holds a reference to this very list.
        outgoing = self._outgoing
        if not outgoing:
            return []
        taken = outgoing[:]
        outgoing.clear()
        return taken

    def transaction_state(self, key: str) -> TransactionState | None:
        """The state of transaction ``key``, or ``None`` once it is gone."""
        transaction = self._lookup(key)
        return None if transaction is None else transaction.state

    def __len__(self) -> int:
        return len(self._client) + len(self._server)

    def __iter__(self) -> Iterator[Transaction]:
        yield from self._client.values()
        yield from self._server.values()

    # --- private: driving

    def _drive(
        self,
        transaction: Transaction,
        event: TransactionInput,
        now: float,
        *,
        message: Request | Response | None = None,
        source: Address | None = None,
    ) -> list[Event]:
        key = transaction.key
        try:
            events = transaction.handle(event, now, message=message, source=source)
        except LocalProtocolError:
            self._forget(transaction)
            if key not in self._silent:
                self._pending.append(TransactionTerminated(transaction_key=key))
            self._silent.discard(key)
            raise
        if transaction._state is _S.TERMINATED:
            self._forget(transaction)
            events.append(TransactionTerminated(transaction_key=key))
        if self._silent and key in self._silent:
            if transaction._state is _S.TERMINATED:
                self._silent.discard(key)
            return []
        return events

    def _forget(self, transaction: Transaction) -> None:
        key = transaction.key
        if transaction.kind in _CLIENT_KINDS:
            del self._client[key]
        else:
            del self._server[key]
            merge_key = self._merge_keys.pop(key, None)
            if merge_key is not None:
                del self._merge_index[merge_key]
            request_id = id(transaction.request)
            if self._server_by_request.get(request_id) is transaction:
                del self._server_by_request[request_id]

    def _lookup(self, key: str) -> Transaction | None:
        return self._client.get(key) or self._server.get(key)

    def _new_transaction(
        self, kind: TransactionKind, key: str, request: Request, peer: Address
    ) -> Transaction:
        return Transaction(
            kind=kind,
            key=key,
            request=request,
            peer=peer,
            timers=self.timers,
            outgoing=self._outgoing,
            timer_queue=self._timer_queue,
        )

    def _take_pending(self) -> list[Event]:
        pending, self._pending = self._pending, []
        return pending

    # --- private: receiving

    def _match_server(self, request: Request, method: str) -> Transaction | None:
        return self._match_server_key(request, _request_server_key(request, method))

    def _match_server_key(self, request: Request, key: str) -> Transaction | None:
        transaction = self._server.get(key)
        if transaction is None or not key.startswith("2543|"):
            return transaction
        # RFC 3261 17.2.3 (RFC 2543 peers): the Request-URI must match too, and the To
        # tag must be the request's (the response's, for an ACK).
        original = transaction.request
        # TODO: RFC 3261 17.2.3 wants Request-URI *equality* (19.1.4); the rendered
        # forms are compared, so an RFC 2543 peer that re-encodes its URI between
        # retransmissions gets a second transaction (and the TU a duplicate request).
        if str(request.uri) != str(original.uri):
            return None
        if request.method == "ACK":
            response = transaction.last_response
            expected = None if response is None else response.to.tag
            return transaction if request.to.tag == expected else None
        return transaction if request.to.tag == original.to.tag else None

    def _receive_request(
        self, request: Request, source: Address, now: float
    ) -> list[Event]:
        method = request.method
        if method == "ACK":
            transaction = self._match_server_key(
                request, _request_server_key(request, "INVITE")
            )
            if transaction is None:
                # RFC 3261 17.2.3 / RFC 6026 8.7: an ACK for a 2xx matches nothing.
                return [
                    RequestReceived(
                        request=request, source=source, transaction_key=None
                    )
                ]
            return self._drive(
                transaction, _I.RECEIVE_ACK, now, message=request, source=source
            )
        key = _request_server_key(request, method)
        transaction = self._match_server_key(request, key)
        if transaction is not None:
            return self._drive(transaction, _I.RECEIVE_REQUEST, now, message=request)
        return self._new_server_transaction(request, source, now, key)

    def _new_server_transaction(
        self, request: Request, source: Address, now: float, key: str
    ) -> list[Event]:
        method = request.method
        if key in self._server:
            # RFC 2543 matching found the key but not the Request-URI or To tag: the
            # same Via, From tag, Call-ID and CSeq on another request is garbage.
            logger.debug("[%s] RFC 2543 request clashes with %s", request.call_id, key)
            return []
        kind = (
            TransactionKind.INVITE_SERVER
            if method == "INVITE"
            else TransactionKind.NON_INVITE_SERVER
        )
        peer = response_destination(request.top_via, source)
        transaction = self._new_transaction(kind, key, request, peer)

        # RFC 3261 8.2.2.2: a request without To tag whose From tag, Call-ID and CSeq
        # equal an ongoing transaction's, yet which did not match it, was merged on the
        # way (forked and looped back): answer 482 ourselves.
        merge_key = None
        if request.to.tag is None:
            merge_key = (
                request.from_.tag,
                request.call_id,
                request.cseq.number,
                method,
            )
            if merge_key in self._merge_index:
                self._server[key] = transaction
                self._silent.add(key)
                logger.debug(
                    "[%s] merged request answered 482, original %s",
                    request.call_id,
                    self._merge_index[merge_key],
                )
                loop_detected = make_response(
                    request, STATUS_LOOP_DETECTED, REASON_LOOP_DETECTED
                )
                transaction.handle(_I.SEND_300_699, now, message=loop_detected)
                return []
            self._merge_index[merge_key] = key
            self._merge_keys[key] = merge_key
        self._server[key] = transaction
        self._server_by_request[id(request)] = transaction

        cancelled = None
        if method == "CANCEL":
            # RFC 3261 9.2: the INVITE with the CANCEL's branch, sent-by (or RFC 2543
            # fields) but method INVITE.
            invite = self._match_server(request, "INVITE")
            cancelled = None if invite is None else invite.key
        events: list[Event] = [
            RequestReceived(
                request=request,
                source=source,
                transaction_key=key,
                cancelled_transaction_key=cancelled,
            )
        ]
        if kind is TransactionKind.INVITE_SERVER and self.send_trying:
            trying = make_response(request, STATUS_TRYING, REASON_TRYING)
            events.extend(self._drive(transaction, _I.SEND_1XX, now, message=trying))
        return events

    def _receive_response(self, response: Response, now: float) -> list[Event]:
        # TODO: RFC 3261 18.1.2 also wants the top Via's sent-by checked against the
        # value we inserted; only the 64-bit random branch is matched, so a forged
        # response must guess it.
        branch = response.top_via.params.get("branch")
        transaction = None
        if branch is not None:
            # RFC 3261 17.1.3: top Via branch and CSeq method, as in send_request.
            key = f"C|{branch}|{response.cseq.method}"
            transaction = self._client.get(key)
        if transaction is None:
            # RFC 6026 (updating RFC 3261 18.1.2): a stray response is dropped.
            logger.debug(
                "[%s] stray %d response dropped", response.call_id, response.status
            )
            return []
        status = response.status
        if status < 200:
            event = _I.RECEIVE_1XX
        elif status < 300:
            event = _I.RECEIVE_2XX
        else:
            event = _I.RECEIVE_300_699
        return self._drive(transaction, event, now, message=response)
