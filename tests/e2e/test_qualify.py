"""OPTIONS keep-alives ("qualify") against a scripted UDP phone.

A phone registers, answers the registrar's first OPTIONS pings, falls silent, then
answers again. The switch must ping the address the REGISTER came from (not the
Contact's host and port: a phone behind NAT is only reachable through the source
address) with the Contact as the Request-URI, mark the contact unreachable after
``qualify_timeout_count`` unanswered pings in a row and reachable again at the next
answer. There is no API for reachability yet, so the log lines are the evidence.

T1 is lowered to 50 ms so that an unanswered OPTIONS times out (timer F = 64*T1,
RFC 3261 section 17.1.2.2) in 3.2 s instead of 32 s.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from switch.sip.message import Request
from tests.e2e.phone import ScriptedPhone, trace_entries
from tests.harness import LOOPBACK, SwitchProcess, demo_config, free_port

QUALIFY_INTERVAL = 1.0
TIMEOUT_COUNT = 2
T1 = 0.05
TIMER_F = 64 * T1
# Two pings must time out after the phone falls silent, plus slack for a busy box.
UNREACHABLE_WITHIN = QUALIFY_INTERVAL * TIMEOUT_COUNT + TIMER_F + 8.0
REACHABLE_WITHIN = QUALIFY_INTERVAL * 3 + 5.0

UNREACHABLE_LINE = "stopped answering OPTIONS"
REACHABLE_LINE = "is reachable again"


@pytest.fixture
def qualifying_switch(tmp_path: Path) -> Iterator[SwitchProcess]:
    config = demo_config(
        tmp_path,
        qualify_interval=str(QUALIFY_INTERVAL),
        qualify_timeout_count=str(TIMEOUT_COUNT),
        t1=str(T1),
    )
    process = SwitchProcess(workdir=tmp_path, config=config).start()
    try:
        yield process
    finally:
        process.stop()


def _next_options(phone: ScriptedPhone, deadline: float) -> Request | None:
    """The next OPTIONS from the switch (kept in the inbox or newly received)."""
    while True:
        if phone.inbox:
            request = phone.inbox.popleft()
            if request.method == "OPTIONS":
                return request
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        message = phone.receive(left)
        if isinstance(message, Request):
            phone.inbox.append(message)


def _serve_until(
    phone: ScriptedPhone,
    switch: SwitchProcess,
    line: str,
    *,
    answer: bool,
    within: float,
) -> list[Request]:
    """Answer (or ignore) every OPTIONS until ``line`` is in the log; return them."""
    deadline = time.monotonic() + within
    seen: list[Request] = []
    while line not in switch.log():
        request = _next_options(phone, min(deadline, time.monotonic() + 0.5))
        if request is not None:
            seen.append(request)
            if answer:
                phone.answer(request)
        if time.monotonic() > deadline:
            pytest.fail(
                f"{line!r} not logged within {within}s:\n{switch.log()[-3000:]}"
            )
    return seen


def test_silent_phone_is_marked_unreachable_then_reachable(
    qualifying_switch: SwitchProcess,
) -> None:
    switch = qualifying_switch
    contact_port = free_port()
    # Something bound at the Contact's port, to prove nothing is sent there.
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as contact_sock,
        ScriptedPhone(
            server_port=switch.port,
            user="1001",
            password="demo1001",
            contact_port=contact_port,
        ) as phone,
    ):
        contact_sock.bind((LOOPBACK, contact_port))
        contact_sock.setblocking(False)
        outcome = phone.register(expires=300)
        assert outcome.final.status == 200
        contact, source = phone.contact, f"{LOOPBACK}:{phone.local_port}"
        assert contact == f"sip:1001@{LOOPBACK}:{contact_port}"

        # Answer the first pings: each comes to the REGISTER's source address with
        # the Contact as Request-URI (RFC 3261 section 10.3 step 7 binds the Contact).
        answered: list[Request] = []
        deadline = time.monotonic() + QUALIFY_INTERVAL * 3 + 3.0
        while len(answered) < 2:
            request = _next_options(phone, deadline)
            assert request is not None, f"no OPTIONS ping:\n{switch.log()[-3000:]}"
            assert str(request.uri) == contact
            phone.answer(request)
            answered.append(request)
        assert len({request.top_via.branch for request in answered}) == 2
        assert UNREACHABLE_LINE not in switch.log()

        # Fall silent: after TIMEOUT_COUNT unanswered pings it is unreachable.
        silent_since = time.monotonic()
        ignored = _serve_until(
            phone, switch, UNREACHABLE_LINE, answer=False, within=UNREACHABLE_WITHIN
        )
        took = time.monotonic() - silent_since
        assert took >= TIMER_F, "marked unreachable before any ping could time out"
        # Timer E retransmits an unanswered OPTIONS (section 17.1.2.2), same branch.
        branches = [request.top_via.branch for request in ignored]
        assert len(branches) > len(set(branches)) >= TIMEOUT_COUNT

        # Answer again: the next answered ping makes it reachable.
        _serve_until(
            phone, switch, REACHABLE_LINE, answer=True, within=REACHABLE_WITHIN
        )

        try:
            stray = contact_sock.recv(65535)
        except BlockingIOError:
            stray = b""
        assert stray == b"", "the switch sent to the Contact instead of the source"

    log = switch.log()
    assert log.index(UNREACHABLE_LINE) < log.index(REACHABLE_LINE)
    assert f"1001 at {contact} {UNREACHABLE_LINE}" in log

    # Every OPTIONS on the wire went to the address the REGISTER came from.
    entries = trace_entries(switch.trace())
    register_sources = {
        entry.remote
        for entry in entries
        if entry.direction == "recv" and entry.start_line.startswith("REGISTER ")
    }
    options_targets = {
        entry.remote
        for entry in entries
        if entry.direction == "sent" and entry.start_line.startswith("OPTIONS ")
    }
    assert register_sources == {source}
    assert options_targets == {source}
