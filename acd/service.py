"""The ACD service: runs the distributor over live calls (asyncio at the rim).

Theory of operation
-------------------
:class:`Acd` owns one :class:`~acd.distributor.Distributor` and feeds it the world:
callers arrive through :meth:`Acd.enqueue` (the ``queue`` dialplan app, or the IVR's
hook), phones register and unregister (``registration.*`` on the bus), agents use
feature codes (the ``agent`` app) or the CLI (rows in ``acd_commands``). After every
input the service wakes its loop, which calls ``poll(now)`` and executes the actions:
an :class:`~acd.distributor.Offer` becomes a task that rings the agent with
:meth:`CallSession.bridge` and reports answer, no answer or hang-up back; a
:class:`~acd.distributor.Leave` resolves the waiting caller's future so that their
coroutine sends them on (exit destination) or says goodbye. The loop sleeps until the
distributor's next deadline (at most :data:`SNAPSHOT_INTERVAL`), then flushes the
queue log and the live snapshot to SQLite and picks up CLI commands.

While waiting a caller hears music on hold (a WAV if the queue names one, else a
generated ring-back cadence) interrupted every ``announce_interval`` seconds by their
position and expected wait, from the announcer given by the wiring (prompts and
spoken numbers of the IVR when present, a short beep otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pyee import EventEmitter

from acd.admission import AdmissionAction
from acd.distributor import AcdError, Distributor, Leave, Offer
from acd.log import COMMAND_ACTIONS, QueueLog, QueueSnapshot
from acd.queue import LeaveReason
from acd.records import LogRecord
from media.commands import MediaError, PlayItem, Prompt, Silence, Tone, ToneName
from switch.dialplan import ToApp, ToUser
from switch.events import publish
from switch.session import BridgeResult, CallSession, Hangup

logger = logging.getLogger(__name__)

#: Seconds between queue log / snapshot flushes and CLI command checks.
SNAPSHOT_INTERVAL = 1.0
#: Seconds a caller has to press 1 for a callback.
CALLBACK_DIGIT_TIMEOUT = 8.0
#: Tries to confirm the callback number before the offer lapses.
CONFIRM_ATTEMPTS = 3
#: Seconds for each digit of another callback number; its length bounds (E.164).
NUMBER_DIGIT_TIMEOUT = 6.0
NUMBER_MIN_DIGITS = 3
NUMBER_MAX_DIGITS = 15
#: The break reason used by the *43 feature code and ``ccswitch agent break``.
DEFAULT_BREAK = "break"
#: Feature code actions (the ``agent`` app's ``action`` argument).
AGENT_ACTIONS = COMMAND_ACTIONS

#: Builds what a caller hears as their announcement: (position, EWT or None,
#: language) -> play items. Empty means nothing is announced.
Announcer = Callable[[int, float | None, str], Sequence[PlayItem]]
#: Builds the callback offer ("press 1") and the goodbye for a language.
PromptSet = Callable[[str, str], Sequence[PlayItem]]
#: Speaks a phone number (digits) in a language.
NumberSpeaker = Callable[[str, str], Sequence[PlayItem]]


class OriginatedCall(Protocol):
    """A callback in progress: the customer and the agent's phone are connected."""

    @property
    def user(self) -> str:
        """The agent's SIP user who answered."""
        ...

    async def wait_hangup(self) -> None: ...


#: Places a callback: (customer number, trunk, agent users to ring, ring timeout)
#: -> the connected call, or the SIP status of the failed attempt. The switch's
#: (ccswitch/acd_runtime.py) rings the reserved agent first, then the customer
#: through the trunk, and bridges them.
Originate = Callable[
    [str, str, Sequence[str], float], Awaitable["OriginatedCall | int"]
]


def beep_announcer(position: int, ewt: float | None, language: str) -> list[PlayItem]:
    """The fallback announcement when no prompts exist: one short beep per call."""
    # The wiring (ccswitch/acd_runtime.py) passes one speaking position and wait
    # from the IVR's prompts when the files are there.
    return [Tone(name=ToneName.BEEP, duration_ms=200), Silence(duration_ms=300)]


