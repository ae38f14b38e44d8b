"""The SIPp processes of a run: operator lines and the trunk's callers.

Operators: SIPp costs about 1.4 % of a core per process even when idle (measured on
this box: 11 ticks in 8 s), so 250 processes would burn three and a half cores doing
nothing.  So up to ``per_process`` agents share a port: a one-shot SIPp registers each
of them with exactly one contact (its own user part at that port), then a server-mode
SIPp on the port answers every call to any of them; the switch still sees one phone
per agent.  (SIPp's out-of-call scenario in a registering client, the recipes' way,
left concurrent calls paused for tens of seconds here.)

Callers: one SIPp client at ``--rate`` calls/s, at most ``--calls`` at once (``-l``),
stopped from offering after ``--duration`` by SIGUSR1 (SIPp's "no new calls, exit when
the calls in progress are done").  Every process has its own session, runs under
``timeout`` and is stopped by its PID; every wait is bounded.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.b2bua import spawn, stop_process
from bench.busy_hour.config import NUMBER, password
from tests.harness import LOOPBACK, require_tool
from tests.sipp.calls import free_block

SCENARIOS: Final = Path(__file__).resolve().parents[1] / "scenarios"
CALLER: Final = SCENARIOS / "busy-hour-caller-waits-for-bye.xml"
REGISTER: Final = SCENARIOS / "busy-hour-operators-register.xml"
ANSWER: Final = SCENARIOS / "busy-hour-operator-answers-talks-hangs-up.xml"
BUFFER: Final = "4194304"  # PERFORMANCE.md 2.1: SIPp's default buffers drop bursts
PATIENCE_PLACEHOLDER: Final = 'timeout="600000"'


@dataclass
class Sipp:
    """One SIPp process and the files it writes."""

    name: str
    workdir: Path
    command: list[str]
    proc: subprocess.Popen[bytes] | None = None
    out: Path = field(default_factory=Path)

    def start(self) -> Sipp:
        self.out = self.workdir / f"{self.name}.out"
        self.proc = spawn(self.command, self.workdir, self.out.name)
        return self

    def signal(self, number: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, number)

    def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL, to this process's own group; its exit status."""
        return None if self.proc is None else stop_process(self.proc, 5)

    def files(self, suffix: str) -> list[Path]:
        return sorted(self.workdir.glob(f"{self.name}*{suffix}"))


def _base(workdir: Path, name: str, bound: float, port: int) -> list[str]:
    return [
        "timeout",
        "-k",
        "5",
        str(int(bound) + 10),
        require_tool("sipp"),
        "-i",
        LOOPBACK,
        "-mi",
        LOOPBACK,
        "-p",
        str(port),
        "-mp",
        str(free_block(4)),
        "-buff_size",
        BUFFER,
        "-nostdin",
        "-default_behaviors",
        "all,-bye",
        "-trace_err",
        "-error_file",
        str(workdir / f"{name}_errors.log"),
        "-trace_logs",
        "-log_file",
        str(workdir / f"{name}_logs.log"),
    ]


def _register(
    workdir: Path, name: str, switch_port: int, port: int, group: list[str]
) -> int:
    """One-shot SIPp registering ``group`` from ``port``; how many got their 200."""
    users = workdir / f"{name}.csv"
    users.write_text(
        "SEQUENTIAL\n"
        + "".join(
            f"{user};[authentication username={user} password={password(user)}]\n"
            for user in group
        )
    )
    timeout = 30 + len(group) / 10
    command = [
        *_base(workdir, f"{name}-register", timeout, port),
        f"{LOOPBACK}:{switch_port}",
        "-sf",
        str(REGISTER),
        "-inf",
        str(users),
        "-m",
        str(len(group)),
        "-r",
        "100",
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
    ]
    with (workdir / f"{name}-register.out").open("wb") as out:
        subprocess.run(
            command,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            timeout=timeout + 20,
            check=False,
        )
    log = workdir / f"{name}-register_logs.log"
    return log.read_text(errors="replace").count("registered ") if log.exists() else 0


