"""The ACD's command line: ``ccswitch queues``, ``ccswitch agents``, ``ccswitch agent``.

These commands read and write the switch's SQLite store, which the running switch
keeps current (acd/log.py): the live snapshot of queues and agents (rewritten every
second), the queue log (statistics for today, or any interval), and a command table
for agent login, logout and breaks that the switch applies within a second. No
control socket is needed, and the commands work on a stopped switch's file too
(showing its last snapshot).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from ccswitch.config import ConfigError, load_config

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 88}
EXIT_CONFIG_ERROR = 2

_CONFIG = click.option(
    "--config",
    "-c",
    "config_file",
    metavar="FILE",
    help="Configuration whose store.path to use. Default: the built-in demo.",
)
_DB = click.option(
    "--db", metavar="PATH", help="The SQLite file (overrides store.path)."
)


def _fail(message: str) -> None:
    click.echo(message, err=True)
    raise SystemExit(EXIT_CONFIG_ERROR)


def _config_and_path(config_file: str | None, db: str | None) -> tuple[object, str]:
    try:
        config = load_config(config_file)
    except ConfigError as error:
        _fail(str(error))
        raise AssertionError from None  # unreachable: _fail exits
    path = db if db is not None else config.store.path
    if not Path(path).is_file():
        _fail(f"{path}: no such database (is the switch running here?)")
    return config, path


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}s"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


async def _queues_lines(
    config: object, path: str, start: float, end: float
) -> list[str]:
    from acd.log import QueueLog
    from acd.stats import queue_stats
    from ccswitch.store import Store

    store = Store(path)
    await store.open()
    try:
        log = QueueLog(store.db)
        snapshots = {q.name: q for q in await log.queues()}
        agents = await log.agents()
        records = await log.between(start, end)
    finally:
        await store.close()
    lines = [
        f"{'queue':12} {'waiting':>7} {'longest':>8} {'ewt':>6} {'offered':>7}"
        f" {'answered':>8} {'abandon':>7} {'SL':>5} {'ASA':>6} {'AHT':>6}"
        f" {'occup':>5}  agents"
    ]
    for queue in config.queues:  # type: ignore[attr-defined]
        snap = snapshots.get(queue.name)
        stats = queue_stats(
            records,
            start=start,
            end=end,
            service_level=queue.service_level,
            queue=queue.name,
        )
        states: dict[str, int] = {}
        for agent in agents:
            if queue.name in agent["queues"]:  # type: ignore[operator]
                key = (
                    str(agent["state"])
                    if agent["status"] == "available"
                    else str(agent["status"])
                )
                states[key] = states.get(key, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "-"
        lines.append(
            f"{queue.name:12} {snap.waiting if snap else 0:>7}"
            f" {_seconds(snap.longest_wait if snap else None):>8}"
            f" {_seconds(snap.expected_wait if snap else None):>6}"
            f" {stats.offered:>7} {stats.answered:>8} {stats.abandoned:>7}"
            f" {_percent(stats.service_level):>5}"
            f" {_seconds(stats.average_speed_of_answer):>6}"
            f" {_seconds(stats.average_handle_time):>6}"
            f" {_percent(stats.occupancy):>5}  {summary}"
        )
    return lines


def _midnight(time_zone: str) -> float:
    """The last midnight in the company's time zone (``[ivr] time_zone``)."""
    now = datetime.now(ZoneInfo(time_zone))
    return now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


@click.command("queues", context_settings=_CONTEXT)
@_CONFIG
@_DB
@click.option(
    "--since",
    metavar="SECONDS",
    type=click.FloatRange(min=1),
    help="Statistics over the last SECONDS instead of since midnight.",
)
def queues_command(
    config_file: str | None, db: str | None, since: float | None
) -> None:
    """Live queue statistics: callers waiting, longest wait, expected wait, and for
    today (or --since) calls offered, answered and abandoned, service level (answered
    within the queue's service_level / handled), ASA, AHT, occupancy, agents by state.
    """
    config, path = _config_and_path(config_file, db)
    end = time.time() + 1
    start = end - since if since else _midnight(config.ivr.time_zone)  # type: ignore[attr-defined]
    for line in asyncio.run(_queues_lines(config, path, start, end)):
        click.echo(line)


