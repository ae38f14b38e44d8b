"""The call interface for applications (IVR, ACD, echo, tone): one caller's session.

A :class:`CallSession` wraps the inbound leg of a :class:`~switch.call.Call` routed to a
local application. It is deliberately small and awaitable: :meth:`answer`, :meth:`play`
prompts and tones, :meth:`collect_digits` (RFC 4733 events or SIP INFO), :meth:`bridge`
the caller to a user or trunk, :meth:`hangup`. Every wait is bounded by its own timeout
and by the caller hanging up, which raises :class:`Hangup` in whatever the application
is awaiting, so an application is a plain coroutine that needs no cleanup code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from media.commands import (
    Codec as MediaCodec,
)
from media.commands import (
    Connect,
    CreateEndpoint,
    EndpointCreated,
    MediaError,
    Play,
    PlaybackStarted,
    PlayItem,
    SetCodec,
    SetRemote,
    StopPlay,
)
from switch.call import Call, CallEndedError
from switch.leg import CAUSE_NORMAL_CLEARING

if TYPE_CHECKING:
    from switch.dialplan import Route

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long answer() waits for the ACK of a delayed-offer 200 (64*T1 with T1 = 0.5 s).
ACK_TIMEOUT = 32.0


class Hangup(Exception):
    """The call ended (the caller hung up, or the switch ended it)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BridgeResult:
    """How :meth:`CallSession.bridge` ended.

    :param answered: the far end answered and the two are now connected.
    :param status: 200, or the final status of the failed attempt (486, 480, 404...).
    :param leg_id: the answering leg.
    """

    answered: bool
    status: int
    leg_id: str | None = None


async def collect_keys(
    next_key: Callable[[], Awaitable[str]],
    *,
    min_digits: int,
    max_digits: int,
    terminator: str | None,
) -> str:
    """Keys from ``next_key`` (TimeoutError: the caller paused) up to ``max_digits``
    or the terminator, which ends the input once ``min_digits`` are in (and is
    not included); shared by :meth:`CallSession.collect_digits` and test fakes."""
    collected = ""
    while len(collected) < max_digits:
        try:
            digit = await next_key()
        except TimeoutError:
            break
        if terminator is not None and digit in terminator:
            if len(collected) >= min_digits:
                break
            continue
        collected += digit
    return collected


