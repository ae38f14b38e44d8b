"""Registrar benchmark: the highest REGISTER rate a real ``ccswitch serve`` sustains.

Run as ``python -m bench.register [--budget 170]``. Loopback only; every process is
started with its own session, stopped by its PID and bounded in time; the whole run
stays under ``--budget`` seconds (three minutes by default).

Each trial starts a fresh ``ccswitch serve`` (the demo configuration with keep-alives
off, free ports, its own SQLite file in a temporary directory, log level WARNING, no
SIP trace) and drives it with SIPp 3.6.1 running
``tests/sipp/phone-register-csv-digest-accepted.xml``: REGISTER, 401, REGISTER with
MD5 digest credentials, 200, for users 1001-1010 taken in turn from an ``-inf`` CSV.
One "call" is one such registration (two transactions, four messages, one HMAC nonce,
one digest check, one SQLite write). SIPp runs with ``-buff_size 4194304`` (its default
buffers drop packets on their own, PERFORMANCE.md section 2.1.3) for ``--seconds`` at
rate R and dumps ``-trace_stat`` every second.

A trial passes (PERFORMANCE.md section 2.1 rules, read from the trace_stat CSV) when
failed registrations are under 1 %, SIPp retransmissions are at most 1 % of
registrations, every registration started was completed, and the median per-second
creation rate is at least 95 % of R. The search doubles R from ``--start`` until a
trial fails, then bisects between the last pass and the first failure until they are
within 10 % or the budget is spent. The server's CPU is psutil ``cpu_times`` of its
process over the trial with the first and last 2 s dropped, as a percentage of one
core. Each trial also records how many datagrams the kernel dropped for a full UDP
receive buffer (``/proc/net/snmp`` RcvbufErrors, machine-wide): drops with the server
below one core mean the socket buffer, not the CPU, set the limit. Results go to
``bench/results/register.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import psutil  # type: ignore[import-untyped]

from bench.b2bua import stop_process

REPO: Final = Path(__file__).resolve().parents[1]
RESULTS: Final = Path(__file__).resolve().parent / "results" / "register.json"
SCENARIO: Final = REPO / "tests" / "sipp" / "phone-register-csv-digest-accepted.xml"
LOOPBACK: Final = "127.0.0.1"

USERS: Final = [(str(number), f"demo{number}") for number in range(1001, 1011)]
BUFFER_SIZE: Final = 4194304

# PERFORMANCE.md section 2.1: the pass rule.
MAX_FAILED_RATIO: Final = 0.01
MAX_RETRANSMISSION_RATIO: Final = 0.01
MIN_CREATION_RATIO: Final = 0.95

# Search bounds.
DEFAULT_START_RATE: Final = 100
MIN_RATE: Final = 10
MAX_RATE: Final = 6400
BISECT_TOLERANCE: Final = 0.10  # stop when (fail - pass) / fail is at most this
DEFAULT_SECONDS: Final = 8.0
DEFAULT_BUDGET: Final = 170.0
CPU_SKIP: Final = 2.0  # seconds dropped at each end of a trial for the CPU figure

# Time bounds of one trial.
SERVER_START_TIMEOUT: Final = 15.0
SERVER_STOP_TIMEOUT: Final = 10.0
RECV_TIMEOUT_MS: Final = 4000  # a registration with no answer this long has failed
DRAIN_SECONDS: Final = 12.0  # after the last registration is started
SETTLE_SECONDS: Final = 1.0  # between trials

Report = dict[str, Any]


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, 0))
            port = int(probe.getsockname()[1])
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                tcp.bind((LOOPBACK, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port found")


def options_answered(port: int, timeout: float) -> bool:
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
            return sock.recv(65535).startswith(b"SIP/2.0 200")
        except OSError:
            return False


def write_config(workdir: Path) -> Path:
    """The demo configuration with OPTIONS keep-alives off (they are not measured)."""
    text = resources.files("ccswitch").joinpath("demo.toml").read_text()
    lines = [
        "qualify_interval = 0.0" if line.startswith("qualify_interval = ") else line
        for line in text.splitlines()
    ]
    path = workdir / "ccswitch.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Server:
    """One ``ccswitch serve`` subprocess for one trial."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / "ccswitch.log"
        config = write_config(workdir)
        self.command = [
            sys.executable, "-m", "ccswitch", "serve",
            "--config", str(config),
            "--listen", f"{LOOPBACK}:{self.port}",
            "--db", str(workdir / "ccswitch.db"),
            "--log-level", "WARNING",
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ccswitch exited early: {self.log()[-2000:]}")
            if options_answered(self.port, 0.3):
                return self
        stop_process(self.proc, SERVER_STOP_TIMEOUT)
        raise RuntimeError(f"ccswitch did not answer OPTIONS: {self.log()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc, SERVER_STOP_TIMEOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# --- one trial --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Trial:
    rate: int
    passed: bool
    why: str
    started: int
    successful: int
    failed: int
    retransmissions: int
    creation_rate_median: float
    response_ms_mean: float
    response_ms_p50_bucket: str
    response_ms_p95_bucket: str
    server_cpu_percent: float
    sipp_cpu_percent: float
    server_rss_mb: float
    udp_receive_buffer_errors: int | None
    sipp_exit: int | None
    wall_seconds: float


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


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _duration_ms(text: str) -> float:
    """SIPp's ``hh:mm:ss:micro`` duration in milliseconds."""
    hours, minutes, seconds, micro = (int(part) for part in text.split(":"))
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + micro / 1000


def _buckets(row: dict[str, str], fraction: float, total: int) -> str:
    """The ResponseTimeRepartition1 bucket holding the given fraction of answers."""
    counted = 0
    for name, value in row.items():
        if name.startswith("ResponseTimeRepartition1_") and value.strip():
            counted += int(value)
            if total and counted >= fraction * total:
                return name.removeprefix("ResponseTimeRepartition1_")
    return "-"


def _read_stats(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as file:
        return [
            row for row in csv.DictReader(file, delimiter=";") if row.get("StartTime")
        ]


def run_trial(rate: int, seconds: float, workdir: Path) -> Trial:
    """One bounded trial at ``rate`` registrations per second."""
    sipp = shutil.which("sipp")
    if sipp is None:
        raise SystemExit("sipp is not installed (apt-get install sip-tester)")
    began = time.monotonic()
    workdir.mkdir(parents=True)
    users = workdir / "users.csv"
    users.write_text(
        "SEQUENTIAL\n"
        + "".join(f"{u};[authentication username={u} password={p}]\n" for u, p in USERS)
    )
    stat_file = workdir / "stat.csv"
    total = max(1, int(rate * seconds))
    limit = int(seconds + DRAIN_SECONDS)
    drops_before = udp_receive_buffer_errors()
    with Server(workdir) as server:
        assert server.proc is not None
        command = [
            sipp, f"{LOOPBACK}:{server.port}",
            "-sf", str(SCENARIO), "-inf", str(users),
            "-i", LOOPBACK, "-p", str(free_port()), "-mi", LOOPBACK,
            "-r", str(rate), "-m", str(total), "-l", str(max(100, rate * 10)),
            "-buff_size", str(BUFFER_SIZE),
            "-recv_timeout", str(RECV_TIMEOUT_MS),
            "-nostdin", "-timeout", f"{limit}s", "-timeout_error",
            "-trace_stat", "-stf", str(stat_file), "-fd", "1",
            "-trace_err", "-error_file", str(workdir / "sipp-errors.log"),
        ]  # fmt: skip
        server_ps = psutil.Process(server.proc.pid)
        samples: list[tuple[float, float, float]] = []  # (time, server cpu, sipp cpu)
        with (workdir / "sipp.out").open("wb") as out:
            sipp_proc = subprocess.Popen(
                command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        try:
            sipp_ps = psutil.Process(sipp_proc.pid)
            start = time.monotonic()
            deadline = start + limit + 5
            while sipp_proc.poll() is None and time.monotonic() < deadline:
                try:
                    now = time.monotonic()
                    samples.append(
                        (now - start, _cpu_seconds(server_ps), _cpu_seconds(sipp_ps))
                    )
                except psutil.NoSuchProcess:
                    break
                time.sleep(1.0)
        finally:
            sipp_exit = (
                stop_process(sipp_proc, 5.0) if sipp_proc.poll() is None else None
            )
            sipp_exit = sipp_proc.returncode if sipp_exit is None else sipp_exit
        rss_mb = server_ps.memory_info().rss / 2**20
    drops_after = udp_receive_buffer_errors()
    drops = (
        None
        if drops_before is None or drops_after is None
        else drops_after - drops_before
    )

    # CPU over the steady part of the sending phase.
    window = [s for s in samples if CPU_SKIP <= s[0] <= seconds - CPU_SKIP + 0.5]
    if len(window) >= 2:
        span = window[-1][0] - window[0][0]
        server_cpu = 100 * (window[-1][1] - window[0][1]) / span
        sipp_cpu = 100 * (window[-1][2] - window[0][2]) / span
    else:
        server_cpu = sipp_cpu = float("nan")

    rows = _read_stats(stat_file)
    if not rows:
        return Trial(
            rate=rate, passed=False, why="no SIPp statistics", started=0, successful=0,
            failed=0, retransmissions=0, creation_rate_median=0.0, response_ms_mean=0.0,
            response_ms_p50_bucket="-", response_ms_p95_bucket="-",
            server_cpu_percent=round(server_cpu, 1), sipp_cpu_percent=round(sipp_cpu, 1),
            server_rss_mb=round(rss_mb, 1), udp_receive_buffer_errors=drops,
            sipp_exit=sipp_exit, wall_seconds=round(time.monotonic() - began, 1),
        )  # fmt: skip
    last = rows[-1]
    started = int(last["OutgoingCall(C)"])
    successful = int(last["SuccessfulCall(C)"])
    failed = int(last["FailedCall(C)"])
    retransmissions = int(last["Retransmissions(C)"])
    # Per-second creation rates while SIPp was still creating registrations.
    creating = [
        float(row["CallRate(P)"])
        for row in rows[1:]
        if int(row["TotalCallCreated"]) < total or float(row["CallRate(P)"]) > 0
    ][: int(seconds)]
    creation = statistics.median(creating) if creating else 0.0

    reasons = []
    if started < total:
        reasons.append(f"only {started}/{total} started")
    if failed >= MAX_FAILED_RATIO * max(started, 1):
        reasons.append(f"{failed} failed")
    if retransmissions > MAX_RETRANSMISSION_RATIO * max(started, 1):
        reasons.append(f"{retransmissions} retransmissions")
    if successful + failed < started:
        reasons.append(f"{started - successful - failed} unfinished")
    if creation < MIN_CREATION_RATIO * rate:
        reasons.append(f"median creation rate {creation:g}/s")
    return Trial(
        rate=rate,
        passed=not reasons,
        why="; ".join(reasons) or "ok",
        started=started,
        successful=successful,
        failed=failed,
        retransmissions=retransmissions,
        creation_rate_median=round(creation, 1),
        response_ms_mean=_duration_ms(last["ResponseTime1(C)"]),
        response_ms_p50_bucket=_buckets(last, 0.5, successful),
        response_ms_p95_bucket=_buckets(last, 0.95, successful),
        server_cpu_percent=round(server_cpu, 1),
        sipp_cpu_percent=round(sipp_cpu, 1),
        server_rss_mb=round(rss_mb, 1),
        udp_receive_buffer_errors=drops,
        sipp_exit=sipp_exit,
        wall_seconds=round(time.monotonic() - began, 1),
    )


# --- the search ---------------------------------------------------------------------------


def search(start_rate: int, seconds: float, budget: float, workdir: Path) -> Report:
    """Double from ``start_rate`` until a failure, then bisect; bounded by ``budget``."""
    began = time.monotonic()
    worst_trial = seconds + DRAIN_SECONDS + SERVER_START_TIMEOUT + 10
    trials: list[Trial] = []
    best: Trial | None = None
    lowest_fail: Trial | None = None
    rate = start_rate
    stop_reason = "converged"
    while True:
        if time.monotonic() - began + worst_trial > budget and trials:
            stop_reason = "time budget spent"
            break
        trial = run_trial(rate, seconds, workdir / f"trial-{len(trials):02d}-{rate}")
        trials.append(trial)
        print(
            f"  {rate:>5}/s  {'pass' if trial.passed else 'FAIL'}  "
            f"server CPU {trial.server_cpu_percent:5.1f} %  "
            f"mean {trial.response_ms_mean:6.1f} ms  "
            f"UDP rcvbuf drops {trial.udp_receive_buffer_errors}  ({trial.why})",
            flush=True,
        )
        if trial.passed:
            if best is None or trial.rate > best.rate:
                best = trial
        elif lowest_fail is None or trial.rate < lowest_fail.rate:
            lowest_fail = trial
        time.sleep(SETTLE_SECONDS)

        # Next rate: double until the first failure, halve until the first pass.
        if lowest_fail is None:
            if rate >= MAX_RATE:
                stop_reason = "search ceiling reached"
                break
            rate = min(rate * 2, MAX_RATE)
            continue
        if best is None:
            if rate <= MIN_RATE:
                stop_reason = "search floor reached"
                break
            rate = max(rate // 2, MIN_RATE)
            continue
        if (lowest_fail.rate - best.rate) / lowest_fail.rate <= BISECT_TOLERANCE:
            break
        rate = (best.rate + lowest_fail.rate) // 2
    return {
        "max_rate": best.rate if best else None,
        "server_cpu_ms_per_registration": (
            round(10 * best.server_cpu_percent / best.rate, 3) if best else None
        ),
        "at_max": asdict(best) if best else None,
        "lowest_failed_rate": lowest_fail.rate if lowest_fail else None,
        "stop_reason": stop_reason,
        "trials": [asdict(trial) for trial in trials],
        "search_seconds": round(time.monotonic() - began, 1),
    }


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.register", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--start",
        type=int,
        default=DEFAULT_START_RATE,
        help="first rate tried (registrations per second)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help="seconds of load per trial",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET,
        help="stop starting trials after this many seconds",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the trial directories (logs, SIPp CSV) and print where",
    )
    args = parser.parse_args(argv)
    if not MIN_RATE <= args.start <= MAX_RATE:
        parser.error(f"--start must be in {MIN_RATE}..{MAX_RATE}")
    if not 2 * CPU_SKIP + 1 <= args.seconds <= 30:
        parser.error("--seconds must be in 5..30")
    if not 10 <= args.budget <= 600:
        parser.error("--budget must be in 10..600")

    started = time.monotonic()
    load_at_start = [round(value, 2) for value in os.getloadavg()]
    workdir = Path(tempfile.mkdtemp(prefix="ccswitch-bench-register-"))
    print(
        f"REGISTER with digest auth, {len(USERS)} users, {args.seconds:g} s per trial"
    )
    try:
        outcome = search(args.start, args.seconds, args.budget, workdir)
    finally:
        if args.keep:
            print(f"trial directories kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    report: Report = {
        "benchmark": "register",
        "command": " ".join(
            ["python -m bench.register", *(sys.argv[1:] if argv is None else argv)]
        ),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _git_commit(),
        "python": platform.python_version(),
        "sipp": _sipp_version(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
        },
        "method": {
            "scenario": str(SCENARIO.relative_to(REPO)),
            "flow": "REGISTER -> 401 -> REGISTER (MD5 digest) -> 200",
            "users": [user for user, _ in USERS],
            "seconds_per_trial": args.seconds,
            "sipp_buff_size": BUFFER_SIZE,
            "pass_rule": {
                "failed_below": MAX_FAILED_RATIO,
                "retransmissions_at_most": MAX_RETRANSMISSION_RATIO,
                "median_creation_rate_at_least": MIN_CREATION_RATIO,
                "all_started_finished": True,
            },
            "server": "ccswitch serve, demo config, qualify_interval 0, log WARNING, "
            "no SIP trace, fresh process and SQLite file per trial",
            "udp_receive_buffer_errors": "delta of /proc/net/snmp Udp RcvbufErrors over "
            "the trial, machine-wide",
            "cpu": f"psutil cpu_times of the server process, first and last "
            f"{CPU_SKIP:g} s of the load dropped, % of one core",
        },
        **outcome,
    }
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    best = report["at_max"]
    if best is None:
        print("no rate passed")
    else:
        print(
            f"max {report['max_rate']} registrations/s "
            f"(first failure at {report['lowest_failed_rate']}; {report['stop_reason']}): "
            f"server CPU {best['server_cpu_percent']} % of one core, "
            f"RSS {best['server_rss_mb']} MB, REGISTER->200 mean {best['response_ms_mean']} ms "
            f"(p50 bucket {best['response_ms_p50_bucket']} ms, "
            f"p95 bucket {best['response_ms_p95_bucket']} ms)"
        )
    print(f"results written to {args.output} ({report['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
