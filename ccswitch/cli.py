"""The ``ccswitch`` command line: run the switch, check a configuration, hash a password.

Why this module exists: operators meet the switch here first, so every mistake they can
make on the command line or in the file is one line on stderr and exit code 2, never a
traceback, and a running switch stops cleanly on Ctrl-C or SIGTERM with exit code 0.
It only turns arguments into a validated :class:`~ccswitch.config.Config`, sets up
logging and runs :func:`ccswitch.app.serve` on uvloop; the switch is wired in
:mod:`ccswitch.app`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click
import uvloop

from ccswitch import __version__
from ccswitch.acd_cli import add_acd_commands
from ccswitch.config import (
    Config,
    ConfigError,
    apply_overrides,
    check_value,
    load_config,
    render_config,
)
from ccswitch.logs import setup_logging

__all__ = ["main"]

logger = logging.getLogger(__name__)

# Exit codes. 2 is what click uses for usage errors: a bad file or option is the
# invocation's fault, like a bad flag.
EXIT_OK = 0
EXIT_RUNTIME_ERROR = 1
EXIT_CONFIG_ERROR = 2

# The signals that stop ``serve`` cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Serve = Callable[[Config], Coroutine[Any, Any, None]]

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 88}


def _fail(error: ConfigError | str) -> NoReturn:
    """Print one line to stderr and leave with the configuration exit code."""
    click.echo(str(error), err=True)
    raise SystemExit(EXIT_CONFIG_ERROR)


def _load(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as error:
        _fail(error)


@click.group(context_settings=_CONTEXT)
@click.version_option(__version__, "--version", "-V", prog_name="ccswitch")
def main() -> None:
    """ccswitch is a contact-centre softswitch written in Python: a SIP registrar
    and back-to-back user agent (RFC 3261) for phones on UDP, TCP and TLS, an RTP
    media engine (RFC 3550) with G.711 and DTMF, and on top of them IVR
    menus and queues that hand callers to agents (ACD). Everything is set in one TOML
    file; without one, `ccswitch serve` runs a demo on 127.0.0.1:5060 with users
    1001-1010 (passwords demo1001-demo1010).
    """


@main.command(context_settings=_CONTEXT)
@click.option(
    "--config",
    "-c",
    "config_file",
    metavar="FILE",
    help="Configuration file (TOML). Default: the built-in demo.",
)
@click.option(
    "--listen", metavar="HOST:PORT", help="Override sip.listen (UDP and TCP)."
)
@click.option("--rtp-ports", metavar="LOW-HIGH", help="Override rtp.ports.")
@click.option(
    "--media-workers",
    metavar="N",
    type=click.IntRange(0, 64),
    help="Override rtp.media_workers: media engine processes (0: in-process; "
    "default: one per core).",
)
@click.option("--db", metavar="PATH", help="Override store.path (SQLite file).")
@click.option(
    "--log-level",
    metavar="LEVEL",
    help="Override log.level: DEBUG, INFO, WARNING, ERROR or CRITICAL.",
)
@click.option(
    "--sip-trace",
    metavar="FILE",
    help='Write every SIP message to FILE (override sip.trace_file; "" for none).',
)
def serve(
    config_file: str | None,
    listen: str | None,
    rtp_ports: str | None,
    media_workers: int | None,
    db: str | None,
    log_level: str | None,
    sip_trace: str | None,
) -> None:
    """Run the switch until Ctrl-C or SIGTERM.

    The configuration is checked completely before anything binds; a problem is
    reported as one line and exit code 2. Options override their keys in the file.
    """
    config = _load(config_file)
    try:
        config = apply_overrides(
            config,
            listen=listen,
            rtp_ports=rtp_ports,
            media_workers=media_workers,
            db=db,
            log_level=log_level,
            trace_file=sip_trace,
        )
    except ConfigError as error:
        _fail(error)
    try:
        setup_logging(config.log.level, config.sip.trace_file)
    except OSError as error:
        _fail(f"{config.sip.trace_file}: cannot open the SIP trace: {error.strerror}")
    raise SystemExit(_run(config))


def _run(config: Config) -> int:
    """Run ``ccswitch.app.serve`` on uvloop; return the exit code."""
    # Imported here: the wiring pulls in the whole switch, which `config check`,
    # `user hash` and `--help` do not need.
    from ccswitch.app import serve as app_serve
    from ccswitch.store import StoreError

    logger.info(
        "ccswitch %s starting (config %s, SIP on %s:%d)",
        __version__,
        config.source,
        config.sip.listen_host,
        config.sip.listen_port,
    )
    try:
        uvloop.run(_serve_until_signalled(app_serve, config))
    except (OSError, StoreError) as error:  # the SIP port is taken, a bad database
        reason = str(error)
        cause = error.__cause__
        plain = not isinstance(error, OSError) or error.strerror is None
        if isinstance(cause, OSError) and cause.strerror and plain:
            # uvloop's bind error names the address; the reason is in its cause
            reason += f": {cause.strerror}"
        logger.error("cannot run: %s", reason)
        return EXIT_RUNTIME_ERROR
    logger.info("stopped")
    return EXIT_OK


async def _serve_until_signalled(serve: Serve, config: Config) -> None:
    """Await ``serve(config)``; SIGINT or SIGTERM cancels it, which is a clean stop."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(serve(config))
    received: list[str] = []

    def stop(name: str) -> None:
        logger.debug("%s received, stopping", name)
        received.append(name)
        task.cancel()  # a second signal cancels again, cutting a slow shutdown short

    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, stop, number.name)
    try:
        await task
    except asyncio.CancelledError:
        if not received:
            raise  # we were cancelled from outside, not by a signal
    finally:
        for number in STOP_SIGNALS:
            loop.remove_signal_handler(number)


