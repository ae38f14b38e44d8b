"""``ccswitch queues``, ``agents`` and ``agent ...`` against a running switch.

The CLI reaches a running ``ccswitch serve`` through its SQLite file: a command row
is applied by the switch within a second and shows up in the live snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from ccswitch.cli import main
from tests.sipp.calls import start_switch


def _until(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_agent_commands_reach_the_running_switch(tmp_path: Path) -> None:
    switch = start_switch(tmp_path)
    runner = CliRunner()
    where = ["--config", str(switch.config), "--db", str(switch.db)]

    def agents() -> str:
        result = runner.invoke(main, ["agents", *where])
        assert result.exit_code == 0, result.output
        return result.output

    def line(name: str) -> str:
        return next((x for x in agents().splitlines() if x.startswith(name)), "")

    try:
        assert _until(lambda: "logged out" in line("1004"))
        # a break for a logged-out agent is refused by the switch, and said so
        refused = runner.invoke(main, ["agent", "break", "1004", *where])
        assert refused.exit_code == 2
        assert "break refused by the switch: the agent is logged out" in refused.output
        result = runner.invoke(main, ["agent", "login", "1004", *where])
        assert result.exit_code == 0, result.output
        assert result.output == "1004: available\n"
        assert _until(lambda: " available " in line("1004"))
        lunch = ["agent", "break", "1004", "--reason", "lunch", *where]
        assert runner.invoke(main, lunch).output == "1004: on break\n"
        assert _until(lambda: "on break" in line("1004") and "lunch" in line("1004"))
        queues = runner.invoke(main, ["queues", *where])
        assert queues.exit_code == 0
        support = next(x for x in queues.output.splitlines() if x.startswith("support"))
        assert "1 on break" in support and "4 logged out" in support
        runner.invoke(main, ["agent", "logout", "1004", *where])
        assert _until(lambda: "logged out" in line("1004"))
        bad = runner.invoke(main, ["agent", "login", "nobody", *where])
        assert bad.exit_code == 2 and "unknown agent" in bad.output
    finally:
        switch.stop()


def test_agent_command_without_a_running_switch_says_so(tmp_path: Path) -> None:
    switch = start_switch(tmp_path)
    switch.stop()  # the database stays, nobody reads the commands
    where = ["--config", str(switch.config), "--db", str(switch.db)]
    result = CliRunner().invoke(main, ["agent", "login", "1004", *where])
    assert result.exit_code == 2
    assert "login not picked up in 5 s: is a switch running on" in result.output


def test_missing_database_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["agents", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 2
    assert "no such database" in result.output
