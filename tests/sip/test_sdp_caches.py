"""Tests for the speed paths of switch.sip.sdp and switch.sip.offer_answer.

The parser caches immutable values by their exact text, offer/answer caches templates
and codec choices, and hot values are built without the frozen-dataclass __init__.
These tests pin what that must never change: equal results, immutable results, no state
shared between callers, and errors raised (with the right line) every time.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from switch.sip import offer_answer, sdp
from switch.sip.errors import BadMessage, LocalProtocolError
from switch.sip.offer_answer import (
    DEFAULT_CODECS,
    PCMA,
    PCMU,
    TELEPHONE_EVENT_8000,
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
    SessionDescription,
    Timing,
    parse_sdp,
)


def body(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


def offer_body(port: int, *extra: str) -> bytes:
    return body(
        "v=0",
        f"o=- {port} {port} IN IP4 203.0.113.5",
        "s=-",
        "c=IN IP4 203.0.113.5",
        "t=0 0",
        f"m=audio {port} RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        *extra,
    )


# --- Fast construction ------------------------------------------------------------------

ORIGIN: dict[str, Any] = {
    "username": "u",
    "sess_id": 1,
    "sess_version": 2,
    "nettype": "IN",
    "addrtype": "IP6",
    "address": "::1",
}
MEDIA: dict[str, Any] = {
    "media": "audio",
    "port": 5004,
    "port_count": 2,
    "proto": "RTP/AVP",
    "formats": ("0", "8"),
    "information": "i",
    "connection": Connection(address="192.0.2.1"),
    "bandwidths": (Bandwidth(bwtype="AS", bandwidth=64),),
    "key": "k",
    "attributes": (Attribute(name="sendonly"),),
}
SESSION: dict[str, Any] = {
    "version": 0,
    "origin": Origin(sess_id=1, sess_version=1, address="192.0.2.1"),
    "session_name": "s",
    "information": "i",
    "uri": "http://example.com/",
    "emails": ("a@example.com",),
    "phones": ("+1 555",),
    "connection": Connection(address="192.0.2.1"),
    "bandwidths": (Bandwidth(bwtype="CT", bandwidth=128),),
    "timings": (Timing(start=1, stop=2, repeats=("7d 1h 0",)),),
    "time_zones": "0 0",
    "key": "clear:x",
    "attributes": (Attribute(name="tool", value="x"),),
    "media": (MediaDescription(**MEDIA),),
}
NEGOTIATED: dict[str, Any] = {
    "remote_address": "192.0.2.1",
    "remote_port": 4000,
    "rtcp_address": "192.0.2.1",
    "rtcp_port": 4001,
    "payload_type": 0,
    "codec": "PCMU",
    "clock_rate": 8000,
    "telephone_event": 101,
    "direction": Direction.SENDRECV,
    "ptime": 20,
}
FAST = [
    (Origin, sdp._new_origin, ORIGIN),
    (MediaDescription, sdp._new_media, MEDIA),
    (SessionDescription, sdp._new_session, SESSION),
    (NegotiatedMedia, offer_answer._new_negotiated, NEGOTIATED),
]


@pytest.mark.parametrize(("cls", "new", "fields"), FAST)
def test_fast_constructor_equals_dataclass(
    cls: type, new: Callable[..., Any], fields: dict[str, Any]
) -> None:
    built: Any = new(**fields)
    assert dataclasses.replace(built) == built
    assert type(built) is cls
    assert built == cls(**fields)
    assert hash(built) == hash(cls(**fields))
    assert repr(built) == repr(cls(**fields))
    assert pickle.loads(pickle.dumps(built)) == built
    assert copy.deepcopy(built) == built
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.__setattr__(dataclasses.fields(cls)[0].name, None)


@pytest.mark.parametrize(("cls", "new", "fields"), FAST)
def test_fast_constructor_covers_every_field(
    cls: type, new: Callable[..., Any], fields: dict[str, Any]
) -> None:
    # A field added to the dataclass but not to its fast constructor would be unset.
    names = [field.name for field in dataclasses.fields(cls)]
    assert list(inspect.signature(new).parameters) == names
    assert list(fields) == names


def test_fast_constructor_defaults_match_dataclass() -> None:
    origin = Origin(sess_id=1, sess_version=1, address="192.0.2.1")
    assert sdp._new_session(origin=origin) == SessionDescription(origin=origin)
    assert sdp._new_media(
        media="audio", port=1, proto="RTP/AVP", formats=("0",)
    ) == MediaDescription(media="audio", port=1, proto="RTP/AVP", formats=("0",))


# --- Rendering --------------------------------------------------------------------------


def reference_text(description: SessionDescription) -> str:
    """The rendering spelled out from each value's str() and MediaDescription.lines()."""
    lines = [
        f"v={description.version}",
        f"o={description.origin}",
        f"s={description.session_name or ' '}",
    ]
    if description.information is not None:
        lines.append(f"i={description.information}")
    if description.uri is not None:
        lines.append(f"u={description.uri}")
    lines += [f"e={email}" for email in description.emails]
    lines += [f"p={phone}" for phone in description.phones]
    if description.connection is not None:
        lines.append(f"c={description.connection}")
    lines += [f"b={bandwidth}" for bandwidth in description.bandwidths]
    for timing in description.timings:
        lines.append(f"t={timing.start} {timing.stop}")
        lines += [f"r={repeat}" for repeat in timing.repeats]
    if description.time_zones is not None:
        lines.append(f"z={description.time_zones}")
    if description.key is not None:
        lines.append(f"k={description.key}")
    lines += [f"a={attribute}" for attribute in description.attributes]
    for media in description.media:
        lines += media.lines()
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize(
    "description",
    [
        SessionDescription(**SESSION),
        SessionDescription(
            origin=Origin(sess_id=1, sess_version=1, address="224.2.1.1"),
            session_name="",
            connection=Connection(address="224.2.1.1", ttl=127, count=3),
            media=(
                MediaDescription(
                    media="audio",
                    port=0,
                    proto="RTP/AVP",
                    formats=(),
                    connection=Connection(addrtype="IP6", address="ff15::1", count=2),
                ),
            ),
        ),
        parse_sdp(offer_body(6000)),
    ],
)
def test_rendering_matches_the_values_str(description: SessionDescription) -> None:
    assert str(description) == reference_text(description)
    assert description.to_bytes() == reference_text(description).encode()


