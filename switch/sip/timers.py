"""SIP transaction timer values (RFC 3261 section 17, table 4; RFC 6026 section 8).

Every timer of the four transaction state machines derives from three named
estimates: T1 (round-trip time), T2 (longest retransmit interval for non-INVITE
requests and INVITE responses) and T4 (longest time a message stays in the network).
:class:`Timers` holds them and answers "how long is timer X on this transport?" so
the state machines carry no literal seconds. Timers that only absorb retransmissions
(D, I, J, K) are zero on reliable transports; the retransmission timers (A, E, G) are
not armed at all there.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from switch.sip.errors import LocalProtocolError

# RFC 3261 section 17.1.1.1: T1 default 500 ms; T2 4 s; T4 5 s (table 4).
DEFAULT_T1 = 0.5
DEFAULT_T2 = 4.0
DEFAULT_T4 = 5.0
# RFC 3261 section 17.1.1.2: Timer D is "at least 32 seconds for unreliable transports".
DEFAULT_TIMER_D = 32.0
# RFC 3261 table 4: timers B, F, H and J (and RFC 6026 L and M) last 64*T1.
TRANSACTION_TIMEOUT_FACTOR = 64


class TimerName(enum.Enum):
    """The transaction timers, lettered as in RFC 3261 table 4 and RFC 6026."""

    __hash__ = object.__hash__  # by identity, see transaction.TransactionKind

    A = "A"  # INVITE request retransmit interval, UDP only (17.1.1.2)
    B = "B"  # INVITE transaction timeout (17.1.1.2)
    D = "D"  # wait time for response retransmits (17.1.1.2)
    E = "E"  # non-INVITE request retransmit interval, UDP only (17.1.2.2)
    F = "F"  # non-INVITE transaction timeout (17.1.2.2)
    G = "G"  # INVITE response retransmit interval (17.2.1)
    H = "H"  # wait time for ACK receipt (17.2.1)
    I = "I"  # wait time for ACK retransmits (17.2.1)  # noqa: E741
    J = "J"  # wait time for non-INVITE request retransmits (17.2.2)
    K = "K"  # wait time for response retransmits (17.1.2.2)
    L = "L"  # wait time for accepted INVITE request retransmits (RFC 6026 8.7)
    M = "M"  # wait time for retransmission of 2xx to INVITE (RFC 6026 8.4)


# RFC 3261 section 17: these resend a message, so they exist only over UDP.
RETRANSMIT_TIMERS = frozenset({TimerName.A, TimerName.E, TimerName.G})


@dataclass(frozen=True, slots=True)
class Timers:
    """The T1/T2/T4 estimates and every transaction timer derived from them.

    :param t1: RTT estimate in seconds (RFC 3261 17.1.1.1, default 0.5).
    :param t2: cap of the request and INVITE-response retransmit interval (default 4).
    :param t4: how long a message may linger in the network (default 5).
    :param timer_d: Timer D over unreliable transports; RFC 3261 17.1.1.2 asks for at
        least 32 s whatever T1 is, so it is its own knob.
    """

    t1: float = DEFAULT_T1
    t2: float = DEFAULT_T2
    t4: float = DEFAULT_T4
    timer_d: float = DEFAULT_TIMER_D

    def __post_init__(self) -> None:
        # RFC 3261 17.1.1.1: T1 is a positive RTT estimate; T2 caps the doubling of T1.
        if not self.t1 > 0:
            raise LocalProtocolError(f"T1 must be positive, not {self.t1}")
        if not self.t2 >= self.t1:
            raise LocalProtocolError(f"T2 ({self.t2}) must not be below T1 ({self.t1})")
        if not self.t4 > 0:
            raise LocalProtocolError(f"T4 must be positive, not {self.t4}")
        if not self.timer_d >= 0:
            raise LocalProtocolError(
                f"Timer D must not be negative, not {self.timer_d}"
            )

    @property
    def transaction_timeout(self) -> float:
        """64*T1: timers B, F, H, L, M and (over UDP) J."""
        return TRANSACTION_TIMEOUT_FACTOR * self.t1

    def initial(self, name: TimerName, *, reliable: bool) -> float | None:
        """How long timer ``name`` runs when first started, in seconds.

        :param reliable: the transport is not UDP (RFC 3261 17: TCP, TLS, SCTP...).
        :returns: ``None`` when the timer is not started on this transport at all
            (A, E and G over a reliable transport).
        """
        if name in RETRANSMIT_TIMERS:
            return None if reliable else self.t1
        if name is TimerName.D:
            return 0.0 if reliable else self.timer_d
        if name in (TimerName.I, TimerName.K):
            return 0.0 if reliable else self.t4
        if name is TimerName.J:
            return 0.0 if reliable else self.transaction_timeout
        # B, F, H, L, M: the same on every transport.
        return self.transaction_timeout

    def backoff(self, name: TimerName, previous: float, *, proceeding: bool) -> float:
        """The interval after retransmit timer ``name`` fired having run ``previous``.

        RFC 3261 17.1.1.2: A doubles without a cap. 17.1.2.2: E doubles up to T2
        while Trying and is T2 once Proceeding. 17.2.1: G doubles up to T2.
        """
        if name is TimerName.A:
            return 2 * previous
        if name is TimerName.E and proceeding:
            return self.t2
        if name in (TimerName.E, TimerName.G):
            return min(2 * previous, self.t2)
        raise LocalProtocolError(f"timer {name.value} is not a retransmit timer")
