"""Start-up configuration: one TOML file, checked completely before anything binds.

Why this module exists: a switch that starts with a typo in its configuration fails
later, at the first call, far from the cause. So every key is checked at start-up and the
first problem is reported as ONE line naming the file, the key path and the problem
(``demo.toml: sip.listen: port 70000 is out of range 1-65535``); there is no partial
start and no silently ignored key.

Theory of operation
-------------------
The schema is data. :data:`SECTIONS` lists each top-level TOML table (or array of
tables, ``[[users]]``) with its keys. A :class:`Key` knows its TOML type, its default (a
raw TOML value that goes through the same checks as a written one), how to check and
convert a value into one or more dataclass fields (``sip.listen`` becomes ``listen_host``
and ``listen_port``) and how to render those fields back for ``ccswitch config show``.
Rules that involve more than one key (the RTP range against the SIP port, minimum
against maximum expiry, duplicate users) are functions in :data:`CHECKS`, run over the
built :class:`Config`; they run again after command-line overrides, so ``--rtp-ports``
cannot slip past them. A later section (trunks, dialplan, ivr, acd, queues, agents) is one
dataclass, one :class:`Section` entry, one :class:`Config` field and perhaps a check: no
new code path.

Relative paths (``store.path``, ``sip.trace_file``, TLS files) are relative to the working
directory, as the operating system resolves them; they are not rebased on the file.
IPv6 hosts are stored without brackets (``"::1"``), ready for ``bind``; whoever writes
them into a Via or URI adds the brackets (RFC 3261 section 25.1, ``IPv6reference``).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import ipaddress
import logging
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from importlib import resources
from pathlib import Path
from typing import Any

from acd.log import COMMAND_ACTIONS
from ccswitch import __version__
from media.commands import PRIORITIES
from switch.dialplan import (
    FROM_VALUES,
    NUMBER_FORMATS,
    DialplanError,
    NumberingPlan,
    compile_pattern,
    parse_destination,
)
from switch.leg import RINGBACK_MODES

__all__ = [
    "CHECKS",
    "DEMO_SOURCE",
    "OVERRIDES",
    "SECTIONS",
    "Config",
    "ConfigError",
    "DialplanRuleConfig",
    "IvrConfig",
    "Key",
    "Kind",
    "LimitsConfig",
    "LogConfig",
    "RecordingConfig",
    "RegistrarConfig",
    "RtpConfig",
    "Section",
    "SipConfig",
    "StoreConfig",
    "TrunkConfig",
    "UserConfig",
    "apply_overrides",
    "check_value",
    "load_config",
    "parse_config",
    "render_config",
]

logger = logging.getLogger(__name__)

# Where the embedded demo lives (package data) and how errors name it.
DEMO_RESOURCE = "demo.toml"
DEMO_SOURCE = "demo.toml (built-in)"

# TCP/UDP port numbers; 0 ("any port") is refused: peers must be told where we are.
PORT_MIN = 1
PORT_MAX = 65535

# RFC 3550 section 11: RTP uses an even port and RTCP the next odd one, so a range
# starts even. Four ports hold two RTP/RTCP pairs, the two legs of one bridged call.
RTP_MIN_PORTS = 4

# RFC 3261 section 18.1.1: a request larger than 1300 bytes (when the path MTU is
# unknown) goes over a congestion-controlled transport. 512 is a floor no sane MTU is
# below; 65507 is the largest UDP payload over IPv4.
UDP_MAX_SIZE_MIN = 512
UDP_MAX_SIZE_MAX = 65507

# RFC 3261 section 20.19 / 25.1: Expires is delta-seconds, at most 2**32 - 1.
EXPIRES_MAX = 2**32 - 1

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# RFC 3261 section 25.1: hostname = *( domainlabel "." ) toplabel [ "." ]
#   domainlabel = alphanum / alphanum *( alphanum / "-" ) alphanum
#   toplabel    = ALPHA / ALPHA *( alphanum / "-" ) alphanum
# A top label starting with a letter is what tells "999.1.1.1" (a bad IPv4 address)
# apart from a host name.
_HOSTNAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*"
    r"[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?"
)
_IPV4_LIKE = re.compile(r"[0-9.]+")
_DIGITS = re.compile(r"[0-9]+")
_PORT_RANGE = re.compile(r"([0-9]+)-([0-9]+)")

# RFC 3261 section 25.1: user = 1*( unreserved / escaped / user-unreserved )
#   unreserved = alphanum / mark ; mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
#   user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
# Deviation: escaped (%HH) is refused, so that a configured name compares equal to the
# user part of a Request-URI byte for byte.
_USER_CHARS = "-_.!~*'()&=+$,;?/"
_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]+")

# RFC 2617 section 3.2.2.2 (MD5) and RFC 7616 / RFC 8760 (SHA-256): HA1 in hex.
_HEX = re.compile(r"[0-9a-fA-F]+")
HA1_MD5_DIGITS = 32
HA1_SHA256_DIGITS = 64

_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})

# RFC 3261 section 18: the transports a trunk can use.
TRUNK_TRANSPORTS = ("UDP", "TCP", "TLS")
# Names of trunks (used in dialplan destinations, CDRs and events) and app arguments.
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# What a dialplan rule may put in front of a number (RFC 3966 phonedigit-hex subset).
_PREPEND = re.compile(r"[0-9+*#]*")
# RFC 3261 section 20.33: Retry-After is delta-seconds; a day is a sane ceiling.
RETRY_AFTER_MAX = 86400
# More media processes than this is a typing error, not a machine.
MEDIA_WORKERS_MAX = 64
#: ``rtp.media_workers`` when the file does not say: one engine process per core
#: (issue 7: signalling and the ACD stay in the main process, media use every core).
MEDIA_WORKERS_DEFAULT = min(len(os.sched_getaffinity(0)), MEDIA_WORKERS_MAX)


# ---------------------------------------------------------------------------------------
# The configuration as the rest of the switch sees it.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SipConfig:
    """``[sip]``: where SIP listens and the transaction timers (RFC 3261 section 17).

    ``listen_host``/``listen_port`` serve UDP and TCP; ``tls_listen_host`` is None when
    TLS is off. Timers are in seconds.
    """

    listen_host: str
    listen_port: int
    tls_listen_host: str | None
    tls_listen_port: int | None
    tls_certificate: str | None
    tls_private_key: str | None
    realm: str
    udp_max_size: int = 1300
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    tcp_idle_timeout: float = 300.0
    trace_file: str | None = None
    user_agent: str = f"ccswitch/{__version__}"
    digest_algorithms: tuple[str, ...] = ("SHA-256", "MD5")


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrarConfig:
    """``[registrar]``: REGISTER expiry bounds (RFC 3261 section 10.3) and qualify.

    Qualify is the OPTIONS keep-alive sent to each registered contact every
    ``qualify_interval`` seconds (0 turns it off); after ``qualify_timeout_count``
    unanswered probes in a row the contact is dropped.
    """

    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    qualify_interval: float = 30.0
    qualify_timeout_count: int = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpConfig:
    """``[rtp]``: the inclusive UDP port range for RTP and RTCP (RFC 3550 section 11).

    ``media_workers`` media engine processes share the range (0: the engine runs in
    the signalling process); by default one per core.  ``media_priority`` is how
    they ask to be scheduled, one of :data:`media.commands.PRIORITIES` (``realtime``
    by default, falling back when the switch may not).
    """

    port_low: int
    port_high: int
    media_workers: int = MEDIA_WORKERS_DEFAULT
    media_priority: str = "realtime"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingConfig:
    """``[recording]``: every bridged call recorded to a stereo WAV in ``folder``.

    The caller is the left channel and whoever it is bridged to (operator, user,
    trunk) the right; files are ``folder/YYYY-MM-DD/CALL.wav``, written as the call
    goes (a crash loses at most the last second), for quality review.
    """

    enabled: bool = False
    folder: str = "recordings"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """``[store]``: the SQLite database file (relative to the working directory)."""

    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    """``[log]``: the root log level, one of :data:`LOG_LEVELS`."""

    level: str = "INFO"


@dataclass(frozen=True, slots=True, kw_only=True)
class UserConfig:
    """One ``[[users]]`` entry: a local SIP user (an AOR ``sip:name@realm``).

    Exactly one of ``password`` or the pair ``ha1_md5`` + ``ha1_sha256`` is set; HA1
    values are lower-case hex of ``H(name:realm:password)`` (RFC 7616 section 3.4.2,
    RFC 8760). ``allow_outbound`` lets the user call numbers outside the switch.
    """

    name: str
    password: str | None
    ha1_md5: str | None
    ha1_sha256: str | None
    display_name: str | None
    allow_outbound: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsConfig:
    """``[limits]``: switch-wide call limits (issue 4).

    ``max_calls`` concurrent calls (0: no limit); beyond it new INVITEs get 503 with
    ``Retry-After: retry_after`` (RFC 3261 sections 21.5.4 and 20.33) and calls in
    progress are untouched. ``max_call_duration`` seconds after which a call is hung
    up (0: no limit). ``ring_timeout`` seconds the called party may ring before the
    caller gets 480 Temporarily Unavailable (the outbound legs are CANCELled).
    ``ringback`` is what an unanswered caller hears while the callee rings: ``relay``
    passes the callee's 180 (the caller's phone makes the tone) and its early media
    (183 with SDP) through; ``local`` answers the caller's offer in a 183 and plays
    the switch's own ringback tone instead of anything the callee sends early.
    ``shed_cpu``, ``shed_late_ticks`` and ``shed_lag`` say when the switch is
    overloaded and sheds new calls with 503 (see ``switch/overload.py``); 0 turns
    each test off.
    """

    max_calls: int = 0
    max_call_duration: float = 14400.0
    retry_after: int = 30
    ring_timeout: float = 60.0
    ringback: str = "relay"
    shed_cpu: float = 0.9
    shed_late_ticks: int = 5
    shed_lag: float = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkConfig:
    """One ``[[trunks]]`` entry: a carrier's SIP trunk (see ``switch/trunks.py``).

    Inbound calls are identified by source address (``inbound_sources``, CIDR; empty
    means the host's address) or digest (``inbound_username``/``inbound_password``).
    ``register`` makes the switch register as ``username``/``password`` (RFC 3261
    section 10.2); ``options_interval`` seconds between OPTIONS probes (0: off), and
    ``options_failures`` unanswered probes mark the trunk down. Numbers go to the
    carrier as ``number_format`` says, normalised with ``country_code``,
    ``national_prefix`` and ``international_prefix`` (ITU-T E.164).
    """

    name: str
    host: str
    port: int = 5060
    transport: str = "UDP"
    inbound_sources: tuple[str, ...] = ()
    inbound_username: str | None = None
    inbound_password: str | None = None
    register: bool = False
    username: str | None = None
    password: str | None = None
    domain: str | None = None
    expires: int = 3600
    options_interval: float = 60.0
    options_failures: int = 3
    max_calls: int = 0
    country_code: str = ""
    national_prefix: str = ""
    international_prefix: str = ""
    number_format: str = "as-dialled"
    latching: bool = False

    @property
    def numbering(self) -> NumberingPlan:
        return NumberingPlan(
            country_code=self.country_code,
            national_prefix=self.national_prefix,
            international_prefix=self.international_prefix,
            number_format=self.number_format,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DialplanRuleConfig:
    """One ``[[dialplan]]`` rule; syntax in ``switch/dialplan.py`` (``from`` = ``from_``)."""

    pattern: str
    to: str
    from_: str = "any"
    strip: int = 0
    prepend: str = ""
    args: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class IvrConfig:
    """``[ivr]``: flow and prompt folders, schedules' time zone, languages (issue 5).

    ``flows``/``prompts`` ``None`` mean the built-in demo flows and default prompts.
    ``crm_listen_*`` is the demo CRM (``None``: not served); ``variables`` are seeded
    into every call; ``pid_file`` lets ``ccswitch flows reload`` signal the server.
    """

    flows: str | None = None
    prompts: str | None = None
    time_zone: str = "Europe/Moscow"
    languages: tuple[str, ...] = ("ru", "en")
    crm_listen_host: str | None = None
    crm_listen_port: int | None = None
    variables: tuple[tuple[str, str], ...] = ()
    pid_file: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    """One ``[[queues]]`` entry: an ACD queue (issue 6; fields as acd.queue.QueueSettings).

    ``music`` is a WAV prompt for music on hold ("" = a generated ring-back pattern);
    ``callback_trunk`` the trunk callbacks are dialled through ("" = no callbacks).
    """

    name: str
    strategy: str = "longest-idle"
    wrap_up: float = 0.0
    ring_timeout: float = 15.0
    max_wait: float = 0.0
    service_level: float = 20.0
    join_empty: bool = False
    announce_interval: float = 30.0
    exit_key: str = ""
    exit_destination: str = ""
    skills: tuple[tuple[str, int], ...] = ()
    widen_after: float = 0.0
    tier_after: float = 0.0
    callback_trunk: str = ""
    callback_retries: int = 3
    callback_retry_interval: float = 60.0
    music: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    """One ``[[agents]]`` entry: a person taking queue calls on ``users``' phones.

    ``queues`` are (queue, penalty) pairs, written ``"support"`` or ``"support:1"``;
    ``wrap_up`` None means the queue's; ``auto_login`` logs in on registration.
    """

    name: str
    users: tuple[str, ...]
    queues: tuple[tuple[str, int], ...]
    skills: tuple[tuple[str, int], ...] = ()
    wrap_up: float | None = None
    auto_login: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmissionConfig:
    """One ``[[admission]]`` rule for a queue (acd/admission.py); 0 = no limit."""

    queue: str
    days: str = ""
    hours: str = ""
    max_expected_wait: float = 0.0
    max_asa: float = 0.0
    max_per_agent: float = 0.0
    max_length: int = 0
    action: str = "callback"
    destination: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole validated configuration; ``source`` names where it was read from."""

    source: str
    sip: SipConfig
    registrar: RegistrarConfig
    rtp: RtpConfig
    store: StoreConfig
    log: LogConfig
    users: tuple[UserConfig, ...]
    limits: LimitsConfig = LimitsConfig()
    recording: RecordingConfig = RecordingConfig()
    trunks: tuple[TrunkConfig, ...] = ()
    dialplan: tuple[DialplanRuleConfig, ...] = ()
    ivr: IvrConfig = IvrConfig()
    queues: tuple[QueueConfig, ...] = ()
    agents: tuple[AgentConfig, ...] = ()
    admission: tuple[AdmissionConfig, ...] = ()


class ConfigError(Exception):
    """A configuration problem, rendered as one line: ``source: key: problem``.

    :param problem: what is wrong, in words that say what to change.
    :param source: the file (or ``None`` for a command-line option).
    :param key: the key path (``sip.listen``, ``users[2].name``) or option
        (``--listen``); ``None`` for problems with the file as a whole.
    """

    def __init__(
        self, problem: str, *, source: str | None = None, key: str | None = None
    ) -> None:
        self.problem = problem.replace("\r", " ").replace("\n", " ")
        self.source = source
        self.key = key
        super().__init__(": ".join(p for p in (source, key, self.problem) if p))


# ---------------------------------------------------------------------------------------
# The schema.
# ---------------------------------------------------------------------------------------


class Kind(enum.Enum):
    """The TOML type a key accepts; the value is how error messages name it."""

    STRING = "a string"
    INTEGER = "an integer"
    NUMBER = "a number"  # integer or float; converted to float
    BOOLEAN = "a boolean"
    STRINGS = "an array of strings"
    TABLE = "a table"


class _Required(enum.Enum):
    REQUIRED = enum.auto()


REQUIRED = _Required.REQUIRED


class _Invalid(Exception):
    """Internal: a problem, and the key paths it concerns (the first one leads).

    Converters raise it without keys (the walker knows where it is); checks name them.
    """

    def __init__(self, problem: str, *keys: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.keys = keys


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Key:
    """One key of a section.

    :param name: the TOML key.
    :param kind: the TOML type it accepts.
    :param default: a raw TOML value used when the key is absent (it is checked like a
        written one), ``None`` for "unset", or :data:`REQUIRED`.
    :param convert: checks a value of the right type and returns the field value, or a
        tuple of values when ``fields`` names several; raises ``_Invalid``.
    :param fields: the dataclass fields it fills; empty means one field named ``name``.
    :param render: turns the built section object back into the TOML value for
        ``config show`` (``None`` omits the line); default reads the one field.
    :param secret: never shown by ``config show``.
    """

    name: str
    kind: Kind
    default: object = REQUIRED
    convert: Callable[[Any], Any] = _same
    fields: tuple[str, ...] = ()
    render: Callable[[Any], object] | None = None
    secret: bool = False

    @property
    def field_names(self) -> tuple[str, ...]:
        return self.fields or (self.name,)

    def rendered(self, item: object) -> object:
        if self.render is not None:
            return self.render(item)
        return getattr(item, self.field_names[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class Section:
    """A top-level TOML table (``many=False``) or array of tables (``many=True``)."""

    name: str
    keys: tuple[Key, ...]
    build: Callable[..., Any]
    many: bool = False

    def key(self, name: str) -> Key:
        for key in self.keys:
            if key.name == name:
                return key
        raise KeyError(name)


# A cross-key check: gets the built config and a function giving each key path's
# display name (a command-line option replaces the key it overrode); raises _Invalid.
Check = Callable[[Config, Callable[[str], str]], None]


# ---------------------------------------------------------------------------------------
# Value helpers (converters raise _Invalid with the problem only).
# ---------------------------------------------------------------------------------------


def _show(value: object) -> str:
    """A value as TOML would spell it, short enough for a one-line message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return _toml_string(text)
    return str(value)


def _describe(value: object) -> str:
    """Name a value's TOML type, with the value itself when it is a scalar."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    names: tuple[tuple[type, str], ...] = (
        (bool, "boolean"),
        (int, "integer"),
        (float, "float"),
        (str, "string"),
        (datetime, "date-time"),
        (date, "date"),
        (time, "time"),
    )
    for cls, name in names:
        if isinstance(value, cls):
            return f"{name} {_show(value)}"
    return type(value).__name__  # pragma: no cover - tomllib yields nothing else


def _check_kind(kind: Kind, value: object) -> None:
    if kind is Kind.STRING:
        ok = isinstance(value, str)
    elif kind is Kind.BOOLEAN:
        ok = isinstance(value, bool)
    elif kind is Kind.INTEGER:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is Kind.STRINGS:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if isinstance(value, list) and not ok:
            odd = next(v for v in value if not isinstance(v, str))
            raise _Invalid(f"expected {kind.value}, got an array with {_describe(odd)}")
    elif kind is Kind.TABLE:
        ok = isinstance(value, dict)
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise _Invalid(f"expected {kind.value}, got {_describe(value)}")


def _toml_string(text: str) -> str:
    """A TOML basic string; escapes what TOML requires (quote, backslash, controls)."""
    named = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n"}
    named |= {"\f": "\\f", "\r": "\\r"}
    out = []
    for char in text:
        if char in named:
            out.append(named[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _has_control(text: str) -> bool:
    return any(ord(char) < 0x20 or ord(char) == 0x7F for char in text)


def _port(text: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise _Invalid(f"port {_show(text)} is not a number")
    return _port_number(int(text))


def _port_number(port: int) -> int:
    if not PORT_MIN <= port <= PORT_MAX:
        raise _Invalid(f"port {port} is out of range {PORT_MIN}-{PORT_MAX}")
    return port


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` with HOST an IPv4 address, a host name or ``[IPv6]``."""
    expected = f'expected HOST:PORT (e.g. "127.0.0.1:5060"), got {_show(text)}'
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise _Invalid(expected)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _Invalid(f"{_show(host)} is not an IPv6 address") from None
        return host, _port(rest[1:])
    host, colon, port_text = text.rpartition(":")
    if not colon or not host:
        raise _Invalid(expected)
    if ":" in host:
        raise _Invalid(
            f'IPv6 address {_show(host)} must be in brackets, e.g. "[::1]:5060"'
        )
    _ipv4_or_hostname(host)
    return host, _port(port_text)


def _ipv4_or_hostname(host: str) -> None:
    if _IPV4_LIKE.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise _Invalid(f"{_show(host)} is not an IPv4 address") from None
    elif not _HOSTNAME.fullmatch(host):
        raise _Invalid(f"{_show(host)} is not an IP address or host name")


def _host(text: str) -> str:
    """A host alone: IPv4, host name or IPv6 (brackets optional, stored without)."""
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if ":" in bare:
        try:
            ipaddress.IPv6Address(bare)
        except ValueError:
            raise _Invalid(f"{_show(text)} is not an IPv6 address") from None
        return bare
    _ipv4_or_hostname(text)
    return text


def _optional_host_port(text: str) -> tuple[str | None, int | None]:
    if text == "":
        return None, None
    return _host_port(text)


def _render_host_port(host: str | None, port: int | None) -> str:
    if host is None or port is None:
        return ""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _port_range(text: str) -> tuple[int, int]:
    """``LOW-HIGH``, inclusive, starting on an even port (RFC 3550 section 11)."""
    match = _PORT_RANGE.fullmatch(text)
    if match is None:
        raise _Invalid(f'expected LOW-HIGH (e.g. "30000-30999"), got {_show(text)}')
    low, high = _port_number(int(match[1])), _port_number(int(match[2]))
    if low > high:
        raise _Invalid(f"low port {low} is above high port {high}")
    if low % 2:
        raise _Invalid(
            f"low port {low} is odd; RTP needs an even port, RTCP the next odd one"
        )
    count = high - low + 1
    if count < RTP_MIN_PORTS:
        raise _Invalid(
            f"range {low}-{high} has {count} ports; at least {RTP_MIN_PORTS} are needed"
        )
    return low, high


def _greater_than_zero(value: float) -> float:
    _finite(value)
    if value <= 0:
        raise _Invalid(f"must be greater than 0, got {_show(value)}")
    return float(value)


def _not_negative(value: float) -> float:
    _finite(value)
    if value < 0:
        raise _Invalid(f"must not be negative, got {_show(value)}")
    return float(value)


def _finite(value: float) -> None:
    if not math.isfinite(value):
        raise _Invalid(f"must be a finite number, got {_show(value)}")


#: RFC 8760 section 2.1: the digest algorithms SIP may use.
DIGEST_ALGORITHMS = ("SHA-256", "MD5")


def _digest_algorithms(text: str) -> tuple[str, ...]:
    """Offered digest algorithms, most preferred first (RFC 8760 section 2.4)."""
    names = [part.strip().upper() for part in text.split(",") if part.strip()]
    if not names:
        raise _Invalid("needs at least one of SHA-256, MD5")
    for name in names:
        if name not in DIGEST_ALGORITHMS:
            raise _Invalid(f"unknown digest algorithm {name!r} (known: SHA-256, MD5)")
    if len(set(names)) != len(names):
        raise _Invalid("lists an algorithm twice")
    return tuple(names)


def _fraction(value: float) -> float:
    _finite(value)
    if not 0 <= value <= 1:
        raise _Invalid(f"must be between 0 and 1, got {_show(value)}")
    return value


def _recording_folder(text: str) -> str:
    """A folder the switch may create: an existing folder, or one whose parent is."""
    _non_empty(text)
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise _Invalid(f"not a folder: {_show(text)}")
    if not path.exists() and not path.absolute().parent.is_dir():
        raise _Invalid(f"its parent folder does not exist: {_show(text)}")
    return text


def _integer_between(low: int, high: int | None) -> Callable[[int], int]:
    def convert(value: int) -> int:
        if high is None and value < low:
            raise _Invalid(f"must be at least {low}, got {value}")
        if high is not None and not low <= value <= high:
            raise _Invalid(f"must be between {low} and {high}, got {value}")
        return value

    return convert


def _non_empty(text: str) -> str:
    if text == "":
        raise _Invalid("must not be empty")
    return text


def _plain_text(text: str) -> str:
    """Text going into a header: no CR/LF or other controls (header injection)."""
    _non_empty(text)
    if _has_control(text):
        raise _Invalid(f"must not contain control characters, got {_show(text)}")
    return text


def _realm(text: str) -> str:
    """RFC 3261 section 25.1 / RFC 7616: realm is a quoted-string; keep it simple."""
    _plain_text(text)
    if '"' in text or "\\" in text:
        raise _Invalid(f"must not contain quotes or backslashes, got {_show(text)}")
    return text


def _optional_text(text: str) -> str | None:
    return None if text == "" else _plain_text(text)


def _one_of(noun: str, choices: Sequence[str]) -> Callable[[str], str]:
    """A converter that takes one of ``choices`` as written and refuses the rest."""

    def convert(text: str) -> str:
        if text not in choices:
            raise _Invalid(
                f"{_show(text)} is not {noun} (expected one of {', '.join(choices)})"
            )
        return text

    return convert


_media_priority = _one_of("a media priority", PRIORITIES)


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise _Invalid(
            f"{_show(text)} is not a log level (expected one of {', '.join(LOG_LEVELS)})"
        )
    return level


# TODO: only existence is checked; a PEM that is not a certificate, or a key that does
# not match it, passes `config check` and fails at start-up in ssl.load_cert_chain.
# Loading the pair here would need the ssl module and an SSLContext per check.
def _existing_file(text: str) -> str | None:
    if text == "":
        return None
    if not Path(text).is_file():
        raise _Invalid(f"file not found: {_show(text)}")
    return text


def _creatable_file(text: str) -> str:
    """A file we will create or append to: its directory must exist."""
    _non_empty(text)
    if text == ":memory:":  # SQLite's in-memory database
        return text
    parent = Path(text).parent
    if not parent.is_dir():
        raise _Invalid(f"directory {_show(str(parent))} does not exist")
    return text


def _optional_creatable_file(text: str) -> str | None:
    return None if text == "" else _creatable_file(text)


def _user_name(text: str) -> str:
    if not _USER.fullmatch(text):
        raise _Invalid(
            f"{_show(text)} is not a valid SIP user name "
            f"(letters, digits and {_USER_CHARS})"
        )
    return text


def _hex_digits(count: int, what: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if len(text) != count or not _HEX.fullmatch(text):
            raise _Invalid(
                f"must be {count} hexadecimal digits ({what}), got {_show(text)}"
            )
        return text.lower()

    return convert


def _name(text: str) -> str:
    if not _NAME.fullmatch(text):
        raise _Invalid(f"{_show(text)} is not a valid name (letters, digits and _.-)")
    return text


def _transport(text: str) -> str:
    upper = text.upper()
    if upper not in TRUNK_TRANSPORTS:
        raise _Invalid(
            f"{_show(text)} is not a transport (expected one of "
            f"{', '.join(TRUNK_TRANSPORTS)})"
        )
    return upper


def _networks(values: list[str]) -> tuple[str, ...]:
    """CIDR blocks (or single addresses) that inbound trunk traffic comes from."""
    networks = []
    for text in values:
        try:
            network = ipaddress.ip_network(text)
        except ValueError:
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise _Invalid(
                    f'{_show(text)} is not an IP address or CIDR block (e.g. "10.0.0.0/8")'
                ) from None
            raise _Invalid(
                f"{_show(text)} has host bits set; did you mean {_show(str(network))}?"
            ) from None
        networks.append(str(network))
    return tuple(networks)


def _digits(text: str) -> str:
    if text and not _DIGITS.fullmatch(text):
        raise _Invalid(f"must be digits only, got {_show(text)}")
    return text


_ringback = _one_of("a ringback mode", RINGBACK_MODES)


_number_format = _one_of("a number format", NUMBER_FORMATS)


def _pattern(text: str) -> str:
    try:
        compile_pattern(text)
    except DialplanError as exc:
        raise _Invalid(str(exc)) from None
    return text


def _destination(text: str) -> str:
    try:
        parse_destination(text)
    except DialplanError as exc:
        raise _Invalid(str(exc)) from None
    return text


def _from(text: str) -> str:
    if text not in FROM_VALUES:
        raise _Invalid(
            f"{_show(text)} is not a caller class (expected one of "
            f"{', '.join(FROM_VALUES)})"
        )
    return text


def _prepend(text: str) -> str:
    if not _PREPEND.fullmatch(text):
        raise _Invalid(f"must be digits, +, * or #, got {_show(text)}")
    return text


def _app_args(table: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Application arguments: names as for :func:`_name`, string or number values."""
    args = []
    for name, value in table.items():
        if not _NAME.fullmatch(name):
            raise _Invalid(
                f"argument name {_show(name)} is not valid (letters, digits and _.-)"
            )
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _Invalid(
                f"argument {name} must be a string or a number, got {_describe(value)}"
            )
        args.append((name, value if isinstance(value, str) else _show(value)))
    return tuple(args)


#: Languages the IVR has number grammar and default prompts for (ivr/speech.py).
IVR_LANGUAGES = ("ru", "en")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _optional_folder(text: str) -> str | None:
    if text == "":
        return None
    if not Path(text).is_dir():
        raise _Invalid(f"folder not found: {_show(text)}")
    return text


def _time_zone(text: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise _Invalid(
            f"unknown time zone {_show(text)} (an IANA name such as Europe/Moscow)"
        ) from None
    return text


def _ivr_languages(values: list[str]) -> tuple[str, ...]:
    if not values:
        raise _Invalid("must name at least one language; the first is the default")
    for value in values:
        if value not in IVR_LANGUAGES:
            raise _Invalid(f"{_show(value)} is not one of {', '.join(IVR_LANGUAGES)}")
    if len(set(values)) != len(values):
        raise _Invalid("names a language twice")
    return tuple(values)


def _ivr_variables(table: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Call variables: identifier names, string or number values."""
    variables = []
    for name, value in table.items():
        if not _VARIABLE.fullmatch(name):
            raise _Invalid(
                f"variable name {_show(name)} is not valid (letters, digits and _)"
            )
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _Invalid(
                f"variable {name} must be a string or a number, got {_describe(value)}"
            )
        variables.append((name, value if isinstance(value, str) else _show(value)))
    return tuple(variables)


# ACD (issue 6): skill levels 1-10, penalties 0-99, DTMF keys (RFC 4733 events 0-15).
SKILL_LEVEL_MAX = 10
PENALTY_MAX = 99
_DTMF_KEY = re.compile(r"[0-9*#A-D]")
ADMISSION_ACTIONS = ("callback", "overflow", "call-later")


def _skill_levels(table: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """``{ en = 3, billing = 5 }``: skill names as for :func:`_name`, levels 1-10."""
    skills = []
    for name, level in table.items():
        if not _NAME.fullmatch(name):
            raise _Invalid(
                f"skill name {_show(name)} is not valid (letters, digits and _.-)"
            )
        if isinstance(level, bool) or not isinstance(level, int):
            raise _Invalid(f"skill {name} must be an integer, got {_describe(level)}")
        if not 1 <= level <= SKILL_LEVEL_MAX:
            raise _Invalid(
                f"skill {name}: level {level} is out of range 1-{SKILL_LEVEL_MAX}"
            )
        skills.append((name, level))
    return tuple(skills)


def _agent_queues(values: list[str]) -> tuple[tuple[str, int], ...]:
    """``["support", "sales:1"]``: queue names with an optional penalty tier."""
    if not values:
        raise _Invalid("must name at least one queue")
    memberships = []
    for value in values:
        name, colon, penalty = value.partition(":")
        if not _NAME.fullmatch(name) or (colon and not _DIGITS.fullmatch(penalty)):
            raise _Invalid(f"{_show(value)} is not QUEUE or QUEUE:PENALTY")
        tier = int(penalty) if colon else 0
        if tier > PENALTY_MAX:
            raise _Invalid(f"{_show(value)}: penalty is out of range 0-{PENALTY_MAX}")
        memberships.append((name, tier))
    return tuple(memberships)


def _agent_users(values: list[str]) -> tuple[str, ...]:
    if not values:
        raise _Invalid("must name at least one user (the agent's phone)")
    return tuple(_user_name(value) for value in values)


def _optional_seconds(value: float) -> float | None:
    return _not_negative(value)


def _exit_key(text: str) -> str:
    if text and not _DTMF_KEY.fullmatch(text):
        raise _Invalid(f"{_show(text)} is not one DTMF key (0-9, *, #, A-D)")
    return text


def _strategy(text: str) -> str:
    from acd.strategies import StrategyError, load_strategies

    try:
        known = load_strategies()
    except StrategyError as exc:
        raise _Invalid(str(exc)) from None
    if text not in known:
        raise _Invalid(
            f"unknown strategy {_show(text)}; {_suggest(text, sorted(known))}"
        )
    return text


def _schedule_days(text: str) -> str:
    from acd.admission import ScheduleError, parse_days

    try:
        parse_days(text)
    except ScheduleError as exc:
        raise _Invalid(str(exc)) from None
    return text


def _schedule_hours(text: str) -> str:
    from acd.admission import ScheduleError, parse_hours

    try:
        parse_hours(text)
    except ScheduleError as exc:
        raise _Invalid(str(exc)) from None
    return text


def _admission_action(text: str) -> str:
    if text not in ADMISSION_ACTIONS:
        raise _Invalid(f"{_show(text)} is not one of {', '.join(ADMISSION_ACTIONS)}")
    return text


def _optional_destination(text: str) -> str:
    return _destination(text) if text else ""


def _optional_plain(text: str) -> str:
    return _plain_text(text) if text else ""


# ---------------------------------------------------------------------------------------
# Sections. Add a section here (and a field on Config); the walker does the rest.
# ---------------------------------------------------------------------------------------

SECTIONS: tuple[Section, ...] = (
    Section(
        name="sip",
        build=SipConfig,
        keys=(
            Key(
                name="listen",
                kind=Kind.STRING,
                default="127.0.0.1:5060",
                convert=_host_port,
                fields=("listen_host", "listen_port"),
                render=lambda s: _render_host_port(s.listen_host, s.listen_port),
            ),
            Key(
                name="tls_listen",
                kind=Kind.STRING,
                default="",
                convert=_optional_host_port,
                fields=("tls_listen_host", "tls_listen_port"),
                render=lambda s: _render_host_port(
                    s.tls_listen_host, s.tls_listen_port
                ),
            ),
            Key(
                name="tls_certificate",
                kind=Kind.STRING,
                default=None,
                convert=_existing_file,
            ),
            Key(
                name="tls_private_key",
                kind=Kind.STRING,
                default=None,
                convert=_existing_file,
            ),
            Key(name="realm", kind=Kind.STRING, convert=_realm),
            Key(
                name="udp_max_size",
                kind=Kind.INTEGER,
                default=1300,
                convert=_integer_between(UDP_MAX_SIZE_MIN, UDP_MAX_SIZE_MAX),
            ),
            Key(name="t1", kind=Kind.NUMBER, default=0.5, convert=_greater_than_zero),
            Key(name="t2", kind=Kind.NUMBER, default=4.0, convert=_greater_than_zero),
            Key(name="t4", kind=Kind.NUMBER, default=5.0, convert=_greater_than_zero),
            Key(
                name="tcp_idle_timeout",
                kind=Kind.NUMBER,
                default=300.0,
                convert=_greater_than_zero,
            ),
            Key(
                name="trace_file",
                kind=Kind.STRING,
                default="",
                convert=_optional_creatable_file,
                render=lambda s: s.trace_file or "",
            ),
            Key(
                name="user_agent",
                kind=Kind.STRING,
                default=f"ccswitch/{__version__}",
                convert=_plain_text,
            ),
            Key(
                name="digest_algorithms",
                kind=Kind.STRING,
                default="SHA-256, MD5",
                convert=_digest_algorithms,
                render=lambda s: ", ".join(s.digest_algorithms),
            ),
        ),
    ),
    Section(
        name="registrar",
        build=RegistrarConfig,
        keys=(
            Key(
                name="min_expires",
                kind=Kind.INTEGER,
                default=60,
                convert=_integer_between(1, EXPIRES_MAX),
            ),
            Key(
                name="max_expires",
                kind=Kind.INTEGER,
                default=3600,
                convert=_integer_between(1, EXPIRES_MAX),
            ),
            Key(
                name="default_expires",
                kind=Kind.INTEGER,
                default=3600,
                convert=_integer_between(1, EXPIRES_MAX),
            ),
            Key(
                name="qualify_interval",
                kind=Kind.NUMBER,
                default=30.0,
                convert=_not_negative,
            ),
            Key(
                name="qualify_timeout_count",
                kind=Kind.INTEGER,
                default=2,
                convert=_integer_between(1, None),
            ),
        ),
    ),
    Section(
        name="rtp",
        build=RtpConfig,
        keys=(
            Key(
                name="ports",
                kind=Kind.STRING,
                default="30000-30999",
                convert=_port_range,
                fields=("port_low", "port_high"),
                render=lambda r: f"{r.port_low}-{r.port_high}",
            ),
            Key(
                name="media_workers",
                kind=Kind.INTEGER,
                default=MEDIA_WORKERS_DEFAULT,
                convert=_integer_between(0, MEDIA_WORKERS_MAX),
            ),
            Key(
                name="media_priority",
                kind=Kind.STRING,
                default="realtime",
                convert=_media_priority,
            ),
        ),
    ),
    Section(
        name="store",
        build=StoreConfig,
        keys=(
            Key(
                name="path",
                kind=Kind.STRING,
                default="ccswitch.db",
                convert=_creatable_file,
            ),
        ),
    ),
    Section(
        name="log",
        build=LogConfig,
        keys=(Key(name="level", kind=Kind.STRING, default="INFO", convert=_log_level),),
    ),
    Section(
        name="limits",
        build=LimitsConfig,
        keys=(
            Key(
                name="max_calls",
                kind=Kind.INTEGER,
                default=0,
                convert=_integer_between(0, None),
            ),
            Key(
                name="max_call_duration",
                kind=Kind.NUMBER,
                default=14400.0,
                convert=_not_negative,
            ),
            Key(
                name="retry_after",
                kind=Kind.INTEGER,
                default=30,
                convert=_integer_between(1, RETRY_AFTER_MAX),
            ),
            Key(
                name="ring_timeout",
                kind=Kind.NUMBER,
                default=60.0,
                convert=_greater_than_zero,
            ),
            Key(name="ringback", kind=Kind.STRING, default="relay", convert=_ringback),
            Key(name="shed_cpu", kind=Kind.NUMBER, default=0.9, convert=_fraction),
            Key(
                name="shed_late_ticks",
                kind=Kind.INTEGER,
                default=5,
                convert=_integer_between(0, 50),
            ),
            Key(name="shed_lag", kind=Kind.NUMBER, default=0.5, convert=_not_negative),
        ),
    ),
    Section(
        name="recording",
        build=RecordingConfig,
        keys=(
            Key(name="enabled", kind=Kind.BOOLEAN, default=False),
            Key(
                name="folder",
                kind=Kind.STRING,
                default="recordings",
                convert=_recording_folder,
            ),
        ),
    ),
    Section(
        name="trunks",
        build=TrunkConfig,
        many=True,
        keys=(
            Key(name="name", kind=Kind.STRING, convert=_name),
            Key(name="host", kind=Kind.STRING, convert=_host),
            Key(name="port", kind=Kind.INTEGER, default=5060, convert=_port_number),
            Key(name="transport", kind=Kind.STRING, default="UDP", convert=_transport),
            Key(
                name="inbound_sources",
                kind=Kind.STRINGS,
                default=[],
                convert=_networks,
                render=lambda t: list(t.inbound_sources),
            ),
            Key(
                name="inbound_username",
                kind=Kind.STRING,
                default=None,
                convert=_user_name,
            ),
            Key(
                name="inbound_password",
                kind=Kind.STRING,
                default=None,
                convert=_non_empty,
                secret=True,
            ),
            Key(name="register", kind=Kind.BOOLEAN, default=False),
            Key(name="username", kind=Kind.STRING, default=None, convert=_user_name),
            Key(
                name="password",
                kind=Kind.STRING,
                default=None,
                convert=_non_empty,
                secret=True,
            ),
            Key(name="domain", kind=Kind.STRING, default=None, convert=_host),
            Key(
                name="expires",
                kind=Kind.INTEGER,
                default=3600,
                convert=_integer_between(1, EXPIRES_MAX),
            ),
            Key(
                name="options_interval",
                kind=Kind.NUMBER,
                default=60.0,
                convert=_not_negative,
            ),
            Key(
                name="options_failures",
                kind=Kind.INTEGER,
                default=3,
                convert=_integer_between(1, None),
            ),
            Key(
                name="max_calls",
                kind=Kind.INTEGER,
                default=0,
                convert=_integer_between(0, None),
            ),
            Key(name="country_code", kind=Kind.STRING, default="", convert=_digits),
            Key(name="national_prefix", kind=Kind.STRING, default="", convert=_digits),
            Key(
                name="international_prefix",
                kind=Kind.STRING,
                default="",
                convert=_digits,
            ),
            Key(
                name="number_format",
                kind=Kind.STRING,
                default="as-dialled",
                convert=_number_format,
            ),
            Key(name="latching", kind=Kind.BOOLEAN, default=False),
        ),
    ),
    Section(
        name="dialplan",
        build=DialplanRuleConfig,
        many=True,
        keys=(
            Key(name="pattern", kind=Kind.STRING, convert=_pattern),
            Key(name="to", kind=Kind.STRING, convert=_destination),
            Key(
                name="from",
                kind=Kind.STRING,
                default="any",
                convert=_from,
                fields=("from_",),
            ),
            Key(
                name="strip",
                kind=Kind.INTEGER,
                default=0,
                convert=_integer_between(0, None),
            ),
            Key(name="prepend", kind=Kind.STRING, default="", convert=_prepend),
            Key(
                name="args",
                kind=Kind.TABLE,
                default={},
                convert=_app_args,
                render=lambda r: dict(r.args),
            ),
        ),
    ),
    Section(
        name="ivr",
        build=IvrConfig,
        keys=(
            Key(
                name="flows",
                kind=Kind.STRING,
                default="",
                convert=_optional_folder,
                render=lambda i: i.flows or "",
            ),
            Key(
                name="prompts",
                kind=Kind.STRING,
                default="",
                convert=_optional_folder,
                render=lambda i: i.prompts or "",
            ),
            Key(
                name="time_zone",
                kind=Kind.STRING,
                default="Europe/Moscow",
                convert=_time_zone,
            ),
            Key(
                name="languages",
                kind=Kind.STRINGS,
                default=["ru", "en"],
                convert=_ivr_languages,
                render=lambda i: list(i.languages),
            ),
            Key(
                name="crm_listen",
                kind=Kind.STRING,
                default="",
                convert=_optional_host_port,
                fields=("crm_listen_host", "crm_listen_port"),
                render=lambda i: _render_host_port(
                    i.crm_listen_host, i.crm_listen_port
                ),
            ),
            Key(
                name="variables",
                kind=Kind.TABLE,
                default={},
                convert=_ivr_variables,
                render=lambda i: dict(i.variables),
            ),
            Key(
                name="pid_file",
                kind=Kind.STRING,
                default="",
                convert=_optional_creatable_file,
                render=lambda i: i.pid_file or "",
            ),
        ),
    ),
    Section(
        name="users",
        build=UserConfig,
        many=True,
        keys=(
            Key(name="name", kind=Kind.STRING, convert=_user_name),
            Key(
                name="password",
                kind=Kind.STRING,
                default=None,
                convert=_non_empty,
                secret=True,
            ),
            Key(
                name="ha1_md5",
                kind=Kind.STRING,
                default=None,
                convert=_hex_digits(HA1_MD5_DIGITS, "MD5 of name:realm:password"),
                secret=True,
            ),
            Key(
                name="ha1_sha256",
                kind=Kind.STRING,
                default=None,
                convert=_hex_digits(
                    HA1_SHA256_DIGITS, "SHA-256 of name:realm:password"
                ),
                secret=True,
            ),
            Key(
                name="display_name",
                kind=Kind.STRING,
                default=None,
                convert=_optional_text,
            ),
            Key(name="allow_outbound", kind=Kind.BOOLEAN, default=False),
        ),
    ),
    Section(
        name="queues",
        build=QueueConfig,
        many=True,
        keys=(
            Key(name="name", kind=Kind.STRING, convert=_name),
            Key(
                name="strategy",
                kind=Kind.STRING,
                default="longest-idle",
                convert=_strategy,
            ),
            Key(name="wrap_up", kind=Kind.NUMBER, default=0.0, convert=_not_negative),
            Key(
                name="ring_timeout",
                kind=Kind.NUMBER,
                default=15.0,
                convert=_greater_than_zero,
            ),
            Key(name="max_wait", kind=Kind.NUMBER, default=0.0, convert=_not_negative),
            Key(
                name="service_level",
                kind=Kind.NUMBER,
                default=20.0,
                convert=_greater_than_zero,
            ),
            Key(name="join_empty", kind=Kind.BOOLEAN, default=False),
            Key(
                name="announce_interval",
                kind=Kind.NUMBER,
                default=30.0,
                convert=_not_negative,
            ),
            Key(name="exit_key", kind=Kind.STRING, default="", convert=_exit_key),
            Key(
                name="exit_destination",
                kind=Kind.STRING,
                default="",
                convert=_optional_destination,
            ),
            Key(
                name="skills",
                kind=Kind.TABLE,
                default={},
                convert=_skill_levels,
                render=lambda q: dict(q.skills),
            ),
            Key(
                name="widen_after", kind=Kind.NUMBER, default=0.0, convert=_not_negative
            ),
            Key(
                name="tier_after", kind=Kind.NUMBER, default=0.0, convert=_not_negative
            ),
            Key(
                name="callback_trunk",
                kind=Kind.STRING,
                default="",
                convert=_optional_plain,
            ),
            Key(
                name="callback_retries",
                kind=Kind.INTEGER,
                default=3,
                convert=_integer_between(1, 100),
            ),
            Key(
                name="callback_retry_interval",
                kind=Kind.NUMBER,
                default=60.0,
                convert=_greater_than_zero,
            ),
            Key(name="music", kind=Kind.STRING, default="", convert=_optional_plain),
        ),
    ),
    Section(
        name="agents",
        build=AgentConfig,
        many=True,
        keys=(
            Key(name="name", kind=Kind.STRING, convert=_name),
            Key(
                name="users",
                kind=Kind.STRINGS,
                convert=_agent_users,
                render=lambda a: list(a.users),
            ),
            Key(
                name="queues",
                kind=Kind.STRINGS,
                convert=_agent_queues,
                render=lambda a: [f"{q}:{p}" if p else q for q, p in a.queues],
            ),
            Key(
                name="skills",
                kind=Kind.TABLE,
                default={},
                convert=_skill_levels,
                render=lambda a: dict(a.skills),
            ),
            Key(
                name="wrap_up",
                kind=Kind.NUMBER,
                default=None,
                convert=_optional_seconds,
            ),
            Key(name="auto_login", kind=Kind.BOOLEAN, default=False),
        ),
    ),
    Section(
        name="admission",
        build=AdmissionConfig,
        many=True,
        keys=(
            Key(name="queue", kind=Kind.STRING, convert=_name),
            Key(name="days", kind=Kind.STRING, default="", convert=_schedule_days),
            Key(name="hours", kind=Kind.STRING, default="", convert=_schedule_hours),
            Key(
                name="max_expected_wait",
                kind=Kind.NUMBER,
                default=0.0,
                convert=_not_negative,
            ),
            Key(name="max_asa", kind=Kind.NUMBER, default=0.0, convert=_not_negative),
            Key(
                name="max_per_agent",
                kind=Kind.NUMBER,
                default=0.0,
                convert=_not_negative,
            ),
            Key(
                name="max_length",
                kind=Kind.INTEGER,
                default=0,
                convert=_integer_between(0, None),
            ),
            Key(
                name="action",
                kind=Kind.STRING,
                default="callback",
                convert=_admission_action,
            ),
            Key(
                name="destination",
                kind=Kind.STRING,
                default="",
                convert=_optional_destination,
            ),
        ),
    ),
)

_SECTION_BY_NAME = {section.name: section for section in SECTIONS}


# ---------------------------------------------------------------------------------------
# Checks across keys. Each names the key paths involved, the one to blame first.
# ---------------------------------------------------------------------------------------


def _check_timers(config: Config, name: Callable[[str], str]) -> None:
    # RFC 3261 section 17.1.2.2: T2 caps the retransmit interval that starts at T1.
    sip = config.sip
    if sip.t2 < sip.t1:
        raise _Invalid(
            f"{_show(sip.t2)} is less than {name('sip.t1')} ({_show(sip.t1)})", "sip.t2"
        )


def _check_tls(config: Config, name: Callable[[str], str]) -> None:
    sip = config.sip
    if sip.tls_listen_host is None:
        return
    for key in ("tls_certificate", "tls_private_key"):
        if getattr(sip, key) is None:
            raise _Invalid(
                f"required when {name('sip.tls_listen')} is set", f"sip.{key}"
            )
    hosts = {sip.listen_host, sip.tls_listen_host}
    same_host = len(hosts) == 1 or bool(hosts & _WILDCARD_HOSTS)
    if sip.tls_listen_port == sip.listen_port and same_host:
        raise _Invalid(
            f"port {sip.listen_port} is already used for SIP over TCP "
            f"({name('sip.listen')})",
            "sip.tls_listen",
            "sip.listen",
        )


def _check_rtp_ports(config: Config, name: Callable[[str], str]) -> None:
    low, high, port = config.rtp.port_low, config.rtp.port_high, config.sip.listen_port
    if low <= port <= high:
        raise _Invalid(
            f"RTP range {low}-{high} ({name('rtp.ports')}) contains the SIP port "
            f"{port} ({name('sip.listen')})",
            "rtp.ports",
            "sip.listen",
        )
    workers = config.rtp.media_workers
    if workers and (high - low + 1) // 2 < workers:
        raise _Invalid(
            f"RTP range {low}-{high} ({name('rtp.ports')}) has fewer port pairs than "
            f"{name('rtp.media_workers')} ({workers})",
            "rtp.ports",
            "rtp.media_workers",
        )


def _check_expires(config: Config, name: Callable[[str], str]) -> None:
    # RFC 3261 section 10.3 step 7: the registrar bounds what a client asks for.
    registrar = config.registrar
    if registrar.min_expires > registrar.max_expires:
        raise _Invalid(
            f"{registrar.min_expires} is greater than {name('registrar.max_expires')} "
            f"({registrar.max_expires})",
            "registrar.min_expires",
        )
    if not registrar.min_expires <= registrar.default_expires <= registrar.max_expires:
        raise _Invalid(
            f"{registrar.default_expires} is not between "
            f"{name('registrar.min_expires')} ({registrar.min_expires}) and "
            f"{name('registrar.max_expires')} ({registrar.max_expires})",
            "registrar.default_expires",
        )


def _check_users(config: Config, name: Callable[[str], str]) -> None:
    first_seen: dict[str, str] = {}
    for number, user in enumerate(config.users, start=1):
        path = f"users[{number}]"
        has_password = user.password is not None
        has_md5, has_sha256 = user.ha1_md5 is not None, user.ha1_sha256 is not None
        if has_password and (has_md5 or has_sha256):
            raise _Invalid(
                "give either password or ha1_md5 + ha1_sha256, not both",
                f"{path}.password",
            )
        if has_md5 != has_sha256:
            missing = "ha1_sha256" if has_md5 else "ha1_md5"
            raise _Invalid(
                "missing; ha1_md5 and ha1_sha256 are given together",
                f"{path}.{missing}",
            )
        if not has_password and not has_md5:
            raise _Invalid(
                f"user {_show(user.name)} needs a password or ha1_md5 + ha1_sha256",
                path,
            )
        if user.name in first_seen:
            raise _Invalid(
                f"duplicate user {_show(user.name)} (first in {first_seen[user.name]})",
                f"{path}.name",
            )
        first_seen[user.name] = path


def _check_trunks(config: Config, name: Callable[[str], str]) -> None:
    first_seen: dict[str, str] = {}
    users = {user.name for user in config.users}
    for number, trunk in enumerate(config.trunks, start=1):
        path = f"trunks[{number}]"
        if trunk.name in first_seen:
            raise _Invalid(
                f"duplicate trunk {_show(trunk.name)} (first in {first_seen[trunk.name]})",
                f"{path}.name",
            )
        first_seen[trunk.name] = path
        if trunk.register:
            for key in ("username", "password"):
                if getattr(trunk, key) is None:
                    raise _Invalid("required when register = true", f"{path}.{key}")
        if (trunk.inbound_username is None) != (trunk.inbound_password is None):
            missing = (
                "inbound_password" if trunk.inbound_username else "inbound_username"
            )
            raise _Invalid(
                "missing; inbound_username and inbound_password are given together",
                f"{path}.{missing}",
            )
        if trunk.inbound_username in users:
            raise _Invalid(
                f"{_show(trunk.inbound_username)} is also a user name; "
                "inbound trunk credentials must not be a user's",
                f"{path}.inbound_username",
            )
        try:
            NumberingPlan(
                country_code=trunk.country_code,
                national_prefix=trunk.national_prefix,
                international_prefix=trunk.international_prefix,
                number_format=trunk.number_format,
            )
        except DialplanError:
            raise _Invalid(
                f"{_show(trunk.number_format)} needs country_code and "
                "international_prefix",
                f"{path}.number_format",
            ) from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"must be a number, got {_show(text)}") from None


def _positive_seconds(text: str) -> None:
    seconds = _number(text)
    if not 0 < seconds <= 3600:
        raise ValueError(f"must be seconds between 0 and 3600, got {text}")


def _tone_frequency(text: str) -> None:
    # switch/apps.py: the engine's player generates its 1 kHz test tone only.
    if _number(text) != 1000:
        raise ValueError(f"only 1000 Hz is generated, got {text}")


def _integer(text: str) -> None:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(f"must be a whole number, got {_show(text)}")


def _agent_action(text: str) -> None:
    if text not in COMMAND_ACTIONS:
        raise ValueError(f"must be one of {', '.join(COMMAND_ACTIONS)}, got {text!r}")


def _text(text: str) -> None:
    if not text:
        raise ValueError("must not be empty")


#: The local applications ``ccswitch serve`` wires (``app:NAME``) and the arguments
#: each takes, with a check of the value. A misspelled app or argument, or a value
#: the app cannot use, stops start-up here instead of failing the calls that reach it.
APP_ARGUMENTS: dict[str, dict[str, Callable[[str], None]]] = {
    "echo": {},
    "tone": {
        "frequency": _tone_frequency,
        "seconds": _positive_seconds,
        "prompt": _text,
    },
    "ivr": {"flow": _text},
    "queue": {"queue": _text, "name": _text, "priority": _integer},
    "agent": {"action": _agent_action, "reason": _text},
}


def _check_app(target: str, args: tuple[tuple[str, str], ...], path: str) -> None:
    """An ``app:`` destination names a wired app, and only arguments it takes."""
    known = APP_ARGUMENTS.get(target)
    if known is None:
        raise _Invalid(
            f"unknown app {_show(target)} (apps: {', '.join(APP_ARGUMENTS)})",
            f"{path}.to",
        )
    for key, value in args:
        check = known.get(key)
        if check is None:
            takes = ", ".join(known) or "none"
            raise _Invalid(
                f"app {target} takes no argument {key} (it takes: {takes})",
                f"{path}.args.{key}",
            )
        try:
            check(value)
        except ValueError as exc:
            raise _Invalid(str(exc), f"{path}.args.{key}") from None


def _check_dialplan(config: Config, name: Callable[[str], str]) -> None:
    trunks = {trunk.name for trunk in config.trunks}
    users = {user.name for user in config.users}
    for number, rule in enumerate(config.dialplan, start=1):
        path = f"dialplan[{number}]"
        kind, target = parse_destination(rule.to)
        if kind == "trunk" and target not in trunks:
            raise _Invalid(f"unknown trunk {_show(target)}", f"{path}.to")
        if kind == "user" and target and target not in users:
            raise _Invalid(f"unknown user {_show(target)}", f"{path}.to")
        if kind == "queue" and target not in {q.name for q in config.queues}:
            raise _Invalid(f"unknown queue {_show(target)}", f"{path}.to")
        if kind == "ivr":
            flows = _flows_folder(config)
            if flows is not None and not (flows / f"{target}.toml").is_file():
                raise _Invalid(
                    f"no flow {_show(target)} ({flows / (target + '.toml')} is missing)",
                    f"{path}.to",
                )
        if kind == "app":
            _check_app(target, rule.args, path)
        if rule.args and kind != "app":
            raise _Invalid(
                f"only app: destinations take args (to is {_show(rule.to)})",
                f"{path}.args",
            )


def _flows_folder(config: Config) -> Path | None:
    """The IVR's flows folder (the demo's when unset), None when it is not there."""
    if config.ivr.flows:
        path = Path(config.ivr.flows)
    else:
        from ivr.service import DEMO_FLOWS  # ccswitch wires everything

        path = DEMO_FLOWS
    return path if path.is_dir() else None


def _check_queue_destination(
    destination: str, queues: Mapping[str, str], users: set[str], key: str
) -> None:
    kind, _, target = destination.partition(":")
    if kind == "queue" and target in queues:
        return
    if kind == "user" and target in users:
        return
    if kind in ("queue", "user"):
        raise _Invalid(f"unknown {kind} {_show(target)}", key)
    raise _Invalid(f"{_show(destination)} is not queue:NAME or user:NAME", key)


def _check_acd(config: Config, name: Callable[[str], str]) -> None:
    """Queues, agents and admission rules name each other, users and trunks."""
    queues: dict[str, str] = {}
    trunks = {trunk.name for trunk in config.trunks}
    for number, queue in enumerate(config.queues, start=1):
        path = f"queues[{number}]"
        if queue.name in queues:
            raise _Invalid(
                f"duplicate queue {_show(queue.name)} (first in {queues[queue.name]})",
                f"{path}.name",
            )
        queues[queue.name] = path
        if queue.callback_trunk and queue.callback_trunk not in trunks:
            raise _Invalid(
                f"unknown trunk {_show(queue.callback_trunk)}", f"{path}.callback_trunk"
            )
        if queue.exit_key and not queue.exit_destination:
            raise _Invalid("required when exit_key is set", f"{path}.exit_destination")
        if queue.music and not Path(queue.music).is_file():
            raise _Invalid(f"{_show(queue.music)}: no such file", f"{path}.music")
    users = {user.name for user in config.users}
    # Where queue callers can be sent on (exit key, overflow): queue:NAME, user:NAME.
    for number, queue in enumerate(config.queues, start=1):
        if queue.exit_destination:
            _check_queue_destination(
                queue.exit_destination,
                queues,
                users,
                f"queues[{number}].exit_destination",
            )
    agents: dict[str, str] = {}
    for number, agent in enumerate(config.agents, start=1):
        path = f"agents[{number}]"
        if agent.name in agents:
            raise _Invalid(
                f"duplicate agent {_show(agent.name)} (first in {agents[agent.name]})",
                f"{path}.name",
            )
        agents[agent.name] = path
        for user in agent.users:
            if user not in users:
                raise _Invalid(f"unknown user {_show(user)}", f"{path}.users")
        for queue_name, _ in agent.queues:
            if queue_name not in queues:
                raise _Invalid(f"unknown queue {_show(queue_name)}", f"{path}.queues")
    for number, rule in enumerate(config.admission, start=1):
        path = f"admission[{number}]"
        if rule.queue not in queues:
            raise _Invalid(f"unknown queue {_show(rule.queue)}", f"{path}.queue")
        if rule.action == "overflow" and not rule.destination:
            raise _Invalid("required when action is overflow", f"{path}.destination")
        if rule.destination:
            _check_queue_destination(
                rule.destination, queues, users, f"{path}.destination"
            )
        if rule.action == "callback":
            queue = next(q for q in config.queues if q.name == rule.queue)
            if not queue.callback_trunk:
                raise _Invalid(
                    f"callback needs {queues[rule.queue]}.callback_trunk",
                    f"{path}.action",
                )


CHECKS: tuple[Check, ...] = (
    _check_timers,
    _check_tls,
    _check_rtp_ports,
    _check_expires,
    _check_users,
    _check_trunks,
    _check_dialplan,
    _check_acd,
)


# ---------------------------------------------------------------------------------------
# The walker.
# ---------------------------------------------------------------------------------------


def _suggest(unknown: str, known: list[str]) -> str:
    close = difflib.get_close_matches(unknown, known, n=1)
    if close:
        return f"did you mean {_show(close[0])}?"
    return f"expected one of: {', '.join(known)}"


def _reject_unknown(table: Mapping[str, Any], known: list[str], prefix: str) -> None:
    for name in table:
        if name not in known:
            what = "unknown key" if prefix else "unknown section"
            path = f"{prefix}{name}"
            raise _Invalid(f"{what}; {_suggest(name, known)}", path)


def _convert(key: Key, raw: object) -> dict[str, Any]:
    names = key.field_names
    if raw is None:
        return dict.fromkeys(names)
    _check_kind(key.kind, raw)
    value = key.convert(raw)
    if len(names) == 1:
        return {names[0]: value}
    return dict(zip(names, value, strict=True))


def _build_table(section: Section, table: Mapping[str, Any], path: str) -> Any:
    _reject_unknown(table, [key.name for key in section.keys], f"{path}.")
    fields: dict[str, Any] = {}
    for key in section.keys:
        raw = table.get(key.name, key.default)
        key_path = f"{path}.{key.name}"
        if raw is REQUIRED:
            raise _Invalid("required key is missing", key_path)
        try:
            fields.update(_convert(key, raw))
        except _Invalid as exc:
            raise _Invalid(exc.problem, *(exc.keys or (key_path,))) from None
    return section.build(**fields)


def _build_section(section: Section, raw: object) -> Any:
    if not section.many:
        if not isinstance(raw, dict):
            raise _Invalid(
                f"expected a table ([{section.name}]), got {_describe(raw)}",
                section.name,
            )
        return _build_table(section, raw, section.name)
    if not isinstance(raw, list):
        raise _Invalid(
            f"expected an array of tables ([[{section.name}]]), got {_describe(raw)}",
            section.name,
        )
    items = []
    for number, item in enumerate(raw, start=1):
        path = f"{section.name}[{number}]"
        if not isinstance(item, dict):
            raise _Invalid(f"expected a table, got {_describe(item)}", path)
        items.append(_build_table(section, item, path))
    return tuple(items)


def _run_checks(config: Config, renamed: Mapping[str, str]) -> None:
    """Run :data:`CHECKS`; blame an overriding option before the key it replaced."""

    def name(path: str) -> str:
        return renamed.get(path, path)

    for check in CHECKS:
        try:
            check(config, name)
        except _Invalid as exc:
            lead = next((k for k in exc.keys if k in renamed), exc.keys[0])
            if lead in renamed:
                raise ConfigError(exc.problem, key=renamed[lead]) from None
            raise ConfigError(exc.problem, source=config.source, key=lead) from None


def parse_config(text: str, *, source: str) -> Config:
    """Parse and validate configuration text.

    :param text: TOML text.
    :param source: how errors and :attr:`Config.source` name it (usually the path).
    :raises ConfigError: on the first problem found.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=source) from None
    try:
        _reject_unknown(data, list(_SECTION_BY_NAME), "")
        built = {
            section.name: _build_section(
                section, data.get(section.name, [] if section.many else {})
            )
            for section in SECTIONS
        }
    except _Invalid as exc:
        raise ConfigError(exc.problem, source=source, key=exc.keys[0]) from None
    config = Config(source=source, **built)
    _run_checks(config, {})
    return config


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate a configuration file, or the built-in demo when ``None``.

    :raises ConfigError: when the file cannot be read or is invalid; its ``str()`` is
        one line naming the file, the key and the problem.
    """
    if path is None:
        demo = resources.files("ccswitch").joinpath(DEMO_RESOURCE)
        return parse_config(demo.read_text(encoding="utf-8"), source=DEMO_SOURCE)
    source = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read: {exc.strerror or exc}", source=source
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 (byte {exc.start})", source=source) from None
    return parse_config(text, source=source)


# Command-line option -> the (section, key) it replaces, with the same checks.
OVERRIDES: dict[str, tuple[str, str]] = {
    "--listen": ("sip", "listen"),
    "--rtp-ports": ("rtp", "ports"),
    "--media-workers": ("rtp", "media_workers"),
    "--db": ("store", "path"),
    "--log-level": ("log", "level"),
    "--sip-trace": ("sip", "trace_file"),
}


def apply_overrides(
    config: Config,
    *,
    listen: str | None,
    rtp_ports: str | None,
    db: str | None,
    log_level: str | None,
    trace_file: str | None,
    media_workers: int | None = None,
) -> Config:
    """Return ``config`` with command-line values replacing their keys.

    ``None`` leaves a key alone; ``trace_file=""`` turns the trace off. Values pass the
    same checks as in a file, and errors name the option (``--listen: ...``).

    :raises ConfigError: on the first invalid value or broken cross-key rule.
    """
    given: dict[str, object] = {
        "--listen": listen,
        "--rtp-ports": rtp_ports,
        "--media-workers": media_workers,
        "--db": db,
        "--log-level": log_level,
        "--sip-trace": trace_file,
    }
    renamed: dict[str, str] = {}
    for option, value in given.items():
        if value is None:
            continue
        section_name, key_name = OVERRIDES[option]
        key = _SECTION_BY_NAME[section_name].key(key_name)
        try:
            fields = _convert(key, value)
        except _Invalid as exc:
            raise ConfigError(exc.problem, key=option) from None
        section = dataclasses.replace(getattr(config, section_name), **fields)
        config = dataclasses.replace(config, **{section_name: section})
        renamed[f"{section_name}.{key_name}"] = option
    _run_checks(config, renamed)
    return config


def check_value(path: str, value: object, *, label: str | None = None) -> Any:
    """Check one value against the schema key at ``section.key`` (``"users.name"``).

    For tools that take a single value, such as ``ccswitch user hash``. Returns the
    converted value (a tuple for keys filling several fields).

    :raises ConfigError: naming ``label`` (default: ``path``).
    """
    section_name, _, key_name = path.partition(".")
    key = _SECTION_BY_NAME[section_name].key(key_name)
    try:
        fields = _convert(key, value)
    except _Invalid as exc:
        raise ConfigError(exc.problem, key=label or path) from None
    values = tuple(fields.values())
    return values[0] if len(values) == 1 else values


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
        return "{" + (f" {items} " if items else "") + "}"
    return _show(value)


def render_config(config: Config) -> str:
    """The effective configuration as TOML, secrets (passwords, HA1) left out."""
    lines = [
        f"# Effective configuration from {config.source}.",
        "# Passwords and HA1 hashes are hidden.",
    ]
    for section in SECTIONS:
        value = getattr(config, section.name)
        items = value if section.many else (value,)
        for item in items:
            lines.append("")
            lines.append(f"[[{section.name}]]" if section.many else f"[{section.name}]")
            for key in section.keys:
                rendered = key.rendered(item)
                if rendered is None:
                    continue
                if key.secret:
                    lines.append(f"# {key.name} = (hidden)")
                else:
                    lines.append(f"{key.name} = {_toml_value(rendered)}")
    return "\n".join(lines) + "\n"
