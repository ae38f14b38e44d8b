"""SIP messages: parsing, building, framing and request validation (RFC 3261 7, 8.2, 18).

:func:`parse_message` turns one datagram (or one framed stream message) into a
:class:`Request` or :class:`Response`; :meth:`Request.to_bytes` /
:meth:`Response.to_bytes` write them back. :class:`StreamFramer` cuts a TCP/TLS byte
stream into messages by Content-Length (RFC 3261 section 18.3) and counts RFC 5626
CRLF keep-alive pings. :func:`make_response` builds a response from a request (section
8.2.6) and :func:`check_request` performs the checks of section 8.2 that need no
application state, raising a :class:`ProtocolError` carrying the answer.

Theory of operation: parsing is two-speed. :func:`parse_message` does only what framing
needs: the start line, the header section split into (name, value) lines with folding
undone and names canonicalised, and the body cut by Content-Length. Header values stay
raw strings in :class:`Headers`; typed accessors (``call_id``, ``cseq``, ``vias``,
``from_``...) parse on first access and cache the result in the :class:`Headers` object,
which drops the cache on every mutation. Returned objects are snapshots: change a
message with ``headers.set()``, not by mutating a returned :class:`Via`.

Only :class:`BadMessage` (a :class:`ProtocolError`) ever escapes the parser, whatever the
input bytes; :mod:`tests.sip.test_fuzz` checks this property.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeVar

from switch.sip import grammar
from switch.sip.errors import BadMessage, LocalProtocolError, ProtocolError
from switch.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_header_values,
)
from switch.sip.uri import AbsoluteUri, SipUri, Uri, parse_uri

logger = logging.getLogger(__name__)

T = TypeVar("T")

# RFC 3261 section 7.1: the only version this element speaks.
SIP_VERSION = "SIP/2.0"

# RFC 3261 section 7.5 / RFC 5626 section 3.5.1: the empty line ending the header
# section, and the double-CRLF keep-alive ping (answered with a single CRLF pong).
CRLF = b"\r\n"
EMPTY_LINE = b"\r\n\r\n"
KEEPALIVE_PING = b"\r\n\r\n"
KEEPALIVE_PONG = b"\r\n"

# Framing limits for stream transports (RFC 3261 section 18.3 leaves them to us; an
# element must never allocate without bound). UDP datagrams are bounded by the socket.
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024

# RFC 3261 section 8.1.1.6: Max-Forwards is an integer 0-255.
MAX_FORWARDS_LIMIT = 255

# RFC 3261 section 7.3.3 table: the compact forms, plus those of later RFCs.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",  # RFC 3841
    "b": "Referred-By",  # RFC 3892
    "c": "Content-Type",
    "d": "Request-Disposition",  # RFC 3841
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",  # RFC 3841
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",  # RFC 6665
    "r": "Refer-To",  # RFC 3515
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",  # RFC 6665
    "v": "Via",
    "x": "Session-Expires",  # RFC 4028
    "y": "Identity",  # RFC 8224
}

# RFC 3261 section 20 and common extensions: the canonical spelling re-emitted for a
# known header whatever case it arrived in. Unknown names are re-emitted verbatim.
KNOWN_HEADERS = (
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Diversion",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "History-Info",
    "Identity",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Min-SE",
    "Organization",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Path",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Service-Route",
    "Session-Expires",
    "SIP-ETag",
    "SIP-If-Match",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
)

# Headers whose ABNF is a comma-separated list (``x *(COMMA x)``); get_all() splits them.
# Authorization and the challenges are not lists: their commas separate parameters.
LIST_HEADERS = frozenset(
    {
        "accept",
        "accept-contact",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "allow",
        "allow-events",
        "call-info",
        "contact",
        "content-encoding",
        "content-language",
        "diversion",
        "error-info",
        "history-info",
        "in-reply-to",
        "p-asserted-identity",
        "p-preferred-identity",
        "path",
        "proxy-require",
        "reason",
        "record-route",
        "reject-contact",
        "require",
        "route",
        "service-route",
        "supported",
        "unsupported",
        "via",
        "warning",
    }
)

# RFC 3261 section 8.1.1: the headers every request must carry. Max-Forwards is left
# out on purpose: RFC 2543 peers omit it (RFC 4475 section 3.4.1) and a UAS does not
# need it; when present it is still checked.
MANDATORY_REQUEST_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")

# Headers that may appear only once (RFC 3261 section 20; multiple values are a 400,
# RFC 4475 section 3.3.8).
SINGLE_HEADERS = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length")

# The same two lists as lookup keys, for check_request's one pass over the lines.
_MANDATORY_KEYS = tuple((name, name.lower()) for name in MANDATORY_REQUEST_HEADERS)
_SINGLE_KEYS = tuple((name, name.lower()) for name in SINGLE_HEADERS)

# RFC 3261 section 8.2.2.3: Require is ignored in these requests.
REQUIRE_IGNORED_METHODS = frozenset({"ACK", "CANCEL"})

# RFC 3261 section 16.3 item 2: an element may answer an OPTIONS with Max-Forwards 0
# itself rather than refuse it with 483.
DEFAULT_ANSWERED_LOCALLY = frozenset({"OPTIONS"})


class Status(IntEnum):
    """SIP response codes, named as RFC 3261 section 21 (and later RFCs) name them."""

    TRYING = 100
    RINGING = 180
    CALL_IS_BEING_FORWARDED = 181
    QUEUED = 182
    SESSION_PROGRESS = 183
    EARLY_DIALOG_TERMINATED = 199
    OK = 200
    ACCEPTED = 202
    NO_NOTIFICATION = 204
    MULTIPLE_CHOICES = 300
    MOVED_PERMANENTLY = 301
    MOVED_TEMPORARILY = 302
    USE_PROXY = 305
    ALTERNATIVE_SERVICE = 380
    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    PAYMENT_REQUIRED = 402
    FORBIDDEN = 403
    NOT_FOUND = 404
    METHOD_NOT_ALLOWED = 405
    NOT_ACCEPTABLE = 406
    PROXY_AUTHENTICATION_REQUIRED = 407
    REQUEST_TIMEOUT = 408
    GONE = 410
    CONDITIONAL_REQUEST_FAILED = 412
    REQUEST_ENTITY_TOO_LARGE = 413
    REQUEST_URI_TOO_LONG = 414
    UNSUPPORTED_MEDIA_TYPE = 415
    UNSUPPORTED_URI_SCHEME = 416
    UNKNOWN_RESOURCE_PRIORITY = 417
    BAD_EXTENSION = 420
    EXTENSION_REQUIRED = 421
    SESSION_INTERVAL_TOO_SMALL = 422
    INTERVAL_TOO_BRIEF = 423
    USE_IDENTITY_HEADER = 428
    PROVIDE_REFERRER_IDENTITY = 429
    FLOW_FAILED = 430
    ANONYMITY_DISALLOWED = 433
    BAD_IDENTITY_INFO = 436
    UNSUPPORTED_CERTIFICATE = 437
    INVALID_IDENTITY_HEADER = 438
    FIRST_HOP_LACKS_OUTBOUND_SUPPORT = 439
    MAX_BREADTH_EXCEEDED = 440
    BAD_INFO_PACKAGE = 469
    CONSENT_NEEDED = 470
    TEMPORARILY_UNAVAILABLE = 480
    CALL_TRANSACTION_DOES_NOT_EXIST = 481
    LOOP_DETECTED = 482
    TOO_MANY_HOPS = 483
    ADDRESS_INCOMPLETE = 484
    AMBIGUOUS = 485
    BUSY_HERE = 486
    REQUEST_TERMINATED = 487
    NOT_ACCEPTABLE_HERE = 488
    BAD_EVENT = 489
    REQUEST_PENDING = 491
    UNDECIPHERABLE = 493
    SECURITY_AGREEMENT_REQUIRED = 494
    SERVER_INTERNAL_ERROR = 500
    NOT_IMPLEMENTED = 501
    BAD_GATEWAY = 502
    SERVICE_UNAVAILABLE = 503
    SERVER_TIME_OUT = 504
    VERSION_NOT_SUPPORTED = 505
    MESSAGE_TOO_LARGE = 513
    PRECONDITION_FAILURE = 580
    BUSY_EVERYWHERE = 600
    DECLINE = 603
    DOES_NOT_EXIST_ANYWHERE = 604
    NOT_ACCEPTABLE_ANYWHERE = 606
    UNWANTED = 607
    REJECTED = 608


# RFC 3261 section 21 (and the RFCs that added codes): the default reason phrases.
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    430: "Flow Failed",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}

# RFC 3261 section 8.1.3.2: an unknown code is treated as the x00 code of its class.
_CLASS_PHRASES = {1: "Trying", 2: "OK", 3: "Multiple Choices", 4: "Bad Request"}
_CLASS_PHRASES |= {5: "Server Internal Error", 6: "Busy Everywhere"}


def reason_phrase(status: int) -> str:
    """The default reason phrase for ``status`` (that of its class if unregistered)."""
    return REASON_PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "Unknown")


# --- header names ----------------------------------------------------------------------

_CANONICAL: dict[str, str] = {name.lower(): name for name in KNOWN_HEADERS}
_CANONICAL |= COMPACT_FORMS


def canonical_name(name: str) -> str:
    """The long canonical spelling of a known header name; unknown names unchanged."""
    return _CANONICAL.get(name.lower(), name)


# (key, emitted name) of each known header: one tuple, whatever the spelling, so that
# the parser can recognise a header by identity (``info is _CONTENT_LENGTH_INFO``).
_KNOWN_INFO: dict[str, tuple[str, str]] = {
    canonical: (canonical.lower(), canonical) for canonical in KNOWN_HEADERS
}
_CONTENT_LENGTH_INFO = _KNOWN_INFO["Content-Length"]

# The info of every spelling seen often: the canonical names and compact forms in
# their usual cases. Other spellings are looked up on each use (a memo of every name a
# peer sends would grow without bound).
_NAME_INFO: dict[str, tuple[str, str]] = {}
for _lower, _canonical in _CANONICAL.items():
    for _spelling in {_lower, _lower.upper(), _canonical}:
        _NAME_INFO[_spelling] = _KNOWN_INFO[_canonical]


def _name_info(name: str) -> tuple[str, str]:
    """(lookup key, name as emitted) of a header name."""
    info = _NAME_INFO.get(name)
    if info is not None:
        return info
    lower = name.lower()
    canonical = _CANONICAL.get(lower)
    return (lower, name) if canonical is None else _KNOWN_INFO[canonical]


# Name -> lookup key for the spellings of _NAME_INFO: _key is on every header read.
_KEY_OF: dict[str, str] = {spelling: info[0] for spelling, info in _NAME_INFO.items()}


def _key(name: str) -> str:
    return _KEY_OF.get(name) or _name_info(name)[0]


# The parse cache slots that depend on each header: a mutation of one header drops
# only these, so that stamping a Via or adding a Server header does not throw away
# the parsed From, To, Call-ID and CSeq that every later layer reads again.
_SLOTS_OF_KEY: dict[str, tuple[str, ...]] = {
    "via": ("vias", "top_via"),
    "call-id": ("call_id",),
    "cseq": ("cseq",),
    "from": ("from",),
    "to": ("to",),
    "max-forwards": ("max_forwards",),
    "contact": ("contacts",),
}


class Headers:
    """An ordered multimap of header lines with case-insensitive names.

    Compact forms are expanded and known names re-spelled canonically on insertion
    (``i`` -> ``Call-ID``, ``MaX-fOrWaRdS`` -> ``Max-Forwards``); unknown names are kept
    verbatim. Each line keeps its value exactly as received (folding undone), so a line
    like ``Via: a, b`` stays one line; :meth:`get_all` splits list headers into values.

    :param lines: initial ``(name, value)`` pairs, in order.
    """

    __slots__ = ("_cache", "_lines")

    def __init__(self, lines: Iterable[tuple[str, str]] = ()) -> None:
        # Each line is (lookup key, name as emitted, value).
        self._lines: list[tuple[str, str, str]] = []
        self._cache: dict[str, object] = {}
        for name, value in lines:
            self.add(name, value)

    # --- reading

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _KEY_OF.get(name) or _key(name)
        # A loop, not any(): a generator costs a frame resumption per line.
        for line in self._lines:  # noqa: SIM110
            if line[0] == key:
                return True
        return False

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter([(name, value) for _, name, value in self._lines])

    def __len__(self) -> int:
        return len(self._lines)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._lines == other._lines

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def get(self, name: str) -> str | None:
        """The value of the first line named ``name``, or None."""
        key = _KEY_OF.get(name) or _key(name)
        for line in self._lines:
            if line[0] == key:
                return line[2]
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order; list headers are split at commas.

        Empty elements of a list header (``Allow: INVITE, , ACK``) are dropped.
        """
        key = _KEY_OF.get(name) or _key(name)
        values = [line[2] for line in self._lines if line[0] == key]
        if key not in LIST_HEADERS:
            return values
        items: list[str] = []
        for value in values:
            if "," in value:
                items += [item for item in split_header_values(value) if item]
            else:
                # One element: what split_header_values would return, without a call.
                value = value.strip(grammar.WSP)
                if value:
                    items.append(value)
        return items

    def count(self, name: str) -> int:
        """How many lines are named ``name`` (not split at commas)."""
        key = _key(name)
        count = 0
        for line in self._lines:
            if line[0] == key:
                count += 1
        return count

    def copy(self) -> Headers:
        """An independent copy (the parse cache is not shared)."""
        return Headers._of_lines(list(self._lines))

    @classmethod
    def _of_lines(cls, lines: list[tuple[str, str, str]]) -> Headers:
        """Headers holding ``lines`` (already (key, name, value)), with no cache."""
        # Bypasses __init__, which would add the lines one by one.
        headers = cls.__new__(cls)
        headers._lines = lines
        headers._cache = {}
        return headers

    # --- writing

    def add(self, name: str, value: str) -> None:
        """Append a line.

        :raises LocalProtocolError: if the name is not a token or the value holds CR
            or LF (which would inject header lines).
        """
        # Names we know (most of them) are tokens already; only others are checked.
        info = _NAME_INFO.get(name)
        if info is None:
            if not grammar.TOKEN.fullmatch(name):
                raise LocalProtocolError(f"Bad header name {name!r}")
            info = _name_info(name)
        if "\r" in value or "\n" in value:
            raise LocalProtocolError(f"CR/LF in value of header {name!r}")
        # _append and _forget inlined: add runs for every header of every message built.
        key = info[0]
        self._lines.append((key, info[1], value))
        if self._cache:
            slots = _SLOTS_OF_KEY.get(key)
            if slots is not None:
                for slot in slots:
                    self._cache.pop(slot, None)

    def set(self, name: str, value: str) -> None:
        """Replace every line named ``name`` by one line, where the first one was."""
        index = self.replace_first(name, value)
        lines = self._lines
        if index + 1 < len(lines):  # else it is the last line: none follows to drop
            key = lines[index][0]
            lines[index + 1 :] = [line for line in lines[index + 1 :] if line[0] != key]

    def prepend(self, name: str, value: str) -> None:
        """Insert a line above all others (a proxy's or UAC's own Via, 8.1.1.7).

        :raises LocalProtocolError: as :meth:`add`.
        """
        self.add(name, value)
        self._lines.insert(0, self._lines.pop())

    def replace_first(self, name: str, value: str) -> int:
        """Replace the value of the first line named ``name``, or append one; return
        the index of that line.

        :raises LocalProtocolError: as :meth:`add`.
        """
        self.add(name, value)
        lines = self._lines
        new_line = lines.pop()
        key = new_line[0]
        index = 0
        for line in lines:
            if line[0] == key:
                lines[index] = new_line
                return index
            index += 1
        lines.append(new_line)
        return index

    def remove(self, name: str) -> None:
        """Remove every line named ``name`` (no error if there is none)."""
        key = _key(name)
        self._lines = [line for line in self._lines if line[0] != key]
        self._forget(key)

    # --- internals

    def _append(self, name: str, value: str) -> None:
        key, emitted = _NAME_INFO.get(name) or _name_info(name)
        self._lines.append((key, emitted, value))
        if self._cache:
            self._forget(key)

    def _forget(self, key: str) -> None:
        """Drop the parse cache slots that read the header ``key``."""
        slots = _SLOTS_OF_KEY.get(key)
        if slots is not None:
            cache = self._cache
            for slot in slots:
                cache.pop(slot, None)

    def _single(self, key: str, name: str) -> str:
        """The value of the one line keyed ``key``; ``name`` is for the error."""
        found = None
        for line in self._lines:
            if line[0] == key:
                if found is not None:
                    raise BadMessage(f"Multiple {name} headers")
                found = line[2]
        if found is None:
            raise BadMessage(f"Missing {name} header")
        return found

    def _cached(self, slot: str, build: Callable[[], T]) -> T:
        try:
            return self._cache[slot]  # type: ignore[return-value]
        except KeyError:
            value = build()
            self._cache[slot] = value
            return value


