"""Reading and validating flow files (TOML, one flow per file, named by the file).

Why so strict: flows are edited by contact-centre staff, not developers, and a flow that
loads but strands callers (a menu choice to a node that does not exist, a prompt file
that is missing, a branch that loops forever without asking the caller anything) fails
in front of customers. So every problem found is one :class:`FlowError` naming the
file, the node and what to change, raised at start-up, on reload and by
``ccswitch flows check``, and a flow that fails never replaces a running one.

Checks, in order: the file is TOML; keys and types of every node (unknown keys are
errors: a misspelt ``timout`` would silently be the default); the start node and every
node named by another exists (dangling names), schedules named by branches exist;
every node is reachable from the start; no cycle runs through nodes that all skip
caller input (play, set, branch, http, queue, transfer); every prompt file exists
in every configured language.
"""

from __future__ import annotations

import datetime
import logging
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr import speech
from ivr.flow import (
    DTMF_KEYS,
    NODE_CLASSES,
    VARIABLE_NAME,
    BranchNode,
    CollectNode,
    Condition,
    Flow,
    HangupNode,
    HttpMethod,
    HttpNode,
    LanguageNode,
    MenuNode,
    Node,
    NodeType,
    PlayNode,
    PromptItem,
    PromptKind,
    QueueNode,
    Schedule,
    SetNode,
    TransferNode,
)
from ivr.prompts import PromptLibrary
from switch.dialplan import DialplanError, compile_pattern

logger = logging.getLogger(__name__)

FLOW_SUFFIX = ".toml"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])")
#: Bounds on waits a flow may ask for (seconds): above them a caller hears nothing.
MAX_TIMEOUT = 120.0
MAX_RETRIES = 10
MAX_DIGITS = 64


class FlowError(ValueError):
    """A flow file problem: ``FILE: node 'NAME': problem`` on one line."""

    def __init__(self, source: str, problem: str, *, node: str | None = None) -> None:
        self.source = source
        self.node = node
        self.problem = problem
        where = f"node {node!r}: " if node is not None else ""
        super().__init__(f"{source}: {where}{problem}")
        #: Every problem this error stands for (:class:`FlowErrors` holds several).
        self.errors: tuple[FlowError, ...] = (self,)


class FlowErrors(FlowError):
    """Several problems of one flow file, each a :class:`FlowError` (in ``errors``).

    A flow is checked to the end so that one run of ``ccswitch flows check`` lists
    every problem of a file, not the first one per run; the message is the first
    problem and how many others follow.
    """

    def __init__(self, errors: list[FlowError]) -> None:
        first = errors[0]
        more = len(errors) - 1
        super().__init__(first.source, first.problem, node=first.node)
        self.args = (f"{first} (and {more} more)",)
        self.errors = tuple(errors)


