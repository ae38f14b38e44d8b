"""Helpers for the B2BUA's SIPp call tests: callee phones and port blocks.

A callee is two SIPp runs on one port: a one-shot REGISTER (the binding stays), then
a server-mode scenario on the same port (the switch sends INVITEs to the address the
phone registered from). Every process runs in its own session under ``timeout`` and
is stopped by its PID; every wait is bounded.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import (
    LOOPBACK,
    SIPP_DIR,
    SippResult,
    SwitchProcess,
    demo_config,
    pick_start,
    require_tool,
    reserve,
    run_sipp,
)

# Blocks come from tests.harness.pick_start: below Linux's ephemeral range
# (32768-60999), so that busy neighbours' client sockets do not sit in them.
START_ATTEMPTS = 3


def free_block(size: int, *, udp_only: bool = False) -> int:
    """The first port of ``size`` consecutive ports free now (even start)."""
    kinds = (
        (socket.SOCK_DGRAM,) if udp_only else (socket.SOCK_DGRAM, socket.SOCK_STREAM)
    )
    for _ in range(500):
        start = pick_start(size)
        if not reserve(start, start + size - 1):
            continue
        sockets: list[socket.socket] = []
        try:
            for port in range(start, start + size):
                for kind in kinds:
                    s = socket.socket(socket.AF_INET, kind)
                    sockets.append(s)
                    s.bind((LOOPBACK, port))
            return start
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no block of {size} free ports")


def start_switch(
    workdir: Path, *, edit: Callable[[str], str] | None = None, **replacements: str
) -> SwitchProcess:
    """``ccswitch serve`` on the demo config (keep-alives off, short T1 by default).

    :param edit: rewrites the configuration text after the replacements.
    """
    # The demo CRM's fixed port would collide between switches run side by side.
    crm = f'"127.0.0.1:{free_block(1)}"'
    values = {"qualify_interval": "0", "crm_listen": crm, **replacements}
    config = demo_config(workdir, **values)
    if edit is not None:
        config.write_text(edit(config.read_text()))
    # The ports are free when picked but a busy neighbour (load tests on the same
    # box) may take one before the switch binds it: a start that fails is retried
    # on fresh ports, and the last failure is raised.
    for attempt in range(START_ATTEMPTS):
        rtp = free_block(200, udp_only=True)
        process = SwitchProcess(
            workdir=workdir, config=config, rtp=(rtp, rtp + 199), port=free_block(1)
        )
        try:
            return process.start()
        except RuntimeError:
            process.stop()
            if attempt == START_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def sipp_ok(result: SippResult) -> None:
    assert result.returncode == 0, (
        f"SIPp failed ({result.returncode}):\n{result.output[-3000:]}"
        f"\n{result.errors[-3000:]}"
    )


def call(
    switch: SwitchProcess,
    scenario: str,
    number: str,
    workdir: Path,
    *args: str,
    local_port: int | None = None,
) -> SippResult:
    """The demo trunk (SIPp, unauthenticated, 127.0.0.1) calls ``number``.

    :param local_port: SIPp's SIP port (a free one by default); a test that reads
        what the switch sent this caller in the trace picks it beforehand.
    """
    port = local_port or free_block(1)
    media = free_block(4)
    return run_sipp(
        scenario,
        switch.port,
        "-s",
        number,
        "-m",
        "1",
        "-mp",
        str(media),
        *args,
        workdir=workdir,
        local_port=port,
        timeout=40,
    )


@dataclass
class Callee:
    """A registered SIPp phone answering with ``scenario`` in server mode."""

    switch: SwitchProcess
    user: str
    scenario: str
    workdir: Path
    args: tuple[str, ...] = ()
    port: int = 0
    media_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    error_file: Path = field(default_factory=Path)
    register: bool = True  # False: a carrier or other unregistered server
    calls: int = 1  # calls taken one after another (-m)
    # An agent phone taking several calls runs longer, without a scenario timeout.
    agent: bool = False

    def start(self) -> Callee:
        self.port = self.port or free_block(1)
        self.media_port = free_block(4)
        if self.register:
            self._register()
        self.error_file = self.workdir / f"callee-{self.user}-errors.log"
        self._launch()
        return self

    def _register(self) -> None:
        registered = run_sipp(
            "phone-register-digest-accepted.xml",
            self.switch.port,
            "-s",
            self.user,
            "-au",
            self.user,
            "-ap",
            f"demo{self.user}",
            "-m",
            "1",
            "-mp",
            str(free_block(4)),
            workdir=self.workdir,
            local_port=self.port,
            timeout=10,
        )
        sipp_ok(registered)

    def _launch(self) -> None:
        kind = "agent" if self.agent else "callee"
        self.log_file = self.workdir / f"{kind}-{self.user}.out"
        limits = (
            []
            if self.agent
            else ["-timeout", "45s", "-timeout_error", "-default_behaviors", "all,-bye"]
        )
        cmd = [
            "timeout",
            "-k",
            "5",
            "150" if self.agent else "60",
            require_tool("sipp"),
            "-sf",
            str(SIPP_DIR / self.scenario),
            "-i",
            LOOPBACK,
            "-mi",
            LOOPBACK,
            "-p",
            str(self.port),
            "-mp",
            str(self.media_port),
            "-m",
            str(self.calls),
            "-nostdin",
            *limits,
            "-trace_err",
            "-error_file",
            str(self.error_file),
            *self.args,
        ]
        with self.log_file.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait(self, timeout: float = 30.0) -> int:
        """SIPp's exit status (0: the scenario ran to the end)."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def errors(self) -> str:
        text = ""
        for path in (self.error_file, self.log_file):
            if path.exists():
                text += path.read_text(errors="replace")[-3000:]
        return text