# --- messages ---------------------------------------------------------------------------


def _max_forwards_value(value: str) -> int:
    """The number of a Max-Forwards value; BadMessage unless 0-255."""
    if not grammar.DIGITS.fullmatch(value) or int(value) > MAX_FORWARDS_LIMIT:
        raise BadMessage(f"Bad Max-Forwards {value[:20]!r}")
    return int(value)


class _Message:
    """Typed accessors shared by :class:`Request` and :class:`Response`.

    Each raises :class:`BadMessage` if its header is missing, repeated or garbled.
    """

    headers: Headers
    body: bytes

    # The hot accessors read the cache dict directly: they run a dozen times per
    # message, and a call through _cached per access was a measurable share of it.

    @property
    def call_id(self) -> str:
        """The Call-ID (RFC 3261 section 20.8)."""
        cache = self.headers._cache
        value = cache.get("call_id")
        if value is None:
            value = cache["call_id"] = self._build_call_id()
        return value  # type: ignore[return-value]

    def _build_call_id(self) -> str:
        value = self.headers._single("call-id", "Call-ID")
        if not grammar.CALL_ID.fullmatch(value):
            raise BadMessage(f"Bad Call-ID {value[:40]!r}")
        return value

    @property
    def cseq(self) -> CSeq:
        """The CSeq (RFC 3261 section 20.16)."""
        cache = self.headers._cache
        value = cache.get("cseq")
        if value is None:
            value = cache["cseq"] = parse_cseq(self.headers._single("cseq", "CSeq"))
        return value  # type: ignore[return-value]

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first (RFC 3261 section 20.42)."""
        cache = self.headers._cache
        value = cache.get("vias")
        if value is None:
            value = cache["vias"] = self._build_vias()
        return value  # type: ignore[return-value]

    def _build_vias(self) -> list[Via]:
        lines = [line[2] for line in self.headers._lines if line[0] == "via"]
        # The top Via is often parsed already (transactions match on it first): when
        # the first line holds it alone, it is reused rather than parsed again.
        top = self.headers._cache.get("top_via")
        vias: list[Via] = []
        if top is not None and lines and "," not in lines[0]:
            vias.append(top)  # type: ignore[arg-type]
            del lines[0]
        for line in lines:
            for value in split_header_values(line):
                if value:
                    vias.append(parse_via(value))
        if not vias:
            raise BadMessage("Missing Via header")
        return vias

    @property
    def top_via(self) -> Via:
        """The first Via value; only it is parsed (RFC 3261 sections 8.2.6, 17.2.3)."""
        cache = self.headers._cache
        value = cache.get("top_via")
        if value is None:
            vias = cache.get("vias")
            value = cache["top_via"] = (
                self._build_top_via() if vias is None else vias[0]  # type: ignore[index]
            )
        return value  # type: ignore[return-value]

    def _build_top_via(self) -> Via:
        first = self.headers.get("Via")
        if first is None:
            raise BadMessage("Missing Via header")
        if "," in first:
            first = split_header_values(first)[0]
        return parse_via(first)

    @property
    def from_(self) -> NameAddr:
        """The From address (RFC 3261 section 20.20)."""
        cache = self.headers._cache
        value = cache.get("from")
        if value is None:
            value = cache["from"] = parse_name_addr(
                self.headers._single("from", "From")
            )
        return value  # type: ignore[return-value]

    @property
    def to(self) -> NameAddr:
        """The To address (RFC 3261 section 20.39)."""
        cache = self.headers._cache
        value = cache.get("to")
        if value is None:
            value = cache["to"] = parse_name_addr(self.headers._single("to", "To"))
        return value  # type: ignore[return-value]

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (RFC 3261 section 20.22), None if absent."""
        return self.headers._cached("max_forwards", self._build_max_forwards)

    def _build_max_forwards(self) -> int | None:
        if "Max-Forwards" not in self.headers:
            return None
        return _max_forwards_value(self.headers._single("max-forwards", "Max-Forwards"))

    @property
    def is_star_contact(self) -> bool:
        """True if the Contact is the REGISTER wildcard ``*`` (RFC 3261 10.2.2)."""
        return self.headers.get_all("Contact") == ["*"]

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact address in order; ``[]`` if none or if it is ``*``."""
        cache = self.headers._cache
        value = cache.get("contacts")
        if value is None:
            value = cache["contacts"] = self._build_contacts()
        return value  # type: ignore[return-value]

    def _build_contacts(self) -> list[NameAddr]:
        values = self.headers.get_all("Contact")
        if values == ["*"]:
            return []
        if "*" in values:
            raise BadMessage("Contact '*' mixed with addresses")
        return [parse_name_addr(value) for value in values]

    def _head_lines(self, start_line: str) -> bytes:
        # One Content-Length, always len(body): written where the first one was, else
        # last. The other lines go through one comprehension (no per-line branches).
        header_lines = self.headers._lines
        lines = [start_line]
        lines += [
            f"{name}: {value}"
            for key, name, value in header_lines
            if key != "content-length"
        ]
        length_line = f"Content-Length: {len(self.body)}"
        if len(lines) > len(header_lines) or (
            # exactly one Content-Length, the last line (as in most parsed messages)
            len(lines) == len(header_lines) and header_lines[-1][0] == "content-length"
        ):
            lines.append(length_line)
        else:
            keys = [line[0] for line in header_lines]
            lines.insert(keys.index("content-length") + 1, length_line)
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8")


@dataclass(eq=False)
class Request(_Message):
    """A SIP request (RFC 3261 section 7.1).

    :param method: the method token, case-sensitive (``INVITE``).
    :param uri: the Request-URI.
    :param headers: the header lines.
    :param body: the message body (its length is written as Content-Length).
    :param version: the SIP-Version of the Request-Line.
    """

    method: str
    uri: Uri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def to_bytes(self) -> bytes:
        """Render for the wire; Content-Length is always written as ``len(body)``.

        :raises LocalProtocolError: if the method is not a token.
        """
        if self.method not in _METHODS and not grammar.TOKEN.fullmatch(self.method):
            raise LocalProtocolError(f"Method {self.method!r} is not a token")
        return self._head_lines(f"{self.method} {self.uri} {self.version}") + self.body

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()


@dataclass(eq=False)
class Response(_Message):
    """A SIP response (RFC 3261 section 7.2).

    :param status: the status code (100-699).
    :param reason: the reason phrase (any text without CR/LF).
    :param headers: the header lines.
    :param body: the message body (its length is written as Content-Length).
    :param version: the SIP-Version of the Status-Line.
    """

    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def to_bytes(self) -> bytes:
        """Render for the wire; Content-Length is always written as ``len(body)``.

        :raises LocalProtocolError: for a status outside 100-699 or CR/LF in the reason.
        """
        if not 100 <= self.status <= 699:
            raise LocalProtocolError(f"Status {self.status} outside 100-699")
        if "\r" in self.reason or "\n" in self.reason:
            raise LocalProtocolError(f"CR/LF in reason phrase {self.reason!r}")
        return (
            self._head_lines(f"{self.version} {self.status} {self.reason}") + self.body
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()


Message = Request | Response


# --- parsing -----------------------------------------------------------------------------


class FramingError(BadMessage):
    """The head parsed but the body cannot be delimited (bad or lying Content-Length).

    ``head`` is the message with its start line and headers (and an empty body), so
    that the boundary can still answer a request with 400 (RFC 4475 sections 3.1.2.2,
    3.1.2.3 and 3.3.9); over a stream the connection must be closed as well.
    """

    def __init__(self, reason: str, *, head: Request | Response) -> None:
        super().__init__(reason)
        self.head = head


def parse_message(data: bytes | bytearray | memoryview) -> Request | Response:
    """Parse exactly one SIP message, as received in one UDP datagram.

    Leading CRLFs are skipped (RFC 3261 section 7.5). The body is cut by
    Content-Length: bytes beyond it are ignored (section 18.3, e.g. a second message in
    the same datagram); a body shorter than Content-Length is an error. Without
    Content-Length the body is the rest of the datagram (section 18.3 allows this on
    UDP only; :class:`StreamFramer` handles streams).

    :param data: the datagram.
    :raises BadMessage: with a precise reason for anything unparseable (and never any
        other exception).
    """
    data = bytes(data)
    start = 0
    while data.startswith(CRLF, start):
        start += 2
    if start == len(data):
        raise BadMessage("Empty message")
    end = data.find(EMPTY_LINE, start)
    if end < 0:
        raise BadMessage("Header section not terminated by an empty line")
    try:
        head = data[start:end].decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadMessage(
            f"Header section is not UTF-8 (byte {start + error.start})"
        ) from None
    lines = head.split("\r\n")
    if len(lines) != head.count("\n") + 1 or head.count("\r") != len(lines) - 1:
        raise BadMessage("Bare CR or LF in header section")
    # The start line is checked before the header lines (its error wins).
    message = _parse_start_line(lines[0])
    if "\n " in head or "\n\t" in head:
        message.headers = _parse_folded_header_lines(lines)
        lengths = [v for key, _, v in message.headers._lines if key == "content-length"]
    else:
        message.headers, lengths = _parse_header_lines(lines)
    try:
        message.body = _cut_body(lengths, data, end + len(EMPTY_LINE))
    except BadMessage as error:
        raise FramingError(error.reason, head=message) from None
    return message


def _parse_header_lines(lines: list[str]) -> tuple[Headers, list[str]]:
    """Header lines without folding (the usual case): one line, one header.

    Returns the headers and the values of the Content-Length lines, which framing
    needs: noting them here spares another pass over the lines.
    """
    #   message-header  =  field-name HCOLON field-value CRLF (section 7.3.1),
    #   HCOLON  =  *( SP / HTAB ) ":" SWS
    # The lines go straight into the (still empty, uncached) Headers; a name we know
    # is a token already, so only unknown spellings are matched against the grammar.
    out: list[tuple[str, str, str]] = []
    lengths: list[str] = []
    known = _NAME_INFO
    content_length = _CONTENT_LENGTH_INFO
    wsp = grammar.WSP
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise BadMessage(f"Header line without colon: {line[:40]!r}")
        info = known.get(name)
        if info is None:
            name = name.rstrip(wsp)
            info = known.get(name)
            if info is None:
                if not grammar.HEADER_NAME.fullmatch(name):
                    raise BadMessage(f"Bad header name {name[:40]!r}")
                info = _name_info(name)
        value = value.strip(wsp)
        if info is content_length:
            lengths.append(value)
        out.append((info[0], info[1], value))
    return Headers._of_lines(out), lengths


def _parse_folded_header_lines(lines: list[str]) -> Headers:
    """Header lines where some continue on the next (section 7.3.1 folding)."""
    # Continuation lines start with SP / HTAB; each is joined to its header with one
    # space.
    headers = Headers()
    out = headers._lines
    known = _NAME_INFO
    wsp = grammar.WSP
    name: str | None = None
    value = ""
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if name is None:
                raise BadMessage("Header section starts with a continuation line")
            value = f"{value} {line.strip(wsp)}"
            continue
        if name is not None:
            out.append((*(known.get(name) or _name_info(name)), value.strip(wsp)))
        colon = line.find(":")
        if colon < 0:
            raise BadMessage(f"Header line without colon: {line[:40]!r}")
        name = line[:colon].rstrip(wsp)
        if name not in known and not grammar.HEADER_NAME.fullmatch(name):
            raise BadMessage(f"Bad header name {name[:40]!r}")
        value = line[colon + 1 :]
    if name is not None:
        out.append((*(known.get(name) or _name_info(name)), value.strip(wsp)))
    return headers


def _cut_body(lengths: list[str], data: bytes, offset: int) -> bytes:
    """The body after ``offset``, as the Content-Length values ``lengths`` say."""
    if not lengths:
        return data[offset:]
    value = lengths[0]
    if lengths.count(value) != len(lengths):
        raise BadMessage("Conflicting Content-Length headers")
    if not grammar.DIGITS.fullmatch(value):
        raise BadMessage(f"Bad Content-Length {value[:20]!r}")
    length = int(value)
    available = len(data) - offset
    if length > available:
        raise BadMessage(f"Body shorter than Content-Length ({available} < {length})")
    return data[offset : offset + length]


# What _parse_start_line puts in a message until parse_message gives it its own
# headers (never seen outside): positional arguments, and no throw-away Headers().
_NO_HEADERS_YET = Headers()

# Start-line parts seen in nearly every message, known to match their grammar rule:
# a set lookup stands in for the regular expression (others are still matched).
_STATUS_CODES = frozenset(
    str(code) for code in range(100, 700) if grammar.STATUS_CODE.fullmatch(str(code))
)
_REASON_PHRASES = frozenset(REASON_PHRASES.values())
_METHODS = frozenset(
    {"ACK", "BYE", "CANCEL", "INFO", "INVITE", "MESSAGE", "NOTIFY", "OPTIONS"}
    | {"PRACK", "PUBLISH", "REFER", "REGISTER", "SUBSCRIBE", "UPDATE"}
)


def _parse_start_line(line: str) -> Request | Response:
    """The message of a start line, holding a placeholder for its headers."""
    if line[:4].upper() == "SIP/":
        #   Status-Line  =  SIP-Version SP Status-Code SP Reason-Phrase CRLF
        parts = line.split(" ", 2)
        version = parts[0]
        if version != SIP_VERSION and not grammar.SIP_VERSION.fullmatch(version):
            raise BadMessage(f"Bad SIP-Version {version[:20]!r}")
        if len(parts) < 2 or (
            parts[1] not in _STATUS_CODES
            and not grammar.STATUS_CODE.fullmatch(parts[1])
        ):
            code = parts[1][:20] if len(parts) > 1 else ""
            raise BadMessage(f"Bad status code {code!r}")
        # Deviation: "SIP/2.0 100" without the SP before an empty phrase is accepted.
        reason = parts[2] if len(parts) > 2 else ""
        if reason not in _REASON_PHRASES and not grammar.REASON_PHRASE.fullmatch(
            reason
        ):
            raise BadMessage("Control character in reason phrase")
        return Response(int(parts[1]), reason, _NO_HEADERS_YET, b"", version.upper())
    #   Request-Line  =  Method SP Request-URI SP SIP-Version CRLF
    parts = line.split(" ")
    if len(parts) != 3:
        raise BadMessage(
            f"Request-Line must be 'Method SP Request-URI SP SIP-Version', "
            f"got {len(parts)} space-separated fields"
        )
    method, uri_text, version = parts
    if method not in _METHODS and not grammar.TOKEN.fullmatch(method):
        raise BadMessage(f"Bad method {method[:20]!r}")
    if version != SIP_VERSION and not grammar.SIP_VERSION.fullmatch(version):
        raise BadMessage(f"Bad SIP-Version {version[:20]!r}")
    return Request(method, parse_uri(uri_text), _NO_HEADERS_YET, b"", version.upper())


# --- stream framing ----------------------------------------------------------------------

# TODO: a Content-Length folded onto a continuation line (RFC 3261 section 7.3.1 allows
# folding anywhere) reads as empty here and fails framing, so that peer's connection is
# closed; no known implementation folds it.
_CONTENT_LENGTH_LINE = re.compile(
    rb"\r\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE
)


class StreamFramer:
    """Cut a TCP/TLS byte stream into whole SIP messages (RFC 3261 section 18.3).

    Feed it bytes as they arrive; it returns each complete message (start line to the
    end of its Content-Length body) for :func:`parse_message`. CRLFs between messages
    are skipped (section 7.5); each RFC 5626 double-CRLF keep-alive ping is counted, and
    :meth:`take_pings` tells the transport how many single-CRLF pongs to send.

    A message without Content-Length is taken to have no body (section 18.3 makes the
    header mandatory on streams). Once :meth:`feed` has raised, framing is lost and the
    connection must be closed.

    :param max_header_bytes: largest header section accepted before failing.
    :param max_body_bytes: largest Content-Length accepted.
    """

    def __init__(
        self,
        *,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._buffer = bytearray()
        self._pings = 0
        self._max_header_bytes = max_header_bytes
        self._max_body_bytes = max_body_bytes

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every message completed by them, in order.

        :raises BadMessage: if framing is impossible (bad or conflicting
            Content-Length, oversized header section or body).
        """
        self._buffer += data
        messages: list[bytes] = []
        while True:
            self._skip_keepalives()
            message = self._next_message()
            if message is None:
                return messages
            messages.append(message)

    def take_pings(self) -> int:
        """How many keep-alive pings arrived since the last call (RFC 5626 3.5.1)."""
        pings, self._pings = self._pings, 0
        return pings

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buffer)

    def _skip_keepalives(self) -> None:
        buffer = self._buffer
        while buffer.startswith(CRLF):
            if buffer.startswith(KEEPALIVE_PING):
                self._pings += 1
                del buffer[: len(KEEPALIVE_PING)]
            elif len(buffer) < len(KEEPALIVE_PING) and KEEPALIVE_PING.startswith(
                buffer
            ):
                return  # may still become a ping
            else:
                del buffer[: len(CRLF)]

    def _next_message(self) -> bytes | None:
        buffer = self._buffer
        if not buffer or buffer.startswith(CRLF):
            return None
        end = buffer.find(EMPTY_LINE)
        if end < 0:
            if len(buffer) > self._max_header_bytes:
                raise BadMessage("Header section too large")
            return None
        if end > self._max_header_bytes:
            raise BadMessage("Header section too large")
        lengths = {
            match.group(1).strip(b" \t")
            for match in _CONTENT_LENGTH_LINE.finditer(buffer, 0, end + 2)
        }
        if len(lengths) > 1:
            raise BadMessage("Conflicting Content-Length headers")
        length = 0
        if lengths:
            (text,) = lengths
            if not text.isdigit() or len(text) > 10:
                raise BadMessage(f"Bad Content-Length {text[:20]!r}")
            length = int(text)
            if length > self._max_body_bytes:
                raise BadMessage(f"Content-Length {length} too large")
        total = end + len(EMPTY_LINE) + length
        if len(buffer) < total:
            return None
        message = bytes(buffer[:total])
        del buffer[:total]
        return message


