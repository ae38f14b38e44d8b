"""baresip 1.0.0 registers to a real ``ccswitch serve`` and stays registered.

The demo's ``min_expires`` is lowered to 10 s and baresip asks for ``regint=10``, so
it refreshes its binding about every 9 s; the test watches at least two complete
REGISTER/200 exchanges in the switch's SIP trace while baresip keeps reporting OK.
On ``/quit`` baresip removes its binding (Expires: 0, RFC 3261 section 10.2.2) and
the switch answers 200 with no contact left.

The switch offers MD5 only here. baresip 1.0.0 (libre's ``sip/auth.c``) walks *every*
WWW-Authenticate of a 401 and gives up with ENOSYS ("Register: Function not
implemented") as soon as one names an algorithm other than MD5, whatever its
position, against RFC 8760 section 2.5 (ignore what you do not support).
:func:`test_baresip_cannot_register_when_sha256_is_offered` pins that down, so
the MD5-only demo is what this baresip can use.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from switch.sip.auth import parse_credentials
from tests.e2e.baresip import BaresipPhone
from tests.e2e.phone import TraceEntry, trace_entries
from tests.harness import SwitchProcess, demo_config

pytestmark = pytest.mark.baresip

REGINT = 10
# Two refreshes at ~90 % of 10 s each, plus slack for a loaded machine.
TWO_REFRESHES_WITHIN = 2 * REGINT + 10.0
POLL_INTERVAL = 0.5


MD5_ONLY = '"MD5"'


def _switch(tmp_path: Path, **replacements: str) -> SwitchProcess:
    config = demo_config(tmp_path, **replacements)
    return SwitchProcess(workdir=tmp_path, config=config).start()


@pytest.fixture
def short_expiry_switch(tmp_path: Path) -> Iterator[SwitchProcess]:
    process = _switch(tmp_path, min_expires=str(REGINT), digest_algorithms=MD5_ONLY)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def md5_switch(tmp_path: Path) -> Iterator[SwitchProcess]:
    process = _switch(tmp_path, digest_algorithms=MD5_ONLY)
    try:
        yield process
    finally:
        process.stop()


def _register_exchanges(trace: str, user: str) -> list[tuple[TraceEntry, TraceEntry]]:
    """(REGISTER received, final response sent) pairs for ``user``, in order."""
    entries = trace_entries(trace)
    requests: dict[tuple[str, str], TraceEntry] = {}
    pairs = []
    for entry in entries:
        (cseq,) = entry.header("CSeq") or ("",)
        if not cseq.endswith("REGISTER"):
            continue
        (call_id,) = entry.header("Call-ID")
        key = (call_id, cseq)
        if entry.direction == "recv" and entry.start_line.startswith("REGISTER "):
            if f"sip:{user}@" in entry.header("To")[0]:
                requests[key] = entry
        elif entry.direction == "sent" and key in requests:
            status = int(entry.start_line.split()[1])
            if status >= 200:
                pairs.append((requests.pop(key), entry))
    return pairs


def _successful(pairs: list[tuple[TraceEntry, TraceEntry]]) -> list[TraceEntry]:
    return [
        request
        for request, response in pairs
        if response.start_line.split()[1] == "200"
    ]


def _expires_zero(request: TraceEntry) -> bool:
    text = request.text
    return bool(
        re.search(r"^Expires:\s*0\s*$", text, re.MULTILINE | re.IGNORECASE)
        or re.search(r"^Contact:.*;\s*expires=0\b", text, re.MULTILINE | re.IGNORECASE)
    )


def test_baresip_stays_registered_across_refreshes(
    short_expiry_switch: SwitchProcess, tmp_path: Path
) -> None:
    switch = short_expiry_switch
    phone = BaresipPhone(
        workdir=tmp_path / "baresip-1001",
        user="1001",
        password="demo1001",
        registrar_port=switch.port,
        regint=REGINT,
    )
    with phone:
        phone.wait_registered(timeout=10)
        deadline = time.monotonic() + TWO_REFRESHES_WITHIN
        while len(_successful(_register_exchanges(switch.trace(), "1001"))) < 3:
            assert phone.is_registered(), phone.reginfo()
            if time.monotonic() > deadline:
                pytest.fail(
                    f"fewer than two refreshes in {TWO_REFRESHES_WITHIN}s:\n"
                    f"{switch.trace()[-4000:]}"
                )
            time.sleep(POLL_INTERVAL)
        assert phone.is_registered(), phone.reginfo()

    registered = [
        r
        for r in _successful(_register_exchanges(switch.trace(), "1001"))
        if not _expires_zero(r)
    ]
    assert len(registered) >= 3
    # Refreshes reuse the Call-ID with a higher CSeq (RFC 3261 section 10.2.4), and
    # every REGISTER that got its 200 was authenticated with MD5 (baresip leaves the
    # algorithm out, which means MD5: RFC 2617 section 3.2.2).
    assert len({r.header("Call-ID")[0] for r in registered}) == 1
    numbers = [int(r.header("CSeq")[0].split()[0]) for r in registered]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    for request in registered:
        (authorization,) = request.header("Authorization")
        assert parse_credentials(authorization).algorithm == "MD5"
    # The switch kept one binding: refreshes, not new registrations.
    assert switch.log().count("registered 1001 at") == 1


def test_baresip_unregisters_on_quit(md5_switch: SwitchProcess, tmp_path: Path) -> None:
    switch = md5_switch
    phone = BaresipPhone(
        workdir=tmp_path / "baresip-1002",
        user="1002",
        password="demo1002",
        registrar_port=switch.port,
    )
    phone.start()
    try:
        phone.wait_registered(timeout=10)
        assert phone.quit() is not None, "baresip did not exit after /quit"
    finally:
        phone.stop()

    pairs = _register_exchanges(switch.trace(), "1002")
    removals = [
        (request, response) for request, response in pairs if _expires_zero(request)
    ]
    assert removals, switch.trace()[-4000:]
    _request, response = removals[-1]
    assert response.start_line.startswith("SIP/2.0 200")
    # Section 10.3 step 8: the 200 lists the remaining bindings, here none.
    assert response.header("Contact") == []
    assert "binding of 1002 at" in switch.log() and "(unregistered)" in switch.log()


@pytest.mark.parametrize("algorithms", ['"MD5, SHA-256"', '"SHA-256, MD5"'])
def test_baresip_cannot_register_when_sha256_is_offered(
    tmp_path: Path, algorithms: str
) -> None:
    """A known limitation of baresip 1.0.0, not of the switch (see module doc)."""
    switch = _switch(tmp_path, digest_algorithms=algorithms)
    phone = BaresipPhone(
        workdir=tmp_path / "baresip-1003",
        user="1003",
        password="demo1003",
        registrar_port=switch.port,
    )
    try:
        with phone:
            deadline = time.monotonic() + 10.0
            while "Register: Function not implemented" not in phone.log():
                assert time.monotonic() < deadline, phone.log()
                time.sleep(POLL_INTERVAL)
            assert not phone.is_registered()
    finally:
        switch.stop()
    # It never sent an Authorization: the 401 was the last thing it saw.
    assert "Authorization:" not in switch.trace()
