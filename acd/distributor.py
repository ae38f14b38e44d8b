"""The distributor: the sans-IO heart of the ACD (issue 6).

Theory of operation
-------------------
The distributor owns agents, queues and callers and decides which caller goes to
which agent. It does no I/O and reads no clock: every input method takes ``now``,
and :meth:`Distributor.poll` returns what to do (:class:`Offer` a caller to agents,
make a caller :class:`Leave`). The asyncio service (:mod:`acd.service`) feeds it
what happens on the calls (ringing, answered, no answer, hang-up), executes the
actions, writes :attr:`Distributor.records` to the queue log and publishes
:attr:`Distributor.events` on the bus. :meth:`next_deadline` says when ``poll``
must run again without new input (a wrap-up ending, a caller timing out, a skill
widening), as the SIP core's timers do.

Matching runs over every waiting caller in global order (priority, then arrival,
which a caller keeps across queues), and for each over the free agents of its queue,
ranked by the queue's strategy (:mod:`acd.strategies`). An agent is free only when
available, idle, registered and not skipped, so a reserved, ringing, talking or
wrapping-up agent is never offered a second call. A caller whose offer fails (ring
no answer, busy) goes back to WAITING with the same ordering key, so at the head.
:meth:`violations` lists broken invariants; the property test calls it after every
step.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from acd import events as ev
from acd.admission import AdmissionDecision, AdmissionRule, QueueLoad, decide
from acd.agent import (
    BUSY_STATES,
    NO_ANSWER,
    SKIP_SECONDS,
    Agent,
    AgentState,
    AgentStatus,
)
from acd.estimate import AverageHoldTime, HandleTimes, expected_wait
from acd.queue import Caller, CallerState, LeaveReason, QueueSettings
from acd.records import OUTCOME_OF, LogRecord, QueueEvent
from acd.strategies import Candidate, Strategy, WaitingCall

logger = logging.getLogger(__name__)


class AcdError(Exception):
    """Local misuse: an unknown queue, agent or caller id, a duplicate caller."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Offer:
    """Ring ``agents`` (their SIP ``users``) for ``caller_id``.

    For a virtual caller ``callback_number`` is set: dial the customer, then bridge.
    """

    caller_id: str
    queue: str
    agents: tuple[str, ...]
    users: tuple[tuple[str, ...], ...]
    ring_timeout: float
    callback_number: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Leave:
    """The caller left the queue without an agent; ``destination`` for exit/overflow.

    ``arrival`` is kept so that a caller sent on to another queue keeps their place.
    """

    caller_id: str
    queue: str
    reason: LeaveReason
    destination: str = ""
    arrival: float | None = None


Action = Offer | Leave


