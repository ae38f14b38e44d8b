"""The B2BUA's call logic against a fake stack and a fake media engine.

The fake stack records every response and request and lets the test answer each
outbound request; the fake engine hands out endpoints and counts commands. No
sockets, no timers beyond the event loop's.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from media.commands import (
    CloseEndpoint,
    Connect,
    CreateEndpoint,
    Done,
    EndpointCreated,
    EndpointStats,
    GetStats,
)
from switch.b2bua import B2bua, Limits
from switch.call import best_status, called_number, ordered_codecs
from switch.dialplan import Caller, Dialplan, Rule
from switch.events import ANY, new_bus
from switch.leg import cause_for_status, reason_cause
from switch.sip.auth import DigestClient, DigestServer
from switch.sip.message import Request, Response, make_response, parse_message
from switch.sip.timers import Timers
from switch.sip.transaction import TransactionLayer
from switch.stack import RequestTimeout
from switch.transport import Address
from switch.users import Authenticator, User, UserDirectory

TRUNK: Address = ("UDP", "192.0.2.1", 5060)
PHONE_A: Address = ("UDP", "127.0.0.1", 40001)
PHONE_B: Address = ("UDP", "127.0.0.1", 40002)

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    "m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
)


def answer_sdp(port: int = 32000, codec: str = "8 PCMA") -> str:
    pt, name = codec.split()
    return (
        "v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\n"
    )


def invite(
    number: str = "1002", *, body: str = OFFER, branch: str = "z9hG4bK1"
) -> Request:
    text = (
        f"INVITE sip:{number}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n"
        "From: <sip:+74951234567@192.0.2.1>;tag=caller\r\n"
        f"To: <sip:{number}@127.0.0.1>\r\n"
        "Call-ID: inbound-1\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:carrier@192.0.2.1:5060>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


@dataclass
class Sent:
    request: Request
    destination: Address
    future: asyncio.Future[Response]
    on_provisional: Callable[[Response], None] | None


@dataclass
class FakeStack:
    """Records responses and requests; the test resolves each request's future."""

    layer: TransactionLayer = field(
        default_factory=lambda: TransactionLayer(timers=Timers())
    )
    handlers: dict[str, object] = field(default_factory=dict)
    responses: list[Response] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    acks: list[Request] = field(default_factory=list)
    on_late_2xx: object = None
    _branches: itertools.count[int] = field(default_factory=itertools.count)

    def local_address(self, transport: str = "UDP") -> tuple[str, int]:
        return ("127.0.0.1", 5060)

    def respond(self, request: Request, response: Response, **_: object) -> None:
        self.responses.append(response)

    async def request(
        self,
        request: Request,
        destination: Address,
        *,
        on_provisional: Callable[[Response], None] | None = None,
        add_via: bool = True,
    ) -> Response:
        return await self.send_request(
            request, destination, on_provisional=on_provisional, add_via=add_via
        )

    def send_request(
        self,
        request: Request,
        destination: Address,
        *,
        on_provisional: Callable[[Response], None] | None = None,
        add_via: bool = True,
    ) -> asyncio.Future[Response]:
        if add_via:
            branch = f"z9hG4bKout{next(self._branches)}"
            request.headers.add("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch={branch}")
            # keep Via first
            lines = list(request.headers)
            request.headers = type(request.headers)([lines[-1], *lines[:-1]])
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.sent.append(Sent(request, destination, future, on_provisional))
        return future

    def send_ack(self, ack: Request, destination: Address) -> None:
        self.acks.append(ack)

    def statuses(self) -> list[int]:
        return [response.status for response in self.responses]

    def by_method(self, method: str) -> list[Sent]:
        return [sent for sent in self.sent if sent.request.method == method]


class FakeEngine:
    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.commands: list[object] = []
        self.open: set[int] = set()

    def execute(self, command: object) -> object:
        self.commands.append(command)
        if isinstance(command, CreateEndpoint):
            endpoint_id = next(self.ids)
            self.open.add(endpoint_id)
            port = 20000 + 2 * endpoint_id
            return EndpointCreated(
                endpoint_id=endpoint_id,
                host="127.0.0.1",
                rtp_port=port,
                rtcp_port=port + 1,
            )
        if isinstance(command, CloseEndpoint):
            self.open.discard(command.endpoint_id)
        if isinstance(command, GetStats):
            return EndpointStats(
                endpoint_id=command.endpoint_id,
                packets_in=10,
                bytes_in=1600,
                packets_out=10,
                bytes_out=1600,
                lost=1,
                jitter_ms=2.0,
                round_trip_ms=None,
                mos=4.3,
                ssrcs_heard=1,
                ssrc_in=1,
                ssrc_out=2,
                remote=None,
                latched=False,
                rtcp_in=0,
                rtcp_out=0,
                dtmf_events=0,
            )
        return Done()


@dataclass
class FakeBinding:
    contact: str
    source: Address
    reachable: bool = True


class FakeRegistrar:
    def __init__(self, bindings: dict[str, list[FakeBinding]]) -> None:
        self.bindings = bindings

    def lookup(self, user: str) -> list[FakeBinding]:
        return self.bindings.get(user, [])

    def all_bindings(self) -> list[FakeBinding]:
        return [b for bindings in self.bindings.values() for b in bindings]

    def registered_from(self, source: Address) -> bool:
        return any(b.source[1:] == source[1:] for b in self.all_bindings())


class FakeTrunks:
    def identify(self, request: Request, source: Address) -> object | None:
        return "demo" if source[1] == TRUNK[1] else None

    def destination(self, name: str) -> tuple[Address, object]:
        return TRUNK, name

    def request_uri(self, name: str, number: str) -> str:
        return f"sip:{number}@192.0.2.1"

    def acquire(self, name: str) -> bool:
        return True

    def release(self, name: str) -> None:
        pass

    def credentials(self, name: str) -> DigestClient | None:
        return DigestClient(username="acct", password="secret")


@dataclass
class World:
    b2bua: B2bua
    stack: FakeStack
    engine: FakeEngine
    events: list[object]


def make_world(
    bindings: dict[str, list[FakeBinding]] | None = None,
    *,
    limits: Limits | None = None,
) -> World:
    stack = FakeStack()
    engine = FakeEngine()
    users = UserDirectory(
        [
            User.from_password(name=n, realm="test", password="pw")
            for n in ("1001", "1002")
        ]
    )
    authenticator = Authenticator(
        directory=users, server=DigestServer(realm="test", secret=b"k" * 32)
    )
    dialplan = Dialplan(
        rules=[
            Rule(pattern="re:100[0-9]", to="user"),
            Rule(pattern="_9X.", to="trunk:demo", strip=1),
        ],
        users=users,
        trunks=["demo"],
    )
    bus = new_bus()
    events: list[object] = []
    bus.on(ANY, events.append)
    b2bua = B2bua(
        stack=stack,  # type: ignore[arg-type]
        engine=engine,  # type: ignore[arg-type]
        registrar=FakeRegistrar(bindings or {}),  # type: ignore[arg-type]
        authenticator=authenticator,
        dialplan=dialplan,
        trunks=FakeTrunks(),  # type: ignore[arg-type]
        bus=bus,
        limits=limits or Limits(),
    )
    b2bua.install()
    return World(b2bua, stack, engine, events)


def reply(sent: Sent, status: int, *, tag: str = "callee", body: str = "") -> Response:
    response = make_response(sent.request, status, to_tag=tag)
    if status < 300 and status > 100:
        response.headers.add("Contact", "<sip:callee@127.0.0.1:40002>")
    if body:
        response.headers.add("Content-Type", "application/sdp")
        response.body = body.encode()
    return response


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def names(world: World) -> list[str]:
    return [type(event).__name__ for event in world.events]


# -- pure helpers -------------------------------------------------------------------


def test_best_status_prefers_6xx_then_busy_then_lowest() -> None:
    assert best_status([480, 603, 486]) == 603
    assert best_status([480, 486]) == 486
    assert best_status([487, 404, 500]) == 404
    assert best_status([487, 408]) == 408
    assert best_status([487]) == 480


def test_causes_follow_rfc_3398_and_reason_header() -> None:
    assert cause_for_status(486) == 17
    assert cause_for_status(404) == 1
    assert cause_for_status(200) == 16
    assert cause_for_status(499) == 31
    bye = invite()
    bye.headers.add("Reason", 'Q.850;cause=34;text="no circuit"')
    assert reason_cause(bye) == 34


def test_codec_order_and_called_number() -> None:
    assert [c.name for c in ordered_codecs("PCMA")][:2] == ["PCMA", "PCMU"]
    assert [c.name for c in ordered_codecs(None)][:2] == ["PCMU", "PCMA"]
    assert called_number("sip:600@example.com") == "600"
    assert called_number("tel:+74951234567") == "+74951234567"
    assert called_number("garbage") == ""


