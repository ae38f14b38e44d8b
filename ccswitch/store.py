"""The embedded store: one SQLite file (aiosqlite) for everything that must persist.

Registrations and call detail records (CDRs: ``calls`` and ``legs``) live here; queue
logs and callbacks join later as new migrations. The schema is versioned with SQLite's
``user_version`` and upgraded step by step at start-up, so an old database file is
never silently misread. WAL mode keeps writers from blocking readers (the CLI can read
live statistics and CDRs while the switch writes).

Every statement runs as ``async with db.execute(...)``, writes too, so that its cursor
is closed in aiosqlite's database thread. A cursor merely dropped is freed later in
the event loop's thread, and freeing resets the statement it last ran; SQLite's cache
may meanwhile have handed that very statement to the next write of the same SQL, which
then fails with ``InterfaceError: bad parameter or other API misuse``. Under load
(IVR steps and CDRs written back to back) that lost about one batch in 1500 calls.
"""

from __future__ import annotations

import json
import logging
import operator
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import aiosqlite

from ivr.record import IvrStep
from switch.cdr import CallRecord, LegRecord
from switch.registrar import Binding

logger = logging.getLogger(__name__)

#: Each entry upgrades the schema from version ``index`` to ``index + 1``.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE bindings (
        user          TEXT NOT NULL,
        contact       TEXT NOT NULL,
        expires_at    REAL NOT NULL,
        q             REAL NOT NULL,
        call_id       TEXT NOT NULL,
        cseq          INTEGER NOT NULL,
        source        TEXT NOT NULL,
        user_agent    TEXT,
        registered_at REAL NOT NULL,
        reachable     INTEGER NOT NULL,
        PRIMARY KEY (user, contact)
    );
    """,
    # 2: call detail records (issue 4), written by switch.cdr.CdrRecorder. Times are
    # wall-clock epoch seconds; NULL means "did not happen" or "not known".
    """
    CREATE TABLE calls (
        call_id      TEXT PRIMARY KEY,
        sip_call_id  TEXT,
        started_at   REAL,
        ring_at      REAL,
        answered_at  REAL,
        ended_at     REAL,
        caller       TEXT,
        called       TEXT,
        source       TEXT,
        trunk        TEXT,
        user         TEXT,
        route_kind   TEXT,
        route_target TEXT,
        callee       TEXT,
        status       INTEGER,
        reason       TEXT,
        cause        INTEGER,
        hangup_by    TEXT,
        duration     REAL,
        answered     INTEGER
    );
    CREATE INDEX calls_started_at ON calls (started_at);
    CREATE TABLE legs (
        leg_id       TEXT PRIMARY KEY,
        call_id      TEXT NOT NULL,
        role         TEXT,
        sip_call_id  TEXT,
        peer         TEXT,
        started_at   REAL,
        ring_at      REAL,
        early_media  INTEGER,
        answered_at  REAL,
        codec        TEXT,
        ended_at     REAL,
        status       INTEGER,
        cause        INTEGER,
        hangup_by    TEXT,
        packets_lost INTEGER,
        jitter_ms    REAL,
        mos          REAL
    );
    CREATE INDEX legs_call_id ON legs (call_id);
    CREATE INDEX legs_started_at ON legs (started_at);
    """,
    # 3: the ACD (issue 6), written by acd.log: the queue log (acd/records.py), the
    # live snapshot of agents and queues for the CLI, and commands from the CLI
    # (login, logout, break) that the running switch picks up.
    """
    CREATE TABLE queue_log (
        at        REAL NOT NULL,
        event     TEXT NOT NULL,
        queue     TEXT NOT NULL,
        caller_id TEXT NOT NULL,
        agent     TEXT NOT NULL,
        wait      REAL,
        talk      REAL,
        wrap_up   REAL,
        detail    TEXT NOT NULL
    );
    CREATE INDEX queue_log_at ON queue_log (at);
    CREATE TABLE acd_agents (
        name       TEXT PRIMARY KEY,
        status     TEXT NOT NULL,
        reason     TEXT,
        state      TEXT NOT NULL,
        since      REAL NOT NULL,
        queues     TEXT NOT NULL,
        calls      INTEGER NOT NULL,
        talk_time  REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE acd_queues (
        name         TEXT PRIMARY KEY,
        waiting      INTEGER NOT NULL,
        longest_wait REAL NOT NULL,
        expected_wait REAL,
        updated_at   REAL NOT NULL
    );
    CREATE TABLE acd_commands (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        agent      TEXT NOT NULL,
        action     TEXT NOT NULL,
        reason     TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 4: the IVR path of each call (issue 5), written by ivr.record.IvrStepRecorder:
    # one row per step (entered, node, digits, data_dip, exited), keyed by the CDR's
    # call_id, so reports can see where callers leave a flow.
    """
    CREATE TABLE ivr_steps (
        call_id TEXT NOT NULL,
        seq     INTEGER NOT NULL,
        at      REAL NOT NULL,
        flow    TEXT NOT NULL,
        node    TEXT NOT NULL,
        kind    TEXT NOT NULL,
        detail  TEXT NOT NULL,
        PRIMARY KEY (call_id, seq)
    );
    CREATE INDEX ivr_steps_flow_node ON ivr_steps (flow, node);
    """,
)

# CDR columns, in table order; each is a field of CallRecord / LegRecord.
CALL_COLUMNS = tuple(f.name for f in fields(CallRecord) if f.name != "legs")
LEG_COLUMNS = tuple(f.name for f in fields(LegRecord))
_BOOLEAN_COLUMNS = frozenset({"answered", "early_media"})


def _upsert(table: str, columns: tuple[str, ...]) -> str:
    """INSERT that, on a known key, fills columns but never blanks a stored one."""
    key = columns[0]
    updates = ", ".join(
        f"{c} = COALESCE(excluded.{c}, {table}.{c})" for c in columns[1:]
    )
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT({key}) DO UPDATE SET {updates}"
    )


