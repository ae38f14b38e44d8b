"""The ACD service over fake call sessions: the asyncio rim around the distributor.

A :class:`FakeSession` stands in for :class:`switch.session.CallSession` (no SIP, no
media): agents "answer" a bridge after a scripted delay or fail with a status, and
callers hang up, press keys and hear what the service plays. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from acd.admission import AdmissionAction, AdmissionRule
from acd.agent import AgentStatus
from acd.distributor import Distributor
from acd.queue import QueueSettings
from acd.records import OUTCOMES, LogRecord, QueueEvent
from acd.service import Acd, QueueMedia, agent_app, queue_app
from media.commands import PlayItem
from switch.dialplan import Caller, ToApp, ToUser
from switch.events import RegistrationAdded, new_bus
from switch.session import BridgeResult, Hangup, collect_keys
from tests.acd.helpers import make

TIMEOUT = 10.0


@dataclass
class FakeCall:
    call_id: str
    caller: Caller
    ended: bool = False
    ended_event: asyncio.Event = field(default_factory=asyncio.Event)

    def end(self) -> None:
        self.ended = True
        self.ended_event.set()


class FakeSession:
    """Scripted: ``agents`` maps a user to ("answer", seconds) or ("fail", status)."""

    def __init__(self, call_id: str, agents: dict[str, tuple[str, float]]) -> None:
        self.call = FakeCall(
            call_id,
            Caller(
                kind="trunk", name="demo", number=f"+7{call_id}", allow_outbound=False
            ),
        )
        self.agents = agents
        self.digits: asyncio.Queue[str] = asyncio.Queue()
        self.played: list[object] = []
        self.bridged: list[str] = []
        self.answered = False
        self._stop = asyncio.Event()

    @property
    def caller(self) -> str:
        return self.call.caller.number

    async def answer(self) -> None:
        if self.call.ended:
            raise Hangup(self.call.call_id)
        self.answered = True

    async def play(
        self, items: Sequence[object], *, loop: bool = False, stop_on_dtmf: bool = False
    ) -> str:
        if self.call.ended:
            raise Hangup(self.call.call_id)
        self.played.extend(items)
        if not loop:
            await asyncio.sleep(0)
            return "done"
        self._stop.clear()
        stop = asyncio.ensure_future(self._stop.wait())
        ended = asyncio.ensure_future(self.call.ended_event.wait())
        await asyncio.wait({stop, ended}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        ended.cancel()
        if self.call.ended:
            raise Hangup(self.call.call_id)
        return "stopped"

    def stop_playing(self) -> None:
        self._stop.set()

    async def collect_digits(
        self,
        *,
        min_digits: int = 1,
        max_digits: int = 1,
        terminator: str | None = "#",
        timeout: float = 5.0,
    ) -> str:
        """As CallSession.collect_digits: up to max, the terminator or a pause."""
        return await collect_keys(
            lambda: asyncio.wait_for(self.digits.get(), timeout),
            min_digits=min_digits,
            max_digits=max_digits,
            terminator=terminator,
        )

    async def bridge(
        self, target: object, *, ring_timeout: float | None = None
    ) -> BridgeResult:
        user = target.user if isinstance(target, ToUser) else str(target)
        self.bridged.append(user)
        kind, value = self.agents.get(user, ("fail", 480))
        if kind == "answer":
            await asyncio.sleep(value)
            if self.call.ended:
                raise Hangup(self.call.call_id)
            return BridgeResult(answered=True, status=200, leg_id=f"leg-{user}")
        if kind == "ring":  # rings until the caller hangs up: the dial ends 487
            await self.call.ended_event.wait()
            return BridgeResult(answered=False, status=487)
        await asyncio.sleep(0.01)
        return BridgeResult(answered=False, status=int(value))

    async def hangup(self, **_: object) -> None:
        self.call.end()

    async def wait_hangup(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.call.ended_event.wait(), timeout)


class FakeLog:
    """Keeps what the service flushes (the SQLite QueueLog has its own test)."""

    def __init__(self) -> None:
        self.records: list[LogRecord] = []

    async def append(self, records: Sequence[LogRecord]) -> None:
        self.records.extend(records)

    async def save_snapshot(self, *args: object) -> None:
        pass

    async def take_commands(self) -> list[object]:
        return []


def service(acd: Distributor, **kwargs: object) -> Acd:
    return Acd(
        distributor=acd,
        is_registered=lambda user: True,
        clock=time.monotonic,
        log=FakeLog(),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def outcomes(records: list[LogRecord]) -> dict[str, list[QueueEvent]]:
    found: dict[str, list[QueueEvent]] = {}
    for record in records:
        if record.event in OUTCOMES:
            found.setdefault(record.caller_id, []).append(record.event)
    return found


async def flushed(acd: Acd) -> list[LogRecord]:
    assert isinstance(acd.log, FakeLog)
    return acd.log.records + list(acd.distributor.records)


async def test_callers_connect_in_order_then_wrap_up() -> None:
    core = make(
        2, queue=QueueSettings(name="support", wrap_up=0.2, announce_interval=0)
    )
    acd = service(core)
    await acd.start()
    try:
        script = {"1001": ("answer", 0.05), "1002": ("answer", 0.05)}
        sessions = [FakeSession(f"c{i}", script) for i in range(4)]
        tasks = []
        for session in sessions:
            tasks.append(asyncio.create_task(acd.enqueue(session, "support")))
            await asyncio.sleep(0.01)
        # The first two connect; the others wait for the agents.
        results = await asyncio.wait_for(asyncio.gather(*tasks[:2]), TIMEOUT)
        assert results == ["connect", "connect"]
        assert not tasks[2].done()
        for session in sessions[:2]:
            session.call.end()  # the calls end: agents go to wrap-up
        results = await asyncio.wait_for(asyncio.gather(*tasks[2:]), TIMEOUT)
        assert results == ["connect", "connect"]
        for session in sessions[2:]:
            session.call.end()
        await asyncio.sleep(0.3)
    finally:
        await acd.stop()
    records = await flushed(acd)
    assert all(v == [QueueEvent.CONNECT] for v in outcomes(records).values())
    offered = [r for r in records if r.event is QueueEvent.OFFERED]
    assert [r.caller_id for r in offered] == ["c0", "c1", "c2", "c3"]
    # Wrap-up: the second offer to an agent comes at least 0.2 s after its complete.
    for agent in ("a1", "a2"):
        mine = [r for r in records if r.agent == agent]
        complete = next(r for r in mine if r.event is QueueEvent.COMPLETE)
        later = [
            r for r in mine if r.event is QueueEvent.OFFERED and r.at > complete.at
        ]
        assert later and later[0].at - complete.at >= 0.2 - 1e-3
    assert core.violations() == []


async def test_ring_no_answer_breaks_agent_and_the_next_one_answers() -> None:
    core = make(2, queue=QueueSettings(name="support", announce_interval=0))
    core.agents["a1"].idle_since = -10.0  # a1 is offered first
    acd = service(core)
    await acd.start()
    try:
        session = FakeSession("c0", {"1001": ("fail", 480), "1002": ("answer", 0.01)})
        result = await asyncio.wait_for(acd.enqueue(session, "support"), TIMEOUT)
        assert result == "connect"
        assert session.bridged == ["1001", "1002"]
        assert core.agents["a1"].status is AgentStatus.ON_BREAK
        assert core.agents["a1"].break_reason == "no answer"
        session.call.end()
        await asyncio.sleep(0.05)
    finally:
        await acd.stop()


async def test_an_agent_dialling_the_queue_rings_another_agent_not_themselves() -> None:
    """Agent a1 calls the queue from their phone (user 1001): a1 would be first by
    idle time, yet the offer goes to a2 only; a1's phone never rings for itself."""
    core = make(2, queue=QueueSettings(name="support", announce_interval=0))
    core.agents["a1"].idle_since = -10.0
    acd = service(core)
    await acd.start()
    try:
        session = FakeSession(
            "c0", {"1001": ("answer", 0.01), "1002": ("answer", 0.01)}
        )
        session.call.caller = Caller(
            kind="user", name="1001", number="1001", allow_outbound=False
        )
        result = await asyncio.wait_for(acd.enqueue(session, "support"), TIMEOUT)
        assert result == "connect"
        assert session.bridged == ["1002"]
        session.call.end()
        await asyncio.sleep(0.05)
    finally:
        await acd.stop()