PHONE_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
)


class PythonPhone:
    """A minimal UAC on a UDP socket: INVITE (digest auth on 407), ACK, REFER, BYE.

    Used where SIPp cannot sign an INVITE as the switch checks it (SIPp's
    ``[authentication]`` signs ``uri="sip:HOST:PORT"``, not the Request-URI, RFC 2617
    3.2.2.5). Each response is awaited for at most ``timeout`` seconds.
    """

    def __init__(
        self, *, port: int, switch_port: int, user: str, password: str
    ) -> None:
        from switch.sip.auth import DigestClient

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, port))
        self.sock.settimeout(10.0)
        self.port = port
        self.switch = (LOOPBACK, switch_port)
        self.user = user
        self.digest = DigestClient(username=user, password=password)
        self.call_id = f"{random.getrandbits(64):x}@python-phone"
        self.to_tag = ""
        self.statuses: list[int] = []
        self.requests: list[str] = []  # methods the switch sent us

    def close(self) -> None:
        self.sock.close()

    def _send(
        self,
        method: str,
        uri: str,
        cseq: int,
        extra: str = "",
        body: str = "",
        branch: str | None = None,
    ) -> str:
        branch = branch or f"z9hG4bK{random.getrandbits(48):x}"
        to_tag = f";tag={self.to_tag}" if self.to_tag else ""
        content = "Content-Type: application/sdp\r\n" if body else ""
        text = (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch={branch};rport\r\n"
            f"From: <sip:{self.user}@{LOOPBACK}>;tag=pyphone\r\n"
            f"To: <{uri}>{to_tag}\r\n"
            f"Call-ID: {self.call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{self.user}@{LOOPBACK}:{self.port}>\r\nMax-Forwards: 70\r\n"
            f"{extra}{content}Content-Length: {len(body)}\r\n\r\n{body}"
        )
        self.sock.sendto(text.encode(), self.switch)
        return branch

    def _final(self, method: str) -> object:
        from switch.sip.message import Request, parse_message

        while True:
            message = parse_message(self.sock.recv(65535))
            if isinstance(message, Request):
                self._answer(message)
                continue
            if message.cseq.method != method:
                continue
            self.statuses.append(message.status)
            if message.status >= 200:
                return message

    def call(self, number: str, media_port: int, extra: str = "") -> int:
        """INVITE ``number``; answer a 407 once; ACK a 2xx. The final status.

        :param extra: header lines for the first INVITE (each ending in CRLF).
        """
        from switch.sip.message import Response

        uri = f"sip:{number}@{LOOPBACK}:{self.switch[1]}"
        body = PHONE_SDP.format(port=media_port)
        branch = self._send("INVITE", uri, 1, extra=extra, body=body)
        response = self._final("INVITE")
        assert isinstance(response, Response)
        if response.status == 407:
            self.to_tag = response.to.tag or ""
            self._send("ACK", uri, 1, branch=branch)
            self.to_tag = ""
            (credentials,) = self.digest.authorize(
                response.headers.get_all("Proxy-Authenticate"),
                method="INVITE",
                uri=uri,
                body=body.encode(),
            )
            self._send(
                "INVITE",
                uri,
                2,
                extra=f"Proxy-Authorization: {credentials}\r\n",
                body=body,
            )
            response = self._final("INVITE")
            assert isinstance(response, Response)
        if response.status < 300:
            self.to_tag = response.to.tag or ""
            self.remote = str(response.contacts[0].uri)
            self._send("ACK", self.remote, response.cseq.number)
        return response.status

    def _answer(self, request: object) -> None:
        """200 to a request from the switch (NOTIFY, BYE); it is remembered."""
        from switch.sip.message import Request, make_response

        assert isinstance(request, Request)
        self.requests.append(request.method)
        if request.method != "ACK":
            response = make_response(request, 200, "OK")
            self.sock.sendto(response.to_bytes(), self.switch)

    def refer(self, refer_to: str) -> int:
        """REFER in the answered call (CSeq 2); the status of its final response."""
        extra = f"Refer-To: {refer_to}\r\nReferred-By: <sip:{self.user}@{LOOPBACK}>\r\n"
        self._send("REFER", self.remote, 2, extra=extra)
        response = self._final("REFER")
        return getattr(response, "status", 0)

    def wait_for_bye(self) -> list[str]:
        """Answer the switch's requests until its BYE; the methods received."""
        from switch.sip.message import Request, parse_message

        while "BYE" not in self.requests:
            message = parse_message(self.sock.recv(65535))
            if isinstance(message, Request):
                self._answer(message)
        return self.requests

    def hang_up(self) -> int:
        """BYE on the answered call; the status of its response."""
        self._send("BYE", self.remote, 3)
        response = self._final("BYE")
        return getattr(response, "status", 0)
