"""Typed values of the SIP header fields the core reads (RFC 3261 sections 20 and 25).

:func:`parse_name_addr` reads From, To, Contact, Route and the like (``name-addr`` or
``addr-spec``), :func:`parse_via` one Via value, :func:`parse_cseq` a CSeq, and
:func:`split_header_values` cuts a comma-joined list header into its values. RFC 5118
(IPv6 in Via ``received``) is honoured.

Theory of operation: a header value arrives already unfolded (the message layer turns
CRLF+WSP into one space), so LWS here is only spaces and tabs. Each reader walks the value
left to right with a position index, matching one flat pattern from
:mod:`switch.sip.grammar` at a time, and raises :class:`BadMessage` naming the defect.
Generic parameter values are kept as written (a quoted-string keeps its quotes) so that
they re-render unchanged. The parts that recur from call to call (an address up to its
">", a Via up to its first ";", a CSeq) are memoised by exact text; each caller still
gets its own mutable :class:`NameAddr` or :class:`Via`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from switch.sip import grammar
from switch.sip.errors import BadMessage, LocalProtocolError
from switch.sip.memo import MAX_TEXT, MEMO_SIZE, remember
from switch.sip.uri import SipUri, Uri, normalize_host, parse_uri

logger = logging.getLogger(__name__)

_new_object = object.__new__

# RFC 3261 section 8.1.1.5: a CSeq number must be expressible as a 32-bit unsigned
# integer (senders keep it below 2**31; we accept the full 32-bit range).
MAX_CSEQ = 2**32 - 1
MAX_CSEQ_DIGITS = len(str(MAX_CSEQ))

# RFC 3261 section 20.10: in the addr-spec form these characters would be read as header
# syntax, so a URI holding them must be enclosed in angle brackets.
ADDR_SPEC_FORBIDDEN = ",?"

# RFC 3261 section 25.1 quoted-pair: these may not appear bare inside a quoted string.
_MUST_ESCAPE_IN_QUOTES = frozenset(
    {'"', "\\"} | {chr(c) for c in range(0x20) if c != 0x09} | {"\x7f"}
)

_WSP = grammar.WSP

# The parts of header values that repeat from message to message (an address up to
# its closing ">", the sent-protocol and sent-by of a Via, a whole CSeq) are memoised
# by their exact text, up to this many entries per memo (emptied when full) and only
# for texts this short, so that a peer sending ever-new values costs bounded memory.
# What differs per message (tags, branches) is still parsed every time.
PARSE_CACHE_SIZE = MEMO_SIZE
MAX_CACHED_TEXT_LENGTH = MAX_TEXT


def _skip_wsp(text: str, pos: int) -> int:
    end = len(text)
    while pos < end and text[pos] in _WSP:
        pos += 1
    return pos


def quote_string(text: str) -> str:
    """Render ``text`` as a quoted-string, escaping what qdtext does not allow.

    :raises LocalProtocolError: if ``text`` holds CR or LF, which no quoted-pair can
        carry (it would inject header lines).
    """
    if "\r" in text or "\n" in text:
        raise LocalProtocolError(f"CR/LF cannot be quoted: {text!r}")
    escaped = "".join(f"\\{c}" if c in _MUST_ESCAPE_IN_QUOTES else c for c in text)
    return f'"{escaped}"'


def unquote_string(quoted: str) -> str:
    """Strip the quotes of a quoted-string and undo its quoted-pairs."""
    inner = quoted[1:-1]
    if "\\" not in inner:
        return inner
    out: list[str] = []
    chars = iter(inner)
    for char in chars:
        out.append(next(chars, "") if char == "\\" else char)
    return "".join(out)


# One well-formed ``SEMI generic-param`` with the whitespace around it: parse_params
# for text its split fast path does not take. Anything this does not match is read
# again by the careful loop, which names the defect.
_GENERIC_PARAM = re.compile(
    rf"[{_WSP}]*;[{_WSP}]*(?P<name>{grammar.TOKEN.pattern})[{_WSP}]*"
    rf"(?:=[{_WSP}]*(?P<value>{grammar.QUOTED_STRING.pattern}"
    rf"|{grammar.GEN_VALUE.pattern}))?[{_WSP}]*"
)
_TOKEN = grammar.TOKEN.fullmatch
_GEN_VALUE = grammar.GEN_VALUE.fullmatch


def parse_params(text: str, pos: int = 0) -> dict[str, str | None]:
    """Read ``*( SEMI generic-param )`` from ``text[pos:]`` (RFC 3261 section 25.1).

    ::

        generic-param  =  token [ EQUAL gen-value ]
        gen-value      =  token / host / quoted-string
        SEMI = SWS ";" SWS ;  EQUAL = SWS "=" SWS

    Names are lower-cased; values are kept as written (quoted-strings with quotes).

    :raises BadMessage: on an empty parameter, a missing ``;`` or a bad value.
    """
    # Fast path for the usual ``;name=value;name`` without whitespace or quotes: split
    # at the separators, which no token or gen-value holds, and check each part.
    # ASCII letters and digits (a tag, a branch, "rport") pass with two C calls; other
    # parts are matched against their rule. Any part that fails (space, quote, empty
    # name...) sends the whole text to the pattern loop, which reads or refuses it.
    if text.startswith(";", pos):
        params: dict[str, str | None] = {}
        for item in text[pos + 1 :].split(";"):
            name, equals, value = item.partition("=")
            if not (name.isalnum() and name.isascii()) and not _TOKEN(name):
                break
            if not equals:
                params[name.lower()] = None
            elif (value.isalnum() and value.isascii()) or _GEN_VALUE(value):
                params[name.lower()] = value
            else:
                break
        else:
            return params
    return _parse_params_by_pattern(text, pos)


def _parse_params_by_pattern(text: str, pos: int) -> dict[str, str | None]:
    """parse_params one generic-param pattern match at a time."""
    params: dict[str, str | None] = {}
    end = len(text)
    start = pos
    match_param = _GENERIC_PARAM.match
    while pos < end:
        match = match_param(text, pos)
        if match is None:
            return _parse_params_carefully(text, start)
        name, value = match.group(1, 2)  # the "name" and "value" groups
        params[name.lower()] = value
        pos = match.end()
    return params


def _parse_params_carefully(text: str, pos: int) -> dict[str, str | None]:
    """parse_params one step at a time, for input the fast pattern did not take."""
    params: dict[str, str | None] = {}
    end = len(text)
    pos = _skip_wsp(text, pos)
    while pos < end:
        if text[pos] != ";":
            raise BadMessage(f"Expected ';' at {text[pos : pos + 20]!r}")
        pos = _skip_wsp(text, pos + 1)
        match = grammar.TOKEN.match(text, pos)
        if match is None:
            raise BadMessage(f"Empty or bad parameter name at {text[pos : pos + 20]!r}")
        name = match.group().lower()
        pos = _skip_wsp(text, match.end())
        value: str | None = None
        if pos < end and text[pos] == "=":
            pos = _skip_wsp(text, pos + 1)
            if pos < end and text[pos] == '"':
                match = grammar.QUOTED_STRING.match(text, pos)
                if match is None:
                    raise BadMessage(
                        f"Unterminated quoted string in parameter {name!r}"
                    )
            else:
                match = grammar.GEN_VALUE.match(text, pos)
                if match is None:
                    raise BadMessage(f"Missing value for parameter {name!r}")
            value = match.group()
            pos = _skip_wsp(text, match.end())
        params[name] = value
    return params


def render_params(params: dict[str, str | None]) -> str:
    """Render header parameters as ``;name=value`` / ``;name`` (values as stored)."""
    if not params:
        return ""
    # A list comprehension, not a generator: join() would build the list anyway.
    return "".join(
        [
            f";{name}" if value is None else f";{name}={value}"
            for name, value in params.items()
        ]
    )


def split_header_values(value: str) -> list[str]:
    """Split a comma-joined header value (RFC 3261 section 7.3.1) into its elements.

    Commas inside quoted strings and inside ``<...>`` do not split. Elements are
    stripped of surrounding whitespace; empty elements are kept (as ``""``) so that the
    caller can decide whether they are an error.
    """
    if "," not in value:
        return [value.strip(_WSP)]
    if '"' not in value and "<" not in value:
        return [item.strip(_WSP) for item in value.split(",")]
    items: list[str] = []
    start = 0
    in_quotes = in_brackets = escaped = False
    for index, char in enumerate(value):
        if in_quotes:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_quotes = False
        elif char == '"':
            in_quotes = True
        elif char == "<":
            in_brackets = True
        elif char == ">":
            in_brackets = False
        elif char == "," and not in_brackets:
            items.append(value[start:index].strip(_WSP))
            start = index + 1
    items.append(value[start:].strip(_WSP))
    return items


# --- name-addr / addr-spec -------------------------------------------------------------


@dataclass
class NameAddr:
    """An address with optional display name and header parameters.

    Used for From, To, Contact, Route, Record-Route, Reply-To, Refer-To and friends.
    ``params`` are the header parameters after the URI (``tag``, ``expires``, ``q``...);
    URI parameters live in ``uri.params``.
    """

    uri: Uri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    def copy(self) -> NameAddr:
        """An independent copy: a copied URI and a new ``params`` dict."""
        # Set on a bare instance (as SipUri.copy does): each message's From, To and
        # Contact are copies of a memoised address.
        new = _new_object(NameAddr)
        new.uri = self.uri.copy()
        new.display_name = self.display_name
        new.params = self.params.copy()
        return new

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 section 19.3), None if absent."""
        return self.params.get("tag")

    def __str__(self) -> str:
        params = render_params(self.params) if self.params else ""
        if self.display_name is None:
            return f"<{self.uri}>{params}"
        return f"{quote_string(self.display_name)} <{self.uri}>{params}"


