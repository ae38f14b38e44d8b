"""Helpers for tests that run a real ``ccswitch serve`` and real peers on loopback.

Every process started here gets its own session (process group), is stopped by its
PID (SIGTERM, then SIGKILL), and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ccswitch.app import Switch

REPO = Path(__file__).resolve().parents[1]
SIPP_DIR = REPO / "tests" / "sipp"
LOOPBACK = "127.0.0.1"


def shared_dir() -> Path | None:
    """``../shared`` beside the checkout (or $CCSWITCH_SHARED), if present."""
    env = os.environ.get("CCSWITCH_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared")
    for path in candidates:
        if path.is_dir():
            return path
    return None


def require_tool(name: str) -> str:
    """Path of ``name``; skip if absent, or fail when CI says peers are required."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install via .ci/setup)"
        if os.environ.get("CCSWITCH_REQUIRE_PEERS"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port(*, pair: bool = False) -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (and port+1 too if ``pair``)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, 0))
            port = int(probe.getsockname()[1])
        if port > 65000 or (pair and port % 2):
            continue
        ports = [port, port + 1] if pair else [port]
        try:
            for candidate in ports:
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind((LOOPBACK, candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port found")


def rtp_peer_sockets() -> tuple[socket.socket, socket.socket]:
    """A test phone's non-blocking RTP socket on an even loopback port, and an RTCP
    socket on the next port.

    The switch sends RTCP to the remote RTP port + 1 (RFC 3550 11). A phone bound to
    any free port could sit at another phone's port + 1 and receive that phone's RTCP
    among its audio; holding the pair keeps each phone's RTCP out of the others'.
    """
    for _ in range(200):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind((LOOPBACK, 0))
        port = int(rtp.getsockname()[1])
        if port % 2 or port >= 65535:
            rtp.close()
            continue
        rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rtcp.bind((LOOPBACK, port + 1))
        except OSError:
            rtp.close()
            rtcp.close()
            continue
        rtp.setblocking(False)
        rtcp.setblocking(False)
        return rtp, rtcp
    raise RuntimeError("no free port pair found")


# A port picked free may be bound by its owner only later (a switch binds its RTP
# range as calls need it; SIPp binds media when a call starts), so another pick in
# the meantime could land on it. Every block handed out is therefore reserved for a
# test's lifetime, in aligned slots of two regions so that reservations do not
# fragment the space: small blocks (SIP ports, SIPp and baresip media) and big
# ones (switches' RTP ranges).
RESERVATION_SECONDS = 120.0
BIG_BLOCK = 16
SMALL_PORTS = (10000, 14000)
BIG_PORTS = (14000, 30000)
SMALL_SLOT = 4
BIG_SLOT = 200
_reserved: list[tuple[float, int, int]] = []


def reserve(start: int, end: int) -> bool:
    """Take ``start..end`` unless it overlaps a live reservation of this run."""
    now = time.monotonic()
    _reserved[:] = [r for r in _reserved if now - r[0] < RESERVATION_SECONDS]
    if any(start <= high and low <= end for _, low, high in _reserved):
        return False
    _reserved.append((now, start, end))
    return True


def release(start: int) -> None:
    """Forget the reservation that begins at ``start``: its user has stopped (a bench
    running trial after trial would otherwise run out of big blocks)."""
    _reserved[:] = [r for r in _reserved if r[1] != start]


def pick_start(size: int) -> int:
    """A random slot-aligned (even) start for a block of ``size`` ports."""
    import random

    big = size >= BIG_BLOCK
    low, high = BIG_PORTS if big else SMALL_PORTS
    unit = BIG_SLOT if big else SMALL_SLOT
    slot = -(-size // unit) * unit
    return low + random.randrange((high - low) // slot) * slot


def free_range(size: int) -> tuple[int, int]:
    """A block of ``size`` ports (even start) that are free right now for UDP.

    Searched below the ephemeral range (32768+), where other processes' sockets land,
    and clear of every block handed out by this test run lately (:func:`reserve`).
    """

    for _ in range(100):
        start = pick_start(size)
        if not reserve(start, start + size - 1):
            continue
        socks = []
        try:
            for port in range(start, start + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((LOOPBACK, port))
            return start, start + size - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range found")


def options_ping(port: int, *, timeout: float = 0.5) -> bytes | None:
    """Send one OPTIONS over UDP and return the raw reply (or None)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(timeout)
        local = sock.getsockname()[1]
        call_id = uuid.uuid4().hex
        message = (
            f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch=z9hG4bK{call_id[:12]};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:probe@{LOOPBACK}>;tag=probe\r\n"
            f"To: <sip:{LOOPBACK}:{port}>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: 1 OPTIONS\r\n"
            f"Content-Length: 0\r\n\r\n"
        ).encode()
        sock.sendto(message, (LOOPBACK, port))
        try:
            return sock.recv(65535)
        except OSError:
            return None


@contextlib.asynccontextmanager
async def demo_switch() -> AsyncIterator[Switch]:
    """A started in-process :class:`~ccswitch.app.Switch` on the embedded demo
    configuration: SIP on a free loopback port, an in-memory store."""
    from ccswitch.app import Switch
    from ccswitch.config import apply_overrides, load_config

    config = apply_overrides(
        load_config(None),
        listen=f"127.0.0.1:{free_port()}",
        rtp_ports=None,
        db=":memory:",
        log_level=None,
        trace_file=None,
    )
    switch = Switch(config)
    await switch.start()
    try:
        yield switch
    finally:
        await switch.stop()


def demo_config(workdir: Path, **replacements: str) -> Path:
    """A copy of the demo configuration with ``key = value`` lines replaced.

    ``replacements`` map a key (as written in demo.toml, e.g. ``digest_algorithms``)
    to the TOML text of its new value; the key must already be in the file. A key
    that also appears in array-of-tables entries (``[[queues]]`` has its own
    ``ring_timeout``) means the one in a plain ``[section]``.
    """
    from importlib import resources

    text = resources.files("ccswitch").joinpath("demo.toml").read_text()
    lines = text.splitlines()
    in_table_array = []
    inside = False
    for line in lines:
        if line.startswith("["):
            inside = line.startswith("[[")
        in_table_array.append(inside)
    for key, value in replacements.items():
        matches = [
            i
            for i, line in enumerate(lines)
            if line.startswith(f"{key} = ") and not in_table_array[i]
        ]
        if len(matches) != 1:
            raise KeyError(f"{key} is not a single line in demo.toml")
        lines[matches[0]] = f"{key} = {value}"
    path = workdir / "ccswitch.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class SwitchProcess:
    """A ``ccswitch serve`` subprocess on loopback with its own ports and database."""

    workdir: Path
    config: Path | None = None
    port: int = 0
    rtp: tuple[int, int] = (0, 0)
    db: Path = field(default_factory=Path)
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)
    trace_path: Path = field(default_factory=Path)

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port()
        while self.rtp == (0, 0) or self.rtp[0] <= self.port <= self.rtp[1]:
            self.rtp = free_range(200)
        if self.db == Path():
            self.db = self.workdir / "ccswitch.db"
        self.log_path = self.workdir / "ccswitch.log"
        self.trace_path = self.workdir / "sip-trace.log"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "ccswitch", "serve"]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        cmd += [
            "--listen",
            f"{LOOPBACK}:{self.port}",
            "--rtp-ports",
            f"{self.rtp[0]}-{self.rtp[1]}",
            "--db",
            str(self.db),
            "--log-level",
            "DEBUG",
            "--sip-trace",
            str(self.trace_path),
            *self.extra_args,
        ]
        return cmd

    def start(self, *, timeout: float = 15.0) -> SwitchProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ccswitch exited early:\n{self.log()}")
            reply = options_ping(self.port, timeout=0.3)
            if reply is not None and reply.startswith(b"SIP/2.0 200"):
                return self
        self.stop()
        raise RuntimeError(
            f"ccswitch did not answer OPTIONS in {timeout}s:\n{self.log()}"
        )

    def stop(self, *, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        code = self.proc.returncode
        self.proc = None
        return code

    def log(self) -> str:
        return (
            self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        )

    def trace(self) -> str:
        return (
            self.trace_path.read_text(errors="replace")
            if self.trace_path.exists()
            else ""
        )


@dataclass
class SippResult:
    returncode: int
    output: str
    errors: str


def run_sipp(
    scenario: str,
    port: int,
    *args: str,
    workdir: Path,
    timeout: float = 30.0,
    local_port: int | None = None,
) -> SippResult:
    """Run one SIPp scenario from tests/sipp against 127.0.0.1:``port``, bounded."""
    sipp = require_tool("sipp")
    local_port = local_port or free_port()
    media_port = free_range(4)[0]  # SIPp binds audio and video RTP/RTCP: 4 ports
    error_file = workdir / f"{Path(scenario).stem}-{local_port}-errors.log"
    cmd = [
        "timeout",
        "-k",
        "5",
        str(int(timeout) + 10),
        sipp,
        f"{LOOPBACK}:{port}",
        "-sf",
        str(SIPP_DIR / scenario),
        "-i",
        LOOPBACK,
        "-mi",
        LOOPBACK,
        "-p",
        str(local_port),
        "-mp",
        str(media_port),
        "-nostdin",
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        "-default_behaviors",
        "all,-bye",
        "-trace_err",
        "-error_file",
        str(error_file),
        *args,
    ]
    proc = subprocess.run(
        cmd,
        cwd=workdir,
        capture_output=True,
        timeout=timeout + 20,
        start_new_session=True,
    )
    errors = error_file.read_text(errors="replace") if error_file.exists() else ""
    return SippResult(
        proc.returncode,
        proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace"),
        errors,
    )