async def test_hang_up_while_waiting_is_an_abandon() -> None:
    core = make(0, queue=QueueSettings(name="support", join_empty=True))
    acd = service(core)
    await acd.start()
    try:
        session = FakeSession("c0", {})
        task = asyncio.create_task(acd.enqueue(session, "support"))
        await asyncio.sleep(0.05)
        session.call.end()
        assert await asyncio.wait_for(task, TIMEOUT) == "abandon"
    finally:
        await acd.stop()
    assert outcomes(await flushed(acd)) == {"c0": [QueueEvent.ABANDON]}


async def test_exit_key_sends_the_caller_on() -> None:
    queue = QueueSettings(
        name="support", join_empty=True, exit_key="0", exit_destination="user:1009"
    )
    acd = service(make(0, queue=queue))
    await acd.start()
    try:
        session = FakeSession("c0", {"1009": ("answer", 0.0)})
        task = asyncio.create_task(acd.enqueue(session, "support"))
        await asyncio.sleep(0.05)
        session.digits.put_nowait("0")
        assert await asyncio.wait_for(task, TIMEOUT) == "connect"
        assert session.bridged == ["1009"]
    finally:
        await acd.stop()
    assert outcomes(await flushed(acd)) == {"c0": [QueueEvent.EXIT_KEY]}


