"""The busy-hour bench, short: a few dozen calls for about a minute (issue 7).

The same code as ``python -m bench.busy_hour`` (SIPp trunk callers pressing 1 in the
IVR, SIPp operator lines, the bench's RTP peer on both sides, recording on), at 30
simultaneous calls and 10 operators, so that a regression in any layer under load
shows as a failed call, a lost packet, a missing recording or an unheard digit.  Only
invariants that do not depend on timing are asserted: jitter, CPU and set-up latency
are reported by the bench, and a busy CI machine must not fail the suite over them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO, require_tool

pytestmark = [pytest.mark.sipp, pytest.mark.slow]

ARGS = (
    "--calls", "30", "--operators", "10", "--rate", "3", "--talk", "8",
    "--duration", "45", "--forwarder-seconds", "0",
)  # fmt: skip
TIMEOUT = 400.0  # seconds; the run itself takes about 90


def test_busy_hour_short_run_keeps_every_call_clean(tmp_path: Path) -> None:
    require_tool("sipp")
    output = tmp_path / "busy_hour.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "bench.busy_hour", *ARGS,
            "--output", str(output), "--plot", str(tmp_path / "busy_hour.png"),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT,
        start_new_session=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    report = json.loads(output.read_text())["scenario"]
    context = json.dumps(
        {k: report.get(k) for k in ("notes", "errors_tail", "switch_log_warnings")}
    )[:3000]

    assert line["completed"] > 0, context
    assert line["failed"] == 0, context
    assert line["gave_up"] == 0, context
    assert line["offered"] == line["completed"], context
    assert line["rtp_lost"] == 0, report["rtp"]
    # every caller's stream was heard and every caller's "1" reached the menu
    assert report["rtp"]["streams"]["callers"] == line["completed"], report["rtp"]
    assert line["digits_heard"] == line["completed"], report["ivr"]
    # every bridged call has its recording, readable, as long as the talk (8 s)
    assert line["bridged"] == line["completed"], report["acd"]
    assert line["recordings"] == line["bridged"], report["notes"]
    assert line["recordings_readable"] == line["recordings"], report[
        "recordings_unreadable"
    ]
    assert report["recordings_too_short"] == 0
    assert report["rtp"]["streams"]["operators"] == line["bridged"], report["rtp"]
    assert (tmp_path / "busy_hour.png").stat().st_size > 0