# --- responses and validation ------------------------------------------------------------

_RESPONSE_COPIED = frozenset({"via", "from", "to", "call-id", "cseq"})
_RESPONSE_SHARED_SLOTS = ("call_id", "cseq")
# A plain int: comparing with Status.TRYING would look the member up on every call.
_TRYING = int(Status.TRYING)


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
) -> Response:
    """Build a response to ``request`` as RFC 3261 section 8.2.6 says.

    Copies every Via line (in order), From, To, Call-ID and CSeq verbatim, and
    Timestamp into a 100 (section 8.2.6.1). If ``to_tag`` is given and the To has no
    tag, the tag is added. A To that cannot be parsed (the reason a 400 is being built,
    say) is echoed as received, without a tag: no tag can be attached to it safely, and
    the error must still reach the peer.

    :param request: the request answered.
    :param status: the status code.
    :param reason: the reason phrase; the registered phrase of ``status`` if None.
    :param to_tag: the To tag of the UAS (section 8.2.6.2).
    :raises LocalProtocolError: for a status outside 100-699 or a non-token tag.
    """
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"Status {status} outside 100-699")
    if to_tag is not None and not grammar.TOKEN.fullmatch(to_tag):
        raise LocalProtocolError(f"To tag {to_tag!r} is not a token")
    # The request's lines are (key, canonical name, value) already: copied as they are.
    lines = []
    for line in request.headers._lines:
        key = line[0]
        if key in _RESPONSE_COPIED:
            if key == "to" and to_tag is not None and _needs_tag(request):
                line = (key, line[1], f"{line[2]};tag={to_tag}")
            lines.append(line)
    headers = Headers._of_lines(lines)
    if status == _TRYING:
        timestamp = request.headers.get("Timestamp")
        if timestamp is not None:
            headers._append("Timestamp", timestamp)
    # The Call-ID and CSeq lines are copied verbatim, so their parsed values (both
    # immutable) hold for the response too. Mutable ones (Via, From) are not shared.
    request_cache = request.headers._cache
    for slot in _RESPONSE_SHARED_SLOTS:
        value = request_cache.get(slot)
        if value is not None:
            headers._cache[slot] = value
    return Response(
        status, reason_phrase(status) if reason is None else reason, headers
    )


