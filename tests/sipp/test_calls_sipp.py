"""Calls through a real ``ccswitch serve``: SIPp as the demo trunk, SIPp phones.

The caller is SIPp from 127.0.0.1 (the demo trunk: no authentication); callees are
SIPp phones registered as demo users, answering in server mode on the port they
registered from. Both SIPp exit statuses are checked: each scenario file
(role-behaviour-expectation) states what its side must see.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.harness import SippResult, SwitchProcess, run_sipp
from tests.sipp.calls import (
    Callee,
    PythonPhone,
    call,
    free_block,
    sipp_ok,
    start_switch,
)

pytestmark = pytest.mark.sipp

PCMU = ("-key", "codec", "0", "-key", "codec_name", "PCMU")
PCMA = ("-key", "codec", "8", "-key", "codec_name", "PCMA")
RING = ("-set", "ring_ms", "300")


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[SwitchProcess]:
    process = start_switch(tmp_path)
    try:
        yield process
    finally:
        process.stop()


def _callee(
    switch: SwitchProcess, tmp_path: Path, scenario: str, *args: str, user: str = "1002"
) -> Callee:
    return Callee(switch, user, scenario, tmp_path, args=args).start()


def _both(callee: Callee, caller_result: object) -> None:
    assert isinstance(caller_result, SippResult)
    try:
        sipp_ok(caller_result)
        assert callee.wait() == 0, callee.errors()
    finally:
        callee.stop()


def test_caller_hangs_up(switch: SwitchProcess, tmp_path: Path) -> None:
    callee = _callee(
        switch, tmp_path, "callee-answers-waits-for-bye.xml", *RING, *PCMU, "-rtp_echo"
    )
    result = call(
        switch,
        "trunk-call-answered-caller-hangs-up.xml",
        "1002",
        tmp_path,
        "-d",
        "1000",
    )
    _both(callee, result)
    assert "ended by caller (200, cause 16)" in switch.log()


def test_callee_hangs_up(switch: SwitchProcess, tmp_path: Path) -> None:
    callee = _callee(
        switch, tmp_path, "callee-answers-then-hangs-up.xml", *RING, *PCMU, "-d", "1000"
    )
    result = call(switch, "trunk-call-answered-callee-hangs-up.xml", "1002", tmp_path)
    _both(callee, result)
    assert "ended by callee (200, cause 16)" in switch.log()


def test_cancel_before_answer_reaches_the_callee(
    switch: SwitchProcess, tmp_path: Path
) -> None:
    callee = _callee(switch, tmp_path, "callee-rings-until-cancelled.xml")
    result = call(switch, "trunk-call-cancelled-before-answer.xml", "1002", tmp_path)
    _both(callee, result)
    assert "ended by caller (487" in switch.log()


def test_busy_callee_486_passed_back(switch: SwitchProcess, tmp_path: Path) -> None:
    callee = _callee(switch, tmp_path, "callee-busy-486.xml")
    result = call(switch, "trunk-call-busy-gets-486.xml", "1002", tmp_path)
    _both(callee, result)


def test_unanswered_invite_times_out_with_408(tmp_path: Path) -> None:
    # T1 = 0.1 s makes timer B 6.4 s (RFC 3261 17.1.1.2).
    switch = start_switch(tmp_path, t1="0.1")
    try:
        callee = _callee(switch, tmp_path, "callee-never-answers.xml")
        result = call(switch, "trunk-call-unanswered-gets-408.xml", "1002", tmp_path)
        _both(callee, result)
    finally:
        switch.stop()


def test_unregistered_user_gets_480(switch: SwitchProcess, tmp_path: Path) -> None:
    sipp_ok(call(switch, "trunk-call-unregistered-user-gets-480.xml", "1005", tmp_path))


def test_unknown_number_gets_404(switch: SwitchProcess, tmp_path: Path) -> None:
    sipp_ok(call(switch, "trunk-call-unknown-number-gets-404.xml", "5555", tmp_path))


def test_unauthenticated_call_to_outbound_number_refused(
    switch: SwitchProcess, tmp_path: Path
) -> None:
    result = call(
        switch, "trunk-call-outbound-number-gets-403.xml", "94951234567", tmp_path
    )
    sipp_ok(result)
    assert "INVITE sip:+7495" not in switch.trace()


def test_pcmu_caller_to_pcma_callee(switch: SwitchProcess, tmp_path: Path) -> None:
    callee = _callee(
        switch, tmp_path, "callee-answers-waits-for-bye.xml", *RING, *PCMA, "-rtp_echo"
    )
    result = call(
        switch, "trunk-call-answered-caller-hangs-up.xml", "1002", tmp_path, "-d", "500"
    )
    _both(callee, result)
    trace = switch.trace()
    assert "a=rtpmap:8 PCMA/8000" in trace


def test_hold_and_unhold_relayed_to_the_callee(
    switch: SwitchProcess, tmp_path: Path
) -> None:
    callee = _callee(switch, tmp_path, "callee-held-and-resumed.xml", *RING, *PCMU)
    result = call(switch, "trunk-call-holds-and-resumes.xml", "1002", tmp_path)
    _both(callee, result)


def test_blind_transfer_by_refer_from_the_callee(
    switch: SwitchProcess, tmp_path: Path
) -> None:
    target = _callee(
        switch,
        tmp_path,
        "callee-answers-waits-for-bye.xml",
        *RING,
        *PCMA,
        "-rtp_echo",
        user="1003",
    )
    transferor = _callee(
        switch,
        tmp_path,
        "callee-answers-then-refers.xml",
        *RING,
        *PCMU,
        "-key",
        "transfer_to",
        "1003",
    )
    try:
        result = call(
            switch,
            "trunk-call-answered-caller-hangs-up.xml",
            "1002",
            tmp_path,
            "-d",
            "4000",
        )
        sipp_ok(result)
        assert transferor.wait() == 0, transferor.errors()
        assert target.wait() == 0, target.errors()
    finally:
        transferor.stop()
        target.stop()


def test_switch_full_gets_503_and_the_call_in_progress_goes_on(
    tmp_path: Path,
) -> None:
    switch = start_switch(tmp_path, max_calls="1")
    try:
        callee = _callee(
            switch, tmp_path, "callee-answers-waits-for-bye.xml", *RING, *PCMU
        )
        first: list[object] = []
        caller = threading.Thread(
            target=lambda: first.append(
                call(
                    switch,
                    "trunk-call-answered-caller-hangs-up.xml",
                    "1002",
                    tmp_path,
                    "-d",
                    "3000",
                )
            )
        )
        caller.start()
        deadline = time.monotonic() + 10
        while " answered" not in switch.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        sipp_ok(call(switch, "trunk-call-switch-full-gets-503.xml", "1002", tmp_path))
        caller.join(40)
        _both(callee, first[0])
    finally:
        switch.stop()


def test_max_call_duration_hangs_up_both_sides(tmp_path: Path) -> None:
    switch = start_switch(tmp_path, max_call_duration="2.0")
    try:
        callee = _callee(
            switch, tmp_path, "callee-answers-waits-for-bye.xml", *RING, *PCMU
        )
        result = call(
            switch, "trunk-call-answered-callee-hangs-up.xml", "1002", tmp_path
        )
        _both(callee, result)
        assert "ended by switch (200, cause 102)" in switch.log()
    finally:
        switch.stop()


def test_delayed_offer_caller_answers_in_the_ack(
    switch: SwitchProcess, tmp_path: Path
) -> None:
    callee = _callee(
        switch, tmp_path, "callee-answers-waits-for-bye.xml", *RING, *PCMA, "-rtp_echo"
    )
    result = call(
        switch,
        "trunk-call-delayed-offer-answers-in-ack.xml",
        "1002",
        tmp_path,
        "-d",
        "500",
    )
    _both(callee, result)
    assert "bad answer in ACK" not in switch.log()
    assert "ended by caller (200, cause 16)" in switch.log()


def test_early_media_183_reaches_the_caller_with_our_sdp(
    switch: SwitchProcess, tmp_path: Path
) -> None:
    callee = _callee(
        switch, tmp_path, "callee-early-media-183-then-answers.xml", *RING, *PCMU
    )
    result = call(
        switch, "trunk-call-early-media-gets-183.xml", "1002", tmp_path, "-d", "500"
    )
    _both(callee, result)
    assert "183 Session Progress" in switch.trace()


def test_ring_timeout_from_config_cancels_and_gives_480(tmp_path: Path) -> None:
    switch = start_switch(tmp_path, ring_timeout="1.5")
    try:
        callee = _callee(switch, tmp_path, "callee-rings-until-cancelled.xml")
        started = time.monotonic()
        result = call(
            switch, "trunk-call-rings-too-long-gets-480.xml", "1002", tmp_path
        )
        _both(callee, result)
        assert time.monotonic() - started < 10
        assert "no answer in time" in switch.log()
    finally:
        switch.stop()


def test_outbound_trunk_answers_the_carriers_407(tmp_path: Path) -> None:
    carrier_port = free_block(1)

    def trunk_with_credentials(text: str) -> str:
        text = text.replace("port = 5090", f"port = {carrier_port}")
        text = text.replace('# username = "ccswitch"', 'username = "ccswitch"')
        text = text.replace('# password = "secret"', 'password = "secret"')
        # 1001 may dial out (the first user table).
        return text.replace("allow_outbound = false", "allow_outbound = true", 1)

    switch = start_switch(tmp_path, edit=trunk_with_credentials)
    try:
        carrier = Callee(
            switch,
            "carrier",
            "carrier-challenges-407-then-answers.xml",
            tmp_path,
            port=carrier_port,
            register=False,
        ).start()
        phone_port = free_block(1)
        auth = ("-au", "1001", "-ap", "demo1001")
        sipp_ok(
            run_sipp(
                "phone-register-digest-accepted.xml",
                switch.port,
                "-s",
                "1001",
                *auth,
                "-m",
                "1",
                workdir=tmp_path,
                local_port=phone_port,
                timeout=10,
            )
        )
        phone = PythonPhone(
            port=phone_port, switch_port=switch.port, user="1001", password="demo1001"
        )
        try:
            assert phone.call("94951234567", free_block(2)) == 200, phone.statuses
            time.sleep(0.5)
            assert phone.hang_up() == 200
        finally:
            phone.close()
        try:
            assert carrier.wait() == 0, carrier.errors()
        finally:
            carrier.stop()
        assert "resent with credentials" in switch.log()
        assert _digest_ok(switch.trace(), password="secret")
        assert "ended by caller (200, cause 16)" in switch.log()
    finally:
        switch.stop()


def _digest_ok(trace: str, *, password: str) -> bool:
    """The switch's Proxy-Authorization to the carrier is right (RFC 2617 3.2.2.1)."""
    line = next(
        line
        for line in trace.splitlines()
        if line.startswith("Proxy-Authorization:") and 'username="ccswitch"' in line
    )
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', line.split("Digest", 1)[1]))

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"ccswitch:{fields['realm']}:{password}")
    ha2 = md5(f"INVITE:{fields['uri']}")
    return fields["response"] == md5(f"{ha1}:{fields['nonce']}:{ha2}")