def _raise_all(errors: list[FlowError]) -> None:
    """Raise ``errors``: nothing when empty, the one error, or all of them."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise FlowErrors(errors)


def _describe(value: object) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    kind = kinds.get(type(value))
    if kind is not None:
        return f"{kind} ({value!r})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


class _Table:
    """Typed reads from one TOML table; whatever is left unread is an unknown key."""

    def __init__(self, table: dict[str, Any], error: Any) -> None:
        self.table = dict(table)
        self.error = error

    def _take(self, key: str, default: Any) -> Any:
        if key in self.table:
            return self.table.pop(key)
        if default is _MISSING:
            raise self.error(f"{key} is missing")
        return default

    def text(self, key: str, default: Any = None) -> Any:
        value = self._take(key, default if default is not None else _MISSING)
        if not isinstance(value, str):
            raise self.error(f"{key} must be a string, got {_describe(value)}")
        return value

    def optional_text(self, key: str) -> str | None:
        if key not in self.table:
            return None
        text: str = self.text(key)
        return text

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = self._take(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"{key} must be a number, got {_describe(value)}")
        if not low <= value <= high:
            raise self.error(f"{key} must be between {low:g} and {high:g}, got {value}")
        return float(value)

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self._take(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"{key} must be an integer, got {_describe(value)}")
        if not low <= value <= high:
            raise self.error(f"{key} must be between {low} and {high}, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._take(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{key} must be true or false, got {_describe(value)}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._take(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(
                f"{key} must be an array of strings, got {_describe(value)}"
            )
        return tuple(value)

    def mapping(self, key: str, *, required: bool = False) -> dict[str, str]:
        value = self._take(key, _MISSING if required else {})
        if not isinstance(value, dict) or not all(
            isinstance(v, str) for v in value.values()
        ):
            raise self.error(
                f"{key} must be a table of strings, got {_describe(value)}"
            )
        return value

    def prompts(self, key: str) -> tuple[PromptItem, ...]:
        items = []
        for text in self.strings(key):
            try:
                items.append(PromptItem.parse(text))
            except ValueError as exc:
                raise self.error(f"{key}: {exc}") from None
        return tuple(items)

    def done(self) -> None:
        if self.table:
            raise self.error(f"unknown key {sorted(self.table)[0]!r}")


_MISSING = object()


def _keys(choices: dict[str, str], error: Any, what: str = "choices") -> None:
    for key in choices:
        if len(key) != 1 or key not in DTMF_KEYS:
            raise error(f"{what} key {key!r} is not one DTMF key (0-9, *, #, A-D)")


def _variable(name: str, error: Any, what: str) -> str:
    if not VARIABLE_NAME.fullmatch(name):
        raise error(f"{what} {name!r} is not a variable name (letters, digits, _)")
    return name


def _pattern(text: str, error: Any, what: str) -> re.Pattern[str]:
    try:
        if what == "matches":
            return re.compile(text)
        return compile_pattern(text)
    except (DialplanError, re.error) as exc:
        raise error(f"{what} {text!r}: {exc}") from None


def _condition(raw: object, index: int, error: Any) -> Condition:
    def fail(problem: str) -> FlowError:
        found: FlowError = error(f"conditions[{index}]: {problem}")
        return found

    if not isinstance(raw, dict):
        raise fail(f"must be a table, got {_describe(raw)}")
    table = _Table(raw, fail)
    caller = table.optional_text("caller")
    variable = table.optional_text("variable")
    equals = table.optional_text("equals")
    matches = table.optional_text("matches")
    condition = Condition(
        goto=table.text("goto"),
        caller=_pattern(caller, fail, "caller") if caller is not None else None,
        variable=_variable(variable, fail, "variable") if variable else None,
        equals=equals,
        matches=_pattern(matches, fail, "matches") if matches is not None else None,
        schedule=table.optional_text("schedule"),
        open=table.boolean("open", True),
    )
    table.done()
    if (equals is not None or matches is not None) and variable is None:
        raise fail("equals and matches need a variable")
    if variable is not None and equals is None and matches is None:
        raise fail("variable needs equals or matches")
    if caller is None and variable is None and condition.schedule is None:
        raise fail("give caller, variable or schedule")
    return condition


def _node(name: str, raw: object, source: str, languages: tuple[str, ...]) -> Node:
    def error(problem: str) -> FlowError:
        return FlowError(source, problem, node=name)

    if not isinstance(raw, dict):
        raise error(f"must be a table, got {_describe(raw)}")
    table = _Table(raw, error)
    type_name = table.text("type")
    try:
        node_type = NodeType(type_name)
    except ValueError:
        kinds = ", ".join(t.value for t in NodeType)
        raise error(f"type {type_name!r} is not one of {kinds}") from None
    common: dict[str, Any] = {"name": name, "prompts": table.prompts("prompts")}
    node: Node
    if node_type is NodeType.PLAY:
        node = PlayNode(
            **common, next=table.text("next"), barge_in=table.boolean("barge_in", True)
        )
    elif node_type is NodeType.MENU:
        choices = table.mapping("choices", required=True)
        _keys(choices, error)
        if not choices:
            raise error("choices must not be empty")
        node = MenuNode(
            **common,
            choices=tuple(choices.items()),
            invalid=table.text("invalid"),
            no_input=table.optional_text("no_input"),
            timeout=table.number("timeout", 5.0, low=0.5, high=MAX_TIMEOUT),
            retries=table.integer("retries", 2, low=0, high=MAX_RETRIES),
            retry_prompts=table.prompts("retry_prompts"),
        )
    elif node_type is NodeType.COLLECT:
        terminator = table.text("terminator", "#")
        if len(terminator) > 1 or (terminator and terminator not in DTMF_KEYS):
            raise error(f'terminator {terminator!r} is not one DTMF key or ""')
        node = CollectNode(
            **common,
            variable=_variable(table.text("variable"), error, "variable"),
            next=table.text("next"),
            invalid=table.optional_text("invalid"),
            min_digits=table.integer("min_digits", 1, low=0, high=MAX_DIGITS),
            max_digits=table.integer("max_digits", 1, low=1, high=MAX_DIGITS),
            terminator=terminator,
            timeout=table.number("timeout", 5.0, low=0.5, high=MAX_TIMEOUT),
        )
        if node.min_digits > node.max_digits:
            raise error("min_digits is greater than max_digits")
    elif node_type is NodeType.SET:
        values = table.mapping("values", required=True)
        for variable in values:
            _variable(variable, error, "values key")
        node = SetNode(**common, values=tuple(values.items()), next=table.text("next"))
    elif node_type is NodeType.BRANCH:
        raw_conditions = table._take("conditions", [])
        if not isinstance(raw_conditions, list):
            raise error(
                f"conditions must be an array of tables, got {_describe(raw_conditions)}"
            )
        node = BranchNode(
            **common,
            conditions=tuple(
                _condition(c, i, error) for i, c in enumerate(raw_conditions, 1)
            ),
            default=table.text("default"),
        )
    elif node_type is NodeType.HTTP:
        method = table.text("method", "GET").upper()
        if method not in HttpMethod.__members__:
            raise error(f"method {method!r} is not GET or POST")
        fields = table.mapping("fields")
        for variable in fields:
            _variable(variable, error, "fields key")
        node = HttpNode(
            **common,
            url=table.text("url"),
            next=table.text("next"),
            fallback=table.text("fallback"),
            method=HttpMethod(method),
            timeout=table.number("timeout", 2.0, low=0.1, high=30.0),
            fields=tuple(fields.items()),
        )
    elif node_type is NodeType.LANGUAGE:
        choices = table.mapping("choices", required=True)
        _keys(choices, error)
        for key, language in choices.items():
            if language not in languages:
                raise error(
                    f"choice {key!r} names language {language!r}, "
                    f"not one of {', '.join(languages)}"
                )
        node = LanguageNode(
            **common,
            choices=tuple(choices.items()),
            next=table.text("next"),
            timeout=table.number("timeout", 5.0, low=0.5, high=MAX_TIMEOUT),
        )
    elif node_type is NodeType.QUEUE:
        node = QueueNode(
            **common,
            queue=table.text("queue"),
            fallback=table.text("fallback"),
            priority=table.text("priority", "0"),
            skills=table.strings("skills"),
        )
    elif node_type is NodeType.TRANSFER:
        ring = table._take("ring_timeout", None)
        if ring is not None:
            table.table["ring_timeout"] = ring
            ring = table.number("ring_timeout", 30.0, low=1.0, high=600.0)
        node = TransferNode(
            **common,
            target=table.text("target"),
            fallback=table.optional_text("fallback"),
            ring_timeout=ring,
        )
    else:
        node = HangupNode(**common)
    assert type(node) is NODE_CLASSES[node_type]
    table.done()
    return node


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _schedule(name: str, raw: object, source: str) -> Schedule:
    def error(problem: str) -> FlowError:
        return FlowError(source, f"schedule {name!r}: {problem}")

    if not isinstance(raw, dict):
        raise error(f"must be a table, got {_describe(raw)}")
    table = _Table(raw, error)
    hours: list[tuple[tuple[int, int], ...]] = []
    for day in WEEKDAYS:
        ranges = []
        for text in (t.strip() for t in table.text(day, "-").split(",")):
            if text in ("", "-"):
                continue
            found = _HOURS.fullmatch(text)
            if found is None:
                raise error(f'{day} {text!r} is not "HH:MM-HH:MM"')
            start, end = (_minutes(part) for part in text.split("-"))
            if end <= start:
                raise error(f"{day} {text!r} ends before it starts")
            ranges.append((start, end))
        hours.append(tuple(ranges))
    holidays = set()
    for text in table.strings("holidays"):
        try:
            holidays.add(datetime.date.fromisoformat(text))
        except ValueError:
            raise error(f"holiday {text!r} is not a date (YYYY-MM-DD)") from None
    table.done()
    return Schedule(name=name, hours=tuple(hours), holidays=frozenset(holidays))


def parse_flow(
    text: str, *, source: str, name: str, languages: tuple[str, ...] = ("ru", "en")
) -> Flow:
    """Parse and check the structure of one flow (no prompt files are looked at).

    :raises FlowError: one problem; :class:`FlowErrors` for several.
    """
    flow, errors = _parse_flow(text, source=source, name=name, languages=languages)
    _raise_all(errors)
    return flow


def _parse_flow(
    text: str, *, source: str, name: str, languages: tuple[str, ...]
) -> tuple[Flow, list[FlowError]]:
    """The flow with the nodes that parsed, and the problems of the file.

    :raises FlowError: a problem of the whole file (not TOML, no nodes table...).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FlowError(source, f"not valid TOML: {exc}") from None

    def error(problem: str) -> FlowError:
        return FlowError(source, problem)

    top = _Table(data, error)
    start = top.text("start")
    language = top.optional_text("language")
    if language is not None and language not in languages:
        raise error(f"language {language!r} is not one of {', '.join(languages)}")
    raw_schedules = top._take("schedules", {})
    raw_nodes = top._take("nodes", _MISSING)
    if not isinstance(raw_schedules, dict):
        raise error(f"schedules must be a table, got {_describe(raw_schedules)}")
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        raise error("nodes must be a table of node tables ([nodes.NAME])")
    top.done()
    errors: list[FlowError] = []
    schedules = {}
    for schedule_name, raw in raw_schedules.items():
        try:
            schedules[schedule_name] = _schedule(schedule_name, raw, source)
        except FlowError as exc:
            errors.append(exc)
    nodes = {}
    for node_name, raw in raw_nodes.items():
        try:
            nodes[node_name] = _node(node_name, raw, source, languages)
        except FlowError as exc:  # the node's first problem; the others go on
            errors.append(exc)
    flow = Flow(
        name=name,
        source=source,
        start=start,
        nodes=nodes,
        schedules=schedules,
        language=language,
    )
    errors += _graph_problems(flow, set(raw_nodes), set(raw_schedules))
    return flow, errors