# --- Parser caches ----------------------------------------------------------------------


def test_repeated_parse_gives_equal_independent_results() -> None:
    first = parse_sdp(offer_body(6000))
    second = parse_sdp(offer_body(6000))
    assert first == second
    assert first is not second
    # Other calls with other ports and origins share the cached lines, not the values.
    third = parse_sdp(offer_body(7000))
    assert third.media[0].port == 7000
    assert third.origin.sess_id == 7000
    assert first.media[0].port == 6000
    assert third.media[0].attributes == first.media[0].attributes


def test_repeat_lines_do_not_leak_into_the_cached_timing() -> None:
    with_repeats = body(
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "r=7d 1h 0 25h",
    )
    without = body("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0")
    assert parse_sdp(with_repeats).timings == (Timing(repeats=("7d 1h 0 25h",)),)
    assert parse_sdp(without).timings == (Timing(),)
    assert parse_sdp(with_repeats).timings == (Timing(repeats=("7d 1h 0 25h",)),)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("a=rtpmap:0 PCMU", "a=rtpmap: bad encoding 'PCMU'"),
        ("a=ptime:0", "a=ptime: expected a positive number of ms, got '0'"),
        ("c=IN IP4 not_a_host", "c=: bad IP4 address 'not_a_host'"),
        ("a=sendrecv:1", "a=sendrecv: takes no value"),
    ],
)
def test_errors_are_not_cached_and_name_their_line(line: str, reason: str) -> None:
    # The same bad value at two positions, twice each: each time an error, each time
    # with the line where it is.
    for _ in range(2):
        with pytest.raises(BadMessage) as at_7:
            parse_sdp(body(*offer_body(6000).decode().splitlines()[:6], line))
        assert str(at_7.value.reason) == f"SDP line 7: {reason}"
        with pytest.raises(BadMessage) as at_8:
            parse_sdp(body(*offer_body(6000).decode().splitlines()[:7], line))
        assert str(at_8.value.reason) == f"SDP line 8: {reason}"


