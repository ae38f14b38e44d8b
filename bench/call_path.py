"""The call path in one process: a real ccswitch and a minimal caller and callee.

Run as ``python -m bench.call_path [--calls 2000] [--rtp-packets 10]``. It answers
"how much CPU does one bridged call cost the switch" without SIPp, the kernel's
scheduling of three processes, or a search for a maximum rate: the switch (the same
:class:`~ccswitch.app.Switch` that ``ccswitch serve`` runs, on the bench's demo
configuration: media in-process, keep-alives and shedding off, CDRs written) and the
two peers share one uvloop loop on loopback, and the figure is the process's CPU time
per call, measured twice side by side:

``switch``
    caller -> ccswitch -> callee, exactly the flow of ``python -m bench.b2bua``:
    INVITE with an SDP offer -> 200 -> ACK, then ``--rtp-packets`` PCMU packets from
    the caller, each echoed by the callee and relayed back (the caller sends the BYE
    once every echo is back, so the relay is always part of the cost), BYE -> 200.
``direct``
    the same caller and callee talking to each other with no switch: the peers' own
    cost, which is subtracted.

Both peers build their messages from templates and read responses with a few string
operations, so their cost does not move when the switch's parser does. Up to
``--window`` calls are in flight at once. Under ``valgrind --tool=callgrind`` the
instruction count of a run is repeatable, which is how a change too small for the
noise of a shared box can still be measured; ``--profile FILE`` writes a cProfile of
the switch run. Loopback only, bounded by ``--calls`` and ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import re
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import uvloop

from bench.b2bua import write_config
from ccswitch.app import Switch
from ccswitch.config import apply_overrides, load_config
from switch.sip.auth import DigestClient

LOOPBACK: Final = "127.0.0.1"
CALLEE_USER: Final = "1002"
CALLEE_PASSWORD: Final = "demo1002"
RTP_PORTS: Final = "10000-29999"  # below the ephemeral ports the SIP sockets get
WARM_UP: Final = 50  # calls before the measured ones (imports, caches, first binds)
RTP_HEADER: Final = bytes([0x80, 0x00])  # version 2, PCMU
PAYLOAD: Final = b"\xff" * 160  # 20 ms of PCMU silence
SDP_PORT = re.compile(r"^m=audio (\d+) ", re.MULTILINE)
SDP_HOST = re.compile(r"^c=IN IP4 (\S+)", re.MULTILINE)


def headers_of(text: str) -> tuple[str, dict[str, str], str]:
    """Start line, the first value of each header (lower-case names), body."""
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    values: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        values.setdefault(name.strip().lower(), value.strip())
    return lines[0], values, body


def uri_in(name_addr: str) -> str:
    start = name_addr.find("<")
    return name_addr[start + 1 : name_addr.find(">")] if start >= 0 else name_addr


def message(start: str, headers: list[tuple[str, str]], body: str = "") -> bytes:
    lines = [start, *(f"{name}: {value}" for name, value in headers)]
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def sdp(port: int) -> str:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\n"
        f"t=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    )


class Peer(asyncio.DatagramProtocol):
    """A UDP SIP socket that hands each datagram to ``on_message``."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.received: asyncio.Queue[str] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_message(data.decode(), addr)

    def on_message(self, text: str, addr: tuple[str, int]) -> None:
        raise NotImplementedError

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)