def test_caller_requiring_100rel_pracks_our_reliable_180(
    switch: SwitchProcess, tmp_path: Path
) -> None:
    callee = _callee(
        switch, tmp_path, "callee-answers-waits-for-bye.xml", *RING, *PCMU, "-rtp_echo"
    )
    result = call(
        switch,
        "trunk-call-requires-100rel-pracks-180.xml",
        "1002",
        tmp_path,
        "-d",
        "500",
    )
    _both(callee, result)
    assert "ended by caller (200, cause 16)" in switch.log()


def test_callee_reliable_180_is_pracked(switch: SwitchProcess, tmp_path: Path) -> None:
    callee = _callee(
        switch, tmp_path, "callee-rings-reliably-expects-prack.xml", *RING, *PCMU
    )
    result = call(
        switch, "trunk-call-answered-caller-hangs-up.xml", "1002", tmp_path, "-d", "500"
    )
    _both(callee, result)
    assert "ended by caller (200, cause 16)" in switch.log()


def _dialog_of_first_answer(trace: str) -> tuple[str, str, str]:
    """Call-ID, our To tag and the carrier's From tag of our 200 to the carrier."""
    blocks = re.split(r"^\d{4}-\d\d-\d\dT.*$", trace, flags=re.MULTILINE)
    for block in blocks:
        text = block.strip()
        if not text.startswith("SIP/2.0 200") or "CSeq: 1 INVITE" not in text:
            continue
        if "SIPpTrunk" not in text:
            continue
        call_id = re.search(r"^Call-ID: (\S+)", text, re.MULTILINE)
        to_tag = re.search(r"^To: .*;tag=([^;\s]+)", text, re.MULTILINE)
        from_tag = re.search(r"^From: .*;tag=([^;\s]+)", text, re.MULTILINE)
        assert call_id and to_tag and from_tag
        return call_id.group(1), to_tag.group(1), from_tag.group(1)
    raise AssertionError("no 200 to the carrier in the trace")


