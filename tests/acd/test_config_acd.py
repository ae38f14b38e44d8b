"""[[queues]], [[agents]] and [[admission]]: validated like every other key."""

from __future__ import annotations

import pytest

from ccswitch.acd_runtime import build_distributor
from ccswitch.config import ConfigError, load_config, parse_config

BASE = """
[sip]
realm = "r"
[[trunks]]
name = "t"
host = "127.0.0.1"
[[users]]
name = "1001"
password = "p"
[[queues]]
name = "support"
callback_trunk = "t"
"""

AGENT = '[[agents]]\nname = "ann"\nusers = ["1001"]\nqueues = ["support"]\n'


def parse(extra: str) -> object:
    return parse_config(BASE + extra, source="t.toml")


def test_a_full_acd_section_builds_the_distributor() -> None:
    config = parse(
        AGENT.replace('queues = ["support"]', 'queues = ["support:2"]')
        + "skills = { en = 3 }\nwrap_up = 4\nauto_login = true\n"
        '[[admission]]\nqueue = "support"\ndays = "mon-fri"\n'
        'hours = "08:00-18:00"\nmax_expected_wait = 60\naction = "callback"\n'
    )
    distributor = build_distributor(config)  # type: ignore[arg-type]
    agent = distributor.agents["ann"]
    assert agent.penalty("support") == 2 and agent.skills == {"en": 3}
    assert agent.wrap_up == 4.0 and agent.auto_login
    assert distributor.rules[0].days == frozenset(range(5))


def test_the_demo_has_ten_agents_in_two_queues() -> None:
    distributor = build_distributor(load_config(None))
    support = [a.name for a in distributor.members("support")]
    sales = [a.name for a in distributor.members("sales")]
    assert support == ["1001", "1002", "1003", "1004", "1005"]
    assert sales == ["1006", "1007", "1008", "1009", "1010"]
    assert all(a.auto_login for a in distributor.agents.values())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[[queues]]\nname = "q2"\nstrategy = "longest-idel"\n',
            'queues[2].strategy: unknown strategy "longest-idel"; did you mean '
            '"longest-idle"?',
        ),
        ('[[queues]]\nname = "support"\n', "queues[2].name: duplicate queue"),
        ('[[queues]]\nname = "q2"\nexit_key = "0"\n', "exit_destination: required"),
        ('[[queues]]\nname = "q2"\nexit_key = "00"\n', "is not one DTMF key"),
        ('[[queues]]\nname = "q2"\ncallback_trunk = "x"\n', 'unknown trunk "x"'),
        ('[[queues]]\nname = "q2"\nskills = { en = 11 }\n', "out of range 1-10"),
        (AGENT.replace('"1001"]', '"1002"]'), 'agents[1].users: unknown user "1002"'),
        (AGENT.replace('["support"]', '["sales"]'), 'unknown queue "sales"'),
        (
            AGENT.replace('["support"]', '["support:x"]'),
            "is not QUEUE or QUEUE:PENALTY",
        ),
        (AGENT.replace('["support"]', "[]"), "must name at least one queue"),
        ('[[admission]]\nqueue = "nope"\n', 'admission[1].queue: unknown queue "nope"'),
        (
            '[[admission]]\nqueue = "support"\naction = "overflow"\n',
            "admission[1].destination: required when action is overflow",
        ),
        ('[[admission]]\nqueue = "support"\naction = "pray"\n', "is not one of"),
        ('[[admission]]\nqueue = "support"\ndays = "funday"\n', "is not a day"),
        ('[[admission]]\nqueue = "support"\nhours = "9-5"\n', "is not HH:MM-HH:MM"),
        (
            '[[agents]]\nname = "a"\nusers = ["1001"]\nqueues = ["support"]\nbogus = 1\n',
            "agents[1].bogus: unknown key",
        ),
    ],
)
def test_one_line_errors(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(extra)
    assert message in str(caught.value)
    assert str(caught.value).startswith("t.toml: ")


def test_callback_needs_a_trunk() -> None:
    text = (
        BASE.replace('callback_trunk = "t"\n', "")
        + '[[admission]]\nqueue = "support"\n'
    )
    with pytest.raises(ConfigError, match="callback needs queues"):
        parse_config(text, source="t.toml")