def _graph_problems(
    flow: Flow, defined: set[str], defined_schedules: set[str]
) -> list[FlowError]:
    """Dangling edges and schedules, unreachable nodes, loops without input.

    ``defined`` names every node of the file, parsed or not: an edge to a node with a
    problem of its own is not dangling. Where a node did not parse, its edges are
    unknown, so reachability and loops are left until it does.
    """
    source, nodes = flow.source, flow.nodes
    if flow.start not in defined:
        return [FlowError(source, f"start node {flow.start!r} is not defined")]
    problems = []
    for node in nodes.values():
        for what, target in node.edges():
            if target not in defined:
                problems.append(
                    FlowError(
                        source,
                        f"{what} goes to {target!r}, which is not defined",
                        node=node.name,
                    )
                )
        if isinstance(node, BranchNode):
            for index, condition in enumerate(node.conditions, 1):
                if condition.schedule and condition.schedule not in defined_schedules:
                    problems.append(
                        FlowError(
                            source,
                            f"condition {index} uses schedule "
                            f"{condition.schedule!r}, which is not defined",
                            node=node.name,
                        )
                    )
    if problems or len(nodes) < len(defined):
        return problems
    reached = _reachable(flow)
    for name in nodes:
        if name not in reached:
            problems.append(
                FlowError(
                    source,
                    "unreachable: no path from the start node "
                    f"{flow.start!r} leads here",
                    node=name,
                )
            )
    loop = _loop_without_input(flow)
    if loop:
        path = " -> ".join([*loop, loop[0]])
        problems.append(
            FlowError(
                source,
                f"loop {path} takes no caller input; put a menu, collect or "
                "language node in it",
                node=loop[0],
            )
        )
    return problems


