"""A typed driver for a headless baresip 1.0.0 (Debian 12) phone on loopback.

Adapted from the shared recipe ``recipes/baresip/bsagent.py``: one
:class:`BaresipPhone` is one baresip process with its own profile directory, SIP
port, ctrl_tcp port and RTP range, all taken from :func:`tests.harness.free_port`
so that tests can run side by side. Commands go over ctrl_tcp (JSON in
netstrings) or stdin (``/quit`` and DTMF keys); events arrive on a reader thread.
Every wait is bounded and the process is stopped by its PID: ``/quit`` first (it
unregisters), then SIGTERM, then SIGKILL to its own process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.harness import LOOPBACK, free_port, free_range, require_tool

MODULE_PATH = "/usr/lib/baresip/modules"

# ctrl_tcp and stdin cannot be reached until baresip has loaded its modules.
START_TIMEOUT = 10.0
COMMAND_TIMEOUT = 5.0
# /quit unregisters (one REGISTER with Expires: 0 and its answer), then exits.
QUIT_GRACE = 5.0
SIGNAL_GRACE = 2.0
POLL_INTERVAL = 0.1

# aufile needs 16-bit mono WAV at the codec rate; baresip hangs up when it ends.
SAMPLE_RATE = 8000
SILENCE_SECONDS = 600

RTP_PORTS = 20  # only calls use RTP; registration tests need none

CONFIG = """\
poll_method\t\tepoll
sip_listen\t\t{host}:{sip_port}
net_interface\t\t{host}
call_local_timeout\t120
call_max_calls\t\t4
audio_player\t\talsa,null
audio_source\t\taufile,{source_wav}
audio_alert\t\talsa,null
audio_buffer\t\t20-160
rtp_ports\t\t{rtp_low}-{rtp_high}
rtcp_mux\t\tno
jitter_buffer_delay\t5-10
module_path\t\t{module_path}
module\t\t\tstdio.so
module\t\t\tg711.so
module\t\t\talsa.so
module\t\t\taufile.so
module_tmp\t\tuuid.so
module_tmp\t\taccount.so
module_app\t\tcontact.so
module_app\t\tmenu.so
module_app\t\tctrl_tcp.so
ctrl_tcp_listen\t\t{host}:{ctrl_port}
statmode_default\toff
"""

ACCOUNT = (
    "<sip:{user}@{host}:{registrar_port};transport={transport}>"
    ";auth_pass={password};answermode={answermode}"
    ";audio_codecs=PCMU,PCMA;regint={regint}\n"
)

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
# /reginfo prints one line per account; a registered one says OK.
REGISTERED = re.compile(r"\sOK\s")


class BaresipError(RuntimeError):
    """baresip did not start, did not answer a command or an awaited event is late."""


@dataclass(kw_only=True)
class BaresipPhone:
    """One baresip process registered as ``user`` to a registrar on loopback.

    :param workdir: the profile directory (config, accounts, log); created.
    :param user: the SIP user (AOR ``sip:USER@127.0.0.1:REGISTRAR_PORT``).
    :param password: the digest password.
    :param registrar_port: where the registrar listens on 127.0.0.1.
    :param regint: the registration interval baresip asks for, in seconds.
    :param transport: ``udp`` or ``tcp``, put in the AOR as a URI parameter.
    :param answermode: ``auto`` or ``manual``.
    """

    workdir: Path
    user: str
    password: str
    registrar_port: int
    regint: int = 60
    transport: str = "udp"
    answermode: str = "auto"
    sip_port: int = 0
    ctrl_port: int = 0
    rtp: tuple[int, int] = (0, 0)
    seen: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # baresip also binds TLS on sip_port + 1, hence a free pair.
        if not self.sip_port:
            self.sip_port = free_port(pair=True)
        if not self.ctrl_port:
            self.ctrl_port = free_port()
        if self.rtp == (0, 0):
            self.rtp = free_range(RTP_PORTS)
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._responses: queue.Queue[dict[str, Any]] = queue.Queue()
        self._log_file: Any = None

    # -- process control ------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "baresip.log"

    def log(self) -> str:
        if not self.log_path.exists():
            return ""
        return ANSI_ESCAPE.sub("", self.log_path.read_text(errors="replace"))

    def start(self, *, timeout: float = START_TIMEOUT) -> BaresipPhone:
        """Write the profile, start baresip and connect to its ctrl_tcp port."""
        binary = require_tool("baresip")
        self.workdir.mkdir(parents=True, exist_ok=True)
        source_wav = self.workdir / "silence.wav"
        if not source_wav.exists():
            with wave.open(str(source_wav), "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(SAMPLE_RATE)
                out.writeframes(b"\0\0" * SAMPLE_RATE * SILENCE_SECONDS)
        (self.workdir / "config").write_text(
            CONFIG.format(
                host=LOOPBACK,
                sip_port=self.sip_port,
                ctrl_port=self.ctrl_port,
                rtp_low=self.rtp[0],
                rtp_high=self.rtp[1],
                source_wav=source_wav,
                module_path=MODULE_PATH,
            )
        )
        (self.workdir / "accounts").write_text(
            ACCOUNT.format(
                user=self.user,
                host=LOOPBACK,
                registrar_port=self.registrar_port,
                transport=self.transport,
                password=self.password,
                answermode=self.answermode,
                regint=self.regint,
            )
        )
        (self.workdir / "contacts").write_text("")
        self._log_file = self.log_path.open("wb")
        # stdin must be a pipe: baresip's stdio module polls it with epoll, which
        # refuses /dev/null. It stays open for the life of the process.
        self._proc = subprocess.Popen(
            [binary, "-f", str(self.workdir)],
            stdin=subprocess.PIPE,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise BaresipError(f"baresip exited early ({code}):\n{self.log()}")
            try:
                self._sock = socket.create_connection(
                    (LOOPBACK, self.ctrl_port), timeout=1.0
                )
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise BaresipError(
                        f"ctrl_tcp port {self.ctrl_port} never opened:\n{self.log()}"
                    ) from None
                time.sleep(POLL_INTERVAL)
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        return self

    def quit(self, *, timeout: float = QUIT_GRACE) -> int | None:
        """Send ``/quit`` (unregister, then exit) and wait; the exit code or None."""
        if self._proc is None or self._proc.poll() is not None:
            return None if self._proc is None else self._proc.returncode
        with contextlib.suppress(OSError):
            self.type_line("/quit")
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int | None:
        """Quit politely, then SIGTERM, then SIGKILL the process group, by PID."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            self.quit()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(SIGNAL_GRACE)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(SIGNAL_GRACE)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        if self._reader is not None:
            self._reader.join(SIGNAL_GRACE)
            self._reader = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._proc = None
        return proc.returncode

    def __enter__(self) -> BaresipPhone:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- ctrl_tcp -------------------------------------------------------------------

    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        buffer = b""
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            # Netstrings: <length>:<json>,
            while True:
                colon = buffer.find(b":")
                if colon < 0:
                    break
                length = int(buffer[:colon])
                end = colon + 1 + length
                if len(buffer) < end + 1:
                    break
                message = json.loads(buffer[colon + 1 : end].decode("utf-8", "replace"))
                buffer = buffer[end + 1 :]
                if message.get("event"):
                    self._events.put(message)
                elif message.get("response"):
                    self._responses.put(message)

    def command(
        self, name: str, params: str | None = None, *, timeout: float = COMMAND_TIMEOUT
    ) -> str:
        """Run a long command (the ``/name`` of the console, without the slash)."""
        if self._sock is None:
            raise BaresipError("baresip is not running")
        message: dict[str, str] = {"command": name, "token": str(time.monotonic_ns())}
        if params is not None:
            message["params"] = params
        data = json.dumps(message).encode()
        self._sock.sendall(b"%d:%s," % (len(data), data))
        try:
            response = self._responses.get(timeout=timeout)
        except queue.Empty:
            raise BaresipError(f"no response to {name!r} in {timeout}s") from None
        if not response.get("ok"):
            raise BaresipError(f"{name} failed: {response.get('data')}")
        return ANSI_ESCAPE.sub("", str(response.get("data", "")))

    def reginfo(self) -> str:
        return self.command("reginfo")

    def is_registered(self) -> bool:
        return REGISTERED.search(self.reginfo()) is not None

    def wait_registered(self, *, timeout: float = 10.0) -> str:
        """Poll ``reginfo`` until the account is OK (the first REGISTER_OK event is
        usually raised before ctrl_tcp is connected, so it cannot be waited for)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.reginfo()
            if REGISTERED.search(info):
                return info
            if time.monotonic() > deadline:
                raise BaresipError(f"not registered after {timeout}s: {info.strip()}")
            time.sleep(POLL_INTERVAL * 2)

    def wait_event(self, kind: str, *, timeout: float = 10.0) -> dict[str, Any]:
        """The next event of ``kind`` (e.g. ``REGISTER_OK``); others go to ``seen``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BaresipError(f"no {kind} event in {timeout}s")
            try:
                event = self._events.get(timeout=left)
            except queue.Empty:
                raise BaresipError(f"no {kind} event in {timeout}s") from None
            self.seen.append(event)
            if event.get("type") == kind:
                return event

    # -- stdin ----------------------------------------------------------------------

    def type_line(self, line: str) -> None:
        """Type one console line on stdin (e.g. ``/quit``)."""
        if self._proc is None or self._proc.stdin is None:
            raise BaresipError("baresip is not running")
        self._proc.stdin.write(line.encode() + b"\n")
        self._proc.stdin.flush()

    def dial(self, uri: str) -> str:
        return self.command("dial", uri)

    def hangup(self) -> str:
        return self.command("hangup")
