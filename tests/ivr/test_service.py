"""Flow reloads, the IVR steps in the store, and the ``ccswitch flows`` commands."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from ccswitch.cli import main
from ccswitch.store import Store
from ivr.events import (
    DigitsOutcome,
    DipOutcome,
    ExitReason,
    IvrDataDip,
    IvrDigits,
    IvrEntered,
    IvrExited,
    IvrNodeEntered,
)
from ivr.prompts import DEFAULT_PROMPTS, PromptLibrary
from ivr.record import IvrStepRecorder, path_summary
from ivr.service import FlowRegistry
from switch.events import new_bus, publish
from tests.ivr.test_loader import GOOD, write

REPO = Path(__file__).resolve().parents[2]


def test_a_bad_flow_never_replaces_a_good_one(
    tmp_path: Path, library: PromptLibrary
) -> None:
    folder = tmp_path / "flows"
    write(folder, GOOD, "main")
    registry = FlowRegistry(folder, library)
    assert registry.reload().errors == ()
    first = registry.get("main")
    assert first is not None

    # A call holds `first`; staff save a broken version: the old one stays.
    write(folder, GOOD.replace('"1" = "bye"', '"1" = "gone"'), "main")
    result = registry.reload()
    assert len(result.errors) == 1
    assert registry.get("main") is first

    # Fixed and changed: new calls get the new flow; the old object is untouched.
    write(folder, GOOD.replace('"1" = "bye"', '"2" = "bye"'), "main")
    assert registry.reload().errors == ()
    second = registry.get("main")
    assert second is not None and second is not first
    assert dict(second.nodes["menu"].choices) == {"2": "bye"}  # type: ignore[attr-defined]
    assert dict(first.nodes["menu"].choices) == {"1": "bye"}  # type: ignore[attr-defined]

    # A new file is added; a deleted one goes.
    write(folder, GOOD, "other")
    registry.reload()
    assert registry.names == ("main", "other")
    (folder / "other.toml").unlink()
    registry.reload()
    assert list(registry.names) == ["main"]

    # The whole folder gone (renamed by mistake): no flow is dropped.
    running = registry.get("main")
    folder.rename(tmp_path / "flows-moved")
    result = registry.reload()
    assert [e.problem for e in result.errors] == ["not a folder of flow files"]
    assert registry.names == ("main",) and registry.get("main") is running


async def test_ivr_steps_are_stored_with_the_call(tmp_path: Path) -> None:
    store = Store(tmp_path / "cdr.db")
    await store.open()
    bus = new_bus()
    recorder = IvrStepRecorder(bus=bus, store=store)
    recorder.start()
    common = {"call_id": "c1", "flow": "demo"}
    for event in (
        IvrEntered(at=1.0, caller="+7495", language="ru", **common),
        IvrNodeEntered(at=1.1, node="lookup", node_type="http", **common),
        IvrDataDip(
            at=1.2,
            node="lookup",
            url="http://x",
            outcome=DipOutcome.OK,
            status=200,
            elapsed_ms=12.0,
            fields=(("tier", "gold"),),
            **common,
        ),
        IvrNodeEntered(at=1.3, node="menu", node_type="menu", **common),
        IvrDigits(
            at=1.4,
            node="menu",
            digits="2",
            outcome=DigitsOutcome.MATCHED,
            attempt=1,
            **common,
        ),
        IvrNodeEntered(at=1.5, node="support", node_type="queue", **common),
        IvrExited(
            at=1.6,
            node="support",
            reason=ExitReason.QUEUED,
            target="support",
            **common,
        ),
    ):
        publish(bus, event)
    await recorder.stop()
    steps = await store.ivr_steps("c1")
    await store.close()
    assert [(s.seq, s.kind, s.node) for s in steps] == [
        (1, "entered", ""),
        (2, "node", "lookup"),
        (3, "data_dip", "lookup"),
        (4, "node", "menu"),
        (5, "digits", "menu"),
        (6, "node", "support"),
        (7, "exited", "support"),
    ]
    assert steps[2].detail == "ok status=200 12ms tier=gold"
    assert path_summary(steps) == (
        "demo: lookup(ok) > menu[2] > support (queued support)"
    )


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), prog_name="ccswitch")
    return result.exit_code, result.stdout, result.stderr


def test_flows_check_the_demo() -> None:
    code, out, err = invoke("flows", "check")
    assert code == 0, err
    assert out.strip().endswith("ivr/flows/demo.toml: ok")


def test_flows_check_names_unknown_queues_and_users(tmp_path: Path) -> None:
    demo = (REPO / "ivr" / "flows" / "demo.toml").read_text()
    text = demo.replace('queue = "sales"', 'queue = "salse"', 1)
    text = text.replace('target = "user:1001"', 'target = "user:1999"', 1)
    assert text != demo
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "demo.toml").write_text(text)
    code, out, err = invoke("flows", "check", str(folder))
    assert code == 2
    source = folder / "demo.toml"
    assert f"{source}: node 'sales': unknown queue 'salse'" in err
    assert f"{source}: node 'operator': unknown user '1999'" in err
    assert "ok" not in out


def test_flows_check_a_bad_folder(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    good = write(folder, GOOD, "good")
    bad = write(folder, GOOD.replace('"1" = "bye"', '"1" = "nowhere"'), "bad")
    code, out, err = invoke("flows", "check", str(folder))
    assert code == 2
    assert out == f"{good}: ok\n"
    assert err == (
        f"{bad}: node 'menu': choice '1' goes to 'nowhere', which is not defined\n"
    )


def test_flows_check_an_empty_folder(tmp_path: Path) -> None:
    code, _, err = invoke("flows", "check", str(tmp_path))
    assert code == 2
    assert err == f"{tmp_path}: no flow files (*.toml)\n"


def _config(tmp_path: Path, pid_file: Path) -> Path:
    """The demo configuration (its queues and users back the demo flow's names)."""
    demo = (REPO / "ccswitch" / "demo.toml").read_text()
    text, count = re.subn(r'(?m)^pid_file = ".*"$', f'pid_file = "{pid_file}"', demo)
    assert count == 1
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_flows_reload_without_a_running_switch(tmp_path: Path) -> None:
    config = _config(tmp_path, tmp_path / "none.pid")
    code, _, err = invoke("flows", "reload", "--config", str(config))
    assert code == 2
    assert err.endswith(
        f"{tmp_path / 'none.pid'}: no running switch (no process id in it)\n"
    )


def test_flows_reload_refuses_a_stale_pid_of_another_program(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        pid_file.write_text(f"{sleeper.pid}\n")
        code, _, err = invoke(
            "flows", "reload", "--config", str(_config(tmp_path, pid_file))
        )
        assert code == 2
        assert err.endswith(
            f"process {sleeper.pid} is not ccswitch (a stale pid file?)\n"
        )
        assert sleeper.poll() is None  # not signalled
    finally:
        sleeper.kill()
        sleeper.wait(5)


def test_flows_reload_signals_the_switch(tmp_path: Path) -> None:
    """A process that looks like ccswitch (its command line) gets SIGHUP."""
    pid_file = tmp_path / "s.pid"
    marker = tmp_path / "hup"
    script = (
        "import signal, sys, time, pathlib\n"
        f"signal.signal(signal.SIGHUP, lambda *a: pathlib.Path({str(marker)!r}).touch())\n"
        "time.sleep(20)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, "ccswitch"], start_new_session=True
    )
    try:
        pid_file.write_text(f"{child.pid}\n")
        time.sleep(0.5)  # the handler is installed
        code, out, err = invoke(
            "flows", "reload", "--config", str(_config(tmp_path, pid_file))
        )
        assert code == 0, err
        assert out.endswith(f"reload signalled to ccswitch process {child.pid}\n")
        for _ in range(50):
            if marker.exists():
                break
            time.sleep(0.1)
        assert marker.exists()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(5)


def test_the_default_prompt_set_is_complete_and_audible() -> None:
    """prompts/build.py made every file: 8 kHz mono 16-bit, some speech in each."""

    from pydub import AudioSegment

    from ivr.speech import WORDS
    from prompts.build import texts

    for language, names in texts().items():
        for name in names:
            path = DEFAULT_PROMPTS / language / f"{name}.wav"
            assert path.is_file(), f"{path} missing: run python prompts/build.py"
        sample = AudioSegment.from_wav(DEFAULT_PROMPTS / language / "greeting.wav")
        assert (sample.frame_rate, sample.channels, sample.sample_width) == (8000, 1, 2)
        assert len(sample) > 1000 and sample.dBFS > -35
    assert set(WORDS["ru"]) <= set(texts()["ru"])
