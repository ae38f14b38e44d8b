"""Tests for ccswitch.cli: help, exit codes, one-line errors, clean stop on signals.

``ccswitch.app`` (the wiring) is replaced by a fake module so that these tests start
no sockets; the subprocess tests run the real entry points (``python -m ccswitch``,
``python -m ccswitch.cli``) the way an operator would.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from ccswitch import __version__, logs
from ccswitch.cli import main
from ccswitch.config import Config

REPO = Path(__file__).resolve().parents[1]

# A bound on each subprocess, so a hung child fails the test instead of the run.
SUBPROCESS_TIMEOUT = 60

BAD = '[sip]\nrealm = "r"\nlisten = "127.0.0.1:70000"\n'
BAD_MESSAGE = "sip.listen: port 70000 is out of range 1-65535"


@dataclass
class FakeApp:
    """Stands in for ``ccswitch.app``: records each config ``serve`` is given."""

    configs: list[Config] = field(default_factory=list)
    error: Exception | None = None
    trace_enabled: list[bool] = field(default_factory=list)

    async def serve(self, config: Config) -> None:
        self.configs.append(config)
        self.trace_enabled.append(logs.get_sip_trace().enabled)
        if self.error is not None:
            raise self.error


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> FakeApp:
    fake = FakeApp()
    module = types.ModuleType("ccswitch.app")
    module.serve = fake.serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ccswitch.app", module)
    return fake


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``serve`` configures the root logger; put it back for the next test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    logs.get_sip_trace().close()
    root.handlers[:] = handlers
    root.setLevel(level)


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), prog_name="ccswitch", input=input)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )


# --- help and version ----------------------------------------------------------------


def test_help_describes_the_switch() -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ccswitch [OPTIONS] COMMAND [ARGS]...\n")
    assert "contact-centre softswitch" in result.stdout
    for command in ("config", "serve", "user"):
        assert f"\n  {command} " in result.stdout


def _commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


COMMANDS = list(_commands(main))


def test_the_command_tree() -> None:
    assert sorted(" ".join(path) for path, _ in COMMANDS) == [
        "agent",
        "agent available",
        "agent break",
        "agent login",
        "agent logout",
        "agents",
        "cdr",
        "config",
        "config check",
        "config show",
        "flows",
        "flows check",
        "flows reload",
        "queues",
        "serve",
        "user",
        "user hash",
    ]


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=lambda p: str(p))
def test_every_command_has_help(path: tuple[str, ...], command: click.Command) -> None:
    assert command.help
    result = run(*path, "-h")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage: ccswitch {' '.join(path)} ")
    assert command.help.splitlines()[0] in result.stdout
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{' '.join(path)} {param.opts[0]} has no help"


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str) -> None:
    result = run(flag)
    assert result.exit_code == 0
    assert result.stdout == f"ccswitch, version {__version__}\n"


# --- config check / show -------------------------------------------------------------


def test_config_check_demo() -> None:
    result = run("config", "check")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "demo.toml (built-in): ok\n",
        "",
    )


def test_config_check_good_file(tmp_path: Path) -> None:
    path = write(tmp_path / "good.toml", '[sip]\nrealm = "r"\n')
    result = run("config", "check", str(path))
    assert (result.exit_code, result.stdout) == (0, f"{path}: ok\n")


def test_config_check_bad_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", BAD)
    result = run("config", "check", str(path))
    assert (result.exit_code, result.stdout, result.stderr) == (
        2,
        "",
        f"{path}: {BAD_MESSAGE}\n",
    )


def test_config_check_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    result = run("config", "check", str(path))
    assert result.exit_code == 2
    assert result.stderr == f"{path}: cannot read: No such file or directory\n"


def test_config_show_demo_hides_passwords() -> None:
    result = run("config", "show")
    assert result.exit_code == 0
    assert result.stdout.startswith(
        "# Effective configuration from demo.toml (built-in).\n"
    )
    assert '\n[sip]\nlisten = "127.0.0.1:5060"\n' in result.stdout
    assert 'ports = "30000-30999"' in result.stdout
    assert result.stdout.count("[[users]]") == 10
    assert result.stdout.count("# password = (hidden)") == 10
    assert "demo10" not in result.stdout


def test_config_show_hides_ha1(tmp_path: Path) -> None:
    md5, sha256 = "a" * 32, "b" * 64
    path = write(
        tmp_path / "ha1.toml",
        f'[sip]\nrealm = "r"\n[[users]]\nname = "1"\nha1_md5 = "{md5}"\n'
        f'ha1_sha256 = "{sha256}"\n',
    )
    result = run("config", "show", str(path))
    assert result.exit_code == 0
    assert md5 not in result.stdout and sha256 not in result.stdout
    assert "# ha1_md5 = (hidden)\n# ha1_sha256 = (hidden)\n" in result.stdout


def test_config_show_bad_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", BAD)
    result = run("config", "show", str(path))
    assert (result.exit_code, result.stdout, result.stderr) == (
        2,
        "",
        f"{path}: {BAD_MESSAGE}\n",
    )


# --- user hash -----------------------------------------------------------------------


def expected_lines(name: str, realm: str, password: str) -> str:
    secret = f"{name}:{realm}:{password}".encode()
    return (
        f'ha1_md5 = "{hashlib.md5(secret).hexdigest()}"\n'
        f'ha1_sha256 = "{hashlib.sha256(secret).hexdigest()}"\n'
    )


def test_user_hash_default_realm_is_the_demo_realm() -> None:
    result = run("user", "hash", "1001", "demo1001")
    assert result.exit_code == 0
    assert result.stdout == expected_lines("1001", "ccswitch", "demo1001")
    # Spelled out once, so a change to the formula cannot hide behind the helper.
    assert result.stdout == (
        'ha1_md5 = "580e5cb33a32376dd2ad8b350298cbee"\n'
        'ha1_sha256 = "9093b577246fec0dbee2cbb2a506d540b25027ac3b1127ff13a6ec658cb3f539"\n'
    )


def test_user_hash_with_realm() -> None:
    result = run("user", "hash", "alice", "s3cret", "--realm", "example.com")
    assert result.exit_code == 0
    assert result.stdout == expected_lines("alice", "example.com", "s3cret")


def test_user_hash_lines_load_as_config(tmp_path: Path) -> None:
    lines = run("user", "hash", "1001", "pw", "--realm", "r").stdout
    path = write(
        tmp_path / "u.toml", f'[sip]\nrealm = "r"\n[[users]]\nname = "1001"\n{lines}'
    )
    assert run("config", "check", str(path)).exit_code == 0


def test_user_hash_prompts_for_the_password() -> None:
    result = run("user", "hash", "1001", input="pw\npw\n")
    assert result.exit_code == 0
    assert result.stdout.endswith(expected_lines("1001", "ccswitch", "pw"))
    assert "pw" not in result.stdout.split("ha1_md5")[0]  # hidden input not echoed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("a b", "pw"),
            'NAME: "a b" is not a valid SIP user name (letters, digits and -_.!~*\'()&=+$,;?/)',
        ),
        (
            ("1001", "pw", "--realm", 'a"b'),
            '--realm: must not contain quotes or backslashes, got "a\\"b"',
        ),
        (("1001", "pw", "--realm", ""), "--realm: must not be empty"),
        (("1001", ""), "PASSWORD: must not be empty"),
    ],
)
def test_user_hash_errors(args: tuple[str, ...], message: str) -> None:
    result = run("user", "hash", *args)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", message + "\n")


# --- serve ---------------------------------------------------------------------------


def test_serve_runs_the_app_with_the_overridden_config(
    fake_app: FakeApp, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.log"
    result = run(
        "serve",
        "--listen",
        "127.0.0.1:15060",
        "--rtp-ports",
        "40000-40099",
        "--db",
        str(tmp_path / "x.db"),
        "--log-level",
        "debug",
        "--sip-trace",
        str(trace),
    )
    assert result.exit_code == 0, result.output
    [config] = fake_app.configs
    assert (config.sip.listen_host, config.sip.listen_port) == ("127.0.0.1", 15060)
    assert (config.rtp.port_low, config.rtp.port_high) == (40000, 40099)
    assert config.store.path == str(tmp_path / "x.db")
    assert config.log.level == "DEBUG"
    assert config.sip.trace_file == str(trace)
    assert fake_app.trace_enabled == [True]
    assert trace.exists()
    assert result.stderr.rstrip("\n").endswith("INFO ccswitch.cli: stopped")


def test_serve_defaults_to_the_demo(fake_app: FakeApp) -> None:
    result = run("serve")
    assert result.exit_code == 0, result.output
    [config] = fake_app.configs
    assert config.source == "demo.toml (built-in)"
    assert fake_app.trace_enabled == [False]


def test_serve_config_file(fake_app: FakeApp, tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", '[sip]\nrealm = "mine"\n')
    result = run("serve", "-c", str(path))
    assert result.exit_code == 0, result.output
    assert fake_app.configs[0].sip.realm == "mine"


def test_serve_bad_config_is_one_line_exit_2(fake_app: FakeApp, tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", BAD)
    result = run("serve", "--config", str(path))
    assert (result.exit_code, result.stdout, result.stderr) == (
        2,
        "",
        f"{path}: {BAD_MESSAGE}\n",
    )
    assert fake_app.configs == []


def test_serve_bad_option_is_one_line_exit_2(fake_app: FakeApp) -> None:
    result = run("serve", "--rtp-ports", "5000-5999")
    assert result.exit_code == 2
    assert result.stderr == (
        "--rtp-ports: RTP range 5000-5999 (--rtp-ports) contains the SIP port 5060 "
        "(sip.listen)\n"
    )
    assert fake_app.configs == []


def test_serve_trace_that_cannot_be_opened(fake_app: FakeApp, tmp_path: Path) -> None:
    result = run("serve", "--sip-trace", str(tmp_path))  # a directory
    assert result.exit_code == 2
    assert result.stderr == f"{tmp_path}: cannot open the SIP trace: Is a directory\n"
    assert fake_app.configs == []


def test_serve_os_error_is_exit_1(fake_app: FakeApp) -> None:
    fake_app.error = OSError(98, "Address already in use")
    result = run("serve")
    assert result.exit_code == 1
    assert (
        "ERROR ccswitch.cli: cannot run: [Errno 98] Address already in use"
        in result.stderr
    )
    assert "stopped" not in result.stderr
    assert "Traceback" not in result.stderr


# --- real processes ------------------------------------------------------------------


def test_python_m_ccswitch_cli_bad_config(tmp_path: Path) -> None:
    write(tmp_path / "bad.toml", BAD)
    proc = python("-m", "ccswitch.cli", "serve", "--config", "bad.toml", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"bad.toml: {BAD_MESSAGE}\n",
    )


def test_python_m_ccswitch_version(tmp_path: Path) -> None:
    proc = python("-m", "ccswitch", "--version", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, f"ccswitch, version {__version__}\n")


# Runs `ccswitch serve` with a fake app whose serve() signals its own process and
# then waits; the CLI must cancel it, let its cleanup run, log "stopped", exit 0.
SIGNAL_SCRIPT = """
import asyncio, os, signal, sys, types

