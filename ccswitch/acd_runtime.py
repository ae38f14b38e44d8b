"""Wiring of the ACD into a running switch: config to acd objects, apps, the IVR hook.

:class:`AcdRuntime` turns ``[[queues]]``, ``[[agents]]`` and ``[[admission]]`` into a
:class:`~acd.distributor.Distributor` and an :class:`~acd.service.Acd` service on the
store's queue log, gives the B2BUA the ``queue`` and ``agent`` apps, and gives the
IVR its queue hook. Announcements use the IVR's prompts and spoken numbers
(``prompts/``) when the files exist, and a beep when they do not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pyee import EventEmitter

from acd.admission import AdmissionAction, AdmissionRule, parse_days, parse_hours
from acd.agent import Agent, Membership
from acd.distributor import Distributor
from acd.log import QueueLog
from acd.queue import LeaveReason, QueueSettings
from acd.service import (
    Acd,
    QueueMedia,
    agent_app,
    beep_announcer,
    beep_number,
    queue_app,
    tone_prompts,
)
from acd.strategies import load_strategies
from ccswitch.config import Config
from ccswitch.store import Store
from media.commands import PlayItem, Prompt, Silence
from switch.b2bua import B2bua, Originated
from switch.dialplan import (
    NumberError,
    NumberingPlan,
    ToTrunk,
    ToUser,
    number_for_trunk,
)
from switch.registrar import Registrar

logger = logging.getLogger(__name__)

#: EWT announcements are rounded up to whole minutes above this many seconds.
ROUND_TO_MINUTES_ABOVE = 60
#: The calling number a callback shows the customer.
CALLBACK_CALLER_ID = "callback"
#: RFC 3261 21.4.18 480: what a callback with no agent to ring reports.
STATUS_NO_AGENT = 480
#: RFC 3261 21.4.22 484: a callback number the trunk cannot take.
STATUS_ADDRESS_INCOMPLETE = 484


def build_distributor(config: Config) -> Distributor:
    queues = [
        QueueSettings(
            name=q.name,
            strategy=q.strategy,
            wrap_up=q.wrap_up,
            ring_timeout=q.ring_timeout,
            max_wait=q.max_wait,
            service_level=q.service_level,
            join_empty=q.join_empty,
            announce_interval=q.announce_interval,
            exit_key=q.exit_key,
            exit_destination=q.exit_destination,
            skills=q.skills,
            widen_after=q.widen_after,
            tier_after=q.tier_after,
            callback_retries=q.callback_retries,
            callback_retry_interval=q.callback_retry_interval,
        )
        for q in config.queues
    ]
    agents = [
        Agent(
            name=a.name,
            users=a.users,
            memberships=tuple(Membership(queue=q, penalty=p) for q, p in a.queues),
            skills=dict(a.skills),
            wrap_up=a.wrap_up,
            auto_login=a.auto_login,
        )
        for a in config.agents
    ]
    rules = [
        AdmissionRule(
            queue=r.queue,
            days=parse_days(r.days),
            hours=parse_hours(r.hours),
            max_expected_wait=r.max_expected_wait,
            max_asa=r.max_asa,
            max_per_agent=r.max_per_agent,
            max_length=r.max_length,
            action=AdmissionAction(r.action),
            destination=r.destination,
        )
        for r in config.admission
    ]
    return Distributor(
        queues=queues, agents=agents, strategies=load_strategies(), rules=rules
    )


def _prompt_functions(
    library: Any,
) -> tuple[
    Callable[[int, float | None, str], Sequence[PlayItem]],
    Callable[[str, str], Sequence[PlayItem]],
    Callable[[str, str], Sequence[PlayItem]],
]:
    """Announcer, named prompts and numbers from the IVR's prompt library."""
    from ivr.speech import digit_words, duration_words, number_words

    def words_items(words: Sequence[str], language: str) -> list[PlayItem] | None:
        lang = language or library.default_language
        if not all(library.exists(word, lang) for word in words):
            return None
        return [Prompt(path=str(library.path(word, lang))) for word in words]

    def announce(position: int, ewt: float | None, language: str) -> Sequence[PlayItem]:
        lang = language or library.default_language
        words = ["queue_position", *number_words(position, lang)]
        if ewt is not None:
            seconds = int(ewt)
            if seconds > ROUND_TO_MINUTES_ABOVE:
                seconds = -(-seconds // 60) * 60
            words += ["expected_wait", *duration_words(seconds, lang)]
        items = words_items(words, lang)
        return (
            [*items, Silence(duration_ms=300)]
            if items
            else beep_announcer(position, ewt, language)
        )

    def prompts(name: str, language: str) -> Sequence[PlayItem]:
        return words_items([name], language) or tone_prompts(name, language)

    def say_number(number: str, language: str) -> Sequence[PlayItem]:
        lang = language or library.default_language
        digits = "".join(c for c in number if c.isdigit())
        return words_items(list(digit_words(digits, lang)), lang) or beep_number(
            number, language
        )

    return announce, prompts, say_number


class AcdRuntime:
    """The ACD of one switch; ``apps`` go to the B2BUA, ``ivr_hook`` to the IVR."""

    def __init__(
        self,
        config: Config,
        *,
        bus: EventEmitter,
        store: Store,
        registrar: Registrar,
        prompt_library: Any = None,
    ) -> None:
        self.config = config
        self.store = store
        self.registrar = registrar
        announcer, prompts, say_number = beep_announcer, tone_prompts, beep_number
        if prompt_library is not None:
            announcer, prompts, say_number = _prompt_functions(prompt_library)  # type: ignore[assignment]
        zone = ZoneInfo(config.ivr.time_zone)
        self.acd = Acd(
            distributor=build_distributor(config),
            bus=bus,
            is_registered=self.is_registered,
            media={
                q.name: QueueMedia(music=q.music, callback_trunk=q.callback_trunk)
                for q in config.queues
            },
            announcer=announcer,
            prompts=prompts,
            say_number=say_number,
            # admission schedules are the company's hours, like the IVR's
            local_time=lambda: datetime.now(zone),
        )
        self.apps = {"queue": queue_app(self.acd), "agent": agent_app(self.acd)}

    def attach(self, b2bua: B2bua) -> None:
        """Let the ACD place callbacks through ``b2bua`` (made once the loop runs)."""

        async def originate(
            number: str, trunk: str, users: Sequence[str], ring_timeout: float
        ) -> Originated | int:
            if not users:
                return STATUS_NO_AGENT
            # The reserved agent first, then the customer: nobody answers into silence.
            # TODO: a per-queue caller id for callbacks; the customer sees "callback".
            plan = b2bua.dialplan.numbering.get(trunk, NumberingPlan())
            try:
                dialled = number_for_trunk(number, plan)
            except NumberError as exc:
                logger.warning("callback to %r: %s", number, exc)
                return STATUS_ADDRESS_INCOMPLETE
            return await b2bua.originate(
                first=ToUser(user=users[0]),
                then=ToTrunk(trunk=trunk, number=dialled),
                caller_id=CALLBACK_CALLER_ID,
                ring_timeout=ring_timeout,
            )

        self.acd.originate = originate

    def is_registered(self, user: str) -> bool:
        return any(binding.reachable for binding in self.registrar.lookup(user))

    async def ivr_hook(self, session: Any, request: Any) -> bool:
        """The IVR's queue node: True when the queue took the caller.

        A caller the queue refuses outright ("call later": no agent logged in, a
        limit crossed without callback or overflow) is False, so the flow's
        fallback branch speaks to them; every other outcome (connected, gave up,
        callback, timed out or left by key) belongs to the queue.
        """
        if request.queue not in self.acd.distributor.queues:
            logger.warning("IVR asked for unknown queue %s", request.queue)
            return False
        skills = {}
        for skill in request.skills:
            name, _, level = str(skill).partition(":")
            skills[name] = int(level) if level.isdigit() else 1
        outcome = await self.acd.enqueue(
            session,
            request.queue,
            priority=request.priority,
            skills=skills,
            language=request.language,
            tell_refused=False,
        )
        return outcome != LeaveReason.ADMISSION.value

    async def start(self) -> None:
        self.acd.log = QueueLog(self.store.db)
        await self.acd.start()

    async def stop(self) -> None:
        await self.acd.stop()
