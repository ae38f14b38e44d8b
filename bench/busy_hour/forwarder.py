"""The side-by-side reference: the least a Python process can do to relay the streams.

Run by the bench as ``python -m bench.busy_hour.forwarder --pairs N ...``.  It binds
``2 N`` UDP sockets, one pair per call, and forwards whatever arrives on one socket of
a pair out of the other, to the RTP peer's other side: no RTP parsing, no statistics,
no header rewrite, no timers.  The RTP peer (``rtpgen --fixed``) sends the same 50
packets a second per leg that the switch's legs carried at their peak, so the
forwarder's CPU is Python's own floor for that packet rate on this machine, and the
switch's CPU over it says how close ccswitch comes.  The loop is ``epoll`` +
``recv_into`` one reused buffer + ``sendto`` a memoryview slice: what bench/media.py's
reference relay does through uvloop, without an event loop at all.
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Final

from media.priority import PRIORITIES, raise_priority

LOOPBACK: Final = "127.0.0.1"
RECEIVE_BUFFER: Final = 1 << 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, required=True)
    parser.add_argument("--peer-port", type=int, required=True, help="RTP peer's first")
    parser.add_argument("--ports", required=True, help="JSON port lists written here")
    parser.add_argument("--result", required=True)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--priority", choices=PRIORITIES, default="realtime")
    args = parser.parse_args(argv)
    raise_priority(args.priority)  # what the switch's media workers ask for

    sockets: list[socket.socket] = []
    for _ in range(2 * args.pairs):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((LOOPBACK, 0))
        sock.setblocking(False)
        sockets.append(sock)
    # socket 2i faces the callers' side of the peer, 2i + 1 the operators' side
    callers = (LOOPBACK, args.peer_port)
    operators = (LOOPBACK, args.peer_port + 2)
    route = {}
    for i, sock in enumerate(sockets):
        partner = sockets[i ^ 1]
        route[sock.fileno()] = (
            sock.recv_into,
            partner.sendto,
            callers if i % 2 else operators,
        )
    Path(args.ports).write_text(
        json.dumps(
            {
                "callers": [s.getsockname()[1] for s in sockets[0::2]],
                "operators": [s.getsockname()[1] for s in sockets[1::2]],
            }
        )
    )
    stopping = [False]
    signal.signal(signal.SIGTERM, lambda *_: stopping.__setitem__(0, True))
    poller = select.epoll()
    for fd in route:
        poller.register(fd, select.EPOLLIN)
    buffer = bytearray(2048)
    view = memoryview(buffer)
    forwarded = 0
    started = time.monotonic()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    while not stopping[0] and time.monotonic() - started < args.max_seconds:
        for fd, _ in poller.poll(0.1):
            recv_into, sendto, destination = route[fd]
            while True:
                try:
                    size = recv_into(buffer)
                except BlockingIOError:
                    break
                try:
                    sendto(view[:size], destination)
                    forwarded += 1
                except OSError:
                    pass
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic() - started
    used = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    Path(args.result).write_text(
        json.dumps({"forwarded": forwarded, "cpu_seconds": used, "wall_s": wall})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
