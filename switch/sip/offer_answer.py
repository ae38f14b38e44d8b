"""SDP offer/answer for audio calls (RFC 3264), on top of :mod:`switch.sip.sdp`.

Three entry points: :func:`answer_offer` (an INVITE or re-INVITE came with an offer),
:func:`build_offer` (we call out, or re-offer for hold/unhold) and
:func:`process_answer` (the peer answered our offer). Each negotiated audio stream comes
out as a :class:`NegotiatedMedia`, the only thing the media engine needs. A
:class:`LocalSession` owns our ``o=`` line across one dialog: same ``sess-id`` always,
``sess-version`` bumped by one exactly when our description changes (RFC 3264 section 8).

Answer policy (RFC 3264 section 6.1 leaves these choices to the answerer):

* Only ``m=audio`` over the profiles in ``protos`` (``RTP/AVP``; no SRTP) is accepted,
  one stream per port the caller hands in; every other m-line is answered with port 0,
  its formats copied, in the same position (RFC 3264 section 6: same number and order).
* Per accepted stream we answer exactly ONE voice codec, the first one in the
  *offerer's* order that we support (RFC 3264 section 6.1 recommends following the
  offerer's preference), plus ``telephone-event`` (RFC 4733) if offered at the voice
  codec's clock rate. One codec means no mid-call payload switches to follow.
* Payload type numbers are the offerer's, static or dynamic, and so are the fmtp
  parameters of what we keep (e.g. ``0-16`` for telephone-event).
* Direction: what the offerer sends we may receive and vice versa, intersected with our
  own wish (``sendonly`` -> ``recvonly``, ``recvonly`` -> ``sendonly``, ``inactive`` ->
  ``inactive``). An offer with ``c=0.0.0.0`` (RFC 2543 hold, RFC 3264 section 8.4) means
  the offerer will not receive, so we do not send to it.
* Nothing acceptable at all -> :class:`~switch.sip.errors.ProtocolError` 488 with a
  ``Warning`` header (RFC 3261 section 20.43 codes 302/304/305).

``NegotiatedMedia.direction`` is always *our* direction: ``sendonly`` means we send and
do not receive.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from switch.sip.errors import LocalProtocolError, ProtocolError
from switch.sip.sdp import (
    _RTPMAPS,
    CACHED_TEXT_MAX,
    NETTYPE_IN,
    AddressType,
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    RtpMap,
    SessionDescription,
    _new_media,
    _new_origin,
    _new_session,
    _writable_twin,
)
from switch.sip.tokens import randbelow

logger = logging.getLogger(__name__)

# (encoding name, clock rate, channels) of a payload type as an SDP states it.
Format = tuple[str, int, int]

# --- RFC 3551 section 6, tables 4 and 5: static payload types ---------------------------
# payload type -> (encoding name, clock rate, channels)
STATIC_PAYLOAD_TYPES: dict[int, Format] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),  # RFC 3551 4.5.2: 8000 in SDP although sampled at 16 kHz
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
    25: ("CelB", 90000, 1),
    26: ("JPEG", 90000, 1),
    28: ("nv", 90000, 1),
    31: ("H261", 90000, 1),
    32: ("MPV", 90000, 1),
    33: ("MP2T", 90000, 1),
    34: ("H263", 90000, 1),
}
# RFC 3551 section 3: 96-127 are dynamic.
DYNAMIC_PAYLOAD_TYPES = range(96, 128)
PAYLOAD_TYPE_MAX = 127

# --- RFC 4733 section 7.1.1 / RFC 3389: the non-voice audio formats ----------------------
TELEPHONE_EVENT = "telephone-event"
COMFORT_NOISE = "CN"  # TODO: RFC 3389 comfort noise is never answered (media/cn.py only
# recognises PT 13); cost: peers that rely on VAD send silence instead.

# --- RFC 3264 section 5 / RFC 3550 section 11 -------------------------------------------
MEDIA_AUDIO = "audio"
RTP_AVP = "RTP/AVP"  # RFC 3551; TODO: RTP/SAVP(F) (RFC 3711/5124) would need SRTP keys
DEFAULT_PTIME = 20  # ms; RFC 3551 section 4.5 default packetisation for G.711
SESSION_NAME = "ccswitch"
# Bounds on the caches below (distinct media addresses; distinct negotiated formats).
CONNECTION_CACHE_SIZE = 256
TEMPLATE_CACHE_SIZE = 256
# Peer text keys those memos only while it is this small (formats per m= line; the
# length of each text is sdp.CACHED_TEXT_MAX): anything larger is worked out afresh.
CACHED_ITEMS_MAX = 32
# TODO: RFC 5761 a=rtcp-mux is never echoed, so RTCP always goes to its own port (a
# peer that insists on mux, e.g. WebRTC, cannot be served; plain SIP UAs are fine).

# --- RFC 3261 section 20.43: Warning codes for a 488 --------------------------------------
NOT_ACCEPTABLE_HERE = 488
WARNING_AGENT = "ccswitch"  # warn-agent = hostport / pseudonym
WARN_INCOMPATIBLE_TRANSPORT = 302
WARN_MEDIA_TYPE_NOT_AVAILABLE = 304
WARN_INCOMPATIBLE_MEDIA_FORMAT = 305
WARN_TEXTS = {
    WARN_INCOMPATIBLE_TRANSPORT: "Incompatible transport protocol",
    WARN_MEDIA_TYPE_NOT_AVAILABLE: "Media type not available",
    WARN_INCOMPATIBLE_MEDIA_FORMAT: "Incompatible media format",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Codec:
    """An audio format we can handle, with the payload type we offer it under.

    :param name: encoding name as in ``a=rtpmap`` (compared case-insensitively,
        RFC 4855 section 3).
    :param clock_rate: RTP clock rate in Hz.
    :param payload_type: our preferred number (static per RFC 3551, or 96-127).
    :param channels: audio channels.
    :param fmtp: format parameters we offer (``"0-16"`` for telephone-event).
    """

    name: str
    clock_rate: int
    payload_type: int
    channels: int = 1
    fmtp: str | None = None

    def __post_init__(self) -> None:
        static = STATIC_PAYLOAD_TYPES.get(self.payload_type)
        if self.payload_type in DYNAMIC_PAYLOAD_TYPES:
            return
        if static is None or not self.matches(static):
            # RFC 3551 section 3: a static number means exactly its table entry.
            raise LocalProtocolError(
                f"{self.name}/{self.clock_rate} cannot use payload type {self.payload_type}"
            )

    @property
    def is_telephone_event(self) -> bool:
        return self.name.lower() == TELEPHONE_EVENT

    def matches(self, found: Format) -> bool:
        """Same encoding as a (name, clock rate, channels) read from SDP."""
        name, clock_rate, channels = found
        return (
            name.lower() == self.name.lower()
            and clock_rate == self.clock_rate
            and channels == self.channels
        )

    @property
    def format(self) -> Format:
        return self.name, self.clock_rate, self.channels


PCMU = Codec(name="PCMU", clock_rate=8000, payload_type=0)
PCMA = Codec(name="PCMA", clock_rate=8000, payload_type=8)
TELEPHONE_EVENT_8000 = Codec(
    name=TELEPHONE_EVENT, clock_rate=8000, payload_type=101, fmtp="0-16"
)
DEFAULT_CODECS = (PCMU, PCMA, TELEPHONE_EVENT_8000)


@dataclass(frozen=True, kw_only=True, slots=True)
class NegotiatedMedia:
    """One negotiated audio stream, as the media engine needs it.

    :param remote_address: where we send RTP (``0.0.0.0`` for an RFC 2543 hold).
    :param remote_port: RTP port there.
    :param rtcp_address: RTCP destination address (RFC 3605 ``a=rtcp`` or the above).
    :param rtcp_port: RTCP port (``a=rtcp`` or RTP port + 1, RFC 3550 section 11).
    :param payload_type: voice payload type, the same both ways.
    :param codec: encoding name as in our :class:`Codec` (``"PCMU"``).
    :param clock_rate: RTP clock rate of the voice codec.
    :param telephone_event: RFC 4733 payload type, or None if not negotiated.
    :param direction: OUR direction (sendonly = we send, do not receive).
    :param ptime: packetisation the peer asked to receive, in ms.
    """

    remote_address: str
    remote_port: int
    rtcp_address: str
    rtcp_port: int
    payload_type: int
    codec: str
    clock_rate: int
    telephone_event: int | None
    direction: Direction
    ptime: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Answer:
    """Result of :func:`answer_offer`: the SDP to send and, per m-line, the stream."""

    sdp: SessionDescription
    streams: tuple[NegotiatedMedia | None, ...]

    @property
    def accepted(self) -> list[NegotiatedMedia]:
        return [stream for stream in self.streams if stream is not None]


class LocalSession:
    """Our side of one SDP session: the ``o=`` line and its version (RFC 3264 8).

    Every description we send in a dialog goes through :meth:`describe`, which keeps
    ``sess-id`` and bumps ``sess-version`` by one when the content differs from the
    previous one (a repeated identical offer keeps the version, section 8).

    :param address: our unicast media address (IPv4 or IPv6 literal, or FQDN).
    :param sess_id: defaults to a random 31-bit number (RFC 8866 5.2 wants it unique).
    :param sess_version: the first version sent.
    """

    def __init__(
        self,
        *,
        address: str,
        username: str = "-",
        session_name: str = SESSION_NAME,
        sess_id: int | None = None,
        sess_version: int = 1,
    ) -> None:
        self.address = address
        self.addrtype = AddressType.IP6 if ":" in address else AddressType.IP4
        self.username = username
        self.session_name = session_name
        self.sess_id = randbelow(2**31) if sess_id is None else sess_id
        self.sess_version = sess_version
        self._last: SessionDescription | None = None

    def connection(self) -> Connection:
        return _connection(str(self.addrtype), self.address)

    def describe(self, media: Iterable[MediaDescription]) -> SessionDescription:
        """Our description with these media lines and the right ``o=`` version."""
        media = tuple(media)
        connection = self.connection()
        last = self._last
        # Everything but o= is compared: describe() sets only these three fields.
        if last is not None and (
            last.session_name != self.session_name
            or last.connection != connection
            or last.media != media
        ):
            self.sess_version += 1
        description = _new_session(
            origin=_new_origin(
                username=self.username,
                sess_id=self.sess_id,
                sess_version=self.sess_version,
                nettype=NETTYPE_IN,
                addrtype=str(self.addrtype),
                address=self.address,
            ),
            session_name=self.session_name,
            connection=connection,
            media=media,
        )
        self._last = description
        return description


# --- Helpers ------------------------------------------------------------------------------


# Cached: every description of a LocalSession carries the same c= line.
@functools.lru_cache(maxsize=CONNECTION_CACHE_SIZE)
def _connection(addrtype: str, address: str) -> Connection:
    return Connection(addrtype=addrtype, address=address)


_WritableNegotiatedMedia = _writable_twin(NegotiatedMedia)


def _new_negotiated(
    *,
    remote_address: str,
    remote_port: int,
    rtcp_address: str,
    rtcp_port: int,
    payload_type: int,
    codec: str,
    clock_rate: int,
    telephone_event: int | None,
    direction: Direction,
    ptime: int,
) -> NegotiatedMedia:
    """``NegotiatedMedia(...)`` without the frozen-dataclass __init__ (see sdp.py)."""
    new = _WritableNegotiatedMedia()
    new.remote_address = remote_address
    new.remote_port = remote_port
    new.rtcp_address = rtcp_address
    new.rtcp_port = rtcp_port
    new.payload_type = payload_type
    new.codec = codec
    new.clock_rate = clock_rate
    new.telephone_event = telephone_event
    new.direction = direction
    new.ptime = ptime
    new.__class__ = NegotiatedMedia
    negotiated: NegotiatedMedia = new
    return negotiated


# (payload type, (name, clock rate, channels) as the SDP states it, the same with the
# name lower-cased for matching, RFC 4855 section 3).
_Resolved = tuple[int, Format, Format]


def _formats_of(media: MediaDescription) -> tuple[_Resolved, ...]:
    """Each payload type with its format: rtpmap first, then RFC 3551; unknown ones out."""
    rtpmaps = tuple(
        [
            attribute.value
            for attribute in media.attributes
            if attribute.name == "rtpmap"
        ]
    )
    # tuple(): a no-op for the tuple a parsed description holds, and a hashable key
    # for one built by hand with a list.
    formats = tuple(media.formats)
    if _cacheable(formats) and _cacheable(rtpmaps):
        return _resolve_formats(media.proto, formats, rtpmaps)
    return _resolve_formats.__wrapped__(media.proto, formats, rtpmaps)


def _cacheable(texts: tuple[str | None, ...]) -> bool:
    """Whether peer text is small enough to key a memo: the memos keep 256 entries,
    and one huge m= line or fmtp per entry would pin megabytes after the call."""
    return len(texts) <= CACHED_ITEMS_MAX and all(
        text is None or len(text) <= CACHED_TEXT_MAX for text in texts
    )


# Cached by the exact texts: peers send the same m= formats and rtpmap lines each call.
@functools.lru_cache(maxsize=TEMPLATE_CACHE_SIZE)
def _resolve_formats(
    proto: str, formats: tuple[str, ...], rtpmap_values: tuple[str | None, ...]
) -> tuple[_Resolved, ...]:
    # The same steps, in the same order, as MediaDescription.rtpmaps, .payload_types.
    rtpmaps: dict[int, RtpMap] = {}
    for value in rtpmap_values:
        parsed = _RTPMAPS[value or ""]
        rtpmaps[parsed.payload_type] = parsed
    payload_types = map(int, formats) if proto.upper().startswith("RTP/") else ()
    resolved: list[_Resolved] = []
    for payload_type in payload_types:
        rtpmap = rtpmaps.get(payload_type)
        found = (
            STATIC_PAYLOAD_TYPES.get(payload_type)
            if rtpmap is None
            else (rtpmap.encoding_name, rtpmap.clock_rate, rtpmap.channels)
        )
        if found is not None:
            resolved.append((payload_type, found, _key(found)))
    return tuple(resolved)


def _find_codec(codecs: Sequence[Codec], found: Format) -> Codec | None:
    return next((codec for codec in codecs if codec.matches(found)), None)


class _Picked(NamedTuple):
    voice_pt: int
    voice: Codec
    event_pt: int | None
    event: Format | None


def _pick_codecs(
    media: MediaDescription,
    codecs: Sequence[Codec],
    allowed: frozenset[Format] | None,
) -> _Picked | None:
    """The first voice codec of ``media`` (its order) we support, and telephone-event.

    :param allowed: if given, only formats in it (name lower-cased) are considered.
    """
    formats = _formats_of(media)
    if len(formats) <= CACHED_ITEMS_MAX and all(
        len(found[0]) <= CACHED_TEXT_MAX for _, found, _ in formats
    ):
        return _pick(tuple(codecs), formats, allowed)
    return _pick.__wrapped__(tuple(codecs), formats, allowed)


# Cached: the answer depends only on these values (Codec is frozen, the rest are
# tuples of strings and numbers), and most calls offer and answer the same codecs.
@functools.lru_cache(maxsize=TEMPLATE_CACHE_SIZE)
def _pick(
    codecs: tuple[Codec, ...],
    formats: tuple[_Resolved, ...],
    allowed: frozenset[Format] | None,
) -> _Picked | None:
    voice: tuple[int, Codec] | None = None
    events: list[tuple[int, Format]] = []
    for payload_type, found, key in formats:
        if allowed is not None and key not in allowed:
            continue
        codec = _find_codec(codecs, found)
        if codec is None or codec.name.upper() == COMFORT_NOISE:
            continue
        if codec.is_telephone_event:
            events.append((payload_type, found))
        elif voice is None:
            voice = (payload_type, codec)
    if voice is None:
        return None
    voice_pt, voice_codec = voice
    # RFC 4733 section 7.1.1: events use the clock rate of the voice codec.
    event_pt, event = next(
        ((pt, found) for pt, found in events if found[1] == voice_codec.clock_rate),
        (None, None),
    )
    return _Picked(voice_pt=voice_pt, voice=voice_codec, event_pt=event_pt, event=event)


def _key(found: Format) -> Format:
    return found[0].lower(), found[1], found[2]


def _rtpmap(payload_type: int, found: Format) -> RtpMap:
    name, clock_rate, channels = found
    return RtpMap(
        payload_type=payload_type,
        encoding_name=name,
        clock_rate=clock_rate,
        encoding_parameters=None if channels == 1 else str(channels),
    )


def _rtcp(media: MediaDescription, address: str) -> tuple[str, int]:
    rtcp = media.rtcp
    if rtcp is None:
        return address, media.port + 1
    if rtcp.connection is None:
        return address, rtcp.port
    return rtcp.connection.address, rtcp.port


# (payload type, (name, clock rate, channels), fmtp or None) of one format we list.
_Listed = tuple[int, Format, str | None]


# Cached: the formats and attributes of our m=audio lines depend only on what is
# negotiated, which is the same for most calls; only the port differs, and it is not
# part of the key. Attributes are frozen, so the tuples are safely shared.
@functools.lru_cache(maxsize=TEMPLATE_CACHE_SIZE)
def _audio_template(
    listed: tuple[_Listed, ...], direction: Direction, ptime: int
) -> tuple[tuple[str, ...], tuple[Attribute, ...]]:
    """The formats and attributes of an ``m=audio`` line listing ``listed``."""
    attributes: list[Attribute] = []
    for payload_type, found, fmtp in listed:
        attributes.append(
            Attribute(name="rtpmap", value=str(_rtpmap(payload_type, found)))
        )
        if fmtp is not None:
            attributes.append(Attribute(name="fmtp", value=f"{payload_type} {fmtp}"))
    attributes.append(Attribute(name="ptime", value=str(ptime)))
    attributes.append(Attribute(name=direction.value))
    formats = tuple(str(payload_type) for payload_type, _, _ in listed)
    return formats, tuple(attributes)


def _audio_media(
    *, port: int, listed: tuple[_Listed, ...], direction: Direction, ptime: int
) -> MediaDescription:
    if len(listed) <= CACHED_ITEMS_MAX and all(
        fmtp is None or len(fmtp) <= CACHED_TEXT_MAX for _, _, fmtp in listed
    ):
        formats, attributes = _audio_template(listed, direction, ptime)
    else:  # a peer's long fmtp, echoed in our answer: not kept after the call
        formats, attributes = _audio_template.__wrapped__(listed, direction, ptime)
    return _new_media(
        media=MEDIA_AUDIO,
        port=port,
        proto=RTP_AVP,
        formats=formats,
        attributes=attributes,
    )


def _rejected(media: MediaDescription) -> MediaDescription:
    # RFC 3264 section 6: port 0, and at least one format (we copy the offer's).
    return MediaDescription(
        media=media.media, port=0, proto=media.proto, formats=media.formats or ("0",)
    )


def _not_acceptable(reason: str, warn_code: int) -> ProtocolError:
    warning = f'{warn_code} {WARNING_AGENT} "{WARN_TEXTS[warn_code]}"'
    return ProtocolError(
        f"Not Acceptable Here: {reason}",
        status=NOT_ACCEPTABLE_HERE,
        headers=(("Warning", warning),),
    )


def _ptime(media: MediaDescription) -> int:
    ptime = media.ptime
    return DEFAULT_PTIME if ptime is None else max(1, round(ptime))


# --- Answerer -----------------------------------------------------------------------------


def answer_offer(
    offer: SessionDescription,
    session: LocalSession,
    *,
    ports: Sequence[int],
    codecs: Sequence[Codec] = DEFAULT_CODECS,
    direction: Direction = Direction.SENDRECV,
    ptime: int = DEFAULT_PTIME,
    protos: Iterable[str] = (RTP_AVP,),
) -> Answer:
    """Answer a remote offer (RFC 3264 section 6); see the module doc for the policy.

    :param offer: the parsed offer (from an INVITE, re-INVITE or UPDATE).
    :param session: our :class:`LocalSession` for this dialog.
    :param ports: our RTP port for the 1st, 2nd... accepted audio stream; audio
        streams beyond ``len(ports)`` are rejected.
    :param codecs: what we support; only name, clock rate and channels matter here.
    :param direction: our wish (``sendonly`` to put the peer on hold).
    :param ptime: the packetisation we ask the peer for.
    :raises ProtocolError: 488 when no stream can be accepted.
    """
    allowed_protos = {proto.upper() for proto in protos}
    answer_media: list[MediaDescription] = []
    streams: list[NegotiatedMedia | None] = []
    bad_transport = bad_codecs = accepted = False
    free_ports = list(ports)
    for media in offer.media:
        stream: NegotiatedMedia | None = None
        if media.port == 0 or media.media != MEDIA_AUDIO:
            pass
        elif media.proto.upper() not in allowed_protos:
            bad_transport = True
        elif not free_ports:
            logger.debug("no port left for audio stream %d", len(streams) + 1)
        else:
            picked = _pick_codecs(media, codecs, None)
            if picked is None:
                bad_codecs = True
            else:
                port = free_ports.pop(0)
                described, stream = _answer_stream(
                    offer, media, picked, port=port, direction=direction, ptime=ptime
                )
                answer_media.append(described)
                accepted = True
        if stream is None:
            answer_media.append(_rejected(media))
        streams.append(stream)
    if not accepted:
        if bad_codecs:
            raise _not_acceptable("no common codec", WARN_INCOMPATIBLE_MEDIA_FORMAT)
        if bad_transport:
            raise _not_acceptable("no supported transport", WARN_INCOMPATIBLE_TRANSPORT)
        raise _not_acceptable("no audio stream", WARN_MEDIA_TYPE_NOT_AVAILABLE)
    return Answer(sdp=session.describe(answer_media), streams=tuple(streams))


def _answer_stream(
    offer: SessionDescription,
    media: MediaDescription,
    picked: _Picked,
    *,
    port: int,
    direction: Direction,
    ptime: int,
) -> tuple[MediaDescription, NegotiatedMedia]:
    stream = _negotiated(offer, media, picked, wanted=direction)
    voice: _Listed = (picked.voice_pt, picked.voice.format, media.fmtp(picked.voice_pt))
    if picked.event_pt is not None and picked.event is not None:
        event: _Listed = (picked.event_pt, picked.event, media.fmtp(picked.event_pt))
        listed: tuple[_Listed, ...] = (voice, event)
    else:
        listed = (voice,)
    described = _audio_media(
        port=port, listed=listed, direction=stream.direction, ptime=ptime
    )
    return described, stream


def _negotiated(
    remote: SessionDescription,
    media: MediaDescription,
    picked: _Picked,
    *,
    wanted: Direction,
) -> NegotiatedMedia:
    """The stream a remote media description sets up, with OUR direction in it."""
    connection = remote.connection_for(media)
    assert connection is not None  # parse_sdp guarantees c= for a non-zero port
    theirs = remote.direction_for(media)
    ours = _answer_direction(theirs, wanted, connection.is_null)
    rtcp_address, rtcp_port = _rtcp(media, connection.address)
    return _new_negotiated(
        remote_address=connection.address,
        remote_port=media.port,
        rtcp_address=rtcp_address,
        rtcp_port=rtcp_port,
        payload_type=picked.voice_pt,
        codec=picked.voice.name,
        clock_rate=picked.voice.clock_rate,
        telephone_event=picked.event_pt,
        direction=ours,
        ptime=_ptime(media),
    )


@functools.cache  # at most 4 x 4 x 2 entries
def _answer_direction(theirs: Direction, wanted: Direction, null: bool) -> Direction:
    """OUR direction for a stream the peer describes as ``theirs``."""
    if null:
        # RFC 3264 section 8.4: c=0.0.0.0 is the old hold; the peer will not receive.
        theirs = Direction.from_flags(sends=theirs.sends, receives=False)
    # RFC 3264 section 6.1: we may send only what they receive, and receive only
    # what they send, and never more than we want.
    return Direction.from_flags(
        sends=theirs.receives and wanted.sends,
        receives=theirs.sends and wanted.receives,
    )


# --- Offerer ------------------------------------------------------------------------------


def build_offer(
    session: LocalSession,
    *,
    port: int,
    codecs: Sequence[Codec] = DEFAULT_CODECS,
    direction: Direction = Direction.SENDRECV,
    ptime: int = DEFAULT_PTIME,
) -> SessionDescription:
    """Our offer: one ``m=audio`` line listing ``codecs`` in order (RFC 3264 5).

    Use ``direction=Direction.SENDONLY`` for a hold re-offer (RFC 3264 section 8.4).

    :raises LocalProtocolError: two codecs share a payload type, or none is voice.
    """
    media = _audio_media(
        port=port,
        listed=_offered(tuple(codecs)),
        direction=direction,
        ptime=ptime,
    )
    return session.describe((media,))


# Cached: a switch offers the same few codec lists; Codec is frozen. A misuse raises,
# and is not cached, so it raises every time.
@functools.lru_cache(maxsize=TEMPLATE_CACHE_SIZE)
def _offered(codecs: tuple[Codec, ...]) -> tuple[_Listed, ...]:
    numbers = [codec.payload_type for codec in codecs]
    if len(set(numbers)) != len(numbers):
        raise LocalProtocolError(f"payload types used twice in {numbers}")
    if all(codec.is_telephone_event for codec in codecs):
        raise LocalProtocolError("an offer needs at least one voice codec")
    return tuple((codec.payload_type, codec.format, codec.fmtp) for codec in codecs)


def process_answer(
    offer: SessionDescription,
    answer: SessionDescription,
    *,
    codecs: Sequence[Codec] = DEFAULT_CODECS,
) -> NegotiatedMedia:
    """Read the answer to our offer (RFC 3264 section 7) for its first audio stream.

    The voice codec is the first format of the answer that we offered and support
    (matched by name and clock rate, sent with the *answer's* payload type number,
    since that is what the answerer expects to receive, RFC 3264 section 5.1).

    :raises ProtocolError: the answer does not match the offer's m-lines (400), or
        rejects the audio / picks nothing we offered (488).
    """
    if len(answer.media) != len(offer.media):
        raise ProtocolError(
            f"answer has {len(answer.media)} m-lines, offer had {len(offer.media)}"
        )
    for offered, answered in zip(offer.media, answer.media, strict=True):
        if offered.port == 0 or offered.media != MEDIA_AUDIO:
            continue
        if answered.media != offered.media:
            raise ProtocolError(
                f"answer m={answered.media} where offer had m={offered.media}"
            )
        if answered.port == 0:
            continue
        offered_formats = frozenset([key for _, _, key in _formats_of(offered)])
        picked = _pick_codecs(answered, codecs, offered_formats)
        if picked is None:
            raise _not_acceptable(
                "answer has no codec we offered", WARN_INCOMPATIBLE_MEDIA_FORMAT
            )
        # TODO: RFC 3264 section 6.1 lets the answerer renumber (SHOULD keep ours);
        # then we send with its number but receive with ours, and NegotiatedMedia
        # carries only one. Cost: such a peer's RTP is dropped as unknown PT.
        return _negotiated(
            answer, answered, picked, wanted=offer.direction_for(offered)
        )
    raise _not_acceptable(
        "answer rejected every audio stream", WARN_MEDIA_TYPE_NOT_AVAILABLE
    )
