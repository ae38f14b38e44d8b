"""The dialplan: which destination a called number reaches, and who may reach it.

Pure and sans-IO. The B2BUA establishes who is calling (a :class:`Caller`: an
authenticated local user or a trunk identified by source address) and asks
:meth:`Dialplan.route` where the called number goes; the answer is a :data:`Route` (a
local user, an outbound trunk with the number as the carrier wants it, or a local
application such as the echo test, an IVR flow or an ACD queue) or a
:class:`RouteRefused` carrying the SIP status to answer with (RFC 3261 section 21.4).

Theory of operation
-------------------
Rules are tried in configuration order; the first rule whose pattern matches the
called number, whose ``from`` condition admits the caller and whose destination is
usable wins. After the configured rules comes one built-in rule: a local user calling
another local user's name reaches that user (extension-to-extension). Trunks reach
users only through configured rules, so a carrier cannot ring internal extensions that
the dialplan does not publish.

Pattern syntax (``Rule.pattern``):

* ``600`` -- exact: the whole called number, character for character.
* ``_9X.`` -- Asterisk-style: a leading ``_``, then ``X`` any digit, ``Z`` 1-9, ``N``
  2-9, ``[15-7]`` one of the listed digits or ranges, ``.`` one or more further
  characters, ``!`` zero or more further characters (both only at the end); any other
  character (digits, ``*``, ``#``, ``+``) stands for itself. Letters are matched
  case-insensitively for X/Z/N only.
* ``re:^10(0[1-9]|10)$`` -- a Python regular expression, matched against the whole
  number (``re.fullmatch``).

Destination syntax (``Rule.to``):

* ``user:NAME`` a local user; ``user`` alone: the user named by the (rewritten) called
  number, and the rule does not match when no such user exists;
* ``trunk:NAME`` an outbound trunk; the rewritten number goes through the trunk's
  :class:`NumberingPlan` (E.164 normalisation, then the carrier's format);
* ``app:NAME`` a local application with ``Rule.args``;
  ``ivr:FLOW`` is ``app:ivr`` with ``flow=FLOW``; ``queue:NAME`` is ``app:queue`` with
  ``queue=NAME``.

``strip`` removes that many leading characters of the called number, then ``prepend``
is put in front (``_9.`` with ``strip = 1``: "94951234567" -> "4951234567").

Toll-fraud protection: a rule that reaches a trunk raises ``RouteRefused(403)`` unless
the caller is a local user with ``allow_outbound``; calls from trunks never leave by a
trunk (no transit). A trunk that is down (``trunk_available`` says so) is skipped so
that a later rule can fail over; when nothing else matches the call gets 503. No match
at all is 404.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Container, Mapping, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# RFC 3261 section 21.4: the answers the dialplan gives.
STATUS_FORBIDDEN = 403  # 21.4.4: toll-fraud protection
STATUS_NOT_FOUND = 404  # 21.4.5: no rule for the number
STATUS_ADDRESS_INCOMPLETE = 484  # 21.4.22: the number cannot be a phone number
STATUS_SERVICE_UNAVAILABLE = 503  # 21.5.4: every trunk for the number is down

REASON_OUTBOUND_NOT_ALLOWED = "Outbound calls not allowed"
REASON_NOT_FOUND = "Not Found"
REASON_ADDRESS_INCOMPLETE = "Address Incomplete"
REASON_TRUNK_UNAVAILABLE = "Service Unavailable"

#: Values of ``Rule.from_``: which callers a rule admits.
FROM_VALUES = ("any", "users", "trunks")

#: Destination kinds (the part of ``Rule.to`` before the colon).
DESTINATION_KINDS = ("user", "trunk", "app", "ivr", "queue")

#: Values of ``NumberingPlan.number_format``: how a trunk wants called numbers.
#: ``e164`` "+74951234567"; ``digits`` "74951234567"; ``national`` "84951234567" at home
#: and international prefix + country code abroad ("810441234567");
#: ``as-dialled`` the rewritten number untouched.
NUMBER_FORMATS = ("e164", "digits", "national", "as-dialled")

# ITU-T E.164 section 6: at most 15 digits including the country code.
E164_MAX_DIGITS = 15

# Visual separators people write in numbers (RFC 3966 section 5.1.1 visual-separator).
_VISUAL_SEPARATORS = re.compile(r"[\s\-.()]")
_DIGITS = re.compile(r"[0-9]+")
_DIALLED = re.compile(r"\+?[0-9]+")
_PLAN_CLASSES = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]"}


# -- routes (the contract with the B2BUA) -------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Caller:
    """Who is calling, as established by the B2BUA before routing.

    :param kind: ``"user"`` (an authenticated local user) or ``"trunk"``.
    :param name: the user name or trunk name.
    :param number: the calling number (From user part, normalised).
    :param allow_outbound: users: ``User.allow_outbound``; trunks: False.
    """

    kind: str
    name: str
    number: str
    allow_outbound: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class ToUser:
    """Ring the registered contacts of a local user."""

    user: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ToTrunk:
    """Send the call out through a trunk; ``number`` is as the carrier wants it."""

    trunk: str
    number: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ToApp:
    """Hand the call to a local application.

    App names: ``echo``; ``tone`` (args ``frequency``, ``seconds``, then ``prompt``);
    ``ivr`` (``flow``) and ``queue`` (``queue``) once the IVR and ACD exist.
    """

    app: str
    args: tuple[tuple[str, str], ...] = ()

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The value of argument ``name``, or ``default``."""
        for key, value in self.args:
            if key == name:
                return value
        return default


