"""The registrar against an in-memory store and a fake clock (RFC 3261 section 10.3)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from switch.events import ANY, Event, new_bus
from switch.registrar import Binding, Registrar
from switch.sip.auth import DigestClient, DigestServer
from switch.sip.message import Request, Response, parse_message
from switch.sip.uri import parse_uri
from switch.transport import Address
from switch.users import Authenticator, User, UserDirectory

REALM = "ccswitch"
SOURCE = ("UDP", "192.0.2.10", 5062)


@dataclass
class MemoryStore:
    rows: dict[tuple[str, str], Binding] = field(default_factory=dict)

    async def load_bindings(self) -> list[Binding]:
        return list(self.rows.values())

    async def save_binding(self, binding: Binding) -> None:
        self.rows[(binding.user, binding.contact)] = binding

    async def delete_binding(self, user: str, contact: str) -> None:
        self.rows.pop((user, contact), None)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Phone:
    """A phone that builds REGISTERs and answers challenges with its own client."""

    user: str
    password: str
    port: int = 5062
    cseq: int = 0
    call_id: str = "reg-call-1"
    client: DigestClient | None = None

    def register(
        self,
        *,
        contacts: list[str] | None = None,
        expires: int | None = 600,
        authorization: list[str] = (),
    ) -> Request:  # type: ignore[assignment]
        self.cseq += 1
        contact_lines = "".join(
            f"Contact: {c}\r\n"
            for c in (contacts or [f"<sip:{self.user}@192.0.2.10:{self.port}>"])
        )
        expires_line = f"Expires: {expires}\r\n" if expires is not None else ""
        auth_lines = "".join(f"Authorization: {a}\r\n" for a in authorization)
        data = (
            f"REGISTER sip:{REALM} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.10:{self.port};branch=z9hG4bK{self.cseq}x\r\n"
            f"From: <sip:{self.user}@{REALM}>;tag=ft1\r\n"
            f"To: <sip:{self.user}@{REALM}>\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {self.cseq} REGISTER\r\n"
            f"{contact_lines}{expires_line}{auth_lines}"
            f"Content-Length: 0\r\n\r\n"
        ).encode()
        message = parse_message(data)
        assert isinstance(message, Request)
        return message

    def answer(self, challenge: Response, **kw: object) -> Request:
        # A fresh client per challenge: each REGISTER here starts a new exchange.
        self.client = DigestClient(username=self.user, password=self.password)
        values = challenge.headers.get_all("WWW-Authenticate")
        creds = self.client.authorize(values, method="REGISTER", uri=f"sip:{REALM}")
        return self.register(authorization=creds, **kw)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def registrar(clock: Clock, events: list[Event]) -> Registrar:
    users = UserDirectory(
        [
            User.from_password(name=n, realm=REALM, password=f"demo{n}")
            for n in ("1001", "1002")
        ]
    )
    bus = new_bus()
    bus.on(ANY, events.append)
    auth = Authenticator(
        directory=users, server=DigestServer(realm=REALM, secret=b"k" * 32)
    )
    return Registrar(
        authenticator=auth,
        store=MemoryStore(),
        min_expires=60,
        max_expires=3600,
        default_expires=3600,
        bus=bus,
        clock=clock,
    )


async def _register(registrar: Registrar, phone: Phone, **kw: object) -> Response:
    challenge = await registrar.handle_register(phone.register(**kw), SOURCE)  # type: ignore[arg-type]
    assert challenge.status == 401
    return await registrar.handle_register(phone.answer(challenge, **kw), SOURCE)


async def test_register_challenge_then_ok(
    registrar: Registrar, events: list[Event]
) -> None:
    phone = Phone("1001", "demo1001")
    first = await registrar.handle_register(phone.register(), SOURCE)
    assert first.status == 401
    algorithms = [
        v.split("algorithm=")[1].split(",")[0]
        for v in first.headers.get_all("WWW-Authenticate")
    ]
    assert algorithms == ["SHA-256", "MD5"]
    assert first.to.tag

    ok = await registrar.handle_register(phone.answer(first), SOURCE)
    assert ok.status == 200
    assert ok.contacts[0].params["expires"] == "600"
    [binding] = registrar.lookup("1001")
    assert binding.source == SOURCE and binding.expires_at == registrar.clock() + 600
    assert [e.name for e in events] == ["registration.added"]


async def test_wrong_password_is_challenged_again_not_stale(
    registrar: Registrar, events: list[Event]
) -> None:
    phone = Phone("1001", "wrong")
    response = await _register(registrar, phone)
    assert response.status == 401
    assert "stale=true" not in " ".join(response.headers.get_all("WWW-Authenticate"))
    assert registrar.lookup("1001") == []
    assert events[-1].name == "security.auth_failed"


async def test_user_may_not_register_someone_else(registrar: Registrar) -> None:
    phone = Phone("1001", "demo1001")
    challenge = await registrar.handle_register(phone.register(), SOURCE)
    request = phone.answer(challenge)
    request.headers.set("To", f"<sip:1002@{REALM}>")
    response = await registrar.handle_register(request, SOURCE)
    assert response.status == 403


async def test_expires_below_minimum_gets_423(registrar: Registrar) -> None:
    response = await _register(registrar, Phone("1001", "demo1001"), expires=10)
    assert response.status == 423
    assert response.headers.get("Min-Expires") == "60"


async def test_expires_above_maximum_is_clamped(registrar: Registrar) -> None:
    response = await _register(registrar, Phone("1001", "demo1001"), expires=100000)
    assert response.status == 200
    assert response.contacts[0].params["expires"] == "3600"


async def test_multiple_contacts_and_q_values(registrar: Registrar) -> None:
    phone = Phone("1001", "demo1001")
    contacts = ["<sip:1001@192.0.2.10:5062>;q=0.5", "<sip:1001@192.0.2.11:5062>;q=0.9"]
    response = await _register(registrar, phone, contacts=contacts)
    assert response.status == 200
    assert [b.contact for b in registrar.lookup("1001")] == [
        "sip:1001@192.0.2.11:5062",
        "sip:1001@192.0.2.10:5062",
    ]


async def test_unregister_one_and_wildcard(
    registrar: Registrar, events: list[Event]
) -> None:
    phone = Phone("1001", "demo1001")
    contacts = ["<sip:1001@192.0.2.10:5062>", "<sip:1001@192.0.2.11:5062>"]
    await _register(registrar, phone, contacts=contacts)
    await _register(registrar, phone, contacts=contacts[:1], expires=0)
    assert [b.contact for b in registrar.lookup("1001")] == ["sip:1001@192.0.2.11:5062"]
    response = await _register(registrar, phone, contacts=["*"], expires=0)
    assert response.status == 200 and registrar.lookup("1001") == []
    removed = [e for e in events if e.name == "registration.removed"]
    assert len(removed) == 2


async def test_wildcard_needs_expires_zero(registrar: Registrar) -> None:
    response = await _register(
        registrar, Phone("1001", "demo1001"), contacts=["*"], expires=60
    )
    assert response.status == 400


async def test_out_of_order_cseq_is_refused(registrar: Registrar) -> None:
    phone = Phone("1001", "demo1001")
    await _register(registrar, phone)
    phone.cseq = 0  # the answer will carry CSeq 2 again, as stored
    response = await _register(registrar, phone)
    assert response.status == 500


async def test_refresh_and_expiry(
    registrar: Registrar, clock: Clock, events: list[Event]
) -> None:
    phone = Phone("1001", "demo1001")
    await _register(registrar, phone, expires=120)
    clock.now += 60
    await _register(registrar, phone, expires=120)
    assert events[-1].name == "registration.refreshed"
    clock.now += 119
    assert await registrar.expire() == 0
    clock.now += 2
    assert await registrar.expire() == 1
    assert registrar.lookup("1001") == []
    assert events[-1].name == "registration.removed"


async def test_restart_reloads_live_bindings_only(
    registrar: Registrar, clock: Clock
) -> None:
    phone = Phone("1001", "demo1001")
    await _register(registrar, phone, expires=120)
    phone2 = Phone("1002", "demo1002", call_id="other")
    await _register(registrar, phone2, expires=3000)
    clock.now += 500
    again = Registrar(
        authenticator=registrar.authenticator, store=registrar.store, clock=clock
    )
    await again.start()
    assert again.lookup("1001") == []
    assert [b.user for b in again.lookup("1002")] == ["1002"]


async def test_moving_contact_in_one_register_keeps_the_new_one(
    registrar: Registrar,
) -> None:
    """Remove the only contact and add a new one in the same REGISTER (phone moved)."""
    phone = Phone("1001", "demo1001")
    await _register(registrar, phone, contacts=["<sip:1001@192.0.2.10:7201>"])
    response = await _register(
        registrar,
        phone,
        contacts=["<sip:1001@192.0.2.10:7201>;expires=0", "<sip:1001@192.0.2.10:7202>"],
    )
    assert response.status == 200
    assert [c.uri.port for c in response.contacts] == [7202]  # type: ignore[union-attr]
    assert [b.contact for b in registrar.lookup("1001")] == ["sip:1001@192.0.2.10:7202"]
    stored = await registrar.store.load_bindings()
    assert [b.contact for b in stored] == ["sip:1001@192.0.2.10:7202"]


async def test_failed_register_changes_nothing(registrar: Registrar) -> None:
    phone = Phone("1001", "demo1001")
    contacts = [
        "<sip:1001@192.0.2.10:7101>",
        "<sip:1001@192.0.2.10:7102>",
        "<sip:1001@192.0.2.10:7101>",
    ]
    response = await _register(registrar, phone, contacts=contacts)
    assert response.status == 400 and "twice" in response.reason
    assert registrar.lookup("1001") == []
    assert await registrar.store.load_bindings() == []


async def test_contacts_per_user_are_bounded(registrar: Registrar) -> None:
    phone = Phone("1001", "demo1001")
    contacts = [f"<sip:1001@192.0.2.10:{7000 + i}>" for i in range(11)]
    response = await _register(registrar, phone, contacts=contacts)
    assert response.status == 403
    assert registrar.lookup("1001") == []


@pytest.mark.parametrize(
    "expires", ["3_600", "+120", "\u0661\u0662\u0660", "9x" * 2000]
)
async def test_expires_must_be_ascii_digits(registrar: Registrar, expires: str) -> None:
    phone = Phone("1001", "demo1001")
    first = await registrar.handle_register(phone.register(), SOURCE)
    request = phone.answer(first)
    request.headers.set("Expires", expires)
    response = await registrar.handle_register(request, SOURCE)
    assert response.status == 400 and len(response.reason) < 60


async def test_request_uri_with_a_user_part_is_refused(registrar: Registrar) -> None:
    request = Phone("1001", "demo1001").register()
    request.uri = parse_uri("sip:1001@ccswitch")
    assert (await registrar.handle_register(request, SOURCE)).status == 400


async def test_forbidden_phrase_does_not_echo_the_to_user(registrar: Registrar) -> None:
    phone = Phone("1001", "demo1001")
    challenge = await registrar.handle_register(phone.register(), SOURCE)
    request = phone.answer(challenge)
    request.headers.set("To", "<sip:%0d%0aX-Injected:%20yes@ccswitch>")
    response = await registrar.handle_register(request, SOURCE)
    assert response.status == 403
    assert b"X-Injected" not in response.to_bytes().split(b"\r\n")[0]
    response.to_bytes()  # must be sendable


async def test_a_huge_expires_is_capped_not_refused(registrar: Registrar) -> None:
    response = await _register(registrar, Phone("1001", "demo1001"), expires=10**100)
    assert response.status == 200
    assert response.contacts[0].params["expires"] == "3600"


async def test_credentials_for_another_request_uri_are_refused(
    registrar: Registrar,
) -> None:
    phone = Phone("1001", "demo1001")
    challenge = await registrar.handle_register(phone.register(), SOURCE)
    client = DigestClient(username="1001", password="demo1001")
    creds = client.authorize(
        challenge.headers.get_all("WWW-Authenticate"),
        method="REGISTER",
        uri="sip:elsewhere.invalid",
    )
    response = await registrar.handle_register(
        phone.register(authorization=creds), SOURCE
    )
    assert response.status == 401
    assert registrar.lookup("1001") == []


def _scanned(registrar: Registrar, source: Address) -> bool:
    """The slow answer that registered_from's index must equal."""
    return any(b.source[1:] == source[1:] for b in registrar.all_bindings())


