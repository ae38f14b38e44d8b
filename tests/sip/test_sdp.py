"""Tests for switch.sip.sdp (RFC 8866) and switch.sip.offer_answer (RFC 3264).

Both modules are tested here: offer/answer is exercised through parsed descriptions, and
the two share the real-world fixtures below.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.sip.errors import BadMessage, LocalProtocolError, ProtocolError
from switch.sip.offer_answer import (
    DEFAULT_CODECS,
    PCMA,
    PCMU,
    STATIC_PAYLOAD_TYPES,
    TELEPHONE_EVENT_8000,
    Answer,
    Codec,
    LocalSession,
    NegotiatedMedia,
    answer_offer,
    build_offer,
    process_answer,
)
from switch.sip.sdp import (
    Attribute,
    Bandwidth,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    Rtcp,
    RtpMap,
    SessionDescription,
    Timing,
    parse_sdp,
)


def sdp(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


# The SDP SIPp sends in its built-in uac scenario (fields filled in).
SIPP_OFFER = sdp(
    "v=0",
    "o=user1 53655765 2353687637 IN IP4 127.0.1.1",
    "s=-",
    "c=IN IP4 127.0.1.1",
    "t=0 0",
    "m=audio 6000 RTP/AVP 0",
    "a=rtpmap:0 PCMU/8000",
)

# baresip style: many codecs, wideband first, opus stereo, rtcp-mux, session a=tool.
BARESIP_OFFER = sdp(
    "v=0",
    "o=- 1652954578 2387384820 IN IP4 192.168.1.10",
    "s=-",
    "c=IN IP4 192.168.1.10",
    "t=0 0",
    "a=tool:baresip 3.10.1",
    "m=audio 10000 RTP/AVP 96 9 0 8 101",
    "b=AS:64",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 stereo=1;sprop-stereo=1",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=rtcp-mux",
    "a=sendrecv",
    "a=label:1",
    "a=ssrc:1254372871 cname:baresip@192.168.1.10",
    "a=mid:audio",
)

# Asterisk style: PCMA first, GSM, telephone-event 0-16, ptime/maxptime.
ASTERISK_OFFER = sdp(
    "v=0",
    "o=- 1918351417 1918351417 IN IP4 10.0.0.1",
    "s=Asterisk",
    "c=IN IP4 10.0.0.1",
    "t=0 0",
    "m=audio 17362 RTP/AVP 8 0 3 101",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:3 GSM/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=maxptime:150",
    "a=sendrecv",
)

# FreeSWITCH style: opus and dynamic telephone-event at two clock rates, CN, a=rtcp.
FREESWITCH_OFFER = sdp(
    "v=0",
    "o=FreeSWITCH 1700000000 1700000001 IN IP4 10.0.0.2",
    "s=FreeSWITCH",
    "c=IN IP4 10.0.0.2",
    "t=0 0",
    "m=audio 25000 RTP/AVP 102 9 0 8 103 101 13",
    "a=rtpmap:102 opus/48000/2",
    "a=fmtp:102 useinbandfec=1; maxaveragebitrate=30000; maxplaybackrate=48000",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:103 telephone-event/48000",
    "a=fmtp:103 0-16",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=rtpmap:13 CN/8000",
    "a=ptime:20",
    "a=sendrecv",
    "a=rtcp:25001 IN IP4 10.0.0.3",
)

REAL_OFFERS = [SIPP_OFFER, BARESIP_OFFER, ASTERISK_OFFER, FREESWITCH_OFFER]


def session() -> LocalSession:
    return LocalSession(address="192.0.2.10", sess_id=4242)


def answer(offer: bytes | SessionDescription, **kwargs: object) -> Answer:
    parsed = parse_sdp(offer) if isinstance(offer, bytes) else offer
    options: dict[str, object] = {"ports": [40000], **kwargs}
    local = options.pop("session", session())
    assert isinstance(local, LocalSession)
    return answer_offer(parsed, local, **options)  # type: ignore[arg-type]


def only_stream(result: Answer) -> NegotiatedMedia:
    (stream,) = result.accepted
    return stream


def audio_offer(*media_lines: str, connection: str = "c=IN IP4 203.0.113.5") -> bytes:
    return sdp(
        "v=0", "o=- 1 1 IN IP4 203.0.113.5", "s=-", connection, "t=0 0", *media_lines
    )


# --- Parsing ----------------------------------------------------------------------------


def test_parse_sipp_offer() -> None:
    parsed = parse_sdp(SIPP_OFFER)
    assert parsed == SessionDescription(
        origin=Origin(
            username="user1",
            sess_id=53655765,
            sess_version=2353687637,
            address="127.0.1.1",
        ),
        session_name="-",
        connection=Connection(address="127.0.1.1"),
        timings=(Timing(start=0, stop=0),),
        media=(
            MediaDescription(
                media="audio",
                port=6000,
                proto="RTP/AVP",
                formats=("0",),
                attributes=(Attribute(name="rtpmap", value="0 PCMU/8000"),),
            ),
        ),
    )
    assert parsed.to_bytes() == SIPP_OFFER


@pytest.mark.parametrize("offer", REAL_OFFERS)
def test_real_offers_round_trip(offer: bytes) -> None:
    parsed = parse_sdp(offer)
    assert parsed.to_bytes() == offer
    assert parse_sdp(str(parsed)) == parsed


def test_accessors_on_freeswitch_offer() -> None:
    parsed = parse_sdp(FREESWITCH_OFFER)
    (media,) = parsed.media
    assert media.payload_types == (102, 9, 0, 8, 103, 101, 13)
    assert media.rtpmaps[102] == RtpMap(
        payload_type=102,
        encoding_name="opus",
        clock_rate=48000,
        encoding_parameters="2",
    )
    assert media.rtpmaps[102].channels == 2
    assert media.rtpmaps[0].channels == 1
    assert media.fmtp(101) == "0-16"
    assert media.fmtp("102") == (
        "useinbandfec=1; maxaveragebitrate=30000; maxplaybackrate=48000"
    )
    assert media.fmtp(0) is None
    assert media.ptime == 20.0
    assert media.maxptime is None
    assert media.direction is Direction.SENDRECV
    assert media.rtcp == Rtcp(port=25001, connection=Connection(address="10.0.0.3"))
    assert media.has_attribute("rtcp") and not media.has_attribute("rtcp-mux")
    assert media.is_rtp


def test_accessors_defaults() -> None:
    parsed = parse_sdp(SIPP_OFFER)
    (media,) = parsed.media
    assert media.ptime is None and media.rtcp is None and media.direction is None
    assert parsed.direction is None
    assert parsed.direction_for(media) is Direction.SENDRECV
    assert parsed.connection_for(media) == Connection(address="127.0.1.1")


def test_line_end_tolerance() -> None:
    lf_only = SIPP_OFFER.replace(b"\r\n", b"\n")
    assert parse_sdp(lf_only) == parse_sdp(SIPP_OFFER)
    assert parse_sdp(lf_only.rstrip(b"\n")) == parse_sdp(SIPP_OFFER)
    assert parse_sdp(SIPP_OFFER + b"\r\n\r\n") == parse_sdp(SIPP_OFFER)
    spaced = SIPP_OFFER.replace(b"PCMU/8000", b"PCMU/8000 \t").replace(b"0 0", b"0   0")
    assert parse_sdp(spaced) == parse_sdp(SIPP_OFFER)
    assert parse_sdp(SIPP_OFFER.decode()) == parse_sdp(SIPP_OFFER)


def test_all_session_lines_round_trip() -> None:
    text = sdp(
        "v=0",
        "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5",
        "s=SDP Seminar",
        "i=A Seminar on the session description protocol",
        "u=http://www.example.com/seminars/sdp.pdf",
        "e=j.doe@example.com (Jane Doe)",
        "p=+1 617 555-6011",
        "c=IN IP4 224.2.17.12/127",
        "b=CT:128",
        "t=2873397496 2873404696",
        "r=7d 1h 0 25h",
        "t=0 0",
        "z=2882844526 -1h 2898848070 0",
        "k=clear:secret",
        "a=recvonly",
        "a=x-unknown:anything goes : here",
        "m=audio 49170 RTP/AVP 0",
        "i=voice",
        "c=IN IP6 ff15::101/3",
        "b=AS:64",
        "k=prompt",
        "m=video 51372/2 RTP/AVP 99",
        "c=IN IP4 224.2.17.12/127/2",
        "a=rtpmap:99 h263-1998/90000",
        "m=application 9 TCP/MSRP *",
        "c=IN IP4 example.com",
        "a=accept-types:text/plain",
    )
    parsed = parse_sdp(text)
    assert parsed.to_bytes() == text
    assert parsed.information == "A Seminar on the session description protocol"
    assert parsed.uri == "http://www.example.com/seminars/sdp.pdf"
    assert parsed.emails == ("j.doe@example.com (Jane Doe)",)
    assert parsed.phones == ("+1 617 555-6011",)
    assert parsed.connection == Connection(address="224.2.17.12", ttl=127)
    assert parsed.bandwidths == (Bandwidth(bwtype="CT", bandwidth=128),)
    assert parsed.timings[0].repeats == ("7d 1h 0 25h",)
    assert parsed.time_zones == "2882844526 -1h 2898848070 0"
    assert parsed.key == "clear:secret"
    assert parsed.direction is Direction.RECVONLY
    assert parsed.attributes[1] == Attribute(
        name="x-unknown", value="anything goes : here"
    )
    audio, video, application = parsed.media
    assert audio.information == "voice" and audio.key == "prompt"
    assert audio.connection == Connection(addrtype="IP6", address="ff15::101", count=3)
    assert parsed.direction_for(audio) is Direction.RECVONLY
    assert video.port == 51372 and video.port_count == 2
    assert video.connection == Connection(address="224.2.17.12", ttl=127, count=2)
    assert not application.is_rtp and application.payload_types == ()
    assert application.formats == ("*",)


def test_optional_session_lines_in_any_order_and_empty_name() -> None:
    text = sdp(
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=",
        "t=0 0",
        "c=IN IP4 10.0.0.1",
        "a=sendrecv",
        "b=AS:80",
        "m=audio 4000 RTP/AVP 0",
    )
    parsed = parse_sdp(text)
    assert parsed.session_name == ""
    assert "s= \r\n" in str(parsed)
    assert parse_sdp(str(parsed)).media == parsed.media


def test_ipv6_and_fqdn() -> None:
    text = sdp(
        "v=0",
        "o=- 1 1 IN IP6 2001:db8::1",
        "s=-",
        "c=IN IP6 2001:db8::1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
        "a=rtcp:4001 IN IP6 2001:db8::2",
    )
    parsed = parse_sdp(text)
    assert parsed.origin.addrtype == "IP6"
    assert parsed.media[0].rtcp == Rtcp(
        port=4001, connection=Connection(addrtype="IP6", address="2001:db8::2")
    )
    fqdn = parse_sdp(text.replace(b"IP6 2001:db8::1", b"IP6 host6.example.com"))
    assert fqdn.origin.address == "host6.example.com"


def test_rejected_stream_tolerances() -> None:
    text = sdp(
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
        "c=IN IP4 10.0.0.1",
        "m=video 0 RTP/AVP",
    )
    video = parse_sdp(text).media[1]
    assert video.port == 0 and video.formats == () and video.connection is None


def test_ptime_fraction_and_rtcp_port_only() -> None:
    parsed = parse_sdp(
        audio_offer(
            "m=audio 4000 RTP/AVP 0", "a=ptime:22.5", "a=rtcp:4005", "a=maxptime:40"
        )
    )
    media = parsed.media[0]
    assert media.ptime == 22.5
    assert media.maxptime == 40.0
    assert media.rtcp == Rtcp(port=4005)


def test_build_from_dataclasses() -> None:
    description = SessionDescription(
        origin=Origin(sess_id=1, sess_version=2, address="10.0.0.1"),
        media=(
            MediaDescription(
                media="audio",
                port=5004,
                proto="RTP/AVP",
                formats=("0",),
                connection=Connection(address="10.0.0.2"),
                bandwidths=(Bandwidth(bwtype="AS", bandwidth=64),),
                attributes=(Attribute(name="sendonly"),),
            ),
        ),
    )
    assert str(description) == (
        "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "m=audio 5004 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\nb=AS:64\r\na=sendonly\r\n"
    )
    assert parse_sdp(description.to_bytes()) == description


def test_direction_enum() -> None:
    assert Direction.SENDONLY.reversed() is Direction.RECVONLY
    assert Direction.RECVONLY.reversed() is Direction.SENDONLY
    assert Direction.SENDRECV.reversed() is Direction.SENDRECV
    assert Direction.INACTIVE.reversed() is Direction.INACTIVE
    assert Direction.from_flags(sends=False, receives=False) is Direction.INACTIVE
    assert Direction.SENDRECV.sends and Direction.SENDRECV.receives
    assert not Direction.INACTIVE.sends and not Direction.INACTIVE.receives


def test_null_connection() -> None:
    assert Connection(address="0.0.0.0").is_null
    assert Connection(addrtype="IP6", address="::").is_null
    assert not Connection(address="10.0.0.1").is_null


BASE = [
    "v=0",
    "o=- 1 1 IN IP4 10.0.0.1",
    "s=-",
    "c=IN IP4 10.0.0.1",
    "t=0 0",
    "m=audio 4000 RTP/AVP 0 101",
]


def with_lines(*extra: str, base: list[str] = BASE) -> bytes:
    return sdp(*base, *extra)


def replaced(index: int, line: str) -> bytes:
    lines = list(BASE)
    lines[index] = line
    return sdp(*lines)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "SDP: empty description"),
        (b"\r\n\r\n", "SDP: empty description"),
        (b"v=0\r\n\xff\r\n", "SDP: not UTF-8 text at byte 5"),
        (b"v=0", "SDP: missing o= line"),
        (b"v=0\r\no=- 1 1 IN IP4 10.0.0.1", "SDP: missing s= line"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-", "SDP: missing t= line"),
        (replaced(0, "v=1"), "SDP line 1: unsupported version '1'"),
        (
            replaced(0, "o=- 1 1 IN IP4 10.0.0.1"),
            "SDP line 1: expected 'v=' line, got 'o='",
        ),
        (replaced(1, "s=-"), "SDP line 2: expected 'o=' line, got 's='"),
        (replaced(2, "t=0 0"), "SDP line 3: expected 's=' line, got 't='"),
        (replaced(3, "c = IN IP4 10.0.0.1"), "SDP line 4: expected '<type>=<value>'"),
        (replaced(3, "C=IN IP4 10.0.0.1"), "SDP line 4: expected '<type>=<value>'"),
        (replaced(3, "x"), "SDP line 4: expected '<type>=<value>', got 'x'"),
        (replaced(3, ""), "SDP line 4: expected '<type>=<value>', got ''"),
        (replaced(3, "y=whatever"), "SDP line 4: unknown line type 'y='"),
        (replaced(3, "c=IN IP4 10.0.0.1\x00"), "SDP line 4: NUL or CR inside the line"),
        (replaced(3, "c=IN IP4 10.0\r.0.1"), "SDP line 4: NUL or CR inside the line"),
        (replaced(4, "s=again"), "SDP line 5: second 's=' line"),
        (replaced(4, "r=1d 1h 0"), "SDP line 5: r= line without a t= line"),
        (replaced(4, "m=audio 4000 RTP/AVP 0"), "no t= line before the first m= line"),
        (replaced(1, "o=- 1 1 IN IP4"), "SDP line 2: o= needs 6 fields, got 5"),
        (replaced(1, "o=- x 1 IN IP4 10.0.0.1"), "o= sess-id is not a number: 'x'"),
        (replaced(1, "o=- 1 -1 IN IP4 10.0.0.1"), "o= sess-version is not a number"),
        (replaced(1, "o=- 1 1 ATM NSAP 47.0005"), "o=: unsupported network type 'ATM'"),
        (replaced(1, "o=- 1 1 IN IPX 10.0.0.1"), "o=: unsupported address type 'IPX'"),
        (replaced(1, "o=- 1 1 IN IP4 10.0.0.256"), "o=: bad IP4 address '10.0.0.256'"),
        (replaced(1, "o=- 1 1 IN IP4 ::1"), "o=: bad IP4 address '::1'"),
        (replaced(1, "o=- 1 1 IN IP6 10.0.0.1"), "o=: bad IP6 address '10.0.0.1'"),
        (replaced(1, "o=- 1 1 IN IP4 a_b"), "o=: bad IP4 address 'a_b'"),
        (replaced(3, "c=IN IP4"), "SDP line 4: c= needs 3 fields, got 2"),
        (replaced(3, "c=IN IP4 224.0.0.1/300"), "c=: ttl 300 is above 255"),
        (replaced(3, "c=IN IP4 224.0.0.1/1/x"), "c=: address count is not a number"),
        (replaced(3, "c=IN IP4 224.0.0.1/1/2/3"), "c=: too many '/' in"),
        (replaced(3, "c=IN IP6 ff15::1/3/4"), "c=: too many '/' in"),
        (replaced(3, "b=AS"), "b=: expected <bwtype>:<bandwidth>, got 'AS'"),
        (replaced(3, "b=:64"), "b=: expected <bwtype>:<bandwidth>"),
        (replaced(3, "b=AS:lots"), "b= bandwidth is not a number: 'lots'"),
        (replaced(4, "t=0"), "SDP line 5: t= needs 2 fields, got 1"),
        (replaced(4, "t=0 now"), "t= stop-time is not a number: 'now'"),
        (replaced(5, "m=audio 4000"), "SDP line 6: m= needs at least 3 fields, got 2"),
        (replaced(5, "m=au(dio 4000 RTP/AVP 0"), "m= bad media type 'au(dio'"),
        (replaced(5, "m=audio 70000 RTP/AVP 0"), "m= port 70000 is above 65535"),
        (replaced(5, "m=audio x RTP/AVP 0"), "m= port is not a number: 'x'"),
        (replaced(5, "m=audio 4000/ RTP/AVP 0"), "m= number of ports is not a number"),
        (replaced(5, "m=audio 4000 RTP//AVP 0"), "m= bad proto 'RTP//AVP'"),
        (replaced(5, "m=audio 4000 RTP/AVP"), "SDP line 6: m= no formats"),
        (replaced(5, "m=audio 4000 RTP/AVP 0 128"), "m= payload type 128 is above 127"),
        (replaced(5, "m=audio 4000 RTP/AVP PCMU"), "m= payload type is not a number"),
        (replaced(5, "m=audio 4000 udp (x)"), "m= bad format '(x)'"),
        (
            with_lines("o=- 1 1 IN IP4 10.0.0.1"),
            "SDP line 7: line type 'o=' not allowed",
        ),
        (
            with_lines("c=IN IP4 1.1.1.1", "c=IN IP4 1.1.1.2"),
            "line 8: second 'c=' line in",
        ),
        (with_lines("a=rtpmap:0"), "SDP line 7: a=rtpmap: expected '<payload type>"),
        (with_lines("a=rtpmap:0 PCMU"), "SDP line 7: a=rtpmap: bad encoding 'PCMU'"),
        (with_lines("a=rtpmap:0 PCMU/8000/1/2"), "a=rtpmap: bad encoding"),
        (with_lines("a=rtpmap:0 PC(MU/8000"), "a=rtpmap: bad encoding"),
        (with_lines("a=rtpmap:0 PCMU/fast"), "a=rtpmap clock rate is not a number"),
        (with_lines("a=rtpmap:0 opus/48000/(2)"), "a=rtpmap: bad encoding parameters"),
        (
            with_lines("a=rtpmap:200 PCMU/8000"),
            "a=rtpmap payload type 200 is above 127",
        ),
        (with_lines("a=rtpmap"), "SDP line 7: a=rtpmap: missing value"),
        (
            with_lines("a=fmtp:101"),
            "a=fmtp: expected '<format> <parameters>', got '101'",
        ),
        (with_lines("a=fmtp:"), "a=fmtp: expected '<format> <parameters>'"),
        (with_lines("a=ptime:0"), "a=ptime: expected a positive number of ms, got '0'"),
        (with_lines("a=ptime:fast"), "a=ptime: expected a positive number of ms"),
        (with_lines("a=maxptime:-1"), "a=maxptime: expected a positive number of ms"),
        (with_lines("a=rtcp:x"), "a=rtcp port is not a number: 'x'"),
        (with_lines("a=rtcp:1 IN IP4"), "a=rtcp: expected '<port> [<nettype>"),
        (with_lines("a=rtcp:1 IN IP4 1.2.3"), "a=rtcp: bad IP4 address '1.2.3'"),
        (with_lines("a=sendonly:now"), "SDP line 7: a=sendonly: takes no value"),
        (with_lines("a=:x"), "SDP line 7: a=: bad attribute name ''"),
        (with_lines("a=sendonly", "a=recvonly"), "more than one direction attribute"),
        (
            with_lines("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMA/8000"),
            "two rtpmap lines for payload type 0",
        ),
        (
            sdp(*BASE[:5], "a=inactive", "a=sendonly", BASE[5]),
            "SDP session level: more than one direction attribute",
        ),
        (
            sdp(*BASE[:3], "t=0 0", "m=audio 4000 RTP/AVP 0"),
            "SDP: no c= line for media description 1",
        ),
    ],
)
def test_parse_errors(data: bytes, message: str) -> None:
    with pytest.raises(BadMessage) as info:
        parse_sdp(data)
    assert message in str(info.value)
    assert info.value.status == 400


@given(st.text(max_size=300))
def test_fuzz_text(text: str) -> None:
    with contextlib.suppress(BadMessage):
        parse_sdp(text)


@given(st.binary(max_size=300))
def test_fuzz_bytes(data: bytes) -> None:
    with contextlib.suppress(BadMessage):
        parse_sdp(data)


FUZZ_LINES = [
    line for offer in REAL_OFFERS for line in offer.decode().split("\r\n") if line
] + [
    "c=IN IP4 0.0.0.0",
    "a=sendonly",
    "a=inactive",
    "m=video 0 RTP/AVP 31",
    "m=audio 0 RTP/SAVP 0",
    "a=rtpmap:101 telephone-event/16000",
    "c=IN IP6 ::",
    "a=rtcp:1 IN IP4 0.0.0.0",
]


@given(st.lists(st.sampled_from(FUZZ_LINES), max_size=25))
def test_fuzz_line_soup(lines: list[str]) -> None:
    text = sdp("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", *lines)
    try:
        parsed = parse_sdp(text)
    except BadMessage:
        return
    assert parse_sdp(parsed.to_bytes()) == parsed
    # Offer/answer over anything that parses: an answer or a 488, nothing else.
    try:
        result = answer(parsed, ports=[40000, 40002])
    except ProtocolError as exc:
        assert exc.status == 488
        return
    assert len(result.sdp.media) == len(parsed.media) == len(result.streams)
    assert parse_sdp(result.sdp.to_bytes()) == result.sdp


@given(st.integers(min_value=0, max_value=len(FREESWITCH_OFFER)))
def test_truncated_offer(cut: int) -> None:
    with contextlib.suppress(BadMessage):
        parse_sdp(FREESWITCH_OFFER[:cut])


@given(st.text(alphabet="aAcmtv=/ :0123456789INP\r\n.-", max_size=200))
def test_fuzz_sdp_alphabet(text: str) -> None:
    with contextlib.suppress(BadMessage):
        parse_sdp("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n" + text)


# --- Answering offers ---------------------------------------------------------------------


def test_answer_sipp() -> None:
    result = answer(SIPP_OFFER)
    assert result.streams == (
        NegotiatedMedia(
            remote_address="127.0.1.1",
            remote_port=6000,
            rtcp_address="127.0.1.1",
            rtcp_port=6001,
            payload_type=0,
            codec="PCMU",
            clock_rate=8000,
            telephone_event=None,
            direction=Direction.SENDRECV,
            ptime=20,
        ),
    )
    assert result.sdp.to_bytes() == sdp(
        "v=0",
        "o=- 4242 1 IN IP4 192.0.2.10",
        "s=ccswitch",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        "m=audio 40000 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "a=ptime:20",
        "a=sendrecv",
    )


def test_answer_baresip_keeps_offerer_order_pts_and_fmtp() -> None:
    result = answer(BARESIP_OFFER)
    stream = only_stream(result)
    assert (stream.payload_type, stream.codec, stream.telephone_event) == (
        0,
        "PCMU",
        101,
    )
    (media,) = result.sdp.media
    assert media.formats == ("0", "101")
    assert media.fmtp(101) == "0-15"  # the offerer's event range, as offered
    assert media.rtpmaps[101].encoding_name == "telephone-event"
    assert not media.has_attribute("rtcp-mux")


def test_answer_asterisk_pcma_first() -> None:
    result = answer(ASTERISK_OFFER)
    stream = only_stream(result)
    assert (stream.payload_type, stream.codec, stream.telephone_event) == (
        8,
        "PCMA",
        101,
    )
    assert result.sdp.media[0].fmtp(101) == "0-16"
    assert result.sdp.media[0].formats == ("8", "101")


def test_answer_freeswitch_event_at_voice_rate_and_rtcp() -> None:
    stream = only_stream(answer(FREESWITCH_OFFER))
    assert (stream.payload_type, stream.telephone_event) == (0, 101)
    assert (stream.rtcp_address, stream.rtcp_port) == ("10.0.0.3", 25001)


def test_answer_rtcp_port_only() -> None:
    offer = audio_offer("m=audio 5000 RTP/AVP 0", "a=rtcp:5009")
    stream = only_stream(answer(offer))
    assert (stream.rtcp_address, stream.rtcp_port) == ("203.0.113.5", 5009)


def test_answer_dynamic_pcmu_and_odd_event_pt() -> None:
    offer = audio_offer(
        "m=audio 5000 RTP/AVP 110 100",
        "a=rtpmap:110 pcmu/8000",
        "a=rtpmap:100 Telephone-Event/8000",
        "a=ptime:30",
    )
    result = answer(offer, ptime=40)
    stream = only_stream(result)
    assert (stream.payload_type, stream.codec, stream.telephone_event) == (
        110,
        "PCMU",
        100,
    )
    assert stream.ptime == 30
    media = result.sdp.media[0]
    assert media.rtpmaps[110].encoding_name == "PCMU"
    assert media.fmtp(100) is None  # none offered, none answered (RFC 4733 default)
    assert media.ptime == 40


def test_answer_media_level_connection_and_ipv6() -> None:
    offer = sdp(
        "v=0",
        "o=- 1 1 IN IP6 2001:db8::1",
        "s=-",
        "t=0 0",
        "m=audio 5000 RTP/AVP 8",
        "c=IN IP6 2001:db8::5",
    )
    local = LocalSession(address="2001:db8::10", sess_id=7)
    result = answer(offer, session=local)
    assert only_stream(result).remote_address == "2001:db8::5"
    assert result.sdp.connection == Connection(addrtype="IP6", address="2001:db8::10")
    assert result.sdp.origin.addrtype == "IP6"


def test_answer_rejects_video_keeping_position() -> None:
    offer = audio_offer(
        "m=video 5002 RTP/AVP 31 34",
        "a=rtpmap:31 H261/90000",
        "m=audio 5000 RTP/AVP 0",
    )
    result = answer(offer)
    video, audio = result.sdp.media
    assert (video.media, video.port, video.formats, video.attributes) == (
        "video",
        0,
        ("31", "34"),
        (),
    )
    assert audio.port == 40000
    assert result.streams[0] is None and result.streams[1] is not None


def test_answer_rejects_srtp_but_takes_plain_rtp() -> None:
    offer = audio_offer(
        "m=audio 5000 RTP/SAVP 0",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
        "m=audio 5002 RTP/AVP 0",
    )
    result = answer(offer)
    assert [m.port for m in result.sdp.media] == [0, 40000]
    assert [m.proto for m in result.sdp.media] == ["RTP/SAVP", "RTP/AVP"]
    assert only_stream(result).remote_port == 5002


def test_answer_two_audio_streams() -> None:
    offer = audio_offer("m=audio 5000 RTP/AVP 0", "m=audio 5002 RTP/AVP 8")
    one_port = answer(offer)
    assert [m.port for m in one_port.sdp.media] == [40000, 0]
    both = answer(offer, ports=[40000, 40002])
    assert [m.port for m in both.sdp.media] == [40000, 40002]
    assert [s.payload_type for s in both.accepted] == [0, 8]


def test_answer_offer_with_disabled_stream() -> None:
    offer = audio_offer("m=audio 0 RTP/AVP 0", "m=audio 5002 RTP/AVP 0")
    result = answer(offer)
    assert [m.port for m in result.sdp.media] == [0, 40000]
    assert result.streams[0] is None


def test_answer_rejected_stream_without_formats_gets_one() -> None:
    offer = audio_offer("m=video 0 RTP/AVP", "m=audio 5002 RTP/AVP 0")
    result = answer(offer)
    assert result.sdp.media[0].formats == ("0",)
    parse_sdp(result.sdp.to_bytes())


@pytest.mark.parametrize(
    ("media_lines", "reason", "warning"),
    [
        (
            ["m=audio 5000 RTP/AVP 18 4", "a=rtpmap:18 G729/8000"],
            "Not Acceptable Here: no common codec",
            '305 ccswitch "Incompatible media format"',
        ),
        (
            [
                "m=audio 5000 RTP/AVP 96",
                "a=rtpmap:96 opus/48000/2",
                "m=video 5002 RTP/AVP 31",
            ],
            "Not Acceptable Here: no common codec",
            '305 ccswitch "Incompatible media format"',
        ),
        (
            ["m=audio 5000 RTP/SAVPF 0", "m=video 5002 RTP/AVP 31"],
            "Not Acceptable Here: no supported transport",
            '302 ccswitch "Incompatible transport protocol"',
        ),
        (
            ["m=video 5002 RTP/AVP 31"],
            "Not Acceptable Here: no audio stream",
            '304 ccswitch "Media type not available"',
        ),
        (
            [],
            "Not Acceptable Here: no audio stream",
            '304 ccswitch "Media type not available"',
        ),
        (
            ["m=audio 5000 RTP/AVP 101", "a=rtpmap:101 telephone-event/8000"],
            "Not Acceptable Here: no common codec",
            '305 ccswitch "Incompatible media format"',
        ),
        (
            ["m=audio 5000 RTP/AVP 13 96"],  # CN alone; 96 without rtpmap is unknown
            "Not Acceptable Here: no common codec",
            '305 ccswitch "Incompatible media format"',
        ),
    ],
)
def test_answer_488(media_lines: list[str], reason: str, warning: str) -> None:
    with pytest.raises(ProtocolError) as info:
        answer(audio_offer(*media_lines))
    assert info.value.status == 488
    assert info.value.reason == reason
    assert info.value.headers == (("Warning", warning),)


def test_answer_no_ports_is_488() -> None:
    with pytest.raises(ProtocolError, match="no audio stream"):
        answer(SIPP_OFFER, ports=[])


def test_comfort_noise_never_voice_even_if_listed() -> None:
    cn = Codec(name="CN", clock_rate=8000, payload_type=13)
    offer = audio_offer("m=audio 5000 RTP/AVP 13 0")
    stream = only_stream(answer(offer, codecs=(cn, PCMU)))
    assert stream.payload_type == 0


def test_answer_wideband_codec_and_event_rate() -> None:
    opus = Codec(name="opus", clock_rate=48000, payload_type=111, channels=2)
    event48 = Codec(name="telephone-event", clock_rate=48000, payload_type=110)
    result = answer(
        FREESWITCH_OFFER, codecs=(opus, event48, PCMU, TELEPHONE_EVENT_8000)
    )
    stream = only_stream(result)
    assert (stream.payload_type, stream.codec, stream.clock_rate) == (
        102,
        "opus",
        48000,
    )
    assert stream.telephone_event == 103
    media = result.sdp.media[0]
    assert str(media.rtpmaps[102]) == "102 opus/48000/2"
    assert (
        media.fmtp(102)
        == "useinbandfec=1; maxaveragebitrate=30000; maxplaybackrate=48000"
    )


HOLD_CASES = [
    # (offer direction lines, offer c= address, our wish, expected answer direction)
    ([], "203.0.113.5", Direction.SENDRECV, Direction.SENDRECV),
    (["a=sendonly"], "203.0.113.5", Direction.SENDRECV, Direction.RECVONLY),
    (["a=recvonly"], "203.0.113.5", Direction.SENDRECV, Direction.SENDONLY),
    (["a=inactive"], "203.0.113.5", Direction.SENDRECV, Direction.INACTIVE),
    (["a=sendrecv"], "0.0.0.0", Direction.SENDRECV, Direction.RECVONLY),
    (["a=inactive"], "0.0.0.0", Direction.SENDRECV, Direction.INACTIVE),
    (["a=sendonly"], "0.0.0.0", Direction.SENDRECV, Direction.RECVONLY),
    (["a=sendrecv"], "203.0.113.5", Direction.SENDONLY, Direction.SENDONLY),
    (["a=sendonly"], "203.0.113.5", Direction.SENDONLY, Direction.INACTIVE),
    (["a=sendrecv"], "203.0.113.5", Direction.INACTIVE, Direction.INACTIVE),
    (["a=recvonly"], "203.0.113.5", Direction.RECVONLY, Direction.INACTIVE),
]


@pytest.mark.parametrize(("lines", "address", "wish", "expected"), HOLD_CASES)
def test_answer_hold_directions(
    lines: list[str], address: str, wish: Direction, expected: Direction
) -> None:
    offer = audio_offer(
        "m=audio 5000 RTP/AVP 0", *lines, connection=f"c=IN IP4 {address}"
    )
    result = answer(offer, direction=wish)
    assert only_stream(result).direction is expected
    assert result.sdp.media[0].direction is expected
    assert only_stream(result).remote_address == address


def test_session_level_direction_applies() -> None:
    offer = sdp(
        "v=0",
        "o=- 1 1 IN IP4 203.0.113.5",
        "s=-",
        "c=IN IP4 203.0.113.5",
        "t=0 0",
        "a=sendonly",
        "m=audio 5000 RTP/AVP 0",
    )
    assert only_stream(answer(offer)).direction is Direction.RECVONLY


def test_hold_unhold_reinvite_versions() -> None:
    local = session()
    first = answer(ASTERISK_OFFER, session=local)
    again = answer(ASTERISK_OFFER, session=local)
    assert first.sdp == again.sdp  # unchanged re-offer: same version (RFC 3264 8)
    held_offer = ASTERISK_OFFER.replace(b"a=sendrecv", b"a=sendonly")
    held = answer(held_offer, session=local)
    assert held.sdp.origin.sess_version == first.sdp.origin.sess_version + 1
    assert held.sdp.origin.sess_id == first.sdp.origin.sess_id == 4242
    assert only_stream(held).direction is Direction.RECVONLY
    resumed = answer(ASTERISK_OFFER, session=local)
    assert resumed.sdp.origin.sess_version == first.sdp.origin.sess_version + 2
    assert only_stream(resumed).direction is Direction.SENDRECV


def test_local_session_defaults() -> None:
    first = LocalSession(address="192.0.2.1")
    second = LocalSession(address="192.0.2.1")
    assert 0 <= first.sess_id < 2**31
    assert first.sess_version == 1
    assert first.connection() == Connection(address="192.0.2.1")
    assert {first.sess_id, second.sess_id} != {0}


# --- Offering and reading answers ---------------------------------------------------------


def test_build_offer_default() -> None:
    offer = build_offer(session(), port=30000)
    assert offer.to_bytes() == sdp(
        "v=0",
        "o=- 4242 1 IN IP4 192.0.2.10",
        "s=ccswitch",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        "m=audio 30000 RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    )
    assert parse_sdp(offer.to_bytes()) == offer


def test_build_offer_hold_bumps_version() -> None:
    local = session()
    offer = build_offer(local, port=30000)
    assert build_offer(local, port=30000) == offer
    hold = build_offer(local, port=30000, direction=Direction.SENDONLY)
    assert hold.origin.sess_version == offer.origin.sess_version + 1
    assert hold.media[0].direction is Direction.SENDONLY


def test_build_offer_misuse() -> None:
    with pytest.raises(LocalProtocolError, match="payload types used twice"):
        build_offer(session(), port=1, codecs=(PCMU, replace(PCMU, name="pcmu")))
    with pytest.raises(LocalProtocolError, match="at least one voice codec"):
        build_offer(session(), port=1, codecs=(TELEPHONE_EVENT_8000,))


@pytest.mark.parametrize(
    ("name", "rate", "payload_type"),
    [("PCMA", 8000, 0), ("PCMU", 16000, 0), ("opus", 48000, 50), ("L16", 44100, 10)],
)
def test_codec_static_payload_type_misuse(
    name: str, rate: int, payload_type: int
) -> None:
    with pytest.raises(LocalProtocolError, match="cannot use payload type"):
        Codec(name=name, clock_rate=rate, payload_type=payload_type)


def test_codec_static_table_entries_accepted() -> None:
    for payload_type, (name, rate, channels) in STATIC_PAYLOAD_TYPES.items():
        codec = Codec(
            name=name, clock_rate=rate, payload_type=payload_type, channels=channels
        )
        assert codec.format == (name, rate, channels)
    assert TELEPHONE_EVENT_8000.is_telephone_event and not PCMA.is_telephone_event


def answer_to(
    offer: SessionDescription, *lines: str, address: str = "198.51.100.7"
) -> bytes:
    return sdp(
        "v=0",
        f"o=- 9 9 IN IP4 {address}",
        "s=-",
        f"c=IN IP4 {address}",
        "t=0 0",
        *lines,
    )


def test_process_answer_basic() -> None:
    offer = build_offer(session(), port=30000)
    reply = answer_to(
        offer,
        "m=audio 20000 RTP/AVP 8 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:30",
    )
    assert process_answer(offer, parse_sdp(reply)) == NegotiatedMedia(
        remote_address="198.51.100.7",
        remote_port=20000,
        rtcp_address="198.51.100.7",
        rtcp_port=20001,
        payload_type=8,
        codec="PCMA",
        clock_rate=8000,
        telephone_event=101,
        direction=Direction.SENDRECV,
        ptime=30,
    )


def test_process_answer_uses_answer_pt_numbers_and_order() -> None:
    offer = build_offer(session(), port=30000)
    reply = answer_to(
        offer,
        "m=audio 20000 RTP/AVP 18 0 8 96",
        "a=rtpmap:18 G729/8000",
        "a=rtpmap:96 telephone-event/8000",
    )
    stream = process_answer(offer, parse_sdp(reply))
    assert (stream.payload_type, stream.codec, stream.telephone_event) == (
        0,
        "PCMU",
        96,
    )


def test_process_answer_hold_directions() -> None:
    local = session()
    offer = build_offer(local, port=30000, direction=Direction.SENDONLY)
    reply = answer_to(offer, "m=audio 20000 RTP/AVP 0", "a=recvonly")
    assert process_answer(offer, parse_sdp(reply)).direction is Direction.SENDONLY
    inactive = answer_to(offer, "m=audio 20000 RTP/AVP 0", "a=inactive")
    assert process_answer(offer, parse_sdp(inactive)).direction is Direction.INACTIVE
    normal = build_offer(local, port=30000)
    sendonly = answer_to(normal, "m=audio 20000 RTP/AVP 0", "a=sendonly")
    assert process_answer(normal, parse_sdp(sendonly)).direction is Direction.RECVONLY
    null = answer_to(normal, "m=audio 20000 RTP/AVP 0", address="0.0.0.0")
    assert process_answer(normal, parse_sdp(null)).direction is Direction.RECVONLY


def test_process_answer_skips_rejected_and_non_audio() -> None:
    offer = parse_sdp(
        audio_offer(
            "m=video 5002 RTP/AVP 31", "m=audio 0 RTP/AVP 0", "m=audio 5000 RTP/AVP 0"
        )
    )
    reply = answer_to(
        offer, "m=video 0 RTP/AVP 31", "m=audio 0 RTP/AVP 0", "m=audio 20000 RTP/AVP 0"
    )
    assert process_answer(offer, parse_sdp(reply)).remote_port == 20000


def test_process_answer_errors() -> None:
    offer = build_offer(session(), port=30000)
    with pytest.raises(
        ProtocolError, match="answer has 2 m-lines, offer had 1"
    ) as info:
        process_answer(
            offer,
            parse_sdp(answer_to(offer, "m=audio 1 RTP/AVP 0", "m=video 0 RTP/AVP 31")),
        )
    assert info.value.status == 400
    with pytest.raises(ProtocolError, match="answer m=video where offer had m=audio"):
        process_answer(offer, parse_sdp(answer_to(offer, "m=video 1 RTP/AVP 31")))
    with pytest.raises(
        ProtocolError, match="answer rejected every audio stream"
    ) as info:
        process_answer(offer, parse_sdp(answer_to(offer, "m=audio 0 RTP/AVP 0")))
    assert info.value.status == 488
    with pytest.raises(ProtocolError, match="answer has no codec we offered") as info:
        process_answer(offer, parse_sdp(answer_to(offer, "m=audio 1 RTP/AVP 18")))
    assert info.value.status == 488
    # Offered only PCMA: an answer choosing PCMU is not acceptable even though we know it.
    pcma_only = build_offer(session(), port=30000, codecs=(PCMA,))
    with pytest.raises(ProtocolError, match="no codec we offered"):
        process_answer(
            pcma_only, parse_sdp(answer_to(pcma_only, "m=audio 1 RTP/AVP 0"))
        )


@pytest.mark.parametrize("remote_offer", REAL_OFFERS)
def test_our_answer_is_acceptable_to_the_offerer(remote_offer: bytes) -> None:
    offer = parse_sdp(remote_offer)
    result = answer(offer)
    # Seen from the offerer: reading our answer gives the mirror image of our stream.
    theirs = process_answer(
        offer, parse_sdp(result.sdp.to_bytes()), codecs=DEFAULT_CODECS
    )
    ours = only_stream(result)
    assert theirs.payload_type == ours.payload_type
    assert theirs.telephone_event == ours.telephone_event
    assert (theirs.remote_address, theirs.remote_port) == ("192.0.2.10", 40000)


def test_full_call_between_two_ccswitch_legs() -> None:
    caller, callee = LocalSession(address="10.1.1.1"), LocalSession(address="10.2.2.2")
    offer = parse_sdp(build_offer(caller, port=30000).to_bytes())
    result = answer_offer(offer, callee, ports=[40000])
    caller_view = process_answer(offer, parse_sdp(result.sdp.to_bytes()))
    callee_view = only_stream(result)
    assert caller_view.payload_type == callee_view.payload_type == 0
    assert caller_view.telephone_event == callee_view.telephone_event == 101
    assert (caller_view.remote_address, caller_view.remote_port) == ("10.2.2.2", 40000)
    assert (callee_view.remote_address, callee_view.remote_port) == ("10.1.1.1", 30000)
    # Caller puts callee on hold and resumes.
    hold = parse_sdp(
        build_offer(caller, port=30000, direction=Direction.SENDONLY).to_bytes()
    )
    held = answer_offer(hold, callee, ports=[40000])
    assert only_stream(held).direction is Direction.RECVONLY
    assert process_answer(hold, held.sdp).direction is Direction.SENDONLY
    assert hold.origin.sess_version == offer.origin.sess_version + 1
    assert held.sdp.origin.sess_version == result.sdp.origin.sess_version + 1