# Two memos for addresses in angle brackets; what they hold is copied for each caller.
# Whole address text -> the address: the same From and To (tag included) recur in
# every message of a dialog, and a Contact in every dialog.
_NAME_ADDR_CACHE: dict[str, NameAddr] = {}
# Address text up to and including its ">" -> (URI, display name): for an address
# seen with a new tag, only the header parameters after the ">" are parsed.
_ADDRESS_CACHE: dict[str, tuple[Uri, str | None]] = {}


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``( name-addr / addr-spec ) *( SEMI generic-param )``.

    ::

        name-addr      =  [ display-name ] LAQUOT addr-spec RAQUOT
        display-name   =  *(token LWS)/ quoted-string

    In the addr-spec form (no angle brackets) the URI ends at the first ``;`` or space
    and every parameter after it is a header parameter (RFC 3261 section 20.10).

    :returns: a new object, which the caller may change.
    :raises BadMessage: naming the defect (unquoted display name with separators,
        unbalanced quote, spaces inside brackets, bad URI, bad parameter).
    """
    address = _NAME_ADDR_CACHE.get(text)
    if address is not None:
        return address.copy()
    text = text.strip(_WSP)
    # The memo is keyed by the text up to the last ">"; it holds only keys that the
    # full parse below ended exactly at, so a hit parses as the full parse would.
    head_end = text.rfind(">") + 1
    if head_end:
        cached = _ADDRESS_CACHE.get(text[:head_end])
        if cached is not None:
            address = NameAddr(cached[0], cached[1], parse_params(text, head_end))
            return _remember_address(text, address)
    if not text:
        raise BadMessage("Empty address")
    display_name: str | None = None
    if text[0] == '"':
        match = grammar.QUOTED_STRING.match(text)
        if match is None:
            raise BadMessage(f"Unterminated quoted display name in {text[:40]!r}")
        display_name = unquote_string(match.group())
        pos = _skip_wsp(text, match.end())
        if pos >= len(text) or text[pos] != "<":
            raise BadMessage(f"Expected '<' after display name in {text[:40]!r}")
        return _parse_bracketed(text, pos, display_name, head_end)
    less_than = text.find("<")
    if less_than >= 0:
        words = text[:less_than].split()
        for word in words:
            if not grammar.TOKEN.fullmatch(word):
                raise BadMessage(f"Display name must be quoted: {text[:less_than]!r}")
        if words:
            display_name = " ".join(words)
        return _parse_bracketed(text, less_than, display_name, head_end)
    return _parse_addr_spec(text)


def _parse_bracketed(
    text: str, less_than: int, display_name: str | None, head_end: int
) -> NameAddr:
    greater_than = text.find(">", less_than)
    if greater_than < 0:
        raise BadMessage(f"Missing '>' in {text[:40]!r}")
    uri_text = text[less_than + 1 : greater_than]
    if uri_text != uri_text.strip(_WSP):
        raise BadMessage(f"Whitespace inside angle brackets in {text[:40]!r}")
    uri = parse_uri(uri_text)
    params = parse_params(text, greater_than + 1)
    if greater_than + 1 != head_end or head_end > MAX_CACHED_TEXT_LENGTH:
        return NameAddr(uri, display_name, params)
    remember(_ADDRESS_CACHE, text[:head_end], (uri, display_name), PARSE_CACHE_SIZE)
    return _remember_address(text, NameAddr(uri, display_name, params))


def _remember_address(text: str, address: NameAddr) -> NameAddr:
    """Memoise a bracketed address parsed from ``text``; return a copy of it."""
    return remember(_NAME_ADDR_CACHE, text, address, PARSE_CACHE_SIZE).copy()


def _parse_addr_spec(text: str) -> NameAddr:
    end = len(text)
    for index, char in enumerate(text):
        if char == ";" or char in _WSP:
            end = index
            break
    uri_text = text[:end]
    for char in ADDR_SPEC_FORBIDDEN:
        if char in uri_text:
            raise BadMessage(
                f"URI with {char!r} must be in angle brackets: {uri_text!r}"
            )
    return NameAddr(parse_uri(uri_text), None, parse_params(text, end))


# --- Via ---------------------------------------------------------------------------------


@dataclass
class Via:
    """One Via value (RFC 3261 section 20.42).

    ``transport`` is upper-cased, ``host`` lower-cased (IPv6 with brackets), parameter
    names lower-cased; ``protocol`` is ``protocol-name "/" protocol-version``.
    """

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter, the transaction id (RFC 3261 section 17.1.3)."""
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The ``received`` address; RFC 5118 section 4.5 brackets are stripped."""
        value = self.params.get("received")
        if value is not None and value.startswith("[") and value.endswith("]"):
            return value[1:-1]
        return value

    @property
    def rport(self) -> int | str | None:
        """RFC 3581 ``rport``: None if absent, ``""`` if asked for, else the port."""
        if "rport" not in self.params:
            return None
        value = self.params["rport"]
        if value is None:
            return ""
        if not grammar.PORT.fullmatch(value):
            raise BadMessage(f"Bad rport value {value!r}")
        return int(value)

    @property
    def sent_by(self) -> str:
        """``host`` or ``host:port`` (RFC 3261 sent-by)."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        sent_by = self.host if self.port is None else f"{self.host}:{self.port}"
        params = render_params(self.params) if self.params else ""
        return f"{self.protocol}/{self.transport} {sent_by}{params}"


