"""Every RFC 4475/5118 message sent to a live ``ccswitch serve`` over UDP.

The messages' Vias name documentation addresses, so this runs in a network namespace
with only loopback (``unshare -n``): no reply can leave the machine. The switch must
answer what it can address with the status the corpus asks for, drop bad responses,
and keep serving after every message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO

# What a registrar/UAS at the switch's stack layer must send (EXPECTED.md); files whose
# answer belongs to call control (INVITE media types, RFC 2543 INVITE) are not listed.
EXPECTED: dict[str, int | None] = {
    "rfc4475/badinv01.dat": 400,
    "rfc4475/clerr.dat": 400,
    "rfc4475/ncl.dat": 400,
    "rfc4475/scalar02.dat": 400,
    "rfc4475/quotbal.dat": 400,
    "rfc4475/ltgtruri.dat": 400,
    "rfc4475/lwsruri.dat": 400,
    "rfc4475/lwsstart.dat": 400,
    "rfc4475/trws.dat": 400,
    "rfc4475/regbadct.dat": 400,
    "rfc4475/badaspec.dat": 400,
    "rfc4475/variants/baddn-with-final-crlf.dat": 400,
    "rfc4475/badvers.dat": 505,
    "rfc4475/mismatch01.dat": 400,
    "rfc4475/mismatch02.dat": 400,  # 501 preferred, 400 acceptable
    "rfc4475/insuf.dat": 400,
    "rfc4475/unkscm.dat": 416,
    "rfc4475/novelsc.dat": 416,
    "rfc4475/bext01.dat": 420,
    "rfc4475/multi01.dat": 400,
    "rfc4475/mcl01.dat": 400,
    "rfc4475/esc02.dat": 501,
    "rfc4475/intmeth.dat": 501,
    "rfc4475/lwsdisp.dat": 200,
    "rfc4475/transports.dat": 200,
    "rfc4475/regaut01.dat": 401,
    # Responses are never answered.
    "rfc4475/scalarlg.dat": None,
    "rfc4475/bigcode.dat": None,
    "rfc4475/bcast.dat": None,
    "rfc4475/unreason.dat": None,
    "rfc4475/noreason.dat": None,
}


@pytest.fixture(scope="module")
def wire_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, dict[str, object]]:
    shared = REPO.parent / "shared"
    corpus = Path(os.environ.get("CCSWITCH_SHARED", shared)) / "corpus"
    if not corpus.is_dir():
        pytest.skip("../shared/corpus is not present beside this checkout")
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a loopback-only network namespace")
    workdir = tmp_path_factory.mktemp("torture-wire")
    proc = subprocess.run(
        [
            "unshare",
            "-n",
            sys.executable,
            "-m",
            "tests.e2e.torture_wire",
            str(corpus),
            str(workdir),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["exit"] == 0, "ccswitch did not stop cleanly"
    assert data["tracebacks"] == 0, f"tracebacks in the log, see {workdir}/ccswitch.log"
    results: dict[str, dict[str, object]] = data["results"]
    return results


def test_switch_survives_every_message(
    wire_results: dict[str, dict[str, object]],
) -> None:
    assert len(wire_results) >= 60
    dead = [name for name, result in wire_results.items() if not result["alive"]]
    assert dead == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_expected_answer(wire_results: dict[str, dict[str, object]], name: str) -> None:
    statuses = wire_results[name]["statuses"]
    expected = EXPECTED[name]
    if expected is None:
        assert statuses == [], f"{name}: a response was answered: {statuses}"
    else:
        assert statuses == [expected], f"{name}: sent {statuses}, expected {expected}"
