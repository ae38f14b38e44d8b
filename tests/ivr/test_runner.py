"""The flow runner on a fake session, walking the demo flow's branches."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from ivr.crm import DemoCrm
from ivr.events import (
    DigitsOutcome,
    DipOutcome,
    ExitReason,
    IvrDataDip,
    IvrDigits,
    IvrExited,
)
from ivr.flow import Flow
from ivr.loader import load_flow, parse_flow
from ivr.prompts import DEFAULT_PROMPTS, PromptLibrary
from ivr.runner import MAX_STEPS, FlowRunner, QueueRequest, Services
from ivr.service import DEMO_FLOWS
from switch.events import ANY, new_bus
from tests.harness import free_port
from tests.ivr.fakes import FakeSession

MOSCOW = ZoneInfo("Europe/Moscow")
# Monday 7 December 2026, 10:00 in Moscow: the demo office is open.
OPEN = datetime.datetime(2026, 12, 7, 10, 0, tzinfo=MOSCOW).timestamp()
# Sunday 6 December 2026: closed all day.
SUNDAY = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=MOSCOW).timestamp()
# Friday 1 January 2027 at noon: a weekday, but a holiday of the demo schedule.
HOLIDAY = datetime.datetime(2027, 1, 1, 12, 0, tzinfo=MOSCOW).timestamp()
# Monday 20:00: after hours.
EVENING = datetime.datetime(2026, 12, 7, 20, 0, tzinfo=MOSCOW).timestamp()

GREETING = ["greeting"]
LANGUAGE = ["choose_language"]


@pytest.fixture(scope="module")
def demo() -> Flow:
    library = PromptLibrary(root=DEFAULT_PROMPTS)
    return load_flow(DEMO_FLOWS / "demo.toml", library)


@pytest.fixture
async def crm() -> AsyncIterator[DemoCrm]:
    server = DemoCrm(host="127.0.0.1", port=free_port())
    await server.start()
    yield server
    await server.stop()


class Run:
    """One call through a flow: the session, the events and the exit reason."""

    def __init__(self, session: FakeSession, events: list[Any], reason: ExitReason):
        self.session = session
        self.events = events
        self.reason = reason

    def of(self, cls: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]

    @property
    def path(self) -> list[str]:
        return [e.node for e in self.events if e.name == "ivr.node"]


async def run(
    flow: Flow,
    session: FakeSession,
    *,
    clock: float = OPEN,
    crm: DemoCrm | None = None,
    queue: Any = None,
    variables: dict[str, str] | None = None,
    time_zone: ZoneInfo = MOSCOW,
) -> Run:
    bus = new_bus()
    events: list[Any] = []
    bus.on(ANY, events.append)
    async with aiohttp.ClientSession() as http:
        services = Services(
            library=PromptLibrary(root=DEFAULT_PROMPTS),
            time_zone=time_zone,
            bus=bus,
            http=http,
            queue=queue,
            variables={"crm_url": crm.url if crm else "http://127.0.0.1:9/x"}
            | (variables or {}),
            clock=lambda: clock,
        )
        runner = FlowRunner(flow, session, call_id="call-1", services=services)
        reason = await runner.run()
    return Run(session, events, reason)


async def test_menu_1_sales_without_an_acd_takes_the_fallback(
    demo: Flow, crm: DemoCrm
) -> None:
    # Unknown caller; "1" (Russian) during the language prompt, "1" during the menu.
    session = FakeSession(presses={2: "1", 3: "1"}, caller="+70000000000")
    result = await run(demo, session, crm=crm)
    assert result.path == [
        "greeting", "language", "defaults", "lookup", "known", "hours", "menu",
        "sales", "busy", "goodbye",
    ]  # fmt: skip
    assert session.answered and session.hung_up
    assert session.prompts == [
        GREETING, LANGUAGE, ["menu"], ["sales", "please_hold"], ["agents_busy"],
        ["goodbye"],
    ]  # fmt: skip
    assert result.reason is ExitReason.HANGUP
    (dip,) = result.of(IvrDataDip)
    assert dip.outcome is DipOutcome.OK
    assert dict(dip.fields) == {"customer_found": "no", "customer_tier": "none"}
    (exited,) = result.of(IvrExited)
    assert (exited.node, exited.reason) == ("goodbye", ExitReason.HANGUP)


async def test_menu_2_support_queue_with_priority_and_skill(
    demo: Flow, crm: DemoCrm
) -> None:
    requests: list[QueueRequest] = []

    async def acd(session: Any, request: QueueRequest) -> bool:
        requests.append(request)
        return True

    # A gold customer (demo CRM) choosing English ("2"), then support ("2").
    session = FakeSession(presses={2: "2", 4: "2"}, caller="+74951234567")
    result = await run(demo, session, crm=crm, queue=acd)
    assert result.reason is ExitReason.QUEUED
    assert result.path[-5:] == ["vip", "welcome", "hours", "menu", "support"]
    (request,) = requests
    assert (request.queue, request.priority, request.skills) == ("support", 10, ("en",))
    assert request.language == "en"
    assert session.prompts[2] == ["welcome_back"]
    assert not session.hung_up  # the ACD has the call now
    (exited,) = result.of(IvrExited)
    assert (exited.reason, exited.target) == (ExitReason.QUEUED, "support")


async def test_menu_0_transfers_to_the_operator(demo: Flow, crm: DemoCrm) -> None:
    session = FakeSession(presses={2: "1", 4: "0"}, caller="+74957654321")
    result = await run(demo, session, crm=crm)
    assert result.reason is ExitReason.TRANSFERRED
    assert session.bridged == [("1001", 20.0)]
    assert result.path[-3:] == ["hours", "menu", "operator"]
    assert "vip" not in result.path  # a regular customer: welcomed, no priority


async def test_operator_busy_goes_to_transfer_failed(demo: Flow) -> None:
    session = FakeSession(presses={1: "1", 2: "0"}, bridge_status=486)
    result = await run(demo, session)
    assert result.path[-3:] == ["operator", "transfer_failed", "goodbye"]
    assert result.reason is ExitReason.HANGUP


@pytest.mark.parametrize("clock", [SUNDAY, HOLIDAY, EVENING])
async def test_outside_opening_hours_the_caller_hears_closed(
    demo: Flow, clock: float
) -> None:
    session = FakeSession(presses={2: "1"})
    result = await run(demo, session, clock=clock)
    assert result.path[-3:] == ["hours", "closed", "goodbye"]
    assert session.prompts[-2:] == [["closed"], ["goodbye"]]


async def test_invalid_keys_retry_then_goodbye(demo: Flow) -> None:
    # Language "1", then "9" to every menu prompt: three tries, then goodbye.
    session = FakeSession(presses={2: "1", 3: "9", 4: "9", 5: "9", 6: "9"})
    result = await run(demo, session)
    digits = [(d.node, d.digits, d.outcome, d.attempt) for d in result.of(IvrDigits)]
    assert digits[1:] == [
        ("menu", "9", DigitsOutcome.INVALID, 1),
        ("menu", "9", DigitsOutcome.INVALID, 2),
        ("menu", "9", DigitsOutcome.INVALID, 3),
    ]
    # The "invalid" prompt took the key of tries 2 and 3 (barge-in): the menu
    # prompt itself is skipped when a key is already waiting.
    assert session.prompts[2:] == [["menu"], ["invalid"], ["invalid"], ["goodbye"]]
    assert result.path[-2:] == ["menu", "goodbye"]


async def test_silence_in_the_menu_goes_to_no_input(demo: Flow) -> None:
    session = FakeSession(presses={2: "1"})
    result = await run(demo, session)
    outcomes = [d.outcome for d in result.of(IvrDigits) if d.node == "menu"]
    assert outcomes == [DigitsOutcome.TIMEOUT] * 3
    assert result.path[-1] == "goodbye"


async def test_barge_in_a_key_during_the_greeting_is_the_language_choice(
    demo: Flow,
) -> None:
    # "2" pressed during the greeting stops it; the language node takes it without
    # playing its prompt, and the next prompts are English.
    session = FakeSession(presses={1: "2", 2: "1"})
    result = await run(demo, session)
    assert session.plays[0] == (GREETING, True)
    assert session.prompts[1] == ["menu"]
    language = [d for d in result.of(IvrDigits) if d.node == "language"]
    assert language[0].digits == "2"
    assert result.of(type(result.events[0]))[0].language == "ru"
    assert result.path[-2:] == ["busy", "goodbye"]


async def test_an_unreachable_crm_takes_the_fallback(demo: Flow) -> None:
    session = FakeSession(presses={1: "1", 2: "2"})
    result = await run(demo, session)  # crm_url points at a closed port
    (dip,) = result.of(IvrDataDip)
    assert dip.outcome is DipOutcome.UNREACHABLE
    assert result.path[3:6] == ["lookup", "hours", "menu"]


async def test_caller_hanging_up_ends_the_flow(demo: Flow) -> None:
    session = FakeSession(hangup_at=2)
    result = await run(demo, session)
    (exited,) = result.of(IvrExited)
    assert (exited.node, exited.reason) == ("language", ExitReason.CALLER_HANGUP)
    assert not session.hung_up


SAY = """
start = "ask"
[nodes.ask]
type = "collect"
prompts = ["greeting"]
variable = "n"
min_digits = 2
max_digits = 4
next = "say"
invalid = "bye"
[nodes.say]
type = "play"
prompts = ["number:${n}", "silence:200", "duration:${n}", "digits:${n}"]
next = "bye"
[nodes.bye]
type = "hangup"
"""


async def test_collect_and_speak_the_number_in_the_callers_language() -> None:
    flow = parse_flow(SAY, source="say.toml", name="say")
    session = FakeSession(presses={1: "122#"})
    await run(flow, session)
    # 122: сто двадцать два; 122 s: две минуты две секунды; digits 1 2 2.
    assert session.prompts[1] == [
        "n100", "n20", "n2", "silence:200", "n2f", "minute_few", "n2f",
        "second_few", "n1", "n2", "n2",
    ]  # fmt: skip


async def test_too_few_digits_take_the_invalid_branch() -> None:
    flow = parse_flow(SAY, source="say.toml", name="say")
    session = FakeSession(presses={1: "1#"})
    result = await run(flow, session)
    assert result.path == ["ask", "bye"]
    (digits,) = result.of(IvrDigits)
    assert digits.outcome is DigitsOutcome.INVALID


LOOP = """
start = "menu"
[nodes.menu]
type = "menu"
choices = { "1" = "bye" }
retries = 0
invalid = "menu"
[nodes.bye]
type = "hangup"
"""


async def test_a_caller_looping_forever_is_bounded() -> None:
    flow = parse_flow(LOOP, source="loop.toml", name="loop")
    session = FakeSession(every_play="9")
    # No prompts in this menu: keys come only after a timeout, so queue them all.
    for _ in range(MAX_STEPS + 10):
        session.digits.put_nowait("9")
    result = await run(flow, session)
    assert len(result.path) == MAX_STEPS
    assert session.hung_up
    assert result.reason is ExitReason.ERROR


CALLER = """
start = "who"
[nodes.who]
type = "branch"
default = "other"
[[nodes.who.conditions]]
caller = "re:\\\\+7495.*"
goto = "moscow"
[nodes.moscow]
type = "hangup"
[nodes.other]
type = "hangup"
"""


@pytest.mark.parametrize(
    ("caller", "node"), [("+74951234567", "moscow"), ("+442079460000", "other")]
)
async def test_branch_on_the_caller_number(caller: str, node: str) -> None:
    flow = parse_flow(CALLER, source="c.toml", name="c")
    result = await run(flow, FakeSession(caller=caller))
    assert result.path == ["who", node]


class BrokenBridge(FakeSession):
    async def bridge(self, target: Any, *, ring_timeout: float | None = None) -> Any:
        raise RuntimeError("bug in bridging")


async def test_a_bug_in_a_node_ends_that_call_only(demo: Flow) -> None:
    session = BrokenBridge(presses={1: "1", 2: "0"})
    result = await run(demo, session)
    assert result.reason is ExitReason.ERROR
    assert session.hung_up
    (exited,) = result.of(IvrExited)
    assert exited.node == "operator"


async def test_opening_hours_are_in_the_configured_time_zone(demo: Flow) -> None:
    # Monday 07:30 UTC is 10:30 in Moscow: open there, not yet open in London.
    monday = datetime.datetime(2026, 12, 7, 7, 30, tzinfo=ZoneInfo("UTC")).timestamp()
    moscow = await run(demo, FakeSession(presses={1: "1"}), clock=monday)
    london = await run(
        demo,
        FakeSession(presses={1: "1"}),
        clock=monday,
        time_zone=ZoneInfo("Europe/London"),
    )
    assert "menu" in moscow.path
    assert london.path[-2:] == ["closed", "goodbye"]


def test_every_node_type_has_its_handler_method() -> None:
    from ivr.flow import NodeType
    from ivr.runner import _HANDLERS, FlowRunner

    assert set(_HANDLERS) == set(NodeType)
    assert all(callable(getattr(FlowRunner, name)) for name in _HANDLERS.values())
