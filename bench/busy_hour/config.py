"""The switch configuration of one busy-hour run, written into the run's folder.

Written from scratch rather than edited from the demo (whose queues offer callbacks
and whose admission rules refuse callers): everything the run needs and nothing else,
each key as ``ccswitch/demo.toml`` documents it, and checked with ``ccswitch config
check`` and ``ccswitch flows check`` before the switch starts, so that a key another
engineer renamed fails the run with the switch's own message instead of a mystery.

The flow ``busy`` is the contact centre's front door: a greeting, a one-key menu
("press 1"), then the queue.  A caller who presses nothing, or another key, still
reaches the queue, through its own node (``queue_no_digit``, ``queue_other_digit``),
so the IVR's step log shows how many callers' digits the switch heard.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.busy_hour.voice import write_music

QUEUE: Final = "busy"
NUMBER: Final = "4000"
FIRST_AGENT: Final = 20001
FLOW: Final = """\
# bench/busy_hour: greeting, "press 1", queue. No digit or another digit still
# queues, through a node of its own so that the step log tells them apart.
start = "welcome"
language = "ru"

[nodes.welcome]
type = "play"
prompts = ["greeting"]
next = "menu"

[nodes.menu]
type = "menu"
prompts = ["menu"]
choices = {{ "1" = "queue" }}
timeout = {menu_timeout}
retries = 0
invalid = "queue_other_digit"
no_input = "queue_no_digit"

[nodes.queue]
type = "queue"
prompts = ["please_hold"]
queue = "{queue}"
fallback = "full"

[nodes.queue_no_digit]
type = "queue"
prompts = ["please_hold"]
queue = "{queue}"
fallback = "full"

[nodes.queue_other_digit]
type = "queue"
prompts = ["please_hold"]
queue = "{queue}"
fallback = "full"

[nodes.full]
type = "hangup"
prompts = ["agents_busy"]
"""


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What the configuration depends on; ports are chosen by the caller."""

    workdir: Path
    sip_port: int
    rtp_low: int
    rtp_high: int
    trunk_port: int
    operators: int
    max_calls: int
    media_workers: int
    wrap_up: float
    announce_interval: float
    menu_timeout: float
    recording: bool = True
    shed: bool = True  # False: the switch's overload tests off (shed_* = 0)
    media_priority: str = "realtime"  # [rtp] media_priority


def agent_names(operators: int) -> list[str]:
    return [str(FIRST_AGENT + i) for i in range(operators)]


def password(name: str) -> str:
    return f"bench{name}"


def _text(run: RunConfig) -> str:
    work = run.workdir
    parts = [
        "# bench/busy_hour: one run's switch (keys as in ccswitch/demo.toml)",
        "[sip]",
        f'listen = "127.0.0.1:{run.sip_port}"',
        'realm = "ccswitch"',
        'digest_algorithms = "MD5"',  # SIPp answers only an MD5 challenge
        "[registrar]",
        "qualify_interval = 0",
        "[rtp]",
        f'ports = "{run.rtp_low}-{run.rtp_high}"',
        f"media_workers = {run.media_workers}",
        f'media_priority = "{run.media_priority}"',
        "[store]",
        f'path = "{work / "ccswitch.db"}"',
        "[log]",
        'level = "INFO"',
        "[limits]",
        f"max_calls = {run.max_calls}",
        "ring_timeout = 60.0",
    ]
    if not run.shed:
        parts += ["shed_cpu = 0", "shed_late_ticks = 0", "shed_lag = 0"]
    if run.recording:
        parts += ["[recording]", "enabled = true", f'folder = "{work / "recordings"}"']
    parts += [
        "[ivr]",
        f'flows = "{work / "flows"}"',
        'crm_listen = ""',
        'pid_file = ""',
        "[[trunks]]",
        'name = "carrier"',
        'host = "127.0.0.1"',
        f"port = {run.trunk_port}",
        'transport = "UDP"',
        'inbound_sources = ["127.0.0.1/32"]',
        "options_interval = 0",
        "[[dialplan]]",
        f'pattern = "{NUMBER}"',
        'to = "ivr:busy"',
        "[[queues]]",
        f'name = "{QUEUE}"',
        'strategy = "longest-idle"',
        f"wrap_up = {run.wrap_up}",
        "ring_timeout = 15.0",
        "max_wait = 0.0",
        "service_level = 20.0",
        "join_empty = true",
        f"announce_interval = {run.announce_interval}",
        f'music = "{work / "music.wav"}"',
    ]
    for name in agent_names(run.operators):
        parts += [
            "[[users]]",
            f'name = "{name}"',
            f'password = "{password(name)}"',
            "[[agents]]",
            f'name = "{name}"',
            f'users = ["{name}"]',
            f'queues = ["{QUEUE}"]',
            "auto_login = true",
        ]
    return "\n".join(parts) + "\n"


def _check(args: list[str], cwd: Path) -> str:
    """Empty when the switch's checker accepts, else its message."""
    command = [sys.executable, "-m", "ccswitch", *args]
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    return "" if result.returncode == 0 else (result.stdout + result.stderr).strip()


def write(run: RunConfig) -> tuple[Path, list[str]]:
    """The checked configuration file, and the notes on what had to be left out.

    ``[recording]`` is new; a switch that does not know it yet runs without it and
    the report says so (the recording check then fails visibly, not silently).
    """
    flows = run.workdir / "flows"
    flows.mkdir(parents=True, exist_ok=True)
    flow = FLOW.format(queue=QUEUE, menu_timeout=run.menu_timeout)
    (flows / "busy.toml").write_text(flow)
    write_music(run.workdir / "music.wav")
    path = run.workdir / "ccswitch.toml"
    notes: list[str] = []
    path.write_text(_text(run))
    problem = _check(["config", "check", str(path)], run.workdir)
    if problem and run.recording and "recording" in problem:
        notes.append(f"[recording] refused by config check: {problem}")
        path.write_text(_text(RunConfig(**{**run.__dict__, "recording": False})))
        problem = _check(["config", "check", str(path)], run.workdir)
    if problem:
        raise RuntimeError(f"ccswitch config check {path}: {problem}")
    problem = _check(["flows", "check", str(flows), "-c", str(path)], run.workdir)
    if problem:
        raise RuntimeError(f"ccswitch flows check {flows}: {problem}")
    return path, notes
