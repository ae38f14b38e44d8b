"""Wiring: builds the switch from a :class:`~ccswitch.config.Config` and runs it.

This is the only place that knows every layer. It creates the event bus, the store,
the SIP stack with its registrar and keep-alives, and hands each the part of the
configuration it needs; the layers themselves never read the configuration.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import time

from pyee import EventEmitter

from ccswitch.config import Config
from ccswitch.logs import SipTrace, get_sip_trace
from ccswitch.store import Store
from switch.events import new_bus
from switch.qualify import Qualifier
from switch.registrar import Registrar
from switch.sip.auth import DigestServer
from switch.sip.timers import Timers
from switch.stack import SipStack
from switch.transport import Address
from switch.users import Authenticator, User, UserDirectory

logger = logging.getLogger(__name__)

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
        await self.registrar.start()
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
        logger.info("ccswitch ready (%d users, realm %s)", len(self.users), sip.realm)

    async def stop(self) -> None:
        await self.qualifier.stop()
        await self.stack.stop()
        await self.store.close()
        if self.trace is not None:
            self.trace.close()
        logger.info("ccswitch stopped")


async def serve(config: Config) -> None:
    """Run the switch until cancelled (Ctrl-C or SIGTERM via the CLI)."""
    switch = Switch(config)
    await switch.start()
    try:
        await asyncio.Event().wait()
    finally:
        await switch.stop()
