"""The flow runner: walks one caller through a :class:`~ivr.flow.Flow`.

A :class:`FlowRunner` is created per call with the flow as it was when the call came in
(a reload later does not change it) and the call's :class:`~switch.session.CallSession`.
Each node is one coroutine method (``_node_play``, ``_node_menu``...) that returns the
name of the next node, or ``None`` when the caller has left the flow; every step is
published as an event (:mod:`ivr.events`) and so ends up in the CDR.

Barge-in: prompts of play, menu, collect and language nodes are played with
``stop_on_dtmf``; the key that stopped them stays in the session's digit queue, so the
next node that waits for keys takes it as its input, and a menu whose key was typed
ahead skips its prompt. Waits for keys are bounded by the node's timeout, and a call is
bounded to :data:`MAX_STEPS` nodes (a caller looping through a menu forever).

What the runner needs from the world comes in :class:`Services`: the prompt files, the
time zone of schedules, an HTTP client for data dips, the ACD hand-off (``queue``) and how
to route a transfer. The ACD is built separately: until a ``queue`` hook is installed a
queue node takes its ``fallback`` branch.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from ivr import speech
from ivr.crm import data_dip
from ivr.events import (
    DigitsOutcome,
    DipOutcome,
    ExitReason,
    IvrDataDip,
    IvrDigits,
    IvrEntered,
    IvrExited,
    IvrNodeEntered,
)
from ivr.flow import (
    BranchNode,
    CollectNode,
    Condition,
    Flow,
    HangupNode,
    HttpNode,
    LanguageNode,
    MenuNode,
    Node,
    NodeType,
    PlayNode,
    PromptItem,
    PromptKind,
    QueueNode,
    SetNode,
    TransferNode,
    render,
)
from ivr.prompts import PromptLibrary
from media.commands import MediaError, PlayItem, Prompt, Silence
from switch.events import Event, publish
from switch.session import BridgeResult, Hangup
from switch.sip.transaction import CallIdAdapter

if TYPE_CHECKING:
    import aiohttp
    from pyee import EventEmitter

    from switch.dialplan import Route

logger = logging.getLogger(__name__)

#: Nodes one call may pass through; beyond it the call is ended (a runaway flow).
MAX_STEPS = 500


class Session(Protocol):
    """What the runner uses of :class:`~switch.session.CallSession`.

    Keys come from ``digits``, fed by the B2BUA from RFC 4733 events, SIP INFO and,
    for callers that offer no telephone-event, tones heard in band (Q.23).
    """

    digits: asyncio.Queue[str]

    @property
    def caller(self) -> str: ...

    @property
    def called(self) -> str: ...

    async def answer(self) -> None: ...

    async def play(
        self, items: Sequence[PlayItem], *, stop_on_dtmf: bool = False
    ) -> str: ...

    async def collect_digits(
        self,
        *,
        min_digits: int = 1,
        max_digits: int = 1,
        terminator: str | None = "#",
        timeout: float = 5.0,
    ) -> str: ...

    async def bridge(
        self, target: Route | str, *, ring_timeout: float | None = None
    ) -> BridgeResult: ...

    async def hangup(self) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueRequest:
    """A hand-off to the ACD: the queue, the caller's priority and required skills."""

    call_id: str
    queue: str
    priority: int
    skills: tuple[str, ...]
    language: str
    variables: dict[str, str] = field(hash=False)


#: The ACD hand-off: True when the queue took the call (the runner then leaves).
QueueHook = Callable[[Any, QueueRequest], Awaitable[bool]]
#: A transfer target ("user:NAME" or a number) to a route, user name, or SIP status.
TransferResolver = Callable[[Any, str], "Route | str | int"]


def user_transfers_only(session: Any, target: str) -> Route | str | int:
    """The default resolver: ``user:NAME`` rings that user; numbers are refused."""
    kind, _, name = target.partition(":")
    if kind == "user" and name:
        return name
    return 404


