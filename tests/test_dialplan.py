"""Tests for switch.dialplan: patterns, destinations, toll fraud, E.164, as tables."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.dialplan import (
    Caller,
    Dialplan,
    DialplanError,
    NumberError,
    NumberingPlan,
    Route,
    RouteRefused,
    Rule,
    ToApp,
    ToTrunk,
    ToUser,
    check_rule,
    compile_pattern,
    format_number,
    number_for_trunk,
    parse_destination,
    to_e164,
)

USERS = frozenset({"1001", "1002", "1010", "alice"})
RU = NumberingPlan(
    country_code="7",
    national_prefix="8",
    international_prefix="810",
    number_format="e164",
)

ALICE = Caller(kind="user", name="alice", number="alice", allow_outbound=False)
BOSS = Caller(kind="user", name="1001", number="1001", allow_outbound=True)
CARRIER = Caller(kind="trunk", name="demo", number="+74951234567", allow_outbound=False)

# The demo dialplan (ccswitch/demo.toml), as rules.
DEMO_RULES = [
    Rule(pattern="re:10(0[1-9]|10)", to="user"),
    Rule(pattern="600", to="app:echo"),
    Rule(
        pattern="601",
        to="app:tone",
        args=(("frequency", "1000"), ("seconds", "5"), ("prompt", "demo-tone")),
    ),
    Rule(pattern="4000", to="ivr:demo"),
    Rule(pattern="4001", to="queue:support"),
    Rule(pattern="4002", to="queue:sales"),
    Rule(pattern="_9X.", to="trunk:demo", strip=1),
]


def demo(**kwargs: object) -> Dialplan:
    return Dialplan(
        rules=DEMO_RULES,
        users=USERS,
        trunks=["demo"],
        numbering={"demo": RU},
        **kwargs,  # type: ignore[arg-type]
    )


# --- routing: the demo table ---------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "called", "route"),
    [
        (CARRIER, "1001", ToUser(user="1001")),
        (CARRIER, "1010", ToUser(user="1010")),
        (ALICE, "1002", ToUser(user="1002")),
        (ALICE, "600", ToApp(app="echo")),
        (CARRIER, "600", ToApp(app="echo")),
        (
            CARRIER,
            "601",
            ToApp(
                app="tone",
                args=(("frequency", "1000"), ("seconds", "5"), ("prompt", "demo-tone")),
            ),
        ),
        (CARRIER, "4000", ToApp(app="ivr", args=(("flow", "demo"),))),
        (ALICE, "4001", ToApp(app="queue", args=(("queue", "support"),))),
        (ALICE, "4002", ToApp(app="queue", args=(("queue", "sales"),))),
        # extension-to-extension: a user calls another user's name (built-in rule)
        (ALICE, "alice", ToUser(user="alice")),
        (BOSS, "alice", ToUser(user="alice")),
        # out through the trunk, 9 stripped, normalised to E.164
        (BOSS, "984951234567", ToTrunk(trunk="demo", number="+74951234567")),
        (BOSS, "974951234567", ToTrunk(trunk="demo", number="+74951234567")),
        (BOSS, "94951234567", ToTrunk(trunk="demo", number="+74951234567")),
        (BOSS, "9810441234567", ToTrunk(trunk="demo", number="+441234567")),
    ],
)
def test_demo_routes(caller: Caller, called: str, route: Route) -> None:
    assert demo().route(called=called, caller=caller) == route


@pytest.mark.parametrize(
    ("caller", "called", "status", "reason"),
    [
        # toll-fraud protection: only users with allow_outbound reach a trunk
        (ALICE, "984951234567", 403, "Outbound calls not allowed"),
        (CARRIER, "984951234567", 403, "Outbound calls not allowed"),
        # unknown numbers
        (CARRIER, "1011", 404, "Not Found"),
        (CARRIER, "1000", 404, "Not Found"),
        (ALICE, "12345", 404, "Not Found"),
        (ALICE, "", 404, "Not Found"),
        (ALICE, "9", 404, "Not Found"),  # "_9X." needs two more digits
        # trunks do not reach users by name: only what the dialplan publishes
        (CARRIER, "alice", 404, "Not Found"),
    ],
)
def test_demo_refusals(caller: Caller, called: str, status: int, reason: str) -> None:
    with pytest.raises(RouteRefused) as info:
        demo().route(called=called, caller=caller)
    assert (info.value.status, info.value.reason) == (status, reason)


def test_trunk_caller_never_transits_even_with_outbound_flag() -> None:
    # A trunk with allow_outbound set by mistake still cannot reach a trunk.
    odd = Caller(kind="trunk", name="demo", number="1", allow_outbound=True)
    with pytest.raises(RouteRefused) as info:
        demo().route(called="984951234567", caller=odd)
    assert info.value.status == 403


def test_a_down_trunk_is_skipped_for_the_next_rule() -> None:
    rules = [
        Rule(pattern="_9.", to="trunk:main", strip=1),
        Rule(pattern="_9.", to="trunk:backup", strip=1, prepend="00"),
    ]
    up = {"main": False, "backup": True}
    plan = Dialplan(
        rules=rules,
        users=USERS,
        trunks=["main", "backup"],
        trunk_available=lambda name: up[name],
    )
    assert plan.route(called="9123", caller=BOSS) == ToTrunk(
        trunk="backup", number="00123"
    )
    up["backup"] = False
    with pytest.raises(RouteRefused) as info:
        plan.route(called="9123", caller=BOSS)
    assert (info.value.status, info.value.reason) == (503, "Service Unavailable")


def test_a_number_the_trunk_cannot_take_is_484() -> None:
    plan = Dialplan(
        rules=[Rule(pattern="_9!", to="trunk:demo", strip=1)],
        users=USERS,
        trunks=["demo"],
        numbering={"demo": RU},
    )
    with pytest.raises(RouteRefused) as info:
        plan.route(called="9*21#", caller=BOSS)
    assert (info.value.status, info.value.reason) == (484, "Address Incomplete")


@pytest.mark.parametrize(
    ("from_", "caller", "routed"),
    [
        ("any", ALICE, True),
        ("any", CARRIER, True),
        ("users", ALICE, True),
        ("users", CARRIER, False),
        ("trunks", ALICE, False),
        ("trunks", CARRIER, True),
    ],
)
def test_from_condition(from_: str, caller: Caller, routed: bool) -> None:
    plan = Dialplan(
        rules=[Rule(pattern="700", to="app:echo", from_=from_)],
        users=USERS,
        trunks=[],
    )
    if routed:
        assert plan.route(called="700", caller=caller) == ToApp(app="echo")
    else:
        with pytest.raises(RouteRefused):
            plan.route(called="700", caller=caller)


def test_rules_are_tried_in_order_and_strip_prepend_apply() -> None:
    plan = Dialplan(
        rules=[
            Rule(pattern="_2XXX", to="user", strip=1, prepend="10"),  # 2001 -> 10001?
            Rule(pattern="_20XX", to="app:echo"),
            Rule(pattern="_1XXX", to="user:alice"),
        ],
        users=USERS,
        trunks=[],
    )
    # "_2XXX" makes "10" + "001" = "10001": not a user, so the rule does not match.
    assert plan.route(called="2001", caller=ALICE) == ToApp(app="echo")
    # Configured rules come before the built-in extension rule.
    assert plan.route(called="1002", caller=ALICE) == ToUser(user="alice")


def test_user_destination_by_number_after_rewriting() -> None:
    plan = Dialplan(
        rules=[Rule(pattern="_7XXX", to="user", strip=1, prepend="1")],
        users=USERS,
        trunks=[],
    )
    assert plan.route(called="7002", caller=CARRIER) == ToUser(user="1002")


def test_named_user_that_vanished_is_404() -> None:
    users = {"1001"}
    plan = Dialplan(rules=[Rule(pattern="0", to="user:1001")], users=users, trunks=[])
    assert plan.route(called="0", caller=CARRIER) == ToUser(user="1001")
    users.clear()  # the directory is consulted at routing time
    with pytest.raises(RouteRefused) as info:
        plan.route(called="0", caller=CARRIER)
    assert info.value.status == 404


def test_app_arg_lookup() -> None:
    app = ToApp(app="tone", args=(("frequency", "1000"),))
    assert app.arg("frequency") == "1000"
    assert app.arg("seconds") is None
    assert app.arg("seconds", "5") == "5"


def test_rules_property_keeps_order() -> None:
    assert demo().rules == tuple(DEMO_RULES)


# --- patterns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("600", ["600"], ["6000", "60", "_600"]),
        ("*97", ["*97"], ["97", "x97"]),
        ("+7495", ["+7495"], ["7495"]),
        ("_1XXX", ["1000", "1999"], ["100", "10000", "2000", "1a00"]),
        ("_1xxx", ["1234"], ["123"]),
        ("_NXX", ["200", "999"], ["100", "099"]),
        ("_ZX", ["10", "99"], ["00", "09"]),
        ("_9.", ["91", "9123456789", "9*"], ["9", "8123"]),
        ("_9!", ["9", "91", "9123"], ["8"]),
        ("_[15-7]X", ["10", "55", "79"], ["20", "40", "80"]),
        ("_[*#]X", ["*1", "#2"], ["11"]),
        ("_+X.", ["+7495", "+12"], ["7495", "+"]),
        ("re:10(0[1-9]|10)", ["1001", "1009", "1010"], ["1000", "1011", "10010"]),
        ("re:^\\+?7\\d{10}$", ["+74951234567", "74951234567"], ["84951234567"]),
    ],
)
def test_pattern_table(pattern: str, matches: list[str], misses: list[str]) -> None:
    regex = compile_pattern(pattern)
    for number in matches:
        assert regex.fullmatch(number), number
    for number in misses:
        assert not regex.fullmatch(number), number


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "pattern must not be empty"),
        ("_", 'pattern "_" matches nothing; add digits or X/Z/N'),
        ("_9.X", "'.' is only allowed at the end of a pattern"),
        ("_9!1", "'!' is only allowed at the end of a pattern"),
        ("_9[12", "unclosed '[' in pattern"),
        ("_9]", "']' without '[' in pattern"),
        ("_9[]", "empty '[]' in pattern"),
        ("_[a-z]", "bad '[a-z]': use digits and ranges like [1-5]"),
        (
            "re:(",
            "bad regular expression: missing ), unterminated subpattern at position 0",
        ),
    ],
)
def test_bad_patterns(pattern: str, message: str) -> None:
    with pytest.raises(DialplanError) as info:
        compile_pattern(pattern)
    assert str(info.value) == message


@given(st.text(alphabet="0123456789*#+", min_size=1, max_size=12))
def test_exact_patterns_match_only_themselves(number: str) -> None:
    regex = compile_pattern(number)
    assert regex.fullmatch(number)
    assert not regex.fullmatch(number + "0")


@given(st.from_regex(re.compile(r"_[0-9XZN\[\]\-.!*#+]{0,8}"), fullmatch=True))
def test_any_extension_pattern_compiles_or_says_why(pattern: str) -> None:
    try:
        compile_pattern(pattern)
    except DialplanError as exc:
        assert "\n" not in str(exc)


# --- destinations and rule checks ----------------------------------------------------


@pytest.mark.parametrize(
    ("to", "parsed"),
    [
        ("user", ("user", "")),
        ("user:1001", ("user", "1001")),
        ("trunk:demo", ("trunk", "demo")),
        ("app:echo", ("app", "echo")),
        ("ivr:demo", ("ivr", "demo")),
        ("queue:sales", ("queue", "sales")),
    ],
)
def test_destinations(to: str, parsed: tuple[str, str]) -> None:
    assert parse_destination(to) == parsed


@pytest.mark.parametrize(
    ("to", "message"),
    [
        (
            "phone:1001",
            "destination 'phone:1001' must start with one of "
            "user:, trunk:, app:, ivr:, queue:",
        ),
        ("user:", "destination 'user:' needs a name after 'user:'"),
        ("trunk", "destination 'trunk' needs a name after 'trunk:'"),
        ("app:", "destination 'app:' needs a name after 'app:'"),
    ],
)
def test_bad_destinations(to: str, message: str) -> None:
    with pytest.raises(DialplanError) as info:
        parse_destination(to)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (Rule(pattern="1", to="trunk:nope"), "unknown trunk 'nope'"),
        (Rule(pattern="1", to="user:bob"), "unknown user 'bob'"),
        (
            Rule(pattern="1", to="app:echo", from_="all"),
            ("from must be one of any, users, trunks, got 'all'"),
        ),
        (
            Rule(pattern="1", to="app:echo", strip=-1),
            "strip must not be negative, got -1",
        ),
        (
            Rule(pattern="1", to="user", args=(("a", "b"),)),
            "args are only for app: destinations",
        ),
    ],
)
def test_check_rule(rule: Rule, message: str) -> None:
    with pytest.raises(DialplanError) as info:
        check_rule(rule, users=USERS, trunks=["demo"])
    assert str(info.value) == message


def test_dialplan_refuses_unknown_trunk_at_construction() -> None:
    with pytest.raises(DialplanError, match="unknown trunk 'x'"):
        Dialplan(rules=[Rule(pattern="1", to="trunk:x")], users=USERS, trunks=[])


# --- E.164 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "dialled", "e164"),
    [
        (RU, "+74951234567", "+74951234567"),
        (RU, "84951234567", "+74951234567"),
        (RU, "74951234567", "+74951234567"),
        (RU, "4951234567", "+74951234567"),
        (RU, "81074951234567", "+74951234567"),
        (RU, "810441234567890", "+441234567890"),
        (RU, "+7 (495) 123-45-67", "+74951234567"),
        (RU, "8.495.123.45.67", "+74951234567"),
        # UK: national 0, international 00
        (
            NumberingPlan(
                country_code="44", national_prefix="0", international_prefix="00"
            ),
            "02071234567",
            "+442071234567",
        ),
        (
            NumberingPlan(
                country_code="44", national_prefix="0", international_prefix="00"
            ),
            "0049301234567",
            "+49301234567",
        ),
        # NANP: national prefix 1 equals the country code
        (
            NumberingPlan(
                country_code="1", national_prefix="1", international_prefix="011"
            ),
            "14155551234",
            "+14155551234",
        ),
        (
            NumberingPlan(
                country_code="1", national_prefix="1", international_prefix="011"
            ),
            "4155551234",
            "+14155551234",
        ),
        # no country known: digits are taken as already international
        (NumberingPlan(), "4912345", "+4912345"),
    ],
)
def test_to_e164(plan: NumberingPlan, dialled: str, e164: str) -> None:
    assert to_e164(dialled, plan) == e164


@pytest.mark.parametrize(
    ("dialled", "message"),
    [
        ("alice", "not a phone number: 'alice'"),
        ("", "not a phone number: ''"),
        ("+", "not a phone number: '+'"),
        ("*21#", "not a phone number: '*21#'"),
        ("+1234567890123456", "longer than 15 digits: '+1234567890123456'"),
        ("+0123", "no country code in '+0123'"),
        ("8100", "no country code in '8100'"),
        ("810", "no country code in '810'"),
    ],
)
def test_to_e164_refuses(dialled: str, message: str) -> None:
    with pytest.raises(NumberError) as info:
        to_e164(dialled, RU)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("number_format", "e164", "written"),
    [
        ("e164", "+74951234567", "+74951234567"),
        ("digits", "+74951234567", "74951234567"),
        ("national", "+74951234567", "84951234567"),
        ("national", "+441234567890", "810441234567890"),
    ],
)
def test_format_number(number_format: str, e164: str, written: str) -> None:
    plan = NumberingPlan(
        country_code="7",
        national_prefix="8",
        international_prefix="810",
        number_format=number_format,
    )
    assert format_number(e164, plan) == written


def test_as_dialled_leaves_numbers_alone() -> None:
    assert number_for_trunk("*21#", NumberingPlan()) == "*21#"
    assert number_for_trunk("84951234567", RU) == "+74951234567"


# Russian area codes start with 3, 4, 8 or 9; "810..." is always international.
@given(st.from_regex(re.compile(r"[2-9][0-9]{9}"), fullmatch=True))
def test_e164_normalisation_is_idempotent(national: str) -> None:
    once = to_e164("8" + national, RU)
    assert to_e164(once, RU) == once
    assert to_e164(once.removeprefix("+"), RU) == once


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"country_code": "+7"}, "country_code must be digits, got '+7'"),
        ({"national_prefix": "x"}, "national_prefix must be digits, got 'x'"),
        (
            {"number_format": "weird"},
            "number_format must be one of e164, digits, national, as-dialled, "
            "got 'weird'",
        ),
        (
            {"number_format": "national", "country_code": "7"},
            'number_format "national" needs country_code and international_prefix',
        ),
    ],
)
def test_bad_numbering_plans(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(DialplanError) as info:
        NumberingPlan(**kwargs)
    assert str(info.value) == message