# -- call set-up ----------------------------------------------------------------------


async def test_unknown_source_is_challenged_never_routed() -> None:
    world = make_world()
    response = world.b2bua.handle_invite(invite("1002"), ("UDP", "198.51.100.7", 5060))
    assert isinstance(response, Response) and response.status == 407
    assert world.stack.sent == []


async def test_trunk_calling_out_is_refused_403() -> None:
    world = make_world()
    response = world.b2bua.handle_invite(invite("94951234567"), TRUNK)
    assert isinstance(response, Response) and response.status == 403
    assert "CallRejected" in names(world) and world.stack.sent == []


async def test_unknown_number_404() -> None:
    world = make_world()
    response = world.b2bua.handle_invite(invite("5555"), TRUNK)
    assert isinstance(response, Response) and response.status == 404


async def test_full_switch_503_with_retry_after() -> None:
    bindings = {"1002": [FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B)]}
    world = make_world(bindings, limits=Limits(max_calls=1, retry_after=7))
    assert world.b2bua.handle_invite(invite("1002"), TRUNK) is None
    refused = world.b2bua.handle_invite(invite("1002", branch="z9hG4bK2"), TRUNK)
    assert isinstance(refused, Response) and refused.status == 503
    assert refused.headers.get("Retry-After") == "7"
    assert len(world.b2bua.calls) == 1
    await settle()
    await world.b2bua.stop()
    assert world.b2bua.calls == {}


async def test_fork_first_answer_wins_other_cancelled_and_call_bridged() -> None:
    bindings = {
        "1002": [
            FakeBinding("sip:1002@127.0.0.1:40001", PHONE_A),
            FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B),
        ]
    }
    world = make_world(bindings)
    assert world.b2bua.handle_invite(invite("1002"), TRUNK) is None
    await settle()
    first, second = world.stack.by_method("INVITE")
    assert first.request.call_id != second.request.call_id != "inbound-1"
    assert first.on_provisional is not None and second.on_provisional is not None
    first.on_provisional(reply(first, 180, tag="a"))
    second.on_provisional(reply(second, 180, tag="b"))
    assert world.stack.statuses() == [180]  # relayed once
    second.future.set_result(reply(second, 200, tag="b", body=answer_sdp()))
    await settle()
    assert world.stack.statuses() == [180, 200]
    assert len(world.stack.acks) == 1
    cancels = world.stack.by_method("CANCEL")
    assert [c.request.call_id for c in cancels] == [first.request.call_id]
    assert any(isinstance(c, Connect) for c in world.engine.commands)
    assert "CallBridged" in names(world)
    # PCMU caller, PCMA callee: the engine is told both codecs (it transcodes).
    codecs = {c.codec.value for c in world.engine.commands if hasattr(c, "codec")}
    assert codecs == {"PCMU", "PCMA"}
    # the losing fork's 487 changes nothing
    first.future.set_result(reply(first, 487, tag="a"))
    await settle()
    assert world.stack.statuses() == [180, 200]


async def test_busy_passed_back_and_media_released() -> None:
    bindings = {"1002": [FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B)]}
    world = make_world(bindings)
    world.b2bua.handle_invite(invite("1002"), TRUNK)
    await settle()
    (sent,) = world.stack.by_method("INVITE")
    sent.future.set_result(reply(sent, 486))
    await settle()
    assert world.stack.statuses() == [486]
    assert world.engine.open == set()
    assert world.b2bua.calls == {}
    assert names(world)[-1] == "CallEnded"


async def test_timeout_of_the_only_fork_gives_408() -> None:
    bindings = {"1002": [FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B)]}
    world = make_world(bindings)
    world.b2bua.handle_invite(invite("1002"), TRUNK)
    await settle()
    (sent,) = world.stack.by_method("INVITE")
    sent.future.set_exception(RequestTimeout("B"))
    await settle()
    assert world.stack.statuses() == [408]


async def test_ring_timeout_cancels_and_gives_480() -> None:
    bindings = {"1002": [FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B)]}
    world = make_world(bindings, limits=Limits(ring_timeout=0.05))
    world.b2bua.handle_invite(invite("1002"), TRUNK)
    await settle()
    (sent,) = world.stack.by_method("INVITE")
    assert sent.on_provisional is not None
    sent.on_provisional(reply(sent, 180))
    await asyncio.sleep(0.1)
    await settle()
    assert world.stack.statuses() == [180, 480]
    assert len(world.stack.by_method("CANCEL")) == 1


async def test_cancel_propagates_and_crossing_2xx_is_acked_and_byed() -> None:
    bindings = {"1002": [FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B)]}
    world = make_world(bindings)
    request = invite("1002")
    world.b2bua.handle_invite(request, TRUNK)
    await settle()
    (sent,) = world.stack.by_method("INVITE")
    assert sent.on_provisional is not None
    sent.on_provisional(reply(sent, 180))
    cancel = parse_message(
        request.to_bytes()
        .replace(b"INVITE sip", b"CANCEL sip")
        .replace(b"CSeq: 1 INVITE", b"CSeq: 1 CANCEL")
    )
    assert isinstance(cancel, Request)
    assert world.b2bua.handle_cancel(cancel, TRUNK) is None
    assert world.stack.statuses() == [180, 200, 487]
    await settle()
    assert len(world.stack.by_method("CANCEL")) == 1
    # the callee's 200 crossed our CANCEL: ACK it, then BYE
    sent.future.set_result(reply(sent, 200, body=answer_sdp()))
    await settle()
    assert len(world.stack.acks) == 1
    assert len(world.stack.by_method("BYE")) == 1


async def test_bye_from_callee_ends_both_legs_with_events() -> None:
    bindings = {"1002": [FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B)]}
    world = make_world(bindings)
    world.b2bua.handle_invite(invite("1002"), TRUNK)
    await settle()
    (sent,) = world.stack.by_method("INVITE")
    sent.future.set_result(reply(sent, 200, body=answer_sdp()))
    await settle()
    outbound = sent.request
    bye_text = (
        f"BYE sip:ccswitch@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:40002;branch=z9hG4bKbye\r\n"
        f"From: <sip:1002@127.0.0.1>;tag=callee\r\nTo: {outbound.headers.get('From')}\r\n"
        f"Call-ID: {outbound.call_id}\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    bye = parse_message(bye_text.encode())
    assert isinstance(bye, Request)
    assert world.b2bua.handle_bye(bye, PHONE_B) is None
    await settle()
    assert world.stack.statuses()[-1] == 200
    assert len(world.stack.by_method("BYE")) == 1  # to the caller
    assert world.engine.open == set()
    ended = [e for e in world.events if type(e).__name__ == "CallEnded"]
    assert len(ended) == 1 and ended[0].hangup_by == "callee"  # type: ignore[attr-defined]
    legs = [e for e in world.events if type(e).__name__ == "LegEnded"]
    assert len(legs) == 2 and all(e.mos == 4.3 for e in legs)  # type: ignore[attr-defined]


async def test_an_ended_call_is_freed_without_the_garbage_collector() -> None:
    """Reference counting alone frees a finished call: a cycle through it (a timer
    closure that schedules itself, say) would keep every leg, dialog and SDP of it in
    memory until the collector's next pass, and at 1000 calls such passes take
    hundreds of milliseconds of stalled signalling."""
    bindings = {"1002": [FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B)]}
    world = make_world(bindings)
    gc.collect()
    gc.disable()
    try:
        world.b2bua.handle_invite(invite("1002"), TRUNK)
        await settle()
        (sent,) = world.stack.by_method("INVITE")
        sent.future.set_result(reply(sent, 200, body=answer_sdp()))
        await settle()
        (call,) = world.b2bua.calls.values()
        freed = weakref.ref(call)
        call.end(hangup_by="caller")
        await settle()
        for bye in world.stack.by_method("BYE"):  # the callee answers our BYE
            bye.future.set_result(reply(bye, 200))
        await settle()
        assert world.b2bua.calls == {}
        # a real stack forgets a request's callbacks when its transaction ends; this
        # fake keeps every request it was given
        world.stack.sent.clear()
        del call, sent
        assert freed() is None
    finally:
        gc.enable()


async def test_in_dialog_requests_for_unknown_dialogs_get_481() -> None:
    world = make_world()
    text = (
        "BYE sip:ccswitch@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n"
        "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: nope\r\n"
        "CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    bye = parse_message(text.encode())
    assert isinstance(bye, Request)
    response = world.b2bua.handle_bye(bye, TRUNK)
    assert isinstance(response, Response) and response.status == 481


def test_caller_dataclass_is_the_dialplans() -> None:
    caller = Caller(kind="trunk", name="demo", number="1", allow_outbound=False)
    assert caller.kind == "trunk"


@pytest.mark.parametrize("status", [486, 603])
async def test_failures_reach_the_caller(status: int) -> None:
    bindings = {"1002": [FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B)]}
    world = make_world(bindings)
    world.b2bua.handle_invite(invite("1002"), TRUNK)
    await settle()
    (sent,) = world.stack.by_method("INVITE")
    sent.future.set_result(reply(sent, status))
    await settle()
    assert world.stack.statuses() == [status]