@dataclass(kw_only=True, slots=True)
class Services:
    """What flows use of the world; shared by every call.

    :param library: prompt files and the configured languages.
    :param time_zone: where schedules' hours and holidays are local.
    :param http: the client for data dips (None: every dip takes its fallback).
    :param queue: the ACD hand-off (None until an ACD is installed: fallback).
    :param resolve_transfer: routes transfer targets.
    :param variables: seeded into every call (``[ivr.variables]``).
    :param clock: wall-clock epoch seconds (schedules, events).
    """

    library: PromptLibrary
    time_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    bus: EventEmitter | None = None
    http: aiohttp.ClientSession | None = None
    queue: QueueHook | None = None
    resolve_transfer: TransferResolver = user_transfers_only
    variables: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], float] = time.time


# The method that carries out each node type, by name: a table of bound methods kept on
# the runner would be a reference cycle (runner -> dict -> method -> runner) holding the
# whole call until the garbage collector's next pass.
_HANDLERS: dict[NodeType, str] = {
    NodeType.PLAY: "_node_play",
    NodeType.MENU: "_node_menu",
    NodeType.COLLECT: "_node_collect",
    NodeType.SET: "_node_set",
    NodeType.BRANCH: "_node_branch",
    NodeType.HTTP: "_node_http",
    NodeType.LANGUAGE: "_node_language",
    NodeType.QUEUE: "_node_queue",
    NodeType.TRANSFER: "_node_transfer",
    NodeType.HANGUP: "_node_hangup",
}