def test_invite_with_replaces_takes_over_the_carriers_leg(
    switch: SwitchProcess, tmp_path: Path
) -> None:
    callee = _callee(switch, tmp_path, "callee-answers-waits-for-bye.xml", *RING, *PCMU)
    first: list[object] = []
    carrier = threading.Thread(
        target=lambda: first.append(
            call(switch, "trunk-call-answered-callee-hangs-up.xml", "1002", tmp_path)
        )
    )
    carrier.start()
    try:
        deadline = time.monotonic() + 10
        while " answered" not in switch.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        call_id, our_tag, carrier_tag = _dialog_of_first_answer(switch.trace())
        # the transfer target (a second trunk call) replaces the carrier's dialog
        target = PythonPhone(
            port=free_block(1),
            switch_port=switch.port,
            user="+74957654321",
            password="-",
        )
        try:
            replaces = (
                f"Replaces: {call_id};to-tag={our_tag};from-tag={carrier_tag}\r\n"
            )
            assert target.call("1002", free_block(2), extra=replaces) == 200
            time.sleep(0.5)
            assert target.hang_up() == 200
        finally:
            target.close()
    finally:
        carrier.join(40)
    _both(callee, first[0])  # the carrier got our BYE, the callee the target's
    log = switch.log()
    assert "INVITE replaces leg" in log
    assert "ended by caller (200, cause 16)" in log


