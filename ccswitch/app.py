"""Wiring: builds the switch from a :class:`~ccswitch.config.Config` and runs it.

This is the only place that knows every layer. It creates the event bus, the store,
the SIP stack with its registrar and keep-alives, and hands each the part of the
configuration it needs; the layers themselves never read the configuration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import secrets
import ssl
import time

from pyee import EventEmitter

from ccswitch.acd_runtime import AcdRuntime
from ccswitch.config import Config
from ccswitch.ivr_runtime import IvrRuntime
from ccswitch.logs import SipTrace, get_sip_trace
from ccswitch.store import Store
from media.commands import MediaEvent
from media.engine import EngineConfig, MediaEngine
from media.workers import WorkerPool
from switch.apps import BUILTIN_APPS, tone
from switch.b2bua import B2bua, Limits
from switch.cdr import CdrRecorder
from switch.dialplan import Dialplan, Rule, ToApp
from switch.events import new_bus
from switch.leg import Ringback
from switch.overload import OverloadGuard, Thresholds, watch_loop_lag
from switch.qualify import Qualifier
from switch.registrar import Registrar
from switch.session import CallSession
from switch.sip.auth import DigestServer
from switch.sip.timers import Timers
from switch.stack import SipStack
from switch.transport import Address
from switch.trunks import Trunk, Trunks
from switch.users import Authenticator, User, UserDirectory

logger = logging.getLogger(__name__)

# Allocations (net of frees) between generation-0 collections; see tune_gc.
GC_THRESHOLD = 20_000

# aiosqlite logs every statement at DEBUG; our own DEBUG is what a trace needs.
logging.getLogger("aiosqlite").setLevel(logging.INFO)


def build_users(config: Config) -> UserDirectory:
    """Users from the configuration, hashed to HA1 at once (RFC 8760)."""
    realm = config.sip.realm
    users = []
    for entry in config.users:
        extra = {
            "display_name": entry.display_name,
            "allow_outbound": entry.allow_outbound,
        }
        if entry.password is not None:
            users.append(
                User.from_password(
                    name=entry.name, realm=realm, password=entry.password, **extra
                )
            )
        else:
            assert entry.ha1_md5 is not None and entry.ha1_sha256 is not None
            users.append(
                User(
                    name=entry.name,
                    realm=realm,
                    ha1_md5=entry.ha1_md5,
                    ha1_sha256=entry.ha1_sha256,
                    display_name=entry.display_name,
                    allow_outbound=entry.allow_outbound,
                )
            )
    return UserDirectory(users)


def build_trunks(config: Config) -> list[Trunk]:
    """Trunks from the ``[[trunks]]`` entries (issue 4)."""
    return [
        Trunk(
            name=entry.name,
            host=entry.host,
            port=entry.port,
            transport=entry.transport,
            inbound_sources=entry.inbound_sources,
            inbound_username=entry.inbound_username,
            inbound_password=entry.inbound_password,
            register=entry.register,
            username=entry.username,
            password=entry.password,
            domain=entry.domain,
            expires=entry.expires,
            options_interval=entry.options_interval,
            options_failures=entry.options_failures,
            max_calls=entry.max_calls,
            numbering=entry.numbering,
            latching=entry.latching,
        )
        for entry in config.trunks
    ]


def build_dialplan_rules(config: Config) -> list[Rule]:
    """Dialplan rules from the ``[[dialplan]]`` entries (issue 4)."""
    return [
        Rule(
            pattern=entry.pattern,
            to=entry.to,
            from_=entry.from_,
            strip=entry.strip,
            prepend=entry.prepend,
            args=entry.args,
        )
        for entry in config.dialplan
    ]


class Switch:
    """One running ccswitch: start it, let it serve, stop it."""

    def __init__(self, config: Config, *, bus: EventEmitter | None = None) -> None:
        self.config = config
        self.bus = bus if bus is not None else new_bus()
        self.store = Store(config.store.path)
        # The CLI opened the trace when it set up logging; a library user may not have.
        trace = get_sip_trace()
        if not trace.enabled and config.sip.trace_file:
            trace = SipTrace(config.sip.trace_file)
        self.trace = trace if trace.enabled else None
        sip = config.sip
        self.stack = SipStack(
            timers=Timers(t1=sip.t1, t2=sip.t2, t4=sip.t4),
            user_agent=sip.user_agent,
            udp_max_size=sip.udp_max_size,
            tcp_idle_timeout=sip.tcp_idle_timeout,
            trace=self._trace if self.trace is not None else None,
        )
        self.users = build_users(config)
        self.authenticator = Authenticator(
            directory=self.users,
            server=DigestServer(
                realm=sip.realm,
                secret=secrets.token_bytes(32),
                algorithms=sip.digest_algorithms,
            ),
        )
        reg = config.registrar
        self.registrar = Registrar(
            authenticator=self.authenticator,
            store=self.store,
            min_expires=reg.min_expires,
            max_expires=reg.max_expires,
            default_expires=reg.default_expires,
            bus=self.bus,
            clock=time.time,
        )
        self.qualifier = Qualifier(
            stack=self.stack,
            registrar=self.registrar,
            interval=reg.qualify_interval,
            timeout_count=reg.qualify_timeout_count,
            bus=self.bus,
        )
        self.stack.handlers["REGISTER"] = self.registrar.handle_register
        # trunks, dialplan, CDRs (issue 4)
        self.trunks = Trunks(
            build_trunks(config),
            stack=self.stack,
            bus=self.bus,
            digest_server=self.authenticator.server,
        )
        self.dialplan = Dialplan(
            rules=build_dialplan_rules(config),
            users=self.users,
            trunks=self.trunks.names(),
            numbering=self.trunks.numbering(),
            trunk_available=self.trunks.available,
        )
        self.cdr = CdrRecorder(bus=self.bus, store=self.store)
        # the IVR (issue 5): flows, prompts, demo CRM; the ACD sets ivr.services.queue
        self.ivr = IvrRuntime(config.ivr, bus=self.bus, store=self.store)
        # the ACD (issue 6): queues and agents; the IVR hands callers over by its hook
        self.acd = AcdRuntime(
            config,
            bus=self.bus,
            store=self.store,
            registrar=self.registrar,
            prompt_library=self.ivr.registry.library,
        )
        self.ivr.services.queue = self.acd.ivr_hook
        # The media engine and the B2BUA need the running loop: made in start().
        self.engine: MediaEngine | WorkerPool | None = None
        self.b2bua: B2bua | None = None
        self.overload: OverloadGuard | None = None
        self._lag_watch: asyncio.Future[None] | None = None

    def _start_calls(self) -> None:
        """Create the media engine and the B2BUA, and put its handlers on the stack."""
        sip = self.config.sip
        rtp = self.config.rtp
        # TODO: a separate media address setting; binding SIP to 0.0.0.0 would put
        # 0.0.0.0 in our SDP.
        engine_config = EngineConfig(
            host=sip.listen_host,
            port_min=rtp.port_low,
            port_max=rtp.port_high,
            load_reports=True,
        )
        if rtp.media_workers:
            self.engine = WorkerPool(
                engine_config,
                workers=rtp.media_workers,
                on_event=self._on_media_event,
                priority=rtp.media_priority,
            )
        else:
            self.engine = MediaEngine(engine_config, on_event=self._on_media_event)
        limits = self.config.limits
        # A worker's CPU share says how loaded its media are; in-process, the
        # share is mostly signalling and says nothing about the streams.
        self.overload = OverloadGuard(
            Thresholds(
                cpu=limits.shed_cpu if rtp.media_workers else 0.0,
                late_ticks=limits.shed_late_ticks,
                lag=limits.shed_lag,
            )
        )
        recording = self.config.recording
        self.b2bua = B2bua(
            stack=self.stack,
            engine=self.engine,
            registrar=self.registrar,
            authenticator=self.authenticator,
            dialplan=self.dialplan,
            trunks=self.trunks,
            bus=self.bus,
            limits=Limits(
                max_calls=limits.max_calls,
                max_duration=limits.max_call_duration,
                retry_after=limits.retry_after,
                ring_timeout=limits.ring_timeout,
                ringback=Ringback(limits.ringback),
            ),
            apps={
                **BUILTIN_APPS,
                "tone": self._tone_app,
                "ivr": self.ivr.app,
                **self.acd.apps,
            },
            media_host=sip.listen_host,
            overload=self.overload,
            recordings=recording.folder if recording.enabled else None,
        )
        self.b2bua.install()
        self.acd.attach(self.b2bua)

    async def _tone_app(self, session: CallSession, route: ToApp) -> None:
        """The tone test, its ``prompt`` a prompt name of the IVR's library or a path.

        A bare name ("goodbye") is the IVR prompt in the default language, so the
        demo plays a real file wherever the switch was started from.
        """
        prompt = route.arg("prompt")
        library = self.ivr.registry.library
        if prompt and "/" not in prompt and not prompt.endswith(".wav"):
            language = library.default_language
            if library.exists(prompt, language):
                args = tuple((k, v) for k, v in route.args if k != "prompt")
                path = str(library.path(prompt, language))
                route = dataclasses.replace(route, args=(*args, ("prompt", path)))
        await tone(session, route)

    def _on_media_event(self, event: MediaEvent) -> None:
        if self.b2bua is not None:
            self.b2bua.on_media_event(event)

    def _trace(
        self,
        direction: str,
        data: bytes,
        remote: Address,
        local: tuple[str, int] | None,
    ) -> None:
        assert self.trace is not None
        transport, host, port = remote
        if direction == "in":
            self.trace.received(transport, local or ("", 0), (host, port), data)
        else:
            self.trace.sent(transport, local or ("", 0), (host, port), data)

    async def start(self) -> None:
        await self.store.open()
        self.cdr.start()  # trunks, dialplan, CDRs (issue 4)
        await self.ivr.start()  # the IVR (issue 5)
        await self.registrar.start()
        await self.acd.start()  # the ACD (issue 6): after the bindings are loaded
        self._start_calls()
        sip = self.config.sip
        tls_context = None
        if (
            sip.tls_listen_port is not None
            and sip.tls_certificate
            and sip.tls_private_key
        ):
            tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_context.load_cert_chain(sip.tls_certificate, sip.tls_private_key)
        await self.stack.start(
            host=sip.listen_host,
            port=sip.listen_port,
            tls_port=sip.tls_listen_port,
            tls_host=sip.tls_listen_host,
            tls_context=tls_context,
        )
        self.qualifier.start()
        await self.trunks.start()  # trunks, dialplan, CDRs (issue 4)
        if self.overload is not None and self.config.limits.shed_lag:
            self._lag_watch = asyncio.ensure_future(watch_loop_lag(self.overload))
        tune_gc()
        logger.info("ccswitch ready (%d users, realm %s)", len(self.users), sip.realm)

    async def stop(self) -> None:
        if self._lag_watch is not None:
            self._lag_watch.cancel()
        if self.b2bua is not None:
            await self.b2bua.stop()
        await self.qualifier.stop()
        await self.trunks.stop()  # trunks, dialplan, CDRs (issue 4): before the stack
        await self.stack.stop()
        if self.engine is not None:
            self.engine.close()
        await self.ivr.stop()  # the IVR (issue 5): before the store
        await self.acd.stop()  # the ACD (issue 6): flushes the queue log to the store
        await self.cdr.stop()  # trunks, dialplan, CDRs (issue 4): before the store
        await self.store.close()
        if self.trace is not None:
            self.trace.close()
        logger.info("ccswitch stopped")


def tune_gc() -> None:
    """Fewer, cheaper garbage collections once the switch is up.

    Every call makes thousands of short-lived objects (messages, headers, dialogs);
    with the default thresholds a generation-0 pass runs every 700 allocations and
    full passes walk everything loaded at start-up (config, prompts, modules), which
    measured 13 % of the CPU at 240 calls/s with full passes of ~120 ms, each a stall
    of signalling and of the calls' timers. Frozen start-up objects are never walked
    again, and a larger first threshold lets most call objects die by reference
    count before any pass sees them.
    """
    # TODO: every freed object counts against the first generation's threshold, so
    # with calls ending as fast as they start its young list grows far past 20,000
    # (99,000 seen at 1250 legs) and one pass takes up to ~0.2 s of CPU; a pass of
    # generation 0 on a timer every 100 ms would bound it.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    if _report_gc_pause not in gc.callbacks:
        gc.callbacks.append(_report_gc_pause)


# A collection this long stalls every call's signalling timers: worth a warning.
GC_PAUSE_WARNING = 0.1
_gc_started = (0.0, 0.0)


def _report_gc_pause(phase: str, info: dict[str, int]) -> None:
    """Log a collection that held the process for over :data:`GC_PAUSE_WARNING`,
    with the CPU it used: far less than the pause means the process was waiting for
    a core, not collecting."""
    global _gc_started
    if phase == "start":
        _gc_started = (time.perf_counter(), time.thread_time())
        return
    took = time.perf_counter() - _gc_started[0]
    if took >= GC_PAUSE_WARNING:
        logger.warning(
            "garbage collection of generation %d took %.0f ms, %.0f ms of CPU "
            "(%d objects freed)",
            info["generation"],
            took * 1000.0,
            (time.thread_time() - _gc_started[1]) * 1000.0,
            info["collected"],
        )


async def serve(config: Config) -> None:
    """Run the switch until cancelled (Ctrl-C or SIGTERM via the CLI).

    A start that fails half-way (port taken, bad certificate) stops what did start:
    an open aiosqlite connection owns a non-daemon thread and would keep the
    process alive after the error was reported.
    """
    switch = Switch(config)
    try:
        await switch.start()
        await asyncio.Event().wait()
    finally:
        try:
            await switch.stop()
        finally:
            await switch.store.close()
