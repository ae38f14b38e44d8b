"""What the switch wrote about a run: queue log, IVR steps, CDR legs, recordings.

Read after the switch stopped (it flushes its queue log and CDRs on the way out).
The ACD figures are the switch's own statistics (``acd/stats.py``) over the queue log,
so the bench reports the service level and ASA exactly as ``ccswitch queues`` would.
"""

from __future__ import annotations

import math
import sqlite3
import wave
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from acd.records import LogRecord, QueueEvent
from acd.stats import queue_stats
from bench.busy_hour.config import QUEUE

SERVICE_LEVEL_SECONDS = 20.0
QUEUE_NODES = {
    "queue": "digit_1",
    "queue_no_digit": "no_digit",
    "queue_other_digit": "other",
}


def _rows(db: Path, query: str) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute(query))
        except sqlite3.OperationalError:
            return []


def acd_figures(db: Path) -> dict[str, Any]:
    """Service level (answered within 20 s), ASA and outcomes from the queue log."""
    records = [
        LogRecord(**{**dict(row), "event": QueueEvent(row["event"])})
        for row in _rows(
            db,
            "SELECT at, event, queue, caller_id, agent, wait, talk, wrap_up, detail"
            " FROM queue_log ORDER BY at, rowid",
        )
    ]
    stats = queue_stats(
        records,
        start=0.0,
        end=math.inf,
        service_level=SERVICE_LEVEL_SECONDS,
        queue=QUEUE,
    )
    events = Counter(r.event.value for r in records)
    return {
        "service_level": stats.service_level,
        "service_level_seconds": SERVICE_LEVEL_SECONDS,
        "asa_s": stats.average_speed_of_answer,
        "aht_s": stats.average_handle_time,
        "queue_answered": stats.answered,
        "queue_abandoned": stats.abandoned,
        "queue_refused": stats.refused,
        "occupancy": stats.occupancy,
        "queue_events": dict(events),
    }


def ivr_figures(db: Path) -> dict[str, Any]:
    """How callers left the menu: with the digit 1, without a digit, another digit."""
    rows = _rows(db, "SELECT call_id, node FROM ivr_steps WHERE kind = 'node'")
    reached: Counter[str] = Counter()
    for row in rows:
        if row["node"] in QUEUE_NODES:
            reached[QUEUE_NODES[row["node"]]] += 1
    calls = len({row["call_id"] for row in rows})
    return {
        "ivr_calls": calls,
        "ivr_menu": {k: reached.get(k, 0) for k in QUEUE_NODES.values()},
    }


def leg_series(db: Path) -> dict[str, Any]:
    """Answered legs (media flowing) at each second, from the CDR's legs table."""
    rows = _rows(
        db, "SELECT role, answered_at, ended_at FROM legs WHERE answered_at > 0"
    )
    calls = _rows(db, "SELECT started_at, answered_at FROM calls")
    setup = [
        1000.0 * (c["answered_at"] - c["started_at"])
        for c in calls
        if c["answered_at"] and c["started_at"]
    ]
    if not rows:
        return {
            "legs_peak_cdr": 0,
            "cdr_legs": 0,
            "cdr_calls": len(calls),
            "cdr_series": [],
            "setup_ms": setup,
        }
    start = np.array([r["answered_at"] for r in rows], dtype=np.float64)
    end = np.array([r["ended_at"] or math.inf for r in rows], dtype=np.float64)
    first, last = (
        math.floor(start.min()),
        math.ceil(np.nanmax(np.where(np.isinf(end), start, end))),
    )
    seconds = np.arange(first, last + 1, dtype=np.float64)
    active = np.searchsorted(np.sort(start), seconds, side="right") - np.searchsorted(
        np.sort(end), seconds, side="right"
    )
    roles = Counter(str(r["role"]) for r in rows)
    return {
        "legs_peak_cdr": int(active.max()),
        "cdr_legs": len(rows),
        "cdr_legs_by_role": dict(roles),
        "cdr_calls": len(calls),
        "setup_ms": setup,
        "cdr_series": [[int(s), int(a)] for s, a in zip(seconds, active, strict=True)],
    }


def recordings(folder: Path, min_seconds: float) -> dict[str, Any]:
    """WAV files under ``folder``: count, readable stereo ones, lengths."""
    files = sorted(folder.rglob("*.wav")) if folder.exists() else []
    lengths, bad = [], []
    for path in files:
        try:
            with wave.open(str(path), "rb") as wav:
                if wav.getnchannels() != 2:
                    bad.append(f"{path.name}: {wav.getnchannels()} channels")
                    continue
                lengths.append(wav.getnframes() / wav.getframerate())
        except (wave.Error, EOFError, OSError) as exc:
            bad.append(f"{path.name}: {exc}")
    short = sum(1 for seconds in lengths if seconds < min_seconds)
    return {
        "recordings": len(files),
        "recordings_readable": len(lengths),
        "recordings_too_short": short,
        "recording_seconds_median": round(float(np.median(lengths)), 2)
        if lengths
        else None,
        "recordings_unreadable": bad[:5],
    }