async def test_announcements_give_position_and_expected_wait() -> None:
    heard: list[tuple[int, float | None]] = []

    def announcer(position: int, ewt: float | None, language: str) -> list[object]:
        heard.append((position, ewt))
        return []

    core = make(1, queue=QueueSettings(name="support", announce_interval=0.05))
    core.handle_times["support"].default = 100.0
    acd = service(core, announcer=announcer)
    await acd.start()
    try:
        first = FakeSession("c0", {"1001": ("answer", 0.0)})
        second = FakeSession("c1", {})
        assert (
            await asyncio.wait_for(acd.enqueue(first, "support"), TIMEOUT) == "connect"
        )
        task = asyncio.create_task(acd.enqueue(second, "support"))
        await asyncio.sleep(0.2)
        second.call.end()
        await asyncio.wait_for(task, TIMEOUT)
        first.call.end()
    finally:
        await acd.stop()
    assert heard and heard[0] == (1, 100.0)


async def test_callback_keeps_place_and_connects_through_originate() -> None:
    placed: list[tuple[str, str, tuple[str, ...]]] = []
    done = asyncio.Event()

    @dataclass
    class Placed:
        user: str

        async def wait_hangup(self) -> None:
            await done.wait()

    async def originate(
        number: str, trunk: str, users: Sequence[str], timeout: float
    ) -> Placed | int:
        placed.append((number, trunk, tuple(users)))
        return Placed(user=users[0])

    rule = AdmissionRule(
        queue="support", max_expected_wait=10.0, action=AdmissionAction.CALLBACK
    )
    core = make(
        1, queue=QueueSettings(name="support", announce_interval=0), rules=[rule]
    )
    acd = service(
        core, media={"support": QueueMedia(callback_trunk="demo")}, originate=originate
    )
    await acd.start()
    try:
        busy = FakeSession("c0", {"1001": ("answer", 0.0)})
        assert (
            await asyncio.wait_for(acd.enqueue(busy, "support"), TIMEOUT) == "connect"
        )
        caller = FakeSession("c1", {})
        caller.digits.put_nowait("1")  # accepts the callback offer
        caller.digits.put_nowait("1")  # and confirms its own number
        result = await asyncio.wait_for(acd.enqueue(caller, "support"), TIMEOUT)
        assert result == "callback_requested" and caller.call.ended
        assert core.position("c1") == 1  # still in line, virtually
        busy.call.end()  # the agent is free: the callback is placed
        for _ in range(100):
            if (
                placed
                and core.callers.get("c1")
                and core.callers["c1"].state.value == "connected"
            ):
                break
            await asyncio.sleep(0.02)
        assert placed == [("+7c1", "demo", ("1001",))]
        done.set()
        await asyncio.sleep(0.05)
    finally:
        await acd.stop()
    records = await flushed(acd)
    assert outcomes(records)["c1"] == [QueueEvent.CALLBACK_COMPLETED]
    assert [r.event for r in records if r.caller_id == "c1"][-1] is QueueEvent.COMPLETE


async def test_registration_event_logs_an_auto_login_agent_in() -> None:
    core = make(1, login=False)
    core.agents["a1"].auto_login = True
    core.agents["a1"].registered = False
    bus = new_bus()
    acd = service(core, bus=bus)
    acd.is_registered = lambda user: False
    await acd.start()
    try:
        acd.is_registered = lambda user: user == "1001"
        bus.emit(
            "registration.added",
            RegistrationAdded(
                at=0.0,
                user="1001",
                contact="c",
                source="s",
                expires=60,
                user_agent=None,
            ),
        )
        assert core.agents["a1"].status is AgentStatus.AVAILABLE
    finally:
        await acd.stop()


