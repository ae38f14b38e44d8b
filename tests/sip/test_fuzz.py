"""Fuzz entry for the SIP syntax layer: only our remote error may escape.

Whatever the bytes, :func:`parse_message`, the typed accessors, :func:`check_request`,
:func:`error_response` and :class:`StreamFramer` either succeed or raise
:class:`ProtocolError` (the parser itself only :class:`BadMessage`). Inputs: random
bytes, SIP-shaped random text, every truncation of valid messages, and valid messages
with random byte edits. A message that parses must render to bytes that parse back to
the same rendering.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switch.sip.errors import BadMessage, ProtocolError
from switch.sip.headers import (
    parse_cseq,
    parse_name_addr,
    parse_params,
    parse_via,
    split_header_values,
)
from switch.sip.message import (
    Request,
    StreamFramer,
    check_request,
    error_response,
    parse_message,
)
from switch.sip.uri import parse_uri

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

ACCESSORS = (
    "call_id",
    "cseq",
    "vias",
    "top_via",
    "from_",
    "to",
    "max_forwards",
    "contacts",
    "is_star_contact",
)

SEEDS: list[bytes] = [
    (
        b"INVITE sip:bob@biloxi.com;transport=tcp SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK776;rport;received=1.2.3.4\r\n"
        b"v: SIP/2.0/TCP proxy.example.com;branch=z9hG4bK2\r\n"
        b"Max-Forwards: 70\r\n"
        b'To: "Bob \\"B\\"" <sip:bob@biloxi.com>\r\n'
        b"f: Alice <sip:alice@atlanta.com?x=%3C>;tag=1928301774\r\n"
        b"i: a84b4c76e66710@pc33.atlanta.com\r\n"
        b"CSeq: 314159 INVITE\r\n"
        b"m: <sip:alice@pc33.atlanta.com>;q=0.5, tel:+1-555;expires=60\r\n"
        b"Require: 100rel\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Content-Length: 4\r\n\r\nv=0\r\n"
    ),
    (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP a.com;branch=z9hG4bK1\r\n"
        b"To: <sip:b@b.com>;tag=x\r\nFrom: sip:a@a.com;tag=y\r\n"
        b"Call-ID: c@h\r\nCSeq: 1 INVITE\r\nContact: *\r\nl: 0\r\n\r\n"
    ),
    b"REGISTER sips:[::1] SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bKx\r\n"
    b"To: sip:u@h\r\nFrom: sip:u@h;tag=1\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\n"
    b"Contact: *\r\nExpires: 0\r\n\r\n",
]


def _corpus_messages() -> list[bytes]:
    roots = []
    if os.environ.get("CCSWITCH_SHARED"):
        roots.append(Path(os.environ["CCSWITCH_SHARED"]) / "corpus")
    roots.append(Path(__file__).resolve().parents[3] / "shared" / "corpus")
    for root in roots:
        if root.is_dir():
            return [path.read_bytes() for path in sorted(root.rglob("*.dat"))]
    return []


CORPUS = _corpus_messages()
ALL_SEEDS = SEEDS + CORPUS


def exercise(data: bytes) -> None:
    """Everything a receiver does with a datagram; only ProtocolError may escape."""
    try:
        message = parse_message(data)
    except BadMessage as error:
        reply = error_response(data, error)
        if reply is not None:
            parse_message(reply.to_bytes())
        return
    for name in ACCESSORS:
        with contextlib.suppress(BadMessage):
            getattr(message, name)
    if isinstance(message, Request):
        with contextlib.suppress(ProtocolError):
            check_request(message, supported=frozenset({"100rel"}))
    rendered = message.to_bytes()
    assert parse_message(rendered).to_bytes() == rendered


@FUZZ
@given(st.binary(max_size=1500))
def test_random_bytes(data: bytes) -> None:
    exercise(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_after_a_valid_head(data: bytes) -> None:
    exercise(SEEDS[0][:200] + data)
    exercise(b"SIP/2.0 200 OK\r\n" + data)


_SIP_ALPHABET = st.sampled_from(
    [
        *"aAzZ09 \t<>\"\\;,:@[]=%?&/.-+*!~'`()_{}#$^|",
        "\r\n",
        "\r\n ",
        "sip:",
        "sips:",
        "tel:",
        "SIP/2.0",
        "z9hG4bK",
        "%00",
        "%4",
        "\x00",
    ]
)
_HEADER_NAMES = st.sampled_from(
    ["Via", "v", "To", "t", "From", "f", "Call-ID", "i", "CSeq", "Contact", "m",
     "Max-Forwards", "Content-Length", "l", "Require", "Route", "X-Other"]
)  # fmt: skip


@st.composite
def sip_shaped(draw: st.DrawFn) -> bytes:
    start = draw(
        st.sampled_from(
            [
                "INVITE sip:a@b.com SIP/2.0",
                "SIP/2.0 180 Ringing",
                "OPTIONS tel:+1 SIP/2.0",
            ]
        )
        | st.lists(_SIP_ALPHABET, max_size=30).map("".join)
    )
    lines = [start]
    for _ in range(draw(st.integers(0, 12))):
        name = draw(_HEADER_NAMES)
        value = "".join(draw(st.lists(_SIP_ALPHABET, max_size=25)))
        lines.append(f"{name}:{value}")
    body = draw(st.binary(max_size=20))
    return "\r\n".join(lines).encode("utf-8") + b"\r\n\r\n" + body


@FUZZ
@given(sip_shaped())
def test_sip_shaped_text(data: bytes) -> None:
    exercise(data)


@pytest.mark.parametrize("index", range(len(ALL_SEEDS)))
def test_every_truncation(index: int) -> None:
    data = ALL_SEEDS[index]
    for length in range(len(data) + 1):
        exercise(data[:length])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(ALL_SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["flip", "insert", "delete", "duplicate"]))
        byte = draw(st.sampled_from(b'\x00\r\n \t:;,<>"\\@%[]=?0123456789aZ\xff\xc3'))
        if operation == "insert" or position == len(data):
            data[position:position] = bytes([byte])
        elif operation == "flip":
            data[position] = byte
        elif operation == "delete":
            del data[position]
        else:
            data[position:position] = data[position : position + 16]
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_valid_messages(data: bytes) -> None:
    exercise(data)


@FUZZ
@given(
    st.lists(st.sampled_from([*ALL_SEEDS, b"\r\n\r\n", b"\r\n"]), max_size=4),
    st.lists(st.integers(1, 200), min_size=1, max_size=30),
)
def test_framer_chunking_does_not_matter(
    messages: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(messages)
    try:
        whole = StreamFramer().feed(stream)
    except BadMessage:
        return
    framer = StreamFramer()
    pieces: list[bytes] = []
    position = 0
    for cut in cuts * (len(stream) // max(sum(cuts), 1) + 1):
        pieces += framer.feed(stream[position : position + cut])
        position += cut
        if position >= len(stream):
            break
    assert pieces == whole


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=5))
def test_framer_random_bytes(chunks: list[bytes]) -> None:
    framer = StreamFramer(max_header_bytes=512, max_body_bytes=512)
    try:
        for chunk in chunks:
            for message in framer.feed(chunk):
                exercise(message)
    except BadMessage:
        pass
    assert framer.take_pings() >= 0


@FUZZ
@given(st.lists(_SIP_ALPHABET, max_size=60).map("".join) | st.text(max_size=60))
def test_value_parsers_only_raise_bad_message(text: str) -> None:
    for parse in (parse_uri, parse_name_addr, parse_via, parse_cseq, parse_params):
        with contextlib.suppress(BadMessage):
            parse(text)
    assert all(item == item.strip(" \t") for item in split_header_values(text))
