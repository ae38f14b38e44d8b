"""The queue log in SQLite, the live snapshot for the CLI, and CLI commands.

Tables (``ccswitch/store.py`` migration 3): ``queue_log`` holds every
:class:`~acd.records.LogRecord`; ``acd_agents`` and ``acd_queues`` hold the running
switch's view, rewritten by the service every second or so; ``acd_commands`` is how
``ccswitch agent login|logout|break`` reaches the running switch (a CLI process writes
a row, the service applies and deletes it). The CLI reads the same file (WAL mode
lets it read while the switch writes), so no control socket is needed.

Writes run as ``async with db.execute(...)`` so that their cursors are closed in the
database thread; ``ccswitch/store.py`` says why (a dropped cursor can break the next
write of the same statement).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aiosqlite

from acd.agent import Agent
from acd.records import LogRecord, QueueEvent

_COLUMNS = (
    "at",
    "event",
    "queue",
    "caller_id",
    "agent",
    "wait",
    "talk",
    "wrap_up",
    "detail",
)
#: Actions accepted in ``acd_commands``.
COMMAND_ACTIONS = ("login", "logout", "break", "available")


@dataclass(frozen=True, kw_only=True, slots=True)
class Command:
    id: int
    agent: str
    action: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueSnapshot:
    name: str
    waiting: int
    longest_wait: float
    expected_wait: float | None


class QueueLog:
    """Reads and writes the ACD tables on an open aiosqlite connection."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def append(self, records: Sequence[LogRecord]) -> None:
        if not records:
            return
        async with self.db.executemany(
            f"INSERT INTO queue_log ({', '.join(_COLUMNS)}) VALUES"
            f" ({', '.join('?' for _ in _COLUMNS)})",
            [
                (
                    r.at,
                    r.event.value,
                    r.queue,
                    r.caller_id,
                    r.agent,
                    r.wait,
                    r.talk,
                    r.wrap_up,
                    r.detail,
                )
                for r in records
            ],
        ):
            pass  # closes the cursor in the database thread (module docstring)
        await self.db.commit()

    async def between(self, start: float, end: float) -> list[LogRecord]:
        """Records with ``at`` in [start, end), oldest first."""
        async with self.db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM queue_log"
            " WHERE at >= ? AND at < ? ORDER BY at, rowid",
            (start, end),
        ) as cursor:
            rows = await cursor.fetchall()
        return [
            LogRecord(
                at=row[0],
                event=QueueEvent(row[1]),
                queue=row[2],
                caller_id=row[3],
                agent=row[4],
                wait=row[5],
                talk=row[6],
                wrap_up=row[7],
                detail=row[8],
            )
            for row in rows
        ]

    async def save_snapshot(
        self, agents: Iterable[Agent], queues: Iterable[QueueSnapshot], now: float
    ) -> None:
        async with self.db.executemany(
            "INSERT OR REPLACE INTO acd_agents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    a.name,
                    a.status.value,
                    a.break_reason,
                    a.state.value,
                    a.state_since,
                    json.dumps([m.queue for m in a.memberships]),
                    a.calls_taken,
                    a.talk_time,
                    now,
                )
                for a in agents
            ],
        ):
            pass  # closes the cursor in the database thread (module docstring)
        async with self.db.executemany(
            "INSERT OR REPLACE INTO acd_queues VALUES (?, ?, ?, ?, ?)",
            [(q.name, q.waiting, q.longest_wait, q.expected_wait, now) for q in queues],
        ):
            pass  # closes the cursor in the database thread (module docstring)
        await self.db.commit()

    async def agents(self) -> list[dict[str, object]]:
        async with self.db.execute(
            "SELECT name, status, reason, state, since, queues, calls, talk_time,"
            " updated_at FROM acd_agents ORDER BY name"
        ) as cursor:
            rows = await cursor.fetchall()
        keys = ("name", "status", "reason", "state", "since", "queues", "calls")
        result = []
        for row in rows:
            entry = dict(zip(keys, row[:7], strict=True))
            entry["queues"] = json.loads(row[5])
            entry["talk_time"] = row[7]
            entry["updated_at"] = row[8]
            result.append(entry)
        return result

    async def queues(self) -> list[QueueSnapshot]:
        async with self.db.execute(
            "SELECT name, waiting, longest_wait, expected_wait FROM acd_queues"
            " ORDER BY name"
        ) as cursor:
            rows = await cursor.fetchall()
        return [
            QueueSnapshot(
                name=r[0], waiting=r[1], longest_wait=r[2], expected_wait=r[3]
            )
            for r in rows
        ]

    async def add_command(self, agent: str, action: str, reason: str = "") -> None:
        if action not in COMMAND_ACTIONS:
            raise ValueError(f"unknown agent action {action!r}")
        async with self.db.execute(
            "INSERT INTO acd_commands (agent, action, reason, created_at)"
            " VALUES (?, ?, ?, ?)",
            (agent, action, reason, time.time()),
        ):
            pass  # closes the cursor in the database thread (module docstring)
        await self.db.commit()

    async def take_commands(self) -> list[Command]:
        """The pending commands, oldest first; they are deleted."""
        async with self.db.execute(
            "SELECT id, agent, action, reason FROM acd_commands ORDER BY id"
        ) as cursor:
            rows = list(await cursor.fetchall())
        if rows:
            async with self.db.execute(
                "DELETE FROM acd_commands WHERE id <= ?", (rows[-1][0],)
            ):
                pass  # closes the cursor in the database thread (module docstring)
            await self.db.commit()
        return [Command(id=r[0], agent=r[1], action=r[2], reason=r[3]) for r in rows]