Route = ToUser | ToTrunk | ToApp


class RouteRefused(Exception):
    """The call must be refused with ``status`` and ``reason`` (RFC 3261 21.4)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class DialplanError(ValueError):
    """A rule or numbering plan that cannot work (raised when it is built)."""


# -- numbers (ITU-T E.164) ----------------------------------------------------------


class NumberError(ValueError):
    """A number that cannot be turned into E.164."""


@dataclass(frozen=True, kw_only=True, slots=True)
class NumberingPlan:
    """How a trunk's country writes numbers, and how its carrier wants them.

    :param country_code: E.164 country code without "+" ("7", "44"); empty when
        unknown (numbers without a prefix are then taken to start with one).
    :param national_prefix: trunk prefix for national calls ("8" in Russia, "0" in
        the UK); empty if none.
    :param international_prefix: prefix for international calls ("810", "00").
    :param number_format: one of :data:`NUMBER_FORMATS` (default ``as-dialled``:
        no normalisation).
    """

    country_code: str = ""
    national_prefix: str = ""
    international_prefix: str = ""
    number_format: str = "as-dialled"

    def __post_init__(self) -> None:
        for name in ("country_code", "national_prefix", "international_prefix"):
            value = getattr(self, name)
            if value and not _DIGITS.fullmatch(value):
                raise DialplanError(f"{name} must be digits, got {value!r}")
        if self.number_format not in NUMBER_FORMATS:
            raise DialplanError(
                f"number_format must be one of {', '.join(NUMBER_FORMATS)}, "
                f"got {self.number_format!r}"
            )
        if self.number_format == "national" and not (
            self.country_code and self.international_prefix
        ):
            raise DialplanError(
                'number_format "national" needs country_code and international_prefix'
            )


def to_e164(number: str, plan: NumberingPlan) -> str:
    """Normalise a dialled number to E.164 ("+" and digits).

    With country code "7", national prefix "8" and international prefix "810",
    "+7 495 123-45-67", "84951234567", "74951234567" and "8107495..." all become
    "+74951234567". The international prefix is tried before the national one (they
    often share a first digit); a number starting with neither is taken as national
    significant digits when it does not already start with the country code.

    :raises NumberError: not a phone number (letters, empty, too long).
    """
    text = _VISUAL_SEPARATORS.sub("", number)
    if not _DIALLED.fullmatch(text):
        raise NumberError(f"not a phone number: {number!r}")
    if text.startswith("+"):
        digits = text[1:]
    elif plan.international_prefix and text.startswith(plan.international_prefix):
        digits = text[len(plan.international_prefix) :]
    elif (
        plan.country_code
        and plan.national_prefix
        and text.startswith(plan.national_prefix)
    ):
        digits = plan.country_code + text[len(plan.national_prefix) :]
    elif not plan.country_code or text.startswith(plan.country_code):
        digits = text
    else:
        digits = plan.country_code + text
    if not digits or digits.startswith("0"):  # E.164: no country code starts with 0
        raise NumberError(f"no country code in {number!r}")
    if len(digits) > E164_MAX_DIGITS:
        raise NumberError(f"longer than {E164_MAX_DIGITS} digits: {number!r}")
    return "+" + digits


def format_number(e164: str, plan: NumberingPlan) -> str:
    """Write an E.164 number ("+7495...") the way the trunk's carrier wants it."""
    if plan.number_format == "e164":
        return e164
    digits = e164.removeprefix("+")
    if plan.number_format == "digits":
        return digits
    # "national": home numbers with the trunk prefix, others with the exit code.
    if digits.startswith(plan.country_code):
        return plan.national_prefix + digits[len(plan.country_code) :]
    return plan.international_prefix + digits