@main.group("config", context_settings=_CONTEXT)
def config_group() -> None:
    """Check or show a configuration file.

    FILE defaults to the built-in demo configuration.
    """


@config_group.command("check", context_settings=_CONTEXT)
@click.argument("file", required=False)
def config_check(file: str | None) -> None:
    """Validate FILE and print "FILE: ok" (exit code 2 and one line if not)."""
    config = _load(file)
    click.echo(f"{config.source}: ok")


@config_group.command("show", context_settings=_CONTEXT)
@click.argument("file", required=False)
def config_show(file: str | None) -> None:
    """Print the effective configuration of FILE, defaults filled in.

    Passwords and HA1 hashes are not shown.
    """
    click.echo(render_config(_load(file)), nl=False)


@main.group("user", context_settings=_CONTEXT)
def user_group() -> None:
    """Helpers for the [[users]] entries of a configuration."""


@user_group.command("hash", context_settings=_CONTEXT)
@click.argument("name")
@click.argument("password", required=False)
@click.option(
    "--realm",
    metavar="REALM",
    help="The digest realm; must equal sip.realm. Default: the demo's realm.",
)
def user_hash(name: str, password: str | None, realm: str | None) -> None:
    """Print ha1_md5 and ha1_sha256 lines for NAME to paste into [[users]].

    HA1 is the hash of "NAME:REALM:PASSWORD" (RFC 7616, RFC 8760), so the file
    need not hold the password. Leave PASSWORD out to be prompted for it, which
    keeps it out of the shell history.
    """
    try:
        check_value("users.name", name, label="NAME")
        if realm is None:
            realm = load_config(None).sip.realm
        check_value("sip.realm", realm, label="--realm")
    except ConfigError as error:
        _fail(error)
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if password == "":
        _fail("PASSWORD: must not be empty")
    secret = f"{name}:{realm}:{password}".encode()
    click.echo(f'ha1_md5 = "{hashlib.md5(secret).hexdigest()}"')
    click.echo(f'ha1_sha256 = "{hashlib.sha256(secret).hexdigest()}"')


@main.group("flows", context_settings=_CONTEXT)
def flows_group() -> None:
    """Check IVR flow files, or make the running switch reload them ([ivr])."""


_FLOW_CONFIG = click.option(
    "--config",
    "-c",
    "config_file",
    metavar="FILE",
    help="Configuration whose [ivr] section applies. Default: the built-in demo.",
)


def _check_flows(config: Config, folder: str | None) -> bool:
    """Print "FILE: ok" per good flow and one line per problem; True if all good."""
    from ccswitch.ivr_runtime import flow_folder, prompt_library
    from ivr.loader import load_flows

    path = Path(folder) if folder else flow_folder(config.ivr)
    result = load_flows(path, prompt_library(config.ivr))
    good = not result.errors
    for flow in result.flows.values():
        problems = _flow_references(flow, config)
        for problem in problems:
            click.echo(problem, err=True)
        if problems:
            good = False
        else:
            click.echo(f"{flow.source}: ok")
    for error in result.errors:
        click.echo(str(error), err=True)
    if not result.flows and not result.errors:
        click.echo(f"{path}: no flow files (*.toml)", err=True)
        return False
    return good


def _flow_references(flow: Any, config: Config) -> list[str]:
    """Queues and users a flow names that this configuration does not have.

    Names taken from variables (``${...}``) are known only at call time.
    """
    from ivr.flow import QueueNode, TransferNode

    queues = {queue.name for queue in config.queues}
    users = {user.name for user in config.users}
    problems = []
    for name, node in flow.nodes.items():
        queue = node.queue if isinstance(node, QueueNode) else None
        if queue is not None and "${" not in queue and queue not in queues:
            problems.append(f"{flow.source}: node '{name}': unknown queue {queue!r}")
        if isinstance(node, TransferNode) and node.target.startswith("user:"):
            user = node.target.removeprefix("user:")
            if "${" not in user and user not in users:
                problems.append(f"{flow.source}: node '{name}': unknown user {user!r}")
    return problems


@flows_group.command("check", context_settings=_CONTEXT)
@click.argument("folder", required=False)
@_FLOW_CONFIG
def flows_check(folder: str | None, config_file: str | None) -> None:
    """Check every flow file in FOLDER (default: [ivr] flows) as the switch does.

    Dangling or unreachable nodes, loops without caller input, missing prompt files
    (in every [ivr] language) and wrong types are one line each: file, node, problem.
    Exit code 2 if any flow fails.
    """
    if not _check_flows(_load(config_file), folder):
        raise SystemExit(EXIT_CONFIG_ERROR)


