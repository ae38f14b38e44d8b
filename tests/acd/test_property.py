"""Property test: random arrivals, answers, hang-ups, no-answers and logouts.

A hypothesis rule-based machine drives one distributor on a fake clock through any
sequence of inputs a real switch can produce and checks the invariants after every
step: a caller is connected to at most one agent, an agent holds at most one call,
no agent is reserved or ringing without a call, and (at the end) every caller who
entered has exactly one outcome in the queue log.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from acd.agent import Agent, AgentState, Membership
from acd.distributor import Distributor, Offer
from acd.queue import CallerState, LeaveReason, QueueSettings
from acd.records import OUTCOMES, QueueEvent
from acd.strategies import BUILTIN, load_strategies

AGENTS = ["a1", "a2", "a3", "a4"]
QUEUES = ["support", "sales"]


class AcdMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.count = 0
        self.acd: Distributor | None = None
        self.offered: dict[str, tuple[str, ...]] = {}

    @rule(
        strategy=st.sampled_from(sorted(BUILTIN)),
        wrap_up=st.sampled_from([0.0, 5.0]),
        max_wait=st.sampled_from([0.0, 30.0]),
    )
    @precondition(lambda self: self.acd is None)
    def build(self, strategy: str, wrap_up: float, max_wait: float) -> None:
        queues = [
            QueueSettings(
                name=name,
                strategy=strategy,
                wrap_up=wrap_up,
                max_wait=max_wait,
                widen_after=10.0,
                tier_after=10.0,
                callback_retries=2,
                callback_retry_interval=5.0,
            )
            for name in QUEUES
        ]
        agents = [
            Agent(
                name=name,
                users=(name,),
                memberships=tuple(
                    Membership(queue=q, penalty=i % 2) for q in QUEUES[: 1 + i % 2]
                ),
                skills={"ru": 1 + i},
            )
            for i, name in enumerate(AGENTS)
        ]
        self.acd = Distributor(
            queues=queues, agents=agents, strategies=load_strategies()
        )
        for name in AGENTS:
            self.acd.registered(name, True, 0.0)
            self.acd.login(name, 0.0)

    def _poll(self) -> None:
        assert self.acd is not None
        for action in self.acd.poll(self.now):
            if isinstance(action, Offer):
                self.offered[action.caller_id] = action.agents

    @rule(
        queue=st.sampled_from(QUEUES),
        priority=st.integers(0, 2),
        level=st.integers(0, 4),
        callback=st.booleans(),
    )
    @precondition(lambda self: self.acd is not None)
    def arrive(self, queue: str, priority: int, level: int, callback: bool) -> None:
        assert self.acd is not None
        self.count += 1
        skills = {"ru": level} if level else {}
        self.acd.enter(
            f"c{self.count}",
            queue,
            self.now,
            priority=priority,
            skills=skills,
            callback_number="555" if callback else None,
        )
        self._poll()

    @rule(seconds=st.floats(0.0, 20.0))
    @precondition(lambda self: self.acd is not None)
    def tick(self, seconds: float) -> None:
        self.now += seconds
        self._poll()

    def _offered(self) -> list[tuple[str, str]]:
        assert self.acd is not None
        return sorted(
            (c.caller_id, a)
            for c in self.acd.callers.values()
            if c.state is CallerState.OFFERED
            for a in c.agents
        )

    @rule(data=st.data())
    @precondition(lambda self: self.acd is not None and self._offered())
    def answer(self, data: st.DataObject) -> None:
        assert self.acd is not None
        caller_id, agent = data.draw(st.sampled_from(self._offered()))
        self.acd.ringing(caller_id, agent, self.now)
        assert self.acd.answered(caller_id, agent, self.now)
        self._poll()

    @rule(data=st.data(), status=st.sampled_from([480, 486, 408, 503]))
    @precondition(lambda self: self.acd is not None and self._offered())
    def no_answer(self, data: st.DataObject, status: int) -> None:
        assert self.acd is not None
        caller_id, agent = data.draw(st.sampled_from(self._offered()))
        caller = self.acd.callers[caller_id]
        if caller.virtual and len(caller.agents) == 1 and status == 503:
            self.acd.callback_failed(caller_id, self.now)  # the customer's side failed
        else:
            self.acd.no_answer(caller_id, agent, self.now, status=status)
        self._poll()

    @rule(data=st.data())
    @precondition(lambda self: self.acd is not None and self.acd.callers)
    def hang_up(self, data: st.DataObject) -> None:
        assert self.acd is not None
        caller_id = data.draw(st.sampled_from(sorted(self.acd.callers)))
        self.acd.abandon(caller_id, self.now)  # connected: hang-up, else abandon
        self._poll()

    @rule(data=st.data())
    @precondition(lambda self: self.acd is not None and self.acd.callers)
    def leave_or_move(self, data: st.DataObject) -> None:
        assert self.acd is not None
        waiting = sorted(
            c.caller_id
            for c in self.acd.callers.values()
            if c.state is not CallerState.CONNECTED
        )
        if not waiting:
            return
        caller_id = data.draw(st.sampled_from(waiting))
        if data.draw(st.booleans()):
            self.acd.leave(caller_id, LeaveReason.EXIT_KEY, self.now)
        else:
            other = QUEUES[1 - QUEUES.index(self.acd.callers[caller_id].queue)]
            self.acd.transfer(caller_id, other, self.now)
        self._poll()

    @rule(agent=st.sampled_from(AGENTS), action=st.sampled_from(["in", "out", "brk"]))
    @precondition(lambda self: self.acd is not None)
    def agent_status(self, agent: str, action: str) -> None:
        assert self.acd is not None
        if action == "in":
            self.acd.login(agent, self.now)
        elif action == "out":
            self.acd.logout(agent, self.now)
        elif self.acd.agents[agent].status.value != "logged out":
            self.acd.pause(agent, "lunch", self.now)
        self._poll()

    @rule(agent=st.sampled_from(AGENTS), up=st.booleans())
    @precondition(lambda self: self.acd is not None)
    def registration(self, agent: str, up: bool) -> None:
        assert self.acd is not None
        self.acd.registered(agent, up, self.now)
        self._poll()

    @invariant()
    def invariants_hold(self) -> None:
        if self.acd is None:
            return
        assert self.acd.violations() == []
        holders: Counter[str] = Counter()
        for agent in self.acd.agents.values():
            if agent.state in (AgentState.RESERVED, AgentState.RINGING):
                assert agent.call is not None, agent
            if agent.state is AgentState.TALKING:
                assert agent.call is not None
                holders[agent.call] += 1
        # A caller is connected to at most one agent.
        assert all(n == 1 for n in holders.values())
        for caller in self.acd.callers.values():
            if caller.state is CallerState.CONNECTED:
                assert holders[caller.caller_id] == 1

    @invariant()
    def one_outcome_per_entered_caller(self) -> None:
        if self.acd is None:
            return
        entered: Counter[str] = Counter()
        ended: Counter[str] = Counter()
        for record in self.acd.records:
            if record.event is QueueEvent.ENTER:
                entered[record.caller_id] += 1
            elif record.event in OUTCOMES:
                ended[record.caller_id] += 1
        for caller_id, times in entered.items():
            # A caller still in a queue has had one outcome per earlier stay (moves).
            still_in = caller_id in self.acd.callers and (
                self.acd.callers[caller_id].state is not CallerState.CONNECTED
            )
            assert ended[caller_id] == times - (1 if still_in else 0), caller_id


AcdMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None
)
TestAcd = AcdMachine.TestCase