def _reachable(flow: Flow) -> set[str]:
    seen = {flow.start}
    todo = [flow.start]
    while todo:
        for _, target in flow.nodes[todo.pop()].edges():
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _loop_without_input(flow: Flow) -> list[str]:
    """A cycle through nodes none of which waits for the caller, or []."""
    nodes = flow.nodes
    # Iterative DFS colouring: 0 new, 1 on the current path, 2 finished.
    colour = dict.fromkeys(nodes, 0)
    for root in nodes:
        if colour[root] or nodes[root].takes_input:
            continue
        path = [root]
        stacks = [iter(nodes[root].edges())]
        colour[root] = 1
        while stacks:
            for _, target in stacks[-1]:
                if nodes[target].takes_input:
                    continue
                if colour[target] == 1:
                    return path[path.index(target) :]
                if colour[target] == 0:
                    colour[target] = 1
                    path.append(target)
                    stacks.append(iter(nodes[target].edges()))
                    break
            else:
                colour[path.pop()] = 2
                stacks.pop()
    return []


def _prompt_items(node: Node) -> Iterable[PromptItem]:
    yield from node.prompts
    if isinstance(node, MenuNode):
        yield from node.retry_prompts


def check_prompts(flow: Flow, library: PromptLibrary) -> None:
    """Every prompt file the flow can play exists in every configured language.

    :raises FlowError: one missing file; :class:`FlowErrors` for several.
    """
    _raise_all(_prompt_problems(flow, library))