@flows_group.command("reload", context_settings=_CONTEXT)
@_FLOW_CONFIG
def flows_reload(config_file: str | None) -> None:
    """Check the flows, then make the running switch load them for new calls.

    The switch is found by [ivr] pid_file and sent SIGHUP. A flow that fails its
    checks is reported (exit code 2) and the switch keeps running its old version.
    """
    config = _load(config_file)
    good = _check_flows(config, None)
    pid_file = config.ivr.pid_file
    if not pid_file:
        _fail("ivr.pid_file is not set: cannot find the running switch")
    try:
        pid = int(Path(pid_file).read_text().strip())
    except (OSError, ValueError):
        _fail(f"{pid_file}: no running switch (no process id in it)")
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and b"ccswitch" not in cmdline.read_bytes():
        _fail(f"{pid_file}: process {pid} is not ccswitch (a stale pid file?)")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        _fail(f"{pid_file}: process {pid} is not running")
    except PermissionError:
        _fail(f"{pid_file}: not allowed to signal process {pid}")
    click.echo(f"reload signalled to ccswitch process {pid}")
    if not good:
        raise SystemExit(EXIT_CONFIG_ERROR)


@main.command("cdr", context_settings=_CONTEXT)
@click.option(
    "--config",
    "-c",
    "config_file",
    metavar="FILE",
    help="Configuration whose store.path to read. Default: the built-in demo.",
)
@click.option("--db", metavar="PATH", help="The SQLite file (overrides store.path).")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many calls to show, newest first.",
)
@click.option("--legs", is_flag=True, help="Show each call's legs under it.")
def cdr(config_file: str | None, db: str | None, limit: int, legs: bool) -> None:
    """Print the most recent call detail records (CDRs), newest first.

    One line per call: start time, caller -> called, where the dialplan sent it, the
    result (ANSWERED or the SIP status), talk time in seconds, who hung up, the Q.850
    cause and the lowest MOS of its legs. A call that went through an IVR flow
    gets a second line with its path: nodes, [keys] pressed, (data-dip result).
    """
    path = db if db is not None else _load(config_file).store.path
    if path != ":memory:" and not Path(path).is_file():
        _fail(f"{path}: no such database")
    from ccswitch.store import StoreError

    try:
        lines = asyncio.run(_cdr_lines(path, limit, legs))
    except StoreError as error:
        _fail(str(error))
    for line in lines:
        click.echo(line)


async def _cdr_lines(path: str, limit: int, with_legs: bool) -> list[str]:
    from ccswitch.store import Store
    from ivr.record import path_summary

    store = Store(path)
    await store.open()
    try:
        calls = await store.recent_calls(limit)
        lines = [CDR_HEADER]
        for call in calls:
            legs = await store.call_legs(call.call_id)
            lines.append(_cdr_call_line(call, legs))
            steps = await store.ivr_steps(call.call_id)
            if steps:
                lines.append(f"    ivr {path_summary(steps)}")
            if with_legs:
                lines.extend(_cdr_leg_line(leg) for leg in legs)
    finally:
        await store.close()
    return lines


CDR_HEADER = (
    f"{'start':19}  {'caller':>14} -> {'called':14}  {'route':20}  {'result':9}"
    f"  {'talk':>6}  {'hangup':7}  {'cause':>5}  {'mos':>4}"
)


def _cdr_time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _cdr_call_line(call: Any, legs: list[Any]) -> str:
    if call.answered:
        result = "ANSWERED"
    elif call.status is not None:
        result = str(call.status)
    else:
        result = "OPEN" if call.ended_at is None else "-"
    route = f"{call.route_kind}:{call.route_target}" if call.route_kind else "-"
    talk = call.billable
    scores = [leg.mos for leg in legs if leg.mos is not None]
    return (
        f"{_cdr_time(call.started_at):19}  {call.caller or '-':>14} -> "
        f"{call.called or '-':14}  {route[:20]:20}  {result:9}"
        f"  {'-' if talk is None else f'{talk:.1f}':>6}  {call.hangup_by or '-':7}"
        f"  {'-' if call.cause is None else call.cause:>5}"
        f"  {f'{min(scores):.2f}' if scores else '-':>4}"
    )


def _cdr_leg_line(leg: Any) -> str:
    quality = ""
    if leg.packets_lost is not None:
        quality += f" lost={leg.packets_lost}"
    if leg.jitter_ms is not None:
        quality += f" jitter={leg.jitter_ms:.1f}ms"
    if leg.mos is not None:
        quality += f" mos={leg.mos:.2f}"
    return (
        f"    {leg.role or '-'} {leg.peer or '-'} codec={leg.codec or '-'}"
        f" status={leg.status if leg.status is not None else '-'}"
        f" cause={leg.cause if leg.cause is not None else '-'}"
        f" hangup={leg.hangup_by or '-'}{quality}"
    )


# The ACD (issue 6): ccswitch queues, ccswitch agents, ccswitch agent ...
add_acd_commands(main)

if __name__ == "__main__":
    main(prog_name="ccswitch")