async def test_feature_code_app_and_queue_app() -> None:
    core = make(1, login=False)
    acd = service(core)
    session = FakeSession("fc", {})
    session.call.caller = Caller(
        kind="user", name="1001", number="1001", allow_outbound=False
    )
    await agent_app(acd)(session, ToApp(app="agent", args=(("action", "login"),)))  # type: ignore[arg-type]
    assert core.agents["a1"].status is AgentStatus.AVAILABLE and session.call.ended
    stranger = FakeSession("x", {})
    await agent_app(acd)(stranger, ToApp(app="agent", args=(("action", "login"),)))  # type: ignore[arg-type]
    assert stranger.call.ended  # a busy tone, nothing changed
    unknown = FakeSession("q", {})
    await queue_app(acd)(unknown, ToApp(app="queue", args=(("queue", "nowhere"),)))  # type: ignore[arg-type]
    assert unknown.call.ended


@pytest.mark.parametrize("action", ["logout", "break"])
def test_agent_actions(action: str) -> None:
    core = make(1)
    acd = Acd(distributor=core)
    acd.agent_action("a1", action, "lunch")
    expected = AgentStatus.LOGGED_OUT if action == "logout" else AgentStatus.ON_BREAK
    assert core.agents["a1"].status is expected


async def test_press_1_while_waiting_keeps_the_place_as_a_callback() -> None:
    core = make(0, queue=QueueSettings(name="support", join_empty=True))
    acd = service(core, media={"support": QueueMedia(callback_trunk="demo")})
    await acd.start()
    try:
        ahead = FakeSession("c0", {})
        waiting = asyncio.create_task(acd.enqueue(ahead, "support"))
        await asyncio.sleep(0.02)
        caller = FakeSession("c1", {})
        task = asyncio.create_task(acd.enqueue(caller, "support"))
        await asyncio.sleep(0.05)
        caller.digits.put_nowait("1")
        caller.digits.put_nowait("1")  # confirms the number read back
        assert await asyncio.wait_for(task, TIMEOUT) == "callback_requested"
        assert caller.call.ended
        assert core.callers["c1"].virtual and core.position("c1") == 2
        assert "c1" not in acd._sessions  # nothing left of the live call
        ahead.call.end()
        await asyncio.wait_for(waiting, TIMEOUT)
    finally:
        await acd.stop()


async def test_timeout_to_another_queue_keeps_the_arrival_time() -> None:
    from acd.strategies import load_strategies

    support = QueueSettings(
        name="support", join_empty=True, max_wait=0.2, exit_destination="queue:sales"
    )
    sales = QueueSettings(name="sales", join_empty=True)
    core = Distributor(queues=[support, sales], agents=[], strategies=load_strategies())
    acd = service(core)
    await acd.start()
    try:
        early = FakeSession("early", {})
        task = asyncio.create_task(acd.enqueue(early, "support"))
        await asyncio.sleep(0.05)
        # "mid" enters sales after "early" entered support, before it timed out.
        mid = FakeSession("mid", {})
        mid_task = asyncio.create_task(acd.enqueue(mid, "sales"))
        for _ in range(100):
            if core.callers.get("early") and core.callers["early"].queue == "sales":
                break
            await asyncio.sleep(0.02)
        moved = core.callers["early"]
        assert moved.arrival < moved.entered
        # Moved later, but it keeps its arrival: ahead of "mid".
        assert [c.caller_id for c in core.waiting("sales")] == ["early", "mid"]
        for session in (early, mid):
            session.call.end()
        await asyncio.wait_for(asyncio.gather(task, mid_task), TIMEOUT)
    finally:
        await acd.stop()
    outcomes_of = outcomes(await flushed(acd))
    assert outcomes_of["early"] == [QueueEvent.EXIT_TIMEOUT, QueueEvent.ABANDON]


