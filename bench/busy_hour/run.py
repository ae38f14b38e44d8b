"""One busy-hour run: switch, RTP peer, operators, callers; then the figures.

Order matters and every step is bounded: the RTP peer binds first (its ports go into
the SIPp scenarios' SDP), then the switch (``ccswitch serve`` with the generated
configuration, log level INFO, no SIP trace), the CPU monitor on its process tree, the
operators (all registered before the first call, so that the ACD has every agent), and
last the callers, who offer calls for ``duration`` seconds and then place no new ones;
the calls in progress run to their end (operator's BYE, or the caller's patience).
Then everything is stopped by PID, in reverse order, and the records are read.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import psutil  # type: ignore[import-untyped]

from bench.b2bua import spawn
from bench.busy_hour import config, peers, records
from bench.busy_hour.monitor import TreeMonitor
from tests.harness import SwitchProcess, release
from tests.sipp.calls import free_block

REPO: Final = Path(__file__).resolve().parents[2]
RING_SECONDS: Final = 0.85  # mean of the operators' 200-1500 ms ringing
IVR_SECONDS: Final = 8.0  # greeting, menu up to the digit, "please hold"
MAX_RTP_PORTS: Final = 15800  # what tests.harness's big-block region can hold


@dataclass(frozen=True, kw_only=True)
class Load:
    """The scenario: see ``python -m bench.busy_hour --help``."""

    calls: int
    operators: int
    rate: float
    talk: float
    duration: float
    media_workers: int
    wrap_up: float = 1.0
    announce_interval: float = 20.0
    menu_timeout: float = 5.0
    dtmf_at: float = 5.0
    jitter_buffer_ms: float = 60.0
    per_process: int = 50
    patience: float = 0.0  # 0: derived from the expected wait
    drain: bool = True  # False: stop everything when offering stops (ceiling trials)
    shed: bool = True  # False: the switch's overload shedding turned off
    media_priority: str = "realtime"  # the switch's [rtp] media_priority

    def expected_wait(self) -> float:
        """Seconds a caller waits at full load: callers ahead / agents' throughput."""
        throughput = self.operators / (self.talk + self.wrap_up + RING_SECONDS)
        return max(0.0, self.calls - self.operators) / throughput

    def caller_patience(self) -> float:
        if self.patience > 0:
            return self.patience
        return 2 * self.expected_wait() + self.talk + IVR_SECONDS + 60.0

    def bound(self) -> float:
        """The longest the callers' SIPp may run: offering, then the last calls."""
        return self.duration + self.caller_patience() + self.talk + 120.0


