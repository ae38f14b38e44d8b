"""The distributor: offers, ring-no-answer, wrap-up, order, callbacks, the log."""

from __future__ import annotations

import pytest

from acd.agent import NO_ANSWER, AgentState, AgentStatus
from acd.distributor import AcdError, Leave
from acd.queue import CallerState, LeaveReason, QueueSettings
from acd.records import OUTCOMES, QueueEvent
from tests.acd.helpers import make, offers


def outcomes(acd, caller_id):  # type: ignore[no-untyped-def]
    return [
        r.event for r in acd.records if r.caller_id == caller_id and r.event in OUTCOMES
    ]


def test_callers_are_served_in_arrival_order_by_longest_idle_agent() -> None:
    acd = make(2)
    acd.agents["a2"].idle_since = -5.0  # a2 has been idle longer
    for number in range(3):
        acd.enter(f"c{number}", "support", 1.0 + number)
    first = offers(acd.poll(4.0))
    assert [(o.caller_id, o.agents) for o in first] == [
        ("c0", ("a2",)),
        ("c1", ("a1",)),
    ]
    assert acd.position("c2") == 1  # offered callers have their agent: not ahead
    assert acd.agents["a1"].state is AgentState.RESERVED
    # Nobody is offered a second call while reserved, ringing or talking.
    assert offers(acd.poll(5.0)) == []
    acd.ringing("c0", "a2", 5.0)
    assert acd.answered("c0", "a2", 6.0)
    assert offers(acd.poll(6.0)) == []
    assert acd.violations() == []


def test_an_agent_calling_a_queue_is_never_offered_their_own_call() -> None:
    """An agent who dials the queue from their own phone waits for another agent,
    also after a transfer to another queue; the next caller still gets them."""
    acd = make(2)
    acd.agents["a1"].idle_since = -5.0  # a1 would be first by longest idle
    acd.enter("own", "support", 1.0, calling_agent="a1")
    assert [(o.caller_id, o.agents) for o in offers(acd.poll(2.0))] == [
        ("own", ("a2",))
    ]
    acd.enter("next", "support", 3.0)
    assert [(o.caller_id, o.agents) for o in offers(acd.poll(3.0))] == [
        ("next", ("a1",))
    ]

    alone = make(1)
    alone.enter("own", "support", 1.0, calling_agent="a1")
    assert offers(alone.poll(2.0)) == []
    alone.queues["sales"] = QueueSettings(name="sales")
    alone.handle_times["sales"] = alone.handle_times["support"]
    alone.hold_times["sales"] = alone.hold_times["support"]
    assert alone.transfer("own", "sales", 3.0).calling_agent == "a1"
    assert offers(alone.poll(4.0)) == []
    assert alone.violations() == []


def test_priority_beats_arrival_and_arrival_is_kept_across_queues() -> None:
    acd = make(0, queue=QueueSettings(name="support"))
    acd.queues["sales"] = QueueSettings(name="sales")
    acd.handle_times["sales"] = acd.handle_times["support"]
    acd.hold_times["sales"] = acd.hold_times["support"]
    acd.enter("early", "sales", 1.0)
    acd.enter("late", "support", 2.0)
    acd.enter("vip", "support", 3.0, priority=5)
    moved = acd.transfer("early", "support", 4.0)
    assert moved.arrival == 1.0
    order = [c.caller_id for c in acd.waiting("support")]
    assert order == ["vip", "early", "late"]
    assert outcomes(acd, "early") == [QueueEvent.TRANSFER]


def test_ring_no_answer_puts_agent_on_break_and_caller_back_at_head() -> None:
    acd = make(2)
    acd.enter("c0", "support", 1.0)
    acd.enter("c1", "support", 2.0)
    first = offers(acd.poll(2.0))
    assert len(first) == 2
    agent = first[0].agents[0]
    acd.no_answer("c0", agent, 17.0, status=480)
    assert acd.agents[agent].status is AgentStatus.ON_BREAK
    assert acd.agents[agent].break_reason == NO_ANSWER
    assert acd.callers["c0"].state is CallerState.WAITING
    assert acd.position("c0") == 1
    # The other agent is busy with c1: nobody to offer c0 to until it is free.
    assert offers(acd.poll(18.0)) == []
    other = first[1].agents[0]
    acd.no_answer("c1", other, 19.0, status=486)  # busy: skipped, not on break
    assert acd.agents[other].status is AgentStatus.AVAILABLE
    assert offers(acd.poll(20.0)) == []  # still skipped
    again = offers(acd.poll(19.0 + 10.0))
    assert [o.caller_id for o in again] == ["c0"]  # head of the queue first


def test_wrap_up_is_a_deadline() -> None:
    acd = make(1, queue=QueueSettings(name="support", wrap_up=10.0))
    acd.enter("c0", "support", 0.0)
    acd.enter("c1", "support", 0.0)
    acd.poll(0.0)
    acd.answered("c0", "a1", 1.0)
    acd.hangup("c0", 31.0)
    assert acd.agents["a1"].state is AgentState.WRAP_UP
    assert acd.next_deadline(31.0) == 41.0
    assert offers(acd.poll(40.9)) == []
    assert [o.caller_id for o in offers(acd.poll(41.0))] == ["c1"]
    complete = [r for r in acd.records if r.event is QueueEvent.COMPLETE]
    assert complete[0].talk == 30.0 and complete[0].wrap_up == 10.0


