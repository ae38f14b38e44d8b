"""Media engines in worker processes, behind the same ``execute`` as one engine.

One Python process relays, plays and mixes on one core at most (the GIL); a switch
carrying 1000+ legs with media needs every core. :class:`WorkerPool` starts N worker
processes, each running its own :class:`~media.engine.MediaEngine` on its own event
loop over its own share of the RTP port range, and offers the engine's vocabulary to
the signalling process: :meth:`WorkerPool.execute` takes the same commands and returns
the same results, and media events arrive through the same callback.

Theory of operation
-------------------
A command is pickled down a pipe to the worker that owns what it names, and the
caller waits for the result (a synchronous round trip of a few tens of
microseconds when the worker is idle, because the B2BUA reads results at once, e.g.
the port of a new endpoint for its SDP). Commands whose result is always ``Done``
(:data:`ONEWAY`: set remote or codec, connect, stop, close...) are sent without
waiting; their rare failures come back as a warning in the switch's log. Events
travel the other way at any time and are read by the signalling loop's reader on
the pipe; one that arrives while a result is awaited is kept and delivered right
after, in order.


Ids are the worker's own ids made global: ``global = local * workers + index``, so
the worker of any id is ``id % workers``, with no table to keep. Endpoints that are
bridged, recorded or mixed together must live in one process (a bridge is a
pointer between two endpoints of one engine): :class:`~media.commands.CreateEndpoint`
and :class:`~media.commands.CreateMixer` carry ``near``, the id of an endpoint to
share a worker with (a call's outbound legs name its inbound leg's endpoint);
without it the worker with the fewest endpoints is chosen. A command joining ids of
two workers is refused with :class:`~media.commands.BadCommand`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import gc
import logging
import multiprocessing.connection
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from media.commands import (
    PRIORITIES,
    BadCommand,
    CloseEndpoint,
    Command,
    Connect,
    CreateEndpoint,
    CreateMixer,
    DetectInband,
    Disconnect,
    Done,
    EndpointCreated,
    EngineLoad,
    MediaError,
    MediaEvent,
    MixerRemove,
    Result,
    SetCodec,
    SetLatching,
    SetRemote,
    StopPlay,
    StopRecord,
)
from media.engine import EngineConfig, MediaEngine
from media.priority import raise_priority

logger = logging.getLogger(__name__)
# TODO: commands with a result (CreateEndpoint, Play, Record, GetStats) are still
# synchronous round trips (70-120 us of the signalling process's CPU on a loaded
# 2-core box, and a wait while the worker finishes its tick); ids and ports could
# be allocated here so that CreateEndpoint needs no answer either.
# TODO: an attended transfer joins legs of two calls, which may live in two
# workers: that Connect is refused (the transfer's audio is lost). Moving an
# endpoint's socket to the other worker (SCM_RIGHTS) would fix it.

# Fields of commands, results and events that hold engine ids (endpoints, playbacks,
# mixers and recordings share one id sequence per engine).
ID_FIELDS = frozenset(
    {
        "endpoint_id",
        "endpoint_a",
        "endpoint_b",
        "left",
        "right",
        "mixer_id",
        "recording_id",
        "playback_id",
        "near",
    }
)
# How long a worker may take to start (imports numpy, binds nothing yet) and to stop.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
# A worker that does not answer a command within this long is taken as dead.
COMMAND_TIMEOUT = 10.0
# Each worker's share of the port range is a whole number of RTP/RTCP pairs.
PAIR = 2

EventCallback = Callable[[MediaEvent], None]


class WorkerDied(MediaError):
    """A media worker process exited or stopped answering."""


@dataclass(frozen=True, slots=True)
class _Stop:
    """Sent to a worker: close the engine and exit."""


@dataclass(frozen=True, slots=True)
class _Oneway:
    """Sent to a worker: run ``command`` and send no result (only an error back)."""

    command: Command


# Commands whose result is always Done: sent without waiting for the worker (the
# pipe keeps them in order with everything else), so the signalling process is not
# held up by a worker busy with its tick. A failure comes back as a log line: the
# callers of these commands only log a MediaError anyway.
ONEWAY: Final = frozenset(
    {
        SetRemote,
        SetCodec,
        SetLatching,
        DetectInband,
        Connect,
        Disconnect,
        StopPlay,
        StopRecord,
        MixerRemove,
        CloseEndpoint,
    }
)


def split_ports(port_min: int, port_max: int, workers: int) -> list[tuple[int, int]]:
    """Cut ``port_min..port_max`` into ``workers`` ranges of whole even/odd pairs.

    :raises ValueError: when a worker would get no pair.
    """
    pairs = (port_max - port_min + 1) // PAIR
    if workers < 1 or pairs < workers:
        raise ValueError(
            f"{pairs} RTP port pairs cannot be shared by {workers} media workers"
        )
    shares = []
    first = port_min
    for index in range(workers):
        count = pairs // workers + (1 if index < pairs % workers else 0)
        shares.append((first, first + count * PAIR - 1))
        first += count * PAIR
    return shares


_ID_FIELDS_OF: dict[type, tuple[str, ...]] = {}


def _id_fields(kind: type) -> tuple[str, ...]:
    """The id fields of a command, result or event class (looked up once per class)."""
    names = _ID_FIELDS_OF.get(kind)
    if names is None:
        names = ()
        if dataclasses.is_dataclass(kind):
            fields = dataclasses.fields(kind)
            names = tuple(f.name for f in fields if f.name in ID_FIELDS)
        _ID_FIELDS_OF[kind] = names
    return names


def _map_ids(value: Any, convert: Callable[[int], int]) -> Any:
    """``value`` with every id field converted (dataclasses are frozen: replaced)."""
    names = _id_fields(type(value))
    if not names:
        return value
    changes = {
        name: convert(getattr(value, name))
        for name in names
        if getattr(value, name) is not None
    }
    return dataclasses.replace(value, **changes) if changes else value


class WorkerPool:
    """N media engines in N processes; see the module doc.

    Must be created on the running loop of the signalling process, like an engine.

    :param config: the whole engine configuration; each worker gets a copy with its
        own share of the port range.
    :param workers: how many processes (at least 1).
    :param on_event: receives every media event, with global ids.
    :param priority: one of :data:`PRIORITIES`, how the workers ask to be scheduled.
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        workers: int,
        on_event: EventCallback,
        loop: asyncio.AbstractEventLoop | None = None,
        priority: str = "realtime",
    ) -> None:
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {PRIORITIES}, got {priority!r}")
        self.config = config
        self.workers = workers
        self.priority = priority
        self._on_event = on_event
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._pending_events: collections.deque[MediaEvent] = collections.deque()
        self._delivering = False
        self._endpoints = [0] * workers  # live endpoints per worker, for placement
        self._owner: dict[int, int] = {}  # endpoint id -> worker (for the counts)
        self.closed = False
        self._pipes: list[multiprocessing.connection.Connection] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        shares = split_ports(config.port_min, config.port_max, workers)
        try:
            for index, (low, high) in enumerate(shares):
                share = dataclasses.replace(config, port_min=low, port_max=high)
                self._start(index, share)
            for index, pipe in enumerate(self._pipes):
                if not pipe.poll(START_TIMEOUT) or pipe.recv() != "ready":
                    raise WorkerDied(f"media worker {index} did not start")
                self._loop.add_reader(pipe.fileno(), self._on_readable, index)
        except (OSError, EOFError, WorkerDied) as exc:
            self.close()
            if isinstance(exc, WorkerDied):
                raise
            raise WorkerDied(f"media workers did not start: {exc}") from None
        logger.info("%d media workers started (ports %s)", workers, shares)

    def _start(self, index: int, share: EngineConfig) -> None:
        """One worker: ``python -m media.workers FD INDEX PRIORITY``, settings sent first.

        A plain subprocess, not multiprocessing's spawn, which would import the
        switch's own main module again in every worker.
        """
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "media.workers",
                    str(theirs.fileno()),
                    str(index),
                    self.priority,
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        pipe = multiprocessing.connection.Connection(ours.detach())
        self._processes.append(process)
        self._pipes.append(pipe)
        pipe.send(share)

    # ---------------------------------------------------------------- public API

    def execute(self, command: Command) -> Result:
        """Carry out ``command`` in the worker that owns it; see the module doc."""
        if self.closed:
            raise MediaError("the media workers are stopped")
        index = self._route(command)
        local = _map_ids(command, lambda value: self._local(value, index))
        if type(command) in ONEWAY:
            try:
                self._pipes[index].send(_Oneway(local))
            except (OSError, ValueError) as exc:
                raise WorkerDied(f"media worker {index}: {exc}") from None
            self._count(command, Done(), index)
            return Done()
        result = self._call(index, local)
        result = _map_ids(result, lambda value: value * self.workers + index)
        self._count(command, result, index)
        return result  # type: ignore[no-any-return]

    def endpoint_count(self) -> int:
        return sum(self._endpoints)

    def close(self) -> None:
        """Stop every worker (closing its endpoints) and wait for it to exit."""
        if self.closed:
            return
        self.closed = True
        for pipe in self._pipes:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(pipe.fileno())
            with contextlib.suppress(OSError, ValueError):
                pipe.send(_Stop())
        for index, process in enumerate(self._processes):
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.warning("media worker %d did not stop: killed", index)
                process.kill()
                process.wait(STOP_TIMEOUT)
        for pipe in self._pipes:
            pipe.close()

    # ---------------------------------------------------------------- routing

    def _route(self, command: Command) -> int:
        """The worker a command goes to (placement for new objects)."""
        if isinstance(command, CreateEndpoint | CreateMixer):
            if command.near is not None:
                return command.near % self.workers
            return min(range(self.workers), key=self._endpoints.__getitem__)
        owners: set[int] = {
            int(getattr(command, name)) % self.workers
            for name in ID_FIELDS
            if getattr(command, name, None) is not None
        }
        if len(owners) != 1:
            raise BadCommand(
                f"{type(command).__name__} joins objects of different media workers"
            )
        return owners.pop()

    def _local(self, value: int, index: int) -> int:
        if value % self.workers != index:
            raise BadCommand(f"id {value} does not belong to media worker {index}")
        return value // self.workers

    def _count(self, command: Command, result: Result, index: int) -> None:
        if isinstance(result, EndpointCreated):
            self._endpoints[index] += 1
            self._owner[result.endpoint_id] = index
        elif type(command).__name__ == "CloseEndpoint":
            owner = self._owner.pop(getattr(command, "endpoint_id", -1), None)
            if owner is not None:
                self._endpoints[owner] -= 1

    # ---------------------------------------------------------------- the pipes

    def _call(self, index: int, command: Command) -> Result:
        pipe = self._pipes[index]
        try:
            pipe.send(command)
            while True:
                if not pipe.poll(COMMAND_TIMEOUT):
                    raise WorkerDied(f"media worker {index} did not answer")
                kind, payload = pipe.recv()
                if kind == "event":
                    self._pending_events.append(self._global_event(payload, index))
                    continue
                if kind == "oneway_error":
                    _log_oneway_error(index, payload)
                    continue
                break
        except (OSError, EOFError) as exc:
            raise WorkerDied(f"media worker {index}: {exc}") from None
        if self._pending_events:
            self._loop.call_soon(self._deliver)
        if kind == "error":
            error_type, message = payload
            raise error_type(message)
        return payload  # type: ignore[no-any-return]

    def _on_readable(self, index: int) -> None:
        pipe = self._pipes[index]
        try:
            while pipe.poll():
                kind, payload = pipe.recv()
                if kind == "event":
                    self._pending_events.append(self._global_event(payload, index))
                elif kind == "oneway_error":
                    _log_oneway_error(index, payload)
                else:  # a result nobody waits for: a protocol bug, say so
                    logger.error("media worker %d: stray %s %r", index, kind, payload)
        except (OSError, EOFError):
            logger.error("media worker %d is gone", index)
            self._loop.remove_reader(pipe.fileno())
        self._deliver()

    def _global_event(self, event: MediaEvent, index: int) -> MediaEvent:
        if isinstance(event, EngineLoad):  # says which worker it is about
            return dataclasses.replace(event, worker=index)
        return _map_ids(event, lambda value: value * self.workers + index)  # type: ignore[no-any-return]

    def _deliver(self) -> None:
        """Hand queued events to the owner in order (not re-entrantly)."""
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._pending_events:
                event = self._pending_events.popleft()
                try:
                    self._on_event(event)
                except Exception:  # the owner's bug must not stop the media events
                    logger.exception("media event callback failed for %r", event)
        finally:
            self._delivering = False


