"""CPU and memory of the switch's process tree, sampled once a second.

The switch is a signalling process plus its media worker processes (``python -m
media.workers``, its children); both are read with psutil every second, from a thread
of the bench (about 1 ms of CPU per sample).  Figures per sample: each process's CPU
in cores over that second, the tree's total, its summed RSS, and the machine's CPU per
core, so a busy neighbour (other benches share the box) shows in the same rows.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil  # type: ignore[import-untyped]


def _cpu_pressure() -> float | None:
    """Seconds some runnable task of the box waited for a CPU so far (Linux PSI)."""
    try:
        with open("/proc/pressure/cpu") as file:
            return int(file.readline().rsplit("total=", 1)[1]) / 1e6
    except (OSError, ValueError, IndexError):
        return None


class TreeMonitor:
    """A thread sampling ``pid`` and its descendants until :meth:`stop`."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="tree-monitor", daemon=True
        )
        self._previous: dict[int, tuple[float, float]] = {}
        self._names: dict[int, str] = {}

    def start(self) -> TreeMonitor:
        psutil.cpu_percent(percpu=True)  # the first call only sets the baseline
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def _name(self, process: psutil.Process) -> str:
        if process.pid not in self._names:
            try:
                line = " ".join(process.cmdline())
            except psutil.Error:
                line = ""
            kind = "media-worker" if "media.workers" in line else "signalling"
            if process.pid != self.pid and kind == "signalling":
                kind = "child"
            self._names[process.pid] = f"{kind}-{process.pid}"
        return self._names[process.pid]

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            sample: dict[str, Any] = {
                "t": round(time.time(), 3),
                "cpu": {},
                "rss_mb": 0.0,
            }
            for process in self._processes():
                try:
                    times = process.cpu_times()
                    rss = process.memory_info().rss
                except psutil.Error:
                    continue
                used = times.user + times.system
                before = self._previous.get(process.pid)
                self._previous[process.pid] = (now, used)
                sample["rss_mb"] += rss / 2**20
                if before is not None and now > before[0]:
                    cores = (used - before[1]) / (now - before[0])
                    sample["cpu"][self._name(process)] = round(cores, 3)
            sample["cpu_cores"] = round(sum(sample["cpu"].values()), 3)
            sample["rss_mb"] = round(sample["rss_mb"], 1)
            sample["machine_per_core"] = psutil.cpu_percent(percpu=True)
            sample["pressure_s"] = _cpu_pressure()
            self.samples.append(sample)

    def summary(self, start: float, end: float) -> dict[str, Any]:
        """Mean and peak CPU between epoch ``start`` and ``end``; peak RSS overall."""
        inside = [s for s in self.samples if start <= s["t"] <= end] or self.samples
        if not inside:
            return {"cpu_cores": None, "rss_mb": None}
        cores = sorted(s["cpu_cores"] for s in inside)
        names = sorted({name for s in inside for name in s["cpu"]})
        per_process = {
            name: round(sum(s["cpu"].get(name, 0.0) for s in inside) / len(inside), 3)
            for name in names
        }
        cpus = len(inside[0]["machine_per_core"])
        machine = [
            round(sum(s["machine_per_core"][i] for s in inside) / len(inside), 1)
            for i in range(cpus)
        ]
        pressure = [s["pressure_s"] for s in (inside[0], inside[-1])]
        span = inside[-1]["t"] - inside[0]["t"]
        return {
            # share of the time some task (ours or a neighbour's) waited for a CPU
            "cpu_pressure_percent": (
                round(100 * (pressure[1] - pressure[0]) / span, 1)
                if None not in pressure and span > 0
                else None
            ),
            "cpu_cores": round(sum(cores) / len(cores), 3),
            "cpu_cores_p95_1s": cores[min(len(cores) - 1, int(0.95 * len(cores)))],
            "cpu_cores_max_1s": cores[-1],
            "cpu_by_process": per_process,
            "machine_cpu_percent_per_core": machine,
            "rss_mb": max(s["rss_mb"] for s in self.samples),
            "cpu_samples": len(inside),
        }
