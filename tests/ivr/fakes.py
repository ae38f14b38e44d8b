"""A fake call session for the runner: scripted key presses, recorded prompts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from media.commands import PlayItem, Prompt, Silence
from switch.dialplan import Route
from switch.session import BridgeResult, Hangup, collect_keys


class FakeSession:
    """Keys are pressed during the Nth playback (``presses[N]``, 1-based).

    ``collect_digits`` behaves as :class:`~switch.session.CallSession`'s, except that a
    wait with no key queued times out at once (``timeouts`` counts them).
    ``hangup_at`` makes the Nth playback raise Hangup (the caller hung up).
    """

    def __init__(
        self,
        *,
        presses: dict[int, str] | None = None,
        every_play: str = "",
        caller: str = "+74951234567",
        called: str = "4000",
        bridge_status: int = 200,
        hangup_at: int | None = None,
    ) -> None:
        self.digits: asyncio.Queue[str] = asyncio.Queue()
        self.presses = presses or {}
        self.every_play = every_play
        self._caller = caller
        self._called = called
        self.bridge_status = bridge_status
        self.hangup_at = hangup_at
        self.plays: list[tuple[list[str], bool]] = []
        self.answered = False
        self.hung_up = False
        self.bridged: list[tuple[Route | str, float | None]] = []
        self.timeouts = 0

    @property
    def caller(self) -> str:
        return self._caller

    @property
    def called(self) -> str:
        return self._called

    @property
    def prompts(self) -> list[list[str]]:
        return [names for names, _ in self.plays]

    async def answer(self) -> None:
        self.answered = True

    async def play(
        self, items: Sequence[PlayItem], *, stop_on_dtmf: bool = False
    ) -> str:
        names = []
        for item in items:
            if isinstance(item, Prompt):
                names.append(Path(item.path).stem)
            elif isinstance(item, Silence):
                names.append(f"silence:{item.duration_ms}")
        self.plays.append((names, stop_on_dtmf))
        if self.hangup_at == len(self.plays):
            raise Hangup("fake")
        keys = self.presses.get(len(self.plays), self.every_play)
        for key in keys:
            self.digits.put_nowait(key)
        return "dtmf" if keys and stop_on_dtmf else "completed"

    async def collect_digits(
        self,
        *,
        min_digits: int = 1,
        max_digits: int = 1,
        terminator: str | None = "#",
        timeout: float = 5.0,
    ) -> str:
        async def next_key() -> str:
            # no key queued: the caller paused (a fake clock, no waiting)
            if self.digits.empty():
                self.timeouts += 1
                raise TimeoutError
            return self.digits.get_nowait()

        return await collect_keys(
            next_key,
            min_digits=min_digits,
            max_digits=max_digits,
            terminator=terminator,
        )

    async def bridge(
        self, target: Route | str, *, ring_timeout: float | None = None
    ) -> BridgeResult:
        self.bridged.append((target, ring_timeout))
        answered = self.bridge_status == 200
        return BridgeResult(answered=answered, status=self.bridge_status)

    async def hangup(self) -> None:
        self.hung_up = True
