"""The ACD wiring: announcements from the IVR's prompts, the IVR's queue hook."""

from __future__ import annotations

import asyncio
from pathlib import Path

from acd.service import beep_announcer
from ccswitch.acd_runtime import AcdRuntime, _prompt_functions
from ccswitch.config import load_config
from ivr.prompts import DEFAULT_PROMPTS, PromptLibrary
from ivr.runner import QueueRequest
from media.commands import Prompt
from tests.acd.test_service import FakeSession


class NoBindings:
    def lookup(self, user: str) -> list[object]:
        return []


def test_announcements_are_spoken_with_the_ivr_prompts() -> None:
    library = PromptLibrary(root=DEFAULT_PROMPTS, languages=("ru", "en"))
    announce, prompts, say_number = _prompt_functions(library)
    items = announce(3, 125.0, "en")
    paths = [Path(item.path) for item in items if isinstance(item, Prompt)]
    names = [p.stem for p in paths]
    assert names[0] == "queue_position" and "expected_wait" in names
    assert "minute_many" in names  # 125 s rounds up to 3 minutes
    assert all(p.is_file() for p in paths)
    ru = announce(1, None, "")  # the library's default language
    assert all("/ru/" in item.path for item in ru if isinstance(item, Prompt))
    offer = prompts("press_1_callback", "en")
    assert [Path(i.path).stem for i in offer if isinstance(i, Prompt)] == [
        "press_1_callback"
    ]
    # a callback number is read back digit by digit, "+" left out
    number = say_number("+7495", "en")
    assert [Path(i.path).stem for i in number if isinstance(i, Prompt)] == [
        "n7",
        "n4",
        "n9",
        "n5",
    ]


def test_missing_prompts_fall_back_to_a_beep(tmp_path: Path) -> None:
    announce, _, _ = _prompt_functions(PromptLibrary(root=tmp_path, languages=("en",)))
    assert list(announce(2, 60.0, "en")) == beep_announcer(2, 60.0, "en")


async def test_the_ivr_hook_enqueues_with_priority_skills_and_language() -> None:
    runtime = AcdRuntime(
        load_config(None),
        bus=None,  # type: ignore[arg-type]
        store=None,  # type: ignore[arg-type]
        registrar=NoBindings(),  # type: ignore[arg-type]
    )
    distributor = runtime.acd.distributor
    request = QueueRequest(
        call_id="c1",
        queue="nowhere",
        priority=10,
        skills=("en:3",),
        language="en",
        variables={},
    )
    session = FakeSession("c1", {})
    assert not await runtime.ivr_hook(session, request)
    distributor.login("1001", 0.0)  # logged in but not registered: nobody to ring
    real = QueueRequest(
        call_id="c1",
        queue="support",
        priority=10,
        skills=("en:3", "billing"),
        language="en",
        variables={},
    )
    task = asyncio.create_task(runtime.ivr_hook(session, real))
    for _ in range(50):
        if "c1" in distributor.callers:
            break
        await asyncio.sleep(0.01)
    caller = distributor.callers["c1"]
    assert (caller.priority, caller.language) == (10, "en")
    assert caller.skills == {"en": 3, "billing": 1}
    session.call.end()
    assert await asyncio.wait_for(task, 5)


def test_admission_schedules_run_on_the_company_clock() -> None:
    """[[admission]] hours are the company's, in [ivr] time_zone, not the host's."""
    config = load_config(None)
    runtime = AcdRuntime(
        config,
        bus=None,  # type: ignore[arg-type]
        store=None,  # type: ignore[arg-type]
        registrar=NoBindings(),  # type: ignore[arg-type]
    )
    now = runtime.acd.local_time()
    assert str(now.tzinfo) == config.ivr.time_zone == "Europe/Moscow"
