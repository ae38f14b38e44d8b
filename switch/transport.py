"""SIP transports: UDP and TCP on one port, TLS beside them (RFC 3261 section 18).

This is the asyncio rim around the sans-IO core. It owns the sockets and nothing else:
bytes come in with the address they came from and go up to one callback; bytes go out
to an :data:`Address`. Stream transports frame messages by Content-Length (section
18.3) and keep connections open for reuse in both directions, so that a phone behind
NAT that registered over TCP is reached over that same connection (RFC 5626 style
flow reuse without the Outbound extension itself).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from switch.sip.errors import BadMessage
from switch.sip.message import StreamFramer

logger = logging.getLogger(__name__)

#: (transport, host, port); transport is "UDP", "TCP" or "TLS" as in a Via header.
Address = tuple[str, str, int]

# RFC 3261 section 18.1.1: a message within 200 bytes of the path MTU must go over a
# congestion-controlled transport. The limit itself comes from the configuration.
DEFAULT_UDP_MAX_SIZE = 1300

# RFC 5626 section 4.4.1: a double CRLF is a keep-alive ping, a single CRLF the pong.
KEEPALIVE_PONG = b"\r\n"

# Bytes asked for the SIP UDP socket's receive buffer (SO_RCVBUF).
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024

# Bytes we queue towards one stream peer before deciding it does not read.
MAX_STREAM_BUFFER = 1024 * 1024

#: Stream connections open at once; a new one beyond this is refused at accept.
DEFAULT_MAX_CONNECTIONS = 4096

MessageCallback = Callable[[bytes, Address], None]


@dataclass(frozen=True, kw_only=True, slots=True)
class ListenAddress:
    """Where a transport listens, as configured."""

    host: str
    port: int


class TransportError(Exception):
    """A message could not be handed to the network (no route, connection refused)."""


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: Transports) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._owner._deliver(data, ("UDP", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a phone that went away: the transaction's
        # timers notice; one DEBUG line is all it is worth.
        logger.debug("UDP error: %s", exc)


class _StreamProtocol(asyncio.Protocol):
    """One TCP or TLS connection: frames messages and remembers the peer."""

    def __init__(self, owner: Transports, transport_name: str) -> None:
        self._owner = owner
        self._name = transport_name
        self._framer = StreamFramer()
        self.peer: Address | None = None
        self.transport: asyncio.Transport | None = None
        self.last_used = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they behave as one.
        self.transport = cast(asyncio.Transport, transport)
        if len(self._owner._connections) >= self._owner.max_connections:
            logger.warning(
                "refusing a %s connection: %d open",
                self._name,
                len(self._owner._connections),
            )
            self.transport.abort()
            return
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = (self._name, host, port)
        self.last_used = asyncio.get_running_loop().time()
        self._owner._connections[self.peer] = self
        logger.debug("%s connection from %s:%s", self._name, host, port)

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None and self.transport is not None
        self.last_used = asyncio.get_running_loop().time()
        try:
            messages = self._framer.feed(data)
        except BadMessage as exc:
            # A stream that loses framing cannot be resynchronised (section 18.3).
            logger.info("closing %s %s:%s: %s", *self.peer, exc)
            self.transport.close()
            return
        pings = self._framer.take_pings()
        if pings:
            self.transport.write(KEEPALIVE_PONG * pings)
        for message in messages:
            self._owner._deliver(message, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        # Every key naming this connection goes: the peer's address and, for one we
        # opened, the destination we dialled (which may be a host name).
        connections = self._owner._connections
        for key in [key for key, conn in connections.items() if conn is self]:
            del connections[key]
        logger.debug("connection to %s closed", self.peer)


class Transports:
    """Every listening socket of the switch, plus the stream connections in use.

    :param on_message: called with the raw bytes of each received message and the
        address it came from; it must not raise (the stack catches its own errors).
    :param udp_max_size: a request larger than this goes over TCP (section 18.1.1).
    :param tcp_idle_timeout: idle stream connections are closed after this long.
    """

    def __init__(
        self,
        *,
        on_message: MessageCallback,
        udp_max_size: int = DEFAULT_UDP_MAX_SIZE,
        tcp_idle_timeout: float = 300.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self._on_message = on_message
        self.max_connections = max_connections
        self.udp_max_size = udp_max_size
        self.tcp_idle_timeout = tcp_idle_timeout
        self._udp: asyncio.DatagramTransport | None = None
        self._servers: list[asyncio.Server] = []
        self._connections: dict[Address, _StreamProtocol] = {}
        self._tls_client_context: ssl.SSLContext | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.local: dict[str, tuple[str, int]] = {}

    async def listen(
        self,
        *,
        host: str,
        port: int,
        tls_port: int | None = None,
        tls_host: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """Open UDP and TCP on ``host:port`` and, if configured, TLS on ``tls_port``."""
        loop = asyncio.get_running_loop()
        bind_host = host.strip("[]")
        # Section 25.1: an IPv6 address in a Via or URI is an IPv6reference, bracketed.
        host = f"[{bind_host}]" if ":" in bind_host else bind_host
        if tls_host is not None:
            tls_host = tls_host.strip("[]")
            tls_host = f"[{tls_host}]" if ":" in tls_host else tls_host
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(bind_host, port)
        )
        self._udp = udp
        sock = udp.get_extra_info("socket")
        # A burst of REGISTERs after an outage must queue, not be dropped by the
        # kernel: ask for a large receive buffer (capped by net.core.rmem_max).
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        except OSError as exc:
            logger.debug("cannot enlarge the UDP receive buffer: %s", exc)
        actual_port = sock.getsockname()[1]
        self.local["UDP"] = (host, actual_port)

        tcp = await loop.create_server(
            lambda: _StreamProtocol(self, "TCP"),
            bind_host,
            actual_port,
            reuse_address=True,
        )
        self._servers.append(tcp)
        self.local["TCP"] = (host, actual_port)

        if tls_port is not None and tls_context is not None:
            tls_bind = (tls_host or host).strip("[]")
            tls = await loop.create_server(
                lambda: _StreamProtocol(self, "TLS"),
                tls_bind,
                tls_port,
                ssl=tls_context,
                reuse_address=True,
            )
            self._servers.append(tls)
            tls_actual = tls.sockets[0].getsockname()[1]
            self.local["TLS"] = (tls_host or host, tls_actual)
            self._tls_client_context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH
            )

        self._reaper = asyncio.create_task(self._reap_idle())
        logger.info(
            "listening on %s",
            ", ".join(f"{t} {h}:{p}" for t, (h, p) in self.local.items()),
        )

    async def close(self) -> None:
        """Close every socket and connection; idempotent."""
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for conn in list(self._connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        self._connections.clear()
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    def send(self, data: bytes, destination: Address) -> None:
        """Put ``data`` on the wire towards ``destination`` without waiting.

        A stream destination with no open connection gets one opened in the
        background; a failure to connect is logged (the transaction's timer then
        reports the loss, as for an unanswered UDP request).
        """
        transport, host, port = destination
        if transport == "UDP":
            if len(data) > self.udp_max_size and data[:4] != b"SIP/":
                # TODO: RFC 3261 18.1.1 says to retry such a request over TCP; the
                # transaction's Via already names UDP, so we only log until the
                # stack can rewrite the Via before sending.
                logger.debug("request of %d bytes exceeds udp_max_size", len(data))
            if self._udp is not None:
                try:
                    self._udp.sendto(data, (host.strip("[]"), port))
                except (OSError, ValueError) as exc:  # no route, or a name to resolve
                    # TODO: RFC 3263 DNS resolution of a sent-by host name; without it a
                    # response to a Via with a name and no received= is not delivered.
                    logger.debug("UDP send to %s:%s failed: %s", host, port, exc)
            return

        conn = self._connections.get(destination)
        if conn is not None and conn.transport is not None:
            if conn.transport.is_closing():
                del self._connections[destination]
            else:
                conn.transport.write(data)
                conn.last_used = asyncio.get_running_loop().time()
                if conn.transport.get_write_buffer_size() > MAX_STREAM_BUFFER:
                    # The peer stopped reading: do not queue its answers forever.
                    logger.info("closing %s %s:%s: it does not read", *destination)
                    conn.transport.abort()
                return
        asyncio.get_running_loop().create_task(
            self._connect_and_send(data, destination)
        )

    def has_connection(self, destination: Address) -> bool:
        """True if a stream connection to ``destination`` is open."""
        return destination in self._connections

    # -- internal ---------------------------------------------------------------

    async def _connect_and_send(self, data: bytes, destination: Address) -> None:
        transport, host, port = destination
        loop = asyncio.get_running_loop()
        context = self._tls_client_context if transport == "TLS" else None
        try:
            _, proto = await loop.create_connection(
                lambda: _StreamProtocol(self, transport),
                host.strip("[]"),
                port,
                ssl=context,
            )
        except OSError as exc:
            logger.info("cannot connect to %s %s:%s: %s", transport, host, port, exc)
            return
        assert proto.transport is not None
        # The peer's real address is what we dialled, keep that as the key too.
        self._connections[destination] = proto
        proto.transport.write(data)

    def _deliver(self, data: bytes, source: Address) -> None:
        try:
            self._on_message(data, source)
        except Exception:  # the network must never stop a transport
            logger.exception("unhandled error for a message from %s:%s", *source[1:])

    async def _reap_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(1.0, self.tcp_idle_timeout / 4))
            cutoff = loop.time() - self.tcp_idle_timeout
            for conn in list(self._connections.values()):
                if conn.last_used < cutoff and conn.transport is not None:
                    logger.debug("closing idle connection %s", conn.peer)
                    conn.transport.close()
