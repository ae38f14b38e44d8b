"""The demo IVR end to end: SIPp callers on the demo trunk walk every branch of it.

Each test starts ``ccswitch serve`` on the demo configuration with its own copy of the
demo flow (opening hours made deterministic: always open, or today a holiday), calls
4000 from SIPp with keys in an RTP pcap (RFC 4733 events, or in-band tones only),
captures the RTP the caller received (:mod:`tests.sipp.rtp_capture`) and checks
which prompts arrived whole, and reads the path through the flow back from the CDR.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from aiohttp import web

from ivr.prompts import DEFAULT_PROMPTS
from ivr.service import DEMO_FLOWS
from tests.harness import REPO, SwitchProcess, run_sipp, shared_dir
from tests.sipp.calls import Callee, free_block, sipp_ok, start_switch
from tests.sipp.rtp_capture import RtpCapture, find, reference, wav_seconds

pytestmark = [pytest.mark.sipp, pytest.mark.slow]
logger = logging.getLogger(__name__)

GOLD = "+74951234567"  # demo CRM: gold customer
REGULAR = "+74957654321"  # demo CRM: known, regular
UNKNOWN = "+74990000000"  # not in the demo CRM
MOSCOW = ZoneInfo("Europe/Moscow")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A prompt counts as arrived whole when its full length correlates this well.
WHOLE = 0.9
# A barged-in prompt's full length correlates worse than this.
CUT = 0.7
DTMF_FREQUENCIES = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "4": (770, 1209),
    "5": (770, 1336), "6": (770, 1477), "7": (852, 1209), "8": (852, 1336),
    "9": (852, 1477), "0": (941, 1336), "*": (941, 1209), "#": (941, 1477),
}  # fmt: skip


def prompt(language: str, name: str) -> Path:
    return DEFAULT_PROMPTS / language / f"{name}.wav"


def seconds(language: str, name: str) -> float:
    return wav_seconds(prompt(language, name))


@pytest.fixture(autouse=True)
def _peers() -> None:
    if os.geteuid() != 0:
        pytest.skip("pcap play and packet capture need root")
    if not (DEFAULT_PROMPTS / "ru" / "greeting.wav").exists():
        pytest.fail("default prompts not built: run python prompts/build.py")


def pcap_tool() -> Path:
    shared = shared_dir()
    tool = shared / "recipes" / "sipp" / "wav2rtppcap.py" if shared else None
    if tool is None or not tool.exists():
        if os.environ.get("CCSWITCH_REQUIRE_PEERS"):
            pytest.fail("../shared/recipes/sipp/wav2rtppcap.py is missing")
        pytest.skip("../shared/recipes/sipp/wav2rtppcap.py is not present")
    return tool


def make_pcap(
    workdir: Path, keys: list[tuple[float, str]], *, inband: bool = False
) -> None:
    """caller.pcap in ``workdir``: silence with ``keys`` at (seconds, key)."""
    length = max(t for t, _ in keys) + 1.0
    target = workdir / "caller.pcap"
    if not inband:
        args = ["--silence", f"{length:.2f}", str(target)]
        for at, key in keys:
            args += ["--dtmf", f"{at:.2f}:{key}"]
    else:
        audio = np.zeros(int(length * 8000), dtype=np.float64)
        t = np.arange(int(0.12 * 8000)) / 8000
        for at, key in keys:
            low, high = DTMF_FREQUENCIES[key]
            tone = 0.3 * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
            start = int(at * 8000)
            audio[start : start + len(tone)] = tone
        wav_path = workdir / "caller.wav"
        with wave.open(str(wav_path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            wav.writeframes((audio * 32767).astype("<i2").tobytes())
        args = [str(wav_path), str(target)]
    subprocess.run(
        [sys.executable, str(pcap_tool()), *args],
        check=True,
        capture_output=True,
        timeout=30,
    )


def demo_flow(folder: Path, *, holiday_today: bool = False) -> Path:
    """A copy of the demo flow, open all day every day (or closed today)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (DEMO_FLOWS / "demo.toml").read_text()
    for day in WEEKDAYS:
        text, count = re.subn(
            rf'^{day} = ".*"$', f'{day} = "00:00-24:00"', text, flags=re.M
        )
        assert count == 1
    if holiday_today:
        today = datetime.datetime.now(MOSCOW).date().isoformat()
        text, count = re.subn(
            r"^holidays = \[", f'holidays = ["{today}", ', text, flags=re.M
        )
        assert count == 1
    (folder / "demo.toml").write_text(text)
    return folder