class CallSession:
    """One caller in an application; see the module doc.

    :param call: the call whose inbound leg the application owns.
    """

    def __init__(self, call: Call) -> None:
        self.call = call
        self.digits: asyncio.Queue[str] = asyncio.Queue()
        call.on_dtmf = self.digits.put_nowait

    @property
    def answered(self) -> bool:
        return self.call.inbound.answered

    @property
    def caller(self) -> str:
        return self.call.caller.number

    @property
    def called(self) -> str:
        return self.call.called

    def close(self) -> None:
        """Stop taking digits (the application is done with the call)."""
        if self.call.on_dtmf == self.digits.put_nowait:
            self.call.on_dtmf = None

    async def _or_hangup(self, awaitable: Awaitable[T], timeout: float | None) -> T:
        """Await ``awaitable`` unless the call ends first (Hangup) or time runs out."""
        if self.call.ended:
            raise Hangup(self.call.call_id)
        task = asyncio.ensure_future(awaitable)
        ended = asyncio.ensure_future(self.call.ended_event.wait())
        try:
            done, _ = await asyncio.wait(
                {task, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ended.cancel()
        if task in done:
            return task.result()
        task.cancel()
        if ended in done or self.call.ended:
            raise Hangup(self.call.call_id)
        raise TimeoutError

    async def answer(self) -> None:
        """Answer the caller (200 with our SDP); returns once media can flow."""
        call = self.call
        if call.ended:
            raise Hangup(call.call_id)
        if self.answered:
            return
        delayed = call.inbound.answer_sdp is None
        call.answer_inbound()
        if delayed:
            # The caller's answer comes in the ACK (RFC 3264 section 5 delayed offer).
            try:
                await self._or_hangup(call.inbound_acked.wait(), ACK_TIMEOUT)
            except TimeoutError:
                call.end(hangup_by="switch", cause=102)
                raise Hangup(call.call_id) from None

    async def play(
        self,
        items: Sequence[PlayItem],
        *,
        stop_on_dtmf: bool = False,
        loop: bool = False,
    ) -> str:
        """Play ``items`` to the caller; return why it stopped (``PlaybackEnd`` value).

        ``"dtmf"`` means a key interrupted it (the digit is in :attr:`digits`).
        """
        call = self.call
        endpoint_id = call.inbound.endpoint_id
        if call.ended or endpoint_id is None:
            raise Hangup(call.call_id)
        result = call.b2bua.media(
            Play(
                endpoint_id=endpoint_id,
                items=tuple(items),
                loop=loop,
                stop_on_dtmf=stop_on_dtmf,
            )
        )
        assert isinstance(result, PlaybackStarted)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        call.b2bua.playbacks[result.playback_id] = future
        return await self._or_hangup(future, None)

    def stop_playing(self) -> None:
        """Stop the current playback (its :meth:`play` returns ``"stopped"``)."""
        endpoint_id = self.call.inbound.endpoint_id
        if endpoint_id is not None:
            with contextlib.suppress(MediaError):
                self.call.b2bua.media(StopPlay(endpoint_id=endpoint_id))

    async def collect_digits(
        self,
        *,
        min_digits: int = 1,
        max_digits: int = 1,
        terminator: str | None = "#",
        timeout: float = 5.0,
    ) -> str:
        """Digits pressed until ``max_digits``, the terminator, or ``timeout``.

        ``timeout`` applies to each digit (first and between). Fewer than
        ``min_digits`` digits give what was collected anyway; the caller decides.
        The terminator is not included.
        """
        return await collect_keys(
            lambda: self._or_hangup(self.digits.get(), timeout),
            min_digits=min_digits,
            max_digits=max_digits,
            terminator=terminator,
        )

    async def bridge(
        self, target: Route | str, *, ring_timeout: float | None = None
    ) -> BridgeResult:
        """Ring ``target`` (a route, or a user name) and connect the caller on answer.

        The caller is answered first if it is not yet (so it hears what we play while
        ringing); the call then stays up after the application returns.
        """
        from switch.dialplan import ToUser

        call = self.call
        route = ToUser(user=target) if isinstance(target, str) else target
        targets = call.b2bua.targets(route)
        if isinstance(targets, int):
            return BridgeResult(answered=False, status=targets)
        timeout = ring_timeout or call.b2bua.limits.ring_timeout
        try:
            result = await self._or_hangup(
                call.dial(targets, ring_timeout=timeout, relay=not self.answered), None
            )
        except CallEndedError:
            raise Hangup(call.call_id) from None
        if result.leg is None:
            return BridgeResult(answered=False, status=result.status)
        call.connect(call.inbound, result.leg)
        if not self.answered:
            call.answer_inbound()
        return BridgeResult(answered=True, status=200, leg_id=result.leg.leg_id)

    async def hangup(
        self, *, cause: int = CAUSE_NORMAL_CLEARING, status: int = 480
    ) -> None:
        """End the call (``status`` answers an unanswered caller)."""
        self.call.end(hangup_by="switch", status=status, cause=cause)

    async def wait_hangup(self, timeout: float | None = None) -> None:
        """Wait until the call ends (or ``timeout``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.call.ended_event.wait(), timeout)

    async def echo(self) -> None:
        """Send the caller's own audio back until the call ends.

        The engine has no echo command, so a second endpoint is pointed at itself and
        connected to the caller's: what the caller sends goes out of the loop endpoint
        to itself, comes back in, and is relayed out of the caller's endpoint.
        """
        call = self.call
        inbound = call.inbound
        if inbound.endpoint_id is None or call.ended:
            raise Hangup(call.call_id)
        media = inbound.media
        created = call.b2bua.media(
            CreateEndpoint(latching=False, near=inbound.endpoint_id)
        )
        assert isinstance(created, EndpointCreated)
        loop_id = created.endpoint_id
        call.extra_endpoints.append(loop_id)
        b2bua = call.b2bua
        b2bua.media(
            SetCodec(
                endpoint_id=loop_id,
                codec=MediaCodec(media.codec.upper()) if media else MediaCodec.PCMU,
                payload_type=media.payload_type if media else None,
                telephone_event_pt=media.telephone_event if media else None,
            )
        )
        b2bua.media(
            SetRemote(
                endpoint_id=loop_id,
                host=created.host,
                port=created.rtp_port,
                rtcp_port=created.rtcp_port,
            )
        )
        b2bua.media(Connect(endpoint_a=inbound.endpoint_id, endpoint_b=loop_id))
        await self.wait_hangup()
