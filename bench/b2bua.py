"""B2BUA benchmark: calls per second through ``ccswitch serve`` and Sippy, side by side.

Run as ``python -m bench.b2bua [--budget 330]``. Loopback only; every process is
started in its own session, stopped by its PID and bounded in time, and the whole run
stays under ``--budget`` seconds (five and a half minutes by default).

Both systems relay the same flow (PERFORMANCE.md sections 2.1, 4.3 and 4.4 are the
method): SIPp 3.6.1 as the caller (``bench/scenarios/uac-calls-and-hangs-up.xml``,
the built-in uac plus two response timers) -> the device under test -> SIPp as the
callee. Each call is INVITE (with an SDP offer) -> 200 -> ACK, held for ``--hold-ms``
(1 s), then BYE -> 200. Both SIPp ends run with ``-buff_size 4194304``. Right after
the ACK the caller plays ``--rtp-packets`` (10) PCMU packets, 20 ms apart, from a pcap
the bench writes (``bench/scenarios/uac-calls-sends-rtp-and-hangs-up.xml``) to the
address in the SDP answer, and the callee (``-rtp_echo``) sends each one back; with
``--rtp-packets 0`` media is negotiated and no RTP flows. SIPp never reads the
caller's media socket, so the echoed packets fill its buffer and are then counted by
the kernel as receive-buffer drops (``udp_receive_buffer_errors``); SIP drops show up
as retransmissions.

``ccswitch``
    a fresh ``ccswitch serve`` per trial on the demo configuration (demo trunk: calls
    from 127.0.0.1 are accepted without authentication; keep-alives off; log level
    WARNING; no SIP trace; its own SQLite file, so CDRs are written as in service).
    Before the callee starts, a SIPp REGISTER from the callee's port registers it as
    demo user 1002, and the caller dials 1002 (dialplan rule ``re:10(0[1-9]|10)`` ->
    ``user``). ccswitch answers the caller's offer from a media endpoint, offers the
    callee from a second one, and bridges them once the callee answers: two RTP/RTCP
    port pairs are bound per call and the caller's audio and its echo are relayed
    through them.
``sippy``
    Sippy B2BUA 2.5.0's ``b2bua_simple`` (``SIPLOG_BEND=none``, next hop
    ``-n 127.0.0.1:<callee port>``: never its built-in off-box default), relaying
    signalling only, which is what it does (the SDP passes through, so the audio goes
    straight between the SIPp ends). It runs from its own virtual environment,
    created when missing with ``python3 -m venv /tmp/sippy-venv`` and
    ``/tmp/sippy-venv/bin/pip install sippy==2.5.0`` (``--sippy-venv``).

Maximum calls per second: for each system an RFC 7502-style bisection, the two
interleaved trial by trial so that both see the same background load. A trial runs a
fresh callee and device under test for ``--seconds`` at rate R (``-m R*seconds``).
It passes (PERFORMANCE.md section 2.1) when failed calls are under 1 %, SIPp
retransmissions are at most 1 % of calls, every call started finished at the caller,
the callee failed or never finished (its BYE not relayed) under 1 % of the calls, the
median per-second creation rate is at least 95 % of R and the median completion rate
at least 90 % of R. A trial whose failures or retransmissions already settle the
outcome is stopped early. The search tests the low bound, then the high bound, then
midpoints until (fail - pass) / fail is at most 5 %; a failing low bound is halved.
CPU is psutil ``cpu_times`` summed over each process tree, sampled every second with
the first and last 2 s of the load dropped, as a percentage of one core; RSS is the
peak sampled.

Call set-up latency: ``--latency-rounds`` trials per system (two: one before the
search, one after) at a fixed ``--latency-rate`` (100 calls per second) with a callee
that sends 180 and then 200 back to back (``bench/scenarios/uas-rings-then-answers.xml``),
so that INVITE->180 can be measured too; the per-call values of the rounds are pooled.
SIPp's own response timers tick in whole milliseconds of its event loop (about 4 ms
apart on this kernel), so the latencies are taken from the wire instead: a packet
socket on ``lo`` (root only; SIPp's figures are used otherwise) timestamps every
datagram to or from the caller's port in the kernel, and for each Call-ID the first
INVITE is matched with the first 100, 180 and 200 to it. Sippy's sender threads
reorder a 180 behind its 200 now and then; SIPp's uac aborts such a call, which is
counted (``calls_180_after_200``) and does not matter for the latency figures. Results
go to ``bench/results/b2bua.json``.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import psutil  # type: ignore[import-untyped]

REPO: Final = Path(__file__).resolve().parents[1]
RESULTS: Final = Path(__file__).resolve().parent / "results" / "b2bua.json"
SCENARIOS: Final = Path(__file__).resolve().parent / "scenarios"
UAC_SCENARIO: Final = SCENARIOS / "uac-calls-and-hangs-up.xml"
UAC_RTP_SCENARIO: Final = SCENARIOS / "uac-calls-sends-rtp-and-hangs-up.xml"
RTP_PCAP: Final = "rtp.pcap"  # in each trial's directory, SIPp's working directory
UAS_NO_180: Final = SCENARIOS / "uas-answers-without-180.xml"
UAS_RINGING: Final = SCENARIOS / "uas-rings-then-answers.xml"
REGISTER_SCENARIO: Final = (
    REPO / "tests" / "sipp" / "phone-register-digest-accepted.xml"
)
LOOPBACK: Final = "127.0.0.1"

CALLEE_USER: Final = "1002"
CALLEE_PASSWORD: Final = "demo1002"
# Each call binds two RTP/RTCP pairs (one per leg); the range holds 5,000 calls and
# lies below Linux's ephemeral ports, where the SIP sockets of this bench land.
RTP_PORTS: Final = (10000, 29999)
BUFFER_SIZE: Final = 4194304

SIPPY_VERSION: Final = "2.5.0"
DEFAULT_SIPPY_VENV: Final = Path("/tmp/sippy-venv")

# PERFORMANCE.md section 2.1: the pass rule.
MAX_FAILED_RATIO: Final = 0.01
MAX_RETRANSMISSION_RATIO: Final = 0.01
MIN_CREATION_RATIO: Final = 0.95
MIN_COMPLETION_RATIO: Final = 0.90

# Search bounds, calls per second (PERFORMANCE.md section 4.3; ccswitch's are wider).
SEARCH_BOUNDS: Final = {"ccswitch": (50, 1600), "sippy": (50, 800)}
MIN_RATE: Final = 10
BISECT_TOLERANCE: Final = 0.05  # stop when (fail - pass) / fail is at most this
DEFAULT_SECONDS: Final = 8.0
DEFAULT_HOLD_MS: Final = 1000
DEFAULT_LATENCY_RATE: Final = 100
DEFAULT_LATENCY_ROUNDS: Final = 2
DEFAULT_RTP_PACKETS: Final = 10  # 200 ms of PCMU from the caller, echoed by the callee
DEFAULT_BUDGET: Final = 330.0
CPU_SKIP: Final = 2.0  # seconds dropped at each end of the load for the CPU figure

# Time bounds of one trial.
DUT_START_TIMEOUT: Final = 15.0
STOP_TIMEOUT: Final = 5.0
RECV_TIMEOUT_MS: Final = 4000  # a call step with no answer this long has failed
CALLER_DRAIN: Final = 8.0  # seconds after the last call is started
CALLEE_LINGER: Final = 1.0  # the callee's timewait after the BYE (scenario file)
CALLEE_DRAIN: Final = 4.0  # seconds the callee may take to finish after the caller
SETTLE_SECONDS: Final = 1.0  # between trials
TRIAL_OVERHEAD: Final = 6.0  # start-up, registration, drain: added to --seconds

SYSTEMS: Final = ("ccswitch", "sippy")
SETUP_ATTEMPTS: Final = 3  # a trial whose set-up lost a port race is run again

Report = dict[str, Any]
# Per-call latencies in ms by the answer they end at ("100", "180", "200").
Samples = dict[str, list[float]]


# --- processes --------------------------------------------------------------------------


class SetupError(RuntimeError):
    """A trial could not be set up (typically a port taken between choice and bind)."""


def free_port(span: int = 1) -> int:
    """A port free on 127.0.0.1 for both UDP and TCP, with the ``span - 1`` above it."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, 0))
            port = int(probe.getsockname()[1])
        if RTP_PORTS[0] <= port <= RTP_PORTS[1] or port + span > 65535:
            continue
        try:
            for candidate in range(port, port + span):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(socket.AF_INET, kind) as sock:
                        sock.bind((LOOPBACK, candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port found")


def sipp_own_ports() -> list[str]:
    """SIPp options for its control socket and its media sockets (-mp and -mp + 2).

    Both are fixed by default (8888 and 6000), which collides with any other SIPp
    running on the machine.
    """
    return ["-cp", str(free_port()), "-mp", str(free_port(span=4))]


def spawn(
    command: Sequence[str],
    workdir: Path,
    log_name: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session (in ``cwd``, by default ``workdir``),
    output to ``workdir/log_name``."""
    with (workdir / log_name).open("ab") as log:
        return subprocess.Popen(
            command, cwd=cwd or workdir, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=env,
        )  # fmt: skip


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM by PID, then SIGKILL to its own process group; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


def sip_answers(port: int, timeout: float) -> bytes | None:
    """Send one OPTIONS to 127.0.0.1:``port``; the status line of the answer, if any."""
    call_id = uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(timeout)
        local = sock.getsockname()[1]
        sock.sendto(
            (
                f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch=z9hG4bK{call_id[:16]};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:bench@{LOOPBACK}>;tag=bench\r\n"
                f"To: <sip:{LOOPBACK}:{port}>\r\n"
                f"Call-ID: {call_id}\r\n"
                "CSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode(),
            (LOOPBACK, port),
        )
        try:
            reply = sock.recv(65535)
        except OSError:
            return None
    return reply.split(b"\r\n", 1)[0] if reply.startswith(b"SIP/2.0 ") else None


def wait_until_answering(
    proc: subprocess.Popen[bytes], port: int, what: str, log: Callable[[], str]
) -> None:
    deadline = time.monotonic() + DUT_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SetupError(f"{what} exited early: {log()[-2000:]}")
        if sip_answers(port, 0.3) is not None:
            return
    stop_process(proc, STOP_TIMEOUT)
    raise SetupError(f"{what} did not answer OPTIONS: {log()[-2000:]}")


# RFC 3551 section 4.5.14: PCMU is payload type 0, 8000 Hz, 160 samples per 20 ms.
PCMU: Final = 0
FRAME_SAMPLES: Final = 160
FRAME_MICROSECONDS: Final = 20000
PCMU_SILENCE: Final = b"\xff"


def write_rtp_pcap(path: Path, packets: int) -> None:
    """A pcap of ``packets`` PCMU frames 20 ms apart, for SIPp's play_pcap_audio.

    SIPp takes only the UDP payload and the timing from it: it sends each payload
    from the caller's media port to the address of the SDP answer. The addresses in
    the file are placeholders (127.0.0.1, port 6000); the IPv4 checksum is left 0.
    """
    pcap_header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    records = [pcap_header]
    for sequence in range(packets):
        rtp = struct.pack(
            "!BBHII", 0x80, PCMU, sequence, sequence * FRAME_SAMPLES, 0x0CC5_0001
        )
        payload = rtp + PCMU_SILENCE * FRAME_SAMPLES
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(payload), 0) + payload
        loopback = socket.inet_aton(LOOPBACK)
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), sequence, 0, 64,
            socket.IPPROTO_UDP, 0, loopback, loopback,
        )  # fmt: skip
        frame = b"\x00" * 12 + struct.pack("!H", ETH_P_IP) + ip + udp
        offset = sequence * FRAME_MICROSECONDS
        records.append(
            struct.pack("<IIII", offset // 1_000_000, offset % 1_000_000, len(frame),
                        len(frame)) + frame
        )  # fmt: skip
    path.write_bytes(b"".join(records))


def sipp_binary() -> str:
    sipp = shutil.which("sipp")
    if sipp is None:
        raise SystemExit("sipp is not installed (apt-get install sip-tester)")
    return sipp


def ensure_sippy(venv: Path) -> Path:
    """``b2bua_simple`` from ``venv``, creating the venv and installing Sippy if missing."""
    script = venv / "bin" / "b2bua_simple"
    if script.exists():
        return script
    print(f"installing sippy {SIPPY_VERSION} into {venv} (one time)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"sippy=={SIPPY_VERSION}"],
        check=True,
        timeout=600,
    )
    if not script.exists():
        raise SystemExit(f"sippy installed but {script} is missing")
    return script


def sippy_version(venv: Path) -> str:
    try:
        out = subprocess.run(
            [str(venv / "bin" / "python"), "-c",
             "import importlib.metadata as m; print(m.version('sippy'))"],
            capture_output=True, timeout=30, check=False,
        ).stdout.decode().strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out or "unknown"


def write_config(workdir: Path) -> Path:
    """The demo configuration with OPTIONS keep-alives and overload shedding off.

    Keep-alives are not measured; shedding (503 while the loop or the media clock
    runs late) would turn the capacity the search looks for into refused calls.
    """
    text = resources.files("ccswitch").joinpath("demo.toml").read_text()
    lines = [
        "qualify_interval = 0.0" if line.startswith("qualify_interval = ") else line
        for line in text.splitlines()
    ]
    lines = [
        line.split("=")[0] + "= 0" if line.startswith("shed_") else line
        for line in lines
    ]
    path = workdir / "ccswitch.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class DeviceUnderTest:
    """One B2BUA subprocess for one trial: ``ccswitch serve`` or Sippy's b2bua_simple."""

    def __init__(
        self, system: str, workdir: Path, callee_port: int, sippy_script: Path | None
    ) -> None:
        self.system = system
        self.workdir = workdir
        self.callee_port = callee_port
        self.port = free_port()
        self.log_name = f"{system}.log"
        self.env: dict[str, str] | None = None
        if system == "ccswitch":
            config = write_config(workdir)
            self.command = [
                sys.executable, "-m", "ccswitch", "serve",
                "--config", str(config),
                "--listen", f"{LOOPBACK}:{self.port}",
                "--rtp-ports", f"{RTP_PORTS[0]}-{RTP_PORTS[1]}",
                "--media-workers", "0",  # one core: media in the signalling process
                "--db", str(workdir / "ccswitch.db"),
                "--log-level", "WARNING",
            ]  # fmt: skip
        else:
            assert sippy_script is not None
            # Always an explicit loopback next hop: b2bua_simple's built-in default is
            # an off-box private address that must never be a test target.
            next_hop = f"{LOOPBACK}:{callee_port}"
            self.command = [
                str(sippy_script), "-f", "-l", LOOPBACK, "-p", str(self.port),
                "-n", next_hop, "-L", str(workdir / "b2bua_simple.log"),
            ]  # fmt: skip
            assert self.command[self.command.index("-n") + 1].startswith(LOOPBACK + ":")
            self.env = {**os.environ, "SIPLOG_BEND": "none"}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DeviceUnderTest:
        self.proc = spawn(self.command, self.workdir, self.log_name, self.env)
        try:
            wait_until_answering(self.proc, self.port, self.system, self.log)
            if self.system == "ccswitch":
                self._register_callee()
        except BaseException:
            # __exit__ does not run when __enter__ raises.
            stop_process(self.proc, STOP_TIMEOUT)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc, STOP_TIMEOUT)

    def log(self) -> str:
        path = self.workdir / self.log_name
        return path.read_text(errors="replace") if path.exists() else ""

    def _register_callee(self) -> None:
        """Register the callee's port as demo user 1002 (digest auth, one SIPp run)."""
        command = [
            sipp_binary(), f"{LOOPBACK}:{self.port}",
            "-sf", str(REGISTER_SCENARIO),
            "-s", CALLEE_USER, "-au", CALLEE_USER, "-ap", CALLEE_PASSWORD,
            "-i", LOOPBACK, "-p", str(self.callee_port), *sipp_own_ports(),
            "-m", "1", "-nostdin", "-timeout", "10s", "-timeout_error",
        ]  # fmt: skip
        proc = spawn(command, self.workdir, "register.out")
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            code = stop_process(proc, 5)
        if code != 0:
            out = (self.workdir / "register.out").read_text(errors="replace")
            raise SetupError(f"callee registration failed ({code}): {out[-2000:]}")


# --- wire timestamps ----------------------------------------------------------------------

# Linux <linux/if_ether.h>, <asm-generic/socket.h>, <linux/if_packet.h>, <linux/filter.h>.
ETH_P_IP: Final = 0x0800
SO_ATTACH_FILTER: Final = 26
SO_TIMESTAMPNS: Final = 35
PACKET_HOST: Final = 0

WIRE_SOURCE: Final = "kernel timestamps on lo (AF_PACKET, SO_TIMESTAMPNS)"
CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
CSEQ = re.compile(rb"^cseq[ \t]*:[ \t]*\d+[ \t]+(\w+)", re.IGNORECASE | re.MULTILINE)
SDP_AUDIO = re.compile(rb"^m=audio (\d+) ", re.MULTILINE)


def _udp_port_filter(port: int) -> bytes:
    """Classic BPF for "IPv4 UDP, unfragmented, source or destination port ``port``".

    A SOCK_DGRAM packet socket runs its filter on the network header, so offset 0 is
    the IPv4 header.
    """
    program = [
        (0x30, 0, 0, 9),  # ldb [9]: IP protocol
        (0x15, 0, 8, socket.IPPROTO_UDP),  # jeq #17, else drop
        (0x28, 0, 0, 6),  # ldh [6]: flags + fragment offset
        (0x45, 6, 0, 0x1FFF),  # jset #0x1fff: a fragment, drop
        (0xB1, 0, 0, 0),  # ldxb 4*([0]&0xf): IP header length
        (0x48, 0, 0, 0),  # ldh [x+0]: source port
        (0x15, 2, 0, port),  # jeq #port: accept
        (0x48, 0, 0, 2),  # ldh [x+2]: destination port
        (0x15, 0, 1, port),  # jeq #port: accept, else drop
        (0x06, 0, 0, 0x40000),  # ret: accept
        (0x06, 0, 0, 0),  # ret: drop
    ]
    return b"".join(struct.pack("HBBI", *insn) for insn in program)


class WireClock:
    """Kernel receive timestamps of the SIP datagrams to and from one UDP port on lo.

    A background thread reads a packet socket (AF_PACKET, root only) filtered by BPF;
    each datagram looped back is seen once as sent and once as received, and only the
    received copy is kept.
    """

    def __init__(self, port: int, *, keep_payload: bool = True) -> None:
        self.port = port
        self.keep_payload = keep_payload
        self.packets: list[tuple[float, int, int, bytes]] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> WireClock:
        try:
            sock = socket.socket(
                socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP)
            )
        except (OSError, AttributeError) as error:
            self.error = f"no packet socket: {error}"
            return self
        try:
            program = _udp_port_filter(self.port)
            buffer = ctypes.create_string_buffer(program)
            fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buffer))
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER_SIZE)
            sock.bind(("lo", ETH_P_IP))
            sock.settimeout(0.2)
        except OSError as error:
            sock.close()
            self.error = f"packet socket set-up failed: {error}"
            return self
        self._sock = sock
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def _read(self) -> None:
        assert self._sock is not None
        space = socket.CMSG_SPACE(16)
        while not self._stop.is_set():
            try:
                data, ancillary, _flags, address = self._sock.recvmsg(65535, space)
            except TimeoutError:
                continue
            except OSError as error:
                self.error = f"packet socket read failed: {error}"
                return
            if address[2] != PACKET_HOST or len(data) < 28:
                continue
            stamp = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanoseconds = struct.unpack("qq", value[:16])
                    stamp = seconds + nanoseconds / 1e9
            header = (data[0] & 0x0F) * 4
            source, destination = struct.unpack("!HH", data[header : header + 4])
            payload = data[header + 8 :] if self.keep_payload else b""
            self.packets.append((stamp, source, destination, payload))

    def count(self, *, source: int = 0, destination: int = 0) -> int:
        """Datagrams seen from port ``source`` or to port ``destination``."""
        return sum(
            1
            for _stamp, from_port, to_port, _payload in self.packets
            if from_port == source or to_port == destination
        )

    def latencies(self, rtp_ports: tuple[int, int] | None) -> tuple[Report, Samples]:
        """Per-call INVITE->100/180/200 in ms from the first INVITE of each Call-ID.

        :returns: a summary, and the per-call values by status.
        """
        invites: dict[bytes, float] = {}
        answers: dict[str, dict[bytes, float]] = {"100": {}, "180": {}, "200": {}}
        anchored = offered = 0
        for stamp, source, destination, payload in self.packets:
            match = CALL_ID.search(payload)
            if match is None:
                continue
            call_id = match.group(1)
            if source == self.port and payload.startswith(b"INVITE "):
                invites.setdefault(call_id, stamp)
                continue
            if destination != self.port or not payload.startswith(b"SIP/2.0 "):
                continue
            status = payload[8:11].decode(errors="replace")
            cseq = CSEQ.search(payload)
            if status not in answers or cseq is None or cseq.group(1) != b"INVITE":
                continue
            if call_id in answers[status]:
                continue
            answers[status][call_id] = stamp
            if status == "200" and rtp_ports is not None:
                audio = SDP_AUDIO.search(payload)
                offered += 1
                if audio and rtp_ports[0] <= int(audio.group(1)) <= rtp_ports[1]:
                    anchored += 1
        late = sum(
            1
            for call_id, ringing in answers["180"].items()
            if ringing > answers["200"].get(call_id, math.inf)
        )
        report: Report = {"calls_seen": len(invites), "calls_180_after_200": late}
        samples: Samples = {}
        for status, stamps in answers.items():
            samples[status] = sorted(
                1000 * (stamps[call_id] - sent)
                for call_id, sent in invites.items()
                if call_id in stamps
            )
            report[f"invite_to_{status}_ms"] = summary(samples[status])
        if rtp_ports is not None:
            report["answers_with_sdp_port_in_rtp_range"] = f"{anchored}/{offered}"
        return report, samples


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    rank = max(1, math.ceil(fraction * len(values)))
    return values[rank - 1]