def test_bad_formats_are_reported_every_time() -> None:
    for _ in range(2):
        with pytest.raises(BadMessage, match=r"line 6: m= payload type 200 is above"):
            parse_sdp(offer_body(6000).replace(b"RTP/AVP 0 101", b"RTP/AVP 0 200"))
        with pytest.raises(BadMessage, match=r"line 6: m= no formats"):
            parse_sdp(offer_body(6000).replace(b"RTP/AVP 0 101", b"RTP/AVP"))
    # Port 0 without formats is the tolerated rejected stream, cache or not.
    rejected = body(
        "v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0", "m=audio 0 RTP/AVP"
    )
    assert parse_sdp(rejected).media[0].formats == ()


def test_level_errors_name_the_media_line() -> None:
    for _ in range(2):
        with pytest.raises(BadMessage) as error:
            parse_sdp(offer_body(6000, "a=sendrecv", "a=inactive"))
        assert str(error.value.reason) == (
            "SDP media description at line 6: more than one direction attribute "
            "['sendrecv', 'inactive']"
        )


# --- Offer/answer caches ----------------------------------------------------------------


def test_answers_share_templates_but_not_ports_or_versions() -> None:
    offer = parse_sdp(offer_body(6000))
    first = answer_offer(offer, LocalSession(address="192.0.2.10"), ports=[40000])
    second = answer_offer(offer, LocalSession(address="192.0.2.10"), ports=[40002])
    assert first.sdp.media[0].port == 40000
    assert second.sdp.media[0].port == 40002
    assert first.sdp.media[0].attributes == second.sdp.media[0].attributes
    assert first.streams == second.streams
    held = answer_offer(
        offer,
        LocalSession(address="192.0.2.10"),
        ports=[40004],
        direction=Direction.SENDONLY,
    )
    assert held.sdp.media[0].direction is Direction.SENDONLY
    assert first.sdp.media[0].direction is Direction.SENDRECV


def test_build_offer_same_for_list_and_tuple_and_misuse_raises_every_time() -> None:
    as_tuple = build_offer(LocalSession(address="192.0.2.10", sess_id=1), port=5000)
    as_list = build_offer(
        LocalSession(address="192.0.2.10", sess_id=1),
        port=5000,
        codecs=list(DEFAULT_CODECS),
    )
    assert as_tuple == as_list
    twice = (PCMU, Codec(name="PCMA", clock_rate=8000, payload_type=8), PCMA)
    for _ in range(2):
        with pytest.raises(LocalProtocolError, match="used twice"):
            build_offer(LocalSession(address="192.0.2.10"), port=5000, codecs=twice)
        with pytest.raises(LocalProtocolError, match="at least one voice codec"):
            build_offer(
                LocalSession(address="192.0.2.10"),
                port=5000,
                codecs=(TELEPHONE_EVENT_8000,),
            )


def test_codec_choice_follows_the_codecs_passed_each_time() -> None:
    offer = parse_sdp(offer_body(6000).replace(b"RTP/AVP 0 101", b"RTP/AVP 8 0 101"))
    local = LocalSession(address="192.0.2.10")
    assert answer_offer(offer, local, ports=[1]).accepted[0].codec == "PCMA"
    only_pcmu = (PCMU, TELEPHONE_EVENT_8000)
    chosen = answer_offer(offer, local, ports=[1], codecs=only_pcmu).accepted[0]
    assert (chosen.codec, chosen.payload_type) == ("PCMU", 0)
    assert answer_offer(offer, local, ports=[1]).accepted[0].codec == "PCMA"


