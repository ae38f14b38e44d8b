"""Transfer targets routed through the real dialplan with the caller's own rights."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ivr.service import dialplan_transfers
from switch.dialplan import Caller, Dialplan, Rule, ToTrunk, ToUser

RULES = [
    Rule(pattern="re:10(0[1-9]|10)", to="user"),
    Rule(pattern="600", to="app:echo"),
    Rule(pattern="_9X.", to="trunk:demo", strip=1),
]


def session(kind: str, allow_outbound: bool = False) -> Any:
    dialplan = Dialplan(rules=RULES, users={"1001", "1002"}, trunks={"demo"})
    caller = Caller(
        kind=kind, name="x", number="+74951234567", allow_outbound=allow_outbound
    )
    return SimpleNamespace(
        call=SimpleNamespace(b2bua=SimpleNamespace(dialplan=dialplan), caller=caller)
    )


@pytest.mark.parametrize(
    ("target", "kind", "allow", "expected"),
    [
        ("user:1002", "trunk", False, "1002"),
        ("1001", "trunk", False, ToUser(user="1001")),
        ("984951112233", "user", True, ToTrunk(trunk="demo", number="84951112233")),
        ("984951112233", "trunk", False, 403),  # toll fraud: a trunk caller
        ("600", "trunk", False, 488),  # another local app
        ("5555", "trunk", False, 404),
    ],
)
def test_transfer_targets(
    target: str, kind: str, allow: bool, expected: object
) -> None:
    assert dialplan_transfers(session(kind, allow), target) == expected