def summary(values: Sequence[float]) -> Report:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.50), 3),
        "p90": round(percentile(values, 0.90), 3),
        "p99": round(percentile(values, 0.99), 3),
        "max": round(values[-1], 3),
        "mean": round(statistics.fmean(values), 3),
    }


# --- one trial --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Trial:
    system: str
    rate: int
    passed: bool
    why: str
    started: int
    successful: int
    failed: int
    retransmissions: int
    callee_calls: int
    callee_successful: int
    callee_failed: int
    creation_rate_median: float
    completion_rate_median: float
    invite_to_200_ms_mean: float
    dut_cpu_percent: float
    dut_cpu_ms_per_call: float
    dut_rss_mb: float
    caller_cpu_percent: float
    callee_cpu_percent: float
    udp_receive_buffer_errors: int | None
    caller_exit: int | None
    wall_seconds: float
    latency: Report | None = field(default=None)


def failed_trial(system: str, rate: int, why: str) -> Trial:
    """A trial that could not be run at all (its set-up kept failing)."""
    nan = float("nan")
    return Trial(
        system=system, rate=rate, passed=False, why=why, started=0, successful=0,
        failed=0, retransmissions=0, callee_calls=0, callee_successful=0,
        callee_failed=0, creation_rate_median=0.0, completion_rate_median=0.0,
        invite_to_200_ms_mean=nan, dut_cpu_percent=nan, dut_cpu_ms_per_call=nan,
        dut_rss_mb=nan, caller_cpu_percent=nan, callee_cpu_percent=nan,
        udp_receive_buffer_errors=None, caller_exit=None, wall_seconds=0.0,
    )  # fmt: skip