# Via text up to its first ";" (sent-protocol and sent-by, the same in every request a
# peer sends) -> (transport, host, port, protocol). Only the parameters after it (the
# branch, unique to each transaction) are parsed again.
_VIA_HEAD_CACHE: dict[str, tuple[str, str, int | None, str]] = {}


def parse_via(text: str) -> Via:
    """Parse ONE via-parm (the Via header already split at commas).

    ::

        via-parm          =  sent-protocol LWS sent-by *( SEMI via-params )
        sent-by           =  host [ COLON port ]

    :returns: a new object, which the caller may change.
    :raises BadMessage: naming the defect.
    """
    text = text.strip(_WSP)
    # The memo holds only heads that the full parse below ended exactly at (its
    # parameters began at the first ";"), so a hit parses as the full parse would.
    head_end = text.find(";")
    if head_end < 0:
        head_end = len(text)
    cached = _VIA_HEAD_CACHE.get(text[:head_end])
    if cached is not None:
        params = parse_params(text, head_end)
        return Via(cached[0], cached[1], cached[2], params, cached[3])
    match = grammar.SENT_PROTOCOL.match(text)
    if match is None:
        raise BadMessage(f"Bad Via sent-protocol in {text[:40]!r}")
    name, version, transport = match.groups()
    pos = _skip_wsp(text, match.end())
    if pos == match.end():
        raise BadMessage(f"Missing space after Via sent-protocol in {text[:40]!r}")
    end = len(text)
    if pos < end and text[pos] == "[":
        close = text.find("]", pos)
        host_end = close + 1 if close >= 0 else end
    else:
        host_end = pos
        while host_end < end and text[host_end] not in ":;" + _WSP:
            host_end += 1
    if host_end == pos:
        raise BadMessage(f"Missing Via sent-by host in {text[:40]!r}")
    host = normalize_host(text[pos:host_end])
    pos = _skip_wsp(text, host_end)
    port: int | None = None
    if pos < end and text[pos] == ":":
        pos = _skip_wsp(text, pos + 1)
        port_match = grammar.PORT.match(text, pos)
        if port_match is None or int(port_match.group()) > 65535:
            raise BadMessage(f"Bad Via port in {text[:40]!r}")
        port = int(port_match.group())
        pos = port_match.end()
    transport = transport.upper()
    protocol = f"{name.upper()}/{version}"
    params = parse_params(text, pos)
    if pos == head_end:
        head = (transport, host, port, protocol)
        remember(_VIA_HEAD_CACHE, text[:head_end], head, PARSE_CACHE_SIZE)
    return Via(transport, host, port, params, protocol)


