"""Keep-alive and reachability of registered contacts (OPTIONS "qualify").

A phone behind NAT stays reachable only while its pinhole is open, and a phone that
crashed stays registered until its binding expires. Sending OPTIONS to every binding
on a fixed interval solves both: the traffic keeps the pinhole open, and a contact
that misses ``timeout_count`` answers in a row is marked unreachable so the router
skips it (any response, even an error, proves the phone is there: RFC 3261 11.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from pyee import EventEmitter

from switch.events import ContactReachability, publish
from switch.registrar import Binding, Registrar
from switch.sip.message import Headers, Request
from switch.sip.transaction import new_tag
from switch.sip.uri import parse_uri
from switch.stack import RequestTimeout, SipStack

logger = logging.getLogger(__name__)

#: How often expired bindings are swept when keep-alives are off (seconds).
EXPIRY_SWEEP = 10.0


class Qualifier:
    """Pings every binding every ``interval`` seconds, spread over the interval."""

    def __init__(
        self,
        *,
        stack: SipStack,
        registrar: Registrar,
        interval: float,
        timeout_count: int,
        bus: EventEmitter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stack = stack
        self.registrar = registrar
        self.interval = interval
        self.timeout_count = timeout_count
        self.bus = bus
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._cseq = 0

    def start(self) -> None:
        """Start pinging; an interval of 0 turns keep-alives off (bindings still expire)."""
        if self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run())
        else:
            self._task = asyncio.get_running_loop().create_task(self._expire_only())

    async def _expire_only(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_SWEEP)
            await self.registrar.expire()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._round()
            except Exception:  # one bad round must not end keep-alives for good
                logger.exception("keep-alive round failed")
                await asyncio.sleep(self.interval)

    async def _round(self) -> None:
        await self.registrar.expire()
        bindings = self.registrar.all_bindings()
        if not bindings:
            await asyncio.sleep(self.interval)
            return
        # Spread the pings so 250 phones do not all answer in the same tick.
        gap = self.interval / len(bindings)
        for binding in bindings:
            task = asyncio.get_running_loop().create_task(self.ping(binding))
            task.add_done_callback(_log_failure)
            await asyncio.sleep(gap)

    async def ping(self, binding: Binding) -> bool:
        """Send one OPTIONS to ``binding``; update its reachability; True if answered."""
        self._cseq += 1
        host, port = self.stack.local_address(binding.source[0])
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:ccswitch@{host}:{port}>;tag={new_tag()}")
        headers.add("To", f"<{binding.contact}>")
        headers.add("Call-ID", f"{new_tag()}{new_tag()}@{host}")
        headers.add("CSeq", f"{self._cseq} OPTIONS")
        request = Request(
            method="OPTIONS", uri=parse_uri(binding.contact), headers=headers
        )
        try:
            await self.stack.request(request, binding.source)
        except RequestTimeout:
            answered = False
        else:
            answered = True

        # The binding may have been refreshed (a new object) or removed meanwhile.
        current = self.registrar.get(binding.user, binding.contact)
        if current is None:
            return answered
        if not answered:
            current.failed_qualifies += 1
            if current.failed_qualifies >= self.timeout_count and current.reachable:
                logger.warning(
                    "%s at %s stopped answering OPTIONS", current.user, current.contact
                )
                await self.registrar.mark(current, reachable=False)
                self._publish(current, reachable=False)
            return False
        if not current.reachable:
            logger.info("%s at %s is reachable again", current.user, current.contact)
            self._publish(current, reachable=True)
        await self.registrar.mark(current, reachable=True)
        return True

    def _publish(self, binding: Binding, *, reachable: bool) -> None:
        publish(
            self.bus,
            ContactReachability(
                at=self.clock(),
                user=binding.user,
                contact=binding.contact,
                reachable=reachable,
            ),
        )


def _log_failure(task: asyncio.Task[bool]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("qualify failed: %s", task.exception())
