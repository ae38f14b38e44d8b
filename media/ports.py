"""RTP/RTCP port-pair allocation from a configured range (RFC 3550 section 11).

RFC 3550 section 11 asks for RTP on an even port and RTCP on the next odd port, so the
allocator hands out even RTP ports and reserves ``port + 1`` for RTCP along with it.  A
released pair goes to the *back* of the free queue: a port that just carried a call is the
last one to be handed out again, which keeps late packets of a finished call away from a
new one for as long as the range allows.  A port is never handed out twice before it is
released, and running out raises :class:`PortsExhausted` with the range in the message
instead of silently reusing a busy pair.

:class:`PortAllocator` only does bookkeeping; :func:`bind_pair` opens the two
non-blocking UDP sockets and skips pairs some other process holds (they are put back at
the end of the queue, so a permanently busy port costs one failed ``bind`` per cycle).
"""

from __future__ import annotations

import _socket
import collections
import logging
import socket

logger = logging.getLogger(__name__)

# RFC 3550 section 11: RTP uses an even port, RTCP the next higher (odd) port.
RTCP_PORT_OFFSET = 1
# Kernel receive buffer of an RTP socket, sized for a burst of a few hundred 172-byte
# packets (the loop stalled).  Only the RTP socket's receive buffer is set: an RTCP
# socket carries one compound every 5 s, and a UDP send never queues more than a packet
# or two per socket at 50 packets a second, so the defaults do there: one setsockopt
# per pair instead of four.
SOCKET_BUFFER_BYTES = 256 * 1024
# Linux creates the socket non-blocking (no separate ioctl per socket); elsewhere 0.
_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)
_UDP_TYPE = int(socket.SOCK_DGRAM | _NONBLOCK)
# The sockets are the C type itself, not socket.socket: that subclass only adds a
# Python __init__ and close() (for makefile's reference counting, unused here) around
# the same system calls, and with four sockets opened and closed per call those two
# frames cost more than the rest of the Python around them.
UdpSocket = _socket.socket


class PortsExhausted(Exception):
    """Every even port of the configured range is allocated (or unbindable)."""


class PortAllocator:
    """Hands out even RTP ports (RTCP = RTP + 1) from ``[port_min, port_max]``.

    :param port_min: first port of the range (rounded up to even).
    :param port_max: last port of the range, inclusive; the last pair must fit in it.
    """

    __slots__ = ("_free", "_in_use", "port_max", "port_min")

    def __init__(self, port_min: int, port_max: int) -> None:
        first = port_min + (port_min & 1)
        if not 0 < first < port_max <= 65535:
            raise ValueError(f"bad RTP port range {port_min}-{port_max}")
        self.port_min = port_min
        self.port_max = port_max
        self._free: collections.deque[int] = collections.deque(
            range(first, port_max, 2)
        )
        self._in_use: set[int] = set()

    @property
    def capacity(self) -> int:
        """Number of port pairs in the range."""
        return len(self._free) + len(self._in_use)

    @property
    def in_use(self) -> int:
        """Number of pairs currently allocated."""
        return len(self._in_use)

    def allocate(self) -> int:
        """Take the least recently released even port.

        :raises PortsExhausted: when no pair is free.
        """
        if not self._free:
            raise PortsExhausted(
                f"all {self.capacity} RTP port pairs of "
                f"{self.port_min}-{self.port_max} are in use"
            )
        port = self._free.popleft()
        self._in_use.add(port)
        return port

    def release(self, port: int) -> None:
        """Give ``port`` back; it is reused only after every other free pair.

        :raises ValueError: if ``port`` is not allocated (double release is a bug).
        """
        try:
            self._in_use.remove(port)
        except KeyError:
            raise ValueError(f"RTP port {port} is not allocated") from None
        self._free.append(port)

    def is_allocated(self, port: int) -> bool:
        """Whether ``port`` is currently handed out."""
        return port in self._in_use


def _open_udp(host: str, port: int, *, receive_buffer: bool) -> UdpSocket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = UdpSocket(family, _UDP_TYPE)
    try:
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        sock.bind((host, port))
        if not _NONBLOCK:
            sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def bind_pair(allocator: PortAllocator, host: str) -> tuple[int, UdpSocket, UdpSocket]:
    """Allocate a pair and bind non-blocking RTP and RTCP sockets on ``host``.

    Pairs that fail to bind (held by another process) are released to the back of the
    queue and the next pair is tried; each pair is tried at most once per call.

    :returns: ``(rtp_port, rtp_socket, rtcp_socket)``.
    :raises PortsExhausted: when no pair of the range can be bound.
    """
    for _ in range(allocator.capacity):
        port = allocator.allocate()
        try:
            rtp = _open_udp(host, port, receive_buffer=True)
        except OSError as exc:
            logger.debug("RTP port %s:%d busy: %s", host, port, exc)
            allocator.release(port)
            continue
        try:
            rtcp = _open_udp(host, port + RTCP_PORT_OFFSET, receive_buffer=False)
        except OSError as exc:
            logger.debug("RTCP port %s:%d busy: %s", host, port + 1, exc)
            rtp.close()
            allocator.release(port)
            continue
        return port, rtp, rtcp
    raise PortsExhausted(
        f"no bindable RTP port pair left in {allocator.port_min}-{allocator.port_max}"
        f" on {host}"
    )
