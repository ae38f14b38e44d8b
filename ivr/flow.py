"""The IVR flow model: a named graph of nodes that a caller walks through.

A flow is what contact-centre staff edit (one TOML file per flow, read by
:mod:`ivr.loader`); it is plain frozen data so that a loaded flow can be shared by every
call that runs it and replaced as a whole on reload without touching calls in progress.
Each node names the nodes it may go to; :meth:`Node.edges` lists them so that validation
(dangling names, unreachable nodes, loops without caller input) needs no knowledge of
node kinds.

Prompt items are short strings resolved per call: ``"greeting"`` is the prompt file
``greeting.wav`` in the caller's language folder, ``"number:${var}"``,
``"duration:${var}"`` (seconds) and ``"digits:${var}"`` speak a value with
:mod:`ivr.speech`, ``"silence:300"`` is a pause in milliseconds. ``${name}`` in any
template is a call variable (``caller``, ``called``, ``language`` and whatever the flow
set, collected or fetched).
"""

from __future__ import annotations

import datetime
import enum
import logging
import re
from dataclasses import dataclass, field
from typing import ClassVar

logger = logging.getLogger(__name__)

#: ``${name}`` in templates; names as for variables.
TEMPLATE_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Variable names a flow may set.
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The keys of a telephone keypad (ITU-T E.161), plus A-D of the 16-key pad (RFC 4733).
DTMF_KEYS = "0123456789*#ABCD"


class NodeType(enum.Enum):
    """The node kinds a flow file may use (its ``type`` key)."""

    PLAY = "play"
    MENU = "menu"
    COLLECT = "collect"
    SET = "set"
    BRANCH = "branch"
    HTTP = "http"
    LANGUAGE = "language"
    QUEUE = "queue"
    TRANSFER = "transfer"
    HANGUP = "hangup"


class PromptKind(enum.Enum):
    """What a prompt item says."""

    FILE = "file"
    NUMBER = "number"
    DURATION = "duration"
    DIGITS = "digits"
    SILENCE = "silence"


class HttpMethod(enum.Enum):
    GET = "GET"
    POST = "POST"


@dataclass(frozen=True, kw_only=True, slots=True)
class PromptItem:
    """One item of a node's ``prompts``: a file name, or a value to speak."""

    kind: PromptKind
    value: str

    @classmethod
    def parse(cls, text: str) -> PromptItem:
        """``"greeting"``, ``"number:${n}"``, ``"silence:300"``...; ValueError if bad."""
        head, colon, rest = text.partition(":")
        if not colon:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", text):
                raise ValueError(f"prompt {text!r} is not a file name (letters, _.-)")
            return cls(kind=PromptKind.FILE, value=text)
        try:
            kind = PromptKind(head)
        except ValueError:
            kinds = ", ".join(k.value for k in PromptKind if k is not PromptKind.FILE)
            raise ValueError(
                f"prompt {text!r}: {head!r} is not one of {kinds}"
            ) from None
        if kind is PromptKind.FILE or not rest:
            raise ValueError(f"prompt {text!r} needs a value after {head + ':'!r}")
        if kind is PromptKind.SILENCE and not rest.isdigit():
            raise ValueError(f"prompt {text!r}: silence takes milliseconds")
        return cls(kind=kind, value=rest)


@dataclass(frozen=True, kw_only=True, slots=True)
class Node:
    """Base of every node; ``name`` is its key in the flow file."""

    type: ClassVar[NodeType]
    #: True for nodes that wait for the caller (a loop through one is not endless).
    takes_input: ClassVar[bool] = False
    name: str
    prompts: tuple[PromptItem, ...] = ()

    def edges(self) -> tuple[tuple[str, str], ...]:
        """(what, target node) pairs, e.g. ``("next", "menu")``."""
        return ()


@dataclass(frozen=True, kw_only=True, slots=True)
class PlayNode(Node):
    """Play prompts, then go on; a key pressed meanwhile stops it and stays queued."""

    type: ClassVar[NodeType] = NodeType.PLAY
    next: str
    barge_in: bool = True

    def edges(self) -> tuple[tuple[str, str], ...]:
        return (("next", self.next),)


@dataclass(frozen=True, kw_only=True, slots=True)
class MenuNode(Node):
    """Prompt, take one key, go where it says; ``retries`` more tries, then ``invalid``.

    ``no_input`` (default ``invalid``) is where silence ends up after the last try.
    """

    type: ClassVar[NodeType] = NodeType.MENU
    takes_input: ClassVar[bool] = True
    choices: tuple[tuple[str, str], ...]
    invalid: str
    no_input: str | None = None
    timeout: float = 5.0
    retries: int = 2
    retry_prompts: tuple[PromptItem, ...] = ()

    def edges(self) -> tuple[tuple[str, str], ...]:
        edges = [(f"choice {key!r}", target) for key, target in self.choices]
        edges.append(("invalid", self.invalid))
        if self.no_input is not None:
            edges.append(("no_input", self.no_input))
        return tuple(edges)


@dataclass(frozen=True, kw_only=True, slots=True)
class CollectNode(Node):
    """Prompt, collect digits into ``variable``; fewer than ``min_digits``: ``invalid``."""

    type: ClassVar[NodeType] = NodeType.COLLECT
    takes_input: ClassVar[bool] = True
    variable: str
    next: str
    invalid: str | None = None
    min_digits: int = 1
    max_digits: int = 1
    terminator: str = "#"
    timeout: float = 5.0

    def edges(self) -> tuple[tuple[str, str], ...]:
        edges = [("next", self.next)]
        if self.invalid is not None:
            edges.append(("invalid", self.invalid))
        return tuple(edges)


