"""SIP, SIPS and tel URIs (RFC 3261 sections 19.1 and 25.1, RFC 5118, RFC 3966).

:func:`parse_uri` turns URI text into a :class:`SipUri`, :class:`TelUri` or, for any
other scheme, an opaque :class:`AbsoluteUri` (which a UAS answers with 416). Escapes
(``%HH``) in the user part, password, parameters and headers of a SIP URI are undone
exactly once on parsing and redone on rendering, so fields hold what the URI means
(``sip:%75ser@h`` has user ``user``) and ``str()`` gives a canonical wire form.

Theory of operation: the URI is cut at its delimiters by hand (``@`` ends the userinfo,
since no other component may hold an unescaped ``@``; then ``:``, ``;`` and ``?``), and
each piece is checked against one flat pattern from :mod:`switch.sip.grammar`. Hosts are
lower-cased; IPv6 references keep their brackets (``[2001:db8::1]``). Parsed URIs are
memoised by their exact text (the same few recur in every call) and copied out, so a
caller may still edit the URI it gets.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from dataclasses import dataclass, field
from urllib.parse import unquote

from switch.sip import grammar
from switch.sip.errors import BadMessage
from switch.sip.memo import MAX_TEXT, MEMO_SIZE, remember

logger = logging.getLogger(__name__)

_new_object = object.__new__

# RFC 3261 section 19.1.4: these uri-parameters, when present in only one of two URIs,
# make them differ; every other parameter present in only one URI is ignored. The rule
# text names user, ttl, method and maddr; "transport" is added because the section's own
# example calls sip:bob@biloxi.com and sip:bob@biloxi.com;transport=udp different.
PARAMS_THAT_MUST_MATCH = frozenset({"user", "ttl", "method", "maddr", "transport"})

# RFC 3261 section 25.1: port = 1*DIGIT; a TCP/UDP port is at most 65535.
MAX_PORT = 65535

# RFC 5118 section 4.10: the RFC 3261 ABNF admits three colons before an embedded IPv4
# address ("2001:db8:::192.0.2.1"); we tolerate that and only that.
IPV6_ABNF_BUG = ":::"

# Hosts repeat (the same peers and proxies), so their checked form is memoised.
HOST_CACHE_SIZE = 4096

# Whole URIs repeat too (every message of a call names the same peers, contacts and
# Request-URIs), so parse_uri memoises each text that parsed, up to this many entries
# (the memo is emptied when full) and only for texts this short, so that a peer
# sending long or ever-new URIs costs a bounded amount of memory.
URI_CACHE_SIZE = MEMO_SIZE
MAX_CACHED_URI_LENGTH = MAX_TEXT

_USER_SAFE = frozenset(grammar.USER_SAFE)
_PASSWORD_SAFE = frozenset(grammar.PASSWORD_SAFE)
_PARAM_SAFE = frozenset(grammar.PARAM_SAFE)
_HNV_SAFE = frozenset(grammar.HNV_SAFE)


def escape(text: str, safe: frozenset[str]) -> str:
    """Percent-encode every character of ``text`` not in ``safe`` (RFC 3261 19.1.2).

    Non-ASCII characters are encoded as their UTF-8 octets; lone surrogates that
    :func:`unescape` produced from invalid UTF-8 turn back into the original octet.
    """
    if safe.issuperset(text):
        return text
    out: list[str] = []
    for char in text:
        if char in safe:
            out.append(char)
        else:
            for octet in char.encode("utf-8", "surrogateescape"):
                out.append(f"%{octet:02X}")
    return "".join(out)


def unescape(text: str) -> str:
    """Undo ``%HH`` escapes once (RFC 3261 19.1.2); invalid UTF-8 is kept losslessly."""
    if "%" not in text:
        return text
    return unquote(text, errors="surrogateescape")


@functools.lru_cache(maxsize=HOST_CACHE_SIZE)
def normalize_host(text: str) -> str:
    """Check a host (hostname, IPv4 address or IPv6 reference) and lower-case it.

    :param text: the host exactly as written, IPv6 references with their brackets.
    :returns: the host lower-cased; the RFC 5118 section 4.10 ``:::`` form of an IPv6
        reference is rewritten with ``::``.
    :raises BadMessage: if the text is not a host per RFC 3261 section 25.1.
    """
    if text.startswith("["):
        return _normalize_ipv6_reference(text)
    if grammar.IPV4ADDRESS.fullmatch(text):
        if any(int(octet) > 255 for octet in text.split(".")):
            raise BadMessage(f"Bad IPv4 address {text!r}")
        return text
    check_hostname(text)
    return text.lower()


def check_hostname(text: str) -> None:
    """Raise BadMessage unless ``text`` follows the RFC 3261 hostname rule."""
    # TODO: hostnames with "_" (seen from some LAN PBXs) are refused as the ABNF says,
    # costing a 400 to such peers; relax here if interop needs it.
    if not text or not grammar.HOSTNAME_CHARS.fullmatch(text):
        raise BadMessage(f"Bad host {text!r}")
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    for label in labels:
        if not grammar.DOMAINLABEL.fullmatch(label):
            raise BadMessage(f"Bad host {text!r}")
    #   toplabel = ALPHA / ALPHA *( alphanum / "-" ) alphanum
    if not labels[-1][0].isalpha():
        raise BadMessage(f"Bad host {text!r}: last label must start with a letter")


def _normalize_ipv6_reference(text: str) -> str:
    address = text[1:-1] if text.endswith("]") else ""
    if not address or not grammar.IPV6_CHARS.fullmatch(address):
        raise BadMessage(f"Bad IPv6 reference {text!r}")
    candidates = [address]
    head, bug, tail = address.partition(IPV6_ABNF_BUG)
    if bug and grammar.IPV4ADDRESS.fullmatch(tail):
        candidates.append(f"{head}::{tail}")
    for candidate in candidates:
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        return f"[{candidate.lower()}]"
    raise BadMessage(f"Bad IPv6 reference {text!r}")


def _host_key(host: str) -> str:
    """Comparison form of a host: IPv6 references compressed (RFC 3261 19.1.4)."""
    if host.startswith("["):
        return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
    return host


def _render_params(params: dict[str, str | None], safe: frozenset[str]) -> str:
    parts: list[str] = []
    for name, value in params.items():
        if value is None:
            parts.append(f";{escape(name, safe)}")
        else:
            parts.append(f";{escape(name, safe)}={escape(value, safe)}")
    return "".join(parts)


def _parse_uri_params(text: str, uri: str) -> dict[str, str | None]:
    """Parse ``;name[=value]...`` (RFC 3261 uri-parameters); names are lower-cased."""
    params: dict[str, str | None] = {}
    if not text:
        return params
    for item in text[1:].split(";"):
        name, equals, value = item.partition("=")
        if not grammar.PARAMCHARS.fullmatch(name):
            raise BadMessage(f"Bad URI parameter {item!r} in {uri!r}")
        if equals:
            if not grammar.PARAMCHARS.fullmatch(value):
                raise BadMessage(f"Bad URI parameter value {item!r} in {uri!r}")
            params[unescape(name).lower()] = unescape(value)
        else:
            params[unescape(name).lower()] = None
    return params


@dataclass
class SipUri:
    """A ``sip:`` or ``sips:`` URI (RFC 3261 section 19.1.1).

    User, password, parameter values and header values are held unescaped; parameter
    names are lower-cased; the host is lower-cased and an IPv6 host keeps its brackets.
    """

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def copy(self) -> SipUri:
        """An independent copy: its ``params`` and ``headers`` are new dicts."""
        # About 20 copies per call: the fields are set directly on a bare instance,
        # in __init__'s order, which spares the call into the dataclass __init__.
        # dict.copy() is cheaper than dict(); URI headers are rare, so an empty dict
        # is made without a call.
        new = _new_object(SipUri)
        new.scheme = self.scheme
        new.user = self.user
        new.password = self.password
        new.host = self.host
        new.port = self.port
        new.params = self.params.copy()
        new.headers = self.headers.copy() if self.headers else {}
        return new

    def __str__(self) -> str:
        # The usual URI (user@host:port, a few plain parameters) takes the first
        # branches only: one f-string, no list, escape() skipped for safe text.
        user = self.user
        if user is None:
            userinfo = ""
        else:
            if not _USER_SAFE.issuperset(user):
                user = escape(user, _USER_SAFE)
            if self.password is None:
                userinfo = f"{user}@"
            else:
                userinfo = f"{user}:{escape(self.password, _PASSWORD_SAFE)}@"
        port = self.port
        host_port = self.host if port is None else f"{self.host}:{port}"
        text = f"{self.scheme}:{userinfo}{host_port}"
        if self.params:
            text += _render_params(self.params, _PARAM_SAFE)
        if self.headers:
            text += "?" + "&".join(
                [
                    f"{escape(name, _HNV_SAFE)}={escape(value, _HNV_SAFE)}"
                    for name, value in self.headers.items()
                ]
            )
        return text

    @property
    def host_port(self) -> str:
        """``host`` or ``host:port`` as written in a URI or a Via sent-by."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter lower-cased, or None if absent or valueless."""
        value = self.params.get("transport")
        return value.lower() if value else None

    def equivalent(self, other: object) -> bool:
        """Compare two URIs by the rules of RFC 3261 section 19.1.4.

        Userinfo is compared case-sensitively, everything else case-insensitively;
        ``user``, ``ttl``, ``method``, ``maddr`` and ``transport`` parameters must be in
        both URIs or neither, other parameters matter only when in both; URI headers
        must match (names case-insensitively, values exactly).
        """
        if not isinstance(other, SipUri):
            return False
        if (self.scheme, self.user, self.password, self.port) != (
            other.scheme,
            other.user,
            other.password,
            other.port,
        ):
            return False
        if _host_key(self.host) != _host_key(other.host):
            return False
        for name, value in self.params.items():
            if name in other.params:
                theirs = other.params[name]
                if (value or "").lower() != (theirs or "").lower():
                    return False
            elif name in PARAMS_THAT_MUST_MATCH:
                return False
        if any(
            n in PARAMS_THAT_MUST_MATCH and n not in self.params for n in other.params
        ):
            return False
        # TODO: URI header values are compared exactly; RFC 3261 section 19.1.4 wants
        # each compared by its own header's rules (section 20), so two URIs differing
        # only in, say, the case of a header's token value are wrongly told apart.
        mine = {name.lower(): value for name, value in self.headers.items()}
        theirs_headers = {name.lower(): value for name, value in other.headers.items()}
        return mine == theirs_headers


