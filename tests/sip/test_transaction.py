"""Tests for switch.sip.transaction and switch.sip.timers (RFC 3261 17, RFC 6026).

Messages are built as bytes and parsed with the real parser; a fake clock is a float
moved to each :meth:`TransactionLayer.next_deadline` in turn. Nothing here sleeps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.sip.errors import LocalProtocolError, ProtocolError
from switch.sip.headers import parse_via
from switch.sip.message import Request, Response, make_response, parse_message
from switch.sip.timers import RETRANSMIT_TIMERS, TimerName, Timers
from switch.sip.transaction import (
    INITIAL_STATES,
    MAGIC_COOKIE,
    STATE_TIMERS,
    TIMER_INPUTS,
    TRANSITIONS,
    Action,
    Address,
    CallIdAdapter,
    Event,
    RequestReceived,
    ResponseReceived,
    Transaction,
    TransactionInput,
    TransactionKind,
    TransactionLayer,
    TransactionState,
    TransactionStateMachine,
    TransactionTerminated,
    TransactionTimedOut,
    TransactionTransportError,
    Transmit,
    _TimerQueue,
    is_reliable,
    make_cancel,
    make_non_2xx_ack,
    new_branch,
    new_tag,
    response_destination,
)

UDP_PEER: Address = ("UDP", "192.0.2.10", 5060)
TCP_PEER: Address = ("TCP", "192.0.2.10", 40312)
BRANCH = "z9hG4bKbranch1"
S = TransactionState
I = TransactionInput  # noqa: E741


# --- message factories ----------------------------------------------------------------


def request(
    method: str = "INVITE",
    *,
    branch: str | None = BRANCH,
    transport: str = "UDP",
    sent_by: str = "client.example:5060",
    to_tag: str | None = None,
    from_tag: str | None = "fromtag",
    call_id: str = "call-1",
    cseq: int = 1,
    cseq_method: str | None = None,
    uri: str = "sip:bob@server.example",
    extra: tuple[str, ...] = (),
) -> Request:
    via = f"Via: SIP/2.0/{transport} {sent_by}"
    if branch is not None:
        via += f";branch={branch}"
    lines = [
        f"{method} {uri} SIP/2.0",
        via,
        "Max-Forwards: 70",
        "From: <sip:alice@client.example>" + (f";tag={from_tag}" if from_tag else ""),
        "To: <sip:bob@server.example>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, Request)
    return message


def respond(req: Request, status: int, *, to_tag: str | None = "totag") -> Response:
    """A response as the peer would put it on the wire (round-tripped through bytes)."""
    message = parse_message(
        make_response(req, status, to_tag=to_tag if status > 100 else None).to_bytes()
    )
    assert isinstance(message, Response)
    return message


def wire(transmit: Transmit) -> Request | Response:
    return parse_message(transmit.data)


def statuses(transmits: list[Transmit]) -> list[int]:
    out = []
    for transmit in transmits:
        message = wire(transmit)
        assert isinstance(message, Response)
        out.append(message.status)
    return out


@dataclass
class Fired:
    when: float
    events: list[Event]
    outgoing: list[Transmit] = field(default_factory=list)


def run_until(layer: TransactionLayer, until: float) -> list[Fired]:
    """Move the fake clock from deadline to deadline up to ``until``."""
    fired = []
    while (deadline := layer.next_deadline()) is not None and deadline <= until:
        events = layer.handle_timer(deadline)
        fired.append(Fired(deadline, events, layer.take_outgoing()))
        after = layer.next_deadline()
        assert after is None or after > deadline
    return fired


def send_times(fired: list[Fired]) -> list[float]:
    return [item.when for item in fired for _ in item.outgoing]


def client(
    req: Request, peer: Address = UDP_PEER, **kwargs: object
) -> tuple[TransactionLayer, str]:
    layer = TransactionLayer(**kwargs)  # type: ignore[arg-type]
    key = layer.send_request(req, peer, 0.0)
    assert [t.data for t in layer.take_outgoing()] == [req.to_bytes()]
    return layer, key


def server(
    req: Request, peer: Address = UDP_PEER, *, send_trying: bool = False
) -> tuple[TransactionLayer, str]:
    layer = TransactionLayer(send_trying=send_trying)
    events = layer.receive(req, peer, 0.0)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, RequestReceived)
    assert event.request is req
    assert event.source == peer
    assert event.transaction_key is not None
    return layer, event.transaction_key


# --- timers ---------------------------------------------------------------------------


def test_timer_defaults_follow_rfc_3261_table_4() -> None:
    timers = Timers()
    assert (timers.t1, timers.t2, timers.t4, timers.timer_d) == (0.5, 4.0, 5.0, 32.0)
    assert timers.transaction_timeout == 32.0
    udp = {name: timers.initial(name, reliable=False) for name in TimerName}
    tcp = {name: timers.initial(name, reliable=True) for name in TimerName}
    assert udp == {
        TimerName.A: 0.5,
        TimerName.B: 32.0,
        TimerName.D: 32.0,
        TimerName.E: 0.5,
        TimerName.F: 32.0,
        TimerName.G: 0.5,
        TimerName.H: 32.0,
        TimerName.I: 5.0,
        TimerName.J: 32.0,
        TimerName.K: 5.0,
        TimerName.L: 32.0,
        TimerName.M: 32.0,
    }
    assert tcp == {
        **{name: 32.0 for name in TimerName},
        TimerName.A: None,
        TimerName.E: None,
        TimerName.G: None,
        TimerName.D: 0.0,
        TimerName.I: 0.0,
        TimerName.J: 0.0,
        TimerName.K: 0.0,
    }


def test_timers_derive_from_t1() -> None:
    timers = Timers(t1=0.1, t2=0.4, t4=1.0, timer_d=40.0)
    assert timers.initial(TimerName.B, reliable=True) == pytest.approx(6.4)
    assert timers.initial(TimerName.D, reliable=False) == 40.0
    assert timers.initial(TimerName.K, reliable=False) == 1.0


def test_timer_backoff() -> None:
    timers = Timers()
    assert timers.backoff(TimerName.A, 8.0, proceeding=False) == 16.0
    assert timers.backoff(TimerName.E, 0.5, proceeding=False) == 1.0
    assert timers.backoff(TimerName.E, 4.0, proceeding=False) == 4.0
    assert timers.backoff(TimerName.E, 0.5, proceeding=True) == 4.0
    assert timers.backoff(TimerName.G, 2.0, proceeding=False) == 4.0
    assert timers.backoff(TimerName.G, 4.0, proceeding=False) == 4.0
    with pytest.raises(LocalProtocolError, match="not a retransmit timer"):
        timers.backoff(TimerName.B, 1.0, proceeding=False)
    assert frozenset({TimerName.A, TimerName.E, TimerName.G}) == RETRANSMIT_TIMERS


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"t1": 0.0}, "T1 must be positive"),
        ({"t1": 1.0, "t2": 0.5}, "must not be below T1"),
        ({"t4": -1.0}, "T4 must be positive"),
        ({"timer_d": -1.0}, "Timer D must not be negative"),
    ],
)
def test_timers_reject_nonsense(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        Timers(**kwargs)


# --- helpers --------------------------------------------------------------------------


def test_new_branch_and_tag_are_fresh() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100
    assert all(branch.startswith(MAGIC_COOKIE) for branch in branches)
    assert len({new_tag() for _ in range(100)}) == 100


def test_is_reliable() -> None:
    assert not is_reliable(UDP_PEER)
    assert not is_reliable(("udp", "h", 1))
    assert is_reliable(TCP_PEER)
    assert is_reliable(("TLS", "h", 5061))


@pytest.mark.parametrize(
    ("via", "source", "expected"),
    [
        # RFC 3261 18.2.2: sent-by, default port.
        ("SIP/2.0/UDP 198.51.100.1", None, ("UDP", "198.51.100.1", 5060)),
        ("SIP/2.0/TLS a.example", None, ("TLS", "a.example", 5061)),
        ("SIP/2.0/UDP a.example:5070", None, ("UDP", "a.example", 5070)),
        # received wins over sent-by.
        (
            "SIP/2.0/UDP a.example:5070;received=203.0.113.9",
            None,
            ("UDP", "203.0.113.9", 5070),
        ),
        # 18.2.1: a source stands in for a missing received.
        ("SIP/2.0/UDP a.example:5070", UDP_PEER, ("UDP", "192.0.2.10", 5070)),
        (
            "SIP/2.0/UDP a.example;received=203.0.113.9",
            UDP_PEER,
            ("UDP", "203.0.113.9", 5060),
        ),
        # RFC 3581: rport sends back to the source port.
        (
            "SIP/2.0/UDP a.example:5070;rport",
            ("UDP", "192.0.2.10", 34567),
            ("UDP", "192.0.2.10", 34567),
        ),
        (
            "SIP/2.0/UDP a.example;rport=4444;received=203.0.113.9",
            None,
            ("UDP", "203.0.113.9", 4444),
        ),
        ("SIP/2.0/UDP a.example;rport", None, ("UDP", "a.example", 5060)),
        # Reliable: the connection the request came over.
        ("SIP/2.0/TCP a.example:5070", TCP_PEER, TCP_PEER),
        # Multicast.
        (
            "SIP/2.0/UDP a.example;maddr=239.255.255.1",
            UDP_PEER,
            ("UDP", "239.255.255.1", 5060),
        ),
        # RFC 5118: brackets dropped for the socket address.
        ("SIP/2.0/UDP [2001:db8::1]:5062", None, ("UDP", "2001:db8::1", 5062)),
        (
            "SIP/2.0/UDP [2001:db8::1];received=[2001:db8::2]",
            None,
            ("UDP", "2001:db8::2", 5060),
        ),
    ],
)
def test_response_destination(
    via: str, source: Address | None, expected: Address
) -> None:
    assert response_destination(parse_via(via), source) == expected


def test_make_cancel_follows_9_1() -> None:
    invite = request(extra=("Route: <sip:proxy.example;lr>",), cseq=7)
    cancel = make_cancel(invite)
    assert cancel.method == "CANCEL"
    assert str(cancel.uri) == str(invite.uri)
    assert cancel.headers.get_all("Via") == [str(invite.top_via)]
    assert cancel.headers.get_all("Route") == ["<sip:proxy.example;lr>"]
    assert cancel.headers.get("From") == invite.headers.get("From")
    assert cancel.headers.get("To") == invite.headers.get("To")
    assert cancel.call_id == invite.call_id
    assert str(cancel.cseq) == "7 CANCEL"
    assert cancel.max_forwards == 70
    assert isinstance(parse_message(cancel.to_bytes()), Request)


def test_make_cancel_needs_from_and_to() -> None:
    invite = request()
    invite.headers.remove("To")
    with pytest.raises(LocalProtocolError, match="no To"):
        make_cancel(invite)


def test_make_non_2xx_ack_follows_17_1_1_3() -> None:
    invite = request(
        extra=("Route: <sip:p1.example;lr>, <sip:p2.example;lr>", "Contact: <sip:a@h>")
    )
    invite.headers.add("Via", "SIP/2.0/UDP second.example;branch=z9hG4bKother")
    ack = make_non_2xx_ack(invite, respond(invite, 486, to_tag="t486"))
    assert ack.method == "ACK"
    assert str(ack.uri) == "sip:bob@server.example"
    assert [str(via) for via in ack.vias] == [str(invite.top_via)]
    assert ack.headers.get_all("Route") == [
        "<sip:p1.example;lr>",
        "<sip:p2.example;lr>",
    ]
    assert ack.to.tag == "t486"
    assert ack.from_.tag == "fromtag"
    assert ack.call_id == "call-1"
    assert str(ack.cseq) == "1 ACK"
    assert "Contact" not in ack.headers


def test_make_non_2xx_ack_needs_the_response_to() -> None:
    invite = request()
    response = respond(invite, 486)
    response.headers.remove("To")
    with pytest.raises(ProtocolError, match="no To"):
        make_non_2xx_ack(invite, response)


# --- events ---------------------------------------------------------------------------


def test_request_received_checks_its_fields() -> None:
    with pytest.raises(LocalProtocolError, match="INVITE without a transaction"):
        RequestReceived(request=request(), source=UDP_PEER, transaction_key=None)
    with pytest.raises(LocalProtocolError, match="cannot cancel"):
        RequestReceived(
            request=request(),
            source=UDP_PEER,
            transaction_key="k",
            cancelled_transaction_key="x",
        )
    ack = RequestReceived(request=request("ACK"), source=UDP_PEER, transaction_key=None)
    assert ack.cancelled_transaction_key is None


def test_response_received_checks_the_status() -> None:
    response = respond(request(), 200)
    response.status = 700
    with pytest.raises(LocalProtocolError, match="700"):
        ResponseReceived(response=response, transaction_key="k")


def test_events_are_frozen() -> None:
    event = TransactionTerminated(transaction_key="k")
    with pytest.raises(AttributeError):
        event.transaction_key = "other"  # type: ignore[misc]


# --- INVITE client transaction (RFC 3261 17.1.1, RFC 6026 8.4) ------------------------


def test_invite_client_timer_a_doubles_until_timer_b() -> None:
    req = request()
    layer, key = client(req)
    assert layer.transaction_state(key) is S.CALLING
    assert layer.next_deadline() == 0.5
    fired = run_until(layer, 100.0)
    assert send_times(fired) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(t.data == req.to_bytes() for item in fired for t in item.outgoing)
    assert all(t.destination == UDP_PEER for item in fired for t in item.outgoing)
    assert fired[-1].when == 32.0
    assert fired[-1].events == [
        TransactionTimedOut(transaction_key=key, request=req),
        TransactionTerminated(transaction_key=key),
    ]
    assert layer.next_deadline() is None
    assert layer.transaction_state(key) is None
    assert len(layer) == 0


def test_invite_client_timers_scale_with_t1() -> None:
    layer, _ = client(request(), timers=Timers(t1=0.25, t2=2.0))
    fired = run_until(layer, 100.0)
    assert send_times(fired) == [0.25, 0.75, 1.75, 3.75, 7.75, 15.75]
    assert fired[-1].when == 16.0


def test_invite_client_over_tcp_never_retransmits() -> None:
    layer, _ = client(request(transport="TCP"), TCP_PEER)
    assert layer.next_deadline() == 32.0
    fired = run_until(layer, 100.0)
    assert send_times(fired) == []
    assert [type(event) for event in fired[0].events] == [
        TransactionTimedOut,
        TransactionTerminated,
    ]


def test_invite_client_provisional_stops_retransmission() -> None:
    req = request()
    layer, key = client(req)
    ringing = respond(req, 180)
    assert layer.receive(ringing, UDP_PEER, 0.2) == [
        ResponseReceived(response=ringing, transaction_key=key)
    ]
    assert layer.transaction_state(key) is S.PROCEEDING
    # RFC 3261 17.1.1.2: no more retransmissions, and no Timer B in Proceeding.
    assert layer.next_deadline() is None
    assert layer.handle_timer(1000.0) == []
    assert layer.take_outgoing() == []
    again = respond(req, 183)
    assert layer.receive(again, UDP_PEER, 1.0) == [
        ResponseReceived(response=again, transaction_key=key)
    ]


def test_cancelled_timers_never_fire() -> None:
    req = request()
    layer, key = client(req)
    layer.receive(respond(req, 180), UDP_PEER, 0.1)
    # Straight to a late handle_timer: the stale A and B entries are skipped.
    assert layer.handle_timer(100.0) == []
    assert layer.take_outgoing() == []
    assert layer.transaction_state(key) is S.PROCEEDING


def test_invite_client_non_2xx_final_is_acked_by_the_transaction() -> None:
    req = request(extra=("Route: <sip:proxy.example;lr>",))
    layer, key = client(req)
    layer.receive(respond(req, 100), UDP_PEER, 0.1)
    busy = respond(req, 486, to_tag="busy")
    assert layer.receive(busy, UDP_PEER, 2.0) == [
        ResponseReceived(response=busy, transaction_key=key)
    ]
    assert layer.transaction_state(key) is S.COMPLETED
    (ack_transmit,) = layer.take_outgoing()
    assert ack_transmit.destination == UDP_PEER
    ack = wire(ack_transmit)
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert ack.top_via.branch == BRANCH
    assert ack.to.tag == "busy"
    assert ack.headers.get_all("Route") == ["<sip:proxy.example;lr>"]
    # Timer D: 32 s over UDP.
    assert layer.next_deadline() == 34.0
    # A retransmitted final is answered with the same ACK, not passed up.
    assert layer.receive(busy, UDP_PEER, 3.0) == []
    assert layer.take_outgoing() == [ack_transmit]
    # A late provisional is absorbed.
    assert layer.receive(respond(req, 180), UDP_PEER, 3.0) == []
    fired = run_until(layer, 100.0)
    assert [item.when for item in fired] == [34.0]
    assert fired[0].events == [TransactionTerminated(transaction_key=key)]
    assert send_times(fired) == []


def test_invite_client_final_straight_from_calling() -> None:
    req = request()
    layer, key = client(req)
    layer.receive(respond(req, 603), UDP_PEER, 0.7)
    assert layer.transaction_state(key) is S.COMPLETED
    (ack,) = [wire(t) for t in layer.take_outgoing()]
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert layer.next_deadline() == pytest.approx(32.7)


def test_invite_client_completed_passes_a_late_2xx_up() -> None:
    req = request()
    layer, key = client(req)
    layer.receive(respond(req, 486), UDP_PEER, 0.1)
    layer.take_outgoing()
    ok = respond(req, 200, to_tag="other-fork")
    assert layer.receive(ok, UDP_PEER, 0.2) == [
        ResponseReceived(response=ok, transaction_key=key)
    ]
    assert layer.take_outgoing() == []
    assert layer.transaction_state(key) is S.COMPLETED


def test_invite_client_timer_d_is_zero_over_tcp() -> None:
    req = request(transport="TCP")
    layer, key = client(req, TCP_PEER)
    layer.receive(respond(req, 404), TCP_PEER, 5.0)
    assert layer.next_deadline() == 5.0
    assert layer.handle_timer(5.0) == [TransactionTerminated(transaction_key=key)]


def test_invite_client_2xx_goes_to_accepted_until_timer_m() -> None:
    req = request()
    layer, key = client(req)
    ok = respond(req, 200)
    assert layer.receive(ok, UDP_PEER, 1.0) == [
        ResponseReceived(response=ok, transaction_key=key)
    ]
    assert layer.transaction_state(key) is S.ACCEPTED
    # The 2xx ACK is the TU's job: nothing sent, no retransmission running.
    assert layer.take_outgoing() == []
    assert layer.next_deadline() == 33.0
    # RFC 6026 7.2: retransmitted 2xx go up so the TU re-ACKs; others are absorbed.
    assert layer.receive(ok, UDP_PEER, 2.0) == [
        ResponseReceived(response=ok, transaction_key=key)
    ]
    assert layer.receive(respond(req, 180), UDP_PEER, 2.0) == []
    assert layer.receive(respond(req, 500), UDP_PEER, 2.0) == []
    assert layer.take_outgoing() == []
    fired = run_until(layer, 100.0)
    assert [(item.when, item.events) for item in fired] == [
        (33.0, [TransactionTerminated(transaction_key=key)])
    ]
    # Afterwards a 2xx is a stray and dropped (RFC 6026 updating 18.1.2).
    assert layer.receive(ok, UDP_PEER, 40.0) == []


def test_invite_client_2xx_from_proceeding() -> None:
    req = request()
    layer, key = client(req)
    layer.receive(respond(req, 180), UDP_PEER, 0.1)
    layer.receive(respond(req, 200), UDP_PEER, 0.2)
    assert layer.transaction_state(key) is S.ACCEPTED


@pytest.mark.parametrize("setup", ["calling", "proceeding", "completed", "accepted"])
def test_invite_client_transport_error(setup: str) -> None:
    req = request()
    layer, key = client(req)
    status = {"calling": None, "proceeding": 180, "completed": 486, "accepted": 200}[
        setup
    ]
    if status is not None:
        layer.receive(respond(req, status), UDP_PEER, 0.1)
    assert layer.transport_error(key, 0.2) == [
        TransactionTransportError(transaction_key=key, request=req),
        TransactionTerminated(transaction_key=key),
    ]
    assert layer.transaction_state(key) is None
    assert layer.transport_error(key, 0.3) == []


# --- non-INVITE client transaction (RFC 3261 17.1.2) ----------------------------------


def test_non_invite_client_timer_e_doubles_up_to_t2_until_timer_f() -> None:
    req = request("OPTIONS")
    layer, key = client(req)
    assert layer.transaction_state(key) is S.TRYING
    fired = run_until(layer, 100.0)
    assert send_times(fired) == [
        0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5,
    ]  # fmt: skip
    assert fired[-1].when == 32.0
    assert fired[-1].events == [
        TransactionTimedOut(transaction_key=key, request=req),
        TransactionTerminated(transaction_key=key),
    ]


def test_non_invite_client_proceeding_retransmits_every_t2() -> None:
    req = request("BYE", to_tag="x")
    layer, key = client(req)
    assert len(run_until(layer, 1.5)) == 2  # at 0.5 and 1.5
    trying = respond(req, 100)
    assert layer.receive(trying, UDP_PEER, 2.0) == [
        ResponseReceived(response=trying, transaction_key=key)
    ]
    assert layer.transaction_state(key) is S.PROCEEDING
    fired = run_until(layer, 100.0)
    # The E armed in Trying (due 3.5) fires, then every T2; F still ends it at 32.
    assert send_times(fired) == [3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert fired[-1].when == 32.0
    assert isinstance(fired[-1].events[0], TransactionTimedOut)


@pytest.mark.parametrize("status", [200, 404])
def test_non_invite_client_final_then_timer_k(status: int) -> None:
    req = request("OPTIONS")
    layer, key = client(req)
    layer.receive(respond(req, 180), UDP_PEER, 0.1)
    final = respond(req, status)
    assert layer.receive(final, UDP_PEER, 1.0) == [
        ResponseReceived(response=final, transaction_key=key)
    ]
    assert layer.transaction_state(key) is S.COMPLETED
    assert layer.next_deadline() == 6.0  # Timer K = T4
    for late in (final, respond(req, 180), respond(req, 500)):
        assert layer.receive(late, UDP_PEER, 2.0) == []
    fired = run_until(layer, 100.0)
    assert send_times(fired) == []
    assert fired == [Fired(6.0, [TransactionTerminated(transaction_key=key)])]


def test_non_invite_client_final_straight_from_trying_over_tcp() -> None:
    req = request("REGISTER", transport="TCP")
    layer, key = client(req, TCP_PEER)
    assert layer.next_deadline() == 32.0  # F only, no E
    layer.receive(respond(req, 401), TCP_PEER, 0.3)
    assert layer.next_deadline() == 0.3  # K = 0
    assert layer.handle_timer(0.3) == [TransactionTerminated(transaction_key=key)]


def test_non_invite_client_timer_f_in_proceeding_over_tcp() -> None:
    req = request("OPTIONS", transport="TCP")
    layer, _ = client(req, TCP_PEER)
    layer.receive(respond(req, 100), TCP_PEER, 0.3)
    fired = run_until(layer, 100.0)
    assert [item.when for item in fired] == [32.0]
    assert isinstance(fired[0].events[0], TransactionTimedOut)


@pytest.mark.parametrize("status", [None, 100, 200])
def test_non_invite_client_transport_error(status: int | None) -> None:
    req = request("OPTIONS")
    layer, key = client(req)
    if status is not None:
        layer.receive(respond(req, status), UDP_PEER, 0.1)
    events = layer.transport_error(key, 0.2)
    assert [type(event) for event in events] == [
        TransactionTransportError,
        TransactionTerminated,
    ]


# --- client side: sending and matching ------------------------------------------------


def test_send_request_needs_a_cookie_branch() -> None:
    layer = TransactionLayer()
    with pytest.raises(LocalProtocolError, match="magic cookie"):
        layer.send_request(request(branch="1234"), UDP_PEER, 0.0)
    with pytest.raises(LocalProtocolError, match="magic cookie"):
        layer.send_request(request(branch=None), UDP_PEER, 0.0)
    no_via = request()
    no_via.headers.remove("Via")
    with pytest.raises(LocalProtocolError, match="no usable Via"):
        layer.send_request(no_via, UDP_PEER, 0.0)
    assert layer.take_outgoing() == []


def test_send_request_refuses_a_branch_in_use() -> None:
    layer, _ = client(request())
    with pytest.raises(LocalProtocolError, match="already has"):
        layer.send_request(request(), UDP_PEER, 1.0)


def test_send_request_ack_is_stateless() -> None:
    layer = TransactionLayer()
    ack = request("ACK", branch="z9hG4bKack", to_tag="t")
    key = layer.send_request(ack, UDP_PEER, 0.0)
    assert key
    assert layer.take_outgoing() == [
        Transmit(data=ack.to_bytes(), destination=UDP_PEER)
    ]
    assert len(layer) == 0
    assert layer.next_deadline() is None
    # The same ACK again (the TU re-ACKing a 2xx retransmission) is fine.
    layer.send_request(ack, UDP_PEER, 1.0)


def test_cancel_runs_its_own_client_transaction() -> None:
    invite = request()
    layer, invite_key = client(invite)
    cancel = make_cancel(invite)
    cancel_key = layer.send_request(cancel, UDP_PEER, 0.2)
    assert cancel_key != invite_key
    assert len(layer) == 2
    ok = respond(cancel, 200)
    assert layer.receive(ok, UDP_PEER, 0.3) == [
        ResponseReceived(response=ok, transaction_key=cancel_key)
    ]
    assert layer.transaction_state(invite_key) is S.CALLING
    terminated = respond(invite, 487)
    assert layer.receive(terminated, UDP_PEER, 0.4) == [
        ResponseReceived(response=terminated, transaction_key=invite_key)
    ]


def test_responses_match_on_branch_and_cseq_method() -> None:
    req = request("OPTIONS")
    layer, _ = client(req)
    wrong_method = respond(req, 200)
    wrong_method.headers.set("CSeq", "1 INFO")
    assert layer.receive(wrong_method, UDP_PEER, 0.1) == []
    wrong_branch = respond(request("OPTIONS", branch="z9hG4bKelse"), 200)
    assert layer.receive(wrong_branch, UDP_PEER, 0.1) == []
    no_branch = respond(request("OPTIONS", branch=None), 200)
    assert layer.receive(no_branch, UDP_PEER, 0.1) == []
    assert layer.transaction_state(next(iter(layer)).key) is S.TRYING


# --- INVITE server transaction (RFC 3261 17.2.1, RFC 6026 8.7) ------------------------


def test_invite_server_sends_100_trying_and_resends_the_latest_provisional() -> None:
    req = request()
    layer = TransactionLayer()
    (event,) = layer.receive(req, UDP_PEER, 0.0)
    assert isinstance(event, RequestReceived)
    key = event.transaction_key
    assert key is not None
    assert layer.transaction_state(key) is S.PROCEEDING
    (trying,) = layer.take_outgoing()
    assert statuses([trying]) == [100]
    assert trying.destination == ("UDP", "192.0.2.10", 5060)
    # A retransmitted INVITE is absorbed and the last provisional resent.
    assert layer.receive(req, UDP_PEER, 0.5) == []
    assert layer.take_outgoing() == [trying]
    layer.send_response(make_response(req, 180, to_tag="tt"), 1.0)
    (ringing,) = layer.take_outgoing()
    assert statuses([ringing]) == [180]
    assert layer.receive(req, UDP_PEER, 1.5) == []
    assert layer.take_outgoing() == [ringing]
    assert layer.next_deadline() is None


def test_invite_server_without_trying_absorbs_silently() -> None:
    req = request()
    layer, key = server(req)
    assert layer.take_outgoing() == []
    assert layer.receive(req, UDP_PEER, 0.5) == []
    assert layer.take_outgoing() == []
    # An ACK before any final is stray and absorbed too.
    assert layer.receive(request("ACK", to_tag="tt"), UDP_PEER, 0.6) == []
    assert layer.transaction_state(key) is S.PROCEEDING


def test_invite_server_timer_g_resends_the_final_until_timer_h() -> None:
    req = request()
    layer, key = server(req)
    busy = make_response(req, 486, to_tag="tt")
    layer.send_response(busy, 0.0)
    assert layer.take_outgoing() == [
        Transmit(data=busy.to_bytes(), destination=UDP_PEER)
    ]
    assert layer.transaction_state(key) is S.COMPLETED
    fired = run_until(layer, 100.0)
    assert send_times(fired) == [
        0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5,
    ]  # fmt: skip
    assert all(statuses(item.outgoing) == [486] * len(item.outgoing) for item in fired)
    # Timer H: no ACK came.
    assert fired[-1].when == 32.0
    assert fired[-1].events == [
        TransactionTimedOut(transaction_key=key, request=req),
        TransactionTerminated(transaction_key=key),
    ]


def test_invite_server_ack_confirms_then_timer_i() -> None:
    req = request()
    layer, key = server(req)
    busy = make_response(req, 486, to_tag="tt")
    layer.send_response(busy, 0.0)
    layer.take_outgoing()
    # A retransmitted INVITE gets the final again.
    assert layer.receive(req, UDP_PEER, 0.2) == []
    assert statuses(layer.take_outgoing()) == [486]
    ack = make_non_2xx_ack(req, busy)
    assert layer.receive(ack, UDP_PEER, 0.7) == []
    assert layer.transaction_state(key) is S.CONFIRMED
    assert layer.next_deadline() == 5.7  # Timer I = T4; G and H stopped
    # Retransmitted INVITE and ACK are absorbed silently now.
    assert layer.receive(req, UDP_PEER, 1.0) == []
    assert layer.receive(ack, UDP_PEER, 1.0) == []
    assert layer.take_outgoing() == []
    fired = run_until(layer, 100.0)
    assert fired == [Fired(5.7, [TransactionTerminated(transaction_key=key)])]


def test_invite_server_over_tcp_has_no_timer_g_and_zero_timer_i() -> None:
    req = request(transport="TCP")
    layer, key = server(req, TCP_PEER)
    busy = make_response(req, 600, to_tag="tt")
    layer.send_response(busy, 1.0)
    assert layer.take_outgoing() == [
        Transmit(data=busy.to_bytes(), destination=TCP_PEER)
    ]
    assert layer.next_deadline() == 33.0  # H only
    layer.receive(make_non_2xx_ack(req, busy), TCP_PEER, 2.0)
    assert layer.next_deadline() == 2.0
    assert layer.handle_timer(2.0) == [TransactionTerminated(transaction_key=key)]


def test_invite_server_2xx_goes_to_accepted_until_timer_l() -> None:
    req = request()
    layer, key = server(req)
    ok = make_response(req, 200, to_tag="tt")
    layer.send_response(ok, 0.0)
    assert layer.take_outgoing() == [Transmit(data=ok.to_bytes(), destination=UDP_PEER)]
    assert layer.transaction_state(key) is S.ACCEPTED
    assert layer.next_deadline() == 32.0  # Timer L; the transaction never resends a 2xx
    # RFC 6026 8.7: INVITE retransmissions are absorbed (the TU resends the 2xx).
    assert layer.receive(req, UDP_PEER, 0.5) == []
    assert layer.take_outgoing() == []
    layer.send_response(ok, 0.5)
    assert layer.take_outgoing() == [Transmit(data=ok.to_bytes(), destination=UDP_PEER)]
    # The 2xx ACK (new branch) matches nothing: the TU's, with no transaction key.
    ack = request("ACK", branch="z9hG4bKack2xx", to_tag="tt")
    assert layer.receive(ack, UDP_PEER, 0.6) == [
        RequestReceived(request=ack, source=UDP_PEER, transaction_key=None)
    ]
    # A broken peer reusing the INVITE branch for it is passed up the same way.
    same_branch_ack = request("ACK", to_tag="tt")
    assert layer.receive(same_branch_ack, UDP_PEER, 0.7) == [
        RequestReceived(request=same_branch_ack, source=UDP_PEER, transaction_key=None)
    ]
    assert layer.transport_error(key, 1.0) == [
        TransactionTransportError(transaction_key=key, request=req)
    ]
    assert layer.transaction_state(key) is S.ACCEPTED
    assert run_until(layer, 100.0) == [
        Fired(32.0, [TransactionTerminated(transaction_key=key)])
    ]


@pytest.mark.parametrize("setup", [486, "confirmed"])
def test_invite_server_transport_error_after_the_final(setup: int | str) -> None:
    req = request()
    layer, key = server(req)
    busy = make_response(req, 486, to_tag="tt")
    layer.send_response(busy, 0.0)
    if setup == "confirmed":
        layer.receive(make_non_2xx_ack(req, busy), UDP_PEER, 0.1)
    assert layer.transport_error(key, 0.2) == [
        TransactionTransportError(transaction_key=key, request=req),
        TransactionTerminated(transaction_key=key),
    ]


def test_invite_server_transport_error_in_proceeding_keeps_the_transaction() -> None:
    # RFC 6026 figure 7: the TU is told and still sends its final response.
    req = request()
    layer, key = server(req)
    assert layer.transport_error(key, 0.2) == [
        TransactionTransportError(transaction_key=key, request=req)
    ]
    assert layer.transaction_state(key) is S.PROCEEDING
    layer.send_response(make_response(req, 500, to_tag="tt"), 0.3)
    assert statuses(layer.take_outgoing()) == [500]


def test_server_misuse_terminates_the_transaction() -> None:
    req = request()
    layer, key = server(req)
    layer.send_response(make_response(req, 486, to_tag="tt"), 0.0)
    layer.take_outgoing()
    with pytest.raises(
        LocalProtocolError, match="cannot take '1xx from TU' in Completed"
    ):
        layer.send_response(make_response(req, 180, to_tag="tt"), 0.1)
    assert layer.transaction_state(key) is None
    assert layer.next_deadline() is None
    assert layer.take_outgoing() == []
    # The termination is reported with the next batch of events.
    assert layer.handle_timer(0.2) == [TransactionTerminated(transaction_key=key)]
    with pytest.raises(LocalProtocolError, match="no server transaction"):
        layer.send_response(make_response(req, 500, to_tag="tt"), 0.3)


def test_misuse_events_flush_through_receive_and_transport_error() -> None:
    req = request("OPTIONS")
    layer, key = server(req)
    layer.send_response(make_response(req, 200, to_tag="tt"), 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_response(make_response(req, 200, to_tag="tt"), 0.0)
    assert layer.transport_error("unknown", 0.1) == [
        TransactionTerminated(transaction_key=key)
    ]
    layer2, key2 = server(req)
    layer2.send_response(make_response(req, 200, to_tag="tt"), 0.0)
    with pytest.raises(LocalProtocolError):
        layer2.send_response(make_response(req, 180, to_tag="tt"), 0.0)
    other = request("OPTIONS", branch="z9hG4bKnext")
    events = layer2.receive(other, UDP_PEER, 0.1)
    assert events[0] == TransactionTerminated(transaction_key=key2)
    assert isinstance(events[1], RequestReceived)


def test_send_response_with_explicit_key() -> None:
    req = request("OPTIONS")
    layer, key = server(req)
    layer.send_response(make_response(req, 200, to_tag="tt"), 0.0, transaction_key=key)
    assert layer.transaction_state(key) is S.COMPLETED


# --- non-INVITE server transaction (RFC 3261 17.2.2) ----------------------------------


def test_non_invite_server_walk() -> None:
    req = request("BYE", to_tag="tt")
    layer, key = server(req)
    assert layer.transaction_state(key) is S.TRYING
    # Trying: a retransmission is absorbed without answer.
    assert layer.receive(req, UDP_PEER, 0.1) == []
    assert layer.take_outgoing() == []
    layer.send_response(make_response(req, 100), 0.2)
    assert statuses(layer.take_outgoing()) == [100]
    assert layer.transaction_state(key) is S.PROCEEDING
    assert layer.receive(req, UDP_PEER, 0.3) == []
    assert statuses(layer.take_outgoing()) == [100]
    layer.send_response(make_response(req, 183), 0.35)
    assert statuses(layer.take_outgoing()) == [183]
    layer.send_response(make_response(req, 200), 0.4)
    assert statuses(layer.take_outgoing()) == [200]
    assert layer.transaction_state(key) is S.COMPLETED
    assert layer.next_deadline() == pytest.approx(32.4)  # Timer J = 64*T1
    assert layer.receive(req, UDP_PEER, 1.0) == []
    assert statuses(layer.take_outgoing()) == [200]
    fired = run_until(layer, 100.0)
    assert send_times(fired) == []
    assert [item.events for item in fired] == [
        [TransactionTerminated(transaction_key=key)]
    ]


@pytest.mark.parametrize("status", [200, 403])
def test_non_invite_server_final_from_trying_over_tcp(status: int) -> None:
    req = request("OPTIONS", transport="TCP")
    layer, key = server(req, TCP_PEER)
    layer.send_response(make_response(req, status, to_tag="tt"), 3.0)
    assert [t.destination for t in layer.take_outgoing()] == [TCP_PEER]
    assert layer.next_deadline() == 3.0  # J = 0
    assert layer.handle_timer(3.0) == [TransactionTerminated(transaction_key=key)]


@pytest.mark.parametrize("setup", [None, 180, 200])
def test_non_invite_server_transport_error(setup: int | None) -> None:
    req = request("OPTIONS")
    layer, key = server(req)
    if setup is not None:
        layer.send_response(make_response(req, setup, to_tag="tt"), 0.0)
    events = layer.transport_error(key, 0.1)
    assert [type(event) for event in events] == [
        TransactionTransportError,
        TransactionTerminated,
    ]


def test_non_invite_server_final_from_proceeding_with_error_status() -> None:
    req = request("OPTIONS")
    layer, key = server(req)
    layer.send_response(make_response(req, 180), 0.0)
    layer.send_response(make_response(req, 486), 0.1)
    assert layer.transaction_state(key) is S.COMPLETED


# --- server matching (RFC 3261 17.2.3, 9.2, 8.2.2.2) ----------------------------------


def test_server_matching_uses_branch_sent_by_and_method() -> None:
    layer = TransactionLayer(send_trying=False)
    first = request("OPTIONS")
    (event,) = layer.receive(first, UDP_PEER, 0.0)
    # Same branch from another sent-by: another transaction (17.2.3).
    other_host = request("OPTIONS", sent_by="elsewhere.example", call_id="c2")
    (event2,) = layer.receive(other_host, UDP_PEER, 0.0)
    assert isinstance(event, RequestReceived)
    assert isinstance(event2, RequestReceived)
    assert event.transaction_key != event2.transaction_key
    # Same sent-by with another port: another transaction too.
    other_port = request("OPTIONS", sent_by="client.example:5080", call_id="c3")
    assert len(layer.receive(other_port, UDP_PEER, 0.0)) == 1
    # sent-by host compares case-insensitively.
    shouting = request("OPTIONS", sent_by="CLIENT.example:5060")
    assert layer.receive(shouting, UDP_PEER, 0.0) == []
    assert len(layer) == 3


def test_server_transaction_key_names_the_transaction_of_that_very_request() -> None:
    layer = TransactionLayer(send_trying=False)
    invite = request()
    (event,) = layer.receive(invite, UDP_PEER, 0.0)
    assert isinstance(event, RequestReceived)
    assert layer.server_transaction_key(invite) == event.transaction_key
    # An equal request that is not the one received names nothing; nor does an ACK
    # for a 2xx, which has no transaction of its own.
    assert layer.server_transaction_key(request()) is None
    ack = request("ACK", branch="z9hG4bKack", to_tag="totag")
    assert layer.receive(ack, UDP_PEER, 0.0)[0].transaction_key is None
    assert layer.server_transaction_key(ack) is None
    # Answered by that key, the response goes where the request's Via says.
    busy = make_response(invite, 486, to_tag="totag")
    layer.send_response(busy, 0.1, transaction_key=layer.server_transaction_key(invite))
    assert layer.take_outgoing() == [
        Transmit(data=busy.to_bytes(), destination=UDP_PEER)
    ]
    # Once the transaction is over the request names nothing any more.
    run_until(layer, 100.0)
    assert layer.transaction_state(event.transaction_key) is None
    assert layer.server_transaction_key(invite) is None


def test_merged_request_answered_482_has_no_transaction_for_the_tu() -> None:
    layer = TransactionLayer(send_trying=False)
    layer.receive(request(), UDP_PEER, 0.0)
    merged = request(branch="z9hG4bKother")
    assert layer.receive(merged, UDP_PEER, 0.0) == []
    assert statuses(layer.take_outgoing()) == [482]
    assert layer.server_transaction_key(merged) is None


def test_transactions_start_timers_with_the_values_of_their_own_timers() -> None:
    # The layer answers Timers.initial once per Timers object and transport kind;
    # two equal-looking layers with different T1 must not share the answer.
    for t1 in (0.5, 0.1, 0.5):
        layer = TransactionLayer(timers=Timers(t1=t1, t2=4.0))
        layer.send_request(request(), UDP_PEER, 0.0)
        assert layer.next_deadline() == pytest.approx(t1)  # timer A
        tcp = TransactionLayer(timers=Timers(t1=t1, t2=4.0))
        tcp.send_request(request(transport="TCP"), TCP_PEER, 0.0)
        assert tcp.next_deadline() == pytest.approx(64 * t1)  # timer B, no A


def test_cancel_matches_the_invite_by_branch() -> None:
    layer = TransactionLayer(send_trying=False)
    invite = request()
    (invite_event,) = layer.receive(invite, UDP_PEER, 0.0)
    assert isinstance(invite_event, RequestReceived)
    cancel = make_cancel(invite)
    (cancel_event,) = layer.receive(cancel, UDP_PEER, 0.1)
    assert isinstance(cancel_event, RequestReceived)
    assert cancel_event.request is cancel
    assert cancel_event.cancelled_transaction_key == invite_event.transaction_key
    assert cancel_event.transaction_key not in (None, invite_event.transaction_key)
    # The TU answers both: 200 to the CANCEL, 487 to the INVITE.
    layer.send_response(make_response(cancel, 200, to_tag="tt"), 0.2)
    layer.send_response(make_response(invite, 487, to_tag="tt"), 0.2)
    assert statuses(layer.take_outgoing()) == [200, 487]
    # A CANCEL matching nothing: the TU answers 481.
    stray = make_cancel(request(branch="z9hG4bKnothing", call_id="c-stray"))
    (stray_event,) = layer.receive(stray, UDP_PEER, 0.3)
    assert isinstance(stray_event, RequestReceived)
    assert stray_event.cancelled_transaction_key is None


def test_rfc_2543_invite_matching() -> None:
    layer = TransactionLayer(send_trying=False)
    invite = request(branch=None, from_tag=None)
    (event,) = layer.receive(invite, UDP_PEER, 0.0)
    assert isinstance(event, RequestReceived)
    key = event.transaction_key
    assert key is not None
    # The retransmission matches on Request-URI, tags, Call-ID, CSeq and top Via.
    assert layer.receive(request(branch=None, from_tag=None), UDP_PEER, 0.1) == []
    # Another Request-URI with the same other fields is not a retransmission; it
    # clashes with the transaction key and is dropped.
    assert (
        layer.receive(
            request(branch=None, from_tag=None, uri="sip:carol@server.example"),
            UDP_PEER,
            0.1,
        )
        == []
    )
    # The TU's response finds the transaction from its own fields.
    busy = make_response(invite, 486, to_tag="t2543")
    layer.send_response(busy, 0.2)
    assert statuses(layer.take_outgoing()) == [486]
    # An ACK matches when its To tag is the response's.
    wrong_ack = request("ACK", branch=None, from_tag=None, to_tag="other")
    assert layer.receive(wrong_ack, UDP_PEER, 0.3) == [
        RequestReceived(request=wrong_ack, source=UDP_PEER, transaction_key=None)
    ]
    assert layer.transaction_state(key) is S.COMPLETED
    ack = request("ACK", branch=None, from_tag=None, to_tag="t2543")
    assert layer.receive(ack, UDP_PEER, 0.4) == []
    assert layer.transaction_state(key) is S.CONFIRMED


def test_rfc_2543_ack_before_a_final_matches_nothing() -> None:
    layer = TransactionLayer(send_trying=False)
    layer.receive(request(branch="old-style-branch"), UDP_PEER, 0.0)
    ack = request("ACK", branch="old-style-branch", to_tag="x")
    assert layer.receive(ack, UDP_PEER, 0.1) == [
        RequestReceived(request=ack, source=UDP_PEER, transaction_key=None)
    ]


def test_rfc_2543_to_tag_mismatch_is_not_a_retransmission() -> None:
    layer = TransactionLayer(send_trying=False)
    layer.receive(request("OPTIONS", branch=None, to_tag="a"), UDP_PEER, 0.0)
    assert (
        layer.receive(request("OPTIONS", branch=None, to_tag="b"), UDP_PEER, 0.0) == []
    )
    assert len(layer) == 1


def test_rfc_2543_cancel_matching() -> None:
    layer = TransactionLayer(send_trying=False)
    invite = request(branch=None)
    (invite_event,) = layer.receive(invite, UDP_PEER, 0.0)
    assert isinstance(invite_event, RequestReceived)
    (cancel_event,) = layer.receive(make_cancel(invite), UDP_PEER, 0.1)
    assert isinstance(cancel_event, RequestReceived)
    assert cancel_event.cancelled_transaction_key == invite_event.transaction_key


def test_merged_request_gets_482_from_the_layer() -> None:
    layer = TransactionLayer()
    first = request()
    (event,) = layer.receive(first, UDP_PEER, 0.0)
    assert isinstance(event, RequestReceived)
    layer.take_outgoing()
    # Same From tag, Call-ID and CSeq, no To tag, another branch: forked and merged.
    source: Address = ("UDP", "198.51.100.7", 5062)
    merged = request(branch="z9hG4bKfork2", sent_by="proxy2.example;rport")
    assert layer.receive(merged, source, 0.1) == []
    (answer,) = layer.take_outgoing()
    assert answer.destination == source
    response = wire(answer)
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (482, "Loop Detected")
    assert response.top_via.branch == "z9hG4bKfork2"
    # Its retransmission gets the 482 again; its ACK is absorbed; no event ever.
    assert layer.receive(merged, source, 0.2) == []
    assert layer.take_outgoing() == [answer]
    assert layer.receive(make_non_2xx_ack(merged, response), source, 0.3) == []
    # The TU misusing the layer's own transaction learns of it, but no event follows.
    with pytest.raises(LocalProtocolError):
        layer.send_response(make_response(merged, 200, to_tag="x"), 0.3)
    assert layer.handle_timer(0.3) == []
    assert layer.receive(merged, source, 0.4) == []
    assert statuses(layer.take_outgoing()) == [482]
    assert run_until(layer, 100.0)[-1].events == []
    # The original is untouched.
    assert layer.transaction_state(event.transaction_key or "") is S.PROCEEDING


def test_merged_request_482_timeout_is_silent() -> None:
    layer = TransactionLayer(send_trying=False)
    layer.receive(request("OPTIONS"), UDP_PEER, 0.0)
    assert layer.receive(request("OPTIONS", branch="z9hG4bKfork2"), UDP_PEER, 0.0) == []
    fired = run_until(layer, 100.0)
    assert all(item.events == [] for item in fired)
    assert len(layer) == 1


def test_requests_with_to_tag_or_after_the_original_are_not_merged() -> None:
    layer = TransactionLayer(send_trying=False)
    (first,) = layer.receive(request("BYE", to_tag="t"), UDP_PEER, 0.0)
    (second,) = layer.receive(
        request("BYE", to_tag="t", branch="z9hG4bKb2"), UDP_PEER, 0.0
    )
    assert isinstance(second, RequestReceived)
    # Once the original transaction is over, the same fields start a new one.
    original = request("OPTIONS", call_id="c9")
    (event,) = layer.receive(original, UDP_PEER, 0.0)
    assert isinstance(event, RequestReceived)
    layer.send_response(make_response(original, 200, to_tag="x"), 0.0)
    run_until(layer, 100.0)
    later = request("OPTIONS", call_id="c9", branch="z9hG4bKlater")
    assert len(layer.receive(later, UDP_PEER, 200.0)) == 1
    assert isinstance(first, RequestReceived)


def test_request_without_via_is_a_protocol_error() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS")
    layer.receive(options, UDP_PEER, 0.0)
    layer.send_response(make_response(options, 200, to_tag="t"), 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_response(make_response(options, 200, to_tag="t"), 0.0)
    req = request()
    req.headers.remove("Via")
    with pytest.raises(ProtocolError):
        layer.receive(req, UDP_PEER, 0.0)
    # The termination the misuse caused is still reported, with the next batch.
    assert len(layer.handle_timer(0.1)) == 1


def test_layer_iterates_its_transactions() -> None:
    layer, client_key = client(request("OPTIONS"))
    layer.receive(request("OPTIONS", branch="z9hG4bKin"), UDP_PEER, 0.0)
    kinds = sorted(transaction.kind.value for transaction in layer)
    assert kinds == ["non-INVITE client", "non-INVITE server"]
    assert client_key in {transaction.key for transaction in layer}


def test_transitions_are_logged_with_the_call_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    req = request(call_id="logged-call")
    layer, _ = client(req)
    with caplog.at_level(logging.DEBUG, logger="switch.sip.transaction"):
        layer.receive(respond(req, 180), UDP_PEER, 0.1)
    assert (
        "[logged-call] INVITE client transaction Calling -> Proceeding" in caplog.text
    )


# --- a single transaction driven by hand ----------------------------------------------


def state_of(transaction: Transaction) -> TransactionState:
    return transaction.state


def test_transaction_by_hand() -> None:
    outgoing: list[Transmit] = []
    req = request()
    transaction = Transaction(
        kind=TransactionKind.INVITE_CLIENT,
        key="k",
        request=req,
        peer=UDP_PEER,
        timers=Timers(),
        outgoing=outgoing,
    )
    transaction.start(0.0)
    assert transaction.next_deadline() == 0.5
    assert transaction.deadline(TimerName.B) == 32.0
    assert transaction.handle(I.TIMER_A, 0.5) == []
    assert transaction.deadline(TimerName.A) == 1.5
    assert len(outgoing) == 2
    # Inputs without their message do nothing but move the state.
    assert transaction.handle(I.RECEIVE_300_699, 0.6) == []
    assert transaction.state is S.COMPLETED
    assert transaction.handle(I.RECEIVE_300_699, 0.7) == []
    assert len(outgoing) == 2
    with pytest.raises(LocalProtocolError):
        transaction.handle(I.SEND_1XX, 0.8)
    assert state_of(transaction) is S.TERMINATED
    assert transaction.next_deadline() is None


def test_server_transaction_by_hand_ignores_missing_messages() -> None:
    outgoing: list[Transmit] = []
    transaction = Transaction(
        kind=TransactionKind.INVITE_SERVER,
        key="k",
        request=request(),
        peer=UDP_PEER,
        timers=Timers(),
        outgoing=outgoing,
    )
    with pytest.raises(LocalProtocolError, match="only a client"):
        transaction.start(0.0)
    assert transaction.handle(I.SEND_2XX, 0.0) == []
    assert transaction.handle(I.RECEIVE_ACK, 0.0) == []
    assert outgoing == []


# --- the tables -----------------------------------------------------------------------

ALL_PAIRS = [
    (kind, state, event)
    for kind in TransactionKind
    for state in STATE_TIMERS[kind]
    for event in TransactionInput
]
NETWORK_INPUTS = {
    TransactionKind.INVITE_CLIENT: (I.RECEIVE_1XX, I.RECEIVE_2XX, I.RECEIVE_300_699),
    TransactionKind.NON_INVITE_CLIENT: (
        I.RECEIVE_1XX,
        I.RECEIVE_2XX,
        I.RECEIVE_300_699,
    ),
    TransactionKind.INVITE_SERVER: (I.RECEIVE_REQUEST, I.RECEIVE_ACK),
    TransactionKind.NON_INVITE_SERVER: (I.RECEIVE_REQUEST,),
}


@pytest.mark.parametrize(("kind", "state", "event"), ALL_PAIRS)
def test_every_state_input_pair(
    kind: TransactionKind, state: TransactionState, event: TransactionInput
) -> None:
    machine = TransactionStateMachine(kind, state=state)
    expected = TRANSITIONS[kind].get((state, event))
    if expected is None:
        with pytest.raises(LocalProtocolError, match=kind.value):
            machine.process(event)
        assert machine.state is S.TERMINATED
    else:
        assert machine.process(event) == expected
        assert machine.state is expected.target
        assert machine.state in STATE_TIMERS[kind]


@pytest.mark.parametrize("kind", list(TransactionKind))
def test_tables_are_consistent(kind: TransactionKind) -> None:
    table = TRANSITIONS[kind]
    states = STATE_TIMERS[kind]
    assert INITIAL_STATES[kind] in states
    for (state, event), transition in table.items():
        assert state in states and state is not S.TERMINATED
        assert transition.target in states
        # Only timers the target state runs are started.
        assert set(transition.start) <= states[transition.target]
        # A timer input only where that timer can run.
        timer = {value: name for name, value in TIMER_INPUTS.items()}.get(event)
        assert timer is None or timer in states[state]
    for state in states:
        if state is S.TERMINATED:
            assert not any(key[0] is state for key in table)
            continue
        # The network can never drive a live transaction into our error path.
        for event in (*NETWORK_INPUTS[kind], I.TRANSPORT_ERROR):
            assert (state, event) in table, (state, event)
        # Every timer a state runs has an entry there.
        for timer in states[state]:
            assert (state, TIMER_INPUTS[timer]) in table


def test_client_machines_never_send_responses() -> None:
    for kind in (TransactionKind.INVITE_CLIENT, TransactionKind.NON_INVITE_CLIENT):
        for transition in TRANSITIONS[kind].values():
            assert Action.SEND_RESPONSE not in transition.actions
            assert Action.RESEND_RESPONSE not in transition.actions


def test_machine_rejects_a_foreign_state() -> None:
    with pytest.raises(LocalProtocolError, match="has no state Confirmed"):
        TransactionStateMachine(TransactionKind.INVITE_CLIENT, state=S.CONFIRMED)


@given(
    kind=st.sampled_from(list(TransactionKind)),
    data=st.data(),
    events=st.lists(st.sampled_from(list(TransactionInput)), max_size=20),
)
def test_machine_property(
    kind: TransactionKind, data: st.DataObject, events: list[TransactionInput]
) -> None:
    """After any inputs the machine is in one of its states, or raised and Terminated."""
    start = data.draw(
        st.sampled_from(sorted(STATE_TIMERS[kind], key=lambda s: s.value))
    )
    machine = TransactionStateMachine(kind, state=start)
    for event in events:
        before = machine.state
        try:
            machine.process(event)
        except LocalProtocolError:
            assert machine.state is S.TERMINATED
            assert (before, event) not in TRANSITIONS[kind]
        else:
            assert machine.state in STATE_TIMERS[kind]


# --- the layer under random drive -----------------------------------------------------

OPERATIONS = st.one_of(
    st.tuples(
        st.just("advance"), st.sampled_from([0.0, 0.1, 0.5, 1.0, 4.0, 5.0, 32.0])
    ),
    st.tuples(st.just("response"), st.sampled_from([100, 180, 200, 486])),
    st.tuples(st.just("request"), st.just(0)),
    st.tuples(st.just("ack"), st.just(0)),
    st.tuples(st.just("send"), st.sampled_from([100, 180, 200, 486])),
    st.tuples(st.just("error"), st.just(0)),
    st.tuples(st.just("next"), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(TransactionKind)),
    transport=st.sampled_from(["UDP", "TCP"]),
    send_trying=st.booleans(),
    operations=st.lists(OPERATIONS, max_size=25),
)
def test_layer_property(
    kind: TransactionKind,
    transport: str,
    send_trying: bool,
    operations: list[tuple[str, float]],
) -> None:
    """Valid states only, timers never behind the clock, nothing sent once Terminated."""
    peer: Address = ("UDP", "192.0.2.10", 5060) if transport == "UDP" else TCP_PEER
    is_client = kind in (
        TransactionKind.INVITE_CLIENT,
        TransactionKind.NON_INVITE_CLIENT,
    )
    method = "INVITE" if kind.value.startswith("INVITE") else "OPTIONS"
    req = request(method, transport=transport)
    layer = TransactionLayer(send_trying=send_trying)
    now = 0.0
    if is_client:
        key = layer.send_request(req, peer, now)
    else:
        (event,) = layer.receive(req, peer, now)
        assert isinstance(event, RequestReceived)
        assert event.transaction_key is not None
        key = event.transaction_key
    layer.take_outgoing()
    terminated = 0

    def check(events: list[Event], outgoing: list[Transmit], was_gone: bool) -> None:
        nonlocal terminated
        terminated += events.count(TransactionTerminated(transaction_key=key))
        assert terminated <= 1
        state = layer.transaction_state(key)
        assert state is None or state in STATE_TIMERS[kind]
        assert state is not S.TERMINATED
        if terminated:
            assert state is None
        if was_gone:
            assert outgoing == []
        assert all(transmit.destination == peer for transmit in outgoing)
        deadline = layer.next_deadline()
        assert deadline is None or deadline >= now

    for operation, value in operations:
        gone = layer.transaction_state(key) is None
        events: list[Event] = []
        if operation == "advance":
            now += value
            events = layer.handle_timer(now)
            deadline = layer.next_deadline()
            assert deadline is None or deadline > now
        elif operation == "next":
            deadline = layer.next_deadline()
            if deadline is not None:
                assert deadline >= now
                now = deadline
                events = layer.handle_timer(now)
        elif operation == "response" and is_client:
            events = layer.receive(respond(req, int(value)), peer, now)
        elif operation == "request" and not is_client and not gone:
            events = layer.receive(req, peer, now)
            assert not any(isinstance(event, RequestReceived) for event in events)
        elif operation == "ack" and method == "INVITE" and not is_client:
            ack = request("ACK", transport=transport, to_tag="totag")
            events = layer.receive(ack, peer, now)
        elif operation == "send" and not is_client:
            response = make_response(
                req, int(value), to_tag="totag" if value > 100 else None
            )
            try:
                layer.send_response(response, now)
            except LocalProtocolError:
                assert layer.transaction_state(key) is None
        elif operation == "error":
            events = layer.transport_error(key, now)
        check(events, layer.take_outgoing(), gone)
    check(
        layer.handle_timer(now),
        layer.take_outgoing(),
        layer.transaction_state(key) is None,
    )


# --- the timer queue's kept earliest deadline -----------------------------------------

_QUEUE_OPS = st.lists(
    st.tuples(
        st.sampled_from(["push", "stop", "forget", "advance", "ask"]),
        st.integers(0, 2),  # transaction
        st.sampled_from([TimerName.A, TimerName.B, TimerName.K]),
        st.sampled_from([0.0, 0.5, 1.0, 5.0, 32.0]),  # interval, or time to advance
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_QUEUE_OPS)
def test_timer_queue_kept_deadline_equals_a_full_search(
    ops: list[tuple[str, int, TimerName, float]],
) -> None:
    # next_deadline keeps its answer while its entry stays live and no push comes
    # earlier: after any mix of arming, stopping, forgetting and firing it must
    # equal the earliest live entry found by looking at every entry.
    queue = _TimerQueue(32.0)
    deadlines: list[dict[TimerName, float]] = [{}, {}, {}]
    now = 0.0

    def full_search() -> float | None:
        live = [
            entry[0]
            for entry in [*queue._heap, *queue._fifo]
            if entry[2].get(entry[3]) == entry[0]
        ]
        return min(live, default=None)

    for op, index, name, amount in ops:
        timers = deadlines[index]
        if op == "push":
            timers[name] = now + amount
            queue.push(now + amount, amount, timers, name, str(index))
        elif op == "stop":
            timers.pop(name, None)
        elif op == "forget":
            timers.clear()
        elif op == "advance":
            now += amount
            while (entry := queue.pop_due(now)) is not None:
                if entry[2].get(entry[3]) == entry[0]:
                    del entry[2][entry[3]]  # fired, as Transaction.handle does
        expected = full_search()
        assert queue.next_deadline() == expected
        assert queue.next_deadline() == expected  # asked again: the kept answer


def test_call_id_adapter_prefixes_names_its_caller_and_skips_below_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Lines carry ``[call-id]`` (a '%' in it kept literal) and the function that
    logged them; below the logger's level nothing is formatted or recorded."""
    log = CallIdAdapter(logging.getLogger("test.callid"), {"call_id": "a%b@host"})

    def answer_inbound() -> None:
        log.info("answered %d", 200)
        log.debug("not shown %s", "x")

    with caplog.at_level(logging.INFO, logger="test.callid"):
        answer_inbound()
    assert [(r.getMessage(), r.funcName) for r in caplog.records] == [
        ("[a%b@host] answered 200", "answer_inbound")
    ]