_CALL_UPSERT = _upsert("calls", CALL_COLUMNS)
_LEG_UPSERT = _upsert("legs", LEG_COLUMNS)


def _row(record: CallRecord | LegRecord, columns: tuple[str, ...]) -> tuple[Any, ...]:
    # sqlite3 stores a bool as the integer 1 or 0 (bool is an int), which is what the
    # INTEGER columns hold; attrgetter reads every column in one C call.
    return _GETTERS[columns](record)  # type: ignore[no-any-return]


_GETTERS: dict[tuple[str, ...], Any] = {
    columns: operator.attrgetter(*columns) for columns in (CALL_COLUMNS, LEG_COLUMNS)
}


def _record(cls: type[Any], columns: tuple[str, ...], row: Sequence[Any]) -> Any:
    values = dict(zip(columns, row, strict=True))
    for column in _BOOLEAN_COLUMNS & values.keys():
        if values[column] is not None:
            values[column] = bool(values[column])
    return cls(**values)


class StoreError(Exception):
    """The database file cannot be used (newer schema, not a database)."""


class Store:
    """The switch's SQLite database.

    :param path: file name; ``":memory:"`` for tests.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        try:
            self._db = await aiosqlite.connect(self.path)
            async with self._db.execute("PRAGMA journal_mode=WAL"):
                pass  # closes the cursor in the database thread (module docstring)
            async with self._db.execute("PRAGMA synchronous=NORMAL"):
                pass  # closes the cursor in the database thread (module docstring)
            await self._migrate()
        except aiosqlite.DatabaseError as exc:
            await self.close()
            raise StoreError(f"{self.path}: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        logger.info("store open at %s", self.path)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def _migrate(self) -> None:
        async with self.db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this ccswitch "
                f"({len(MIGRATIONS)})"
            )
        for step in range(version, len(MIGRATIONS)):
            async with self.db.executescript(MIGRATIONS[step]):
                pass  # closes the cursor in the database thread (module docstring)
            async with self.db.execute(f"PRAGMA user_version = {step + 1}"):
                pass  # closes the cursor in the database thread (module docstring)
            await self.db.commit()
            logger.info("store schema upgraded to version %d", step + 1)

    # -- bindings (switch.registrar.BindingStore) ----------------------------------

    async def load_bindings(self) -> list[Binding]:
        async with self.db.execute(
            "SELECT user, contact, expires_at, q, call_id, cseq, source, user_agent,"
            " registered_at, reachable FROM bindings"
        ) as cursor:
            rows = await cursor.fetchall()
        bindings = []
        for row in rows:
            transport, host, port = json.loads(row[6])
            bindings.append(
                Binding(
                    user=row[0],
                    contact=row[1],
                    expires_at=row[2],
                    q=row[3],
                    call_id=row[4],
                    cseq=row[5],
                    source=(transport, host, int(port)),
                    user_agent=row[7],
                    registered_at=row[8],
                    reachable=bool(row[9]),
                )
            )
        return bindings

    async def save_binding(self, binding: Binding) -> None:
        async with self.db.execute(
            "INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                binding.user,
                binding.contact,
                binding.expires_at,
                binding.q,
                binding.call_id,
                binding.cseq,
                json.dumps(list(binding.source)),
                binding.user_agent,
                binding.registered_at,
                int(binding.reachable),
            ),
        ):
            pass  # closes the cursor in the database thread (module docstring)
        await self.db.commit()

    async def delete_binding(self, user: str, contact: str) -> None:
        async with self.db.execute(
            "DELETE FROM bindings WHERE user = ? AND contact = ?", (user, contact)
        ):
            pass  # closes the cursor in the database thread (module docstring)
        await self.db.commit()

    # -- call detail records (switch.cdr.CdrStore) ----------------------------------

    async def save_cdrs(
        self, calls: Sequence[CallRecord], legs: Sequence[LegRecord]
    ) -> None:
        """Insert or complete CDR rows, all in one transaction."""
        async with self.db.executemany(
            _CALL_UPSERT, [_row(call, CALL_COLUMNS) for call in calls]
        ):
            pass  # closes the cursor in the database thread (module docstring)
        async with self.db.executemany(
            _LEG_UPSERT, [_row(leg, LEG_COLUMNS) for leg in legs]
        ):
            pass  # closes the cursor in the database thread (module docstring)
        await self.db.commit()

    async def recent_calls(self, limit: int = 20) -> list[CallRecord]:
        """The ``limit`` most recently started calls, newest first, legs attached."""
        async with self.db.execute(
            f"SELECT {', '.join(CALL_COLUMNS)} FROM calls"
            " ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (limit,),
        ) as cursor:
            rows = await cursor.fetchall()
        calls: list[CallRecord] = [
            _record(CallRecord, CALL_COLUMNS, row) for row in rows
        ]
        for call in calls:
            call.legs = [leg.leg_id for leg in await self.call_legs(call.call_id)]
        return calls

    async def call_legs(self, call_id: str) -> list[LegRecord]:
        """The legs of one call, in the order they started."""
        async with self.db.execute(
            f"SELECT {', '.join(LEG_COLUMNS)} FROM legs WHERE call_id = ?"
            " ORDER BY started_at, rowid",
            (call_id,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_record(LegRecord, LEG_COLUMNS, row) for row in rows]

    async def calls_between(self, start: float, end: float) -> list[CallRecord]:
        """Calls started in [start, end), oldest first (for reports)."""
        async with self.db.execute(
            f"SELECT {', '.join(CALL_COLUMNS)} FROM calls"
            " WHERE started_at >= ? AND started_at < ? ORDER BY started_at, rowid",
            (start, end),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_record(CallRecord, CALL_COLUMNS, row) for row in rows]

    # -- IVR steps (ivr.record.IvrStepStore) ----------------------------------------

    async def save_ivr_steps(self, steps: Sequence[IvrStep]) -> None:
        """Store one call's IVR steps (a repeated step replaces the stored one)."""
        async with self.db.executemany(
            "INSERT OR REPLACE INTO ivr_steps VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(s.call_id, s.seq, s.at, s.flow, s.node, s.kind, s.detail) for s in steps],
        ):
            pass  # closes the cursor in the database thread (module docstring)
        await self.db.commit()

    async def ivr_steps(self, call_id: str) -> list[IvrStep]:
        """The IVR steps of one call, in order."""
        async with self.db.execute(
            "SELECT call_id, seq, at, flow, node, kind, detail FROM ivr_steps"
            " WHERE call_id = ? ORDER BY seq",
            (call_id,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [
            IvrStep(
                call_id=r[0],
                seq=r[1],
                at=r[2],
                flow=r[3],
                node=r[4],
                kind=r[5],
                detail=r[6],
            )
            for r in rows
        ]
