"""The ACD end to end: SIPp callers from the demo trunk, registered SIPp agents.

A real ``ccswitch serve`` on loopback runs the demo configuration (agents 1001-1005
of ``support`` with auto_login), edited per test. Callers are one SIPp client
placing calls to 4001; agents are SIPp phones registered as 1001-1005 answering in
server mode after a random delay. What happened is read back from the switch's
SQLite queue log after it stopped (the service flushes it on stop): order of
offers, one outcome per caller, wrap-up gaps, no-answer breaks, the skilled agent.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import SwitchProcess, run_sipp
from tests.sipp.calls import Callee, PythonPhone, free_block, sipp_ok, start_switch

pytestmark = pytest.mark.sipp

WRAP_UP = 2.0
CALLERS = 20
AGENTS = ("1001", "1002", "1003", "1004", "1005")


def agent(
    switch: SwitchProcess,
    workdir: Path,
    user: str,
    scenario: str,
    calls: int,
    *args: str,
) -> Callee:
    phone = Callee(switch, user, scenario, workdir, args=args, calls=calls, agent=True)
    return phone.start()


def edit_support(**values: str) -> Callable[[str], str]:
    """Rewrite keys of the demo's support queue (the first [[queues]] table)."""

    def edit(text: str) -> str:
        head, _, tail = text.partition('[[queues]]\nname = "support"\n')
        block, sep, rest = tail.partition("\n[[queues]]")
        lines = block.splitlines()
        for key, value in values.items():
            found = [i for i, line in enumerate(lines) if line.startswith(f"{key} = ")]
            if found:
                lines[found[0]] = f"{key} = {value}"
            else:
                lines.append(f"{key} = {value}")
        return head + '[[queues]]\nname = "support"\n' + "\n".join(lines) + sep + rest

    return edit


def no_crm(text: str) -> str:
    """The IVR's demo CRM binds a fixed port: off, so switches can run side by side."""
    return re.sub(r'(?m)^crm_listen = ".*"$', 'crm_listen = ""', text)


def acd_switch(
    workdir: Path, edit: Callable[[str], str] | None = None
) -> SwitchProcess:
    """``ccswitch serve`` on the demo configuration, ``edit`` applied, CRM off."""
    return start_switch(workdir, edit=lambda text: no_crm(edit(text) if edit else text))


def queue_log(switch: SwitchProcess) -> list[sqlite3.Row]:
    with sqlite3.connect(switch.db) as db:
        db.row_factory = sqlite3.Row
        return list(db.execute("SELECT * FROM queue_log ORDER BY at, rowid"))


def callers(
    switch: SwitchProcess, workdir: Path, number: str, count: int, rate: str = "4"
) -> object:
    return run_sipp(
        "queue-caller-answered-by-agent-gets-bye.xml",
        switch.port,
        "-s",
        number,
        "-m",
        str(count),
        "-r",
        rate,
        "-l",
        str(count),
        "-mp",
        str(free_block(4)),
        workdir=workdir,
        local_port=free_block(1),
        timeout=120,
    )


@pytest.fixture
def phones() -> Iterator[list[Callee]]:
    started: list[Callee] = []
    try:
        yield started
    finally:
        for phone in started:
            phone.stop()


def _one_outcome_each(rows: list[sqlite3.Row]) -> dict[str, str]:
    outcomes: dict[str, list[str]] = defaultdict(list)
    entered = [r["caller_id"] for r in rows if r["event"] == "enter"]
    for row in rows:
        if row["event"] in (
            "connect",
            "abandon",
            "exit_timeout",
            "exit_admission",
            "exit_key",
            "transfer",
            "callback_completed",
            "callback_failed",
        ):
            outcomes[row["caller_id"]].append(row["event"])
    assert sorted(outcomes) == sorted(entered)
    assert all(len(v) == 1 for v in outcomes.values()), outcomes
    return {k: v[0] for k, v in outcomes.items()}