def _needs_tag(request: Request) -> bool:
    try:
        return request.to.tag is None
    except BadMessage:
        logger.debug("To of %s not parseable; echoed without a tag", request.method)
        return False


def check_request(
    request: Request,
    *,
    supported: frozenset[str],
    answered_locally: frozenset[str] = DEFAULT_ANSWERED_LOCALLY,
) -> None:
    """Perform the stateless checks of RFC 3261 section 8.2 on a received request.

    In order: 505 for a SIP-Version other than 2.0 (section 21.5.6); 400 for a missing,
    repeated or garbled mandatory header, a CSeq method differing from the request
    method (section 8.1.1.5), a Content-Length differing from the body, or a
    Request-URI with URI headers (section 19.1.1 table 1); 416 for a Request-URI scheme
    other than sip/sips/tel (section 8.2.2.1); 483 for Max-Forwards 0 (section 16.3
    item 2, which this B2BUA applies because it relays requests onto an outgoing leg)
    unless the method is in ``answered_locally`` (OPTIONS by default, which the element
    may answer itself); 420 with an Unsupported header naming every option tag of
    Require not in ``supported`` (section 8.2.2.3; not for ACK and CANCEL).

    The caller must never answer an ACK: if an ACK fails these checks, drop it.

    :param request: the parsed request.
    :param supported: the option tags this element supports (RFC 3261 section 19.2).
    :param answered_locally: methods for which Max-Forwards 0 is not an error.
    :raises ProtocolError: carrying the status and a reason phrase naming the defect.
    """
    if request.version != SIP_VERSION:
        raise ProtocolError(f"Version {request.version[:20]} Not Supported", status=505)

    # Header inspection (section 8.2.2): mandatory and single headers, then values.
    # The keys in one list, searched and counted by list methods (loops in C).
    lines = request.headers._lines
    keys = [line[0] for line in lines]
    for name, key in _MANDATORY_KEYS:
        if key not in keys:
            raise ProtocolError(f"Missing {name} header")
    for name, key in _SINGLE_KEYS:
        if keys.count(key) > 1:
            raise ProtocolError(f"Multiple {name} headers")
    try:
        request.vias  # noqa: B018 - parsed for validation
        request.from_  # noqa: B018
        request.to  # noqa: B018
        request.call_id  # noqa: B018
        cseq = request.cseq
        request.contacts  # noqa: B018
    except BadMessage as error:
        raise ProtocolError(error.reason) from None
    if cseq.method != request.method:
        raise ProtocolError("CSeq method does not match request method")
    if "content-length" in keys:
        length = lines[keys.index("content-length")][2]
        if length != str(len(request.body)):
            raise ProtocolError("Bad Content-Length")
    uri = request.uri
    if isinstance(uri, SipUri) and uri.headers:
        raise ProtocolError("Request-URI must not contain headers")

    # Section 8.2.2.1: the Request-URI scheme.
    if isinstance(uri, AbsoluteUri):
        raise ProtocolError(f"Unsupported URI Scheme {uri.scheme[:20]}", status=416)

    # Section 16.3 item 2 (and RFC 7332 for a B2BUA relaying onto another leg).
    # Max-Forwards is known to be single here, so its one value is read from the key
    # list above (and kept, as the max_forwards accessor would keep it).
    cache = request.headers._cache
    if "max_forwards" in cache:
        max_forwards = cache["max_forwards"]
    else:
        max_forwards = None
        if "max-forwards" in keys:
            try:
                max_forwards = _max_forwards_value(lines[keys.index("max-forwards")][2])
            except BadMessage as error:
                raise ProtocolError(error.reason) from None
        cache["max_forwards"] = max_forwards
    if max_forwards == 0 and request.method not in answered_locally:
        raise ProtocolError("Too Many Hops", status=483)

    # Section 8.2.2.3: Require.
    # TODO: Proxy-Require (RFC 3261 section 16.3 item 4) is not checked; only a proxy
    # must refuse it with 420, so relaying an unknown Proxy-Require tag is the cost.
    # Option tags are compared case-sensitively (RFC 3261 section 19.2 is silent).
    if "require" in keys and request.method not in REQUIRE_IGNORED_METHODS:
        unknown = [
            tag for tag in request.headers.get_all("Require") if tag not in supported
        ]
        if unknown:
            raise ProtocolError(
                f"Bad Extension {', '.join(unknown)[:60]}",
                status=420,
                headers=(("Unsupported", ", ".join(unknown)),),
            )


