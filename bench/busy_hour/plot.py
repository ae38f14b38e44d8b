"""The run over time as one PNG: legs with media, the switch's CPU, send-time jitter.

Three panels sharing the time axis (seconds since calls were first offered): legs the
RTP peer heard each second (and answered legs from the CDR), the switch's CPU in cores
per process with its total, and the p99 lateness of the switch's played packets in
each second.  matplotlib's Agg backend, so no display is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot(report: dict[str, Any], path: Path) -> Path:
    series = report["series"]
    start = report["offered_at"]
    figure, (legs, cpu, jitter) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    rows = series["rtp"]
    if rows:
        legs.plot(
            [r[0] - start for r in rows], [r[1] for r in rows], label="legs heard (RTP)"
        )
        jitter.plot(
            [r[0] - start for r in rows if r[2] is not None],
            [r[2] for r in rows if r[2] is not None],
            label="played p99 per second",
        )
    cdr = series["cdr_legs"]
    if cdr:
        legs.plot(
            [r[0] - start for r in cdr],
            [r[1] for r in cdr],
            "--",
            label="answered (CDR)",
        )
    samples = series["cpu"]
    names = sorted({name for s in samples for name in s[3]})
    for name in names:
        cpu.plot(
            [s[0] - start for s in samples],
            [s[3].get(name, 0.0) for s in samples],
            label=name,
            linewidth=0.8,
        )
    cpu.plot(
        [s[0] - start for s in samples],
        [s[1] for s in samples],
        label="total",
        color="black",
    )
    cpu.axhline(1.5, color="red", linestyle=":", label="goal 1.5 cores")
    jitter.axhline(5.0, color="red", linestyle=":", label="goal p99 5 ms")
    legs.set_ylabel("concurrent legs")
    cpu.set_ylabel("ccswitch CPU, cores")
    jitter.set_ylabel("send-time jitter, ms")
    jitter.set_xlabel("seconds since the first call was offered")
    load = report["load"]
    legs.set_title(
        f"busy hour: {load['calls']} calls, {load['operators']} operators, "
        f"{load['rate']:g}/s, talk {load['talk']:g} s, {load['media_workers']} media workers"
    )
    for axis in (legs, cpu, jitter):
        axis.grid(alpha=0.3)
        axis.legend(loc="upper right", fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
