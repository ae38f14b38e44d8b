"""The forwarder run: the same RTP peer and packet rate, relayed by the bare forwarder.

Started after the switch's run, with the switch stopped, for the number of legs the
switch carried at its peak: the forwarder (:mod:`bench.busy_hour.forwarder`) binds its
pairs, the RTP peer sends 50 packets a second on every leg for ``seconds``, and the
forwarder's CPU is read with psutil over the window after ``warmup``.  Same loss and
jitter figures as the main run (all its packets are relayed ones).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.b2bua import spawn, stop_process
from tests.sipp.calls import free_block

REPO = Path(__file__).resolve().parents[2]


def _start(command: list[str], out: Path) -> subprocess.Popen[bytes]:
    """``python -m COMMAND`` from the checkout, output to ``out``."""
    return spawn([sys.executable, "-m", *command], out.parent, out.name, cwd=REPO)


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args!r} did not start")
        time.sleep(0.05)


def forwarder_run(
    legs: int, *, seconds: float = 30.0, warmup: float = 5.0, priority: str = "realtime"
) -> dict[str, Any]:
    """Relay ``legs`` legs (``legs // 2`` pairs) for ``seconds``; the figures.

    The forwarder asks for the ``priority`` the switch's media workers had, so that
    both meet the same competition for the cores."""
    pairs = max(1, legs // 2)
    with tempfile.TemporaryDirectory(prefix="bench-busy-hour-fwd-") as name:
        work = Path(name)
        peer_port = free_block(4)
        forwarder = _start(
            [
                "bench.busy_hour.forwarder",
                "--pairs",
                str(pairs),
                "--peer-port",
                str(peer_port),
                "--ports",
                str(work / "ports.json"),
                "--result",
                str(work / "forwarder.json"),
                "--max-seconds",
                str(seconds + 120),
                "--priority",
                priority,
            ],
            work / "forwarder.out",
        )
        generator = None
        try:
            _wait_file(work / "ports.json", forwarder, 30)
            generator = _start(
                [
                    "bench.busy_hour.rtpgen",
                    "--port",
                    str(peer_port),
                    "--ready",
                    str(work / "ready"),
                    "--result",
                    str(work / "rtpgen.json"),
                    "--max-seconds",
                    str(seconds),
                    "--dtmf-at",
                    "-1",
                    "--fixed",
                    str(work / "ports.json"),
                ],
                work / "rtpgen.out",
            )
            _wait_file(work / "ready", generator, 30)
            process = psutil.Process(forwarder.pid)
            time.sleep(warmup)
            before, t0 = process.cpu_times(), time.monotonic()
            time.sleep(max(1.0, seconds - warmup - 2.0))
            after, t1 = process.cpu_times(), time.monotonic()
            used = (after.user + after.system) - (before.user + before.system)
            generator.wait(seconds + 120)
        finally:
            if generator is not None:
                stop_process(generator, 120)
            stop_process(forwarder, 10)
        peer = json.loads((work / "rtpgen.json").read_text())
        relayed = json.loads((work / "forwarder.json").read_text())
    return {
        "legs": 2 * pairs,
        "forwarder_cpu_cores": round(used / (t1 - t0), 3),
        "forwarded": relayed["forwarded"],
        "rtp_lost": peer.get("rtp_lost"),
        "rtp_late": peer.get("rtp_late"),
        "jitter_relayed_p50_ms": peer.get("jitter_relayed_p50_ms"),
        "jitter_relayed_p99_ms": peer.get("jitter_relayed_p99_ms"),
        "jitter_relayed_max_ms": peer.get("jitter_relayed_max_ms"),
        "generator_cpu_cores": peer.get("generator_cpu_cores"),
        "seconds": seconds,
    }
