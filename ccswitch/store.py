"""The embedded store: one SQLite file (aiosqlite) for everything that must persist.

Registrations live here now; CDRs, queue logs and callbacks join later as new
migrations. The schema is versioned with SQLite's ``user_version`` and upgraded
step by step at start-up, so an old database file is never silently misread. WAL
mode keeps writers from blocking readers (the CLI can read live statistics while
the switch writes).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiosqlite

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
)


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
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=NORMAL")
            await self._migrate()
        except aiosqlite.DatabaseError as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
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
            await self.db.executescript(MIGRATIONS[step])
            await self.db.execute(f"PRAGMA user_version = {step + 1}")
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
        await self.db.execute(
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
        )
        await self.db.commit()

    async def delete_binding(self, user: str, contact: str) -> None:
        await self.db.execute(
            "DELETE FROM bindings WHERE user = ? AND contact = ?", (user, contact)
        )
        await self.db.commit()
