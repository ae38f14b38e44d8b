"""Calls through a real ``ccswitch serve``: SIPp as the demo trunk, SIPp phones.

The caller is SIPp from 127.0.0.1 (the demo trunk: no authentication); callees are
SIPp phones registered as demo users, answering in server mode on the port they
registered from. Both SIPp exit statuses are checked: each scenario file
(role-behaviour-expectation) states what its side must see.

Audio tests (the ``*-rtp-peer-*`` scenarios) leave the media to a Python RTP peer per
side (tests/rtp_peer.py): SIPp's SDP names the peer's port, each peer sends its own
tone (caller 600 Hz, callee 1000 Hz) and records what the switch sends it, and each
must hear the other's tone, on the payload type its leg negotiated.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import threading
import time
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from tests.e2e.phone import TraceEntry
from tests.harness import SippResult, SwitchProcess, run_sipp
from tests.rtp_peer import PCMA as PT_PCMA
from tests.rtp_peer import PCMU as PT_PCMU
from tests.rtp_peer import (
    Packet,
    RtpPeer,
    assert_hears,
    audio_payload_types,
    entry_time,
    received_from,
    sent_to,
    spectrum,
    switch_media_for,
)
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
# Each side of an audio test sends its own tone, so that a switch reflecting RTP
# back to where it came from cannot pass: each must hear the OTHER one's (both
# away from the 400-480 Hz of ringback, which the switch may play to the caller).
CALLER_HZ = 600.0
CALLEE_HZ = 1000.0


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


class Parties:
    """A trunk caller and a callee phone, each with a Python RTP peer for media.

    SIPp signals for both (its SDP names the peer's port, ``-key rtp_port``); each
    peer sends its tone to the address the switch gave that party in its SDP (read
    from the trace) and records what the switch sends it.
    """

    def __init__(
        self,
        switch: SwitchProcess,
        tmp_path: Path,
        callee_scenario: str,
        *,
        caller_pt: int = PT_PCMU,
        callee_pt: int = PT_PCMU,
        callee_args: tuple[str, ...] = RING,
        user: str = "1002",
    ) -> None:
        self.switch = switch
        self.tmp_path = tmp_path
        self.user = user
        self.caller_sip = free_block(1)
        self.callee_sip = free_block(1)
        self.caller = RtpPeer(
            port=free_block(2, udp_only=True),
            payload_type=caller_pt,
            tone_hz=CALLER_HZ,
            locate=switch_media_for(switch.trace_path, self.caller_sip),
        )
        self.callee_rtp = RtpPeer(
            port=free_block(2, udp_only=True),
            payload_type=callee_pt,
            tone_hz=CALLEE_HZ,
            locate=switch_media_for(switch.trace_path, self.callee_sip),
        )
        self.caller_codec = PCMU if caller_pt == PT_PCMU else PCMA
        codec = PCMU if callee_pt == PT_PCMU else PCMA
        self.callee = Callee(
            switch,
            user,
            callee_scenario,
            tmp_path,
            args=(*callee_args, *codec, "-key", "rtp_port", str(self.callee_rtp.port)),
            port=self.callee_sip,
        )

    def run(self, caller_scenario: str, *args: str) -> None:
        """Both SIPp scenarios to their end (both must pass); the peers stopped."""
        self.caller.start()
        self.callee_rtp.start()
        try:
            self.callee.start()
            result = call(
                self.switch,
                caller_scenario,
                self.user,
                self.tmp_path,
                *self.caller_codec,
                "-key",
                "rtp_port",
                str(self.caller.port),
                *args,
                local_port=self.caller_sip,
            )
            _both(self.callee, result)
        finally:
            self.callee.stop()
            self.caller.stop()
            self.callee_rtp.stop()

    def sent_to_caller(self) -> list[TraceEntry]:
        return sent_to(self.switch.trace(), self.caller_sip)

    def describe(self) -> str:
        return f"{self.caller.summary()}\n{self.callee_rtp.summary()}"

    def assert_hear_each_other(
        self, caller_packets: Sequence[Packet] | None = None, caller: str = "caller"
    ) -> None:
        """Each side heard the other's clean PCMU tone, not its own; the caller's side
        judged on ``caller_packets`` when given (e.g. those before the answer)."""
        assert_hears(
            self.caller.heard(caller_packets, payload_type=PT_PCMU),
            expected_hz=CALLEE_HZ,
            own_hz=CALLER_HZ,
            who=caller,
        )
        assert_hears(
            self.callee_rtp.heard(payload_type=PT_PCMU),
            expected_hz=CALLER_HZ,
            own_hz=CALLEE_HZ,
            who="callee",
        )


def _first(entries: list[TraceEntry], start: str, cseq: str) -> TraceEntry:
    """The first entry whose start line begins with ``start`` and CSeq is ``cseq``."""
    for entry in entries:
        if entry.start_line.startswith(start) and entry.header("CSeq") == [cseq]:
            return entry
    raise AssertionError(f"no {start!r} with CSeq {cseq} in the trace")


def test_trunk_call_to_a_phone_carries_each_sides_tone_to_the_other(
    switch: SwitchProcess, tmp_path: Path
) -> None:
    parties = Parties(switch, tmp_path, "callee-rtp-peer-answers-waits-for-bye.xml")
    parties.run("trunk-call-rtp-peer-caller-hangs-up.xml", "-d", "2500")
    detail = parties.describe()
    assert parties.caller.audio_types() == {PT_PCMU}, detail
    assert parties.callee_rtp.audio_types() == {PT_PCMU}, detail
    parties.assert_hear_each_other()
    assert "ended by caller (200, cause 16)" in switch.log()


def test_pcmu_caller_to_pcma_callee_is_transcoded_on_the_wire(
    switch: SwitchProcess, tmp_path: Path
) -> None:
    _transcoded_call(switch, tmp_path)


def test_media_workers_relay_transcode_and_record_the_call(tmp_path: Path) -> None:
    """The same call with the media engine in two worker processes, recorded."""
    folder = tmp_path / "recordings"
    switch = start_switch(
        tmp_path,
        edit=lambda text: (
            text.replace("# media_workers = 2", "media_workers = 2")
            .replace("enabled = false", "enabled = true")
            .replace('folder = "recordings"', f'folder = "{folder}"')
        ),
    )
    try:
        assert "2 media workers started" in switch.log()
        _transcoded_call(switch, tmp_path)
        # both endpoints of the call were in one worker (else no audio at all) and
        # the workers are gone with the switch
    finally:
        switch.stop()
    assert "media worker" not in switch.log().split("2 media workers started")[1]
    _assert_recorded(folder, left_hz=CALLER_HZ, right_hz=CALLEE_HZ)


def _assert_recorded(folder: Path, *, left_hz: float, right_hz: float) -> None:
    """One stereo WAV of the call: the caller's tone left, the callee's right."""
    files = list(folder.glob("*/*.wav"))
    assert len(files) == 1, files
    with wave.open(str(files[0])) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (
            2,
            2,
            8000,
        )
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    left, right = frames[0::2], frames[1::2]
    assert len(left) >= 8000, f"{len(left) / 8000:.1f} s recorded"
    assert_hears(spectrum(left), expected_hz=left_hz, own_hz=right_hz, who="left")
    assert_hears(spectrum(right), expected_hz=right_hz, own_hz=left_hz, who="right")


def _transcoded_call(switch: SwitchProcess, tmp_path: Path) -> None:
    # The caller offers PCMU only (PT 0), the callee accepts PCMA only (PT 8): every
    # packet must be re-encoded by the switch, each way.
    parties = Parties(
        switch,
        tmp_path,
        "callee-rtp-peer-answers-waits-for-bye.xml",
        caller_pt=PT_PCMU,
        callee_pt=PT_PCMA,
    )
    parties.run("trunk-call-rtp-peer-caller-hangs-up.xml", "-d", "2500")
    detail = parties.describe()
    invite = _first(sent_to(switch.trace(), parties.callee_sip), "INVITE", "1 INVITE")
    assert PT_PCMA in audio_payload_types(invite.text)
    answer = _first(parties.sent_to_caller(), "SIP/2.0 200", "1 INVITE")
    assert PT_PCMU in audio_payload_types(answer.text)
    assert PT_PCMA not in audio_payload_types(answer.text)
    # what the PCMA callee got: PT 8 only, and as A-law it is the caller's clean tone
    assert parties.callee_rtp.audio_types() == {PT_PCMA}, detail
    assert_hears(
        parties.callee_rtp.heard(payload_type=PT_PCMA),
        expected_hz=CALLER_HZ,
        own_hz=CALLEE_HZ,
        who="PCMA callee",
    )
    # what the PCMU caller got: PT 0 only, and as mu-law it is the callee's tone
    assert parties.caller.audio_types() == {PT_PCMU}, detail
    assert_hears(
        parties.caller.heard(payload_type=PT_PCMU),
        expected_hz=CALLEE_HZ,
        own_hz=CALLER_HZ,
        who="PCMU caller",
    )


# The caller talks, holds, resumes and talks again; each stretch in ms.
TALK_MS = 2000
HOLD_MS = 3000
# Packets already on their way when the hold is answered, or a slow reader thread on
# a busy box, may arrive this long after the switch's 200 to the hold.
IN_FLIGHT = 0.5


def test_hold_stops_audio_to_the_holding_party_and_unhold_restores_it(
    switch: SwitchProcess, tmp_path: Path
) -> None:
    parties = Parties(switch, tmp_path, "callee-rtp-peer-held-and-resumed.xml")
    parties.run(
        "trunk-call-rtp-peer-holds-and-resumes.xml",
        "-set",
        "talk_ms",
        str(TALK_MS),
        "-set",
        "hold_ms",
        str(HOLD_MS),
    )
    detail = parties.describe()
    trace = switch.trace()
    from_caller = received_from(trace, parties.caller_sip)
    to_caller = sent_to(trace, parties.caller_sip)
    hold = entry_time(_first(from_caller, "INVITE", "2 INVITE"))
    held = entry_time(_first(to_caller, "SIP/2.0 200", "2 INVITE"))
    unhold = entry_time(_first(from_caller, "INVITE", "3 INVITE"))
    resumed = entry_time(_first(to_caller, "SIP/2.0 200", "3 INVITE"))
    caller, callee = parties.caller, parties.callee_rtp

    # before the hold: each side hears the other
    assert_hears(
        caller.heard(caller.packets(before=hold), payload_type=PT_PCMU),
        expected_hz=CALLEE_HZ,
        own_hz=CALLER_HZ,
        who="caller before hold",
    )
    assert_hears(
        callee.heard(callee.packets(before=hold), payload_type=PT_PCMU),
        expected_hz=CALLER_HZ,
        own_hz=CALLEE_HZ,
        who="callee before hold",
    )
    # on hold (the caller sent sendonly): the callee's peer keeps sending, but
    # nothing from the switch may reach the party that put the call on hold
    assert unhold - held > 2 * IN_FLIGHT  # the hold window is not empty
    during = caller.packets(after=held + IN_FLIGHT, before=unhold)
    assert during == [], (
        f"{len(during)} RTP packets reached the holding caller while on hold "
        f"(PT {sorted(caller.audio_types(during))}); {detail}"
    )
    # after the unhold: audio both ways again
    assert_hears(
        caller.heard(caller.packets(after=resumed), payload_type=PT_PCMU),
        expected_hz=CALLEE_HZ,
        own_hz=CALLER_HZ,
        who="caller after unhold",
    )
    assert_hears(
        callee.heard(callee.packets(after=resumed), payload_type=PT_PCMU),
        expected_hz=CALLER_HZ,
        own_hz=CALLEE_HZ,
        who="callee after unhold",
    )


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


def _media_workers_of(switch: SwitchProcess) -> list[int]:
    """The pids of the switch's media worker processes (``python -m media.workers``)."""
    assert switch.proc is not None
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(
                line.split()[1]
                for line in status.read_text().splitlines()
                if line.startswith("PPid:")
            )
            cmdline = (status.parent / "cmdline").read_bytes()
        except (OSError, StopIteration):
            continue
        if int(ppid) == switch.proc.pid and b"media.workers" in cmdline:
            found.append(int(status.parent.name))
    return found


def test_overloaded_media_worker_sheds_new_calls_and_the_call_goes_on(
    tmp_path: Path,
) -> None:
    """A media worker that stalls (stopped for 0.3 s: what a starved core does)
    reports late and skipped clock ticks; new calls get 503 while the established
    call goes on with audio both ways, and calls are admitted again afterwards."""
    switch = start_switch(
        tmp_path,
        edit=lambda text: text.replace("# media_workers = 2", "media_workers = 1"),
    )
    try:
        (worker,) = _media_workers_of(switch)
        parties = Parties(switch, tmp_path, "callee-rtp-peer-answers-waits-for-bye.xml")
        talk = threading.Thread(
            target=parties.run,
            args=("trunk-call-rtp-peer-caller-hangs-up.xml", "-d", "6000"),
        )
        talk.start()
        deadline = time.monotonic() + 10
        while " answered" not in switch.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # a second of clean audio first

        os.kill(worker, signal.SIGSTOP)
        time.sleep(0.3)
        os.kill(worker, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while "overload: shedding" not in switch.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "late clock ticks/s" in switch.log(), switch.log()[-2000:]
        sipp_ok(call(switch, "trunk-call-switch-full-gets-503.xml", "1002", tmp_path))

        talk.join(40)
        assert not talk.is_alive()
        detail = parties.describe()
        parties.assert_hear_each_other()
        assert "ended by caller (200, cause 16)" in switch.log(), detail
        # three seconds after the last bad report new calls reach the dialplan again
        time.sleep(1.0)
        sipp_ok(
            call(switch, "trunk-call-unknown-number-gets-404.xml", "1999", tmp_path)
        )
        assert "overload over" in switch.log()
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


def test_delayed_offer_answered_in_the_ack_carries_audio_both_ways(
    switch: SwitchProcess, tmp_path: Path
) -> None:
    # The caller's INVITE has no SDP; the switch offers in its 200 and the caller
    # answers PCMU in the ACK; the callee leg is PCMA.
    parties = Parties(
        switch,
        tmp_path,
        "callee-rtp-peer-answers-waits-for-bye.xml",
        callee_pt=PT_PCMA,
    )
    parties.run("trunk-call-rtp-peer-delayed-offer-answers-in-ack.xml", "-d", "2500")
    offer = _first(parties.sent_to_caller(), "SIP/2.0 200", "1 INVITE")
    # the offer's payload type list (m=audio PORT RTP/AVP <fmt>...) includes PCMU (0)
    assert PT_PCMU in audio_payload_types(offer.text), offer.text
    log = switch.log()
    assert "bad answer in ACK" not in log
    assert "ended by caller (200, cause 16)" in log
    detail = parties.describe()
    assert parties.caller.audio_types() == {PT_PCMU}, detail
    assert_hears(
        parties.caller.heard(payload_type=PT_PCMU),
        expected_hz=CALLEE_HZ,
        own_hz=CALLER_HZ,
        who="delayed-offer caller",
    )
    assert parties.callee_rtp.audio_types() == {PT_PCMA}, detail
    assert_hears(
        parties.callee_rtp.heard(payload_type=PT_PCMA),
        expected_hz=CALLER_HZ,
        own_hz=CALLEE_HZ,
        who="callee",
    )


EARLY_MS = 3000  # how long the callee sends early media before its 200


def _relay_early_media(text: str) -> str:
    """The configuration with the callee's early media passed through (the default;
    "local" would answer the caller with our own ringback instead)."""
    return text.replace('ringback = "local"', 'ringback = "relay"')


def test_early_media_from_the_callee_reaches_the_caller_before_the_200(
    tmp_path: Path,
) -> None:
    switch = start_switch(tmp_path, edit=_relay_early_media)
    try:
        parties = Parties(
            switch,
            tmp_path,
            "callee-rtp-peer-183-then-answers.xml",
            callee_args=("-set", "ring_ms", str(EARLY_MS)),
        )
        parties.run("trunk-call-rtp-peer-gets-183-then-200.xml", "-d", "1500")
    finally:
        switch.stop()
    to_caller = parties.sent_to_caller()
    progress = _first(to_caller, "SIP/2.0 183", "1 INVITE")
    assert PT_PCMU in audio_payload_types(progress.text)
    answered = entry_time(_first(to_caller, "SIP/2.0 200", "1 INVITE"))
    early = parties.caller.packets(before=answered)
    # the callee's tone, in packets that reached the caller before the switch even
    # sent it the 200 (the analysis needs at least one second of them)
    parties.assert_hear_each_other(early, caller="caller before the 200")


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