class FlowRunner:
    """Runs ``flow`` for one call; see the module doc.

    :param flow: the flow as loaded when the call arrived.
    :param session: the caller.
    :param call_id: the switch's call identifier (events, logs).
    :param services: shared helpers.
    """

    def __init__(
        self, flow: Flow, session: Session, *, call_id: str, services: Services
    ) -> None:
        self.flow = flow
        self.session = session
        self.call_id = call_id
        self.services = services
        self.log = CallIdAdapter(logger, {"call_id": call_id})
        language = flow.language or services.library.default_language
        self.variables: dict[str, str] = {
            **services.variables,
            "caller": session.caller,
            "called": session.called,
            "call_id": call_id,
            "language": language,
        }
        self.path: list[str] = []
        #: Why the caller left, set by the node that handed the call on.
        self._exit: tuple[ExitReason, str] = (ExitReason.HANGUP, "")

    @property
    def language(self) -> str:
        return self.variables["language"]

    async def run(self) -> ExitReason:
        """Answer and walk the flow until the caller leaves it; return why."""
        self._publish(
            IvrEntered,
            caller=self.session.caller,
            language=self.language,
        )
        node: Node = self.flow.node(self.flow.start)
        node_name: str | None = node.name
        reason, target = ExitReason.ERROR, ""
        try:
            await self.session.answer()
            while node_name is not None:
                if len(self.path) >= MAX_STEPS:
                    self.log.warning(
                        "flow %s: %d steps, ending", self.flow.name, MAX_STEPS
                    )
                    await self.session.hangup()
                    break
                node = self.flow.node(node_name)
                self.path.append(node_name)
                self._publish(IvrNodeEntered, node=node.name, node_type=node.type.value)
                self.log.debug("ivr %s: node %s", self.flow.name, node.name)
                handler: Callable[[Any], Awaitable[str | None]] = getattr(
                    self, _HANDLERS[node.type]
                )
                node_name = await handler(node)
            else:
                reason, target = self._exit
        except Hangup:
            reason = ExitReason.CALLER_HANGUP
        except MediaError as exc:
            self.log.error(
                "ivr %s: node %s: media failed: %s", self.flow.name, node.name, exc
            )
            await self._hangup_quietly()
        except Exception:  # a bug: end this call, say where, keep the switch
            self.log.exception("ivr %s: node %s failed", self.flow.name, node.name)
            await self._hangup_quietly()
        self._publish(IvrExited, node=node.name, reason=reason, target=target)
        self.log.info(
            "ivr %s: %s at %s after %s",
            self.flow.name,
            reason.value,
            node.name,
            " > ".join(self.path),
        )
        return reason

    # -- helpers ----------------------------------------------------------------------

    def _publish(self, cls: Callable[..., Event], **fields: Any) -> None:
        publish(
            self.services.bus,
            cls(
                at=self.services.clock(),
                call_id=self.call_id,
                flow=self.flow.name,
                **fields,
            ),
        )

    async def _hangup_quietly(self) -> None:
        try:
            await self.session.hangup()
        except Exception:  # the call is going anyway; say why once
            self.log.exception("hangup after a failure failed")

    def _items(self, prompts: Sequence[PromptItem]) -> list[PlayItem]:
        """Prompt items to the engine's play items in the caller's language."""
        library, language = self.services.library, self.language
        items: list[PlayItem] = []
        for prompt in prompts:
            if prompt.kind is PromptKind.FILE:
                items.append(Prompt(path=str(library.path(prompt.value, language))))
                continue
            if prompt.kind is PromptKind.SILENCE:
                items.append(Silence(duration_ms=int(prompt.value)))
                continue
            value = render(prompt.value, self.variables)
            try:
                if prompt.kind is PromptKind.NUMBER:
                    words = speech.number_words(int(value), language)
                elif prompt.kind is PromptKind.DURATION:
                    words = speech.duration_words(round(float(value)), language)
                else:
                    words = speech.digit_words(value, language)
            except ValueError as exc:  # a variable that is not a number: skip it
                self.log.warning("cannot speak %r: %s", value, exc)
                continue
            items += [Prompt(path=str(library.path(w, language))) for w in words]
        return items

    async def _say(self, prompts: Sequence[PromptItem], *, barge_in: bool) -> str:
        items = self._items(prompts)
        if not items:
            return "completed"
        return await self.session.play(items, stop_on_dtmf=barge_in)

    async def _key(self, timeout: float) -> str:
        return await self.session.collect_digits(
            min_digits=1, max_digits=1, terminator=None, timeout=timeout
        )

    def _digits(
        self, node: Node, digits: str, outcome: DigitsOutcome, attempt: int
    ) -> None:
        self._publish(
            IvrDigits,
            node=node.name,
            digits=digits,
            outcome=outcome,
            attempt=attempt,
        )

    def _holds(self, condition: Condition) -> bool:
        if condition.caller is not None and not condition.caller.fullmatch(
            self.session.caller
        ):
            return False
        if condition.variable is not None:
            value = self.variables.get(condition.variable, "")
            if condition.equals is not None and value != render(
                condition.equals, self.variables
            ):
                return False
            if condition.matches is not None and not condition.matches.fullmatch(value):
                return False
        if condition.schedule is not None:
            schedule = self.flow.schedules[condition.schedule]
            now = datetime.datetime.fromtimestamp(
                self.services.clock(), self.services.time_zone
            )
            if schedule.is_open(now) != condition.open:
                return False
        return True

    # -- nodes (one per NodeType; each returns the next node, None: the call left) ----

    async def _node_play(self, node: PlayNode) -> str | None:
        await self._say(node.prompts, barge_in=node.barge_in)
        if not node.barge_in:
            while not self.session.digits.empty():  # keys during a must-hear prompt
                self.session.digits.get_nowait()
        return node.next

    async def _node_menu(self, node: MenuNode) -> str | None:
        choices = dict(node.choices)
        outcome = DigitsOutcome.TIMEOUT
        for attempt in range(1, node.retries + 2):
            if attempt > 1 and node.retry_prompts and self.session.digits.empty():
                await self._say(node.retry_prompts, barge_in=True)
            if self.session.digits.empty():
                await self._say(node.prompts, barge_in=True)
            key = await self._key(node.timeout)
            if key in choices:
                self._digits(node, key, DigitsOutcome.MATCHED, attempt)
                return choices[key]
            outcome = DigitsOutcome.INVALID if key else DigitsOutcome.TIMEOUT
            self._digits(node, key, outcome, attempt)
        if outcome is DigitsOutcome.TIMEOUT and node.no_input is not None:
            return node.no_input
        return node.invalid

    async def _node_collect(self, node: CollectNode) -> str | None:
        if self.session.digits.empty():
            await self._say(node.prompts, barge_in=True)
        digits = await self.session.collect_digits(
            min_digits=node.min_digits,
            max_digits=node.max_digits,
            terminator=node.terminator or None,
            timeout=node.timeout,
        )
        if len(digits) < node.min_digits:
            outcome = DigitsOutcome.TIMEOUT if not digits else DigitsOutcome.INVALID
            self._digits(node, digits, outcome, 1)
            if node.invalid is not None:
                return node.invalid
        else:
            self._digits(node, digits, DigitsOutcome.MATCHED, 1)
        self.variables[node.variable] = digits
        return node.next

    async def _node_set(self, node: SetNode) -> str | None:
        for name, template in node.values:
            self.variables[name] = render(template, self.variables)
        return node.next

    async def _node_branch(self, node: BranchNode) -> str | None:
        for condition in node.conditions:
            if self._holds(condition):
                return condition.goto
        return node.default

    async def _node_http(self, node: HttpNode) -> str | None:
        await self._say(node.prompts, barge_in=True)
        url = render(node.url, self.variables)
        if self.services.http is None:
            outcome, status, elapsed = DipOutcome.UNREACHABLE, None, 0.0
            fields: tuple[tuple[str, str], ...] = ()
        else:
            result = await data_dip(
                self.services.http,
                url=url,
                method=node.method,
                payload={
                    "caller": self.session.caller,
                    "called": self.session.called,
                    "call_id": self.call_id,
                },
                timeout=node.timeout,
                wanted=node.fields,
            )
            outcome, status = result.outcome, result.status
            elapsed, fields = result.elapsed_ms, result.fields
        self._publish(
            IvrDataDip,
            node=node.name,
            url=url,
            outcome=outcome,
            status=status,
            elapsed_ms=elapsed,
            fields=fields,
        )
        if outcome is not DipOutcome.OK:
            self.log.info("data dip %s: %s, fallback", url, outcome.value)
            return node.fallback
        self.variables.update(fields)
        return node.next

    async def _node_language(self, node: LanguageNode) -> str | None:
        choices = dict(node.choices)
        if self.session.digits.empty():
            await self._say(node.prompts, barge_in=True)
        key = await self._key(node.timeout)
        if key in choices:
            self.variables["language"] = choices[key]
            self._digits(node, key, DigitsOutcome.MATCHED, 1)
        else:
            outcome = DigitsOutcome.INVALID if key else DigitsOutcome.TIMEOUT
            self._digits(node, key, outcome, 1)
        return node.next

    async def _node_queue(self, node: QueueNode) -> str | None:
        await self._say(node.prompts, barge_in=False)
        queue = render(node.queue, self.variables)
        try:
            priority = int(render(node.priority, self.variables) or 0)
        except ValueError:
            self.log.warning(
                "queue %s: priority %r is not a number, 0", queue, node.priority
            )
            priority = 0
        skills = tuple(s for s in (render(t, self.variables) for t in node.skills) if s)
        hook = self.services.queue
        if hook is None:  # no ACD wired (ccswitch/app.py sets it): the fallback
            self.log.info("queue %s: no ACD installed, fallback", queue)
            return node.fallback
        request = QueueRequest(
            call_id=self.call_id,
            queue=queue,
            priority=priority,
            skills=skills,
            language=self.language,
            variables=dict(self.variables),
        )
        if await hook(self.session, request):
            self._exit = (ExitReason.QUEUED, queue)
            return None
        return node.fallback

    async def _node_transfer(self, node: TransferNode) -> str | None:
        await self._say(node.prompts, barge_in=False)
        target = render(node.target, self.variables)
        route = self.services.resolve_transfer(self.session, target)
        if isinstance(route, int):
            self.log.info("transfer to %s refused (%d)", target, route)
            answered = False
        else:
            result = await self.session.bridge(route, ring_timeout=node.ring_timeout)
            answered = result.answered
            self.log.info("transfer to %s: %s", target, result.status)
        if answered:
            self._exit = (ExitReason.TRANSFERRED, target)
            return None
        if node.fallback is None:
            await self.session.hangup()
            return None
        return node.fallback

    async def _node_hangup(self, node: HangupNode) -> str | None:
        await self._say(node.prompts, barge_in=False)
        await self.session.hangup()
        return None