class Callee(Peer):
    """Answers every INVITE with 200 and its echo port, every BYE with 200.

    Its RTP socket sends every packet straight back where it came from.
    """

    def __init__(self, rtp: socket.socket) -> None:
        super().__init__()
        self.rtp = rtp
        self.rtp_port = rtp.getsockname()[1]
        self.registered: asyncio.Future[None] | None = None
        self.digest = DigestClient(username=CALLEE_USER, password=CALLEE_PASSWORD)
        self.switch: tuple[str, int] | None = None

    def echo(self) -> None:
        while True:
            try:
                data, source = self.rtp.recvfrom(2048)
            except BlockingIOError:
                return
            self.rtp.sendto(data, source)

    def register(self, switch: tuple[str, int], cseq: int, auth: str = "") -> None:
        self.switch = switch
        aor = f"sip:{CALLEE_USER}@{switch[0]}"
        headers = [
            ("Via", f"SIP/2.0/UDP {LOOPBACK}:{self.port};branch=z9hG4bKreg{cseq}"),
            ("From", f"<{aor}>;tag=reg"),
            ("To", f"<{aor}>"),
            ("Call-ID", "register@bench"),
            ("CSeq", f"{cseq} REGISTER"),
            ("Contact", f"<sip:{CALLEE_USER}@{LOOPBACK}:{self.port}>"),
            ("Expires", "3600"),
            ("Max-Forwards", "70"),
        ]
        if auth:
            headers.append(("Authorization", auth))
        self.send(message(f"REGISTER sip:{switch[0]} SIP/2.0", headers), switch)

    def on_message(self, text: str, addr: tuple[str, int]) -> None:
        start, values, _ = headers_of(text)
        if start.startswith("SIP/2.0 "):
            self._on_register_response(start, values)
            return
        method = start.split(" ", 1)[0]
        if method == "ACK":
            return
        reply = [
            ("Via", values["via"]),
            ("From", values["from"]),
            ("To", values["to"] + (";tag=callee" if method == "INVITE" else "")),
            ("Call-ID", values["call-id"]),
            ("CSeq", values["cseq"]),
        ]
        if method == "INVITE":
            reply.append(("Contact", f"<sip:{CALLEE_USER}@{LOOPBACK}:{self.port}>"))
            reply.append(("Content-Type", "application/sdp"))
            self.send(message("SIP/2.0 200 OK", reply, sdp(self.rtp_port)), addr)
        else:
            self.send(message("SIP/2.0 200 OK", reply), addr)

    def _on_register_response(self, start: str, values: dict[str, str]) -> None:
        assert self.registered is not None and self.switch is not None
        status = int(start.split(" ")[1])
        if status == 401 and values["cseq"].startswith("1 "):
            (auth,) = self.digest.authorize(
                values["www-authenticate"],
                method="REGISTER",
                uri=f"sip:{self.switch[0]}",
            )
            self.register(self.switch, 2, auth)
        elif status == 200:
            self.registered.set_result(None)
        else:
            self.registered.set_exception(RuntimeError(f"REGISTER: {start}"))


@dataclass
class CallState:
    number: int
    rtp: socket.socket
    remote_rtp: tuple[str, int] | None = None
    to: str = ""
    contact: str = ""
    echoes: int = 0