def tone_prompts(name: str, language: str) -> list[PlayItem]:
    """The fallback for named prompts: a beep for offers, silence otherwise."""
    if name == "press_1_callback":
        return [Tone(name=ToneName.BEEP, duration_ms=300)]
    return [Silence(duration_ms=200)]


def beep_number(number: str, language: str) -> list[PlayItem]:
    """The fallback for a spoken number when no prompts exist: a beep per digit."""
    return [
        item
        for _ in number
        for item in (Tone(name=ToneName.BEEP, duration_ms=120), Silence(duration_ms=80))
    ]


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueMedia:
    """What a queue plays: music on hold (a WAV path or "" for ring-back)."""

    music: str = ""
    callback_trunk: str = ""


class Acd:
    """The ACD service; see the module doc.

    :param distributor: the decision core (already holding queues and agents).
    :param bus: the switch's event bus (registration events in, ACD events out).
    :param log: the queue log on the store, or None (tests without SQLite).
    :param is_registered: whether a SIP user has a reachable registration now.
    :param media: per-queue media settings.
    :param announcer: builds position/EWT announcements.
    :param prompts: builds named prompts (``press_1_callback``, ``goodbye``...).
    :param say_number: speaks a phone number digit by digit (callback confirmation).
    :param originate: places callbacks; None until the switch can originate calls.
    :param clock: wall-clock seconds (the queue log's time base).
    :param local_time: the local time for admission schedules.
    """

    def __init__(
        self,
        *,
        distributor: Distributor,
        bus: EventEmitter | None = None,
        log: QueueLog | None = None,
        is_registered: Callable[[str], bool] = lambda user: False,
        media: Mapping[str, QueueMedia] | None = None,
        announcer: Announcer = beep_announcer,
        prompts: PromptSet = tone_prompts,
        say_number: NumberSpeaker = beep_number,
        originate: Originate | None = None,
        clock: Callable[[], float] = time.time,
        local_time: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.distributor = distributor
        self.bus = bus
        self.log = log
        self.is_registered = is_registered
        self.media = dict(media or {})
        self.announcer = announcer
        self.prompts = prompts
        self.say_number = say_number
        self.originate = originate
        self.clock = clock
        self.local_time = local_time
        self._sessions: dict[str, CallSession] = {}
        self._waiters: dict[str, asyncio.Future[Leave | str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._unflushed: list[LogRecord] = []
        # The distributor's own time (bench/acd.py reads the INFO line at stop).
        self.decision_seconds = 0.0
        self.decisions = 0

    # -- life cycle -------------------------------------------------------------

    async def start(self) -> None:
        now = self.clock()
        for agent in self.distributor.agents.values():
            for user in agent.users:
                if self.is_registered(user):
                    self.distributor.registered(user, True, now)
        if self.bus is not None:
            self.bus.on("registration.added", self._on_registration)
            self.bus.on("registration.removed", self._on_registration)
            self.bus.on("registration.reachability", self._on_registration)
        self._loop_task = asyncio.create_task(self._run(), name="acd")

    async def stop(self) -> None:
        if self.bus is not None:
            for name in ("registration.added", "registration.removed"):
                with contextlib.suppress(KeyError):
                    self.bus.remove_listener(name, self._on_registration)
            with contextlib.suppress(KeyError):
                self.bus.remove_listener(
                    "registration.reachability", self._on_registration
                )
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        for task in list(self._tasks):
            task.cancel()
        await self._flush()
        logger.info(
            "acd decisions: %d steps, %.1f us per step",
            self.decisions,
            1e6 * self.decision_seconds / max(self.decisions, 1),
        )

    def wake(self) -> None:
        """Run a decision step soon (after any input)."""
        self._wake.set()

    # -- callers ----------------------------------------------------------------

    async def enqueue(
        self,
        session: CallSession,
        queue: str,
        *,
        priority: int = 0,
        skills: Mapping[str, int] | None = None,
        language: str = "",
        arrival: float | None = None,
        tell_refused: bool = True,
    ) -> str:
        """Put a live caller in ``queue`` until an agent answers or they leave.

        The entry point for the dialplan ``queue`` app and the IVR. Returns the
        outcome: ``connect`` (the caller is bridged to an agent; the call goes on
        after this returns), ``callback_requested``, or a queue log outcome value
        (``abandon``, ``exit_admission``, ``exit_timeout``, ``exit_key``).
        ``arrival`` is the time of the caller's first queue when sent on from one.
        ``tell_refused=False`` leaves a caller refused with "call later" to the
        caller of this (the IVR's fallback branch) instead of saying so and hanging up.
        """
        acd = self.distributor
        if queue not in acd.queues:
            raise AcdError(f"unknown queue {queue!r}")
        caller_id = session.call.call_id
        decision = acd.admission(queue, self.clock(), self.local_time())
        if decision.action is not AdmissionAction.ADMIT:
            return await self._not_admitted(
                session, queue, decision.action, decision, tell_refused=tell_refused
            )
        calling = session.call.caller
        own_agent = self.agent_of_user(calling.name) if calling.kind == "user" else None
        acd.enter(
            caller_id,
            queue,
            self.clock(),
            priority=priority,
            skills=skills,
            language=language,
            number=session.caller,
            arrival=arrival,
            calling_agent=own_agent or "",
        )
        future: asyncio.Future[Leave | str] = asyncio.get_running_loop().create_future()
        self._waiters[caller_id] = future
        self._sessions[caller_id] = session
        self.wake()
        hold: asyncio.Task[None] | None = None
        try:
            await session.answer()
            hold = asyncio.create_task(self._hold(session, caller_id, queue, language))
            outcome = await self._await_outcome(session, future)
        except Hangup:
            outcome = LeaveReason.ABANDONED.value
            acd.abandon(caller_id, self.clock())
            self.wake()
        finally:
            if hold is not None:
                hold.cancel()
            self._waiters.pop(caller_id, None)
        if outcome != "connect":  # a connected call's offer task lets go of it
            self._sessions.pop(caller_id, None)
        if isinstance(outcome, Leave):
            return await self._left(session, outcome)
        return outcome

    async def _await_outcome(
        self, session: CallSession, future: asyncio.Future[Leave | str]
    ) -> Leave | str:
        ended = asyncio.ensure_future(session.call.ended_event.wait())
        pending: set[asyncio.Future[Any]] = {future, ended}
        try:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        if future in done:
            return future.result()
        raise Hangup(session.call.call_id)

    async def _hold(
        self, session: CallSession, caller_id: str, queue: str, language: str
    ) -> None:
        """Music on hold, the exit key and callback key, and announcements."""
        settings = self.distributor.queues[queue]
        media = self.media.get(queue, QueueMedia())
        music: list[PlayItem] = (
            [Prompt(path=media.music)]
            if media.music
            else [Tone(name=ToneName.RINGBACK, duration_ms=4000)]
        )
        interval = settings.announce_interval or None
        pending: set[asyncio.Future[object]] = set()
        try:
            while True:
                play = asyncio.ensure_future(session.play(music, loop=True))
                key = asyncio.ensure_future(session.digits.get())
                pending = {play, key}  # type: ignore[arg-type]
                done, _ = await asyncio.wait(
                    pending, timeout=interval, return_when=asyncio.FIRST_COMPLETED
                )
                session.stop_playing()
                for future in pending:
                    future.cancel()
                if key in done:
                    if await self._key(session, caller_id, queue, key.result()):
                        return
                    continue
                if play in done and play.exception() is not None:
                    logger.warning(
                        "queue %s: music on hold: %s", queue, play.exception()
                    )
                    music = [Tone(name=ToneName.RINGBACK, duration_ms=4000)]
                if caller_id not in self.distributor.callers:
                    return
                position = self.distributor.position(caller_id)
                ewt = self.distributor.expected_wait(queue, position, self.clock())
                items = list(self.announcer(position, ewt, language))
                if media.callback_trunk:  # press 1 any time to be called back
                    items += self.prompts("press_1_callback", language)
                if items:
                    try:
                        await session.play(items)
                    except MediaError as exc:  # a prompt file went missing
                        logger.warning("queue %s: announcement failed: %s", queue, exc)
        except (Hangup, asyncio.CancelledError):
            for future in pending:
                future.cancel()
            if not session.call.ended:
                session.stop_playing()

    async def _key(
        self, session: CallSession, caller_id: str, queue: str, digit: str
    ) -> bool:
        """A key pressed while waiting; True when the caller is leaving the queue."""
        settings = self.distributor.queues[queue]
        caller = self.distributor.callers.get(caller_id)
        if caller is None or caller.state.value != "waiting":
            return False
        now = self.clock()
        if settings.exit_key and digit == settings.exit_key:
            self.distributor.leave(
                caller_id, LeaveReason.EXIT_KEY, now, settings.exit_destination
            )
            self._resolve(
                caller_id,
                Leave(
                    caller_id=caller_id,
                    queue=queue,
                    reason=LeaveReason.EXIT_KEY,
                    destination=settings.exit_destination,
                    arrival=caller.arrival,
                ),
            )
            return True
        if digit == "1" and self.media.get(queue, QueueMedia()).callback_trunk:
            # TODO: the caller stays eligible while confirming; an agent freed
            # meanwhile is offered the call and the confirmation is cut short.
            number = await self._callback_number(session, caller.language)
            still = self.distributor.callers.get(caller_id)
            if number is None or still is None or still.state.value != "waiting":
                return False  # not confirmed (or connected meanwhile): goes on waiting
            self.distributor.request_callback(caller_id, number, self.clock())
            self._resolve(caller_id, "callback_requested")
            await session.play(self.prompts("goodbye", caller.language))
            await session.hangup()
            return True
        return False

    async def _callback_number(self, session: CallSession, language: str) -> str | None:
        """The number to call back: the caller's own once confirmed, or one keyed in.

        "We will call you back on <number>: press 1 if it is right, 2 to enter
        another"; another number is keyed in and ends with # (or a pause), and is
        then read back for confirmation too. None when nothing was confirmed.
        """
        number = session.caller
        for _ in range(CONFIRM_ATTEMPTS):
            items = [
                *self.prompts("callback_number", language),
                *self.say_number(number, language),
                *self.prompts("confirm_number", language),
            ]
            await session.play(items, stop_on_dtmf=True)
            key = await session.collect_digits(
                max_digits=1, timeout=CALLBACK_DIGIT_TIMEOUT
            )
            if key == "1" and number:
                return number
            if key != "2":
                continue
            await session.play(
                self.prompts("enter_number", language), stop_on_dtmf=True
            )
            entered = await session.collect_digits(
                min_digits=NUMBER_MIN_DIGITS,
                max_digits=NUMBER_MAX_DIGITS,
                terminator="#",
                timeout=NUMBER_DIGIT_TIMEOUT,
            )
            if len(entered) >= NUMBER_MIN_DIGITS and entered.isdigit():
                number = entered
        return None

    async def _not_admitted(
        self,
        session: CallSession,
        queue: str,
        action: AdmissionAction,
        decision: object,
        *,
        tell_refused: bool = True,
    ) -> str:
        acd = self.distributor
        caller_id = session.call.call_id
        reason = getattr(decision, "reason", "")
        destination = getattr(decision, "destination", "")
        logger.info("queue %s: caller %s not admitted (%s)", queue, caller_id, reason)
        if (
            action is AdmissionAction.CALLBACK
            and self.media.get(queue, QueueMedia()).callback_trunk
        ):
            await session.answer()
            await session.play(self.prompts("press_1_callback", ""))
            digit = await session.collect_digits(
                max_digits=1, timeout=CALLBACK_DIGIT_TIMEOUT
            )
            number = await self._callback_number(session, "") if digit == "1" else None
            if number is not None:
                acd.enter(
                    caller_id,
                    queue,
                    self.clock(),
                    number=session.caller,
                    callback_number=number,
                )
                self.wake()
                await session.play(self.prompts("goodbye", ""))
                await session.hangup()
                return "callback_requested"
        acd.refuse(caller_id, queue, self.clock(), reason)
        self.wake()
        if action is AdmissionAction.OVERFLOW and destination:
            return await self._send(session, destination)
        if not tell_refused:
            return LeaveReason.ADMISSION.value
        await session.answer()
        await session.play(self.prompts("agents_busy", ""))
        await session.hangup()
        return LeaveReason.ADMISSION.value

    async def _left(self, session: CallSession, leave: Leave) -> str:
        if leave.destination:
            return await self._send(session, leave.destination, leave.arrival)
        with contextlib.suppress(Hangup):
            await session.play(self.prompts("goodbye", ""))
            await session.hangup()
        return leave.reason.value

    async def _send(
        self, session: CallSession, destination: str, arrival: float | None = None
    ) -> str:
        """Send a caller on to ``queue:NAME`` or ``user:NAME`` (exit, overflow)."""
        kind, _, target = destination.partition(":")
        if kind == "queue" and target in self.distributor.queues:
            return await self.enqueue(session, target, arrival=arrival)
        if kind == "user" and target:
            result = await session.bridge(ToUser(user=target))
            return "connect" if result.answered else "exit_failed"
        # TODO: other destinations (ivr:, trunk:) need the dialplan's router here.
        logger.warning("cannot send a queue caller to %s", destination)
        await session.hangup()
        return "exit_failed"

    def _resolve(self, caller_id: str, outcome: Leave | str) -> None:
        future = self._waiters.get(caller_id)
        if future is not None and not future.done():
            future.set_result(outcome)

    # -- offers -----------------------------------------------------------------

    async def _offer(self, offer: Offer) -> None:
        acd = self.distributor
        session = self._sessions.get(offer.caller_id)
        if offer.callback_number is not None:
            await self._callback(offer)
            return
        if session is None:  # the caller's coroutine is gone: nobody to connect
            acd.abandon(offer.caller_id, self.clock())
            self.wake()
            return
        for agent in offer.agents:
            acd.ringing(offer.caller_id, agent, self.clock())
        try:
            result, answered_by = await self._ring(session, offer)
        except Hangup:
            result, answered_by = BridgeResult(answered=False, status=487), None
        if session.call.ended and answered_by is None:
            # The caller hung up while the agent rang (the ring then ends 487):
            # the caller abandoned, the agent is not to blame.
            acd.abandon(offer.caller_id, self.clock())
            self.wake()
            return
        now = self.clock()
        if not result.answered or answered_by is None:
            for name in offer.agents:
                acd.no_answer(offer.caller_id, name, now, status=result.status)
            self.wake()
            return
        if not acd.answered(offer.caller_id, answered_by, now):
            logger.warning("stale answer from %s for %s", answered_by, offer.caller_id)
        session.stop_playing()
        self._resolve(offer.caller_id, "connect")
        self.wake()
        await session.wait_hangup()
        self._sessions.pop(offer.caller_id, None)
        if offer.caller_id in acd.callers:
            acd.hangup(offer.caller_id, self.clock())
        self.wake()

    async def _ring(
        self, session: CallSession, offer: Offer
    ) -> tuple[BridgeResult, str | None]:
        """Ring the offer's agents, each on every registered user (desk phone and
        softphone ring together); the first to answer wins. Returns who answered."""
        owner: dict[str, str] = {}  # SIP user -> agent
        for agent, agent_users in zip(offer.agents, offer.users, strict=True):
            registered = [u for u in agent_users if self.is_registered(u)]
            for user in registered or agent_users[:1]:
                owner.setdefault(user, agent)
        users = list(owner)
        if len(users) == 1:
            result = await session.bridge(
                ToUser(user=users[0]), ring_timeout=offer.ring_timeout
            )
            return result, owner[users[0]] if result.answered else None
        # Several phones: one dial to all of them, the first to answer wins.
        call = session.call
        targets = []
        for user in users:
            found = call.b2bua.targets(ToUser(user=user))
            if not isinstance(found, int):
                targets.extend(found)
        if not targets:
            return BridgeResult(answered=False, status=480), None
        dialled = await call.dial(targets, ring_timeout=offer.ring_timeout, relay=False)
        if dialled.leg is None:
            return BridgeResult(answered=False, status=dialled.status), None
        call.connect(call.inbound, dialled.leg)
        agent = owner[dialled.leg.peer]
        return BridgeResult(answered=True, status=200, leg_id=dialled.leg.leg_id), agent

    async def _callback(self, offer: Offer) -> None:
        """A virtual caller's turn: dial the customer, then bridge to the agent."""
        acd = self.distributor
        caller_id = offer.caller_id
        trunk = self.media.get(offer.queue, QueueMedia()).callback_trunk
        if self.originate is None or offer.callback_number is None or not trunk:
            # Without a dialler (a test), a number or a trunk the attempt fails and
            # is retried, keeping the caller's place, until the retries run out.
            acd.callback_failed(caller_id, self.clock(), "no way to place the callback")
            self.wake()
            return
        users = [
            next((u for u in agent_users if self.is_registered(u)), agent_users[0])
            for agent_users in offer.users
        ]
        for agent in offer.agents:
            acd.ringing(caller_id, agent, self.clock())
        try:
            placed = await self.originate(
                offer.callback_number, trunk, users, offer.ring_timeout
            )
        except Exception as exc:  # a dialler bug must not lose the caller
            logger.exception("callback %s failed", caller_id)
            placed = 500
            detail = str(exc)
        else:
            detail = "" if not isinstance(placed, int) else str(placed)
        if isinstance(placed, int):
            acd.callback_failed(caller_id, self.clock(), detail)
            self.wake()
            return
        who = offer.agents[users.index(placed.user)] if placed.user in users else None
        if who is None or not acd.answered(caller_id, who, self.clock()):
            logger.warning(
                "callback %s answered by unexpected %s", caller_id, placed.user
            )
        self.wake()
        await placed.wait_hangup()
        if caller_id in acd.callers:
            acd.hangup(caller_id, self.clock())
        self.wake()

    # -- agents -----------------------------------------------------------------

    def agent_action(self, agent: str, action: str, reason: str = "") -> None:
        """Login, logout, break (``reason``) or available, from a phone or the CLI."""
        now = self.clock()
        acd = self.distributor
        if action == "login" or action == "available":
            acd.login(agent, now)
        elif action == "logout":
            acd.logout(agent, now)
        elif action == "break":
            acd.pause(agent, reason or DEFAULT_BREAK, now)
        else:
            raise AcdError(f"unknown agent action {action!r}")
        self.wake()

    def agent_of_user(self, user: str) -> str | None:
        for agent in self.distributor.agents.values():
            if user in agent.users:
                return agent.name
        return None

    def _on_registration(self, event: object) -> None:
        user = getattr(event, "user", "")
        self.distributor.registered(user, self.is_registered(user), self.clock())
        self.wake()

    # -- the loop ---------------------------------------------------------------

    async def _run(self) -> None:
        last_flush = 0.0
        while True:
            now = self.clock()
            try:
                self._step(now)
            except Exception:  # one bad step must not stop the ACD
                logger.exception("acd step failed")
            if now - last_flush >= SNAPSHOT_INTERVAL:
                last_flush = now
                try:
                    await self._commands()
                    await self._flush()
                except Exception:
                    logger.exception("acd flush failed")
            deadline = self.distributor.next_deadline(now)
            timeout = SNAPSHOT_INTERVAL
            if deadline is not None:
                timeout = min(timeout, max(0.0, deadline - now) + 0.001)
            # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancel that
            # arrives together with the wake-up, and stop() would wait forever.
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=timeout)
            finally:
                waiter.cancel()
            self._wake.clear()

    def _step(self, now: float) -> None:
        acd = self.distributor
        started = time.perf_counter()
        actions = acd.poll(now)
        self.decision_seconds += time.perf_counter() - started
        self.decisions += 1
        if logger.isEnabledFor(logging.DEBUG):  # tests run the switch at DEBUG
            for problem in acd.violations():
                logger.error("acd invariant broken: %s", problem)
        for action in actions:
            if isinstance(action, Offer):
                self._spawn(self._offer(action))
            else:
                self._resolve(action.caller_id, action)
        events, acd.events = acd.events, []
        for event in events:
            publish(self.bus, event)
        self._unflushed.extend(acd.records)
        acd.records.clear()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _commands(self) -> None:
        if self.log is None:
            return
        for command in await self.log.take_commands():
            try:
                self.agent_action(command.agent, command.action, command.reason)
            except AcdError as exc:
                logger.warning(
                    "agent command %s %s: %s", command.action, command.agent, exc
                )

    async def _flush(self) -> None:
        records, self._unflushed = self._unflushed, []
        records.extend(self.distributor.records)
        self.distributor.records.clear()
        if self.log is None:
            return
        await self.log.append(records)
        now = self.clock()
        snapshots = []
        for name in self.distributor.queues:
            waiting = self.distributor.queued(name)
            snapshots.append(
                QueueSnapshot(
                    name=name,
                    waiting=len(waiting),
                    longest_wait=max((c.waited(now) for c in waiting), default=0.0),
                    expected_wait=self.distributor.expected_wait(
                        name, len(waiting) + 1, now
                    ),
                )
            )
        await self.log.save_snapshot(self.distributor.agents.values(), snapshots, now)


def queue_app(acd: Acd) -> Callable[[CallSession, ToApp], Awaitable[None]]:
    """The dialplan app ``queue`` (``queue:NAME``, or ``app:queue`` with ``name``)."""

    async def queue(session: CallSession, route: ToApp) -> None:
        name = route.arg("queue") or route.arg("name") or ""
        priority = int(route.arg("priority", "0") or 0)
        if name not in acd.distributor.queues:
            logger.warning("queue app: unknown queue %r", name)
            await session.hangup(status=404)
            return
        outcome = await acd.enqueue(session, name, priority=priority)
        logger.info("call %s left queue %s: %s", session.call.call_id, name, outcome)

    return queue


def agent_app(acd: Acd) -> Callable[[CallSession, ToApp], Awaitable[None]]:
    """The dialplan app ``agent``: feature codes *41 login, *42 logout, *43 break,
    *44 available (``action`` argument), for the agent whose phone is calling."""

    async def agent(session: CallSession, route: ToApp) -> None:
        action = route.arg("action", "") or ""
        caller = session.call.caller
        user = caller.name if caller.kind == "user" else ""
        name = acd.agent_of_user(user)
        await session.answer()
        try:
            if name is None:
                raise AcdError(f"{user or caller.number} is not an agent")
            acd.agent_action(name, action, route.arg("reason", "") or "")
        except AcdError as exc:
            logger.info("feature code %s: %s", action, exc)
            await session.play([Tone(name=ToneName.BUSY, duration_ms=1500)])
        else:
            logger.info("agent %s: %s by feature code", name, action)
            await session.play(
                [Tone(name=ToneName.BEEP, duration_ms=300), Silence(duration_ms=200)]
            )
        await session.hangup()

    return agent