@dataclass(frozen=True, kw_only=True, slots=True)
class SetNode(Node):
    """Set call variables from templates."""

    type: ClassVar[NodeType] = NodeType.SET
    values: tuple[tuple[str, str], ...]
    next: str

    def edges(self) -> tuple[tuple[str, str], ...]:
        return (("next", self.next),)


@dataclass(frozen=True, kw_only=True, slots=True)
class Condition:
    """One test of a branch; every test given must hold. ``goto`` where it leads.

    ``caller``: a dialplan pattern ("_8495X.", "re:...") the caller number matches;
    ``variable`` with ``equals`` or ``matches`` (a regular expression); ``schedule``:
    the named schedule is open now (``open`` false: it is closed).
    """

    goto: str
    caller: re.Pattern[str] | None = None
    variable: str | None = None
    equals: str | None = None
    matches: re.Pattern[str] | None = None
    schedule: str | None = None
    open: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class BranchNode(Node):
    """The first condition that holds decides; none holds: ``default``."""

    type: ClassVar[NodeType] = NodeType.BRANCH
    conditions: tuple[Condition, ...]
    default: str

    def edges(self) -> tuple[tuple[str, str], ...]:
        edges = [(f"condition {i}", c.goto) for i, c in enumerate(self.conditions, 1)]
        edges.append(("default", self.default))
        return tuple(edges)


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpNode(Node):
    """A data dip: ask ``url`` about the caller; JSON ``fields`` become variables.

    ``fields`` maps a variable to a top-level key of the JSON object answered. Any
    failure (timeout, connection refused, non-2xx, not a JSON object, a field missing)
    goes to ``fallback``.
    """

    type: ClassVar[NodeType] = NodeType.HTTP
    url: str
    next: str
    fallback: str
    method: HttpMethod = HttpMethod.GET
    timeout: float = 2.0
    fields: tuple[tuple[str, str], ...] = ()

    def edges(self) -> tuple[tuple[str, str], ...]:
        return (("next", self.next), ("fallback", self.fallback))


@dataclass(frozen=True, kw_only=True, slots=True)
class LanguageNode(Node):
    """Prompt, take one key choosing the language; no (known) key keeps the current."""

    type: ClassVar[NodeType] = NodeType.LANGUAGE
    takes_input: ClassVar[bool] = True
    choices: tuple[tuple[str, str], ...]
    next: str
    timeout: float = 5.0

    def edges(self) -> tuple[tuple[str, str], ...]:
        return (("next", self.next),)


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueNode(Node):
    """Hand the caller to an ACD queue; when no queue takes the call: ``fallback``.

    ``priority`` and ``skills`` are templates (taken from variables).
    """

    type: ClassVar[NodeType] = NodeType.QUEUE
    queue: str
    fallback: str
    priority: str = "0"
    skills: tuple[str, ...] = ()

    def edges(self) -> tuple[tuple[str, str], ...]:
        return (("fallback", self.fallback),)


@dataclass(frozen=True, kw_only=True, slots=True)
class TransferNode(Node):
    """Bridge the caller to ``target`` ("user:NAME" or a number through the dialplan).

    Not answered (busy, no answer, unknown): ``fallback``, or hang up when not given.
    """

    type: ClassVar[NodeType] = NodeType.TRANSFER
    target: str
    fallback: str | None = None
    ring_timeout: float | None = None

    def edges(self) -> tuple[tuple[str, str], ...]:
        return (("fallback", self.fallback),) if self.fallback else ()


@dataclass(frozen=True, kw_only=True, slots=True)
class HangupNode(Node):
    """Play prompts (a goodbye), then end the call."""

    type: ClassVar[NodeType] = NodeType.HANGUP


NODE_CLASSES: dict[NodeType, type[Node]] = {
    cls.type: cls
    for cls in (
        PlayNode,
        MenuNode,
        CollectNode,
        SetNode,
        BranchNode,
        HttpNode,
        LanguageNode,
        QueueNode,
        TransferNode,
        HangupNode,
    )
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Schedule:
    """Opening hours per weekday (0 Monday) as minute ranges, and closed dates.

    Times are wall-clock times in the flow's time zone; a range ``(start, end)`` is open
    from ``start`` inclusive to ``end`` exclusive, minutes after midnight.
    """

    name: str
    hours: tuple[tuple[tuple[int, int], ...], ...]
    holidays: frozenset[datetime.date] = frozenset()

    def is_open(self, local: datetime.datetime) -> bool:
        """Whether ``local`` (already in the flow's time zone) is in opening hours."""
        if local.date() in self.holidays:
            return False
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.hours[local.weekday()])


@dataclass(frozen=True, kw_only=True, slots=True)
class Flow:
    """A validated flow; ``source`` is the file it came from."""

    name: str
    source: str
    start: str
    nodes: dict[str, Node] = field(hash=False)
    schedules: dict[str, Schedule] = field(default_factory=dict, hash=False)
    language: str | None = None

    def node(self, name: str) -> Node:
        return self.nodes[name]


def render(template: str, variables: dict[str, str]) -> str:
    """``template`` with each ``${name}`` replaced (an unknown name gives "")."""
    return TEMPLATE_VARIABLE.sub(lambda m: variables.get(m.group(1), ""), template)