@dataclass
class Caller(Peer):
    """Places ``total`` calls to ``target``, ``window`` at a time."""

    target: tuple[str, int] = (LOOPBACK, 0)
    total: int = 0
    window: int = 1
    rtp_packets: int = 0
    started: int = 0
    finished: int = 0
    done: asyncio.Future[None] | None = None
    calls: dict[str, CallState] = field(default_factory=dict)
    mark: int = 0  # finished-call count at which on_mark fires
    on_mark: asyncio.Future[None] | None = None

    def __post_init__(self) -> None:
        super().__init__()

    def start(self) -> None:
        for _ in range(min(self.window, self.total)):
            self._invite()

    def _invite(self) -> None:
        number = self.started
        self.started += 1
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.setblocking(False)
        rtp.bind((LOOPBACK, 0))
        call_id = f"call{number}@bench"
        state = CallState(number=number, rtp=rtp)
        self.calls[call_id] = state
        asyncio.get_running_loop().add_reader(rtp.fileno(), self._on_rtp, call_id)
        target = f"sip:{CALLEE_USER}@{self.target[0]}:{self.target[1]}"
        headers = self._headers(call_id, number, "1 INVITE", target, to=f"<{target}>")
        headers.append(("Contact", f"<sip:caller@{LOOPBACK}:{self.port}>"))
        headers.append(("Content-Type", "application/sdp"))
        body = sdp(rtp.getsockname()[1])
        self.send(message(f"INVITE {target} SIP/2.0", headers, body), self.target)

    def _headers(
        self, call_id: str, number: int, cseq: str, _target: str, *, to: str
    ) -> list[tuple[str, str]]:
        branch = f"z9hG4bK{number}x{cseq.split()[0]}{cseq.split()[1]}"
        return [
            ("Via", f"SIP/2.0/UDP {LOOPBACK}:{self.port};branch={branch};rport"),
            ("From", f"<sip:caller@{LOOPBACK}:{self.port}>;tag=caller{number}"),
            ("To", to),
            ("Call-ID", call_id),
            ("CSeq", cseq),
            ("Max-Forwards", "70"),
        ]

    def on_message(self, text: str, addr: tuple[str, int]) -> None:
        start, values, body = headers_of(text)
        if not start.startswith("SIP/2.0 "):
            return
        state = self.calls.get(values["call-id"])
        status = int(start.split(" ")[1])
        if state is None or status < 200:
            return
        if status >= 300:
            raise RuntimeError(f"call {values['call-id']}: {start}")
        if values["cseq"].endswith("INVITE"):
            if state.to:
                return  # a retransmitted 200: the ACK already went
            state.to = values["to"]
            state.contact = uri_in(values["contact"])
            host = SDP_HOST.search(body)
            port = SDP_PORT.search(body)
            assert host is not None and port is not None
            state.remote_rtp = (host.group(1), int(port.group(1)))
            self._in_dialog(values["call-id"], state, "1 ACK")
            if self.rtp_packets == 0:
                self._in_dialog(values["call-id"], state, "2 BYE")
            else:
                self._send_rtp(state)
        else:
            self._finish(values["call-id"], state)

    def _in_dialog(self, call_id: str, state: CallState, cseq: str) -> None:
        headers = self._headers(call_id, state.number, cseq, "", to=state.to)
        method = cseq.split()[1]
        self.send(message(f"{method} {state.contact} SIP/2.0", headers), self.target)

    def _send_rtp(self, state: CallState) -> None:
        assert state.remote_rtp is not None
        ssrc = (state.number + 1).to_bytes(4, "big")
        for sequence in range(self.rtp_packets):
            header = RTP_HEADER + sequence.to_bytes(2, "big")
            stamp = (sequence * 160).to_bytes(4, "big")
            state.rtp.sendto(header + stamp + ssrc + PAYLOAD, state.remote_rtp)

    def _on_rtp(self, call_id: str) -> None:
        state = self.calls[call_id]
        while True:
            try:
                state.rtp.recv(2048)
            except BlockingIOError:
                return
            state.echoes += 1
            if state.echoes == self.rtp_packets:
                self._in_dialog(call_id, state, "2 BYE")

    def _finish(self, call_id: str, state: CallState) -> None:
        del self.calls[call_id]
        asyncio.get_running_loop().remove_reader(state.rtp.fileno())
        state.rtp.close()
        self.finished += 1
        if self.finished == self.mark and self.on_mark is not None:
            self.on_mark.set_result(None)
        if self.started < self.total:
            self._invite()
        elif self.finished == self.total and self.done is not None:
            self.done.set_result(None)


@dataclass
class Measured:
    calls: int
    cpu_seconds: float
    wall_seconds: float

    @property
    def ms_per_call(self) -> float:
        return 1000 * self.cpu_seconds / self.calls