@dataclass
class TelUri:
    """A ``tel:`` URI (RFC 3966): the number as written and its parameters."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)

    def copy(self) -> TelUri:
        """An independent copy: its ``params`` is a new dict."""
        return TelUri(self.number, dict(self.params))

    def __str__(self) -> str:
        return f"tel:{self.number}{_render_params(self.params, _PARAM_SAFE)}"

    def equivalent(self, other: object) -> bool:
        """RFC 3966 section 4: equal numbers ignoring visual separators, equal params."""
        if not isinstance(other, TelUri):
            return False

        def digits(number: str) -> str:
            return "".join(c for c in number if c not in "-.()").lower()

        def lowered(params: dict[str, str | None]) -> dict[str, str | None]:
            return {k: v.lower() if v is not None else None for k, v in params.items()}

        return digits(self.number) == digits(other.number) and lowered(
            self.params
        ) == lowered(other.params)


@dataclass
class AbsoluteUri:
    """Any other URI scheme (RFC 3261 absoluteURI), kept opaque.

    As a Request-URI it earns a 416 (RFC 3261 section 8.2.2.1); in From, To or Contact
    it is legal and simply carried.
    """

    scheme: str
    rest: str

    def copy(self) -> AbsoluteUri:
        """An independent copy."""
        return AbsoluteUri(self.scheme, self.rest)

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"

    def equivalent(self, other: object) -> bool:
        """Opaque comparison: scheme case-insensitive, the rest exactly."""
        return (
            isinstance(other, AbsoluteUri)
            and self.scheme == other.scheme
            and self.rest == other.rest
        )


Uri = SipUri | TelUri | AbsoluteUri

# Text -> the URI it parsed to. The cached objects are prototypes never handed out:
# each caller gets a copy, so a caller that edits its URI cannot change another's.
_URI_CACHE: dict[str, Uri] = {}


def parse_uri(text: str) -> Uri:
    """Parse a SIP, SIPS, tel or other absolute URI.

    :param text: the URI without surrounding whitespace or angle brackets.
    :returns: a new object, which the caller may change.
    :raises BadMessage: with a message naming the faulty component.
    """
    prototype = _URI_CACHE.get(text)
    if prototype is None:
        prototype = remember(_URI_CACHE, text, _parse_uri(text), URI_CACHE_SIZE)
    return prototype.copy()


def _parse_uri(text: str) -> Uri:
    colon = text.find(":")
    if colon <= 0 or not grammar.SCHEME.fullmatch(text, 0, colon):
        raise BadMessage(f"URI without a valid scheme: {text[:60]!r}")
    scheme = text[:colon].lower()
    rest = text[colon + 1 :]
    if scheme in ("sip", "sips"):
        return _parse_sip_uri(scheme, rest, text)
    if scheme == "tel":
        return _parse_tel_uri(rest, text)
    if not grammar.ABSOLUTE_REST.fullmatch(rest):
        raise BadMessage(f"Bad {scheme!r} URI {text[:60]!r}")
    return AbsoluteUri(scheme=scheme, rest=rest)


def _parse_sip_uri(scheme: str, rest: str, text: str) -> SipUri:
    #   SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
    #   userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        raw_user, colon, raw_password = userinfo.partition(":")
        if not grammar.USER.fullmatch(raw_user):
            raise BadMessage(f"Bad user part in URI {text[:60]!r}")
        user = unescape(raw_user)
        if colon:
            if not grammar.PASSWORD.fullmatch(raw_password):
                raise BadMessage(f"Bad password in URI {text[:60]!r}")
            password = unescape(raw_password)

    # headers = "?" header *( "&" header ): everything after the first "?"
    rest, question, raw_headers = rest.partition("?")
    headers: dict[str, str] = {}
    if question:
        for item in raw_headers.split("&"):
            name, equals, value = item.partition("=")
            if (
                not equals
                or not grammar.HNAME.fullmatch(name)
                or not grammar.HVALUE.fullmatch(value)
            ):
                raise BadMessage(f"Bad URI header {item[:40]!r} in {text[:60]!r}")
            headers[unescape(name)] = unescape(value)

    # hostport = host [ ":" port ], then uri-parameters from the first ";"
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise BadMessage(f"Unclosed IPv6 reference in URI {text[:60]!r}")
        raw_host, rest = rest[: close + 1], rest[close + 1 :]
        rest, semicolon, raw_params = rest.partition(";")
        raw_port = rest
    else:
        rest, semicolon, raw_params = rest.partition(";")
        raw_host, colon, port_text = rest.partition(":")
        if ":" in port_text:
            # RFC 5118 section 4.2: an IPv6 address must be written as a reference.
            raise BadMessage(f"IPv6 address without brackets in URI {text[:60]!r}")
        raw_port = colon + port_text
    if not raw_host:
        raise BadMessage(f"URI without a host: {text[:60]!r}")
    host = normalize_host(raw_host)
    port: int | None = None
    if raw_port:
        port = _parse_port(raw_port, text)
    params = _parse_uri_params(semicolon + raw_params, text)
    return SipUri(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=params,
        headers=headers,
    )


def _parse_port(raw_port: str, text: str) -> int:
    if not raw_port.startswith(":") or not grammar.PORT.fullmatch(raw_port, 1):
        raise BadMessage(f"Bad port in URI {text[:60]!r}")
    port = int(raw_port[1:])
    if port > MAX_PORT:
        raise BadMessage(f"Port out of range in URI {text[:60]!r}")
    return port


def _parse_tel_uri(rest: str, text: str) -> TelUri:
    #   telephone-uri = "tel:" telephone-subscriber   (RFC 3966 section 3)
    number, semicolon, raw_params = rest.partition(";")
    if not grammar.TEL_NUMBER.fullmatch(number):
        raise BadMessage(f"Bad telephone number in URI {text[:60]!r}")
    return TelUri(number=number, params=_parse_uri_params(semicolon + raw_params, text))
