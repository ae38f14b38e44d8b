"""The IVR part of the CDR: each call's path through its flow, kept in the store.

:class:`IvrStepRecorder` listens to the ``ivr.*`` events and keeps each call's steps in
memory while it is in a flow; when the call leaves the flow the steps are written in
one transaction (table ``ivr_steps``, keyed by the CDR's ``call_id``), so that reports
can join them to ``calls`` and count where callers leave. Like the CDR recorder it does
no I/O inside event handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pyee import EventEmitter

from ivr.events import IvrDataDip, IvrDigits, IvrEntered, IvrExited, IvrNodeEntered

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class IvrStep:
    """One row of ``ivr_steps``: ``kind`` is the event name without ``ivr.``."""

    call_id: str
    seq: int
    at: float
    flow: str
    node: str
    kind: str
    detail: str


class IvrStepStore(Protocol):
    async def save_ivr_steps(self, steps: Sequence[IvrStep]) -> None: ...


def _detail(event: Any) -> tuple[str, str]:
    """(node, detail) of an event, as one short human-readable text."""
    if isinstance(event, IvrEntered):
        return "", f"caller={event.caller} language={event.language}"
    if isinstance(event, IvrNodeEntered):
        return event.node, event.node_type
    if isinstance(event, IvrDigits):
        return (
            event.node,
            f"{event.digits or '-'} {event.outcome.value} #{event.attempt}",
        )
    if isinstance(event, IvrDataDip):
        fields = " ".join(f"{k}={v}" for k, v in event.fields)
        status = "-" if event.status is None else str(event.status)
        detail = f"{event.outcome.value} status={status} {event.elapsed_ms:.0f}ms"
        return event.node, f"{detail} {fields}".strip()
    assert isinstance(event, IvrExited)
    return event.node, f"{event.reason.value} {event.target}".strip()


class IvrStepRecorder:
    """Subscribes to ``ivr.*`` on ``bus`` and writes each call's steps to ``store``."""

    EVENTS = (IvrEntered, IvrNodeEntered, IvrDigits, IvrDataDip, IvrExited)

    def __init__(self, *, bus: EventEmitter, store: IvrStepStore) -> None:
        self.bus = bus
        self.store = store
        self._steps: dict[str, list[IvrStep]] = {}
        self._writes: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        for cls in self.EVENTS:
            self.bus.on(cls.name, self._on_event)

    async def stop(self) -> None:
        for cls in self.EVENTS:
            with contextlib.suppress(KeyError):
                self.bus.remove_listener(cls.name, self._on_event)
        for call_id in list(self._steps):
            self._write(call_id)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    def _on_event(self, event: Any) -> None:
        steps = self._steps.setdefault(event.call_id, [])
        node, detail = _detail(event)
        steps.append(
            IvrStep(
                call_id=event.call_id,
                seq=len(steps) + 1,
                at=event.at,
                flow=event.flow,
                node=node,
                kind=event.name.removeprefix("ivr."),
                detail=detail,
            )
        )
        if isinstance(event, IvrExited):
            self._write(event.call_id)

    def _write(self, call_id: str) -> None:
        steps = self._steps.pop(call_id, [])
        if steps:
            task = asyncio.get_running_loop().create_task(self._save(steps))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _save(self, steps: list[IvrStep]) -> None:
        try:
            await self.store.save_ivr_steps(steps)
        except Exception:  # a full disk must not take calls down with it
            logger.exception(
                "[%s] cannot write %d IVR steps", steps[0].call_id, len(steps)
            )


def path_summary(steps: Sequence[IvrStep]) -> str:
    """One line for ``ccswitch cdr``: ``demo: greeting > menu[2] > support (queued)``."""
    if not steps:
        return ""
    parts: list[str] = []
    for step in steps:
        if step.kind == "node":
            parts.append(step.node)
        elif step.kind == "digits" and parts:
            parts[-1] += f"[{step.detail.split(' ')[0]}]"
        elif step.kind == "data_dip" and parts:
            parts[-1] += f"({step.detail.split(' ')[0]})"
    exits = [s.detail for s in steps if s.kind == "exited"]
    tail = f" ({exits[-1]})" if exits else ""
    return f"{steps[0].flow}: {' > '.join(parts)}{tail}"
