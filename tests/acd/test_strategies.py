"""Strategies: pure rankers, penalty first, loaded through entry points."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from acd.queue import QueueSettings
from acd.strategies import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    Candidate,
    Strategy,
    StrategyError,
    WaitingCall,
    load_strategies,
    required_skills,
)
from tests.acd.helpers import make, offers


def cand(name: str, **fields: object) -> Candidate:
    values: dict[str, object] = {
        "name": name,
        "penalty": 0,
        "skills": {},
        "idle_since": 0.0,
        "last_offered": 0.0,
        "calls_taken": 0,
        "talk_time": 0.0,
    }
    values.update(fields)
    return Candidate(**values)  # type: ignore[arg-type]


CALL = WaitingCall(caller_id="c", queue="q", priority=0, waited=0.0)


def best(strategy: str, candidates: list[Candidate], call: WaitingCall = CALL) -> str:
    chosen = BUILTIN[strategy]
    eligible = [c for c in candidates if chosen.eligible(call, c, 100.0)]
    return min(eligible, key=lambda c: chosen.rank(call, c, 100.0)).name


@pytest.mark.parametrize(
    ("strategy", "winner", "field", "values"),
    [
        ("longest-idle", "b", "idle_since", (50.0, 10.0)),
        ("round-robin", "a", "last_offered", (5.0, 60.0)),
        ("fewest-calls", "b", "calls_taken", (4, 1)),
        ("least-talk-time", "a", "talk_time", (30.0, 300.0)),
    ],
)
def test_each_ranker_prefers_its_measure(
    strategy: str, winner: str, field: str, values: tuple[object, object]
) -> None:
    a = cand("a", **{field: values[0]})
    b = cand("b", **{field: values[1]})
    assert best(strategy, [a, b]) == winner
    # Penalty dominates every measure: the winner loses once penalised.
    penalised = cand(winner, penalty=2, **{field: values[0 if winner == "a" else 1]})
    other = "b" if winner == "a" else "a"
    other_c = cand(other, **{field: values[1 if winner == "a" else 0]})
    assert best(strategy, [penalised, other_c]) == other


def test_skills_prefer_best_match_and_widen_with_wait() -> None:
    call = WaitingCall(
        caller_id="c",
        queue="q",
        priority=0,
        waited=0.0,
        skills={"ru": 3},
        widen_after=30.0,
    )
    novice = cand("novice", skills={"ru": 1})
    expert = cand("expert", skills={"ru": 5})
    assert best("skills", [novice, expert], call) == "expert"
    assert not BUILTIN["skills"].eligible(call, novice, 0.0)
    assert required_skills(call) == {"ru": 3}
    later = WaitingCall(**{**_fields(call), "waited": 61.0})
    assert required_skills(later) == {"ru": 1}
    assert BUILTIN["skills"].eligible(later, novice, 61.0)
    much_later = WaitingCall(**{**_fields(call), "waited": 95.0})
    assert required_skills(much_later) == {}
    assert BUILTIN["skills"].eligible(much_later, cand("none"), 95.0)


def _fields(call: WaitingCall) -> dict[str, object]:
    return {name: getattr(call, name) for name in call.__slots__}  # type: ignore[attr-defined]


def test_penalty_tiers_open_with_wait() -> None:
    tiers = BUILTIN["penalty-tiers"]
    call = WaitingCall(
        caller_id="c", queue="q", priority=0, waited=5.0, tier_after=10.0
    )
    assert tiers.eligible(call, cand("t0"), 0.0)
    assert not tiers.eligible(call, cand("t1", penalty=1), 0.0)
    call = WaitingCall(
        caller_id="c", queue="q", priority=0, waited=10.0, tier_after=10.0
    )
    assert tiers.eligible(call, cand("t1", penalty=1), 0.0)


def test_skills_queue_routes_to_skilled_agent_end_to_end_in_core() -> None:
    queue = QueueSettings(name="support", strategy="skills", skills=(("en", 2),))
    acd = make(3, queue=queue, skills={"a1": {"en": 1}, "a2": {"en": 4}, "a3": {}})
    acd.enter("c0", "support", 0.0)
    (offer,) = offers(acd.poll(0.0))
    assert offer.agents == ("a2",)
    acd.enter("c1", "support", 0.0)
    assert offers(acd.poll(1.0)) == []  # a1 lacks the level and nothing widens


def test_builtins_are_declared_as_entry_points() -> None:
    from importlib.metadata import entry_points

    declared = {p.name for p in entry_points(group=ENTRY_POINT_GROUP)}
    assert set(BUILTIN) <= declared


def _install_plugin(tmp_path: Path, value: str) -> None:
    """A package installed the ordinary way: a module and its dist-info on sys.path."""
    (tmp_path / "acd_plugin_demo.py").write_text(
        "from acd.strategies import Strategy\n"
        "def _rank(call, candidate, now):\n"
        "    return (candidate.penalty, -len(candidate.name))\n"
        "LONGEST_NAME = Strategy(name='longest-name', rank=_rank)\n"
        "NOT_A_STRATEGY = 42\n"
    )
    info = tmp_path / "acd_plugin_demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acd-plugin-demo\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{value}\n")


def test_a_strategy_from_another_package_needs_no_core_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_plugin(tmp_path, "longest-name = acd_plugin_demo:LONGEST_NAME")
    monkeypatch.syspath_prepend(str(tmp_path))
    strategies = load_strategies()
    assert isinstance(strategies["longest-name"], Strategy)
    assert set(BUILTIN) <= set(strategies)
    queue = QueueSettings(name="support", strategy="longest-name")
    acd = make(0, queue=queue)
    from acd.agent import Agent, Membership
    from acd.distributor import Distributor

    agents = [
        Agent(name=n, users=(n,), memberships=(Membership(queue="support"),))
        for n in ("bo", "alexandra", "cy")
    ]
    acd = Distributor(queues=[queue], agents=agents, strategies=strategies)
    for a in agents:
        acd.registered(a.name, True, 0.0)
        acd.login(a.name, 0.0)
    acd.enter("c0", "support", 0.0)
    (offer,) = offers(acd.poll(0.0))
    assert offer.agents == ("alexandra",)
    sys.modules.pop("acd_plugin_demo", None)


def test_a_bad_entry_point_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_plugin(tmp_path, "broken = acd_plugin_demo:NOT_A_STRATEGY")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(StrategyError, match="broken"):
        load_strategies()
    sys.modules.pop("acd_plugin_demo", None)