def test_twenty_callers_five_agents_answered_in_order_with_wrap_up(
    tmp_path: Path, phones: list[Callee]
) -> None:
    switch = acd_switch(
        tmp_path,
        edit=edit_support(wrap_up=str(WRAP_UP), announce_interval="4.0"),
    )
    try:
        for user in AGENTS:
            phones.append(
                agent(
                    switch,
                    tmp_path,
                    user,
                    "agent-answers-after-random-delay-then-hangs-up.xml",
                    CALLERS,
                    "-set",
                    "talk_ms",
                    "2000",
                )
            )
        result = callers(switch, tmp_path, "4001", CALLERS)
        sipp_ok(result)  # type: ignore[arg-type]
    finally:
        switch.stop()
    # The service checks the distributor's invariants after every step at DEBUG.
    assert "acd invariant broken" not in switch.log()
    assert "acd step failed" not in switch.log()
    rows = [r for r in queue_log(switch) if r["queue"] in ("support", "")]
    outcomes = _one_outcome_each(rows)
    assert len(outcomes) == CALLERS
    assert set(outcomes.values()) == {"connect"}
    # Offered in arrival order (each caller's first offer), nobody re-offered.
    entered = [r["caller_id"] for r in rows if r["event"] == "enter"]
    first_offer: list[str] = []
    for row in rows:
        if row["event"] == "offered" and row["caller_id"] not in first_offer:
            first_offer.append(row["caller_id"])
    assert first_offer == entered
    # Every agent: offer, connect, complete, then at least WRAP_UP before the next.
    by_agent: dict[str, list[sqlite3.Row]] = defaultdict(list)
    for row in rows:
        if row["agent"] and row["event"] in ("offered", "connect", "complete"):
            by_agent[row["agent"]].append(row)
    assert set(by_agent) <= set(AGENTS) and len(by_agent) >= 3
    for name, events in by_agent.items():
        kinds = [r["event"] for r in events]
        assert kinds == ["offered", "connect", "complete"] * (len(kinds) // 3), name
        for done, nxt in zip(events[2::3], events[3::3], strict=False):
            assert nxt["at"] - done["at"] >= WRAP_UP - 0.05, (
                name,
                done["at"],
                nxt["at"],
            )


def test_ring_no_answer_puts_agent_on_break_and_requeues(
    tmp_path: Path, phones: list[Callee]
) -> None:
    switch = acd_switch(
        tmp_path, edit=edit_support(ring_timeout="2.0", strategy='"longest-idle"')
    )
    try:
        # 1001 registers first (longest idle) and never answers; 1002 answers.
        phones.append(
            agent(switch, tmp_path, "1001", "callee-rings-until-cancelled.xml", 1)
        )
        phones.append(
            agent(
                switch,
                tmp_path,
                "1002",
                "agent-answers-after-random-delay-then-hangs-up.xml",
                1,
                "-set",
                "talk_ms",
                "1000",
            )
        )
        sipp_ok(callers(switch, tmp_path, "4001", 1))  # type: ignore[arg-type]
        assert phones[0].wait(10) == 0, phones[0].errors()
    finally:
        switch.stop()
    rows = queue_log(switch)
    events = [(r["event"], r["agent"]) for r in rows if r["caller_id"]]
    assert events == [
        ("enter", ""),
        ("offered", "1001"),
        ("no_answer", "1001"),
        ("offered", "1002"),
        ("connect", "1002"),
        ("complete", "1002"),
    ]
    pause = [r for r in rows if r["event"] == "agent_pause" and r["agent"] == "1001"]
    assert pause and pause[0]["detail"] == "no answer"
    with sqlite3.connect(switch.db) as db:
        status, reason = db.execute(
            "SELECT status, reason FROM acd_agents WHERE name = '1001'"
        ).fetchone()
    assert (status, reason) == ("on break", "no answer")


SKILLS_QUEUE = """
[[queues]]
name = "skilled"
strategy = "skills"
skills = { de = 3 }
wrap_up = 0.0
ring_timeout = 5.0

[[dialplan]]
pattern = "4003"
to = "queue:skilled"
"""


def test_skills_queue_routes_to_the_skilled_agent(
    tmp_path: Path, phones: list[Callee]
) -> None:
    def edit(text: str) -> str:
        # 1001 speaks a little German, 1002 well: both serve the skills queue.
        text = text.replace(
            'name = "1001"\nusers = ["1001"]\nqueues = ["support"]',
            'name = "1001"\nusers = ["1001"]\nqueues = ["support", "skilled"]\n'
            "skills = { de = 1 }",
        ).replace(
            'name = "1002"\nusers = ["1002"]\nqueues = ["support"]',
            'name = "1002"\nusers = ["1002"]\nqueues = ["support", "skilled"]\n'
            "skills = { de = 5 }",
        )
        # The 4003 rule goes first among the rules; the queue at the end.
        queue, rule = SKILLS_QUEUE.split("\n[[dialplan]]")
        head, sep, rest = text.partition("\n[[dialplan]]\n")
        return head + "\n[[dialplan]]" + rule + "\n" + sep + rest + queue

    switch = acd_switch(tmp_path, edit=edit)
    try:
        for user in ("1001", "1002"):
            phones.append(
                agent(
                    switch,
                    tmp_path,
                    user,
                    "agent-answers-after-random-delay-then-hangs-up.xml",
                    2,
                    "-set",
                    "talk_ms",
                    "500",
                )
            )
        sipp_ok(callers(switch, tmp_path, "4003", 2, rate="1"))  # type: ignore[arg-type]
    finally:
        switch.stop()
    rows = [r for r in queue_log(switch) if r["queue"] == "skilled"]
    connects = [r["agent"] for r in rows if r["event"] == "connect"]
    assert connects == ["1002", "1002"]
    assert not [r for r in rows if r["event"] == "offered" and r["agent"] == "1001"]


def _agent_row(switch: SwitchProcess, name: str) -> tuple[str, str | None]:
    with sqlite3.connect(switch.db) as db:
        row = db.execute(
            "SELECT status, reason FROM acd_agents WHERE name = ?", (name,)
        ).fetchone()
    return (row[0], row[1]) if row else ("", None)


def _until(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_feature_codes_from_the_phone_break_and_log_out(tmp_path: Path) -> None:
    switch = acd_switch(tmp_path)
    try:
        assert _until(lambda: _agent_row(switch, "1003")[0] == "logged out")
        # The phone registers (SIPp) and calls from the same port (the switch
        # challenges calls from a registered phone's address, not the trunk's).
        port = free_block(1)
        sipp_ok(
            run_sipp(
                "phone-register-digest-accepted.xml",
                switch.port,
                "-s",
                "1003",
                "-au",
                "1003",
                "-ap",
                "demo1003",
                "-m",
                "1",
                workdir=tmp_path,
                local_port=port,
                timeout=10,
            )
        )
        # auto_login: available as soon as the phone registered.
        assert _until(lambda: _agent_row(switch, "1003") == ("available", None))
        for code, expected in (
            ("*43", ("on break", "break")),
            ("*44", ("available", None)),
            ("*42", ("logged out", None)),
            ("*41", ("available", None)),
        ):
            phone = PythonPhone(
                port=port, switch_port=switch.port, user="1003", password="demo1003"
            )
            try:
                assert phone.call(code, free_block(2)) == 200, phone.statuses
                phone.wait_for_bye()  # the app confirms with a beep and hangs up
            finally:
                phone.close()
            assert _until(lambda e=expected: _agent_row(switch, "1003") == e), code
    finally:
        switch.stop()
    events = [r["event"] for r in queue_log(switch) if r["agent"] == "1003"]
    assert events == [
        "agent_login",
        "agent_pause",
        "agent_unpause",
        "agent_logout",
        "agent_login",
    ]


def _rows_until(
    switch: SwitchProcess, check: Callable[[list[sqlite3.Row]], bool], seconds: float
) -> list[sqlite3.Row]:
    deadline = time.monotonic() + seconds
    rows: list[sqlite3.Row] = []
    while time.monotonic() < deadline:
        rows = queue_log(switch)
        if check(rows):
            return rows
        time.sleep(0.3)
    return rows


def test_admission_offers_a_callback_and_the_callback_connects(
    tmp_path: Path, phones: list[Callee]
) -> None:
    customer_port = free_block(1)

    def edit(text: str) -> str:
        text = edit_support(
            wrap_up="1.0", callback_retries="2", callback_retry_interval="1.0"
        )(text)
        text = text.replace("max_expected_wait = 600.0", "max_expected_wait = 30.0")
        # the demo trunk's carrier is a SIPp phone playing the customer
        return text.replace("port = 5090\n", f"port = {customer_port}\n", 1)

    switch = acd_switch(tmp_path, edit=edit)
    customer: list[object] = []
    customer_thread = threading.Thread(
        target=lambda: customer.append(
            run_sipp(
                "callee-answers-waits-for-bye.xml",
                switch.port,
                "-m",
                "1",
                "-set",
                "ring_ms",
                "200",
                "-key",
                "codec",
                "0",
                "-key",
                "codec_name",
                "PCMU",
                workdir=tmp_path,
                local_port=customer_port,
                timeout=60,
            )
        )
    )
    customer_thread.start()
    try:
        phones.append(
            agent(
                switch,
                tmp_path,
                "1001",
                "agent-answers-after-random-delay-then-hangs-up.xml",
                2,
                "-set",
                "talk_ms",
                "4000",
            )
        )
        first: list[object] = []
        caller_a = threading.Thread(
            target=lambda: first.append(callers(switch, tmp_path, "4001", 1))
        )
        caller_a.start()
        try:
            # A talks to 1001; now the expected wait for a newcomer is one handle
            # time (180 s before any call completed) > 30 s: B is offered a callback.
            rows = _rows_until(
                switch, lambda rs: any(r["event"] == "connect" for r in rs), 15
            )
            assert any(r["event"] == "connect" for r in rows)
            result = run_sipp(
                "queue-caller-presses-1-for-callback-gets-bye.xml",
                switch.port,
                "-s",
                "4001",
                "-m",
                "1",
                "-mp",
                str(free_block(4)),
                workdir=tmp_path,
                local_port=free_block(1),
                timeout=40,
            )
            sipp_ok(result)
        finally:
            caller_a.join(60)
        sipp_ok(first[0])  # type: ignore[arg-type]
        # When 1001 is free again the callback rings it, then the customer through
        # the trunk; 1001 hangs up after talking and the customer gets the BYE.
        customer_thread.join(60)
        assert customer, "the customer SIPp did not finish"
        sipp_ok(customer[0])  # type: ignore[arg-type]
        rows = _rows_until(
            switch,
            lambda rs: any(r["event"] == "complete" for r in rs[-3:]),
            20,
        )
    finally:
        switch.stop()
        customer_thread.join(5)
    rows = queue_log(switch)
    callback = [r for r in rows if r["event"] == "callback_requested"]
    assert len(callback) == 1
    virtual = callback[0]["caller_id"]
    events = [r["event"] for r in rows if r["caller_id"] == virtual]
    # The virtual caller kept a place, got 1001 reserved when its turn came, was
    # dialled and connected; its single outcome is the completed callback.
    assert events[:2] == ["enter", "callback_requested"], events
    assert "offered" in events and "callback_completed" in events, events
    assert "callback_failed" not in events, events
    assert events[-1] == "complete", events
    # the INVITE to the customer went out through the trunk with the number
    trace = switch.trace()
    assert f"INVITE sip:+74951234567@127.0.0.1:{customer_port}" in trace


def test_ring_all_rings_every_agent_first_answer_wins(
    tmp_path: Path, phones: list[Callee]
) -> None:
    switch = acd_switch(tmp_path, edit=edit_support(strategy='"ring-all"'))
    try:
        # 1001 answers; 1002 rings until the switch CANCELs it (its scenario
        # expects exactly that, so its exit status proves the CANCEL came).
        phones.append(
            agent(
                switch,
                tmp_path,
                "1001",
                "agent-answers-after-random-delay-then-hangs-up.xml",
                1,
                "-set",
                "talk_ms",
                "1000",
            )
        )
        phones.append(
            agent(switch, tmp_path, "1002", "callee-rings-until-cancelled.xml", 1)
        )
        sipp_ok(callers(switch, tmp_path, "4001", 1))  # type: ignore[arg-type]
        assert phones[1].wait(10) == 0, phones[1].errors()
    finally:
        switch.stop()
    rows = [r for r in queue_log(switch) if r["caller_id"]]
    offered = [r for r in rows if r["event"] == "offered"]
    assert sorted(r["agent"] for r in offered) == ["1001", "1002"]
    assert offered[0]["at"] == offered[1]["at"]  # one offer to both at once
    assert [(r["event"], r["agent"]) for r in rows if r["event"] == "connect"] == [
        ("connect", "1001")
    ]
    assert not [r for r in rows if r["event"] == "no_answer"]
    assert _agent_row(switch, "1002") == ("available", None)  # no break in ring-all