async def test_registered_from_follows_every_binding_change(
    registrar: Registrar, clock: Clock
) -> None:
    """The source index answers as a scan of every binding, through refresh from a
    new address, two phones at one address, unregistration, expiry and restart."""
    here: Address = SOURCE
    there: Address = ("TCP", "198.51.100.7", 5070)
    phone, other = Phone("1001", "demo1001"), Phone("1002", "demo1002", call_id="o")

    async def register(phone: Phone, source: Address, **kw: object) -> None:
        request = phone.register(**kw)  # type: ignore[arg-type]
        challenge = await registrar.handle_register(request, source)
        ok = await registrar.handle_register(phone.answer(challenge, **kw), source)
        assert ok.status == 200

    def check(*expected: bool) -> None:
        probes = (here, there, ("UDP", "198.51.100.7", 5070), ("UDP", "192.0.2.10", 1))
        got = tuple(registrar.registered_from(s) for s in probes)
        assert got == tuple(_scanned(registrar, s) for s in probes) == expected

    check(False, False, False, False)
    await register(phone, here, expires=120)
    await register(other, here, expires=3000)
    check(True, False, False, False)
    await register(phone, there, expires=120)  # the same contact, a new address
    check(True, True, True, False)
    await register(other, here, expires=0)  # unregistered
    check(False, True, True, False)
    await register(other, here, expires=3000)
    clock.now += 121
    assert await registrar.expire() == 1  # phone's binding (from there) expired
    check(True, False, False, False)
    again = Registrar(
        authenticator=registrar.authenticator, store=registrar.store, clock=clock
    )
    await again.start()
    assert again.registered_from(here) and not again.registered_from(there)