# -- helpers for established calls -------------------------------------------------

ONE_BINDING = {"1002": [FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B)]}


def from_caller(
    world: World,
    method: str,
    cseq: int,
    *,
    body: str = "",
    extra: str = "",
    branch: str = "z9hG4bKin",
) -> Request:
    """An in-dialog request from the caller (the trunk) to our inbound leg."""
    to_tag = next(r.to.tag for r in world.stack.responses if r.to.tag)
    content = "Content-Type: application/sdp\r\n" if body else ""
    text = (
        f"{method} sip:ccswitch@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}{cseq}\r\n"
        "From: <sip:+74951234567@192.0.2.1>;tag=caller\r\n"
        f"To: <sip:1002@127.0.0.1>;tag={to_tag}\r\n"
        f"Call-ID: inbound-1\r\nCSeq: {cseq} {method}\r\n"
        "Contact: <sip:carrier@192.0.2.1:5060>\r\n"
        f"{extra}{content}Content-Length: {len(body)}\r\n\r\n{body}"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def from_callee(
    world: World, outbound: Request, method: str, cseq: int, *, body: str = ""
) -> Request:
    """An in-dialog request from the callee to our outbound leg."""
    content = "Content-Type: application/sdp\r\n" if body else ""
    text = (
        f"{method} sip:ccswitch@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:40002;branch=z9hG4bKcallee{cseq}\r\n"
        f"From: <sip:1002@127.0.0.1>;tag=callee\r\nTo: {outbound.headers.get('From')}\r\n"
        f"Call-ID: {outbound.call_id}\r\nCSeq: {cseq} {method}\r\n"
        "Contact: <sip:callee@127.0.0.1:40002>\r\n"
        f"{content}Content-Length: {len(body)}\r\n\r\n{body}"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


async def established(world: World, request: Request | None = None) -> Sent:
    """A trunk call to 1002, answered by the callee and ACKed by the caller."""
    assert world.b2bua.handle_invite(request or invite("1002"), TRUNK) is None
    await settle()
    (sent,) = world.stack.by_method("INVITE")
    sent.future.set_result(reply(sent, 200, body=answer_sdp()))
    await settle()
    assert world.stack.statuses()[-1] == 200
    return sent


HOLD_OFFER = OFFER.replace("o=- 1 1", "o=- 1 2") + "a=sendonly\r\n"


def set_codecs(world: World) -> list[tuple[int, str]]:
    return [
        (c.endpoint_id, c.codec.value)
        for c in world.engine.commands
        if type(c).__name__ == "SetCodec"
    ]


# -- item 1: delayed offer, UPDATE, early media, BYE before ACK, re-INVITE outcomes --


async def test_delayed_offer_our_offer_in_200_answer_in_ack() -> None:
    world = make_world(ONE_BINDING)
    await established(world, invite("1002", body=""))
    ok = world.stack.responses[-1]
    # RFC 3264 section 5: no offer in the INVITE, so the 200 carries ours, the
    # callee's codec (PCMA) first.
    assert ok.headers.get("Content-Type") == "application/sdp"
    assert b"m=audio 20002 RTP/AVP 8 0 101" in ok.body
    inbound = world.b2bua.calls[next(iter(world.b2bua.calls))].inbound
    assert inbound.media is None and inbound.awaiting_ack == 1
    ack = from_caller(world, "ACK", 1, body=answer_sdp(40000, "8 PCMA"))
    world.b2bua.handle_ack(ack, TRUNK)
    assert inbound.awaiting_ack is None and inbound.offer is None
    assert inbound.media is not None and inbound.media.codec.upper() == "PCMA"
    assert (inbound.endpoint_id, "PCMA") in set_codecs(world)
    assert inbound.state.value == "confirmed"
    await world.b2bua.stop()


async def test_delayed_offer_ack_without_answer_ends_the_call() -> None:
    world = make_world(ONE_BINDING)
    await established(world, invite("1002", body=""))
    world.b2bua.handle_ack(from_caller(world, "ACK", 1), TRUNK)
    await settle()
    assert world.b2bua.calls == {}
    # both legs were answered: each gets a BYE
    assert len(world.stack.by_method("BYE")) == 2
    assert world.engine.open == set()


async def test_update_with_sdp_is_answered_from_the_legs_endpoint() -> None:
    world = make_world(ONE_BINDING)
    await established(world)
    world.b2bua.handle_ack(from_caller(world, "ACK", 1), TRUNK)
    update_offer = answer_sdp(41000, "8 PCMA").replace("o=- 2 1", "o=- 1 2")
    response = world.b2bua.handle_update(
        from_caller(world, "UPDATE", 2, body=update_offer), TRUNK
    )
    assert response.status == 200
    assert response.headers.get("Content-Type") == "application/sdp"
    assert b"RTP/AVP 8" in response.body and b"m=audio 20002 " in response.body
    remotes = [c for c in world.engine.commands if type(c).__name__ == "SetRemote"]
    assert getattr(remotes[-1], "port", None) == 41000
    # a plain UPDATE (no SDP) is a 200 without a body
    plain = world.b2bua.handle_update(from_caller(world, "UPDATE", 3), TRUNK)
    assert plain.status == 200 and plain.body == b""
    # an unusable offer is 488 and the call stays up
    bad = "v=0\r\no=- 1 3 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
    bad += "m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    refused = world.b2bua.handle_update(
        from_caller(world, "UPDATE", 4, body=bad), TRUNK
    )
    assert refused.status == 488 and len(world.b2bua.calls) == 1
    await world.b2bua.stop()


async def test_early_media_183_relayed_with_our_sdp_and_bridged_at_once() -> None:
    world = make_world(ONE_BINDING)
    world.b2bua.handle_invite(invite("1002"), TRUNK)
    await settle()
    (sent,) = world.stack.by_method("INVITE")
    assert sent.on_provisional is not None
    sent.on_provisional(reply(sent, 183, body=answer_sdp(33000)))
    assert world.stack.statuses() == [183]
    early = world.stack.responses[0]
    # our SDP (the inbound endpoint), not the callee's
    assert b"m=audio 20002 " in early.body and b"33000" not in early.body
    assert any(isinstance(c, Connect) for c in world.engine.commands)
    # a later 180 is not relayed after the 183 (the caller already hears media)
    sent.on_provisional(reply(sent, 180))
    assert world.stack.statuses() == [183]
    sent.future.set_result(reply(sent, 200, body=answer_sdp(33000)))
    await settle()
    assert world.stack.statuses() == [183, 200]
    # the 200 repeats the answer given in the 183 (RFC 3264: one answer per offer)
    assert world.stack.responses[-1].body == early.body
    await world.b2bua.stop()


async def test_bye_before_the_ack_is_accepted_and_ends_both_legs() -> None:
    world = make_world(ONE_BINDING)
    await established(world)
    bye = from_caller(world, "BYE", 2)
    assert world.b2bua.handle_bye(bye, TRUNK) is None
    assert world.stack.statuses()[-1] == 200
    await settle()
    assert world.b2bua.calls == {}
    assert len(world.stack.by_method("BYE")) == 1  # to the callee only
    ended = [e for e in world.events if type(e).__name__ == "CallEnded"]
    assert ended[0].hangup_by == "caller"  # type: ignore[attr-defined]
    # the late ACK changes nothing and our 200 is no longer retransmitted
    before = len(world.stack.responses)
    world.b2bua.handle_ack(from_caller(world, "ACK", 1), TRUNK)
    await asyncio.sleep(0.6)
    assert len(world.stack.responses) == before


async def _held_by_caller(world: World) -> Sent:
    """Established call; the caller holds (re-INVITE sendonly); our re-INVITE out."""
    sent = await established(world)
    world.b2bua.handle_ack(from_caller(world, "ACK", 1), TRUNK)
    response = world.b2bua.handle_invite(
        from_caller(world, "INVITE", 2, body=HOLD_OFFER), TRUNK
    )
    assert isinstance(response, Response) and response.status == 200
    assert b"a=recvonly" in response.body
    await settle()
    reinvites = [s for s in world.stack.by_method("INVITE") if s is not sent]
    assert len(reinvites) == 1
    assert b"a=sendonly" in reinvites[0].request.body
    assert reinvites[0].request.call_id == sent.request.call_id
    return reinvites[0]


@pytest.mark.parametrize("status", [481, 408])
async def test_reinvite_answered_481_or_408_ends_the_call(status: int) -> None:
    world = make_world(ONE_BINDING)
    reinvite = await _held_by_caller(world)
    reinvite.future.set_result(reply(reinvite, status))
    await settle()
    assert world.b2bua.calls == {}
    # the callee's dialog is gone (481/408): only the caller gets a BYE
    byes = world.stack.by_method("BYE")
    assert [b.request.call_id for b in byes] == ["inbound-1"]


async def test_reinvite_timing_out_ends_the_call() -> None:
    world = make_world(ONE_BINDING)
    reinvite = await _held_by_caller(world)
    reinvite.future.set_exception(RequestTimeout("B"))
    await settle()
    assert world.b2bua.calls == {}
    assert [b.request.call_id for b in world.stack.by_method("BYE")] == ["inbound-1"]


@pytest.mark.parametrize("status", [488, 491])
async def test_reinvite_answered_488_or_491_keeps_the_call(status: int) -> None:
    world = make_world(ONE_BINDING)
    reinvite = await _held_by_caller(world)
    reinvite.future.set_result(reply(reinvite, status))
    await settle()
    assert len(world.b2bua.calls) == 1
    assert world.stack.by_method("BYE") == []
    assert world.stack.acks[-1:] != [] and len(world.stack.acks) == 1  # 2xx ACK only
    await world.b2bua.stop()


async def test_reinvite_2xx_is_acked_and_its_answer_applied() -> None:
    world = make_world(ONE_BINDING)
    reinvite = await _held_by_caller(world)
    answer = answer_sdp(34000, "8 PCMA").replace("a=rtpmap", "a=recvonly\r\na=rtpmap")
    reinvite.future.set_result(reply(reinvite, 200, body=answer))
    await settle()
    assert len(world.stack.acks) == 2
    assert world.stack.acks[-1].cseq.number == reinvite.request.cseq.number
    remotes = [c for c in world.engine.commands if type(c).__name__ == "SetRemote"]
    assert getattr(remotes[-1], "port", None) == 34000
    await world.b2bua.stop()


async def test_glare_our_reinvite_pending_gets_491() -> None:
    world = make_world(ONE_BINDING)
    outbound = (await _held_by_caller(world)).request
    # the callee re-INVITEs while ours is outstanding (RFC 3261 14.2)
    crossing = from_callee(world, outbound, "INVITE", 7, body=answer_sdp(35000))
    response = world.b2bua.handle_invite(crossing, PHONE_B)
    assert isinstance(response, Response) and response.status == 491
    await world.b2bua.stop()


# -- CallSession.collect_digits with RFC 4733 events -------------------------------


def app_world(app: object) -> World:
    world = make_world()
    world.b2bua.dialplan = Dialplan(
        rules=[Rule(pattern="700", to="app:collect")],
        users=UserDirectory([]),
        trunks=["demo"],
    )
    world.b2bua.apps["collect"] = app  # type: ignore[assignment]
    return world


async def test_collect_digits_from_rfc_4733_events() -> None:
    from media.commands import DtmfReceived as MediaDtmf
    from switch.session import CallSession

    collected: list[str] = []

    async def collect(session: CallSession, route: object) -> None:
        await session.answer()
        collected.append(
            await session.collect_digits(max_digits=4, terminator="#", timeout=1.0)
        )
        collected.append(await session.collect_digits(max_digits=2, timeout=0.05))

    world = app_world(collect)
    assert world.b2bua.handle_invite(invite("700"), TRUNK) is None
    await settle()
    assert world.stack.statuses() == [200]
    call = next(iter(world.b2bua.calls.values()))
    endpoint = call.inbound.endpoint_id
    assert endpoint is not None
    for digit in "12#":
        world.b2bua.on_media_event(
            MediaDtmf(endpoint_id=endpoint, digit=digit, timestamp=0)
        )
        await settle()
    await asyncio.sleep(0.1)
    assert collected == ["12", ""]
    dtmf = [e for e in world.events if type(e).__name__ == "DtmfReceived"]
    assert [e.digit for e in dtmf] == ["1", "2", "#"]  # type: ignore[attr-defined]
    # the app returned: the switch hangs up (BYE to the caller)
    assert world.b2bua.calls == {}
    assert [b.request.call_id for b in world.stack.by_method("BYE")] == ["inbound-1"]


async def test_an_app_that_fails_ends_only_its_call_with_500() -> None:
    """A broken app (here: a bad argument it cannot convert) answers the caller 500
    with Q.850 cause 41, not 487, and the switch goes on taking calls."""
    from switch.session import CallSession

    async def broken(session: CallSession, route: object) -> None:
        float("loud")

    world = app_world(broken)
    assert world.b2bua.handle_invite(invite("700"), TRUNK) is None
    await settle()
    assert world.stack.statuses() == [500]
    ended = [e for e in world.events if type(e).__name__ == "CallEnded"]
    assert [(e.status, e.cause) for e in ended] == [(500, 41)]  # type: ignore[attr-defined]
    assert world.b2bua.calls == {}


async def test_collect_digits_raises_hangup_when_the_caller_hangs_up() -> None:
    from switch.session import CallSession, Hangup

    outcome: list[str] = []

    async def collect(session: CallSession, route: object) -> None:
        await session.answer()
        try:
            await session.collect_digits(timeout=5.0)
        except Hangup:
            outcome.append("hangup")
            raise

    world = app_world(collect)
    world.b2bua.handle_invite(invite("700"), TRUNK)
    await settle()
    world.b2bua.handle_ack(from_caller(world, "ACK", 1), TRUNK)
    world.b2bua.handle_bye(from_caller(world, "BYE", 2), TRUNK)
    await settle()
    assert outcome == ["hangup"]
    assert world.b2bua.calls == {}


# -- in-band DTMF: listened for only while an application can take the keys --------

OFFER_WITHOUT_EVENTS = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    "m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def inband_switches(world: World) -> list[bool]:
    from media.commands import DetectInband

    return [c.enabled for c in world.engine.commands if isinstance(c, DetectInband)]


def unwatched(world: World) -> World:
    """``world`` with its catch-all listener swapped for one per event name but
    call.dtmf's: the events are still recorded, and nobody takes key presses."""
    import switch.events as catalogue

    bus = world.b2bua.bus
    assert bus is not None
    bus.remove_all_listeners(ANY)
    for value in vars(catalogue).values():
        if (
            isinstance(value, type)
            and issubclass(value, catalogue.Event)
            and value.name not in (catalogue.DtmfReceived.name, "event")
        ):
            bus.on(value.name, world.events.append)
    return world


async def test_a_caller_without_telephone_event_bridged_to_a_user_is_not_listened_to() -> (
    None
):
    world = unwatched(make_world(ONE_BINDING))
    world.b2bua.handle_invite(invite("1002", body=OFFER_WITHOUT_EVENTS), TRUNK)
    await settle()
    (outbound,) = world.stack.by_method("INVITE")
    outbound.future.set_result(reply(outbound, 200, body=answer_sdp()))
    await settle()

    assert "CallBridged" in names(world)
    assert inband_switches(world) == []  # its tones reach the callee in the audio
    await world.b2bua.stop()


async def test_an_application_hears_tones_until_it_bridges_the_caller() -> None:
    from switch.dialplan import ToTrunk
    from switch.session import CallSession

    heard: list[list[bool]] = []

    async def menu_then_out(session: CallSession, route: object) -> None:
        await session.answer()
        heard.append(inband_switches(world))
        await session.bridge(ToTrunk(trunk="demo", number="+74951234567"))

    world = unwatched(app_world(menu_then_out))
    world.b2bua.handle_invite(invite("700", body=OFFER_WITHOUT_EVENTS), TRUNK)
    await settle()
    (outbound,) = world.stack.by_method("INVITE")
    outbound.future.set_result(reply(outbound, 200, body=answer_sdp()))
    await settle()

    assert heard == [[True]]  # the menu could take keys
    assert "CallBridged" in names(world)
    assert inband_switches(world) == [True, False]  # bridged: no more decoding
    await world.b2bua.stop()


async def test_a_call_dtmf_subscriber_hears_a_bridged_in_band_caller() -> None:
    world = unwatched(make_world(ONE_BINDING))
    assert world.b2bua.bus is not None
    world.b2bua.bus.on("call.dtmf", lambda event: None)  # e.g. the web desk
    world.b2bua.handle_invite(invite("1002", body=OFFER_WITHOUT_EVENTS), TRUNK)
    await settle()
    (outbound,) = world.stack.by_method("INVITE")
    outbound.future.set_result(reply(outbound, 200, body=answer_sdp()))
    await settle()

    assert "CallBridged" in names(world)
    assert inband_switches(world) == [True]  # decoded all along, bridged or not
    await world.b2bua.stop()


async def test_an_application_with_an_rfc_4733_caller_never_decodes_audio() -> None:
    from switch.session import CallSession

    async def answer_only(session: CallSession, route: object) -> None:
        await session.answer()

    world = app_world(answer_only)
    world.b2bua.handle_invite(invite("700"), TRUNK)  # OFFER has telephone-event
    await settle()

    assert inband_switches(world) == []
    await world.b2bua.stop()


# -- item 3: a carrier's 401/407 to our INVITE ---------------------------------------

CHALLENGE = 'Digest realm="carrier", nonce="n0nce", algorithm=MD5, qop="auth"'


def bridging_world() -> World:
    """A trunk call to an app that bridges the caller out through the demo trunk."""
    from switch.dialplan import ToTrunk
    from switch.session import CallSession

    async def out(session: CallSession, route: object) -> None:
        await session.bridge(ToTrunk(trunk="demo", number="+74951234567"))

    return app_world(out)


def challenge(sent: Sent, status: int = 407) -> Response:
    response = reply(sent, status, tag="carrier")
    header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    response.headers.add(header, CHALLENGE)
    return response


@pytest.mark.parametrize(
    ("status", "answer"), [(407, "Proxy-Authorization"), (401, "Authorization")]
)
async def test_carrier_challenge_answered_with_trunk_credentials(
    status: int, answer: str
) -> None:
    world = bridging_world()
    world.b2bua.handle_invite(invite("700"), TRUNK)
    await settle()
    (first,) = world.stack.by_method("INVITE")
    assert first.destination == TRUNK
    assert first.on_provisional is not None
    first.on_provisional(reply(first, 100))
    first.future.set_result(challenge(first, status))
    await settle()
    first_again, second = world.stack.by_method("INVITE")
    assert first_again is first
    resent = second.request
    # RFC 3261 22.2 / 8.1.3.5: same Call-ID, From (tag) and body, next CSeq, new branch
    assert resent.call_id == first.request.call_id
    assert resent.headers.get("From") == first.request.headers.get("From")
    assert resent.cseq.number == first.request.cseq.number + 1
    assert resent.top_via.branch != first.request.top_via.branch
    assert resent.body == first.request.body
    assert len(resent.headers.get_all("Via")) == 1
    credentials = resent.headers.get(answer)
    assert credentials is not None
    assert 'username="acct"' in credentials and 'realm="carrier"' in credentials
    assert 'nonce="n0nce"' in credentials
    second.future.set_result(reply(second, 200, body=answer_sdp()))
    await settle()
    assert "CallBridged" in names(world)
    assert world.stack.acks[-1].cseq.number == resent.cseq.number
    await world.b2bua.stop()


async def test_carrier_refusing_our_credentials_is_not_retried_again() -> None:
    world = bridging_world()
    world.b2bua.handle_invite(invite("700"), TRUNK)
    await settle()
    (first,) = world.stack.by_method("INVITE")
    first.future.set_result(challenge(first))
    await settle()
    second = world.stack.by_method("INVITE")[1]
    second.future.set_result(challenge(second))  # same realm, not stale: refused
    await settle()
    assert len(world.stack.by_method("INVITE")) == 2
    legs = [e for e in world.events if type(e).__name__ == "LegEnded"]
    assert [e.status for e in legs][:1] == [407]  # type: ignore[attr-defined]


async def test_cancel_while_challenged_does_not_resend() -> None:
    world = bridging_world()
    world.b2bua.handle_invite(invite("700"), TRUNK)
    await settle()
    (first,) = world.stack.by_method("INVITE")
    call = next(iter(world.b2bua.calls.values()))
    call.end(hangup_by="caller", status=487)
    first.future.set_result(challenge(first))
    await settle()
    assert len(world.stack.by_method("INVITE")) == 1


# -- item 4: RFC 3262 reliable provisionals and PRACK --------------------------------


def requiring_100rel() -> Request:
    request = invite("1002")
    request.headers.add("Require", "100rel")
    request.headers.add("Supported", "100rel")
    return request


def prack(world: World, rseq: str, cseq: int = 2, rack_cseq: int = 1) -> Request:
    return from_caller(
        world, "PRACK", cseq, extra=f"RAck: {rseq} {rack_cseq} INVITE\r\n"
    )


async def test_caller_requiring_100rel_gets_reliable_18x_one_at_a_time() -> None:
    world = make_world(ONE_BINDING)
    world.b2bua.handle_invite(requiring_100rel(), TRUNK)
    await settle()
    (sent,) = world.stack.by_method("INVITE")
    assert sent.request.headers.get("Supported") == "100rel, timer"
    assert sent.on_provisional is not None
    sent.on_provisional(reply(sent, 180))
    ringing = world.stack.responses[-1]
    assert ringing.status == 180
    assert ringing.headers.get("Require") == "100rel"
    rseq = ringing.headers.get("RSeq")
    assert rseq is not None and 1 <= int(rseq) < 2**31
    # the 183 waits for the 180's PRACK (RFC 3262 section 3)
    sent.on_provisional(reply(sent, 183, body=answer_sdp(33000)))
    assert world.stack.statuses() == [180]
    wrong = world.b2bua.handle_prack(prack(world, str(int(rseq) + 5)), TRUNK)
    assert wrong.status == 481
    ok = world.b2bua.handle_prack(prack(world, rseq, cseq=3), TRUNK)
    assert ok.status == 200
    early = world.stack.responses[-1]
    assert early.status == 183 and early.headers.get("RSeq") == str(int(rseq) + 1)
    assert b"m=audio" in early.body
    # a PRACK for an RSeq no longer outstanding (repeated, or after our 200): 200,
    # since a 481 would end the caller's dialog
    again = world.b2bua.handle_prack(prack(world, rseq, cseq=4), TRUNK)
    assert again.status == 200
    assert world.stack.statuses() == [180, 183]
    other = world.b2bua.handle_prack(prack(world, str(int(rseq) + 1), 5, 7), TRUNK)
    assert other.status == 481  # RAck names another INVITE
    await world.b2bua.stop()


async def test_unacknowledged_reliable_18x_is_retransmitted_then_500() -> None:
    world = make_world(ONE_BINDING)
    world.stack.layer = TransactionLayer(timers=Timers(t1=0.01, t2=0.04))
    world.b2bua.handle_invite(requiring_100rel(), TRUNK)
    await settle()
    (sent,) = world.stack.by_method("INVITE")
    assert sent.on_provisional is not None
    sent.on_provisional(reply(sent, 180))
    await asyncio.sleep(0.05)
    assert world.stack.statuses().count(180) >= 3  # T1, 2*T1, 4*T1...
    await asyncio.sleep(0.7)  # 64*T1
    assert world.stack.statuses()[-1] == 500
    assert world.b2bua.calls == {}
    assert len(world.stack.by_method("CANCEL")) == 1


async def test_prack_stops_the_retransmissions() -> None:
    world = make_world(ONE_BINDING)
    world.stack.layer = TransactionLayer(timers=Timers(t1=0.01, t2=0.04))
    world.b2bua.handle_invite(requiring_100rel(), TRUNK)
    await settle()
    (sent,) = world.stack.by_method("INVITE")
    assert sent.on_provisional is not None
    sent.on_provisional(reply(sent, 180))
    rseq = world.stack.responses[-1].headers.get("RSeq") or ""
    assert world.b2bua.handle_prack(prack(world, rseq), TRUNK).status == 200
    count = len(world.stack.responses)
    await asyncio.sleep(0.2)
    assert len(world.stack.responses) == count
    await world.b2bua.stop()


async def test_callee_reliable_180_is_pracked_once_in_its_early_dialog() -> None:
    world = make_world(ONE_BINDING)
    world.b2bua.handle_invite(invite("1002"), TRUNK)  # caller does not need 100rel
    await settle()
    (sent,) = world.stack.by_method("INVITE")
    assert sent.on_provisional is not None
    reliable = reply(sent, 180)
    reliable.headers.add("Require", "100rel")
    reliable.headers.add("RSeq", "77")
    sent.on_provisional(reliable)
    sent.on_provisional(reliable)  # a retransmission: no second PRACK
    await settle()
    (pracked,) = world.stack.by_method("PRACK")
    assert pracked.request.headers.get("RAck") == "77 1 INVITE"
    assert pracked.request.cseq.number == 2
    assert pracked.request.call_id == sent.request.call_id
    assert pracked.request.to.tag == "callee"
    assert world.stack.statuses() == [180]  # relayed unreliably to the caller
    pracked.future.set_result(make_response(pracked.request, 200))
    sent.future.set_result(reply(sent, 200, body=answer_sdp()))
    await settle()
    world.b2bua.handle_bye(from_caller(world, "BYE", 2), TRUNK)
    await settle()
    (bye,) = world.stack.by_method("BYE")
    assert bye.request.cseq.number == 3  # after the PRACK's CSeq in the same dialog


# -- item 5: RFC 4028 session timers -------------------------------------------------


def timed_invite(*extra: str) -> Request:
    request = invite("1002")
    for line in extra:
        name, _, value = line.partition(":")
        request.headers.add(name, value.strip())
    return request


async def test_session_expires_answered_and_expiry_ends_both_sides() -> None:
    world = make_world(ONE_BINDING)
    await established(
        world, timed_invite("Session-Expires: 120;refresher=uac", "Supported: timer")
    )
    ok = world.stack.responses[-1]
    assert ok.headers.get("Session-Expires") == "120;refresher=uac"
    assert "timer" in ok.headers.get_all("Require")
    call = world.b2bua.calls[next(iter(world.b2bua.calls))]
    timer = call.inbound.session_timer
    assert timer is not None and not timer.we_refresh
    assert call.inbound.session_timer_handle is not None
    # the caller is the refresher: no refresh from us at half time...
    call.on_session_timer(call.inbound, now=timer.started + 60)
    assert world.stack.by_method("UPDATE") == []
    # ...and at 120 - 32 s without its refresh the call ends, BYE to both
    call.on_session_timer(call.inbound, now=timer.started + 88)
    await settle()
    assert world.b2bua.calls == {}
    assert len(world.stack.by_method("BYE")) == 2
    ended = [e for e in world.events if type(e).__name__ == "CallEnded"]
    assert ended[0].cause == 102  # type: ignore[attr-defined]


async def test_refresh_from_the_caller_restarts_the_timer() -> None:
    world = make_world(ONE_BINDING)
    await established(
        world, timed_invite("Session-Expires: 120;refresher=uac", "Supported: timer")
    )
    world.b2bua.handle_ack(from_caller(world, "ACK", 1), TRUNK)
    call = world.b2bua.calls[next(iter(world.b2bua.calls))]
    timer = call.inbound.session_timer
    assert timer is not None
    timer.started -= 50  # as if 50 s had passed
    before = timer.started
    update = from_caller(
        world,
        "UPDATE",
        2,
        extra="Session-Expires: 150;refresher=uac\r\nSupported: timer\r\n",
    )
    response = world.b2bua.handle_update(update, TRUNK)
    assert response.status == 200
    assert response.headers.get("Session-Expires") == "150;refresher=uac"
    assert timer.started > before and timer.interval == 150
    # too small a refresh interval: 422 with our Min-SE, the call goes on
    short = from_caller(
        world, "UPDATE", 3, extra="Session-Expires: 10\r\nSupported: timer\r\n"
    )
    refused = world.b2bua.handle_update(short, TRUNK)
    assert refused.status == 422 and refused.headers.get("Min-SE") == "90"
    # a refresh without Session-Expires turns the timer off (RFC 4028 section 9)
    plain = world.b2bua.handle_update(from_caller(world, "UPDATE", 4), TRUNK)
    assert plain.status == 200 and call.inbound.session_timer is None
    await world.b2bua.stop()


async def test_too_small_interval_in_the_invite_gets_422() -> None:
    world = make_world(ONE_BINDING)
    response = world.b2bua.handle_invite(
        timed_invite("Session-Expires: 30", "Supported: timer"), TRUNK
    )
    assert isinstance(response, Response) and response.status == 422
    assert response.headers.get("Min-SE") == "90"
    assert world.b2bua.calls == {} and world.stack.sent == []


@pytest.mark.parametrize("allow", ["", "INVITE, ACK, BYE, UPDATE"])
async def test_we_refresh_a_caller_without_timers(allow: str) -> None:
    world = make_world(ONE_BINDING)
    extra = ["Session-Expires: 120"] + ([f"Allow: {allow}"] if allow else [])
    sent = await established(world, timed_invite(*extra))
    ok = world.stack.responses[-1]
    assert ok.headers.get("Session-Expires") == "120;refresher=uas"
    assert ok.headers.get("Require") is None
    world.b2bua.handle_ack(from_caller(world, "ACK", 1), TRUNK)
    call = world.b2bua.calls[next(iter(world.b2bua.calls))]
    timer = call.inbound.session_timer
    assert timer is not None and timer.we_refresh
    call.on_session_timer(call.inbound, now=timer.started + 60)
    await settle()
    method = "UPDATE" if allow else "INVITE"
    refreshes = [
        s for s in world.stack.by_method(method) if s.request.call_id == "inbound-1"
    ]
    assert len(refreshes) == 1 and refreshes[0] is not sent
    refresh = refreshes[0].request
    assert refresh.headers.get("Session-Expires") == "120;refresher=uac"
    assert (b"m=audio" in refresh.body) is (method == "INVITE")
    started = timer.started
    answer = reply(refreshes[0], 200, tag="caller", body=OFFER if not allow else "")
    answer.headers.add("Session-Expires", "120;refresher=uac")
    refreshes[0].future.set_result(answer)
    await settle()
    assert timer.started > started and not timer.refresh_sent
    assert len(world.b2bua.calls) == 1
    await world.b2bua.stop()


async def test_refresh_answered_481_ends_the_call() -> None:
    world = make_world(ONE_BINDING)
    await established(world, timed_invite("Session-Expires: 120"))
    world.b2bua.handle_ack(from_caller(world, "ACK", 1), TRUNK)
    call = world.b2bua.calls[next(iter(world.b2bua.calls))]
    timer = call.inbound.session_timer
    assert timer is not None
    call.on_session_timer(call.inbound, now=timer.started + 60)
    await settle()
    refresh = [
        s for s in world.stack.by_method("INVITE") if s.request.call_id == "inbound-1"
    ]
    refresh[0].future.set_result(reply(refresh[0], 481, tag="caller"))
    await settle()
    assert world.b2bua.calls == {}
    # only the callee gets a BYE: the caller's dialog is gone
    callee_call_id = call.outbound[0].call_id
    assert [b.request.call_id for b in world.stack.by_method("BYE")] == [callee_call_id]


async def test_callee_session_timer_from_its_2xx() -> None:
    world = make_world(ONE_BINDING)
    world.b2bua.handle_invite(invite("1002"), TRUNK)
    await settle()
    (sent,) = world.stack.by_method("INVITE")
    assert "timer" in (sent.request.headers.get("Supported") or "")
    ok = reply(sent, 200, body=answer_sdp())
    ok.headers.add("Session-Expires", "90;refresher=uas")
    sent.future.set_result(ok)
    await settle()
    call = world.b2bua.calls[next(iter(world.b2bua.calls))]
    outbound = call.outbound[0]
    timer = outbound.session_timer
    assert timer is not None and not timer.we_refresh and timer.interval == 90
    call.on_session_timer(outbound, now=timer.started + 60)
    await settle()
    assert world.b2bua.calls == {}


# -- item 6: RFC 3891 Replaces ------------------------------------------------------


def replacing_invite(replaces: str, *, body: str = OFFER) -> Request:
    text = (
        "INVITE sip:1002@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKrepl\r\n"
        "From: <sip:+74957654321@192.0.2.1>;tag=target\r\n"
        "To: <sip:1002@127.0.0.1>\r\n"
        "Call-ID: replacing-1\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:target@192.0.2.1:5060>\r\n"
        f"Replaces: {replaces}\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


async def test_invite_with_replaces_takes_over_the_callers_leg() -> None:
    world = make_world(ONE_BINDING)
    await established(world)
    world.b2bua.handle_ack(from_caller(world, "ACK", 1), TRUNK)
    call = world.b2bua.calls[next(iter(world.b2bua.calls))]
    old = call.inbound
    assert old.dialog is not None
    our_tag = old.dialog.id.local_tag
    callee_endpoint = call.outbound[0].endpoint_id
    request = replacing_invite(f"inbound-1;to-tag={our_tag};from-tag=caller")
    assert world.b2bua.handle_invite(request, TRUNK) is None
    await settle()
    ok = world.stack.responses[-1]
    assert ok.status == 200 and ok.call_id == "replacing-1"
    assert b"m=audio" in ok.body
    # the replaced caller gets BYE; the new leg is bridged to the callee
    assert [b.request.call_id for b in world.stack.by_method("BYE")] == ["inbound-1"]
    assert old.ended and call.inbound is not old
    connect = [c for c in world.engine.commands if isinstance(c, Connect)][-1]
    assert {connect.endpoint_a, connect.endpoint_b} == {
        call.inbound.endpoint_id,
        callee_endpoint,
    }
    transferred = [e for e in world.events if type(e).__name__ == "CallTransferred"]
    assert transferred[0].kind == "attended"  # type: ignore[attr-defined]
    assert len(world.b2bua.calls) == 1
    # the new party hangs up: the callee gets BYE, the call ends
    new_to = ok.to.tag
    bye_text = (
        "BYE sip:ccswitch@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKreplbye\r\n"
        "From: <sip:+74957654321@192.0.2.1>;tag=target\r\n"
        f"To: <sip:1002@127.0.0.1>;tag={new_to}\r\n"
        "Call-ID: replacing-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    bye = parse_message(bye_text.encode())
    assert isinstance(bye, Request)
    world.b2bua.handle_bye(bye, TRUNK)
    await settle()
    assert world.b2bua.calls == {}
    assert len(world.stack.by_method("BYE")) == 2
    assert world.engine.open == set()


async def test_invite_with_replaces_takes_over_the_callees_leg() -> None:
    world = make_world(ONE_BINDING)
    sent = await established(world)
    call = world.b2bua.calls[next(iter(world.b2bua.calls))]
    our_tag = sent.request.from_.tag
    replaces = f"{sent.request.call_id};to-tag={our_tag};from-tag=callee"
    assert world.b2bua.handle_invite(replacing_invite(replaces), TRUNK) is None
    await settle()
    assert world.stack.responses[-1].status == 200
    assert [b.request.call_id for b in world.stack.by_method("BYE")] == [
        sent.request.call_id
    ]
    assert call.outbound[0].ended and len(call.outbound) == 2
    assert call.other(call.inbound) is call.outbound[1]
    await world.b2bua.stop()


@pytest.mark.parametrize(
    ("replaces", "status"),
    [
        ("nope;to-tag=a;from-tag=b", 481),
        ("inbound-1;to-tag=a", 400),
    ],
)
async def test_replaces_matching_nothing(replaces: str, status: int) -> None:
    world = make_world(ONE_BINDING)
    await established(world)
    response = world.b2bua.handle_invite(replacing_invite(replaces), TRUNK)
    assert isinstance(response, Response) and response.status == status
    assert world.stack.by_method("BYE") == []
    await world.b2bua.stop()


async def test_replaces_of_an_unanswered_call_is_refused() -> None:
    world = make_world(ONE_BINDING)
    world.b2bua.handle_invite(invite("1002"), TRUNK)
    await settle()
    dialog = next(iter(world.b2bua.calls.values())).inbound.dialog
    assert dialog is not None
    tag = dialog.id.local_tag
    early = world.b2bua.handle_invite(
        replacing_invite(f"inbound-1;to-tag={tag};from-tag=caller"), TRUNK
    )
    assert isinstance(early, Response) and early.status == 481
    only = world.b2bua.handle_invite(
        replacing_invite(f"inbound-1;to-tag={tag};from-tag=caller;early-only"), TRUNK
    )
    assert isinstance(only, Response) and only.status == 486
    await world.b2bua.stop()


async def test_unidentified_replaces_is_challenged_first() -> None:
    world = make_world(ONE_BINDING)
    await established(world)
    request = replacing_invite("inbound-1;to-tag=x;from-tag=caller")
    response = world.b2bua.handle_invite(request, ("UDP", "198.51.100.9", 5060))
    assert isinstance(response, Response) and response.status == 407
    await world.b2bua.stop()


async def answer_notifies(world: World) -> None:
    """Answer every NOTIFY sent so far (the REFER subscription's) with 200."""
    for _ in range(5):
        await settle()
        for sent in world.stack.by_method("NOTIFY"):
            if not sent.future.done():
                sent.future.set_result(make_response(sent.request, 200))


async def test_refer_with_replaces_joins_the_two_calls() -> None:
    bindings = {
        "1002": [FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B)],
        "1001": [FakeBinding("sip:1001@127.0.0.1:40001", PHONE_A)],
    }
    world = make_world(bindings)
    # call 1: the carrier (X) talks to 1002 (A)
    first = await established(world)
    world.b2bua.handle_ack(from_caller(world, "ACK", 1), TRUNK)
    call_1 = world.b2bua.calls[next(iter(world.b2bua.calls))]
    # call 2: the consultation, A's second line reaches 1001 (B)
    consult_invite = parse_message(
        invite("1001", branch="z9hG4bK2").to_bytes().replace(b"inbound-1", b"inbound-2")
    )
    assert isinstance(consult_invite, Request)
    assert world.b2bua.handle_invite(consult_invite, TRUNK) is None
    await settle()
    to_b = world.stack.by_method("INVITE")[-1]
    assert to_b.destination == PHONE_A
    to_b.future.set_result(reply(to_b, 200, tag="b", body=answer_sdp(36000)))
    await settle()
    call_2 = next(c for c in world.b2bua.calls.values() if c is not call_1)
    consult_tag = call_2.inbound.dialog.id.local_tag  # type: ignore[union-attr]
    b_leg = call_2.outbound[0]
    # A refers X to B, replacing its consultation dialog
    refer_to = (
        f"<sip:1001@127.0.0.1?Replaces=inbound-2%3Bto-tag%3D{consult_tag}"
        "%3Bfrom-tag%3Dcaller>"
    )
    refer = from_callee(world, first.request, "REFER", 8)
    refer.headers.add("Refer-To", refer_to)
    response = world.b2bua.handle_refer(refer, PHONE_B)
    assert response.status == 202
    await answer_notifies(world)
    # X (call 1's caller) is now bridged to B; A's two legs got BYE
    assert call_1.other(call_1.inbound) is b_leg
    connect = [c for c in world.engine.commands if isinstance(c, Connect)][-1]
    assert {connect.endpoint_a, connect.endpoint_b} == {
        call_1.inbound.endpoint_id,
        b_leg.endpoint_id,
    }
    byes = sorted(b.request.call_id for b in world.stack.by_method("BYE"))
    assert byes == sorted([first.request.call_id, "inbound-2"])
    assert call_2.ended and not call_1.ended and not b_leg.ended
    notifies = [s.request.body for s in world.stack.by_method("NOTIFY")]
    assert notifies[-1].startswith(b"SIP/2.0 200")
    kinds = [e.kind for e in world.events if type(e).__name__ == "CallTransferred"]
    assert kinds == ["attended"]
    # B hangs up: X gets BYE, the joined call ends
    bye_from_b = from_callee(world, to_b.request, "BYE", 9)
    bye_from_b.headers.set("From", "<sip:1001@127.0.0.1>;tag=b")
    world.b2bua.handle_bye(bye_from_b, PHONE_A)
    await settle()
    assert world.b2bua.calls == {}
    assert "inbound-1" in [b.request.call_id for b in world.stack.by_method("BYE")]
    assert world.engine.open == set()


async def test_refer_with_replaces_of_an_unknown_dialog_gets_481() -> None:
    world = make_world(ONE_BINDING)
    first = await established(world)
    refer = from_callee(world, first.request, "REFER", 8)
    refer.headers.add(
        "Refer-To", "<sip:1003@127.0.0.1?Replaces=nope%3Bto-tag%3Da%3Bfrom-tag%3Db>"
    )
    assert world.b2bua.handle_refer(refer, PHONE_B).status == 481
    await world.b2bua.stop()


# -- per-trunk call limits and CDR keys ------------------------------------------------


class LimitedTrunks(FakeTrunks):
    """FakeTrunks with a real per-trunk counter, as switch.trunks.Trunks keeps."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def acquire(self, name: str) -> bool:
        if self.in_use >= self.limit:
            return False
        self.in_use += 1
        return True

    def release(self, name: str) -> None:
        assert self.in_use > 0, "a slot released twice"
        self.in_use -= 1


async def test_inbound_calls_from_a_full_trunk_get_503_and_slots_come_back() -> None:
    bindings = {"1002": [FakeBinding("sip:1002@127.0.0.1:40002", PHONE_B)]}
    world = make_world(bindings, limits=Limits(retry_after=9))
    trunks = LimitedTrunks(limit=1)
    world.b2bua.trunks = trunks
    assert world.b2bua.handle_invite(invite("1002"), TRUNK) is None
    assert trunks.in_use == 1
    refused = world.b2bua.handle_invite(invite("1002", branch="z9hG4bK2"), TRUNK)
    assert isinstance(refused, Response) and refused.status == 503
    assert refused.headers.get("Retry-After") == "9"
    await settle()
    await world.b2bua.stop()
    assert trunks.in_use == 0
    # the slot is free again: the next carrier call is accepted
    assert world.b2bua.handle_invite(invite("1002", branch="z9hG4bK3"), TRUNK) is None
    assert trunks.in_use == 1
    await settle()
    await world.b2bua.stop()
    assert trunks.in_use == 0


async def test_bridge_to_a_full_trunk_fails_503_cause_34_and_keeps_no_slot() -> None:
    world = bridging_world()
    # one slot: taken by the inbound carrier call itself, so the bridge out is refused
    trunks = LimitedTrunks(limit=1)
    world.b2bua.trunks = trunks
    assert world.b2bua.handle_invite(invite("700"), TRUNK) is None
    await settle()
    assert world.stack.by_method("INVITE") == []
    ended = [e for e in world.events if type(e).__name__ == "CallEnded"]
    assert ended, "the call should end when nothing can be rung"
    assert trunks.in_use == 0


async def test_bridge_out_holds_a_second_slot_until_the_call_ends() -> None:
    world = bridging_world()
    trunks = LimitedTrunks(limit=2)
    world.b2bua.trunks = trunks
    assert world.b2bua.handle_invite(invite("700"), TRUNK) is None
    await settle()
    (out,) = world.stack.by_method("INVITE")
    assert trunks.in_use == 2
    out.future.set_result(reply(out, 200, body=answer_sdp()))
    await settle()
    assert "CallBridged" in names(world)
    await world.b2bua.stop()
    assert trunks.in_use == 0


async def test_every_refused_call_has_its_own_call_id() -> None:
    world = make_world()
    world.b2bua.handle_invite(invite("94951234567"), TRUNK)
    world.b2bua.handle_invite(invite("5555", branch="z9hG4bK2"), TRUNK)
    rejected = [e for e in world.events if type(e).__name__ == "CallRejected"]
    ids = [e.call_id for e in rejected]  # type: ignore[attr-defined]
    assert len(ids) == 2 and all(ids) and ids[0] != ids[1]


def test_leg_ids_differ_between_processes() -> None:
    """Leg ids key the CDR legs table: a restarted switch must not reuse them."""
    import subprocess
    import sys

    code = "from switch.leg import Leg, LegRole; print(Leg(role=LegRole.INBOUND, "
    code += "call_id='x', peer='p', destination=('UDP','127.0.0.1',1), "
    code += "media_host='127.0.0.1').leg_id)"
    first, second = (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    )
    assert first.startswith("L") and first != second


async def test_hold_breaks_the_relay_and_unhold_makes_it_again() -> None:
    from media.commands import Disconnect

    world = make_world(ONE_BINDING)
    reinvite = await _held_by_caller(world)
    call = next(iter(world.b2bua.calls.values()))
    assert call.bridged is not None
    caller_endpoint = call.inbound.endpoint_id
    callee_endpoint = call.bridged[1].endpoint_id
    # nothing may be sent to the party we answered recvonly: the bridge is broken
    disconnects = [c for c in world.engine.commands if isinstance(c, Disconnect)]
    assert [d.endpoint_id for d in disconnects] == [caller_endpoint]
    reinvite.future.set_result(reply(reinvite, 200, body=answer_sdp(34000)))
    await settle()
    before = len(world.engine.commands)
    resumed = world.b2bua.handle_invite(
        from_caller(world, "INVITE", 3, body=OFFER), TRUNK
    )
    assert isinstance(resumed, Response) and resumed.status == 200
    assert b"a=sendrecv" in resumed.body or b"a=recvonly" not in resumed.body
    connects = [c for c in world.engine.commands[before:] if isinstance(c, Connect)]
    assert [(c.endpoint_a, c.endpoint_b) for c in connects] == [
        (caller_endpoint, callee_endpoint)
    ]
    await world.b2bua.stop()


@pytest.mark.parametrize("early_body", ["", "sdp"])
async def test_local_ringback_replaces_the_callees_ringing_and_early_media(
    early_body: str,
) -> None:
    from media.commands import Play, Tone, ToneName
    from switch.leg import Ringback

    world = make_world(ONE_BINDING, limits=Limits(ringback=Ringback.LOCAL))
    world.b2bua.handle_invite(invite("1002"), TRUNK)
    await settle()
    (sent,) = world.stack.by_method("INVITE")
    assert sent.on_provisional is not None
    body = answer_sdp(33000) if early_body else ""
    sent.on_provisional(reply(sent, 183 if body else 180, body=body))
    # the caller gets our 183 with our answer, and our tone plays into it
    assert world.stack.statuses() == [183]
    assert b"m=audio 20002 " in world.stack.responses[0].body
    plays = [c for c in world.engine.commands if isinstance(c, Play)]
    assert len(plays) == 1 and plays[0].loop
    assert plays[0].items == (Tone(name=ToneName.RINGBACK),)
    assert (
        plays[0].endpoint_id
        == next(iter(world.b2bua.calls.values())).inbound.endpoint_id
    )
    # the callee's early media is not bridged: nothing connected before the answer
    assert not any(isinstance(c, Connect) for c in world.engine.commands)
    sent.on_provisional(reply(sent, 180))
    assert world.stack.statuses() == [183]
    sent.future.set_result(reply(sent, 200, body=answer_sdp(33000)))
    await settle()
    assert world.stack.statuses() == [183, 200]
    # the bridge (which stops the tone in the engine) is made on answer
    assert any(isinstance(c, Connect) for c in world.engine.commands)
    await world.b2bua.stop()


# -- calls the switch places itself (callbacks) -----------------------------------------


async def test_originate_rings_the_agent_then_the_customer_and_bridges() -> None:
    from media.commands import Play, Tone, ToneName
    from switch.b2bua import Originated
    from switch.dialplan import ToTrunk, ToUser

    world = make_world(ONE_BINDING)
    task = asyncio.ensure_future(
        world.b2bua.originate(
            first=ToUser(user="1002"),
            then=ToTrunk(trunk="demo", number="+74951234567"),
            caller_id="4001",
        )
    )
    await settle()
    (agent,) = world.stack.by_method("INVITE")
    assert agent.destination == PHONE_B
    assert agent.request.from_.uri.user == "4001"  # type: ignore[union-attr]
    agent.future.set_result(reply(agent, 200, body=answer_sdp(33000)))
    await settle()
    # the agent answered: ACKed, hears our ringback, and the customer is rung
    assert world.stack.acks[-1].call_id == agent.request.call_id
    plays = [c for c in world.engine.commands if isinstance(c, Play)]
    assert plays and plays[-1].items == (Tone(name=ToneName.RINGBACK),)
    customer = world.stack.by_method("INVITE")[1]
    assert customer.destination == TRUNK
    assert str(customer.request.uri) == "sip:+74951234567@192.0.2.1"
    customer.future.set_result(reply(customer, 200, body=answer_sdp(34000)))
    placed = await asyncio.wait_for(task, 2)
    assert isinstance(placed, Originated) and placed.user == "1002"
    connects = [c for c in world.engine.commands if isinstance(c, Connect)]
    assert len(connects) == 1
    assert "CallBridged" in names(world)
    # the customer hangs up: the agent's leg gets BYE and the caller of
    # wait_hangup learns it
    world.b2bua.handle_bye(from_callee(world, customer.request, "BYE", 2), TRUNK)
    await asyncio.wait_for(placed.wait_hangup(), 2)
    byes = world.stack.by_method("BYE")
    assert [b.request.call_id for b in byes] == [agent.request.call_id]
    assert world.b2bua.calls == {}
    ended = [e for e in world.events if type(e).__name__ == "CallEnded"]
    assert ended[-1].answered  # type: ignore[attr-defined]


@pytest.mark.parametrize("who", ["agent", "customer"])
async def test_originate_reports_the_failed_step_and_leaves_nothing(who: str) -> None:
    from switch.dialplan import ToTrunk, ToUser

    world = make_world(ONE_BINDING)
    task = asyncio.ensure_future(
        world.b2bua.originate(
            first=ToUser(user="1002"),
            then=ToTrunk(trunk="demo", number="+74951234567"),
            caller_id="4001",
        )
    )
    await settle()
    (agent,) = world.stack.by_method("INVITE")
    if who == "agent":
        agent.future.set_result(reply(agent, 486))
        assert await asyncio.wait_for(task, 2) == 486
        assert len(world.stack.by_method("INVITE")) == 1  # the customer never rung
    else:
        agent.future.set_result(reply(agent, 200, body=answer_sdp(33000)))
        await settle()
        customer = world.stack.by_method("INVITE")[1]
        customer.future.set_result(reply(customer, 480))
        assert await asyncio.wait_for(task, 2) == 480
        # the agent who answered is released with a BYE
        byes = world.stack.by_method("BYE")
        assert [b.request.call_id for b in byes] == [agent.request.call_id]
    assert world.b2bua.calls == {}
    assert world.engine.open == set()


async def test_originate_to_nobody_registered_gives_480_at_once() -> None:
    from switch.dialplan import ToTrunk, ToUser

    world = make_world()
    status = await world.b2bua.originate(
        first=ToUser(user="1002"),
        then=ToTrunk(trunk="demo", number="+74951234567"),
        caller_id="4001",
    )
    assert status == 480
    assert world.b2bua.calls == {} and world.stack.sent == []