def queue_log_rows(switch: SwitchProcess) -> list[tuple[str, str]]:
    """(event, agent) of every queue log row, in order."""
    with sqlite3.connect(switch.db) as db:
        return list(db.execute("SELECT event, agent FROM queue_log ORDER BY at, rowid"))


def switch_for(
    workdir: Path, flows: Path, *, crm_url: str | None = None
) -> SwitchProcess:
    crm_port = free_block(1)
    return start_switch(
        workdir,
        flows=f'"{flows}"',
        crm_listen=f'"127.0.0.1:{crm_port}"',
        crm_url=f'"{crm_url or f"http://127.0.0.1:{crm_port}/customers"}"',
    )


class Heard:
    """One call's result: SIPp's, what the caller heard, the IVR path from the CDR."""

    def __init__(
        self, sipp: object, capture: RtpCapture, steps: list[tuple[str, str, str]]
    ):
        self.sipp = sipp
        self.audio = capture.audio()
        self.lost = capture.lost
        logger.info("missing frames: %s", [g[0] for g in capture.gaps][:20])
        self.steps = steps

    @property
    def path(self) -> list[str]:
        return [node for kind, node, _ in self.steps if kind == "node"]

    def detail(self, kind: str, node: str | None = None) -> list[str]:
        return [d for k, n, d in self.steps if k == kind and node in (None, n)]

    def whole(self, language: str, *names: str) -> None:
        """``names`` played one after the other, each from start to end."""
        match = find(self.audio, reference([prompt(language, n) for n in names]))
        logger.info("whole %s/%s: %s, %d lost", language, names, match, self.lost)
        assert match.similarity > WHOLE, (names, match, f"{self.lost} packets lost")
        assert match.rms_dbfs > -40, (names, match)  # speech, not silence

    def cut(self, language: str, name: str) -> None:
        """``name`` started but a key stopped it (barge-in)."""
        full = find(self.audio, reference([prompt(language, name)]))
        start = find(self.audio, reference([prompt(language, name)])[: 8000 // 4])
        logger.info("cut %s/%s: full %s, start %s", language, name, full, start)
        assert start.similarity > WHOLE, (name, start)
        assert full.similarity < CUT, (name, full)


def ivr_steps(db: Path, *, calls: int = 1) -> list[tuple[str, str, str]]:
    """The steps of the newest call that left the IVR (waits for ``calls`` exits)."""
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(db) as conn:
            exits = conn.execute(
                "SELECT call_id FROM ivr_steps WHERE kind = 'exited' ORDER BY at"
            ).fetchall()
            if len(exits) >= calls:
                rows = conn.execute(
                    "SELECT kind, node, detail FROM ivr_steps WHERE call_id = ?"
                    " ORDER BY seq",
                    (exits[-1][0],),
                ).fetchall()
                return [(k, n, d) for k, n, d in rows]
        if time.monotonic() > deadline:
            raise AssertionError(f"no IVR exit in the CDR of {db}")
        time.sleep(0.2)


def ivr_call(
    switch: SwitchProcess,
    workdir: Path,
    keys: list[tuple[float, str]],
    *,
    caller: str = UNKNOWN,
    scenario: str = "trunk-call-ivr-keys-gets-bye.xml",
    inband: bool = False,
    talk_ms: int = 0,
    calls: int = 1,
) -> Heard:
    workdir.mkdir(parents=True, exist_ok=True)
    make_pcap(workdir, keys, inband=inband)
    media = free_block(4)
    capture = RtpCapture(port=media).start()
    try:
        result = run_sipp(
            scenario,
            switch.port,
            "-s", "4000",
            "-key", "caller", caller,
            "-m", "1",
            "-mp", str(media),
            "-d", str(talk_ms),
            workdir=workdir,
            local_port=free_block(1),
            timeout=60,
        )  # fmt: skip
    finally:
        capture.stop()
    sipp_ok(result)
    return Heard(result, capture, ivr_steps(switch.db, calls=calls))


@pytest.fixture
def open_switch(tmp_path: Path) -> Iterator[SwitchProcess]:
    process = switch_for(tmp_path, demo_flow(tmp_path / "flows"))
    try:
        yield process
    finally:
        process.stop()


def test_menu_1_sales_unknown_caller_prompts_arrive_whole(
    open_switch: SwitchProcess, tmp_path: Path
) -> None:
    # The greeting plays out; "1" (Russian) stops the language prompt; "1" stops the
    # menu: sales. The IVR hands the caller to the ACD's queue, which refuses them
    # (no agent logged in): the flow's fallback says so and says goodbye.
    language_key = seconds("ru", "greeting") + 1.0
    heard = ivr_call(
        open_switch, tmp_path / "call", [(language_key, "1"), (language_key + 2.0, "1")]
    )
    assert heard.path == [
        "greeting", "language", "defaults", "lookup", "known", "hours", "menu",
        "sales", "busy", "goodbye",
    ]  # fmt: skip
    assert heard.detail("exited") == ["hangup"]
    assert heard.detail("data_dip")[0].startswith("ok status=200")
    assert "customer_found=no" in heard.detail("data_dip")[0]
    assert heard.detail("digits", "menu") == ["1 matched #1"]
    heard.whole("ru", "greeting")
    heard.cut("ru", "choose_language")
    heard.cut("ru", "menu")
    heard.whole("ru", "sales", "please_hold")
    heard.whole("ru", "agents_busy")
    # The whole call is in the CDR listing too.
    listing = subprocess.run(
        [sys.executable, "-m", "ccswitch", "cdr", "--db", str(open_switch.db)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    ).stdout
    assert "    ivr demo: greeting > language[1] > defaults > lookup(ok)" in listing
    assert "menu[1] > sales > busy > goodbye" in listing, listing


def test_menu_2_support_gold_caller_in_english(
    open_switch: SwitchProcess, tmp_path: Path
) -> None:
    # "2" during the greeting (barge-in) chooses English; the CRM knows the caller
    # (gold: welcomed, priority 10); "2" during the menu: support, where agent 1002
    # (auto_login on registration) answers and later hangs up.
    from tests.sipp.test_acd_sipp import agent

    phone = agent(
        open_switch,
        tmp_path,
        "1002",
        "agent-answers-after-random-delay-then-hangs-up.xml",
        1,
        "-set",
        "talk_ms",
        "1500",
    )
    try:
        menu_key = 1.0 + seconds("en", "welcome_back") + 1.5
        heard = ivr_call(
            open_switch, tmp_path / "call", [(1.0, "2"), (menu_key, "2")], caller=GOLD
        )
        assert phone.wait() == 0, phone.errors()
    finally:
        phone.stop()
    assert heard.path == [
        "greeting", "language", "defaults", "lookup", "known", "vip", "welcome",
        "hours", "menu", "support",
    ]  # fmt: skip
    assert heard.detail("exited") == ["queued support"]
    rows = queue_log_rows(open_switch)
    events = [r[0] for r in rows if r[1] == "1002"]
    assert events[:3] == ["agent_login", "offered", "connect"], events
    assert "customer_tier=gold" in heard.detail("data_dip")[0]
    assert heard.detail("digits", "language") == ["2 matched #1"]
    heard.cut("ru", "greeting")
    heard.whole("en", "welcome_back")
    heard.cut("en", "menu")
    heard.whole("en", "support", "please_hold")


def test_menu_0_operator_transfer_to_user_1001(
    open_switch: SwitchProcess, tmp_path: Path
) -> None:
    operator = Callee(
        open_switch,
        "1001",
        "callee-answers-waits-for-bye.xml",
        tmp_path,
        args=(
            "-set",
            "ring_ms",
            "300",
            "-key",
            "codec",
            "0",
            "-key",
            "codec_name",
            "PCMU",
        ),
    ).start()
    try:
        menu_key = 1.0 + seconds("ru", "welcome_back") + 1.0
        heard = ivr_call(
            open_switch,
            tmp_path / "call",
            [(1.0, "1"), (menu_key, "0")],
            caller=REGULAR,
            scenario="trunk-call-ivr-keys-then-hangs-up.xml",
            talk_ms=int((menu_key + seconds("ru", "operator") + 4.0) * 1000),
        )
        assert operator.wait() == 0, operator.errors()
    finally:
        operator.stop()
    assert heard.path[-4:] == ["welcome", "hours", "menu", "operator"]
    assert "vip" not in heard.path  # regular customer: no priority
    assert heard.detail("exited") == ["transferred user:1001"]
    heard.whole("ru", "welcome_back")
    heard.whole("ru", "operator")
    with sqlite3.connect(open_switch.db) as conn:
        callee = conn.execute("SELECT callee FROM calls WHERE callee IS NOT NULL")
        assert [row[0] for row in callee] == ["1001"]


def test_invalid_keys_retry_then_goodbye(
    open_switch: SwitchProcess, tmp_path: Path
) -> None:
    # "1" Russian, then "9" (not a choice) three times: "invalid" before each retry,
    # then goodbye. Each "9" stops the prompt it is pressed in.
    step = seconds("ru", "invalid") + 1.0
    keys = [(1.0, "1"), (3.0, "9"), (3.0 + step, "9"), (3.0 + 2 * step, "9")]
    heard = ivr_call(open_switch, tmp_path / "call", keys)
    assert heard.detail("digits", "menu") == [
        "9 invalid #1", "9 invalid #2", "9 invalid #3",
    ]  # fmt: skip
    assert heard.path[-2:] == ["menu", "goodbye"]
    heard.whole("ru", "invalid")
    heard.whole("ru", "goodbye")


def test_closed_on_a_holiday(tmp_path: Path) -> None:
    switch = switch_for(tmp_path, demo_flow(tmp_path / "flows", holiday_today=True))
    try:
        heard = ivr_call(switch, tmp_path / "call", [(1.0, "1")])
    finally:
        switch.stop()
    assert heard.path[-3:] == ["hours", "closed", "goodbye"]
    assert "menu" not in heard.path
    heard.whole("ru", "closed")
    heard.whole("ru", "goodbye")


def test_inband_dtmf_only_caller_reaches_support(
    open_switch: SwitchProcess, tmp_path: Path
) -> None:
    # The caller offers no telephone-event (RFC 4733): the switch listens for tones.
    heard = ivr_call(
        open_switch,
        tmp_path / "call",
        [(1.0, "1"), (3.0, "2")],
        inband=True,
        scenario="trunk-call-ivr-inband-keys-gets-bye.xml",
    )
    # support has no agent logged in: refused, the fallback says so
    assert heard.path[-4:] == ["menu", "support", "busy", "goodbye"]
    assert heard.detail("digits", "language") == ["1 matched #1"]
    assert heard.detail("digits", "menu") == ["2 matched #1"]


class BrokenCrm:
    """An HTTP server on 127.0.0.1 (own thread and loop): /slow and /garbage."""

    def __init__(self) -> None:
        self.port = free_block(1)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({"found": "yes", "tier": "gold"})

    async def _garbage(self, request: web.Request) -> web.Response:
        return web.Response(text="<html>500 internal</html>", content_type="text/html")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/garbage", self._garbage)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())

    def __enter__(self) -> BrokenCrm:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.mark.parametrize(
    ("path", "outcome"), [("slow", "timeout"), ("garbage", "bad_response")]
)
def test_a_slow_or_garbage_crm_takes_the_fallback(
    tmp_path: Path, path: str, outcome: str
) -> None:
    with BrokenCrm() as crm:
        switch = switch_for(
            tmp_path,
            demo_flow(tmp_path / "flows"),
            crm_url=f"http://127.0.0.1:{crm.port}/{path}",
        )
        try:
            # A gold caller, but the CRM fails: no welcome, no priority, straight on.
            keys = [(1.0, "1"), (1.0 + 1.5 + 1.5, "2")]
            heard = ivr_call(switch, tmp_path / "call", keys, caller=GOLD)
        finally:
            switch.stop()
    (dip,) = heard.detail("data_dip")
    assert dip.startswith(outcome)
    assert heard.path == [
        "greeting", "language", "defaults", "lookup", "hours", "menu", "support",
        "busy", "goodbye",
    ]  # fmt: skip
    heard.whole("ru", "support", "please_hold")


def test_reload_applies_good_flows_to_new_calls_and_keeps_a_bad_one_out(
    tmp_path: Path,
) -> None:
    flows = demo_flow(tmp_path / "flows")
    switch = switch_for(tmp_path, flows)
    try:
        keys = [(1.0, "1"), (3.0, "1")]
        first = ivr_call(switch, tmp_path / "call1", keys)
        assert first.path[-4:] == ["menu", "sales", "busy", "goodbye"]

        # Staff swap the menu's keys 1 and 2, and save a broken second flow.
        demo = flows / "demo.toml"
        swapped = demo.read_text().replace(
            '"1" = "sales", "2" = "support"', '"1" = "support", "2" = "sales"'
        )
        demo.write_text(swapped)
        (flows / "broken.toml").write_text(
            'start = "nowhere"\n[nodes.a]\ntype = "hangup"\n'
        )
        reload = subprocess.run(
            [
                sys.executable,
                "-m",
                "ccswitch",
                "flows",
                "reload",
                "--config",
                str(switch.config),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,  # the pid file is relative to the switch's directory
        )
        assert reload.returncode == 2, reload.stderr
        assert "broken.toml: start node 'nowhere' is not defined" in reload.stderr
        assert "reload signalled to ccswitch process" in reload.stdout
        deadline = time.monotonic() + 10
        while "flow not loaded (a running version is kept)" not in switch.log():
            assert time.monotonic() < deadline, switch.log()[-2000:]
            time.sleep(0.1)

        second = ivr_call(switch, tmp_path / "call2", keys, calls=2)
        assert second.path[-4:] == ["menu", "support", "busy", "goodbye"]
    finally:
        switch.stop()


def test_a_flow_broken_at_start_up_is_not_run_and_its_number_gets_404(
    tmp_path: Path,
) -> None:
    flows = demo_flow(tmp_path / "flows")
    demo = flows / "demo.toml"
    demo.write_text(demo.read_text().replace('next = "language"', 'next = "langauge"'))
    switch = switch_for(tmp_path, flows)
    try:
        result = run_sipp(
            "trunk-call-unknown-number-gets-404.xml",
            switch.port,
            "-s", "4000",
            "-m", "1",
            workdir=tmp_path,
            local_port=free_block(1),
            timeout=20,
        )  # fmt: skip
        sipp_ok(result)
        log = switch.log()
    finally:
        switch.stop()
    assert (
        f"flow not loaded (a running version is kept): {demo}: node 'greeting': "
        "next goes "
        "to 'langauge', which is not defined"
    ) in log
    assert "flow 'demo' is not loaded (loaded: none)" in log


def test_operator_not_registered_goes_to_transfer_failed(
    open_switch: SwitchProcess, tmp_path: Path
) -> None:
    heard = ivr_call(open_switch, tmp_path / "call", [(1.0, "1"), (3.0, "0")])
    assert heard.path[-4:] == ["menu", "operator", "transfer_failed", "goodbye"]
    heard.whole("ru", "operator")
    heard.whole("ru", "transfer_failed")
    heard.whole("ru", "goodbye")


def test_silence_in_the_menu_retries_then_goodbye(
    open_switch: SwitchProcess, tmp_path: Path
) -> None:
    # Only the language key: the menu prompt plays out three times (the "invalid"
    # prompt before the retries), each followed by the 4 s timeout, then goodbye.
    heard = ivr_call(open_switch, tmp_path / "call", [(1.0, "1")])
    assert heard.detail("digits", "menu") == [
        "- timeout #1", "- timeout #2", "- timeout #3",
    ]  # fmt: skip
    assert heard.path[-2:] == ["menu", "goodbye"]
    heard.whole("ru", "menu")
    heard.whole("ru", "invalid")
    heard.whole("ru", "goodbye")