async def run_calls(
    target: tuple[str, int] | None,
    *,
    calls: int,
    window: int,
    rtp_packets: int,
    timeout: float,
    profile: cProfile.Profile | None = None,
) -> Measured:
    """Place ``WARM_UP + calls`` calls (to ``target``, or to the callee itself when
    None) and measure the last ``calls``."""
    loop = asyncio.get_running_loop()
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.setblocking(False)
    echo.bind((LOOPBACK, 0))
    callee = Callee(echo)
    await loop.create_datagram_endpoint(lambda: callee, local_addr=(LOOPBACK, 0))
    loop.add_reader(echo.fileno(), callee.echo)
    caller = Caller(
        total=WARM_UP + calls,
        window=window,
        rtp_packets=rtp_packets,
        done=loop.create_future(),
        mark=WARM_UP,
        on_mark=loop.create_future(),
    )
    await loop.create_datagram_endpoint(lambda: caller, local_addr=(LOOPBACK, 0))
    await asyncio.sleep(0)  # uvloop calls connection_made on the next iteration
    try:
        if target is None:
            caller.target = (LOOPBACK, callee.port)
        else:
            caller.target = target
            callee.registered = loop.create_future()
            callee.register(target, 1)
            await asyncio.wait_for(callee.registered, timeout)
        caller.start()
        assert caller.on_mark is not None and caller.done is not None
        await asyncio.wait_for(caller.on_mark, timeout)
        cpu, wall = time.process_time(), time.monotonic()
        if profile is not None:
            profile.enable()
        await asyncio.wait_for(caller.done, timeout)
        if profile is not None:
            profile.disable()
        return Measured(
            calls=calls,
            cpu_seconds=time.process_time() - cpu,
            wall_seconds=time.monotonic() - wall,
        )
    finally:
        loop.remove_reader(echo.fileno())
        echo.close()
        for transport in (caller.transport, callee.transport):
            if transport is not None:
                transport.close()


async def run_switch(args: argparse.Namespace, workdir: Path) -> Measured:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((LOOPBACK, 0))
    port = probe.getsockname()[1]
    probe.close()
    config = apply_overrides(
        load_config(write_config(workdir)),
        listen=f"{LOOPBACK}:{port}",
        rtp_ports=RTP_PORTS,
        media_workers=0,
        db=str(workdir / "ccswitch.db"),
        log_level="WARNING",
        trace_file=None,
    )
    switch = Switch(config)
    await switch.start()
    profile = cProfile.Profile() if args.profile else None
    try:
        measured = await run_calls(
            (LOOPBACK, port),
            calls=args.calls,
            window=args.window,
            rtp_packets=args.rtp_packets,
            timeout=args.timeout,
            profile=profile,
        )
    finally:
        await switch.stop()
    if profile is not None:
        profile.dump_stats(args.profile)
    return measured


async def run_direct(args: argparse.Namespace) -> Measured:
    return await run_calls(
        None,
        calls=args.calls,
        window=args.window,
        rtp_packets=args.rtp_packets,
        timeout=args.timeout,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.call_path", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--calls", type=int, default=2000, help="measured calls")
    parser.add_argument("--window", type=int, default=20, help="calls in flight")
    parser.add_argument("--rtp-packets", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--only", choices=("switch", "direct"), help="one kind only")
    parser.add_argument("--profile", metavar="FILE", help="cProfile of a switch run")
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= 100_000 or not 1 <= args.window <= 1000:
        parser.error("--calls must be in 1..100000 and --window in 1..1000")
    if not 0 <= args.rtp_packets <= 50 or not 1 <= args.repeats <= 10:
        parser.error("--rtp-packets must be in 0..50 and --repeats in 1..10")

    results: dict[str, list[Measured]] = {"switch": [], "direct": []}
    kinds = [args.only] if args.only else ["switch", "direct"]
    with tempfile.TemporaryDirectory(prefix="ccswitch-call-path-") as folder:
        for repeat in range(args.repeats):
            for kind in kinds:  # interleaved, so both see the same background load
                workdir = Path(folder) / f"{kind}{repeat}"
                workdir.mkdir()
                if kind == "switch":
                    measured = uvloop.run(run_switch(args, workdir))
                else:
                    measured = uvloop.run(run_direct(args))
                results[kind].append(measured)
                print(
                    f"{kind:6} {measured.calls} calls: {measured.ms_per_call:.3f} ms "
                    f"CPU/call, {measured.calls / measured.wall_seconds:.0f} calls/s",
                    flush=True,
                )
    best = {
        kind: min(m.ms_per_call for m in runs) for kind, runs in results.items() if runs
    }
    if len(best) == 2:
        print(
            f"switch's own cost: {best['switch'] - best['direct']:.3f} ms CPU per call "
            f"(best of {args.repeats}: {best['switch']:.3f} - {best['direct']:.3f} ms; "
            f"load {os.getloadavg()[0]:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