def start_operators(
    workdir: Path,
    *,
    switch_port: int,
    names: list[str],
    rtp_port: int,
    talk: float,
    per_process: int,
    bound: float,
) -> tuple[list[Sipp], int]:
    """Register ``names`` (``per_process`` per port), then answer on those ports.

    Returns the answering processes and how many agents registered.
    """
    processes, registered = [], 0
    for first in range(0, len(names), per_process):
        group = names[first : first + per_process]
        name = f"operators-{first // per_process}"
        port = free_block(1)
        registered += _register(workdir, name, switch_port, port, group)
        command = [
            *_base(workdir, name, bound, port),
            "-sf",
            str(ANSWER),
            "-set",
            "talk_ms",
            str(int(talk * 1000)),
            "-key",
            "rtp_port",
            str(rtp_port),
            "-timeout",
            f"{int(bound)}s",
        ]
        processes.append(Sipp(name, workdir, command).start())
    return processes, registered


def start_callers(
    workdir: Path,
    *,
    switch_port: int,
    trunk_port: int,
    rtp_port: int,
    rate: float,
    calls: int,
    total: int,
    patience: float,
    bound: float,
) -> Sipp:
    """The trunk: ``total`` calls at most, ``rate`` per second, ``calls`` at once."""
    scenario = workdir / CALLER.name
    text = CALLER.read_text()
    if PATIENCE_PLACEHOLDER not in text:
        raise RuntimeError(f"{CALLER} lost its {PATIENCE_PLACEHOLDER}")
    scenario.write_text(
        text.replace(PATIENCE_PLACEHOLDER, f'timeout="{int(patience * 1000)}"')
    )
    command = [
        *_base(workdir, "callers", bound, trunk_port),
        f"{LOOPBACK}:{switch_port}",
        "-sf",
        str(scenario),
        "-s",
        NUMBER,
        "-r",
        f"{rate:g}",
        "-l",
        str(calls),
        "-m",
        str(total),
        "-key",
        "rtp_port",
        str(rtp_port),
        "-trace_rtt",
        "-rtt_freq",
        "1",
        "-trace_stat",
        "-stf",
        str(workdir / "callers_stat.csv"),
        "-fd",
        "1",
        "-timeout",
        f"{int(bound)}s",
        "-timeout_error",
    ]
    return Sipp("callers", workdir, command).start()


# TODO: SIPp's -trace_rtt has 1 ms resolution, so the callers' set-up p50 reads 0-12 ms
# in steps; the switch-side figure (CDR) has microseconds, kernel timestamps of the
# INVITE and the 200 on lo would give the caller's view at that resolution too.
# TODO: an operator call the switch ends first (caller gave up, CANCEL while ringing)
# is an "unexpected message" abort in the operators' SIPp log, not counted anywhere.
_ABORT = re.compile(r"Aborting call[^\n]*")
_STATUS = re.compile(r"received 'SIP/2\.0 (\d{3})")


def caller_outcomes(workdir: Path) -> dict[str, Any]:
    """What the callers' SIPp saw: statistics, failures by status, give-ups, set-up."""
    stat = workdir / "callers_stat.csv"
    rows = (
        [line.split(";") for line in stat.read_text().splitlines()]
        if stat.exists()
        else []
    )
    last: dict[str, str] = (
        dict(zip(rows[0], rows[-1], strict=False)) if len(rows) > 1 else {}
    )
    errors = workdir / "callers_errors.log"
    text = errors.read_text(errors="replace") if errors.exists() else ""
    by_status: Counter[str] = Counter()
    for line in _ABORT.findall(text):
        status = _STATUS.search(line)
        kind = "timeout" if "retransmission" in line else "other"
        by_status[status.group(1) if status else kind] += 1
    logs = workdir / "callers_logs.log"
    gave_up = logs.read_text(errors="replace").count("gave-up ") if logs.exists() else 0
    setup = []
    for path in workdir.glob("*_rtt.csv"):
        for line in path.read_text(errors="replace").splitlines()[1:]:
            fields = line.split(";")
            if len(fields) >= 3 and fields[2].strip() == "1":
                setup.append(float(fields[1]))
    return {
        "sipp_created": int(last.get("TotalCallCreated", 0) or 0),
        "sipp_successful": int(last.get("SuccessfulCall(C)", 0) or 0),
        "sipp_failed": int(last.get("FailedCall(C)", 0) or 0),
        "sipp_retransmissions": int(last.get("Retransmissions(C)", 0) or 0),
        "failed_by_status": {k: v for k, v in by_status.items() if v},
        "gave_up": gave_up,
        "setup_ms": setup,
        "errors_tail": text[-2000:],
    }