class Distributor:
    """Agents, queues and callers; see the module doc.

    :param queues: the queue settings.
    :param agents: the agents (their runtime fields are owned from now on).
    :param strategies: strategy name -> strategy (from :func:`load_strategies`).
    :param rules: admission rules of all queues.
    """

    def __init__(
        self,
        *,
        queues: Sequence[QueueSettings],
        agents: Sequence[Agent],
        strategies: Mapping[str, Strategy],
        rules: Sequence[AdmissionRule] = (),
    ) -> None:
        self.queues = {q.name: q for q in queues}
        self.agents = {a.name: a for a in agents}
        for settings in queues:
            if settings.strategy not in strategies:
                raise AcdError(
                    f"queue {settings.name}: unknown strategy {settings.strategy!r}"
                )
        self.strategies = dict(strategies)
        self.rules = tuple(rules)
        self.callers: dict[str, Caller] = {}
        self.records: list[LogRecord] = []
        self.events: list[ev.Event] = []
        self.handle_times = {name: HandleTimes() for name in self.queues}
        self.hold_times = {name: AverageHoldTime() for name in self.queues}
        self._sequence = itertools.count()
        self._pending: list[Action] = []

    # -- queries ----------------------------------------------------------------

    def waiting(self, queue: str) -> list[Caller]:
        """Callers of ``queue`` not yet connected, in queue order."""
        found = [
            c
            for c in self.callers.values()
            if c.queue == queue
            and c.state in (CallerState.WAITING, CallerState.OFFERED)
        ]
        return sorted(found, key=Caller.order)

    def queued(self, queue: str) -> list[Caller]:
        """Callers of ``queue`` still without an agent (virtual ones included)."""
        return [c for c in self.waiting(queue) if c.state is CallerState.WAITING]

    def position(self, caller_id: str) -> int:
        """1-based position among callers without an agent (virtual ones count).

        Callers already offered to an agent are not ahead: their agent is taken.
        """
        caller = self._caller(caller_id)
        key = caller.order()
        queue = caller.queue
        waiting = CallerState.WAITING
        # one pass, no sort: every waiting caller announces its position every
        # ``announce_interval``, 750 of them at the busy hour
        return 1 + sum(
            1
            for c in self.callers.values()
            if c.queue == queue and c.state is waiting and c.order() < key
        )

    def members(self, queue: str) -> list[Agent]:
        return [a for a in self.agents.values() if a.penalty(queue) is not None]

    def load(self, queue: str, now: float) -> QueueLoad:
        """The queue's load as admission sees it, for a caller arriving at ``now``."""
        settings = self._queue(queue)
        members = self.members(queue)
        logged_in = [a for a in members if a.status is not AgentStatus.LOGGED_OUT]
        staffed = [a for a in members if a.status is AgentStatus.AVAILABLE]
        waiting = len(self.queued(queue))
        return QueueLoad(
            waiting=waiting,
            logged_in=len(logged_in),
            staffed=len(staffed),
            expected_wait=self.expected_wait(queue, waiting + 1, now),
            average_speed_of_answer=self.hold_times[queue].estimate,
            join_empty=settings.join_empty,
        )

    def expected_wait(self, queue: str, position: int, now: float) -> float | None:
        """EWT for ``position`` in ``queue`` (:mod:`acd.estimate`)."""
        members = self.members(queue)
        staffed = [a for a in members if a.status is AgentStatus.AVAILABLE]
        free = sum(1 for a in staffed if a.free(now))
        return expected_wait(
            position=position,
            staffed=len(staffed),
            free=free,
            handle_time=self.handle_times[queue].mean,
        )

    def admission(self, queue: str, now: float, local: datetime) -> AdmissionDecision:
        """Whether a new caller is admitted to ``queue`` (:mod:`acd.admission`)."""
        rules = [r for r in self.rules if r.queue == queue]
        return decide(rules, self.load(queue, now), local)

    # -- callers ----------------------------------------------------------------

    def enter(
        self,
        caller_id: str,
        queue: str,
        now: float,
        *,
        priority: int = 0,
        skills: Mapping[str, int] | None = None,
        language: str = "",
        number: str = "",
        arrival: float | None = None,
        callback_number: str | None = None,
        calling_agent: str = "",
    ) -> Caller:
        """Put a caller in ``queue`` (admission is the caller's business first).

        :param arrival: the time of their first queue, when moved from another one.
        :param callback_number: enter directly as a virtual (callback) caller.
        :param calling_agent: the agent whose phone is calling: never offered it.
        """
        settings = self._queue(queue)
        if caller_id in self.callers:
            raise AcdError(f"caller {caller_id} is already in queue")
        required = dict(settings.skills)
        required.update(skills or {})
        caller = Caller(
            caller_id=caller_id,
            queue=queue,
            arrival=now if arrival is None else arrival,
            entered=now,
            sequence=next(self._sequence),
            priority=priority,
            skills=required,
            language=language,
            number=number,
            callback_number=callback_number,
            calling_agent=calling_agent,
        )
        self.callers[caller_id] = caller
        self._record(QueueEvent.ENTER, now, caller, detail=number)
        self.events.append(
            ev.CallerEntered(
                at=now,
                queue=queue,
                caller_id=caller_id,
                number=number,
                priority=priority,
                position=self.position(caller_id),
            )
        )
        if callback_number is not None:
            self._record(
                QueueEvent.CALLBACK_REQUESTED, now, caller, detail=callback_number
            )
        return caller

    def refuse(self, caller_id: str, queue: str, now: float, reason: str) -> None:
        """Log a caller turned away by admission control (enter, then its outcome)."""
        self.enter(caller_id, queue, now)
        self._leave(self.callers[caller_id], LeaveReason.ADMISSION, now, reason)

    def request_callback(self, caller_id: str, number: str, now: float) -> None:
        """A waiting caller accepted a callback: they stay in line as a virtual caller."""
        caller = self._caller(caller_id)
        if caller.state is not CallerState.WAITING or caller.virtual:
            raise AcdError(f"caller {caller_id} cannot take a callback now")
        caller.callback_number = number
        self._record(QueueEvent.CALLBACK_REQUESTED, now, caller, detail=number)

    def abandon(self, caller_id: str, now: float) -> None:
        """The caller hung up (a connected caller's hang-up is :meth:`hangup`)."""
        caller = self.callers.get(caller_id)
        if caller is None or caller.virtual:
            return  # a virtual caller's live call is gone already, by design
        if caller.state is CallerState.CONNECTED:
            self.hangup(caller_id, now)
            return
        self._release_all(caller, now)
        self._leave(caller, LeaveReason.ABANDONED, now)

    def leave(
        self, caller_id: str, reason: LeaveReason, now: float, destination: str = ""
    ) -> None:
        """The caller left waiting (exit key, timeout, transfer) without an agent."""
        caller = self._caller(caller_id)
        if caller.state is CallerState.CONNECTED:
            raise AcdError(f"caller {caller_id} is connected")
        self._release_all(caller, now)
        self._leave(caller, reason, now, destination)

    def transfer(self, caller_id: str, queue: str, now: float) -> Caller:
        """Move a waiting caller to ``queue``, keeping their arrival time."""
        caller = self._caller(caller_id)
        self._queue(queue)
        self.leave(caller_id, LeaveReason.TRANSFERRED, now, queue)
        return self.enter(
            caller_id,
            queue,
            now,
            priority=caller.priority,
            skills=caller.skills,
            language=caller.language,
            number=caller.number,
            arrival=caller.arrival,
            callback_number=caller.callback_number,
            calling_agent=caller.calling_agent,
        )

    # -- offers -----------------------------------------------------------------

    def ringing(self, caller_id: str, agent_name: str, now: float) -> None:
        agent = self._agent(agent_name)
        if agent.call == caller_id and agent.state is AgentState.RESERVED:
            self._set_state(agent, AgentState.RINGING, now)

    def answered(self, caller_id: str, agent_name: str, now: float) -> bool:
        """The agent answered; False if the offer is stale (hang that leg up)."""
        caller = self.callers.get(caller_id)
        agent = self._agent(agent_name)
        if (
            caller is None
            or caller.state is not CallerState.OFFERED
            or agent_name not in caller.agents
            or agent.call != caller_id
        ):
            return False
        for other in caller.agents:
            if other != agent_name:
                self._release(self.agents[other], now)
        caller.agents = (agent_name,)
        caller.state = CallerState.CONNECTED
        caller.connected_at = now
        self._set_state(agent, AgentState.TALKING, now)
        wait = caller.waited(now)
        self.hold_times[caller.queue].add(wait)
        self._record(
            OUTCOME_OF[
                LeaveReason.CALLBACK_COMPLETED
                if caller.virtual
                else LeaveReason.CONNECTED
            ],
            now,
            caller,
            agent=agent_name,
            wait=wait,
        )
        self.events.append(
            ev.CallerConnected(
                at=now,
                queue=caller.queue,
                caller_id=caller_id,
                agent=agent_name,
                wait=wait,
            )
        )
        return True

    def no_answer(
        self, caller_id: str, agent_name: str, now: float, *, status: int = 480
    ) -> None:
        """The offer to ``agent_name`` failed: ring-no-answer (408/480) or busy.

        Ring-no-answer puts the agent on break ("no answer"), except in a ring-all
        queue; busy (486) or unreachable agents are skipped for
        :data:`SKIP_SECONDS`. The caller goes back to the head of their place.
        """
        caller = self.callers.get(caller_id)
        agent = self._agent(agent_name)
        if caller is None or agent.call != caller_id:
            return
        settings = self.queues[caller.queue]
        ring_all = self.strategies[settings.strategy].ring_all
        self._release(agent, now)
        if status in (408, 480) and not ring_all:
            self._set_status(agent, AgentStatus.ON_BREAK, now, NO_ANSWER)
        else:
            agent.skip_until = now + SKIP_SECONDS
        self._record(
            QueueEvent.NO_ANSWER,
            now,
            caller,
            agent=agent_name,
            wait=caller.waited(now),
            detail=str(status),
        )
        caller.agents = tuple(a for a in caller.agents if a != agent_name)
        if not caller.agents and caller.state is CallerState.OFFERED:
            caller.state = CallerState.WAITING

    def callback_failed(self, caller_id: str, now: float, detail: str = "") -> None:
        """Dialling a virtual caller's customer failed: retry later or give up."""
        caller = self._caller(caller_id)
        settings = self.queues[caller.queue]
        self._release_all(caller, now)
        caller.attempts += 1
        self._record(
            QueueEvent.CALLBACK_ATTEMPT, now, caller, detail=detail or "no answer"
        )
        if caller.attempts >= settings.callback_retries:
            self._leave(caller, LeaveReason.CALLBACK_FAILED, now, detail)
            return
        caller.state = CallerState.WAITING
        caller.not_before = now + settings.callback_retry_interval

    def hangup(self, caller_id: str, now: float) -> None:
        """A connected call ended: the agent goes to wrap-up."""
        caller = self._caller(caller_id)
        if caller.state is not CallerState.CONNECTED:
            self.abandon(caller_id, now)
            return
        agent = self.agents[caller.agents[0]]
        settings = self.queues[caller.queue]
        wrap_up = agent.wrap_up if agent.wrap_up is not None else settings.wrap_up
        talk = max(0.0, now - caller.connected_at)
        agent.calls_taken += 1
        agent.talk_time += talk
        agent.call = None
        agent.wrap_up_until = now + wrap_up
        agent.idle_since = now + wrap_up
        self._set_state(agent, AgentState.WRAP_UP if wrap_up else AgentState.IDLE, now)
        self.handle_times[caller.queue].add(talk + wrap_up)
        self._record(
            QueueEvent.COMPLETE,
            now,
            caller,
            agent=agent.name,
            talk=talk,
            wrap_up=wrap_up,
        )
        caller.state = CallerState.GONE
        del self.callers[caller_id]

    # -- agents -----------------------------------------------------------------

    def login(self, name: str, now: float) -> None:
        agent = self._agent(name)
        if agent.status is AgentStatus.LOGGED_OUT:
            self._record(QueueEvent.AGENT_LOGIN, now, agent=name)
            agent.idle_since = now
        elif agent.status is AgentStatus.ON_BREAK:
            self._record(QueueEvent.AGENT_UNPAUSE, now, agent=name)
        self._set_status(agent, AgentStatus.AVAILABLE, now, None)

    def logout(self, name: str, now: float) -> None:
        agent = self._agent(name)
        if agent.status is not AgentStatus.LOGGED_OUT:
            self._record(QueueEvent.AGENT_LOGOUT, now, agent=name)
            self._set_status(agent, AgentStatus.LOGGED_OUT, now, None)

    def pause(self, name: str, reason: str, now: float) -> None:
        agent = self._agent(name)
        if agent.status is AgentStatus.LOGGED_OUT:
            raise AcdError(f"agent {name} is logged out")
        self._set_status(agent, AgentStatus.ON_BREAK, now, reason)

    def unpause(self, name: str, now: float) -> None:
        agent = self._agent(name)
        if agent.status is AgentStatus.LOGGED_OUT:
            raise AcdError(f"agent {name} is logged out")
        self.login(name, now)

    def registered(self, user: str, registered: bool, now: float) -> None:
        """A SIP user's phone registered or lost its last registration."""
        for agent in self.agents.values():
            if user not in agent.users:
                continue
            agent.registered = registered
            if (
                registered
                and agent.auto_login
                and agent.status is AgentStatus.LOGGED_OUT
            ):
                self.login(agent.name, now)

    # -- the decision step ------------------------------------------------------

    def poll(self, now: float) -> list[Action]:
        """Time out callers, match waiting callers to free agents; the actions."""
        for agent in self.agents.values():
            self._settle(agent, now)
        for caller in list(self.callers.values()):
            settings = self.queues[caller.queue]
            if (
                caller.state is CallerState.WAITING
                and not caller.virtual
                and settings.max_wait > 0
                and caller.waited(now) >= settings.max_wait
            ):
                self._leave(caller, LeaveReason.TIMEOUT, now)
                self._pending.append(
                    Leave(
                        caller_id=caller.caller_id,
                        queue=caller.queue,
                        reason=LeaveReason.TIMEOUT,
                        destination=settings.exit_destination,
                        arrival=caller.arrival,
                    )
                )
        order = sorted(
            (
                c
                for c in self.callers.values()
                if c.state is CallerState.WAITING and now >= c.not_before
            ),
            key=Caller.order,
        )
        # The free agents once per poll, not once per waiting caller: at the busy
        # hour 750 callers wait for 250 busy agents, and a poll with nobody free
        # must cost nothing per caller.
        free = [agent for agent in self.agents.values() if agent.free(now)]
        for caller in order:
            if not free:
                break
            offer = self._match(caller, now, free)
            if offer is not None:
                self._pending.append(offer)
                free = [agent for agent in free if agent.call is None]
        actions, self._pending = self._pending, []
        return actions

    def next_deadline(self, now: float) -> float | None:
        """When :meth:`poll` must run again without input (None: only on input)."""
        times: list[float] = []
        for agent in self.agents.values():
            if agent.state is AgentState.WRAP_UP:
                times.append(agent.wrap_up_until)
            if agent.skip_until > now:
                times.append(agent.skip_until)
        for caller in self.callers.values():
            if caller.state is not CallerState.WAITING:
                continue
            settings = self.queues[caller.queue]
            if caller.not_before > now:
                times.append(caller.not_before)
            if settings.max_wait > 0 and not caller.virtual:
                times.append(caller.entered + settings.max_wait)
            for step in (settings.widen_after, settings.tier_after):
                if step > 0:
                    times.append(
                        caller.entered + step * (caller.waited(now) // step + 1)
                    )
        return min(times) if times else None

    def _match(self, caller: Caller, now: float, free: list[Agent]) -> Offer | None:
        settings = self.queues[caller.queue]
        strategy = self.strategies[settings.strategy]
        call = WaitingCall(
            caller_id=caller.caller_id,
            queue=caller.queue,
            priority=caller.priority,
            waited=caller.waited(now),
            skills=caller.skills,
            language=caller.language,
            widen_after=settings.widen_after,
            tier_after=settings.tier_after,
        )
        candidates = []
        for agent in free:
            penalty = agent.penalty(caller.queue)
            if penalty is None or agent.name == caller.calling_agent:
                continue
            candidate = Candidate(
                name=agent.name,
                penalty=penalty,
                skills=agent.skills,
                idle_since=agent.idle_since,
                last_offered=agent.last_offered,
                calls_taken=agent.calls_taken,
                talk_time=agent.talk_time,
            )
            if strategy.eligible(call, candidate, now):
                candidates.append(candidate)
        if not candidates:
            return None
        ranked = sorted(candidates, key=lambda c: (strategy.rank(call, c, now), c.name))
        if strategy.ring_all:
            best = strategy.rank(call, ranked[0], now)
            chosen = [c for c in ranked if strategy.rank(call, c, now) == best]
        else:
            chosen = ranked[:1]
        agents = [self.agents[c.name] for c in chosen]
        for agent in agents:
            agent.call = caller.caller_id
            agent.last_offered = now
            self._set_state(agent, AgentState.RESERVED, now)
            self._record(
                QueueEvent.OFFERED,
                now,
                caller,
                agent=agent.name,
                wait=caller.waited(now),
            )
        caller.state = CallerState.OFFERED
        caller.agents = tuple(a.name for a in agents)
        caller.offered_at = now
        return Offer(
            caller_id=caller.caller_id,
            queue=caller.queue,
            agents=caller.agents,
            users=tuple(a.users for a in agents),
            ring_timeout=settings.ring_timeout,
            callback_number=caller.callback_number,
        )

    # -- invariants -------------------------------------------------------------

    def violations(self) -> list[str]:
        """Broken invariants, in words (empty when all hold)."""
        problems = []
        for caller in self.callers.values():
            if caller.state is CallerState.CONNECTED and len(caller.agents) != 1:
                problems.append(
                    f"caller {caller.caller_id} connected to {caller.agents}"
                )
            if caller.state is CallerState.WAITING and caller.agents:
                problems.append(f"waiting caller {caller.caller_id} holds agents")
            if caller.state is CallerState.OFFERED and not caller.agents:
                problems.append(f"offered caller {caller.caller_id} has no agent")
            for name in caller.agents:
                if self.agents[name].call != caller.caller_id:
                    problems.append(f"{caller.caller_id} lists {name}, who lacks it")
        for agent in self.agents.values():
            busy = agent.state in BUSY_STATES
            if busy != (agent.call is not None):
                problems.append(
                    f"agent {agent.name} is {agent.state.value} with call {agent.call}"
                )
            if agent.call is not None:
                held = self.callers.get(agent.call)
                if held is None or agent.name not in held.agents:
                    problems.append(f"agent {agent.name} holds a call nobody has")
        return problems

    # -- helpers ----------------------------------------------------------------

    def _agent(self, name: str) -> Agent:
        try:
            return self.agents[name]
        except KeyError:
            raise AcdError(f"unknown agent {name!r}") from None

    def _caller(self, caller_id: str) -> Caller:
        try:
            return self.callers[caller_id]
        except KeyError:
            raise AcdError(f"unknown caller {caller_id!r}") from None

    def _queue(self, name: str) -> QueueSettings:
        try:
            return self.queues[name]
        except KeyError:
            raise AcdError(f"unknown queue {name!r}") from None

    def _leave(
        self, caller: Caller, reason: LeaveReason, now: float, detail: str = ""
    ) -> None:
        caller.state = CallerState.GONE
        self.callers.pop(caller.caller_id, None)
        self._record(
            OUTCOME_OF[reason], now, caller, wait=caller.waited(now), detail=detail
        )
        self.events.append(
            ev.CallerLeft(
                at=now,
                queue=caller.queue,
                caller_id=caller.caller_id,
                reason=reason.value,
                wait=caller.waited(now),
            )
        )

    def _record(
        self,
        event: QueueEvent,
        now: float,
        caller: Caller | None = None,
        **fields: object,
    ) -> None:
        if caller is not None:
            fields.setdefault("queue", caller.queue)
            fields.setdefault("caller_id", caller.caller_id)
        self.records.append(LogRecord(at=now, event=event, **fields))  # type: ignore[arg-type]

    def _release(self, agent: Agent, now: float) -> None:
        """Free an agent whose offer ended without a call."""
        agent.call = None
        self._set_state(agent, AgentState.IDLE, now)

    def _release_all(self, caller: Caller, now: float) -> None:
        for name in caller.agents:
            agent = self.agents[name]
            if agent.call == caller.caller_id:
                self._release(agent, now)
        caller.agents = ()

    def _settle(self, agent: Agent, now: float) -> None:
        before = agent.state
        agent.settle(now)
        if agent.state is not before:
            self.events.append(
                ev.AgentStateChanged(
                    at=now, agent=agent.name, state=agent.state.value, call_id=""
                )
            )

    def _set_state(self, agent: Agent, state: AgentState, now: float) -> None:
        if agent.state is state:
            return
        agent.set_state(state, now)
        self.events.append(
            ev.AgentStateChanged(
                at=now, agent=agent.name, state=state.value, call_id=agent.call or ""
            )
        )

    def _set_status(
        self, agent: Agent, status: AgentStatus, now: float, reason: str | None
    ) -> None:
        was_break = agent.status is AgentStatus.ON_BREAK
        if status is AgentStatus.ON_BREAK and not was_break:
            self._record(
                QueueEvent.AGENT_PAUSE, now, agent=agent.name, detail=reason or ""
            )
        agent.set_status(status, now, reason)
        self.events.append(
            ev.AgentStatusChanged(
                at=now, agent=agent.name, status=status.value, reason=reason or ""
            )
        )