async def serve(config):
    print("serving", config.sip.listen_host, flush=True)
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    try:
        await asyncio.Event().wait()
    finally:
        print("cleaned up", flush=True)

app = types.ModuleType("ccswitch.app")
app.serve = serve
sys.modules["ccswitch.app"] = app

from ccswitch.cli import main
main(["serve", "--db", "x.db"], prog_name="ccswitch")
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_signal_stops_serve_cleanly(tmp_path: Path, signal_name: str) -> None:
    script = write(tmp_path / "run_serve.py", SIGNAL_SCRIPT)
    proc = python(str(script), signal_name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "serving 127.0.0.1\ncleaned up\n"
    assert "Traceback" not in proc.stderr
    last = proc.stderr.rstrip("\n").splitlines()[-1]
    assert last.endswith(" INFO ccswitch.cli: stopped")


def test_serve_bind_error_names_the_reason(fake_app: FakeApp) -> None:
    """uvloop's bind error names the address only; the errno text is its cause."""
    error = OSError("could not bind to local_addr ('127.0.0.1', 5060)")
    error.__cause__ = OSError(98, "Address already in use")
    fake_app.error = error
    result = run("serve")
    assert result.exit_code == 1
    assert (
        "cannot run: could not bind to local_addr ('127.0.0.1', 5060): "
        "Address already in use" in result.stderr
    )
