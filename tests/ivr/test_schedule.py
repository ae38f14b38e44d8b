"""Opening hours: weekday ranges (start inclusive, end exclusive) and holidays."""

from __future__ import annotations

import datetime

import pytest

from ivr.loader import parse_flow

FLOW = """
start = "when"
[nodes.when]
type = "branch"
default = "bye"
[[nodes.when.conditions]]
schedule = "office"
goto = "bye"
[nodes.bye]
type = "hangup"
[schedules.office]
mon = "09:00-13:00, 14:00-18:00"
sat = "10:00-24:00"
holidays = ["2026-12-07"]
"""


@pytest.mark.parametrize(
    ("when", "is_open"),
    [
        ("2026-12-14 08:59", False),  # Monday, before opening
        ("2026-12-14 09:00", True),
        ("2026-12-14 12:59", True),
        ("2026-12-14 13:30", False),  # lunch
        ("2026-12-14 17:59", True),
        ("2026-12-14 18:00", False),  # the end is exclusive
        ("2026-12-15 10:00", False),  # Tuesday: not listed, closed
        ("2026-12-12 23:59", True),  # Saturday until midnight
        ("2026-12-07 10:00", False),  # a Monday that is a holiday
    ],
)
def test_opening_hours(when: str, is_open: bool) -> None:
    flow = parse_flow(FLOW, source="s.toml", name="s")
    local = datetime.datetime.strptime(when, "%Y-%m-%d %H:%M")
    assert flow.schedules["office"].is_open(local) is is_open