def test_session_timer_negotiated_in_the_200(
    switch: SwitchProcess, tmp_path: Path
) -> None:
    callee = _callee(switch, tmp_path, "callee-answers-waits-for-bye.xml", *RING, *PCMU)
    result = call(
        switch, "trunk-call-session-timer-negotiated.xml", "1002", tmp_path, "-d", "500"
    )
    _both(callee, result)


def test_too_short_session_timer_gets_422(
    switch: SwitchProcess, tmp_path: Path
) -> None:
    sipp_ok(
        call(switch, "trunk-call-short-session-timer-gets-422.xml", "1002", tmp_path)
    )
    assert "SIP/2.0 422 Session Interval Too Small" in switch.trace()


def test_attended_transfer_refer_with_replaces(
    switch: SwitchProcess, tmp_path: Path
) -> None:
    # A (a Python UA on two lines, calling as the demo trunk) talks to X (1003),
    # consults B (1004), then REFERs X to B with Replaces naming the consultation.
    x = _callee(
        switch, tmp_path, "callee-answers-waits-for-bye.xml", *RING, *PCMU, user="1003"
    )
    b = _callee(
        switch,
        tmp_path,
        "callee-answers-then-hangs-up.xml",
        *RING,
        *PCMU,
        "-d",
        "2500",
        user="1004",
    )
    line_1 = PythonPhone(
        port=free_block(1), switch_port=switch.port, user="a", password="-"
    )
    line_2 = PythonPhone(
        port=free_block(1), switch_port=switch.port, user="a", password="-"
    )
    try:
        assert line_1.call("1003", free_block(2)) == 200
        assert line_2.call("1004", free_block(2)) == 200
        replaces = quote(f"{line_2.call_id};to-tag={line_2.to_tag};from-tag=pyphone")
        assert line_1.refer(f"<sip:1004@127.0.0.1?Replaces={replaces}>") == 202
        assert "NOTIFY" in line_1.wait_for_bye()
        assert line_2.wait_for_bye() == ["BYE"]
        # X and B now talk; B hangs up after -d ms and X gets the BYE
        assert b.wait() == 0, b.errors()
        assert x.wait() == 0, x.errors()
    finally:
        line_1.close()
        line_2.close()
        x.stop()
        b.stop()
    log = switch.log()
    assert "(attended transfer)" in log
    assert "ended by callee (200, cause 16)" in log
