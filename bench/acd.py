"""ACD benchmark: service level, ASA and abandon rate next to the offered load.

Run as ``python -m bench.acd [--callers 150] [--agents 15] [--rates 2.5,4]``.
Loopback only; every process has its own session, is stopped by its PID, and every
wait is bounded (each SIPp run by ``timeout``; the whole run by ``--budget``).

Two parts:

1. *Simulation* (``acd/simulate.py``): Poisson callers, exponential talk, callers
   abandoning after an exponential patience, through the real distributor on a
   simulated clock, for loads 0.5-1.1. Reports service level (20 s), ASA, abandon
   rate, the EWT error next to the "average past hold time" error, and the
   distributor's decision time per call.
2. *SIPp*: a real ``ccswitch serve`` (log level INFO, no SIP trace) with
   ``--agents`` extra users 2001.. as agents of ``support`` (wrap-up 1 s), each a
   registered SIPp phone answering after 0.2-1.5 s and talking ``--talk`` ms; one
   SIPp client places ``--callers`` calls to 4001 at each rate from the demo trunk,
   each giving up 30 s after the answer if no agent came
   (``bench/scenarios/queue-caller-waits-or-gives-up.xml``). The figures are computed
   from the switch's queue log (``acd/stats.py``); the decision time per step is
   the service's own ``acd decisions`` line. Offered load is the arrival rate times
   the measured handle time over the number of agents.

Results go to ``bench/results/acd.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sqlite3
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from acd.records import LogRecord, QueueEvent  # noqa: E402
from acd.simulate import simulate  # noqa: E402
from acd.stats import queue_stats  # noqa: E402
from tests.harness import LOOPBACK, SwitchProcess, run_sipp  # noqa: E402
from tests.sipp.calls import Callee, free_block  # noqa: E402
from tests.sipp.test_acd_sipp import no_crm  # noqa: E402

RESULTS: Final = REPO / "bench" / "results" / "acd.json"
CALLER: Final = "../../bench/scenarios/queue-caller-waits-or-gives-up.xml"
AGENT: Final = "agent-answers-after-random-delay-then-hangs-up.xml"
SERVICE_LEVEL: Final = 20.0
FIRST_USER: Final = 2001


def simulation_part(seconds: float) -> list[dict[str, Any]]:
    rows = []
    for load in (0.5, 0.7, 0.85, 0.95, 1.1):
        agents, handle = 20, 180.0
        result = simulate(
            agents=agents,
            arrival_rate=load * agents / handle,
            handle_time=handle,
            seconds=seconds,
            seed=11,
            patience=240.0,
        )
        stats = result.stats
        rows.append(
            {
                "offered_load": load,
                "agents": agents,
                "callers": result.callers,
                "service_level_20s": stats.service_level,
                "asa_s": stats.average_speed_of_answer,
                "abandon_rate": stats.abandon_rate,
                "ewt_mean_abs_error_s": result.ewt_mean_abs_error,
                "hold_time_mean_abs_error_s": result.hold_time_mean_abs_error,
                "decision_us_per_call": 1e6 * result.decision_seconds_per_call,
            }
        )
    return rows


def bench_config(workdir: Path, agents: int) -> Path:
    text = resources.files("ccswitch").joinpath("demo.toml").read_text()
    text = no_crm(text.replace("qualify_interval = 30.0", "qualify_interval = 0"))
    text = text.replace("max_expected_wait = 600.0", "max_expected_wait = 0.0")
    text = text.replace("max_length = 50", "max_length = 0")
    support = '[[queues]]\nname = "support"\n'
    text = text.replace(
        support + 'strategy = "longest-idle"\nwrap_up = 5.0\n',
        support + 'strategy = "longest-idle"\nwrap_up = 1.0\n',
    )
    extra = []
    for number in range(FIRST_USER, FIRST_USER + agents):
        extra.append(f'[[users]]\nname = "{number}"\npassword = "demo{number}"\n')
        extra.append(
            f'[[agents]]\nname = "{number}"\nusers = ["{number}"]\n'
            'queues = ["support"]\nauto_login = true\n'
        )
    path = workdir / "bench.toml"
    path.write_text(text + "\n" + "\n".join(extra))
    return path


def _records(db: Path) -> list[LogRecord]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT at, event, queue, caller_id, agent, wait, talk, wrap_up, detail"
            " FROM queue_log ORDER BY at, rowid"
        ).fetchall()
    return [
        LogRecord(
            at=r[0],
            event=QueueEvent(r[1]),
            queue=r[2],
            caller_id=r[3],
            agent=r[4],
            wait=r[5],
            talk=r[6],
            wrap_up=r[7],
            detail=r[8],
        )
        for r in rows
    ]


def sipp_trial(
    workdir: Path, *, agents: int, callers: int, rate: float, talk_ms: int
) -> dict[str, Any]:
    config = bench_config(workdir, agents)
    rtp = free_block(800, udp_only=True)
    switch = SwitchProcess(
        workdir=workdir,
        config=config,
        port=free_block(1),
        rtp=(rtp, rtp + 799),
        extra_args=["--log-level", "INFO", "--sip-trace", ""],
    ).start()
    phones: list[Callee] = []
    started = time.monotonic()
    try:
        for number in range(FIRST_USER, FIRST_USER + agents):
            phone = Callee(
                switch,
                str(number),
                AGENT,
                workdir,
                args=("-set", "talk_ms", str(talk_ms)),
                calls=callers,
                agent=True,
            )
            phones.append(phone.start())
        result = run_sipp(
            CALLER,
            switch.port,
            "-s",
            "4001",
            "-m",
            str(callers),
            "-r",
            f"{rate:g}",
            "-l",
            str(callers),
            "-mp",
            str(free_block(4)),
            workdir=workdir,
            local_port=free_block(1),
            timeout=callers / rate + 120,
        )
    finally:
        for phone in phones:
            phone.stop()
        switch.stop()
    elapsed = time.monotonic() - started
    records = _records(switch.db)
    stats = queue_stats(
        records, start=0.0, end=math.inf, service_level=SERVICE_LEVEL, queue="support"
    )
    decision = re.findall(r"acd decisions: (\d+) steps, ([0-9.]+) us", switch.log())
    handle = stats.average_handle_time or 0.0
    return {
        "agents": agents,
        "callers": callers,
        "rate_per_s": rate,
        "offered_load": rate * handle / agents,
        "sipp_exit": result.returncode,
        "answered": stats.answered,
        "abandoned": stats.abandoned,
        "service_level_20s": stats.service_level,
        "asa_s": stats.average_speed_of_answer,
        "aht_s": stats.average_handle_time,
        "abandon_rate": stats.abandon_rate,
        "occupancy": stats.occupancy,
        "decision_steps": int(decision[-1][0]) if decision else None,
        "decision_us_per_step": float(decision[-1][1]) if decision else None,
        "elapsed_s": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=150)
    parser.add_argument("--agents", type=int, default=15)
    parser.add_argument("--rates", default="2.5,4")
    parser.add_argument("--talk", type=int, default=3000, help="talk time, ms")
    parser.add_argument("--sim-hours", type=float, default=8.0)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds")
    parser.add_argument("--no-sipp", action="store_true")
    args = parser.parse_args()
    deadline = time.monotonic() + args.budget
    report: dict[str, Any] = {"simulation": simulation_part(args.sim_hours * 3600)}
    for row in report["simulation"]:
        print(
            f"sim load {row['offered_load']:.2f}: SL {row['service_level_20s']:.2f}"
            f" ASA {row['asa_s']:.0f}s abandon {row['abandon_rate']:.3f}"
            f" EWT err {row['ewt_mean_abs_error_s']:.0f}s vs hold-time err"
            f" {row['hold_time_mean_abs_error_s']:.0f}s;"
            f" decision {row['decision_us_per_call']:.0f} us/call"
        )
    report["sipp"] = []
    if not args.no_sipp:
        for rate in (float(r) for r in args.rates.split(",")):
            if time.monotonic() + args.callers / rate + 60 > deadline:
                print(f"skipping rate {rate}: over the budget")
                continue
            with tempfile.TemporaryDirectory(prefix="bench-acd-") as tmp:
                row = sipp_trial(
                    Path(tmp),
                    agents=args.agents,
                    callers=args.callers,
                    rate=rate,
                    talk_ms=args.talk,
                )
            report["sipp"].append(row)
            print(json.dumps(row, indent=None, default=str))
    report["host"] = {"python": sys.version.split()[0], "loopback": LOOPBACK}
    RESULTS.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
