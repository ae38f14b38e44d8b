"""The event catalogue in docs/events.md lists every event class and field."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

from switch.events import ANY, Event, RegistrationAdded, new_bus, publish

DOC = Path(__file__).resolve().parents[1] / "docs" / "events.md"
EVENT_MODULES = ["switch.events", "ivr.events", "acd.events"]


def _all_events() -> list[type[Event]]:
    for module in EVENT_MODULES:
        importlib.import_module(module)
    # dataclass(slots=True) builds a new class, so the first one may still be listed
    # among the subclasses until collected: keep one class per qualified name.
    found: dict[str, type[Event]] = {}
    todo = list(Event.__subclasses__())
    while todo:
        cls = todo.pop()
        found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        todo.extend(cls.__subclasses__())
    return list(found.values())


def test_every_event_and_field_is_documented() -> None:
    text = DOC.read_text()
    events = _all_events()
    assert events
    for cls in events:
        rows = [line for line in text.splitlines() if f"`{cls.name}`" in line]
        assert rows, f"{cls.__name__} ({cls.name}) missing from docs/events.md"
        for field in dataclasses.fields(cls):
            if field.name != "at":
                assert f"`{field.name}`" in rows[0], (
                    f"{cls.__name__}.{field.name} undocumented"
                )


def test_names_are_unique() -> None:
    names = [cls.name for cls in _all_events()]
    assert len(names) == len(set(names))


def test_publish_emits_on_name_and_any() -> None:
    bus = new_bus()
    seen: list[tuple[str, Event]] = []
    bus.on("registration.added", lambda e: seen.append(("named", e)))
    bus.on(ANY, lambda e: seen.append(("any", e)))
    event = RegistrationAdded(
        at=1.0,
        user="1001",
        contact="sip:1001@h",
        source="h:1",
        expires=60,
        user_agent=None,
    )
    publish(bus, event)
    assert seen == [("named", event), ("any", event)]


def test_a_failing_listener_does_not_reach_the_publisher() -> None:
    bus = new_bus()

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    bus.on("registration.added", broken)
    publish(
        bus,
        RegistrationAdded(
            at=1.0, user="u", contact="c", source="s", expires=1, user_agent=None
        ),
    )