def udp_receive_buffer_errors() -> int | None:
    """Datagrams the kernel dropped for a full receive buffer, machine-wide (Linux)."""
    try:
        with open("/proc/net/snmp") as file:
            rows = [line.split() for line in file if line.startswith("Udp:")]
    except OSError:
        return None
    if len(rows) < 2 or "RcvbufErrors" not in rows[0]:
        return None
    return int(rows[1][rows[0].index("RcvbufErrors")])


def tree_usage(process: psutil.Process) -> tuple[float, float]:
    """CPU seconds (user + system) and RSS bytes of ``process`` and its descendants."""
    cpu = rss = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
            cpu += times.user + times.system
            rss += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return cpu, rss


def _duration_ms(text: str) -> float:
    """SIPp's ``hh:mm:ss:micro`` duration in milliseconds."""
    hours, minutes, seconds, micro = (int(part) for part in text.split(":"))
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + micro / 1000


def _stamp(text: str) -> float:
    """The epoch seconds at the end of a SIPp trace_stat date field."""
    return float(text.split()[-1])


def _read_stats(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as file:
        return [
            row for row in csv.DictReader(file, delimiter=";") if row.get("StartTime")
        ]


def _periodic_rates(rows: list[dict[str, str]], column: str) -> list[float]:
    rates = []
    for row in rows[1:]:
        span = _stamp(row["CurrentTime"]) - _stamp(row["LastResetTime"])
        if span > 0.5:
            rates.append(int(row[column]) / span)
    return rates


def _rtt_latencies(workdir: Path) -> tuple[Report, Samples]:
    """SIPp's own per-call response times (-trace_rtt): whole ms, coarse."""
    timers: dict[str, list[float]] = {"1": [], "2": []}
    for path in workdir.glob("uac-*_rtt.csv"):
        with path.open(newline="") as file:
            for row in csv.DictReader(file, delimiter=";"):
                if row.get("rtd_no") in timers:
                    timers[row["rtd_no"]].append(float(row["response_time_ms"]))
    samples = {"180": sorted(timers["1"]), "200": sorted(timers["2"])}
    report = {
        "source": "SIPp -trace_rtt (whole milliseconds of SIPp's event loop)",
        "invite_to_180_ms": summary(samples["180"]),
        "invite_to_200_ms": summary(samples["200"]),
    }
    return report, samples


def _already_failed(path: Path, total: int) -> str:
    """Why the trial can no longer pass, judged from the caller's latest statistics.

    Failed calls and retransmissions only grow, and at most ``total`` calls start, so
    once either reaches 1 % of ``total`` the outcome is settled and the overloaded
    trial need not run out its timeouts.
    """
    rows = _read_stats(path)
    if not rows:
        return ""
    last = rows[-1]
    failed = int(last.get("FailedCall(C)") or 0)
    retransmissions = int(last.get("Retransmissions(C)") or 0)
    if failed >= MAX_FAILED_RATIO * total:
        return f"{failed} failed of {total} planned"
    if retransmissions > MAX_RETRANSMISSION_RATIO * total:
        return f"{retransmissions} retransmissions for {total} planned"
    return ""


def run_trial(
    system: str,
    rate: int,
    *,
    seconds: float,
    hold_ms: int,
    workdir: Path,
    sippy_script: Path | None,
    latency: bool = False,
    samples: Samples | None = None,
    rtp_packets: int = 0,
) -> Trial:
    """One bounded trial of ``system`` at ``rate`` calls per second.

    With ``latency``, the callee rings before it answers and the caller's datagrams
    are timestamped; the per-call latencies are added to ``samples``.
    """
    sipp = sipp_binary()
    began = time.monotonic()
    workdir.mkdir(parents=True)
    total = max(1, int(rate * seconds))
    limit = int(seconds + hold_ms / 1000 + CALLER_DRAIN)
    callee_port, caller_port = free_port(), free_port()
    callee_stats, caller_stats = workdir / "uas.csv", workdir / "uac.csv"
    drops_before = udp_receive_buffer_errors()
    usage: list[tuple[float, float, float, float, float]] = []
    wire: WireClock | None = None
    media_wire: WireClock | None = None
    stopped_early = ""
    if rtp_packets:
        write_rtp_pcap(workdir / RTP_PCAP, rtp_packets)

    with DeviceUnderTest(system, workdir, callee_port, sippy_script) as dut:
        assert dut.proc is not None
        callee = spawn(
            [
                sipp, "-sf", str(UAS_RINGING if latency else UAS_NO_180),
                "-i", LOOPBACK, "-p", str(callee_port), *sipp_own_ports(),
                "-m", str(total), "-buff_size", str(BUFFER_SIZE),
                *(["-rtp_echo"] if rtp_packets else []),
                "-nostdin", "-timeout", f"{limit + int(CALLEE_DRAIN)}s",
                "-trace_stat", "-stf", str(callee_stats), "-fd", "1",
                "-trace_err", "-error_file", str(workdir / "uas-errors.log"),
            ],
            workdir, "uas.out",
        )  # fmt: skip
        caller_own = sipp_own_ports()
        caller_media = int(caller_own[caller_own.index("-mp") + 1])
        scenario = UAC_RTP_SCENARIO if rtp_packets else UAC_SCENARIO
        caller_command = [
            sipp, f"{LOOPBACK}:{dut.port}", "-sf", str(scenario), "-s", CALLEE_USER,
            "-i", LOOPBACK, "-p", str(caller_port), *caller_own,
            "-r", str(rate), "-m", str(total), "-l", str(max(100, rate * 4)),
            "-d", str(hold_ms), "-buff_size", str(BUFFER_SIZE),
            "-recv_timeout", str(RECV_TIMEOUT_MS),
            "-nostdin", "-timeout", f"{limit}s",
            "-trace_stat", "-stf", str(caller_stats), "-fd", "1",
            "-trace_err", "-error_file", str(workdir / "uac-errors.log"),
        ]  # fmt: skip
        if latency:
            caller_command += ["-trace_rtt", "-rtt_freq", "1"]
            wire = WireClock(caller_port).__enter__()
            if rtp_packets:
                media_wire = WireClock(caller_media, keep_payload=False).__enter__()
        time.sleep(0.3)  # the callee binds its port
        if callee.poll() is not None:
            stop_process(callee, 1.0)
            raise SetupError(f"the callee SIPp exited at once ({callee.returncode})")
        dut_ps = psutil.Process(dut.proc.pid)
        callee_ps = psutil.Process(callee.pid)
        caller = spawn(caller_command, workdir, "uac.out")
        try:
            caller_ps = psutil.Process(caller.pid)
            start = time.monotonic()
            deadline = start + limit + 5
            while caller.poll() is None and time.monotonic() < deadline:
                doomed = "" if latency else _already_failed(caller_stats, total)
                if doomed:
                    stopped_early = doomed
                    break
                try:
                    dut_cpu, dut_rss = tree_usage(dut_ps)
                    usage.append(
                        (
                            time.monotonic() - start,
                            dut_cpu,
                            dut_rss,
                            tree_usage(caller_ps)[0],
                            tree_usage(callee_ps)[0],
                        )
                    )
                except psutil.NoSuchProcess:
                    break
                time.sleep(1.0)
            if caller.poll() is None:
                stop_process(caller, 5.0)
            try:
                if not stopped_early:
                    callee.wait(CALLEE_LINGER + CALLEE_DRAIN)
            except subprocess.TimeoutExpired:
                pass
        finally:
            for proc in (caller, callee):
                stop_process(proc, 5.0)
            for clock in (wire, media_wire):
                if clock is not None:
                    clock.__exit__(None, None, None)
    rows = _read_stats(caller_stats)
    if not rows or not int(rows[-1].get("OutgoingCall(C)") or 0):
        # Not a measurement: SIPp could not start (a port or its control socket).
        out = (workdir / "uac.out").read_text(errors="replace")[-1500:]
        raise SetupError(f"the caller SIPp placed no call ({caller.returncode}): {out}")
    drops_after = udp_receive_buffer_errors()
    drops = (
        None
        if drops_before is None or drops_after is None
        else drops_after - drops_before
    )

    # CPU over the steady part of the sending phase.
    window = [s for s in usage if CPU_SKIP <= s[0] <= seconds - CPU_SKIP + 0.5]
    if len(window) >= 2:
        span = window[-1][0] - window[0][0]
        dut_cpu = 100 * (window[-1][1] - window[0][1]) / span
        caller_cpu = 100 * (window[-1][3] - window[0][3]) / span
        callee_cpu = 100 * (window[-1][4] - window[0][4]) / span
    else:
        dut_cpu = caller_cpu = callee_cpu = float("nan")
    rss_mb = max((s[2] for s in usage), default=0.0) / 2**20

    callee_rows = _read_stats(callee_stats)
    last = rows[-1] if rows else {}
    callee_last = callee_rows[-1] if callee_rows else {}

    def count(row: dict[str, str], column: str) -> int:
        return int(row.get(column) or 0)

    started = count(last, "OutgoingCall(C)")
    successful = count(last, "SuccessfulCall(C)")
    failed = count(last, "FailedCall(C)")
    retransmissions = count(last, "Retransmissions(C)")
    callee_calls = count(callee_last, "IncomingCall(C)")
    callee_successful = count(callee_last, "SuccessfulCall(C)")
    callee_failed = count(callee_last, "FailedCall(C)")
    # Per-second rates while SIPp was still creating calls, and once calls end.
    creating = _periodic_rates(rows, "OutgoingCall(P)")[: int(seconds)]
    creation = statistics.median(creating) if creating else 0.0
    skip = math.ceil(hold_ms / 1000)
    completing = _periodic_rates(rows, "SuccessfulCall(P)")[skip : skip + int(seconds)]
    completion = statistics.median(completing) if completing else 0.0

    reasons = [f"stopped early: {stopped_early}"] if stopped_early else []
    if not rows:
        reasons.append("no SIPp statistics")
    if started < total:
        reasons.append(f"only {started}/{total} started")
    if failed >= MAX_FAILED_RATIO * max(started, 1):
        reasons.append(f"{failed} failed")
    if retransmissions > MAX_RETRANSMISSION_RATIO * max(started, 1):
        reasons.append(f"{retransmissions} retransmissions")
    if successful + failed < started:
        reasons.append(f"{started - successful - failed} unfinished")
    # A call the callee neither completed nor failed never got its BYE relayed.
    callee_open = max(0, callee_calls - callee_successful - callee_failed)
    if callee_failed + callee_open >= MAX_FAILED_RATIO * max(started, 1):
        reasons.append(f"callee: {callee_failed} failed, {callee_open} open")
    if creation < MIN_CREATION_RATIO * rate:
        reasons.append(f"median creation rate {creation:.1f}/s")
    if completion < MIN_COMPLETION_RATIO * rate:
        reasons.append(f"median completion rate {completion:.1f}/s")

    latency_report: Report | None = None
    if latency:
        rtp = RTP_PORTS if system == "ccswitch" else None
        sipp_report, sipp_samples = _rtt_latencies(workdir)
        if wire is not None and wire.error is None and wire.packets:
            wire_report, found = wire.latencies(rtp)
            latency_report = {
                "source": WIRE_SOURCE,
                **wire_report,
                "sipp": sipp_report,
            }
        else:
            found = sipp_samples
            latency_report = {
                **sipp_report,
                "wire_error": wire.error if wire is not None else None,
            }
        if media_wire is not None:
            latency_report["rtp_packets"] = {
                "planned_per_call": rtp_packets,
                "sent_by_caller": media_wire.count(source=caller_media),
                "received_back_by_caller": media_wire.count(destination=caller_media),
            }
        if samples is not None:
            for status, values in found.items():
                samples.setdefault(status, []).extend(values)
    return Trial(
        system=system,
        rate=rate,
        passed=not reasons,
        why="; ".join(reasons) or "ok",
        started=started,
        successful=successful,
        failed=failed,
        retransmissions=retransmissions,
        callee_calls=callee_calls,
        callee_successful=callee_successful,
        callee_failed=callee_failed,
        creation_rate_median=round(creation, 1),
        completion_rate_median=round(completion, 1),
        invite_to_200_ms_mean=(
            _duration_ms(last["ResponseTime2(C)"]) if last else float("nan")
        ),
        dut_cpu_percent=round(dut_cpu, 1),
        dut_cpu_ms_per_call=round(10 * dut_cpu / rate, 3),
        dut_rss_mb=round(rss_mb, 1),
        caller_cpu_percent=round(caller_cpu, 1),
        callee_cpu_percent=round(callee_cpu, 1),
        udp_receive_buffer_errors=drops,
        caller_exit=caller.returncode,
        wall_seconds=round(time.monotonic() - began, 1),
        latency=latency_report,
    )


# --- the search ---------------------------------------------------------------------------


@dataclass
class Bisection:
    """RFC 7502-style search for the highest passing rate between two bounds."""

    system: str
    low: int
    high: int
    trials: list[Trial] = field(default_factory=list)
    stop_reason: str | None = None

    @property
    def best(self) -> Trial | None:
        passed = [t for t in self.trials if t.passed]
        return max(passed, key=lambda t: t.rate) if passed else None

    @property
    def lowest_fail(self) -> Trial | None:
        failed = [t for t in self.trials if not t.passed]
        return min(failed, key=lambda t: t.rate) if failed else None

    def next_rate(self) -> int | None:
        """The next rate to try, or None when the search is over."""
        if self.stop_reason is not None:
            return None
        tried = {t.rate for t in self.trials}
        best, fail = self.best, self.lowest_fail
        if self.low not in tried:
            return self.low
        if best is None:  # the low bound failed: halve until a pass
            assert fail is not None
            if fail.rate <= MIN_RATE:
                self.stop_reason = "search floor reached"
                return None
            return max(fail.rate // 2, MIN_RATE)
        if self.high not in tried:
            return self.high
        if fail is None:
            self.stop_reason = "search ceiling reached"
            return None
        if (fail.rate - best.rate) / fail.rate <= BISECT_TOLERANCE:
            self.stop_reason = "converged"
            return None
        return (best.rate + fail.rate) // 2

    def report(self) -> Report:
        best, fail = self.best, self.lowest_fail
        return {
            "max_cps": best.rate if best else None,
            "lowest_failed_cps": fail.rate if fail else None,
            "stop_reason": self.stop_reason or "time budget spent",
            "search_bounds": [self.low, self.high],
            "at_max": asdict(best) if best else None,
            "trials": [asdict(t) for t in self.trials],
        }


def print_trial(trial: Trial) -> None:
    late = ""
    if trial.latency is not None:
        late = (
            f"; 180 after 200 in {trial.latency.get('calls_180_after_200', '?')} calls"
        )
    print(
        f"  {trial.system:<8} {trial.rate:>5}/s  {'pass' if trial.passed else 'FAIL'}  "
        f"DUT CPU {trial.dut_cpu_percent:5.1f} % ({trial.dut_cpu_ms_per_call:.2f} ms/call)"
        f"  uac/uas {trial.caller_cpu_percent:.0f}/{trial.callee_cpu_percent:.0f} %  "
        f"INVITE->200 mean {trial.invite_to_200_ms_mean:.0f} ms  "
        f"rcvbuf drops {trial.udp_receive_buffer_errors}  ({trial.why}{late})",
        flush=True,
    )


def latency_entry(rate: int, trials: list[Trial], samples: Samples) -> Report:
    """The latency rounds of one system: per-call values pooled over the rounds."""
    sources = {(t.latency or {}).get("source", "SIPp -trace_rtt") for t in trials}
    return {
        "rate": rate,
        "rounds": len(trials),
        "source": " + ".join(sorted(sources)),
        **{
            f"invite_to_{status}_ms": summary(sorted(values))
            for status, values in sorted(samples.items())
        },
        "calls_180_after_200": sum(
            (t.latency or {}).get("calls_180_after_200", 0) for t in trials
        ),
        "rtp_packets_sent_and_echoed_back": [
            sum((t.latency or {}).get("rtp_packets", {}).get(key, 0) for t in trials)
            for key in ("sent_by_caller", "received_back_by_caller")
        ],
        "failed_calls": [t.failed for t in trials],
        "dut_cpu_percent": [t.dut_cpu_percent for t in trials],
        "dut_cpu_ms_per_call": [t.dut_cpu_ms_per_call for t in trials],
        "trials": [asdict(t) for t in trials],
    }


def run(args: argparse.Namespace, workdir: Path) -> Report:
    began = time.monotonic()
    sippy_script = ensure_sippy(args.sippy_venv)
    trial_cost = args.seconds + args.hold_ms / 1000 + TRIAL_OVERHEAD
    index = 0

    def trial(
        system: str, rate: int, latency: bool = False, samples: Samples | None = None
    ) -> Trial:
        nonlocal index
        kind = "latency" if latency else "cps"
        for attempt in range(1, SETUP_ATTEMPTS + 1):
            index += 1
            try:
                result = run_trial(
                    system, rate, seconds=args.seconds, hold_ms=args.hold_ms,
                    workdir=workdir / f"{index:02d}-{system}-{kind}-{rate}",
                    sippy_script=sippy_script, latency=latency, samples=samples,
                    rtp_packets=args.rtp_packets,
                )  # fmt: skip
                break
            except SetupError as error:
                if attempt == SETUP_ATTEMPTS:
                    result = failed_trial(system, rate, f"set-up failed: {error}"[:500])
                    break
                print(f"  {system} {rate}/s: set-up failed, again ({error})"[:300])
                time.sleep(SETTLE_SECONDS)
        print_trial(result)
        time.sleep(SETTLE_SECONDS)
        return result

    # Latency rounds: half before the search and half after it, so that a burst of
    # background load on the shared machine does not decide the figure alone.
    latency_trials: dict[str, list[Trial]] = {system: [] for system in args.systems}
    latency_samples: dict[str, Samples] = {system: {} for system in args.systems}

    def latency_round(label: str) -> None:
        print(
            f"call set-up latency at {args.latency_rate} calls/s "
            f"(callee sends 180, 200), {label}"
        )
        for system in args.systems:
            latency_trials[system].append(
                trial(system, args.latency_rate, True, latency_samples[system])
            )

    before = (args.latency_rounds + 1) // 2
    for round_number in range(before):
        latency_round(f"round {round_number + 1} of {args.latency_rounds}")
    reserve = (args.latency_rounds - before) * len(args.systems) * trial_cost

    print("maximum calls/s (callee answers 200 without 180), systems interleaved")
    searches = {
        system: Bisection(system, *SEARCH_BOUNDS[system]) for system in args.systems
    }
    budget_spent = False
    while not budget_spent:
        pending: list[tuple[Bisection, int]] = []
        for search in searches.values():
            rate = search.next_rate()
            if rate is not None:
                pending.append((search, rate))
        if not pending:
            break
        for search, rate in pending:
            if time.monotonic() - began + trial_cost + reserve > args.budget:
                budget_spent = True
                break
            search.trials.append(trial(search.system, rate))
    for round_number in range(before, args.latency_rounds):
        latency_round(f"round {round_number + 1} of {args.latency_rounds}")

    systems: Report = {}
    for system in args.systems:
        entry = searches[system].report()
        at_max = entry["at_max"]
        entry["dut_cpu_percent_at_max"] = at_max["dut_cpu_percent"] if at_max else None
        entry["dut_cpu_ms_per_call_at_max"] = (
            at_max["dut_cpu_ms_per_call"] if at_max else None
        )
        entry["dut_rss_mb_at_max"] = at_max["dut_rss_mb"] if at_max else None
        entry["latency"] = latency_entry(
            args.latency_rate, latency_trials[system], latency_samples[system]
        )
        systems[system] = entry
    ratio = None
    if all(s in systems for s in SYSTEMS):
        ours, theirs = systems["ccswitch"]["max_cps"], systems["sippy"]["max_cps"]
        if ours and theirs:
            ratio = round(ours / theirs, 2)
    return {
        "systems": systems,
        "ratio_max_cps_ccswitch_over_sippy": ratio,
        "goal": {"ratio_at_least": 3.0, "met": None if ratio is None else ratio >= 3.0},
        "search_seconds": round(time.monotonic() - began, 1),
    }


# --- report -------------------------------------------------------------------------------


def _git_commit() -> str | None:
    try:
        ref = (REPO / ".git" / "HEAD").read_text().strip()
        if ref.startswith("ref: "):
            return (REPO / ".git" / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None


def _sipp_version() -> str:
    try:
        out = subprocess.run(
            ["sipp", "-v"], capture_output=True, timeout=5, check=False
        ).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in out.splitlines():
        if "SIPp v" in line:
            return line.strip()
    return out.strip()[:80]


def _latency_cell(entry: Report, status: str) -> str:
    values = entry["latency"].get(f"invite_to_{status}_ms") or {}
    if not values.get("n"):
        return "-"
    return f"{values['p50']:.2f} / {values['p99']:.2f}"


def print_table(report: Report) -> None:
    rows: list[tuple[str, Callable[[Report], str]]] = [
        ("max calls/s", lambda e: str(e["max_cps"] or "-")),
        ("first failing calls/s", lambda e: str(e["lowest_failed_cps"] or "-")),
        ("DUT CPU at max (% of a core)", lambda e: str(e["dut_cpu_percent_at_max"])),
        ("DUT CPU per call (ms)", lambda e: str(e["dut_cpu_ms_per_call_at_max"])),
        ("DUT RSS at max (MB)", lambda e: str(e["dut_rss_mb_at_max"])),
        (
            f"INVITE->180 p50 / p99 ms @{report['method']['latency_rate']}/s",
            lambda e: _latency_cell(e, "180"),
        ),
        (
            f"INVITE->200 p50 / p99 ms @{report['method']['latency_rate']}/s",
            lambda e: _latency_cell(e, "200"),
        ),
        (
            f"RTP sent / echoed back @{report['method']['latency_rate']}/s",
            lambda e: "{} / {}".format(
                *e["latency"]["rtp_packets_sent_and_echoed_back"]
            ),
        ),
        (
            f"DUT CPU @{report['method']['latency_rate']}/s (%)",
            lambda e: "/".join(f"{v:g}" for v in e["latency"]["dut_cpu_percent"]),
        ),
    ]
    systems = list(report["systems"])
    width = max(len(label) for label, _ in rows)
    print(f"{'':<{width}}  " + "  ".join(f"{s:>14}" for s in systems))
    for label, cell in rows:
        values = [cell(report["systems"][s]) for s in systems]
        print(f"{label:<{width}}  " + "  ".join(f"{v:>14}" for v in values))
    ratio = report["ratio_max_cps_ccswitch_over_sippy"]
    if ratio is not None:
        print(f"max calls/s, ccswitch / sippy: {ratio}x (goal: at least 3x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.b2bua", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help="seconds of load per trial",
    )
    parser.add_argument(
        "--hold-ms", type=int, default=DEFAULT_HOLD_MS, help="call hold time (SIPp -d)"
    )
    parser.add_argument(
        "--latency-rate",
        type=int,
        default=DEFAULT_LATENCY_RATE,
        help="calls per second of the latency trials",
    )
    parser.add_argument(
        "--rtp-packets",
        type=int,
        default=DEFAULT_RTP_PACKETS,
        help="20 ms PCMU packets the caller sends per call, echoed by the callee "
        "(0: media negotiated, no RTP)",
    )
    parser.add_argument(
        "--latency-rounds",
        type=int,
        default=DEFAULT_LATENCY_ROUNDS,
        help="latency trials per system, split before and after the search",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET,
        help="stop starting trials after this many seconds",
    )
    parser.add_argument(
        "--systems",
        nargs="+",
        choices=SYSTEMS,
        default=list(SYSTEMS),
        help="which devices under test to measure",
    )
    parser.add_argument(
        "--sippy-venv",
        type=Path,
        default=DEFAULT_SIPPY_VENV,
        help="virtual environment holding sippy (created when missing)",
    )
    parser.add_argument(
        "--trial",
        metavar="SYSTEM:RATE",
        help="run one trial and print it (no search, no results file); for profiling",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the trial directories (logs, SIPp CSV) and print where",
    )
    args = parser.parse_args(argv)
    if not 2 * CPU_SKIP + 1 <= args.seconds <= 30:
        parser.error("--seconds must be in 5..30")
    if not 0 <= args.hold_ms <= 10000:
        parser.error("--hold-ms must be in 0..10000")
    if not 1 <= args.latency_rate <= 1000:
        parser.error("--latency-rate must be in 1..1000")
    if not 0 <= args.rtp_packets <= 50:
        parser.error("--rtp-packets must be in 0..50")
    if not 1 <= args.latency_rounds <= 4:
        parser.error("--latency-rounds must be in 1..4")
    if not 30 <= args.budget <= 900:
        parser.error("--budget must be in 30..900")

    started = time.monotonic()
    load_at_start = [round(value, 2) for value in os.getloadavg()]
    workdir = Path(tempfile.mkdtemp(prefix="ccswitch-bench-b2bua-"))
    try:
        if args.trial:
            system, _, rate = args.trial.partition(":")
            if system not in SYSTEMS or not rate.isdigit():
                parser.error("--trial takes SYSTEM:RATE, e.g. ccswitch:500")
            result = run_trial(
                system, int(rate), seconds=args.seconds, hold_ms=args.hold_ms,
                workdir=workdir / "trial", sippy_script=ensure_sippy(args.sippy_venv),
                rtp_packets=args.rtp_packets,
            )  # fmt: skip
            print_trial(result)
            return 0
        outcome = run(args, workdir)
    finally:
        if args.keep:
            print(f"trial directories kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    report: Report = {
        "benchmark": "b2bua",
        "command": " ".join(
            ["python -m bench.b2bua", *(sys.argv[1:] if argv is None else argv)]
        ),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _git_commit(),
        "python": platform.python_version(),
        "sipp": _sipp_version(),
        "sippy": sippy_version(args.sippy_venv),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
        },
        "method": {
            "flow": "SIPp uac -> B2BUA -> SIPp uas: INVITE (SDP offer) -> 200 -> ACK, "
            f"hold {args.hold_ms} ms, BYE -> 200; caller dials {CALLEE_USER}",
            "caller_scenario": str(
                (UAC_RTP_SCENARIO if args.rtp_packets else UAC_SCENARIO).relative_to(
                    REPO
                )
            ),
            "rtp": (
                f"{args.rtp_packets} PCMU packets (20 ms each) per call from the "
                "caller (SIPp play_pcap_audio) to the SDP answer's address, echoed "
                "by the callee (-rtp_echo): through ccswitch's relay both ways; "
                "straight between the SIPp ends with Sippy, which does not anchor "
                "media"
                if args.rtp_packets
                else "none: media negotiated only"
            ),
            "callee_scenario_cps": str(UAS_NO_180.relative_to(REPO)),
            "callee_scenario_latency": str(UAS_RINGING.relative_to(REPO)),
            "seconds_per_trial": args.seconds,
            "latency_rate": args.latency_rate,
            "latency_rounds": args.latency_rounds,
            "sipp_buff_size": BUFFER_SIZE,
            "pass_rule": {
                "failed_below": MAX_FAILED_RATIO,
                "retransmissions_at_most": MAX_RETRANSMISSION_RATIO,
                "median_creation_rate_at_least": MIN_CREATION_RATIO,
                "median_completion_rate_at_least": MIN_COMPLETION_RATIO,
                "all_started_finished": True,
                "callee_failed_or_unfinished_below": MAX_FAILED_RATIO,
            },
            "search": f"RFC 7502-style bisection from the bounds per system, stop at "
            f"{BISECT_TOLERANCE:.0%}; systems interleaved trial by trial; fresh DUT "
            "and callee per trial",
            "ccswitch": "ccswitch serve, demo config (demo trunk from 127.0.0.1, no "
            "auth), qualify_interval 0, overload shedding off, media_workers 0 (one "
            "process), log WARNING, no SIP trace, fresh SQLite file "
            f"(CDRs written), RTP ports {RTP_PORTS[0]}-{RTP_PORTS[1]}; callee "
            f"registered as user {CALLEE_USER} by SIPp before each trial; media: SDP "
            "answered and offered from ccswitch endpoints (2 RTP/RTCP port pairs per "
            "call), RTP as under rtp",
            "sippy": f"b2bua_simple -f -l {LOOPBACK} -p PORT -n {LOOPBACK}:CALLEE_PORT, "
            "SIPLOG_BEND=none, own venv; signalling only",
            "latency": "kernel receive timestamps of the caller's datagrams on lo; "
            "first INVITE of each Call-ID to the first 100/180/200 (CSeq INVITE)",
            "udp_receive_buffer_errors": "delta of /proc/net/snmp Udp RcvbufErrors over "
            "the trial, machine-wide",
            "cpu": f"psutil cpu_times summed over the process tree, first and last "
            f"{CPU_SKIP:g} s of the load dropped, % of one core; RSS is the peak "
            "sampled over the process tree",
        },
        **outcome,
    }
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"results written to {args.output} ({report['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