class Run:
    """One run in its own temporary folder (kept with ``keep``)."""

    def __init__(self, load: Load, *, keep: bool = False, log: Any = print) -> None:
        self.load = load
        self.keep = keep
        self.log = log
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-busy-hour-"))
        self.switch: SwitchProcess | None = None
        self.generator: subprocess.Popen[bytes] | None = None
        self.operators: list[peers.Sipp] = []
        self.callers: peers.Sipp | None = None
        self.monitor: TreeMonitor | None = None
        self.notes: list[str] = []
        self._blocks: list[int] = []  # first ports of the blocks this run reserved

    # -- processes

    def _start_generator(self, port: int) -> None:
        ready = self.workdir / "rtpgen.ready"
        load = self.load
        command = [
            sys.executable,
            "-m",
            "bench.busy_hour.rtpgen",
            "--port",
            str(port),
            "--ready",
            str(ready),
            "--result",
            str(self.workdir / "rtpgen.json"),
            "--max-seconds",
            str(int(load.bound() + 180)),
            "--dtmf-at",
            str(load.dtmf_at),
            "--jitter-buffer",
            str(load.jitter_buffer_ms),
        ]
        self.generator = spawn(command, self.workdir, "rtpgen.out", cwd=REPO)
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.generator.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"RTP peer did not start: {self._tail('rtpgen.out')}"
                )
            time.sleep(0.1)

    def _stop_generator(self) -> dict[str, Any]:
        proc = self.generator
        result = self.workdir / "rtpgen.json"
        if proc is None:
            return {}
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(180)  # it analyses every packet before it exits
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.generator = None
        if not result.exists():
            return {"error": f"RTP peer wrote no result: {self._tail('rtpgen.out')}"}
        report: dict[str, Any] = json.loads(result.read_text())
        return report

    def _tail(self, name: str) -> str:
        path = self.workdir / name
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def _callers_sipp_pid(self) -> int | None:
        """SIPp's own PID under its ``timeout`` wrapper (SIGUSR1 would kill timeout)."""
        if self.callers is None or self.callers.proc is None:
            return None
        try:
            children = psutil.Process(self.callers.proc.pid).children()
        except psutil.Error:
            return None
        return children[0].pid if children else None

    def stop(self) -> None:
        """Everything this run started, by PID, in reverse order."""
        if self.callers is not None:
            self.callers.stop()
        for process in self.operators:
            process.stop()
        if self.generator is not None:
            self._stop_generator()
        if self.monitor is not None:
            self.monitor.stop()
        if self.switch is not None:
            self.switch.stop(timeout=30)

    def cleanup(self) -> None:
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the run

    def _reserve(self, size: int, *, udp_only: bool = False) -> int:
        """A free block of ports, remembered so that the run's end releases it."""
        start = free_block(size, udp_only=udp_only)
        self._blocks.append(start)
        return start

    def execute(self) -> dict[str, Any]:
        try:
            return self._execute()
        finally:
            try:
                self.stop()
                self.cleanup()
            finally:
                for start in self._blocks:  # every process is stopped: ports are free
                    release(start)

    def _execute(self) -> dict[str, Any]:
        load = self.load
        legs = load.calls + load.operators
        size = min(MAX_RTP_PORTS, max(400, -(-4 * legs // 200) * 200))
        rtp, sip_port, trunk_port, gen_port = (
            self._reserve(size, udp_only=True),
            self._reserve(1),
            self._reserve(1),
            self._reserve(4),
        )
        run = config.RunConfig(
            workdir=self.workdir,
            sip_port=sip_port,
            rtp_low=rtp,
            rtp_high=rtp + size - 1,
            trunk_port=trunk_port,
            operators=load.operators,
            max_calls=int(1.2 * legs) + 20,
            media_workers=load.media_workers,
            wrap_up=load.wrap_up,
            announce_interval=load.announce_interval,
            menu_timeout=load.menu_timeout,
            shed=load.shed,
            media_priority=load.media_priority,
        )
        path, notes = config.write(run)
        self.notes += notes
        self._start_generator(gen_port)
        self.switch = SwitchProcess(
            workdir=self.workdir,
            config=path,
            port=sip_port,
            rtp=(rtp, rtp + size - 1),
            extra_args=["--log-level", "INFO", "--sip-trace", ""],
        ).start(timeout=90)
        assert self.switch.proc is not None
        self.monitor = TreeMonitor(self.switch.proc.pid).start()
        bound = load.bound()
        names = config.agent_names(load.operators)
        self.operators, done = peers.start_operators(
            self.workdir,
            switch_port=sip_port,
            names=names,
            rtp_port=gen_port + 2,
            talk=load.talk,
            per_process=load.per_process,
            bound=bound + 60,
        )
        if done < len(names):
            self.notes.append(f"only {done} of {len(names)} operators registered")
        self.log(f"{done} operators registered; offering calls for {load.duration:g} s")
        time.sleep(1.0)  # auto-login follows the registration
        offered_at = time.time()
        self.callers = peers.start_callers(
            self.workdir,
            switch_port=sip_port,
            trunk_port=trunk_port,
            rtp_port=gen_port,
            rate=load.rate,
            calls=load.calls,
            total=max(1, math.ceil(load.rate * load.duration)),
            patience=load.caller_patience(),
            bound=bound,
        )
        self._offer(offered_at)
        ended_at = time.time()
        self.callers.stop()
        for process in self.operators:
            process.stop()
        generator = self._stop_generator()
        self.monitor.stop()
        code = self.switch.stop(timeout=60)
        if code not in (0, None, -15):
            self.notes.append(f"ccswitch exited with status {code}")
        return self._report(offered_at, ended_at, generator)

    def _offer(self, offered_at: float) -> None:
        """Offer for ``duration``, then no new calls; wait for the rest (bounded)."""
        load = self.load
        assert self.callers is not None and self.callers.proc is not None
        stop_offering = time.monotonic() + load.duration
        while time.monotonic() < stop_offering and self.callers.proc.poll() is None:
            switch = self.switch.proc if self.switch is not None else None
            if switch is not None and switch.poll() is not None:
                self.notes.append("ccswitch died during the run")
                break
            time.sleep(0.5)
        if not load.drain:
            return
        pid = self._callers_sipp_pid()
        if pid is not None:
            psutil.Process(pid).send_signal(10)  # SIGUSR1: SIPp's soft quit
        self.log(f"stopped offering after {time.time() - offered_at:.0f} s; draining")
        code = self.callers.wait(load.caller_patience() + load.talk + 90)
        if code is None:
            self.notes.append("callers' SIPp did not finish in time; stopped")
            self.callers.stop()

    # -- figures

    def _report(
        self, offered_at: float, ended_at: float, generator: dict[str, Any]
    ) -> dict[str, Any]:
        load = self.load
        assert self.switch is not None and self.monitor is not None
        callers = peers.caller_outcomes(self.workdir)
        setup = np.asarray(callers.pop("setup_ms"), dtype=np.float64)
        acd = records.acd_figures(self.switch.db)
        ivr = records.ivr_figures(self.switch.db)
        cdr = records.leg_series(self.switch.db)
        recorded = records.recordings(
            self.workdir / "recordings", min_seconds=0.8 * load.talk
        )
        series = generator.get("series", [])
        legs_peak = max((row[1] for row in series), default=0)
        wall = ended_at - offered_at
        cpu = self.monitor.summary(offered_at, ended_at)
        cpu["cpu_cores_at_peak"] = _at_peak(series, self.monitor.samples, legs_peak)
        bridged = acd["queue_events"].get("connect", 0)
        # a caller who gave up is not a failure; neither, without a drain, is a call
        # SIPp aborted when it was stopped (the error log names every real failure)
        failed = sum(callers["failed_by_status"].values())
        if load.drain:
            failed = max(failed, int(callers["sipp_failed"]) - int(callers["gave_up"]))
        switch_setup = np.asarray(cdr.pop("setup_ms"), dtype=np.float64)
        report: dict[str, Any] = {
            "offered": callers["sipp_created"],
            # ended by the operator's BYE (a caller who gave up ends "successfully")
            "completed": int(callers["sipp_successful"]) - int(callers["gave_up"]),
            "failed": max(0, failed),
            "failed_by_status": callers["failed_by_status"],
            "gave_up": callers["gave_up"],
            "bridged": bridged,
            "legs_peak": legs_peak,
            "legs_peak_cdr": cdr["legs_peak_cdr"],
            "cps": round(callers["sipp_created"] / load.duration, 2),
            "rtp_lost": generator.get("rtp_lost"),
            "rtp_late": generator.get("rtp_late"),
            "rtp_gaps_over_100ms": generator.get("gaps_over_100ms"),
            "rtp_gap_max_ms": generator.get("gap_max_ms"),
            "jitter_p50_ms": generator.get("jitter_played_p50_ms"),
            "jitter_p99_ms": generator.get("jitter_played_p99_ms"),
            "jitter_max_ms": generator.get("jitter_played_max_ms"),
            "setup_p50_ms": _pct(setup, 50),
            "setup_p99_ms": _pct(setup, 99),
            "setup_max_ms": round(float(setup.max()), 1) if setup.size else None,
            "setup_switch_p50_ms": _pct(switch_setup, 50),
            "setup_switch_p99_ms": _pct(switch_setup, 99),
            "cpu_cores": cpu["cpu_cores"],
            "cpu_cores_at_peak": cpu["cpu_cores_at_peak"],
            "rss_mb": cpu["rss_mb"],
            "service_level": _round(acd["service_level"], 4),
            "asa_s": _round(acd["asa_s"], 2),
            **recorded,
            "digits_heard": ivr["ivr_menu"]["digit_1"],
            "ivr": ivr,
            "acd": acd,
            "cpu": cpu,
            "sipp_retransmissions": callers["sipp_retransmissions"],
            "rtp": {
                k: v
                for k, v in generator.items()
                if k not in ("series", "active_series")
            },
            "cdr": {k: v for k, v in cdr.items() if k != "cdr_series"},
            "wall_s": round(wall, 1),
            "offered_at": offered_at,
            "load": load.__dict__,
            "caller_patience_s": round(load.caller_patience(), 1),
            "notes": self.notes,
            "errors_tail": callers["errors_tail"] if failed > 0 else "",
            "switch_log_warnings": _warnings(self.switch.log()),
            "series": {
                "rtp": series,
                "cdr_legs": cdr["cdr_series"],
                "cpu": [
                    [s["t"], s["cpu_cores"], s["rss_mb"], s["cpu"]]
                    for s in self.monitor.samples
                ],
            },
        }
        return report


def _at_peak(
    series: list[list[Any]], samples: list[dict[str, Any]], peak: int
) -> float | None:
    """Mean CPU (cores) over the seconds in which at least 90 % of the peak legs ran."""
    busy = {int(row[0]) for row in series if row[1] >= 0.9 * peak}
    cores = [s["cpu_cores"] for s in samples if int(s["t"]) in busy]
    return round(sum(cores) / len(cores), 3) if cores else None


def _pct(values: npt.NDArray[np.float64], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values.size else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _warnings(log: str, limit: int = 20) -> list[str]:
    """The switch's WARNING and worse lines (first ``limit``), and how many."""
    lines = [
        line
        for line in log.splitlines()
        if " WARNING " in line
        or " ERROR " in line
        or "Traceback" in line
        or " CRITICAL " in line
    ]
    return [f"{len(lines)} lines", *lines[:limit]]
