"""The SQLite store: schema migrations and binding persistence."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from ccswitch.store import MIGRATIONS, Store, StoreError
from ivr.record import IvrStep
from switch.cdr import CallRecord, LegRecord
from switch.registrar import Binding


def _binding(contact: str = "sip:1001@192.0.2.1:5062") -> Binding:
    return Binding(
        user="1001",
        contact=contact,
        expires_at=2e9,
        q=0.5,
        call_id="c",
        cseq=7,
        source=("TCP", "192.0.2.1", 40000),
        user_agent="ua",
        registered_at=1e9,
        reachable=False,
    )


async def test_bindings_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    await store.open()
    await store.save_binding(_binding())
    await store.save_binding(_binding("sip:1001@192.0.2.2:5062"))
    await store.delete_binding("1001", "sip:1001@192.0.2.2:5062")
    await store.close()

    again = Store(path)
    await again.open()
    [loaded] = await again.load_bindings()
    await again.close()
    assert loaded == _binding()


async def test_schema_version_is_recorded(tmp_path: Path) -> None:
    store = Store(tmp_path / "v.db")
    await store.open()
    await store.close()
    with sqlite3.connect(tmp_path / "v.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    store = Store(path)
    with pytest.raises(StoreError, match="newer than this ccswitch"):
        await store.open()
    await store.close()


async def test_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    store = Store(path)
    with pytest.raises(StoreError):
        await store.open()
    await store.close()


async def test_writes_side_by_side_lose_nothing(tmp_path: Path) -> None:
    """Many calls' IVR steps and CDRs written at once, as under a busy hour: a cursor
    dropped in the loop's thread used to reset the statement the next write of the
    same SQL had just been given (``InterfaceError``, a few batches in a thousand)."""
    store = Store(tmp_path / "s.db")
    await store.open()
    calls = 400
    try:
        writes = []
        for n in range(calls):
            call_id = f"C{n}"
            steps = [
                IvrStep(
                    call_id=call_id,
                    seq=seq,
                    at=float(seq),
                    flow="demo",
                    node=f"node{seq}",
                    kind="node",
                    detail="x" * 40,
                )
                for seq in range(1, 7)
            ]
            writes.append(store.save_ivr_steps(steps))
            writes.append(
                store.save_cdrs(
                    [CallRecord(call_id=call_id, started_at=float(n))],
                    [LegRecord(call_id=call_id, leg_id=f"L{n}", role="inbound")],
                )
            )
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        assert [o for o in outcomes if o is not None] == []
        async with store.db.execute("SELECT count(*) FROM ivr_steps") as cursor:
            assert await cursor.fetchone() == (6 * calls,)
        async with store.db.execute("SELECT count(*) FROM calls") as cursor:
            assert await cursor.fetchone() == (calls,)
    finally:
        await store.close()