def test_process_answer_repeated_gives_equal_results() -> None:
    ours = build_offer(LocalSession(address="192.0.2.10"), port=5000)
    answers = [parse_sdp(offer_body(port)) for port in (6000, 6002, 6000)]
    results = [process_answer(ours, answer) for answer in answers]
    assert results[0] == results[2]
    assert results[1].remote_port == 6002
    assert results[0].remote_port == 6000
    assert results[0].telephone_event == 101


def test_describe_bumps_version_only_on_change() -> None:
    local = LocalSession(address="192.0.2.10", sess_id=7, sess_version=3)
    first = build_offer(local, port=5000)
    same = build_offer(local, port=5000)
    held = build_offer(local, port=5000, direction=Direction.SENDONLY)
    moved = build_offer(local, port=5002, direction=Direction.SENDONLY)
    versions = [d.origin.sess_version for d in (first, same, held, moved)]
    assert versions == [3, 3, 4, 5]
    local.session_name = "renamed"
    assert build_offer(local, port=5002, direction=Direction.SENDONLY).origin == Origin(
        sess_id=7, sess_version=6, address="192.0.2.10"
    )


def test_parse_cache_is_bounded_and_skips_long_texts() -> None:
    parsed: list[str] = []

    def parse(text: str) -> str:
        parsed.append(text)
        if text == "bad":
            raise BadMessage("bad text")
        return text.upper()

    cache = sdp._ParseCache(parse, 3)
    assert [cache["a"], cache["a"], cache["b"]] == ["A", "A", "B"]
    assert parsed == ["a", "b"]
    for _ in range(2):
        with pytest.raises(BadMessage, match="bad text"):
            cache["bad"]
    assert "bad" not in cache
    long_text = "x" * (sdp.CACHED_TEXT_MAX + 1)
    assert cache[long_text] == long_text.upper()
    assert long_text not in cache
    for text in "cdefg":
        cache[text]
        assert len(cache) <= 3


def test_long_attribute_values_parse_the_same_uncached() -> None:
    long_value = "x" * (sdp.CACHED_TEXT_MAX + 10)
    for _ in range(2):
        parsed = parse_sdp(offer_body(6000, f"a=label:{long_value}"))
        assert parsed.media[0].attributes[-1] == Attribute(
            name="label", value=long_value
        )


def test_offer_answer_memos_keep_no_large_peer_text() -> None:
    """A huge fmtp or m= line from a peer is answered but not kept in a memo."""
    from switch.sip import offer_answer
    from switch.sip.offer_answer import LocalSession, answer_offer
    from switch.sip.sdp import parse_sdp

    memos = (offer_answer._resolve_formats, offer_answer._pick)
    for memo in (*memos, offer_answer._audio_template):
        memo.cache_clear()
    head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    big_fmtp = head + (
        f"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=fmtp:0 {'x' * 5000}\r\n"
    )
    many = " ".join(str(96 + n % 30) for n in range(200))
    long_m_line = head + f"m=audio 4000 RTP/AVP 0 {many}\r\na=rtpmap:0 PCMU/8000\r\n"
    session = LocalSession(address="192.0.2.9")

    answer = answer_offer(parse_sdp(big_fmtp), session, ports=[5000])
    assert answer.accepted[0].codec.upper() == "PCMU"
    assert "x" * 5000 in str(answer.sdp)  # echoed in the answer...
    assert offer_answer._audio_template.cache_info().currsize == 0  # ...not kept

    answer = answer_offer(parse_sdp(long_m_line), session, ports=[5002])
    assert answer.accepted[0].codec.upper() == "PCMU"
    # Only the first offer's short m= line keys the formats memo.
    assert offer_answer._resolve_formats.cache_info().currsize == 1
