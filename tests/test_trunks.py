"""Tests for switch.trunks: identification, limits, registration, OPTIONS monitoring.

Registration and monitoring run against a fake carrier: a second real SipStack on
loopback whose REGISTER handler challenges with the project's own digest server.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from switch.dialplan import NumberingPlan
from switch.events import Event, TrunkRegistrationChanged, TrunkStateChanged, new_bus
from switch.sip.auth import DigestClient, DigestServer
from switch.sip.message import Request, Response, make_response, parse_message
from switch.sip.timers import Timers
from switch.sip.transaction import new_tag
from switch.stack import SipStack
from switch.transport import Address
from switch.trunks import (
    Trunk,
    Trunks,
    refresh_delay,
    retry_delay,
)
from switch.users import Authenticator, User, UserDirectory
from tests.harness import free_port

HOST = "127.0.0.1"
REALM = "carrier.example"
FAST = Timers(t1=0.01, t2=0.04, t4=0.05)


def invite(extra: str = "", uri: str = "sip:1001@127.0.0.1") -> Request:
    message = parse_message(
        (
            f"INVITE {uri} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n"
            "From: <sip:+74951234567@192.0.2.1>;tag=a\r\n"
            f"To: <{uri}>\r\n"
            "Call-ID: trunk-test\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            f"{extra}Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, Request)
    return message


def source(host: str) -> Address:
    return ("UDP", host, 5060)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


# --- identification ------------------------------------------------------------------


def test_identify_by_cidr_in_configuration_order() -> None:
    trunks = Trunks(
        [
            Trunk(name="a", host="192.0.2.10", inbound_sources=("198.51.100.0/24",)),
            Trunk(name="b", host="192.0.2.20", inbound_sources=("198.51.0.0/16",)),
        ]
    )
    request = invite()
    assert trunks.identify(request, source("198.51.100.7")) is trunks.get("a")
    assert trunks.identify(request, source("198.51.7.7")) is trunks.get("b")
    assert trunks.identify(request, source("192.0.2.10")) is None  # sources given
    assert trunks.identify(request, source("203.0.113.1")) is None


def test_identify_defaults_to_the_host_address() -> None:
    trunks = Trunks([Trunk(name="a", host="192.0.2.10")])
    assert trunks.identify(invite(), source("192.0.2.10")) is trunks.get("a")
    assert trunks.identify(invite(), source("192.0.2.11")) is None


def test_identify_ipv6_and_garbage_sources() -> None:
    trunks = Trunks(
        [Trunk(name="v6", host="2001:db8::1", inbound_sources=("2001:db8::/64",))]
    )
    assert trunks.identify(invite(), source("2001:db8::99")) is trunks.get("v6")
    assert trunks.identify(invite(), source("[2001:db8::99]")) is trunks.get("v6")
    assert trunks.identify(invite(), source("not-an-ip")) is None
    assert trunks.destination("v6")[0] == ("UDP", "2001:db8::1", 5060)
    assert trunks.request_uri("v6", "+1") == "sip:+1@[2001:db8::1]:5060"


def test_unresolved_host_name_matches_nothing_by_default() -> None:
    trunks = Trunks([Trunk(name="a", host="sip.carrier.example")])
    assert trunks.identify(invite(), source("192.0.2.10")) is None


def _digest_invite(server: DigestServer, username: str, password: str) -> Request:
    client = DigestClient(username=username, password=password)
    [credentials] = client.authorize(
        server.challenge(time.time()), method="INVITE", uri="sip:1001@127.0.0.1"
    )
    return invite(f"Proxy-Authorization: {credentials}\r\n")


def test_identify_by_digest_credentials() -> None:
    server = DigestServer(realm="ccswitch", secret=secrets.token_bytes(32))
    trunks = Trunks(
        [
            Trunk(
                name="auth",
                host="192.0.2.10",
                inbound_username="carrier",
                inbound_password="s3cret",
            )
        ],
        digest_server=server,
    )
    # Digest-only: the host address alone does not identify the trunk.
    assert trunks.identify(invite(), source("192.0.2.10")) is None
    good = _digest_invite(server, "carrier", "s3cret")
    assert trunks.identify(good, source("203.0.113.9")) is trunks.get("auth")
    wrong = _digest_invite(server, "carrier", "guess")
    assert trunks.identify(wrong, source("203.0.113.9")) is None
    stranger = _digest_invite(server, "1001", "s3cret")
    assert trunks.identify(stranger, source("203.0.113.9")) is None
    garbage = invite("Proxy-Authorization: Digest nonsense\r\n")
    assert trunks.identify(garbage, source("203.0.113.9")) is None
    basic = invite("Proxy-Authorization: Basic Zm9vOmJhcg==\r\n")
    assert trunks.identify(basic, source("203.0.113.9")) is None
    # authenticate() ignores the source address altogether.
    again = _digest_invite(server, "carrier", "s3cret")  # a nonce-count is single-use
    assert trunks.authenticate(again) is trunks.get("auth")
    assert trunks.authenticate(invite()) is None


def test_digest_identification_is_off_without_a_server() -> None:
    server = DigestServer(realm="ccswitch", secret=secrets.token_bytes(32))
    trunks = Trunks(
        [Trunk(name="a", host="h.example", inbound_username="c", inbound_password="p")]
    )
    assert (
        trunks.identify(_digest_invite(server, "c", "p"), source("192.0.2.1")) is None
    )


# --- outbound helpers and limits -----------------------------------------------------


def test_destination_request_uri_and_credentials() -> None:
    trunks = Trunks(
        [
            Trunk(name="udp", host="192.0.2.10", port=5080),
            Trunk(
                name="tls",
                host="sip.carrier.example",
                port=5061,
                transport="TLS",
                username="acct",
                password="pw",
            ),
        ]
    )
    address, trunk = trunks.destination("udp")
    assert address == ("UDP", "192.0.2.10", 5080)
    assert trunk.name == "udp"
    assert (
        trunks.request_uri("udp", "+74951234567") == "sip:+74951234567@192.0.2.10:5080"
    )
    assert trunks.request_uri("tls", "100") == (
        "sip:100@sip.carrier.example:5061;transport=tls"
    )
    assert trunks.destination("tls")[0] == ("TLS", "sip.carrier.example", 5061)
    assert trunks.credentials("udp") is None
    client = trunks.credentials("tls")
    assert client is not None and client.username == "acct"
    assert trunks.credentials("tls") is not client  # fresh per call
    with pytest.raises(KeyError):
        trunks.destination("nope")


def test_password_is_not_in_repr() -> None:
    trunk = Trunk(name="t", host="h", username="u", password="hunter2")
    assert "hunter2" not in repr(trunk)


def test_per_trunk_call_limit() -> None:
    trunks = Trunks([Trunk(name="t", host="192.0.2.1", max_calls=2)])
    assert trunks.acquire("t") and trunks.acquire("t")
    assert not trunks.acquire("t")
    assert trunks.get("t").active_calls == 2  # type: ignore[union-attr]
    trunks.release("t")
    assert trunks.acquire("t")
    for _ in range(3):
        trunks.release("t")
    assert trunks.get("t").active_calls == 0  # type: ignore[union-attr]
    trunks.release("unknown")  # logged, harmless


def test_unlimited_trunk() -> None:
    trunks = Trunks([Trunk(name="t", host="192.0.2.1")])
    assert all(trunks.acquire("t") for _ in range(1000))


def test_lookup_helpers() -> None:
    plan = NumberingPlan(country_code="7", number_format="e164")
    trunks = Trunks([Trunk(name="t", host="192.0.2.1", numbering=plan)])
    assert "t" in trunks and "x" not in trunks
    assert len(trunks) == 1
    assert [t.name for t in trunks] == ["t"]
    assert trunks.names() == ("t",)
    assert trunks.numbering() == {"t": plan}
    assert trunks.available("t") and not trunks.available("x")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"transport": "SCTP"}, "transport must be one of"),
        ({"register": True}, "register needs username and password"),
    ],
)
def test_bad_trunks(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Trunk(name="t", host="h", **kwargs)  # type: ignore[arg-type]


def test_duplicate_trunks() -> None:
    with pytest.raises(ValueError, match="duplicate trunk 't'"):
        Trunks([Trunk(name="t", host="a"), Trunk(name="t", host="b")])


# --- timing rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granted", "delay"), [(3600, 3570.0), (60, 30.0), (59, 29.5), (2, 1.0)]
)
def test_refresh_delay(granted: int, delay: float) -> None:
    assert refresh_delay(granted) == delay


@pytest.mark.parametrize(
    ("failures", "jitter", "delay"),
    [
        (1, 0.0, 30.0),  # RFC 5626 4.5: 30 * 2**1, then 50 %
        (1, 1.0, 60.0),
        (2, 1.0, 120.0),
        (5, 1.0, 960.0),
        (6, 1.0, 1800.0),  # capped at max-time
        (100, 0.0, 900.0),
    ],
)
def test_retry_delay(failures: int, jitter: float, delay: float) -> None:
    assert retry_delay(failures, base_time=30, max_time=1800, jitter=jitter) == delay


# --- a fake carrier on loopback ------------------------------------------------------


@dataclass
class Carrier:
    """A registrar/proxy that challenges REGISTER and answers OPTIONS on demand."""

    stack: SipStack
    authenticator: Authenticator
    grant: int = 2
    min_expires: int | None = None
    refuse: int | None = None
    silent: bool = False
    answer_options: bool = True
    registers: list[Request] = field(default_factory=list)
    accepted: list[Request] = field(default_factory=list)
    options: list[Request] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.stack.local_address("UDP")[1]

    def on_register(self, request: Request, source: Address) -> Response | None:
        self.registers.append(request)
        if self.silent:
            return None  # never answered: the client's timer F fires
        if self.refuse is not None:
            return make_response(request, self.refuse, "Refused", to_tag=new_tag())
        outcome = self.authenticator.check(request, now=time.time())
        if outcome.response is not None:
            return outcome.response
        asked = int(request.headers.get("Expires") or "3600")
        if self.min_expires is not None and 0 < asked < self.min_expires:
            response = make_response(
                request, 423, "Interval Too Brief", to_tag=new_tag()
            )
            response.headers.set("Min-Expires", str(self.min_expires))
            return response
        self.accepted.append(request)
        response = make_response(request, 200, "OK", to_tag=new_tag())
        if asked:
            granted = min(asked, self.grant)
            contact = request.headers.get("Contact")
            response.headers.add("Contact", f"{contact};expires={granted}")
        return response

    def on_options(self, request: Request, source: Address) -> Response | None:
        self.options.append(request)
        if not self.answer_options:
            return None
        return make_response(request, 200, "OK", to_tag=new_tag())


@pytest.fixture
async def carrier() -> AsyncIterator[Carrier]:
    stack = SipStack(timers=FAST, user_agent="carrier/1")
    await stack.start(host=HOST, port=free_port())
    authenticator = Authenticator(
        directory=UserDirectory(
            [User.from_password(name="acct", realm=REALM, password="pw")]
        ),
        server=DigestServer(
            realm=REALM, secret=secrets.token_bytes(32), algorithms=("MD5",)
        ),
    )
    fake = Carrier(stack=stack, authenticator=authenticator)
    stack.handlers["REGISTER"] = fake.on_register
    stack.handlers["OPTIONS"] = fake.on_options
    try:
        yield fake
    finally:
        await stack.stop()


@pytest.fixture
async def switch_stack() -> AsyncIterator[SipStack]:
    stack = SipStack(timers=FAST, user_agent="ccswitch-test/1")
    await stack.start(host=HOST, port=free_port())
    try:
        yield stack
    finally:
        await stack.stop()


def events_of(trunks: Trunks) -> list[Event]:
    seen: list[Event] = []
    assert trunks.bus is not None
    trunks.bus.on("trunk.registration", seen.append)
    trunks.bus.on("trunk.state", seen.append)
    return seen


def make_trunks(
    stack: SipStack, carrier: Carrier, **kwargs: object
) -> tuple[Trunks, list[Event]]:
    settings: dict[str, object] = {
        "name": "carrier",
        "host": HOST,
        "port": carrier.port,
        "register": True,
        "username": "acct",
        "password": "pw",
        "domain": REALM,
        "expires": 60,
        "options_interval": 0.0,
    }
    settings.update(kwargs)
    trunks = Trunks(
        [Trunk(**settings)],  # type: ignore[arg-type]
        stack=stack,
        bus=new_bus(),
        retry_base_time=0.01,
        retry_max_time=0.05,
        jitter=lambda: 0.0,
    )
    return trunks, events_of(trunks)


async def test_registers_with_digest_and_refreshes_before_expiry(
    switch_stack: SipStack, carrier: Carrier
) -> None:
    trunks, events = make_trunks(switch_stack, carrier)
    await trunks.start()
    try:
        await until(lambda: len(carrier.accepted) >= 3)
    finally:
        await trunks.stop()

    first, second = carrier.registers[0], carrier.registers[1]
    assert "Authorization" not in first.headers  # no challenge seen yet
    assert "Authorization" in second.headers  # answered the 401
    assert str(first.uri) == f"sip:{REALM}"
    assert first.to.uri == first.from_.uri
    assert str(first.to.uri) == f"sip:acct@{REALM}"
    assert first.headers.get("Expires") == "60"
    # RFC 3261 10.2: one Call-ID for the registrar, CSeq rising.
    assert {r.call_id for r in carrier.registers} == {first.call_id}
    cseqs = [r.cseq.number for r in carrier.registers]
    assert cseqs == sorted(cseqs) and len(set(cseqs)) == len(cseqs)
    # Refreshes reuse the nonce (next nonce-count) instead of waiting for a 401.
    assert all("Authorization" in r.headers for r in carrier.accepted)
    # Stopping removes the registration.
    assert carrier.registers[-1].headers.get("Expires") == "0"
    registrations = [e for e in events if isinstance(e, TrunkRegistrationChanged)]
    assert registrations[0].registered and registrations[0].expires == 2
    assert registrations[0].status == 200
    assert not registrations[-1].registered  # the un-REGISTER
    assert trunks.get("carrier").registered is False  # type: ignore[union-attr]


async def test_register_follows_min_expires(
    switch_stack: SipStack, carrier: Carrier
) -> None:
    carrier.min_expires = 120
    carrier.grant = 120
    trunks, _events = make_trunks(switch_stack, carrier)
    assert await trunks.register("carrier") == 120
    assert [r.headers.get("Expires") for r in carrier.accepted] == ["120"]
    assert trunks.get("carrier").registered  # type: ignore[union-attr]


async def test_refused_registration_backs_off_and_retries(
    switch_stack: SipStack, carrier: Carrier
) -> None:
    carrier.refuse = 403
    trunks, events = make_trunks(switch_stack, carrier)
    await trunks.start()
    try:
        await until(lambda: len(carrier.registers) >= 3)
    finally:
        await trunks.stop()
    failures = [e for e in events if isinstance(e, TrunkRegistrationChanged)]
    assert failures and all(not e.registered and e.status == 403 for e in failures)


async def test_wrong_password_gives_up_on_the_challenge(
    switch_stack: SipStack, carrier: Carrier
) -> None:
    trunks, events = make_trunks(switch_stack, carrier, password="wrong")
    assert await trunks.register("carrier") == 0
    # Asked once without and once with credentials; the second 401 is a refusal.
    assert len(carrier.registers) == 2
    [event] = events
    assert isinstance(event, TrunkRegistrationChanged)
    assert (event.registered, event.status) == (False, 401)


async def test_registration_timeout(switch_stack: SipStack, carrier: Carrier) -> None:
    carrier.silent = True
    trunks, events = make_trunks(switch_stack, carrier)
    assert await trunks.register("carrier") == 0
    [event] = events
    assert isinstance(event, TrunkRegistrationChanged)
    assert (event.registered, event.status) == (False, 0)


async def test_options_monitoring_marks_down_and_up(
    switch_stack: SipStack, carrier: Carrier
) -> None:
    trunks, events = make_trunks(
        switch_stack,
        carrier,
        register=False,
        options_interval=0.02,
        options_failures=2,
    )
    await trunks.start()
    try:
        await until(lambda: len(carrier.options) >= 2)
        assert trunks.available("carrier")
        assert events == []

        carrier.answer_options = False
        await until(lambda: not trunks.available("carrier"))
        assert trunks.get("carrier").failed_probes >= 2  # type: ignore[union-attr]

        carrier.answer_options = True
        await until(lambda: trunks.available("carrier"))
    finally:
        await trunks.stop()
    states = [e for e in events if isinstance(e, TrunkStateChanged)]
    assert [(e.available, e.reason) for e in states] == [
        (False, "options timeout"),
        (True, "options answered"),
    ]
    probe = carrier.options[0]
    assert probe.method == "OPTIONS"
    assert str(probe.uri) == f"sip:{REALM}"


async def test_probe_once(switch_stack: SipStack, carrier: Carrier) -> None:
    trunks, _events = make_trunks(switch_stack, carrier, register=False, domain=None)
    assert await trunks.probe("carrier")
    assert str(carrier.options[0].uri) == f"sip:{HOST}:{carrier.port}"


async def test_start_without_stack_is_refused() -> None:
    trunks = Trunks([Trunk(name="t", host=HOST, options_interval=1.0)])
    with pytest.raises(RuntimeError, match="needs a SipStack"):
        await trunks.start()
    await trunks.stop()


async def test_host_names_are_resolved_at_start() -> None:
    trunks = Trunks([Trunk(name="t", host="localhost", options_interval=0)])
    await trunks.start()
    try:
        address = trunks.get("t").address  # type: ignore[union-attr]
        assert address in ("127.0.0.1", "::1")
        assert trunks.destination("t")[0][1] == address
        assert trunks.identify(invite(), source(address)) is trunks.get("t")
    finally:
        await trunks.stop()


async def test_unresolvable_host_keeps_the_name() -> None:
    trunks = Trunks([Trunk(name="t", host="nonexistent.invalid", options_interval=0)])
    await trunks.start()
    await trunks.stop()
    assert trunks.destination("t")[0][1] == "nonexistent.invalid"


async def test_the_switch_wires_trunks_dialplan_and_cdrs() -> None:
    from switch.dialplan import Caller, ToTrunk, ToUser
    from tests.harness import demo_switch

    async with demo_switch() as switch:
        carrier = switch.trunks.identify(invite(), source(HOST))
        assert carrier is not None and carrier.name == "demo"
        caller = Caller(kind="trunk", name="demo", number="+7", allow_outbound=False)
        assert switch.dialplan.route(called="1005", caller=caller) == ToUser(
            user="1005"
        )
        boss = Caller(kind="user", name="1001", number="1001", allow_outbound=True)
        assert switch.dialplan.route(called="984951234567", caller=boss) == ToTrunk(
            trunk="demo", number="+74951234567"
        )
        assert switch.cdr.open_calls == 0
