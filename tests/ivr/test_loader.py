"""Flow validation: every problem is one error naming the file, the node and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.flow import BranchNode, MenuNode, PlayNode, PromptKind
from ivr.loader import FlowError, FlowErrors, load_flow, load_flows, parse_flow
from ivr.prompts import PromptLibrary
from ivr.service import DEMO_FLOWS

GOOD = """
start = "hello"

[nodes.hello]
type = "play"
prompts = ["greeting"]
next = "menu"

[nodes.menu]
type = "menu"
prompts = ["menu"]
choices = { "1" = "bye" }
invalid = "bye"

[nodes.bye]
type = "hangup"
prompts = ["goodbye"]
"""


def write(folder: Path, text: str, name: str = "flow") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def error_of(path: Path, library: PromptLibrary) -> str:
    with pytest.raises(FlowError) as caught:
        load_flow(path, library)
    return str(caught.value)


def test_a_good_flow_loads(tmp_path: Path, library: PromptLibrary) -> None:
    flow = load_flow(write(tmp_path, GOOD), library)
    assert flow.name == "flow"
    assert flow.start == "hello"
    assert isinstance(flow.nodes["hello"], PlayNode)
    menu = flow.nodes["menu"]
    assert isinstance(menu, MenuNode)
    assert menu.choices == (("1", "bye"),)
    assert (menu.timeout, menu.retries) == (5.0, 2)
    assert flow.nodes["bye"].prompts[0].kind is PromptKind.FILE


def test_dangling_node(tmp_path: Path, library: PromptLibrary) -> None:
    path = write(tmp_path, GOOD.replace('"1" = "bye"', '"1" = "salez"'))
    assert error_of(path, library) == (
        f"{path}: node 'menu': choice '1' goes to 'salez', which is not defined"
    )


def test_dangling_start(tmp_path: Path, library: PromptLibrary) -> None:
    path = write(tmp_path, GOOD.replace('start = "hello"', 'start = "helo"'))
    assert error_of(path, library) == f"{path}: start node 'helo' is not defined"


def test_unreachable_node(tmp_path: Path, library: PromptLibrary) -> None:
    text = GOOD + '\n[nodes.orphan]\ntype = "hangup"\n'
    path = write(tmp_path, text)
    assert error_of(path, library) == (
        f"{path}: node 'orphan': unreachable: no path from the start node 'hello' "
        "leads here"
    )


def test_loop_without_input(tmp_path: Path, library: PromptLibrary) -> None:
    text = """
start = "a"
[nodes.a]
type = "play"
prompts = ["greeting"]
next = "b"
[nodes.b]
type = "set"
values = { x = "1" }
next = "c"
[nodes.c]
type = "branch"
default = "a"
[[nodes.c.conditions]]
variable = "x"
equals = "2"
goto = "bye"
[nodes.bye]
type = "hangup"
"""
    path = write(tmp_path, text)
    assert error_of(path, library) == (
        f"{path}: node 'a': loop a -> b -> c -> a takes no caller input; put a menu, "
        "collect or language node in it"
    )


def test_a_loop_through_a_menu_is_fine(tmp_path: Path, library: PromptLibrary) -> None:
    text = GOOD.replace('invalid = "bye"', 'invalid = "hello"')
    assert load_flow(write(tmp_path, text), library).name == "flow"


def test_missing_prompt_file(tmp_path: Path, library: PromptLibrary) -> None:
    """Missing in both languages: both files are named, in one run."""
    path = write(tmp_path, GOOD.replace('["menu"]', '["menu", "welcome_back"]'))
    with pytest.raises(FlowErrors) as caught:
        load_flow(path, library)
    assert [str(error) for error in caught.value.errors] == [
        f"{path}: node 'menu': prompt 'welcome_back' has no file "
        f"{library.root / language / 'welcome_back.wav'}"
        for language in ("ru", "en")
    ]
    assert str(caught.value) == f"{caught.value.errors[0]} (and 1 more)"


def test_every_problem_of_a_file_in_one_run(
    tmp_path: Path, library: PromptLibrary
) -> None:
    """Bad types in two nodes, a missing key, a dangling edge and a prompt missing
    in both languages: one check reports all six, each on its own line (``ccswitch
    flows check``); reachability waits until every node parses."""
    text = (
        GOOD
        + """
[nodes.ask]
type = "menu"
prompts = ["nosuchprompt"]
choices = { "1" = "bye" }
invalid = "bye"
timeout = "five"

[nodes.other]
type = "play"
prompts = ["nosuchprompt"]
next = "nowhere"