def test_agent_wrap_up_overrides_queue() -> None:
    acd = make(1, queue=QueueSettings(name="support", wrap_up=10.0))
    acd.agents["a1"].wrap_up = 2.0
    acd.enter("c0", "support", 0.0)
    acd.poll(0.0)
    acd.answered("c0", "a1", 1.0)
    acd.hangup("c0", 5.0)
    assert acd.agents["a1"].wrap_up_until == 7.0


def test_abandon_while_ringing_frees_the_agent() -> None:
    acd = make(1)
    acd.enter("c0", "support", 0.0)
    acd.poll(0.0)
    acd.ringing("c0", "a1", 0.5)
    acd.abandon("c0", 3.0)
    assert acd.agents["a1"].state is AgentState.IDLE
    assert acd.agents["a1"].call is None
    assert outcomes(acd, "c0") == [QueueEvent.ABANDON]
    assert not acd.answered("c0", "a1", 4.0)  # a late answer is stale


def test_timeout_leaves_with_destination() -> None:
    queue = QueueSettings(name="support", max_wait=60.0, exit_destination="user:1001")
    acd = make(0, queue=queue)
    acd.enter("c0", "support", 0.0)
    assert acd.next_deadline(0.0) == 60.0
    assert acd.poll(59.0) == []
    (leave,) = acd.poll(60.0)
    assert isinstance(leave, Leave) and leave.reason is LeaveReason.TIMEOUT
    assert leave.destination == "user:1001"
    assert outcomes(acd, "c0") == [QueueEvent.EXIT_TIMEOUT]


def test_callback_keeps_the_place_and_retries_then_gives_up() -> None:
    queue = QueueSettings(
        name="support", callback_retries=2, callback_retry_interval=30
    )
    acd = make(1, queue=queue, login=False)
    acd.enter("c0", "support", 0.0)
    acd.enter("c1", "support", 1.0)
    acd.request_callback("c0", "+74950000000", 2.0)
    acd.abandon("c0", 2.5)  # the caller hangs up after accepting: stays virtual
    assert acd.position("c1") == 2
    acd.login("a1", 3.0)
    (offer,) = offers(acd.poll(3.0))
    assert offer.caller_id == "c0" and offer.callback_number == "+74950000000"
    acd.callback_failed("c0", 20.0)
    assert acd.callers["c0"].not_before == 50.0
    assert [o.caller_id for o in offers(acd.poll(21.0))] == ["c1"]
    acd.abandon("c1", 22.0)
    (retry,) = offers(acd.poll(50.0))
    assert retry.caller_id == "c0"
    acd.callback_failed("c0", 60.0)
    assert outcomes(acd, "c0") == [QueueEvent.CALLBACK_FAILED]
    assert acd.agents["a1"].call is None


def test_callback_completed_is_the_outcome() -> None:
    acd = make(1)
    acd.enter("cb", "support", 0.0, callback_number="555")
    (_offer,) = offers(acd.poll(0.0))
    assert acd.answered("cb", "a1", 5.0)
    acd.hangup("cb", 65.0)
    assert outcomes(acd, "cb") == [QueueEvent.CALLBACK_COMPLETED]


def test_ring_all_offers_every_best_agent_and_releases_the_rest() -> None:
    acd = make(
        3, queue=QueueSettings(name="support", strategy="ring-all"), penalties={"a3": 1}
    )
    acd.enter("c0", "support", 0.0)
    (offer,) = offers(acd.poll(0.0))
    assert offer.agents == ("a1", "a2")
    acd.answered("c0", "a2", 2.0)
    assert acd.agents["a1"].state is AgentState.IDLE
    assert acd.agents["a2"].state is AgentState.TALKING
    assert acd.violations() == []


def test_unregistered_or_logged_out_agents_get_nothing() -> None:
    acd = make(2)
    acd.registered("1001", False, 0.0)
    acd.logout("a2", 0.0)
    acd.enter("c0", "support", 0.0)
    assert offers(acd.poll(0.0)) == []


def test_auto_login_on_registration() -> None:
    acd = make(1, login=False)
    acd.agents["a1"].auto_login = True
    acd.registered("1001", False, 0.0)
    acd.registered("1001", True, 1.0)
    assert acd.agents["a1"].status is AgentStatus.AVAILABLE


def test_misuse_is_an_acd_error() -> None:
    acd = make(1)
    with pytest.raises(AcdError):
        acd.enter("c0", "nowhere", 0.0)
    acd.enter("c0", "support", 0.0)
    with pytest.raises(AcdError):
        acd.enter("c0", "support", 0.0)
    with pytest.raises(AcdError):
        acd.login("nobody", 0.0)


def test_refused_caller_has_enter_and_one_outcome() -> None:
    acd = make(0)
    acd.refuse("c0", "support", 0.0, "no agent logged in")
    events = [r.event for r in acd.records if r.caller_id == "c0"]
    assert events == [QueueEvent.ENTER, QueueEvent.EXIT_ADMISSION]
    assert "c0" not in acd.callers