async def test_callback_to_another_number_keyed_in_and_confirmed() -> None:
    core = make(0, queue=QueueSettings(name="support", join_empty=True))
    spoken: list[str] = []

    def say_number(number: str, language: str) -> list[PlayItem]:
        spoken.append(number)
        return []

    acd = service(core, media={"support": QueueMedia(callback_trunk="demo")})
    acd.say_number = say_number
    await acd.start()
    try:
        caller = FakeSession("c1", {})
        task = asyncio.create_task(acd.enqueue(caller, "support"))
        await asyncio.sleep(0.05)
        # 1: call me back; 2: another number; 84951234567#; 1: that one is right
        for key in "1284951234567#1":
            caller.digits.put_nowait(key)
        assert await asyncio.wait_for(task, TIMEOUT) == "callback_requested"
        assert spoken == ["+7c1", "84951234567"]
        assert core.callers["c1"].callback_number == "84951234567"
    finally:
        await acd.stop()


async def test_callback_offer_not_confirmed_keeps_the_caller_waiting() -> None:
    core = make(0, queue=QueueSettings(name="support", join_empty=True))
    acd = service(core, media={"support": QueueMedia(callback_trunk="demo")})
    await acd.start()
    try:
        caller = FakeSession("c1", {})
        task = asyncio.create_task(acd.enqueue(caller, "support"))
        await asyncio.sleep(0.05)
        caller.digits.put_nowait("1")
        for _ in range(3):  # three wrong answers to "press 1 if it is right"
            caller.digits.put_nowait("7")
        await asyncio.sleep(0.3)
        assert not task.done()
        assert not core.callers["c1"].virtual  # still a live caller in line
        caller.call.end()
        await asyncio.wait_for(task, TIMEOUT)
    finally:
        await acd.stop()


async def test_caller_hanging_up_while_the_agent_rings_is_no_fault_of_the_agent() -> (
    None
):
    core = make(1, queue=QueueSettings(name="support"))
    acd = service(core)
    await acd.start()
    try:
        session = FakeSession("c0", {"1001": ("ring", 0.0)})
        task = asyncio.create_task(acd.enqueue(session, "support"))
        for _ in range(100):
            if session.bridged:
                break
            await asyncio.sleep(0.01)
        assert session.bridged == ["1001"]
        session.call.end()
        assert await asyncio.wait_for(task, TIMEOUT) == "abandon"
        await asyncio.sleep(0.05)
        agent = core.agents["a1"]
        assert agent.status is AgentStatus.AVAILABLE  # not on break "no answer"
    finally:
        await acd.stop()
    records = await flushed(acd)
    assert outcomes(records) == {"c0": [QueueEvent.ABANDON]}
    assert QueueEvent.NO_ANSWER not in [r.event for r in records]


async def test_an_agent_rings_on_every_registered_phone_and_either_answers() -> None:
    """Desk phone 1001 and softphone 2001 of one agent ring together; 2001 answers."""
    from acd.agent import Agent, Membership
    from acd.strategies import load_strategies

    queue = QueueSettings(name="support")
    agent = Agent(
        name="a1", users=("1001", "2001"), memberships=(Membership(queue="support"),)
    )
    core = Distributor(queues=[queue], agents=[agent], strategies=load_strategies())
    for user in agent.users:
        core.registered(user, True, 0.0)
    core.login("a1", 0.0)

    @dataclass
    class Leg:
        peer: str
        leg_id: str = "out-1"

    @dataclass
    class Dialled:
        leg: Leg | None
        status: int = 200

    rung: list[list[str]] = []

    class B2bua:
        def targets(self, route: ToUser) -> list[Leg]:
            return [Leg(peer=route.user)]

    class PhonesCall(FakeCall):
        b2bua = B2bua()
        inbound = Leg(peer="caller")
        connected: tuple[object, object] | None = None

        async def dial(
            self, targets: list[Leg], *, ring_timeout: float, relay: bool
        ) -> Dialled:
            rung.append([t.peer for t in targets])
            await asyncio.sleep(0.01)
            return Dialled(leg=Leg(peer="2001"))

        def connect(self, a: object, b: object) -> None:
            self.connected = (a, b)

    acd = service(core)
    acd.is_registered = lambda user: True
    await acd.start()
    try:
        session = FakeSession("c1", {})
        session.call = PhonesCall(session.call.call_id, session.call.caller)
        task = asyncio.create_task(acd.enqueue(session, "support"))
        assert await asyncio.wait_for(task, TIMEOUT) == "connect"
        assert rung == [["1001", "2001"]]
        assert core.agents["a1"].state.value == "talking"
        session.call.end()
        await asyncio.sleep(0.05)
    finally:
        await acd.stop()