def error_response(
    data: bytes | bytearray | memoryview, error: ProtocolError
) -> Response | None:
    """Best-effort answer to a request whose bytes :func:`parse_message` refused.

    RFC 4475 asks for a 400 wherever one can be addressed, even when the start line or
    a header is garbage. This salvages the Via, From, To, Call-ID and CSeq lines that
    are readable and builds ``error.status`` / ``error.reason`` (plus
    ``error.headers``) from them, as :func:`make_response` would.

    :param data: the datagram (or framed stream message) that failed to parse.
    :param error: the error :func:`parse_message` raised.
    :returns: the response, or None when none may or can be sent: the bytes are a
        response or an ACK (never answered, RFC 3261 section 17), or no top Via can be
        read to address it (section 18.2.2).
    """
    if isinstance(error, FramingError):
        if not isinstance(error.head, Request) or error.head.method == "ACK":
            return None
        reply = make_response(error.head, error.status, error.reason)
    else:
        head = bytes(data).lstrip(b"\r\n")
        end = head.find(EMPTY_LINE)
        text = (head if end < 0 else head[:end]).decode("utf-8", "replace")
        lines = text.split("\r\n")
        if lines[0][:4].upper() == "SIP/" or lines[0].split(" ")[0] == "ACK":
            return None
        headers = Headers()
        for name, value in _salvage_header_lines(lines[1:]):
            if _key(name) in _RESPONSE_COPIED:
                headers._append(name, value)
        reply = Response(status=error.status, reason=error.reason, headers=headers)
        try:
            reply.top_via  # noqa: B018 - the response must be addressable
        except BadMessage:
            return None
    for name, value in error.headers:
        reply.headers.add(name, value)
    return reply


def _salvage_header_lines(lines: list[str]) -> Iterator[tuple[str, str]]:
    """The well-formed header lines among ``lines``, unfolded; bad ones are skipped."""
    name: str | None = None
    value = ""
    for line in [*lines, "end-of-section:"]:
        if line[:1] in (" ", "\t"):
            value = f"{value} {line.strip(grammar.WSP)}"
            continue
        if name is not None and "\r" not in value and "\n" not in value:
            yield name, value.strip(grammar.WSP)
        name, colon, value = line.partition(":")
        name = name.rstrip(grammar.WSP)
        if not colon or not grammar.HEADER_NAME.fullmatch(name):
            name = None