def _prompt_problems(flow: Flow, library: PromptLibrary) -> list[FlowError]:
    """A problem for each prompt file missing in a language."""
    problems: list[FlowError] = []
    for node in flow.nodes.values():
        for item in _prompt_items(node):
            if item.kind is PromptKind.SILENCE:
                continue
            for language in library.languages:
                if item.kind is PromptKind.FILE:
                    if not library.exists(item.value, language):
                        problems.append(
                            FlowError(
                                flow.source,
                                f"prompt {item.value!r} has no file "
                                f"{library.path(item.value, language)}",
                                node=node.name,
                            )
                        )
                    continue
                missing = [
                    w for w in speech.WORDS[language] if not library.exists(w, language)
                ]
                if missing:  # the first word file says which folder is short
                    problems.append(
                        FlowError(
                            flow.source,
                            f"prompt '{item.kind.value}:{item.value}' needs the word "
                            f"file {library.path(missing[0], language)}",
                            node=node.name,
                        )
                    )
    return problems


def load_flow(path: Path, library: PromptLibrary) -> Flow:
    """Read, parse and fully check one flow file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError(str(path), f"cannot read: {exc}") from None
    flow, errors = _parse_flow(
        text, source=str(path), name=path.stem, languages=library.languages
    )
    errors += _prompt_problems(flow, library)  # of the nodes that parsed
    _raise_all(errors)
    return flow


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadResult:
    """Flows that loaded, and every problem of the files that did not."""

    flows: dict[str, Flow]
    errors: tuple[FlowError, ...]


def load_flows(folder: Path, library: PromptLibrary) -> LoadResult:
    """Every ``*.toml`` in ``folder`` (sorted), each checked on its own."""
    if not folder.is_dir():
        error = FlowError(str(folder), "not a folder of flow files")
        return LoadResult(flows={}, errors=(error,))
    flows: dict[str, Flow] = {}
    errors: list[FlowError] = []
    for path in sorted(folder.glob(f"*{FLOW_SUFFIX}")):
        try:
            flows[path.stem] = load_flow(path, library)
        except FlowError as exc:
            errors.extend(exc.errors)
    return LoadResult(flows=flows, errors=tuple(errors))
