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

from switch.sip.errors import BadMessage

logger = logging.getLogger(__name__)

# --- RFC 8866 section 5: the description ---------------------------------------------------
SDP_VERSION = 0  # section 5.1: "v=0"
LINE_END = "\r\n"  # section 5: lines end in CRLF (LF alone is read too, see module doc)
NETTYPE_IN = "IN"  # section 5.2: the only nettype we handle ("Internet")
# Section 5: type letters that may appear before the first m= line, and after it.
SESSION_TYPES = frozenset("vosiuepcbtrzka")
MEDIA_TYPES = frozenset("icbka")
# Lines that may appear once per level (session or one media description).
SINGLE_TYPES = frozenset("vosiuczk")

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
        return tuple(int(fmt) for fmt in self.formats) if self.is_rtp else ()

    def attribute_values(self, name: str) -> list[str | None]:
        """Values of every attribute called ``name`` (case-sensitive, RFC 8866 5.13)."""
        return [
            attribute.value for attribute in self.attributes if attribute.name == name
        ]

    def has_attribute(self, name: str) -> bool:
        return any(attribute.name == name for attribute in self.attributes)

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """``a=rtpmap`` lines by payload type."""
        maps = (_parse_rtpmap(value or "") for value in self.attribute_values("rtpmap"))
        return {rtpmap.payload_type: rtpmap for rtpmap in maps}

    def fmtp(self, fmt: str | int) -> str | None:
        """Format parameters of ``a=fmtp:<fmt> <params>`` for one format, or None."""
        for value in self.attribute_values("fmtp"):
            found, parameters = _parse_fmtp(value or "")
            if found == str(fmt):
                return parameters
        return None

    @property
    def ptime(self) -> float | None:
        """``a=ptime`` in milliseconds (RFC 8866 section 6.4)."""
        return _first_number(self.attribute_values("ptime"))

    @property
    def maxptime(self) -> float | None:
        """``a=maxptime`` in milliseconds (RFC 8866 section 6.5)."""
        return _first_number(self.attribute_values("maxptime"))

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, or None (see SessionDescription)."""
        return _direction(self.attributes)

    @property
    def rtcp(self) -> Rtcp | None:
        values = self.attribute_values("rtcp")
        return _parse_rtcp(values[0] or "") if values else None

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
        lines = [
            f"v={self.version}",
            f"o={self.origin}",
            f"s={self.session_name or ' '}",
        ]
        if self.information is not None:
            lines.append(f"i={self.information}")
        if self.uri is not None:
            lines.append(f"u={self.uri}")
        lines.extend(f"e={email}" for email in self.emails)
        lines.extend(f"p={phone}" for phone in self.phones)
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines.extend(f"b={bandwidth}" for bandwidth in self.bandwidths)
        for timing in self.timings:
            lines.append(f"t={timing.start} {timing.stop}")
            lines.extend(f"r={repeat}" for repeat in timing.repeats)
        if self.time_zones is not None:
            lines.append(f"z={self.time_zones}")
        if self.key is not None:
            lines.append(f"k={self.key}")
        lines.extend(f"a={attribute}" for attribute in self.attributes)
        for media in self.media:
            lines.extend(media.lines())
        return LINE_END.join(lines) + LINE_END

    def to_bytes(self) -> bytes:
        return str(self).encode("utf-8")


# --- Field parsers (each raises BadMessage with a message the caller prefixes) -------------


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
    what = "o="
    username, sess_id, sess_version, nettype, addrtype, address = _fields(
        value, 6, what
    )
    _check_types(nettype, addrtype, what)
    _check_unicast(addrtype, address, what)
    return Origin(
        username=username,
        sess_id=_integer(sess_id, f"{what} sess-id"),
        sess_version=_integer(sess_version, f"{what} sess-version"),
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


def _parse_media(value: str) -> MediaDescription:
    what = "m="
    fields = value.split()
    if len(fields) < 3:
        raise BadMessage(f"{what} needs at least 3 fields, got {len(fields)}")
    media, port_text, proto, *formats = fields
    if TOKEN.fullmatch(media) is None:
        raise BadMessage(f"{what} bad media type {media!r}")
    port_text, slash, count_text = port_text.partition("/")
    port = _integer(port_text, f"{what} port", PORT_MAX)
    port_count = _integer(count_text, f"{what} number of ports") if slash else None
    if PROTO.fullmatch(proto) is None:
        raise BadMessage(f"{what} bad proto {proto!r}")
    # Tolerance: a rejected stream (port 0) may come without formats.
    if not formats and port != 0:
        raise BadMessage(f"{what} no formats")
    description = MediaDescription(
        media=media,
        port=port,
        port_count=port_count,
        proto=proto,
        formats=tuple(formats),
    )
    for fmt in formats:
        if TOKEN.fullmatch(fmt) is None:
            raise BadMessage(f"{what} bad format {fmt!r}")
        if description.is_rtp:
            _integer(fmt, f"{what} payload type", PAYLOAD_TYPE_MAX)
    return description


def _parse_attribute(value: str) -> Attribute:
    #   attribute = (attribute-name ":" attribute-value) / attribute-name
    name, colon, attribute_value = value.partition(":")
    if TOKEN.fullmatch(name) is None:
        raise BadMessage(f"a=: bad attribute name {name!r}")
    attribute = Attribute(name=name, value=attribute_value if colon else None)
    _check_attribute(attribute)
    return attribute


# Cached: the same few codec lines come in every offer and answer, and each is read
# three times (line check, duplicate check, the rtpmaps accessor). RtpMap is frozen.
@functools.lru_cache(maxsize=RTPMAP_CACHE_SIZE)
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
            _parse_rtpmap(value)
        elif name == "fmtp":
            _parse_fmtp(value)
        elif name == "rtcp":
            _parse_rtcp(value)
        else:
            _parse_ptime(value, name)


def _first_number(values: list[str | None]) -> float | None:
    return float(values[0] or "") if values else None


def _direction(attributes: tuple[Attribute, ...]) -> Direction | None:
    for attribute in attributes:
        if attribute.name in DIRECTION_NAMES:
            return Direction(attribute.name)
    return None


def _check_level(attributes: list[Attribute], level: str) -> None:
    directions = [a.name for a in attributes if a.name in DIRECTION_NAMES]
    if len(directions) > 1:
        raise BadMessage(f"SDP {level}: more than one direction attribute {directions}")
    seen: set[int] = set()
    for attribute in attributes:
        if attribute.name == "rtpmap":
            payload_type = _parse_rtpmap(attribute.value or "").payload_type
            if payload_type in seen:
                raise BadMessage(
                    f"SDP {level}: two rtpmap lines for payload type {payload_type}"
                )
            seen.add(payload_type)


# --- Parser -------------------------------------------------------------------------------


@dataclass(slots=True)
class _MediaBuilder:
    media: MediaDescription
    line_number: int
    information: str | None = None
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = dataclasses.field(default_factory=list)
    key: str | None = None
    attributes: list[Attribute] = dataclasses.field(default_factory=list)
    seen: set[str] = dataclasses.field(default_factory=set)

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
            self.connection = _parse_connection(value)
        elif kind == "b":
            self.bandwidths.append(_parse_bandwidth(value))
        elif kind == "k":
            self.key = value
        else:  # "a"
            self.attributes.append(_parse_attribute(value))

    def build(self) -> MediaDescription:
        _check_level(self.attributes, f"media description at line {self.line_number}")
        return dataclasses.replace(
            self.media,
            information=self.information,
            connection=self.connection,
            bandwidths=tuple(self.bandwidths),
            key=self.key,
            attributes=tuple(self.attributes),
        )


@dataclass(slots=True)
class _SessionBuilder:
    origin: Origin | None = None
    texts: dict[str, str] = dataclasses.field(default_factory=dict)  # s i u z k
    emails: list[str] = dataclasses.field(default_factory=list)
    phones: list[str] = dataclasses.field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = dataclasses.field(default_factory=list)
    timings: list[Timing] = dataclasses.field(default_factory=list)
    attributes: list[Attribute] = dataclasses.field(default_factory=list)
    seen: set[str] = dataclasses.field(default_factory=set)

    def add(self, kind: str, value: str) -> None:
        if kind not in SESSION_TYPES:
            raise BadMessage(f"unknown line type '{kind}='")
        if kind in SINGLE_TYPES and kind in self.seen:
            raise BadMessage(f"second '{kind}=' line")
        self.seen.add(kind)
        if kind == "v":
            if value != str(SDP_VERSION):
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
            self.connection = _parse_connection(value)
        elif kind == "b":
            self.bandwidths.append(_parse_bandwidth(value))
        elif kind == "t":
            self.timings.append(_parse_timing(value))
        elif kind == "r":
            if not self.timings:
                raise BadMessage("r= line without a t= line")
            last = self.timings[-1]
            self.timings[-1] = dataclasses.replace(last, repeats=(*last.repeats, value))
        else:  # "a"
            self.attributes.append(_parse_attribute(value))

    def build(self, media: list[MediaDescription]) -> SessionDescription:
        if self.origin is None:
            raise BadMessage("SDP: missing o= line")
        if "s" not in self.texts:
            raise BadMessage("SDP: missing s= line")
        if not self.timings:
            raise BadMessage("SDP: missing t= line")
        _check_level(self.attributes, "session level")
        for index, description in enumerate(media, start=1):
            # Section 5.7: c= at session level or in every media description.
            # Tolerance: not needed for a rejected stream (port 0).
            if (
                description.port
                and description.connection is None
                and self.connection is None
            ):
                raise BadMessage(f"SDP: no c= line for media description {index}")
        return SessionDescription(
            origin=self.origin,
            session_name=self.texts["s"],
            information=self.texts.get("i"),
            uri=self.texts.get("u"),
            emails=tuple(self.emails),
            phones=tuple(self.phones),
            connection=self.connection,
            bandwidths=tuple(self.bandwidths),
            timings=tuple(self.timings),
            time_zones=self.texts.get("z"),
            key=self.texts.get("k"),
            attributes=tuple(self.attributes),
            media=tuple(media),
        )


def _split_lines(data: bytes | str) -> list[str]:
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
    return lines


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body (RFC 8866 section 5).

    :raises BadMessage: the body is not a session description we accept; the message
        names the line (1-based) and the defect. See the module doc for tolerances.
    """
    session = _SessionBuilder()
    media: list[MediaDescription] = []
    current: _MediaBuilder | None = None
    for number, line in enumerate(_split_lines(data), start=1):
        if len(line) < 2 or line[1] != "=" or not "a" <= line[0] <= "z":
            raise BadMessage(
                f"SDP line {number}: expected '<type>=<value>', got {line[:40]!r}"
            )
        kind, value = line[0], line[2:]
        try:
            if TEXT.fullmatch(value) is None:
                raise BadMessage("NUL or CR inside the line")
            # Section 5: v=, o=, s= come first, in that order.
            if number <= 3 and kind != "vos"[number - 1]:
                raise BadMessage(f"expected '{'vos'[number - 1]}=' line, got '{kind}='")
            if kind == "m":
                if not session.timings:
                    raise BadMessage("no t= line before the first m= line")
                if current is not None:
                    media.append(current.build())
                current = _MediaBuilder(media=_parse_media(value), line_number=number)
            elif current is not None:
                current.add(kind, value)
            else:
                session.add(kind, value)
        except BadMessage as exc:
            raise BadMessage(f"SDP line {number}: {exc.reason}") from None
    if current is not None:
        media.append(current.build())
    return session.build(media)