# --- CSeq --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CSeq:
    """The CSeq header (RFC 3261 section 20.16): sequence number and method."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


# CSeq text -> CSeq: the few values of a dialog ("1 INVITE", "2 BYE") recur in every
# call. CSeq is frozen, so the cached object itself is shared.
_CSEQ_CACHE: dict[str, CSeq] = {}


def parse_cseq(text: str) -> CSeq:
    """Parse ``1*DIGIT LWS Method``; the number must fit 32 bits (section 8.1.1.5).

    :raises BadMessage: naming the defect.
    """
    cseq = _CSEQ_CACHE.get(text)
    if cseq is not None:
        return cseq
    match = grammar.CSEQ.fullmatch(text.strip(_WSP))
    if match is None:
        raise BadMessage(f"Bad CSeq {text[:40]!r}")
    digits = match.group(1).lstrip("0") or "0"
    if len(digits) > MAX_CSEQ_DIGITS or int(digits) > MAX_CSEQ:
        raise BadMessage(f"CSeq number {digits[:30]} does not fit 32 bits")
    return remember(
        _CSEQ_CACHE, text, CSeq(int(digits), match.group(2)), PARSE_CACHE_SIZE
    )


def sip_uri(address: NameAddr) -> SipUri:
    """Return the address's URI if it is SIP/SIPS, else raise BadMessage."""
    if not isinstance(address.uri, SipUri):
        raise BadMessage(f"Not a SIP URI: {address.uri}")
    return address.uri