[nodes.broken]
type = "play"
"""
    )
    text = text.replace('next = "menu"', 'next = "menu"\nbarge_in = "yes"')
    path = write(tmp_path, text)
    result = load_flows(tmp_path, library)
    assert result.flows == {}
    lines = [str(error) for error in result.errors]
    assert len(lines) == 6, lines
    assert lines[0].startswith(f"{path}: node 'hello': barge_in")
    assert lines[1].startswith(f"{path}: node 'ask': timeout")
    assert lines[2].startswith(f"{path}: node 'broken': next")
    assert (
        lines[3]
        == f"{path}: node 'other': next goes to 'nowhere', which is not defined"
    )
    assert lines[4:] == [
        f"{path}: node 'other': prompt 'nosuchprompt' has no file "
        f"{library.root / language / 'nosuchprompt.wav'}"
        for language in ("ru", "en")
    ]


def test_missing_prompt_in_the_second_language(
    tmp_path: Path, library: PromptLibrary
) -> None:
    (library.root / "en" / "goodbye.wav").unlink()
    path = write(tmp_path, GOOD)
    missing = library.root / "en" / "goodbye.wav"
    assert error_of(path, library) == (
        f"{path}: node 'bye': prompt 'goodbye' has no file {missing}"
    )


def test_missing_number_word(tmp_path: Path, library: PromptLibrary) -> None:
    (library.root / "ru" / "minute_few.wav").unlink()
    path = write(tmp_path, GOOD.replace('["goodbye"]', '["duration:${wait}"]'))
    missing = library.root / "ru" / "minute_few.wav"
    assert error_of(path, library) == (
        f"{path}: node 'bye': prompt 'duration:${{wait}}' needs the word file {missing}"
    )


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('invalid = "bye"', 'invalid = "bye"\ntimeout = "abc"',
         "node 'menu': timeout must be a number, got a string ('abc')"),
        ('invalid = "bye"', 'invalid = "bye"\nretries = 1.5',
         "node 'menu': retries must be an integer, got a number (1.5)"),
        ('invalid = "bye"', 'invalid = "bye"\ntimeout = 0',
         "node 'menu': timeout must be between 0.5 and 120, got 0"),
        ('next = "menu"', "next = 5",
         "node 'hello': next must be a string, got an integer (5)"),
        ('type = "play"', 'type = "speak"',
         "node 'hello': type 'speak' is not one of play, menu, collect, set, "
         "branch, http, language, queue, transfer, hangup"),
        ('next = "menu"', 'next = "menu"\ntimout = 3',
         "node 'hello': unknown key 'timout'"),
        ('invalid = "bye"', "",
         "node 'menu': invalid is missing"),
        ('choices = { "1" = "bye" }', 'choices = { "11" = "bye" }',
         "node 'menu': choices key '11' is not one DTMF key (0-9, *, #, A-D)"),
        ('prompts = ["greeting"]', 'prompts = "greeting"',
         "node 'hello': prompts must be an array of strings, got a string "
         "('greeting')"),
        ('prompts = ["greeting"]', 'prompts = ["say:5"]',
         "node 'hello': prompts: prompt 'say:5': 'say' is not one of number, "
         "duration, digits, silence"),
    ],
)  # fmt: skip
def test_wrong_types(
    tmp_path: Path, library: PromptLibrary, old: str, new: str, problem: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    assert error_of(path, library) == f"{path}: {problem}"


def test_not_toml(tmp_path: Path, library: PromptLibrary) -> None:
    path = write(tmp_path, "start = \n")
    assert error_of(path, library).startswith(f"{path}: not valid TOML: ")


def test_unknown_schedule_and_bad_hours(tmp_path: Path, library: PromptLibrary) -> None:
    text = (
        GOOD.replace('next = "menu"', 'next = "when"')
        + """
[nodes.when]
type = "branch"
default = "menu"
[[nodes.when.conditions]]
schedule = "office"
goto = "menu"
"""
    )
    path = write(tmp_path, text)
    assert error_of(path, library) == (
        f"{path}: node 'when': condition 1 uses schedule 'office', which is not defined"
    )
    path = write(tmp_path, text + '[schedules.office]\nmon = "9-18"\n')
    assert error_of(path, library) == (
        f"{path}: schedule 'office': mon '9-18' is not \"HH:MM-HH:MM\""
    )


def test_language_must_be_configured(tmp_path: Path, library: PromptLibrary) -> None:
    text = (
        GOOD.replace('next = "menu"', 'next = "lang"')
        + """
[nodes.lang]
type = "language"
choices = { "1" = "ru", "2" = "de" }
next = "menu"
"""
    )
    path = write(tmp_path, text)
    assert error_of(path, library) == (
        f"{path}: node 'lang': choice '2' names language 'de', not one of ru, en"
    )


def test_branch_conditions_are_compiled(library: PromptLibrary) -> None:
    text = (
        GOOD.replace('next = "menu"', 'next = "who"')
        + """
[nodes.who]
type = "branch"
default = "menu"
[[nodes.who.conditions]]
caller = "_8495XXXXXXX"
goto = "bye"
[[nodes.who.conditions]]
variable = "tier"
matches = "gold|platinum"
goto = "bye"
"""
    )
    flow = parse_flow(text, source="x.toml", name="x")
    node = flow.nodes["who"]
    assert isinstance(node, BranchNode)
    assert node.conditions[0].caller is not None
    assert node.conditions[0].caller.fullmatch("84951234567")
    assert node.conditions[1].matches is not None
    assert node.conditions[1].matches.fullmatch("gold")


def test_load_flows_reports_each_bad_file(
    tmp_path: Path, library: PromptLibrary
) -> None:
    folder = tmp_path / "flows"
    write(folder, GOOD, "good")
    bad = write(folder, GOOD.replace('"1" = "bye"', '"1" = "nowhere"'), "bad")
    result = load_flows(folder, library)
    assert list(result.flows) == ["good"]
    assert [str(e) for e in result.errors] == [
        f"{bad}: node 'menu': choice '1' goes to 'nowhere', which is not defined"
    ]


def test_the_demo_flow_is_valid_against_the_default_prompts() -> None:
    from ivr.prompts import DEFAULT_PROMPTS

    library = PromptLibrary(root=DEFAULT_PROMPTS)
    if not (DEFAULT_PROMPTS / "ru" / "greeting.wav").exists():
        pytest.fail("default prompts not built: run python prompts/build.py")
    result = load_flows(DEMO_FLOWS, library)
    assert result.errors == ()
    assert set(result.flows) == {"demo"}