def number_for_trunk(number: str, plan: NumberingPlan) -> str:
    """The dialled ``number`` as the trunk's carrier wants it.

    :raises NumberError: when normalisation is needed and the number is not one.
    """
    if plan.number_format == "as-dialled":
        return number
    return format_number(to_e164(number, plan), plan)


# -- rules --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Rule:
    """One ``[[dialplan]]`` entry, as written (see the module docstring for syntax).

    :param pattern: exact, ``_``-pattern or ``re:`` regular expression.
    :param to: destination (``user:NAME``, ``user``, ``trunk:NAME``, ``app:NAME``,
        ``ivr:FLOW``, ``queue:NAME``).
    :param from_: ``any``, ``users`` or ``trunks``.
    :param strip: leading characters removed from the called number.
    :param prepend: put in front after stripping.
    :param args: application arguments (``app:`` only), in order.
    """

    pattern: str
    to: str
    from_: str = "any"
    strip: int = 0
    prepend: str = ""
    args: tuple[tuple[str, str], ...] = ()


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression for ``pattern`` (whole-number match).

    :raises DialplanError: with one line saying what is wrong.
    """
    if pattern == "":
        raise DialplanError("pattern must not be empty")
    if pattern.startswith("re:"):
        try:
            return re.compile(pattern[3:])
        except re.error as exc:
            raise DialplanError(f"bad regular expression: {exc}") from None
    if not pattern.startswith("_"):
        return re.compile(re.escape(pattern))
    return re.compile(_translate_extension_pattern(pattern))


def _translate_extension_pattern(pattern: str) -> str:
    body = pattern[1:]
    if body == "":
        raise DialplanError('pattern "_" matches nothing; add digits or X/Z/N')
    parts: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        upper = char.upper()
        if upper in _PLAN_CLASSES:
            parts.append(_PLAN_CLASSES[upper])
        elif char in ".!":
            if index != len(body) - 1:
                raise DialplanError(f"{char!r} is only allowed at the end of a pattern")
            parts.append(".+" if char == "." else ".*")
        elif char == "[":
            end = body.find("]", index)
            if end == -1:
                raise DialplanError("unclosed '[' in pattern")
            parts.append(_character_class(body[index + 1 : end]))
            index = end
        elif char == "]":
            raise DialplanError("']' without '[' in pattern")
        else:
            parts.append(re.escape(char))
        index += 1
    return "".join(parts)


def _character_class(inside: str) -> str:
    if inside == "":
        raise DialplanError("empty '[]' in pattern")
    if not re.fullmatch(r"(?:[0-9*#+](?:-[0-9])?)+", inside):
        raise DialplanError(f"bad '[{inside}]': use digits and ranges like [1-5]")
    return "[" + inside.replace("*", r"\*").replace("+", r"\+") + "]"


def parse_destination(to: str) -> tuple[str, str]:
    """Split ``to`` into (kind, name); ``name`` is "" for a bare ``user``.

    :raises DialplanError: unknown kind or missing name.
    """
    kind, colon, name = to.partition(":")
    if kind not in DESTINATION_KINDS:
        raise DialplanError(
            f"destination {to!r} must start with one of "
            f"{', '.join(k + ':' for k in DESTINATION_KINDS)}"
        )
    if (colon or kind != "user") and name == "":
        raise DialplanError(f"destination {to!r} needs a name after {kind + ':'!r}")
    return kind, name


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    rule: Rule
    regex: re.Pattern[str]
    kind: str
    name: str


def _compile_rule(
    rule: Rule, *, users: Collection[str] | None, trunks: Collection[str]
) -> _CompiledRule:
    regex = compile_pattern(rule.pattern)
    kind, name = parse_destination(rule.to)
    if rule.from_ not in FROM_VALUES:
        raise DialplanError(
            f"from must be one of {', '.join(FROM_VALUES)}, got {rule.from_!r}"
        )
    if rule.strip < 0:
        raise DialplanError(f"strip must not be negative, got {rule.strip}")
    if kind == "trunk" and name not in trunks:
        raise DialplanError(f"unknown trunk {name!r}")
    if kind == "user" and name and users is not None and name not in users:
        raise DialplanError(f"unknown user {name!r}")
    if rule.args and kind != "app":
        raise DialplanError("args are only for app: destinations")
    return _CompiledRule(rule, regex, kind, name)


def check_rule(
    rule: Rule, *, users: Collection[str] | None, trunks: Collection[str]
) -> None:
    """Check ``rule`` as :class:`Dialplan` would; for configuration validation.

    :param users: known user names (``None``: do not check ``user:NAME``).
    :raises DialplanError: with one line saying what is wrong.
    """
    _compile_rule(rule, users=users, trunks=trunks)


# -- the dialplan -------------------------------------------------------------------


def _always_available(trunk: str) -> bool:
    return True


class Dialplan:
    """Routes called numbers by the configured rules; see the module docstring.

    :param rules: the ``[[dialplan]]`` rules, in order.
    :param users: local user names (anything with ``__contains__``, e.g.
        ``UserDirectory``); consulted at routing time, so it may change.
    :param trunks: names of the configured trunks.
    :param numbering: each trunk's :class:`NumberingPlan` (absent: ``as-dialled``).
    :param trunk_available: says whether a trunk is up (OPTIONS monitoring); a
        down trunk is skipped.
    :raises DialplanError: for a rule that cannot work.
    """

    def __init__(
        self,
        *,
        rules: Sequence[Rule],
        users: Container[str],
        trunks: Collection[str],
        numbering: Mapping[str, NumberingPlan] | None = None,
        trunk_available: Callable[[str], bool] = _always_available,
    ) -> None:
        self.users = users
        self.trunks = frozenset(trunks)
        self.numbering = dict(numbering or {})
        self.trunk_available = trunk_available
        self._rules = [
            _compile_rule(rule, users=None, trunks=self.trunks) for rule in rules
        ]

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(compiled.rule for compiled in self._rules)

    def route(self, *, called: str, caller: Caller) -> Route:
        """Where a call from ``caller`` to ``called`` goes.

        :raises RouteRefused: 403 toll fraud, 404 no route, 484 the number is not a
            phone number for the trunk, 503 every matching trunk is down.
        """
        trunk_down = False
        for compiled in self._rules:
            if not self._admits(compiled.rule.from_, caller):
                continue
            if not compiled.regex.fullmatch(called):
                continue
            number = compiled.rule.prepend + called[compiled.rule.strip :]
            if compiled.kind == "trunk":
                if not self._trunk_allowed(caller):
                    logger.warning(
                        "refused %s %r -> %s: caller may not call out (toll fraud)",
                        caller.kind,
                        caller.name,
                        called,
                    )
                    raise RouteRefused(STATUS_FORBIDDEN, REASON_OUTBOUND_NOT_ALLOWED)
                if not self.trunk_available(compiled.name):
                    logger.info("trunk %s is down; trying the next rule", compiled.name)
                    trunk_down = True
                    continue
                return self._to_trunk(compiled.name, number)
            route = self._local_route(compiled, number)
            if route is not None:
                return route

        # Built-in: extension-to-extension between local users.
        if caller.kind == "user" and called in self.users:
            return ToUser(user=called)
        if trunk_down:
            raise RouteRefused(STATUS_SERVICE_UNAVAILABLE, REASON_TRUNK_UNAVAILABLE)
        raise RouteRefused(STATUS_NOT_FOUND, REASON_NOT_FOUND)

    @staticmethod
    def _admits(from_: str, caller: Caller) -> bool:
        if from_ == "users":
            return caller.kind == "user"
        if from_ == "trunks":
            return caller.kind == "trunk"
        return True

    def _local_route(self, compiled: _CompiledRule, number: str) -> Route | None:
        kind, name = compiled.kind, compiled.name
        if kind == "user":
            user = name or number
            if user in self.users:
                return ToUser(user=user)
            if name:  # a named user that has since gone: a broken rule, say so
                logger.warning("dialplan rule %r names unknown user", compiled.rule)
                raise RouteRefused(STATUS_NOT_FOUND, REASON_NOT_FOUND)
            return None
        if kind == "ivr":
            return ToApp(app="ivr", args=(("flow", name),))
        if kind == "queue":
            return ToApp(app="queue", args=(("queue", name),))
        return ToApp(app=name, args=compiled.rule.args)

    def _to_trunk(self, trunk: str, number: str) -> ToTrunk:
        plan = self.numbering.get(trunk, NumberingPlan())
        try:
            return ToTrunk(trunk=trunk, number=number_for_trunk(number, plan))
        except NumberError as exc:
            logger.info("trunk %s: %s", trunk, exc)
            raise RouteRefused(
                STATUS_ADDRESS_INCOMPLETE, REASON_ADDRESS_INCOMPLETE
            ) from None

    @staticmethod
    def _trunk_allowed(caller: Caller) -> bool:
        # Toll-fraud protection: only authenticated users allowed to dial out.
        return caller.kind == "user" and caller.allow_outbound
