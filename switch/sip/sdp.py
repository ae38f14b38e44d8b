"""Session Description Protocol: parse and build session descriptions (RFC 8866).

A :class:`SessionDescription` is the whole body of an ``application/sdp`` part: the
session-level lines (``v= o= s= i= u= e= p= c= b= t= r= z= k= a=``) and one
:class:`MediaDescription` per ``m=`` line with its own ``i= c= b= k= a=`` lines.
Attributes are kept verbatim, in order, as :class:`Attribute` (name, value) pairs, so an
unknown attribute survives a parse/build round trip untouched; the ones the media path
needs are read through typed accessors: ``rtpmap`` / ``fmtp`` / ``ptime`` /
``maxptime`` (RFC 8866 section 6), the direction attributes ``sendrecv`` / ``sendonly``
/ ``recvonly`` / ``inactive`` (section 6.7) and ``rtcp`` (RFC 3605). Offer/answer
(RFC 3264) lives in :mod:`switch.sip.offer_answer`.

Theory of operation. Parsing is one pass over the lines with a two-state machine
(session part, then media part); every line is checked when it is read, known
attributes included, so a description that parses can be used without further checks
and a bad one fails with :class:`~switch.sip.errors.BadMessage` naming the line number.
Speed: a switch parses two bodies and builds two per call, and most lines repeat from
call to call (codecs, addresses, ``t=0 0``), so the values of ``a= c= t=`` lines are
cached by their exact text (immutable results; failures are not cached), and the hot
paths build the frozen values through a cheaper constructor (see "Fast construction").
Tolerance policy (each point deliberate and tested): LF as well as CRLF line ends and a
missing final line end; runs of spaces between the fields of structured lines
(``o= c= m= t= b= a=rtpmap``...); the optional session-level lines (``i`` to ``a``) in
any order after ``s=`` (deployed stacks shuffle ``c=``/``b=``/``t=``); an empty ``s=``;
no ``c=`` for a media description whose port is 0 (a rejected stream); no formats on an
``m=`` line whose port is 0. Everything else RFC 8866 forbids is refused: unknown line
types (section 5 allows refusing them), a ``v=`` other than 0, missing ``o=``/``s=``/
``t=``, duplicated single lines, a space before ``=``, bad addresses and ports.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Any

from switch.sip.errors import BadMessage
from switch.sip.memo import MAX_TEXT, ParseMemo

logger = logging.getLogger(__name__)

# --- RFC 8866 section 5: the description ---------------------------------------------------
SDP_VERSION = 0  # section 5.1: "v=0"
VERSION_TEXT = str(SDP_VERSION)
LINE_END = "\r\n"  # section 5: lines end in CRLF (LF alone is read too, see module doc)
NETTYPE_IN = "IN"  # section 5.2: the only nettype we handle ("Internet")
# Section 5: type letters that may appear before the first m= line, and after it.
SESSION_TYPES = frozenset("vosiuepcbtrzka")
MEDIA_TYPES = frozenset("icbka")
# Lines that may appear once per level (session or one media description).
SINGLE_TYPES = frozenset("vosiuczk")
# What every line starts with: its type, one lowercase letter, and "=" (section 5).
LINE_STARTS = frozenset(f"{chr(letter)}=" for letter in range(ord("a"), ord("z") + 1))

#   token-char = ALPHA / DIGIT / "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-"
#                / "." / "^" / "_" / "`" / "{" / "|" / "}" / "~"   (RFC 8866 section 9)
TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+")
#   proto = token *("/" token)
PROTO = re.compile(
    r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+(?:/[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+)*"
)
#   integer = POS-DIGIT *DIGIT ; here also "0" where the grammar allows it
DIGITS = re.compile(r"[0-9]{1,20}")
#   FQDN = 4*(alpha-numeric / "-" / ".")   (section 9; we take 1* and require a letter)
FQDN = re.compile(r"[A-Za-z0-9.\-]*[A-Za-z][A-Za-z0-9.\-]*")
#   non-zero-int-or-real (ptime, maxptime; RFC 8866 section 6.4)
PTIME = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")
# text fields (byte-string): any character but NUL, CR, LF
TEXT = re.compile(r"[^\x00\r\n]*")

# --- RFC 3551 section 6 / RFC 8866 section 5.14: ports and payload types -----------------
PORT_MAX = 65535
PAYLOAD_TYPE_MAX = 127
TTL_MAX = 255  # RFC 8866 section 5.7: multicast TTL 0..255
# How many distinct (addrtype, address) checks are remembered (a bound, not a tuning).
ADDRESS_CACHE_SIZE = 4096
# Distinct a=rtpmap values remembered (a few per codec a peer offers).
RTPMAP_CACHE_SIZE = 256
# Distinct a=, t= and m= format-list values remembered (also a bound, not a tuning).
LINE_CACHE_SIZE = 1024
# Longer values are parsed every time: with the sizes above, a bound on the memory.
CACHED_TEXT_MAX = MAX_TEXT


class AddressType(enum.StrEnum):
    """``addrtype`` of ``o=`` and ``c=`` (RFC 8866 section 5.7)."""

    IP4 = "IP4"
    IP6 = "IP6"


class Direction(enum.StrEnum):
    """The direction attributes (RFC 8866 sections 6.7.1 to 6.7.4).

    Always read from the point of view of the description's author.
    """

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def from_flags(cls, *, sends: bool, receives: bool) -> Direction:
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def reversed(self) -> Direction:
        """The same stream seen from the other end (sendonly <-> recvonly)."""
        return Direction.from_flags(sends=self.receives, receives=self.sends)


DIRECTION_NAMES = frozenset(direction.value for direction in Direction)
ADDRESS_TYPES = frozenset(addrtype.value for addrtype in AddressType)
# A dict lookup, far cheaper than the Enum call Direction(name).
DIRECTION_BY_NAME = {direction.value: direction for direction in Direction}


# --- Values -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>``.

    RFC 8866 section 5.2; ``sess_version`` must grow when the description changes
    (RFC 3264 section 8).
    """

    username: str = "-"
    sess_id: int
    sess_version: int
    nettype: str = NETTYPE_IN
    addrtype: str = AddressType.IP4.value
    address: str

    def __str__(self) -> str:
        return (
            f"{self.username} {self.sess_id} {self.sess_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (RFC 8866 section 5.7).

    ``ttl`` (IP4 only) and ``count`` are the multicast ``/ttl/number`` suffixes.
    """

    nettype: str = NETTYPE_IN
    addrtype: str = AddressType.IP4.value
    address: str
    ttl: int | None = None
    count: int | None = None

    @property
    def is_null(self) -> bool:
        """``0.0.0.0`` (or ``::``): the RFC 2543 way to put a stream on hold."""
        return self.address in ("0.0.0.0", "::")

    def __str__(self) -> str:
        address = self.address
        if self.ttl is not None:
            address += f"/{self.ttl}"
        if self.count is not None:
            address += f"/{self.count}"
        return f"{self.nettype} {self.addrtype} {address}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` (RFC 8866 section 5.8), bandwidth in kbit/s for AS."""

    bwtype: str
    bandwidth: int

    def __str__(self) -> str:
        return f"{self.bwtype}:{self.bandwidth}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Timing:
    """``t=<start-time> <stop-time>`` plus its ``r=`` lines kept verbatim (5.9, 5.10)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Attribute:
    """``a=<attribute>`` or ``a=<attribute>:<value>`` (RFC 8866 section 5.13)."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, kw_only=True, slots=True)
class RtpMap:
    """``a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]``.

    RFC 8866 section 6.6; for audio the encoding parameters are the channel count.
    """

    payload_type: int
    encoding_name: str
    clock_rate: int
    encoding_parameters: str | None = None

    @property
    def channels(self) -> int:
        """Audio channel count (RFC 8866 section 6.6: default 1)."""
        if self.encoding_parameters is None or not self.encoding_parameters.isdigit():
            return 1
        return int(self.encoding_parameters)

    def __str__(self) -> str:
        text = f"{self.payload_type} {self.encoding_name}/{self.clock_rate}"
        if self.encoding_parameters is not None:
            text += f"/{self.encoding_parameters}"
        return text


@dataclass(frozen=True, kw_only=True, slots=True)
class Rtcp:
    """``a=rtcp:<port> [<nettype> <addrtype> <connection-address>]`` (RFC 3605)."""

    port: int
    connection: Connection | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class MediaDescription:
    """One ``m=<media> <port>[/<number>] <proto> <fmt> ...`` section (RFC 8866 5.14)."""

    media: str
    port: int
    port_count: int | None = None
    proto: str
    formats: tuple[str, ...]
    information: str | None = None
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()

    @property
    def is_rtp(self) -> bool:
        """The proto is an RTP profile, so formats are payload type numbers."""
        return self.proto.upper().startswith("RTP/")

    @property
    def payload_types(self) -> tuple[int, ...]:
        """The formats as payload type numbers (empty for non-RTP protos)."""
        return tuple(map(int, self.formats)) if self.is_rtp else ()

    def attribute_values(self, name: str) -> list[str | None]:
        """Values of every attribute called ``name`` (case-sensitive, RFC 8866 5.13)."""
        return [
            attribute.value for attribute in self.attributes if attribute.name == name
        ]

    def has_attribute(self, name: str) -> bool:
        return any(attribute.name == name for attribute in self.attributes)

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """``a=rtpmap`` lines by payload type (the last one wins)."""
        maps: dict[int, RtpMap] = {}
        for attribute in self.attributes:
            if attribute.name == "rtpmap":
                rtpmap = _RTPMAPS[attribute.value or ""]
                maps[rtpmap.payload_type] = rtpmap
        return maps

    def fmtp(self, fmt: str | int) -> str | None:
        """Format parameters of ``a=fmtp:<fmt> <params>`` for one format, or None."""
        wanted = str(fmt)
        for attribute in self.attributes:
            if attribute.name == "fmtp":
                found, parameters = _FMTPS[attribute.value or ""]
                if found == wanted:
                    return parameters
        return None

    @property
    def ptime(self) -> float | None:
        """``a=ptime`` in milliseconds (RFC 8866 section 6.4)."""
        return _first_number(self.attributes, "ptime")

    @property
    def maxptime(self) -> float | None:
        """``a=maxptime`` in milliseconds (RFC 8866 section 6.5)."""
        return _first_number(self.attributes, "maxptime")

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, or None (see SessionDescription)."""
        return _direction(self.attributes)

    @property
    def rtcp(self) -> Rtcp | None:
        for attribute in self.attributes:
            if attribute.name == "rtcp":
                return _RTCPS[attribute.value or ""]
        return None

    def lines(self) -> list[str]:
        port = (
            str(self.port)
            if self.port_count is None
            else f"{self.port}/{self.port_count}"
        )
        lines = [f"m={' '.join((self.media, port, self.proto, *self.formats))}"]
        if self.information is not None:
            lines.append(f"i={self.information}")
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines.extend(f"b={bandwidth}" for bandwidth in self.bandwidths)
        if self.key is not None:
            lines.append(f"k={self.key}")
        lines.extend(f"a={attribute}" for attribute in self.attributes)
        return lines


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionDescription:
    """A whole SDP body (RFC 8866 section 5). ``str()`` renders it with CRLF ends."""

    version: int = SDP_VERSION
    origin: Origin
    session_name: str = "-"
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    timings: tuple[Timing, ...] = (Timing(),)
    time_zones: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, or None."""
        return _direction(self.attributes)

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The media's ``c=``, else the session's (RFC 8866 section 5.7)."""
        return media.connection if media.connection is not None else self.connection

    def direction_for(self, media: MediaDescription) -> Direction:
        """Media-level direction, else session-level, else sendrecv (RFC 8866 6.7)."""
        return media.direction or self.direction or Direction.SENDRECV

    def __str__(self) -> str:
        # The same text as joining media.lines() and each value's str(), written out
        # in one place: this runs for every SDP body we send.
        origin = self.origin
        parts = [
            f"v={self.version}\r\no={origin.username} {origin.sess_id} "
            f"{origin.sess_version} {origin.nettype} {origin.addrtype} "
            f"{origin.address}\r\ns={self.session_name or ' '}\r\n"
        ]
        if self.information is not None:
            parts.append(f"i={self.information}\r\n")
        if self.uri is not None:
            parts.append(f"u={self.uri}\r\n")
        parts.extend([f"e={email}\r\n" for email in self.emails])
        parts.extend([f"p={phone}\r\n" for phone in self.phones])
        if self.connection is not None:
            parts.append(_connection_line(self.connection))
        parts.extend([f"b={bandwidth}\r\n" for bandwidth in self.bandwidths])
        for timing in self.timings:
            parts.append(f"t={timing.start} {timing.stop}\r\n")
            parts.extend([f"r={repeat}\r\n" for repeat in timing.repeats])
        if self.time_zones is not None:
            parts.append(f"z={self.time_zones}\r\n")
        if self.key is not None:
            parts.append(f"k={self.key}\r\n")
        _attribute_lines(self.attributes, parts)
        for media in self.media:
            port = (
                media.port
                if media.port_count is None
                else f"{media.port}/{media.port_count}"
            )
            parts.append(f"m={media.media} {port} {media.proto}")
            parts.extend([f" {fmt}" for fmt in media.formats])
            parts.append(LINE_END)
            if media.information is not None:
                parts.append(f"i={media.information}\r\n")
            if media.connection is not None:
                parts.append(_connection_line(media.connection))
            parts.extend([f"b={bandwidth}\r\n" for bandwidth in media.bandwidths])
            if media.key is not None:
                parts.append(f"k={media.key}\r\n")
            _attribute_lines(media.attributes, parts)
        return "".join(parts)

    def to_bytes(self) -> bytes:
        return str(self).encode("utf-8")


def _connection_line(connection: Connection) -> str:
    if connection.ttl is None and connection.count is None:
        return f"c={connection.nettype} {connection.addrtype} {connection.address}\r\n"
    return f"c={connection}\r\n"


def _attribute_lines(attributes: tuple[Attribute, ...], parts: list[str]) -> None:
    parts.extend(
        [
            f"a={attribute.name}\r\n"
            if attribute.value is None
            else f"a={attribute.name}:{attribute.value}\r\n"
            for attribute in attributes
        ]
    )


# --- Fast construction --------------------------------------------------------------------
# The generated __init__ of a frozen dataclass stores each field through
# object.__setattr__, several times the cost of a plain store, and a call builds about
# twenty of these values. So the hot paths fill a writable twin (the same __slots__, so
# the same memory layout) with plain stores and then hand it its real class; CPython
# allows that __class__ assignment between classes of identical layout. What comes out
# is an ordinary instance: same type, equal, hashable and frozen from then on.


def _writable_twin(cls: type) -> Any:
    return type(
        f"_Writable{cls.__name__}", (), {"__slots__": cls.__dict__["__slots__"]}
    )


_WritableOrigin = _writable_twin(Origin)
_WritableMediaDescription = _writable_twin(MediaDescription)
_WritableSessionDescription = _writable_twin(SessionDescription)


def _new_origin(
    *,
    username: str,
    sess_id: int,
    sess_version: int,
    nettype: str,
    addrtype: str,
    address: str,
) -> Origin:
    """``Origin(...)`` without the frozen-dataclass __init__ (see above)."""
    new = _WritableOrigin()
    new.username = username
    new.sess_id = sess_id
    new.sess_version = sess_version
    new.nettype = nettype
    new.addrtype = addrtype
    new.address = address
    new.__class__ = Origin
    origin: Origin = new
    return origin


def _new_media(
    *,
    media: str,
    port: int,
    port_count: int | None = None,
    proto: str,
    formats: tuple[str, ...],
    information: str | None = None,
    connection: Connection | None = None,
    bandwidths: tuple[Bandwidth, ...] = (),
    key: str | None = None,
    attributes: tuple[Attribute, ...] = (),
) -> MediaDescription:
    """``MediaDescription(...)`` without the frozen-dataclass __init__ (see above)."""
    new = _WritableMediaDescription()
    new.media = media
    new.port = port
    new.port_count = port_count
    new.proto = proto
    new.formats = formats
    new.information = information
    new.connection = connection
    new.bandwidths = bandwidths
    new.key = key
    new.attributes = attributes
    new.__class__ = MediaDescription
    description: MediaDescription = new
    return description


def _new_session(
    *,
    version: int = SDP_VERSION,
    origin: Origin,
    session_name: str = "-",
    information: str | None = None,
    uri: str | None = None,
    emails: tuple[str, ...] = (),
    phones: tuple[str, ...] = (),
    connection: Connection | None = None,
    bandwidths: tuple[Bandwidth, ...] = (),
    timings: tuple[Timing, ...] = (Timing(),),
    time_zones: str | None = None,
    key: str | None = None,
    attributes: tuple[Attribute, ...] = (),
    media: tuple[MediaDescription, ...] = (),
) -> SessionDescription:
    """``SessionDescription(...)`` without the frozen-dataclass __init__ (see above)."""
    new = _WritableSessionDescription()
    new.version = version
    new.origin = origin
    new.session_name = session_name
    new.information = information
    new.uri = uri
    new.emails = emails
    new.phones = phones
    new.connection = connection
    new.bandwidths = bandwidths
    new.timings = timings
    new.time_zones = time_zones
    new.key = key
    new.attributes = attributes
    new.media = media
    new.__class__ = SessionDescription
    description: SessionDescription = new
    return description


# --- Field parsers (each raises BadMessage with a message the caller prefixes) -------------
# Those whose values repeat from call to call (the same codecs, the same gateway
# address, "t=0 0") are used through a _ParseCache (_ATTRIBUTES, _CONNECTIONS...) keyed
# by the exact text; they return immutable values, and a value that fails is not cached,
# so it is checked, and reported, every time.


# The bounded memo every parser of this module uses (see switch/sip/memo.py).
_ParseCache = ParseMemo


def _fields(value: str, count: int, what: str) -> list[str]:
    fields = value.split()
    if len(fields) != count:
        raise BadMessage(f"{what} needs {count} fields, got {len(fields)}")
    return fields


def _integer(text: str, what: str, maximum: int | None = None) -> int:
    if DIGITS.fullmatch(text) is None:
        raise BadMessage(f"{what} is not a number: {text!r}")
    number = int(text)
    if maximum is not None and number > maximum:
        raise BadMessage(f"{what} {number} is above {maximum}")
    return number


@functools.lru_cache(maxsize=ADDRESS_CACHE_SIZE)
def _is_unicast(addrtype: str, address: str) -> bool:
    # Cached: a switch sees the same few media addresses in every offer and answer,
    # and ipaddress costs tens of microseconds per parse.
    try:
        if addrtype == AddressType.IP4:
            ipaddress.IPv4Address(address)
        else:
            ipaddress.IPv6Address(address)
    except ValueError:
        return FQDN.fullmatch(address) is not None
    return True


def _check_unicast(addrtype: str, address: str, what: str) -> None:
    """Check an IP4/IP6 unicast address or FQDN (RFC 8866 section 9)."""
    if not _is_unicast(addrtype, address):
        raise BadMessage(f"{what}: bad {addrtype} address {address!r}")


def _check_types(nettype: str, addrtype: str, what: str) -> None:
    if nettype != NETTYPE_IN:
        raise BadMessage(f"{what}: unsupported network type {nettype!r}")
    if addrtype not in (AddressType.IP4, AddressType.IP6):
        raise BadMessage(f"{what}: unsupported address type {addrtype!r}")


def _parse_connection(value: str) -> Connection:
    return _parse_connection_fields(_fields(value, 3, "c="), "c=")


def _parse_connection_fields(fields: list[str], what: str) -> Connection:
    nettype, addrtype, address = fields
    _check_types(nettype, addrtype, what)
    #   IP4-multicast = m1 3( "." decimal-uchar ) "/" ttl [ "/" numaddr ]
    #   IP6-multicast = IP6-address [ "/" numaddr ]
    host, *suffix = address.split("/")
    ttl: int | None = None
    count: int | None = None
    if addrtype == AddressType.IP4 and suffix:
        ttl = _integer(suffix.pop(0), f"{what}: ttl", TTL_MAX)
    if suffix:
        count = _integer(suffix.pop(0), f"{what}: address count")
    if suffix:
        raise BadMessage(f"{what}: too many '/' in {address!r}")
    _check_unicast(addrtype, host, what)
    return Connection(
        nettype=nettype, addrtype=addrtype, address=host, ttl=ttl, count=count
    )


def _parse_origin(value: str) -> Origin:
    # Not cached: sess-id and sess-version differ from call to call.
    fields = value.split()
    if len(fields) != 6:
        raise BadMessage(f"o= needs 6 fields, got {len(fields)}")
    username, sess_id, sess_version, nettype, addrtype, address = fields
    if nettype != NETTYPE_IN or addrtype not in ADDRESS_TYPES:
        _check_types(nettype, addrtype, "o=")
    if not _is_unicast(addrtype, address):
        raise BadMessage(f"o=: bad {addrtype} address {address!r}")
    # sess-id and sess-version: _integer() with no maximum, inlined.
    if DIGITS.fullmatch(sess_id) is None:
        raise BadMessage(f"o= sess-id is not a number: {sess_id!r}")
    if DIGITS.fullmatch(sess_version) is None:
        raise BadMessage(f"o= sess-version is not a number: {sess_version!r}")
    return _new_origin(
        username=username,
        sess_id=int(sess_id),
        sess_version=int(sess_version),
        nettype=nettype,
        addrtype=addrtype,
        address=address,
    )


def _parse_bandwidth(value: str) -> Bandwidth:
    bwtype, colon, bandwidth = value.partition(":")
    if not colon or TOKEN.fullmatch(bwtype) is None:
        raise BadMessage(f"b=: expected <bwtype>:<bandwidth>, got {value!r}")
    return Bandwidth(bwtype=bwtype, bandwidth=_integer(bandwidth, "b= bandwidth"))


def _parse_timing(value: str) -> Timing:
    start, stop = _fields(value, 2, "t=")
    return Timing(
        start=_integer(start, "t= start-time"), stop=_integer(stop, "t= stop-time")
    )


def _parse_media(value: str) -> tuple[str, int, int | None, str, tuple[str, ...]]:
    """(media, port, port count, proto, formats) of an ``m=`` value."""
    fields = value.split(None, 2)
    if len(fields) < 3:
        raise BadMessage(f"m= needs at least 3 fields, got {len(fields)}")
    media, port_text, rest = fields
    if TOKEN.fullmatch(media) is None:
        raise BadMessage(f"m= bad media type {media!r}")
    port_text, slash, count_text = port_text.partition("/")
    port = _integer(port_text, "m= port", PORT_MAX)
    port_count = _integer(count_text, "m= number of ports") if slash else None
    proto, formats = _MEDIA_RESTS[rest]
    # Tolerance: a rejected stream (port 0) may come without formats.
    if not formats and port != 0:
        raise BadMessage("m= no formats")
    return media, port, port_count, proto, formats


# Cached in _MEDIA_RESTS apart from the port, which differs per call. Checking formats
# here, before "no formats" above, keeps the order of errors: with no formats there is
# none to check.
def _parse_media_rest(rest: str) -> tuple[str, tuple[str, ...]]:
    """(proto, formats) of the ``<proto> <fmt> ...`` part of an ``m=`` value."""
    proto, *formats = rest.split()
    if PROTO.fullmatch(proto) is None:
        raise BadMessage(f"m= bad proto {proto!r}")
    is_rtp = proto.upper().startswith("RTP/")
    for fmt in formats:
        if TOKEN.fullmatch(fmt) is None:
            raise BadMessage(f"m= bad format {fmt!r}")
        if is_rtp:
            _integer(fmt, "m= payload type", PAYLOAD_TYPE_MAX)
    return proto, tuple(formats)


def _parse_attribute(value: str) -> Attribute:
    #   attribute = (attribute-name ":" attribute-value) / attribute-name
    name, colon, attribute_value = value.partition(":")
    if TOKEN.fullmatch(name) is None:
        raise BadMessage(f"a=: bad attribute name {name!r}")
    attribute = Attribute(name=name, value=attribute_value if colon else None)
    _check_attribute(attribute)
    return attribute


# Cached in _RTPMAPS: the same few codec lines come in every offer and answer, and each
# is read three times (line check, duplicate check, the rtpmaps accessor).
def _parse_rtpmap(value: str) -> RtpMap:
    what = "a=rtpmap"
    fields = value.split()
    if len(fields) != 2:
        raise BadMessage(
            f"{what}: expected '<payload type> <encoding>/<rate>', got {value!r}"
        )
    payload_type = _integer(fields[0], f"{what} payload type", PAYLOAD_TYPE_MAX)
    encoding = fields[1].split("/")
    if not 2 <= len(encoding) <= 3 or TOKEN.fullmatch(encoding[0]) is None:
        raise BadMessage(f"{what}: bad encoding {fields[1]!r}")
    clock_rate = _integer(encoding[1], f"{what} clock rate")
    parameters = encoding[2] if len(encoding) == 3 else None
    if parameters is not None and TOKEN.fullmatch(parameters) is None:
        raise BadMessage(f"{what}: bad encoding parameters {parameters!r}")
    return RtpMap(
        payload_type=payload_type,
        encoding_name=encoding[0],
        clock_rate=clock_rate,
        encoding_parameters=parameters,
    )


def _parse_fmtp(value: str) -> tuple[str, str]:
    #   fmtp-value = fmt SP format-specific-params
    fmt, *rest = value.strip(" \t").split(maxsplit=1) or [""]
    parameters = rest[0] if rest else ""
    if TOKEN.fullmatch(fmt) is None or not parameters:
        raise BadMessage(f"a=fmtp: expected '<format> <parameters>', got {value!r}")
    return fmt, parameters


def _parse_rtcp(value: str) -> Rtcp:
    what = "a=rtcp"
    fields = value.split()
    if len(fields) not in (1, 4):
        raise BadMessage(f"{what}: expected '<port> [<nettype> <addrtype> <address>]'")
    port = _integer(fields[0], f"{what} port", PORT_MAX)
    connection = (
        _parse_connection_fields(fields[1:], what) if len(fields) == 4 else None
    )
    return Rtcp(port=port, connection=connection)


def _parse_ptime(value: str, what: str) -> float:
    if PTIME.fullmatch(value.strip(" \t")) is None or float(value) == 0:
        raise BadMessage(f"a={what}: expected a positive number of ms, got {value!r}")
    return float(value)


def _check_attribute(attribute: Attribute) -> None:
    """Validate the attributes we interpret, so accessors can trust them later."""
    name, value = attribute.name, attribute.value
    if name in DIRECTION_NAMES:
        if value is not None:
            raise BadMessage(f"a={name}: takes no value")
    elif name in ("rtpmap", "fmtp", "rtcp", "ptime", "maxptime"):
        if value is None:
            raise BadMessage(f"a={name}: missing value")
        if name == "rtpmap":
            _RTPMAPS[value]
        elif name == "fmtp":
            _FMTPS[value]
        elif name == "rtcp":
            _RTCPS[value]
        else:
            _parse_ptime(value, name)


# The caches of the parsers above (see _ParseCache and the note atop this section).
_ATTRIBUTES = _ParseCache(_parse_attribute, LINE_CACHE_SIZE)
_CONNECTIONS = _ParseCache(_parse_connection, ADDRESS_CACHE_SIZE)
_FMTPS = _ParseCache(_parse_fmtp, LINE_CACHE_SIZE)
_MEDIA_RESTS = _ParseCache(_parse_media_rest, LINE_CACHE_SIZE)
_RTCPS = _ParseCache(_parse_rtcp, LINE_CACHE_SIZE)
_RTPMAPS = _ParseCache(_parse_rtpmap, RTPMAP_CACHE_SIZE)
_TIMINGS = _ParseCache(_parse_timing, LINE_CACHE_SIZE)


def _first_number(attributes: tuple[Attribute, ...], name: str) -> float | None:
    for attribute in attributes:
        if attribute.name == name:
            return float(attribute.value or "")
    return None


def _direction(attributes: tuple[Attribute, ...]) -> Direction | None:
    for attribute in attributes:
        if attribute.name in DIRECTION_NAMES:  # an operator, not a call, per attribute
            return DIRECTION_BY_NAME[attribute.name]
    return None


def _check_level(
    attributes: list[Attribute], level: str, line_number: int | None = None
) -> None:
    # One pass; a second direction is reported before a duplicated rtpmap. The level's
    # line number is formatted into the message only when there is an error.
    directions: list[str] = []
    payload_types: set[int] = set()
    duplicate: int | None = None
    for attribute in attributes:
        name = attribute.name
        if name == "rtpmap":
            payload_type = _RTPMAPS[attribute.value or ""].payload_type
            if payload_type in payload_types and duplicate is None:
                duplicate = payload_type
            payload_types.add(payload_type)
        elif name in DIRECTION_NAMES:
            directions.append(name)
    if len(directions) <= 1 and duplicate is None:
        return
    if line_number is not None:
        level = f"{level} {line_number}"
    if len(directions) > 1:
        raise BadMessage(f"SDP {level}: more than one direction attribute {directions}")
    raise BadMessage(f"SDP {level}: two rtpmap lines for payload type {duplicate}")


# --- Parser -------------------------------------------------------------------------------


class _MediaBuilder:
    """One media description while its lines are read."""

    __slots__ = (
        "attributes",
        "bandwidths",
        "connection",
        "fields",
        "information",
        "key",
        "line_number",
        "seen",
    )

    def __init__(self, value: str, line_number: int) -> None:
        self.fields = _parse_media(value)
        self.line_number = line_number
        self.information: str | None = None
        self.connection: Connection | None = None
        self.bandwidths: list[Bandwidth] = []
        self.key: str | None = None
        self.attributes: list[Attribute] = []
        self.seen: set[str] = set()

    def add(self, kind: str, value: str) -> None:
        if kind not in MEDIA_TYPES:
            raise BadMessage(f"line type '{kind}=' not allowed in a media description")
        if kind in SINGLE_TYPES and kind in self.seen:
            # TODO: RFC 8866 section 5.7 layered multicast (several c= per media) is
            # refused; cost: none for unicast telephony, which is all we carry.
            raise BadMessage(f"second '{kind}=' line in a media description")
        self.seen.add(kind)
        if kind == "i":
            self.information = value
        elif kind == "c":
            self.connection = _CONNECTIONS[value]
        elif kind == "b":
            self.bandwidths.append(_parse_bandwidth(value))
        else:  # "k"; a= lines never come here, parse_sdp takes them
            self.key = value

    def build(self) -> MediaDescription:
        _check_level(self.attributes, "media description at line", self.line_number)
        media, port, port_count, proto, formats = self.fields
        return _new_media(
            media=media,
            port=port,
            port_count=port_count,
            proto=proto,
            formats=formats,
            information=self.information,
            connection=self.connection,
            bandwidths=tuple(self.bandwidths),
            key=self.key,
            attributes=tuple(self.attributes),
        )


class _SessionBuilder:
    """The session level while its lines are read."""

    __slots__ = (
        "attributes",
        "bandwidths",
        "connection",
        "emails",
        "origin",
        "phones",
        "seen",
        "texts",
        "timings",
    )

    def __init__(self) -> None:
        self.origin: Origin | None = None
        self.texts: dict[str, str] = {}  # s i u z k
        self.emails: list[str] = []
        self.phones: list[str] = []
        self.connection: Connection | None = None
        self.bandwidths: list[Bandwidth] = []
        self.timings: list[Timing] = []
        self.attributes: list[Attribute] = []
        self.seen: set[str] = set()

    def add(self, kind: str, value: str) -> None:
        if kind not in SESSION_TYPES:
            raise BadMessage(f"unknown line type '{kind}='")
        if kind in SINGLE_TYPES and kind in self.seen:
            raise BadMessage(f"second '{kind}=' line")
        self.seen.add(kind)
        if kind == "v":
            if value != VERSION_TEXT:
                raise BadMessage(f"unsupported version {value!r}")
        elif kind == "o":
            self.origin = _parse_origin(value)
        elif kind in "siuzk":
            self.texts[kind] = value
        elif kind == "e":
            self.emails.append(value)
        elif kind == "p":
            self.phones.append(value)
        elif kind == "c":
            self.connection = _CONNECTIONS[value]
        elif kind == "b":
            self.bandwidths.append(_parse_bandwidth(value))
        elif kind == "t":
            self.timings.append(_TIMINGS[value])
        else:  # "r"; a= lines never come here, parse_sdp takes them
            if not self.timings:
                raise BadMessage("r= line without a t= line")
            last = self.timings[-1]
            self.timings[-1] = dataclasses.replace(last, repeats=(*last.repeats, value))

    def build(self, media: list[MediaDescription]) -> SessionDescription:
        if self.origin is None:
            raise BadMessage("SDP: missing o= line")
        if "s" not in self.texts:
            raise BadMessage("SDP: missing s= line")
        if not self.timings:
            raise BadMessage("SDP: missing t= line")
        _check_level(self.attributes, "session level")
        if self.connection is None:
            for index, description in enumerate(media, start=1):
                # Section 5.7: c= at session level or in every media description.
                # Tolerance: not needed for a rejected stream (port 0).
                if description.port and description.connection is None:
                    raise BadMessage(f"SDP: no c= line for media description {index}")
        texts = self.texts
        return _new_session(
            origin=self.origin,
            session_name=texts["s"],
            information=texts.get("i"),
            uri=texts.get("u"),
            emails=tuple(self.emails),
            phones=tuple(self.phones),
            connection=self.connection,
            bandwidths=tuple(self.bandwidths),
            timings=tuple(self.timings),
            time_zones=texts.get("z"),
            key=texts.get("k"),
            attributes=tuple(self.attributes),
            media=tuple(media),
        )


def _split_lines(data: bytes | str) -> tuple[list[str], bool]:
    """The lines, and whether any may hold a NUL or CR (then each line is checked)."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadMessage(f"SDP: not UTF-8 text at byte {exc.start}") from None
    else:
        text = data
    # Tolerance: LF alone, trailing SP/HTAB, and a missing final line end.
    lines = [line.rstrip(" \t\r") for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise BadMessage("SDP: empty description")
    # Two scans of the whole text instead of two per line.
    return lines, "\x00" in text or "\r" in "".join(lines)


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body (RFC 8866 section 5).

    :raises BadMessage: the body is not a session description we accept; the message
        names the line (1-based) and the defect. See the module doc for tolerances.
    """
    session = _SessionBuilder()
    media: list[MediaDescription] = []
    current: _MediaBuilder | None = None
    attributes = session.attributes  # where the a= lines of the current level go
    lines, suspect = _split_lines(data)
    for number, line in enumerate(lines, start=1):
        if line[:2] not in LINE_STARTS:  # one lowercase letter, then "="
            raise BadMessage(
                f"SDP line {number}: expected '<type>=<value>', got {line[:40]!r}"
            )
        kind = line[0]
        value = line[2:]
        try:
            # text fields: no NUL, CR or LF (LF cannot occur: we split on it).
            if suspect and ("\r" in value or "\x00" in value):
                raise BadMessage("NUL or CR inside the line")
            # Section 5: v=, o=, s= come first, in that order.
            if number <= 3 and kind != "vos"[number - 1]:
                raise BadMessage(f"expected '{'vos'[number - 1]}=' line, got '{kind}='")
            if kind == "a":
                # Most lines; allowed at both levels, any number of times.
                attributes.append(_ATTRIBUTES[value])
            elif kind == "m":
                if not session.timings:
                    raise BadMessage("no t= line before the first m= line")
                if current is not None:
                    media.append(current.build())
                current = _MediaBuilder(value, number)
                attributes = current.attributes
            elif current is not None:
                current.add(kind, value)
            else:
                session.add(kind, value)
        except BadMessage as exc:
            raise BadMessage(f"SDP line {number}: {exc.reason}") from None
    if current is not None:
        media.append(current.build())
    return session.build(media)