async def _agents_lines(path: str) -> list[str]:
    from acd.log import QueueLog
    from ccswitch.store import Store

    store = Store(path)
    await store.open()
    try:
        agents = await QueueLog(store.db).agents()
    finally:
        await store.close()
    now = time.time()
    lines = [
        f"{'agent':10} {'status':10} {'reason':10} {'state':9} {'for':>6}"
        f" {'calls':>5} {'talk':>7}  queues"
    ]
    for agent in agents:
        since = float(agent["since"] or 0)  # type: ignore[arg-type]
        lines.append(
            f"{agent['name']!s:10} {agent['status']!s:10} {agent['reason'] or '-'!s:10}"
            f" {agent['state']!s:9} {_seconds(max(0.0, now - since) if since else None):>6}"
            f" {agent['calls']!s:>5} {_seconds(float(agent['talk_time'])):>7}"  # type: ignore[arg-type]
            f"  {','.join(agent['queues'])}"  # type: ignore[arg-type]
        )
    return lines


@click.command("agents", context_settings=_CONTEXT)
@_CONFIG
@_DB
def agents_command(config_file: str | None, db: str | None) -> None:
    """Live agent status (logged out, available, on break + reason) and state (idle,
    reserved, ringing, talking, wrap-up), with calls and talk time so far."""
    _, path = _config_and_path(config_file, db)
    for line in asyncio.run(_agents_lines(path)):
        click.echo(line)


# What an agent's status reads once each action has taken effect.
EXPECTED_STATUS = {
    "login": "available",
    "available": "available",
    "logout": "logged out",
    "break": "on break",
}
# How long the CLI waits for the running switch to apply a command (it looks for
# commands and rewrites its snapshot about once a second).
APPLY_TIMEOUT = 5.0


async def _add_command(
    path: str, agent: str, action: str, reason: str
) -> tuple[bool, str | None]:
    """Queue the command, then wait for the switch: (taken, agent status after)."""
    from acd.log import QueueLog
    from ccswitch.store import Store

    store = Store(path)
    await store.open()
    try:
        log = QueueLog(store.db)
        sent = time.time()
        await log.add_command(agent, action, reason)
        deadline = time.monotonic() + APPLY_TIMEOUT
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            async with store.db.execute("SELECT COUNT(*) FROM acd_commands") as cursor:
                row = await cursor.fetchone()
            if row is not None and row[0]:
                continue  # not taken yet
            for entry in await log.agents():
                updated = float(entry["updated_at"] or 0)  # type: ignore[arg-type]
                if entry["name"] == agent and updated > sent:
                    return True, str(entry["status"])
        async with store.db.execute("SELECT COUNT(*) FROM acd_commands") as cursor:
            row = await cursor.fetchone()
        return not (row is not None and row[0]), None
    finally:
        await store.close()


@click.group("agent", context_settings=_CONTEXT)
def agent_group() -> None:
    """Log an agent in or out, or put them on a break (the running switch applies it
    within a second; the same as feature codes *41, *42, *43, *44 from the phone)."""


def _agent_command(action: str, help_text: str) -> click.Command:
    @click.command(action, context_settings=_CONTEXT, help=help_text)
    @click.argument("name")
    @_CONFIG
    @_DB
    @click.option("--reason", default="", help="Break reason code (break only).")
    def command(
        name: str, config_file: str | None, db: str | None, reason: str
    ) -> None:
        config, path = _config_and_path(config_file, db)
        known = [a.name for a in config.agents]  # type: ignore[attr-defined]
        if name not in known:
            _fail(
                f"NAME: unknown agent {name!r} (agents: {', '.join(known) or 'none'})"
            )
        taken, status = asyncio.run(_add_command(path, name, action, reason))
        if not taken:
            _fail(
                f"{name}: {action} not picked up in {APPLY_TIMEOUT:.0f} s: is a switch "
                f"running on {path}? (it will apply the command when it starts)"
            )
        if status is None:
            _fail(f"{name}: {action} taken, but the switch's snapshot did not update")
        if status != EXPECTED_STATUS[action]:
            _fail(f"{name}: {action} refused by the switch: the agent is {status}")
        click.echo(f"{name}: {status}")

    return command


agent_group.add_command(_agent_command("login", "Log agent NAME in (available)."))
agent_group.add_command(_agent_command("logout", "Log agent NAME out."))
agent_group.add_command(
    _agent_command("break", "Put agent NAME on a break (--reason).")
)
agent_group.add_command(
    _agent_command("available", "End agent NAME's break (available again).")
)


def add_acd_commands(group: click.Group) -> None:
    """Put ``queues``, ``agents`` and ``agent`` on the ``ccswitch`` command group."""
    group.add_command(queues_command)
    group.add_command(agents_command)
    group.add_command(agent_group)