def _log_oneway_error(index: int, payload: tuple[str, str]) -> None:
    command, message = payload
    logger.warning("media worker %d: %s failed: %s", index, command, message)


# ---------------------------------------------------------------------- the worker


def _worker_main(fd: int, index: int, priority: str = "realtime") -> None:
    """A worker process: one engine on its own uvloop, commands from the pipe."""
    import uvloop

    # Ctrl-C reaches the whole process group: the switch stops us in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pipe = multiprocessing.connection.Connection(fd)
    config = pipe.recv()

    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s %(levelname)s media-{index}[{os.getpid()}] %(message)s",
    )
    granted = raise_priority(priority)
    if granted != priority:  # said where the operator looks: the switch's own log
        logger.warning(
            "media worker %d asked for %s priority, runs at %s (no CAP_SYS_NICE?)",
            index,
            priority,
            granted,
        )
    uvloop.run(_serve(pipe, config))


async def _serve(
    pipe: multiprocessing.connection.Connection, config: EngineConfig
) -> None:
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()

    def send_event(event: MediaEvent) -> None:
        # the switch gone: the reader below ends the worker
        with contextlib.suppress(OSError, ValueError):
            pipe.send(("event", event))

    engine = MediaEngine(config, on_event=send_event)
    # A full collection walking the worker's numpy tables and prompt caches stalls
    # every stream it plays; freeze what start-up made and collect seldom (the
    # per-packet path allocates little that lives long).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)

    def oneway(command: Command) -> None:
        try:
            engine.execute(command)
        except MediaError as exc:
            pipe.send(("oneway_error", (type(command).__name__, str(exc))))
        except Exception as exc:  # a bug: report it, keep the other calls
            logger.exception("command %r failed", command)
            pipe.send(("oneway_error", (type(command).__name__, f"bug: {exc!r}")))

    def on_command() -> None:
        try:
            while pipe.poll():
                command = pipe.recv()
                if isinstance(command, _Stop):
                    stopped.set_result(None)
                    return
                if isinstance(command, _Oneway):
                    oneway(command.command)
                    continue
                try:
                    reply: tuple[str, Any] = ("result", engine.execute(command))
                except MediaError as exc:
                    reply = ("error", (type(exc), str(exc)))
                except Exception as exc:  # a bug: report it, keep the other calls
                    logger.exception("command %r failed", command)
                    reply = ("error", (MediaError, f"media worker bug: {exc!r}"))
                pipe.send(reply)
        except (OSError, EOFError):
            if not stopped.done():
                stopped.set_result(None)

    loop.add_reader(pipe.fileno(), on_command)
    pipe.send("ready")
    try:
        await stopped
    finally:
        loop.remove_reader(pipe.fileno())
        engine.close()
        pipe.close()


if __name__ == "__main__":
    # Run as media.workers, not __main__: the commands pickled by the switch name
    # this module's classes (``_Stop``), which must be the ones we compare with.
    from media.workers import _worker_main as run_worker

    run_worker(int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:4])
