"""Tests for switch.sip.message: Headers, parse/build, framing, responses, validation."""

from __future__ import annotations

import pytest

from switch.sip.errors import BadMessage, LocalProtocolError, ProtocolError
from switch.sip.headers import CSeq, parse_name_addr
from switch.sip.message import (
    KEEPALIVE_PING,
    REASON_PHRASES,
    FramingError,
    Headers,
    Request,
    Response,
    Status,
    StreamFramer,
    canonical_name,
    check_request,
    error_response,
    make_response,
    parse_message,
    reason_phrase,
)
from switch.sip.uri import SipUri, TelUri, parse_uri

SUPPORTED = frozenset({"100rel", "timer", "replaces"})


def wire(*lines: str, body: str = "") -> bytes:
    """A message from header lines (CRLF-joined, empty line added) and a body."""
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8")


def invite_lines(**overrides: str | None) -> list[str]:
    """The lines of a valid INVITE; override or drop (None) a header by name."""
    headers = {
        "Via": "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds",
        "Max-Forwards": "70",
        "To": "Bob <sip:bob@biloxi.com>",
        "From": "Alice <sip:alice@atlanta.com>;tag=1928301774",
        "Call-ID": "a84b4c76e66710@pc33.atlanta.com",
        "CSeq": "314159 INVITE",
        "Contact": "<sip:alice@pc33.atlanta.com>",
    }
    start = overrides.pop("start", None) or "INVITE sip:bob@biloxi.com SIP/2.0"
    for name, value in overrides.items():
        key = name.replace("_", "-")
        headers.pop(key, None)
        if value is not None:
            headers[key] = value
    return [start, *(f"{name}: {value}" for name, value in headers.items())]


def request(*lines: str, body: str = "") -> Request:
    message = parse_message(wire(*lines, body=body))
    assert isinstance(message, Request)
    return message


def response(*lines: str, body: str = "") -> Response:
    message = parse_message(wire(*lines, body=body))
    assert isinstance(message, Response)
    return message


def invite(**overrides: str | None) -> Request:
    return request(*invite_lines(**overrides))


# --- Headers ----------------------------------------------------------------------------


def test_compact_forms_are_expanded() -> None:
    pairs = [
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("v", "Via"),
        ("f", "From"),
        ("t", "To"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("e", "Content-Encoding"),
        ("k", "Supported"),
        ("s", "Subject"),
        ("o", "Event"),
        ("r", "Refer-To"),
        ("b", "Referred-By"),
        ("x", "Session-Expires"),
        ("u", "Allow-Events"),
    ]
    headers = Headers((compact.upper(), "v") for compact, _ in pairs)
    assert [name for name, _ in headers] == [long for _, long in pairs]
    for compact, long in pairs:
        assert canonical_name(compact) == long
        assert headers.get(long.upper()) == "v"
        assert compact in headers


def test_known_names_respelled_unknown_kept() -> None:
    headers = Headers([("MaX-fOrWaRdS", "70"), ("cseq", "1 A"), ("X-Odd-CASE", "1")])
    assert list(headers) == [
        ("Max-Forwards", "70"),
        ("CSeq", "1 A"),
        ("X-Odd-CASE", "1"),
    ]
    assert headers.get("x-odd-case") == "1"
    assert canonical_name("X-Odd-CASE") == "X-Odd-CASE"


def test_get_and_get_all() -> None:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP a.com, SIP/2.0/UDP b.com"),
            ("v", "SIP/2.0/TCP c.com"),
            ("Allow", "INVITE, , ACK"),
            ("Subject", "a, b"),
            ("Subject", "c"),
        ]
    )
    assert headers.get("Via") == "SIP/2.0/UDP a.com, SIP/2.0/UDP b.com"
    assert headers.get_all("VIA") == [
        "SIP/2.0/UDP a.com",
        "SIP/2.0/UDP b.com",
        "SIP/2.0/TCP c.com",
    ]
    assert headers.get_all("Allow") == ["INVITE", "ACK"]
    assert headers.get_all("Subject") == ["a, b", "c"]
    assert headers.get_all("Route") == []
    assert headers.get("Route") is None
    assert headers.count("Via") == 2
    assert len(headers) == 5
    assert 3 not in headers


def test_add_rejects_injection() -> None:
    headers = Headers()
    with pytest.raises(LocalProtocolError, match="CR/LF"):
        headers.add("Subject", "x\r\nVia: evil")
    with pytest.raises(LocalProtocolError, match="CR/LF"):
        headers.add("Subject", "x\n")
    with pytest.raises(LocalProtocolError, match="Bad header name"):
        headers.add("Sub ject", "x")
    with pytest.raises(LocalProtocolError, match="Bad header name"):
        headers.add("", "x")


def test_set_replaces_in_place() -> None:
    headers = Headers(
        [
            ("X-A", "1"),
            ("Route", "<sip:x.com>"),
            ("X-B", "2"),
            ("route", "<sip:y>"),
            ("Route", "<sip:z.com>"),
        ]
    )
    headers.set("Route", "<sip:z.com>")
    assert list(headers) == [("X-A", "1"), ("Route", "<sip:z.com>"), ("X-B", "2")]
    headers.set("Subject", "new")
    assert list(headers)[-1] == ("Subject", "new")
    with pytest.raises(LocalProtocolError):
        headers.set("Subject", "bad\r\n")


def test_remove_copy_eq_repr() -> None:
    headers = Headers([("X-A", "1"), ("x-a", "2"), ("X-B", "3")])
    clone = headers.copy()
    headers.remove("X-A")
    headers.remove("Missing")
    assert list(headers) == [("X-B", "3")]
    assert list(clone) == [("X-A", "1"), ("x-a", "2"), ("X-B", "3")]
    assert clone != headers
    assert Headers([("X-B", "3")]) == headers
    assert headers != [("X-B", "3")]
    assert repr(headers) == "Headers([('X-B', '3')])"


def test_typed_cache_is_dropped_on_mutation() -> None:
    message = invite()
    assert message.cseq == CSeq(number=314159, method="INVITE")
    message.headers.set("CSeq", "2 INVITE")
    assert message.cseq.number == 2
    message.headers.remove("CSeq")
    with pytest.raises(BadMessage, match="Missing CSeq header"):
        _ = message.cseq
    message.headers.add("CSeq", "3 INVITE")
    assert message.cseq.number == 3
    clone = message.headers.copy()
    clone.set("CSeq", "4 INVITE")
    assert message.cseq.number == 3


def test_vias_reuse_the_parsed_top_via() -> None:
    message = invite(Via="SIP/2.0/UDP a.example.com;branch=z9hG4bK1")
    message.headers.add("Via", "SIP/2.0/TCP b.example.com;branch=z9hG4bK2")
    top = message.top_via
    assert message.vias[0] is top
    assert [via.branch for via in message.vias] == ["z9hG4bK1", "z9hG4bK2"]
    # A first line holding two values: the list is read from the lines as before.
    joined = invite(
        Via="SIP/2.0/UDP a.example.com;branch=z9hG4bK1, "
        "SIP/2.0/UDP c.example.com;branch=z9hG4bK3"
    )
    assert joined.top_via.branch == "z9hG4bK1"
    assert [via.host for via in joined.vias] == ["a.example.com", "c.example.com"]


def test_to_bytes_puts_content_length_where_the_first_was() -> None:
    built = Response(status=200, reason="OK")
    built.headers.add("Call-ID", "x")
    built.headers.add("l", "7")
    built.headers.add("Server", "s")
    built.headers.add("Content-Length", "9")
    built.body = b"ab"
    assert built.to_bytes() == (
        b"SIP/2.0 200 OK\r\nCall-ID: x\r\nContent-Length: 2\r\nServer: s\r\n\r\nab"
    )


# --- parsing -----------------------------------------------------------------------------


def test_parse_request() -> None:
    message = request(*invite_lines(Content_Type="application/sdp"), body="v=0\r\n")
    assert message.method == "INVITE"
    assert message.uri == parse_uri("sip:bob@biloxi.com")
    assert message.version == "SIP/2.0"
    assert message.body == b"v=0\r\n"
    assert message.call_id == "a84b4c76e66710@pc33.atlanta.com"
    assert message.cseq == CSeq(number=314159, method="INVITE")
    assert message.max_forwards == 70
    assert message.from_.tag == "1928301774"
    assert message.from_.display_name == "Alice"
    assert message.to.tag is None
    assert message.top_via.branch == "z9hG4bK776asdhds"
    assert [str(via) for via in message.vias] == [
        "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds"
    ]
    assert [str(contact.uri) for contact in message.contacts] == [
        "sip:alice@pc33.atlanta.com"
    ]
    assert not message.is_star_contact


def test_parse_response() -> None:
    message = response(
        "SIP/2.0 180 Ringing",
        "Via: SIP/2.0/UDP a.com;branch=z9hG4bK1, SIP/2.0/TCP b.com;branch=z9hG4bK2",
        "CSeq: 1 INVITE",
        "Content-Length: 0",
    )
    assert (message.status, message.reason, message.version) == (
        180,
        "Ringing",
        "SIP/2.0",
    )
    assert [via.host for via in message.vias] == ["a.com", "b.com"]
    assert message.top_via.host == "a.com"
    assert message.body == b""


@pytest.mark.parametrize(
    ("line", "status", "reason"),
    [
        ("SIP/2.0 100 ", 100, ""),
        ("SIP/2.0 100", 100, ""),
        ("sip/2.0 699 Whatever  it is ", 699, "Whatever  it is "),
        ("SIP/2.0 200 = 2**3 * 5**2 \u043d\u043e \t \u0441\u0442\u043e", 200, None),
    ],
)
def test_status_lines(line: str, status: int, reason: str | None) -> None:
    message = response(line, "l: 0")
    assert message.status == status
    assert message.version == "SIP/2.0"
    if reason is not None:
        assert message.reason == reason


def test_folding_and_whitespace() -> None:
    message = request(
        "OPTIONS sip:a@b.com SIP/2.0",
        "TO :",
        " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
        "Subject:",
        "X-Folded:   first",
        "\t second ",
        "    third",
        "s :",
    )
    assert message.to.tag == "1918181833n"
    assert message.headers.get("X-Folded") == "first second third"
    assert message.headers.get_all("Subject") == ["", ""]


def test_leading_crlf_is_skipped_and_trailing_bytes_ignored() -> None:
    data = b"\r\n\r\n" + wire(*invite_lines(Content_Length="3"), body="abcdef")
    message = parse_message(data)
    assert message.body == b"abc"


def test_missing_content_length_takes_rest_of_datagram() -> None:
    # RFC 3261 section 18.3 (UDP) and RFC 4475 section 3.4.1.
    message = request(*invite_lines(), body="rest of it")
    assert message.body == b"rest of it"


def test_body_with_nul_and_bare_crlf_survives() -> None:
    body = b"\x00\r\x01\n\xff\r\n\r\n"
    data = wire(*invite_lines(Content_Length=str(len(body)))) + body + b"junk"
    assert parse_message(data).body == body


def test_memoryview_input() -> None:
    data = wire(*invite_lines(l="0"))
    message = parse_message(memoryview(data))
    assert isinstance(message, Request)
    assert message.method == "INVITE"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "Empty message"),
        (b"\r\n\r\n", "Empty message"),
        (
            b"INVITE sip:a@b.com SIP/2.0\r\nVia: x\r\n",
            "not terminated by an empty line",
        ),
        (
            b"INVITE sip:a@b.com SIP/2.0\r\nSubject: \xff\r\n\r\n",
            "not UTF-8 \\(byte 37\\)",
        ),
        (b"INVITE sip:a@b.com SIP/2.0\nVia: x\n\r\n\r\n", "Bare CR or LF"),
        (b"INVITE sip:a@b.com SIP/2.0\r\nA: 1\r2\r\n\r\n", "Bare CR or LF"),
        (
            b"INVITE sip:a@b.com SIP/2.0\r\n folded\r\n\r\n",
            "starts with a continuation",
        ),
        (
            b"INVITE sip:a@b.com SIP/2.0\r\nFoobar roobar\r\n\r\n",
            "without colon: 'Foobar",
        ),
        (
            b"INVITE sip:a@b.com SIP/2.0\r\nBad Name: x\r\n\r\n",
            "Bad header name 'Bad Name'",
        ),
        (b"INVITE sip:a@b.com SIP/2.0\r\n: x\r\n\r\n", "Bad header name ''"),
        (b"SIP/2.0\r\n\r\n", "Bad status code ''"),
        (b"SIP/2.0 4294967301 Huge\r\n\r\n", "Bad status code '4294967301'"),
        (b"SIP/2.0 099 Low\r\n\r\n", "Bad status code '099'"),
        (b"SIP/2.0 700 High\r\n\r\n", "Bad status code '700'"),
        (b"SIP/2.0  200 OK\r\n\r\n", "Bad status code ''"),
        (b"SIP/2 200 OK\r\n\r\n", "Bad SIP-Version 'SIP/2'"),
        (b"SIP/2.0 200 O\x01K\r\n\r\n", "Control character in reason phrase"),
        (b"INVITE  sip:a@b.com SIP/2.0\r\n\r\n", "got 4 space-separated fields"),
        (b"INVITE sip:a@b.com; lr SIP/2.0\r\n\r\n", "got 4 space-separated fields"),
        (b"INVITE sip:a@b.com SIP/2.0  \r\n\r\n", "got 5 space-separated fields"),
        (b"INVITE sip:a@b.com\r\n\r\n", "got 2 space-separated fields"),
        (b"INV:ITE sip:a@b.com SIP/2.0\r\n\r\n", "Bad method 'INV:ITE'"),
        (b"INVITE sip:a@b.com HTTP/1.1\r\n\r\n", "Bad SIP-Version 'HTTP/1.1'"),
        (b"INVITE <sip:a@b.com> SIP/2.0\r\n\r\n", "URI without a valid scheme"),
        (b"INVITE sip:2001:db8::10 SIP/2.0\r\n\r\n", "IPv6 address without brackets"),
    ],
)
def test_parse_errors(data: bytes, message: str) -> None:
    with pytest.raises(BadMessage, match=message) as info:
        parse_message(data)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        (["9999"], "Body shorter than Content-Length \\(4 < 9999\\)"),
        (["-999"], "Bad Content-Length '-999'"),
        (["five"], "Bad Content-Length 'five'"),
        (["99999999999"], "Bad Content-Length"),
        (["13", "5"], "Conflicting Content-Length headers"),
    ],
)
def test_framing_errors_keep_the_head(lengths: list[str], message: str) -> None:
    lines = invite_lines(Content_Length=None)
    lines += [f"Content-Length: {length}" for length in lengths]
    with pytest.raises(FramingError, match=message) as info:
        parse_message(wire(*lines, body="body"))
    head = info.value.head
    assert isinstance(head, Request)
    assert head.body == b""
    reply = make_response(head, 400, info.value.reason)
    assert reply.reason == info.value.reason
    assert reply.headers.get("Call-ID") == "a84b4c76e66710@pc33.atlanta.com"


def test_duplicate_equal_content_length_is_tolerated() -> None:
    lines = [*invite_lines(), "Content-Length: 2", "l: 2"]
    assert parse_message(wire(*lines, body="okjunk")).body == b"ok"


# --- typed accessors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "attribute"),
    [
        ("Call-ID", "call_id"),
        ("CSeq", "cseq"),
        ("Via", "vias"),
        ("Via", "top_via"),
        ("From", "from_"),
        ("To", "to"),
    ],
)
def test_accessors_raise_when_missing_or_repeated(name: str, attribute: str) -> None:
    message = invite(**{name.replace("-", "_"): None})
    with pytest.raises(BadMessage, match=f"Missing {name} header"):
        getattr(message, attribute)
    if name != "Via":
        message = request(*invite_lines(), f"{name}: {invite().headers.get(name)}")
        with pytest.raises(BadMessage, match=f"Multiple {name} headers"):
            getattr(message, attribute)


@pytest.mark.parametrize(
    ("override", "attribute", "message"),
    [
        ({"Call_ID": "a b"}, "call_id", "Bad Call-ID"),
        ({"Call_ID": "a@b@c"}, "call_id", "Bad Call-ID"),
        ({"CSeq": "x INVITE"}, "cseq", "Bad CSeq"),
        ({"Via": "SIP/2.0/UDP"}, "vias", "Missing space"),
        ({"Via": "SIP/2.0/UDP a.com, bad"}, "vias", "Bad Via sent-protocol"),
        ({"From": "<sip:a@b.com"}, "from_", "Missing '>'"),
        ({"To": "Bell, Alexander <sip:a@b.com>"}, "to", "Display name must be quoted"),
        ({"Max_Forwards": "300"}, "max_forwards", "Bad Max-Forwards '300'"),
        ({"Max_Forwards": "-1"}, "max_forwards", "Bad Max-Forwards"),
        ({"Contact": "*, <sip:a@b.com>"}, "contacts", "Contact '\\*' mixed"),
        ({"Contact": "sip:a@b.com?x=y"}, "contacts", "must be in angle brackets"),
    ],
)
def test_accessors_raise_when_garbled(
    override: dict[str, str], attribute: str, message: str
) -> None:
    parsed = invite(**override)
    with pytest.raises(BadMessage, match=message):
        getattr(parsed, attribute)


def test_top_via_parses_only_the_first_value() -> None:
    message = invite(Via="SIP/2.0/UDP a.com;branch=z9hG4bK1, garbage")
    assert message.top_via.host == "a.com"
    with pytest.raises(BadMessage):
        _ = message.vias


def test_max_forwards_absent_and_contacts() -> None:
    message = request(
        *invite_lines(Max_Forwards=None, Contact=None),
        'Contact: "A, B" <sip:a@b.com>;q=0.5, sip:c@d.com;expires=60',
        "m: <tel:+1234>",
    )
    assert message.max_forwards is None
    contacts = message.contacts
    assert [contact.display_name for contact in contacts] == ["A, B", None, None]
    assert contacts[1].params == {"expires": "60"}
    assert isinstance(contacts[2].uri, TelUri)


def test_star_contact() -> None:
    message = invite(Contact="*")
    assert message.is_star_contact
    assert message.contacts == []
    assert invite(Contact=None).contacts == []
    assert not invite(Contact=None).is_star_contact


# --- building ----------------------------------------------------------------------------


def test_to_bytes_writes_content_length() -> None:
    built = Request(method="MESSAGE", uri=parse_uri("sip:bob@biloxi.com"))
    built.headers.add("Via", "SIP/2.0/TCP a.com;branch=z9hG4bKx")
    built.headers.add("l", "999")
    built.headers.add("Subject", "hi")
    built.headers.add("Content-Length", "1")
    built.body = "h\u00e9".encode()
    assert built.to_bytes() == (
        b"MESSAGE sip:bob@biloxi.com SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP a.com;branch=z9hG4bKx\r\n"
        b"Content-Length: 3\r\n"
        b"Subject: hi\r\n"
        b"\r\nh\xc3\xa9"
    )
    bare = Response(status=200, reason="OK")
    assert bare.to_bytes() == b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_round_trip_request_and_response() -> None:
    original = request(*invite_lines(Content_Type="text/plain", l="5"), body="hello")
    again = parse_message(original.to_bytes())
    assert again == original
    assert again.to_bytes() == original.to_bytes()
    built = Response(
        status=486,
        reason="Busy Here",
        headers=Headers([("Via", "SIP/2.0/UDP a.com;branch=z9hG4bKx"), ("X-A", "1")]),
        body=b"\x00\x01",
    )
    parsed = parse_message(built.to_bytes())
    assert parsed == built
    assert parsed != original
    assert original != built
    assert (built == "x") is False
    assert (original == "x") is False


def test_request_uri_is_rendered_canonically() -> None:
    message = request("OPTIONS sip:%75ser@EXAMPLE.com;LR SIP/2.0", "l: 0")
    assert message.to_bytes().startswith(b"OPTIONS sip:user@example.com;lr SIP/2.0\r\n")


def test_local_misuse_is_refused_on_rendering() -> None:
    with pytest.raises(LocalProtocolError, match="CR/LF"):
        Response(status=200, reason="OK\r\nVia: x").to_bytes()
    with pytest.raises(LocalProtocolError, match="outside 100-699"):
        Response(status=1000, reason="OK").to_bytes()
    with pytest.raises(LocalProtocolError, match="not a token"):
        Request(method="IN VITE", uri=parse_uri("sip:a@b.com")).to_bytes()


# --- make_response -----------------------------------------------------------------------


def test_make_response_copies_rfc_3261_8_2_6_headers() -> None:
    message = request(
        *invite_lines(),
        "Via: SIP/2.0/UDP proxy.com;branch=z9hG4bK2, SIP/2.0/UDP p2.com;branch=z9hG4bK3",
        "Record-Route: <sip:proxy.com;lr>",
        "Timestamp: 54",
    )
    reply = make_response(message, 180, to_tag="abc")
    assert (reply.status, reply.reason) == (180, "Ringing")
    assert reply.headers.get_all("Via") == [
        "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds",
        "SIP/2.0/UDP proxy.com;branch=z9hG4bK2",
        "SIP/2.0/UDP p2.com;branch=z9hG4bK3",
    ]
    assert [name for name, _ in reply.headers] == [
        "Via",
        "To",
        "From",
        "Call-ID",
        "CSeq",
        "Via",
    ]
    assert reply.to.tag == "abc"
    assert reply.from_.tag == "1928301774"
    assert reply.call_id == message.call_id
    assert reply.cseq == message.cseq
    assert "Record-Route" not in reply.headers
    assert "Timestamp" not in reply.headers
    trying = make_response(message, Status.TRYING)
    assert trying.headers.get("Timestamp") == "54"
    assert trying.to.tag is None
    assert "Timestamp" not in make_response(invite(), Status.TRYING).headers


def test_make_response_shares_only_immutable_parsed_values() -> None:
    message = invite()
    call_id, cseq, via = message.call_id, message.cseq, message.top_via
    reply = make_response(message, 200, to_tag="abc")
    assert reply.call_id is call_id
    assert reply.cseq is cseq
    # Via and From are mutable: the response parses its own.
    assert reply.top_via == via
    assert reply.top_via is not via
    reply.headers.set("CSeq", "7 INVITE")
    assert reply.cseq.number == 7
    assert message.cseq.number == 314159


def test_make_response_keeps_existing_to_tag() -> None:
    message = invite(To="<sip:bob@biloxi.com>;tag=existing")
    assert make_response(message, 200, to_tag="new").to.tag == "existing"
    assert make_response(message, 200, "Fine").reason == "Fine"


def test_make_response_reason_defaults() -> None:
    message = invite()
    assert make_response(message, 404).reason == "Not Found"
    assert make_response(message, 499).reason == "Bad Request"
    assert make_response(message, 299).reason == "OK"
    with pytest.raises(LocalProtocolError):
        make_response(message, 99)
    with pytest.raises(LocalProtocolError):
        make_response(message, 200, to_tag="bad tag")
    # A garbled To is echoed without a tag so that the 400 still goes out.
    garbled = make_response(
        invite(To='"Mr. J. User <sip:j.user@example.com>'), 400, to_tag="t"
    )
    assert garbled.headers.get("To") == '"Mr. J. User <sip:j.user@example.com>'


def test_make_response_to_garbage_request_without_tag() -> None:
    message = invite(To="garbage <", Call_ID=None)
    reply = make_response(message, 400, "Missing Call-ID header")
    assert reply.headers.get("To") == "garbage <"
    assert "Call-ID" not in reply.headers


def test_reason_phrases_cover_status_enum() -> None:
    assert {int(status) for status in Status} == set(REASON_PHRASES)
    assert reason_phrase(Status.BAD_EXTENSION) == "Bad Extension"
    assert reason_phrase(799) == "Unknown"


# --- check_request -------------------------------------------------------------------------


def rejection(message: Request, **kwargs: frozenset[str]) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        check_request(message, supported=SUPPORTED, **kwargs)
    return info.value


def test_valid_request_passes() -> None:
    check_request(invite(), supported=SUPPORTED)
    check_request(invite(Max_Forwards=None), supported=SUPPORTED)
    check_request(invite(start="INVITE tel:+1234 SIP/2.0"), supported=SUPPORTED)
    check_request(invite(Require="100rel, timer"), supported=SUPPORTED)


def test_505_bad_version() -> None:
    error = rejection(invite(start="INVITE sip:bob@biloxi.com SIP/7.0"))
    assert (error.status, error.reason) == (505, "Version SIP/7.0 Not Supported")


@pytest.mark.parametrize("name", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_400_missing_mandatory_header(name: str) -> None:
    error = rejection(invite(**{name.replace("-", "_"): None}))
    assert (error.status, error.reason) == (400, f"Missing {name} header")


@pytest.mark.parametrize("name", ["From", "To", "Call-ID", "CSeq", "Max-Forwards"])
def test_400_repeated_header(name: str) -> None:
    message = request(*invite_lines(), f"{name}: {invite().headers.get(name)}")
    error = rejection(message)
    assert (error.status, error.reason) == (400, f"Multiple {name} headers")


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"CSeq": "1 OPTIONS"}, "CSeq method does not match request method"),
        ({"CSeq": "1 invite"}, "CSeq method does not match request method"),
        (
            {"CSeq": "99999999999 INVITE"},
            "CSeq number 99999999999 does not fit 32 bits",
        ),
        ({"Via": "SIP/2.0/UDP a.com;;"}, "Empty or bad parameter name at ';'"),
        ({"Contact": "<sip:a@b.com>;;"}, "Empty or bad parameter name at ';'"),
        ({"Max_Forwards": "256"}, "Bad Max-Forwards '256'"),
        (
            {"start": "INVITE sip:a@b.com?Route=x SIP/2.0"},
            "Request-URI must not contain headers",
        ),
    ],
)
def test_400_names_the_defect(override: dict[str, str], reason: str) -> None:
    error = rejection(invite(**override))
    assert (error.status, error.reason) == (400, reason)


def test_400_content_length_mismatch_on_built_request() -> None:
    message = invite()
    message.headers.set("Content-Length", "10")
    message.body = b"short"
    assert rejection(message).reason == "Bad Content-Length"
    message.headers.set("Content-Length", "5")
    check_request(message, supported=SUPPORTED)


def test_416_unsupported_scheme() -> None:
    error = rejection(invite(start="INVITE http://example.com/x SIP/2.0"))
    assert (error.status, error.reason) == (416, "Unsupported URI Scheme http")


def test_483_max_forwards_zero() -> None:
    error = rejection(invite(Max_Forwards="0"))
    assert (error.status, error.reason) == (483, "Too Many Hops")
    # RFC 3261 section 16.3 item 2: OPTIONS may be answered by this element itself.
    options = invite(
        start="OPTIONS sip:bob@biloxi.com SIP/2.0", CSeq="1 OPTIONS", Max_Forwards="0"
    )
    check_request(options, supported=SUPPORTED)
    register = invite(
        start="REGISTER sip:biloxi.com SIP/2.0", CSeq="1 REGISTER", Max_Forwards="0"
    )
    assert rejection(register).status == 483
    check_request(
        register, supported=SUPPORTED, answered_locally=frozenset({"REGISTER"})
    )


def test_420_lists_unsupported_require_tags() -> None:
    error = rejection(invite(Require="100rel, foo", Proxy_Require="bar"))
    assert (error.status, error.reason) == (420, "Bad Extension foo")
    assert error.headers == (("Unsupported", "foo"),)
    two = request(*invite_lines(), "Require: x", "Require: timer, y")
    assert rejection(two).headers == (("Unsupported", "x, y"),)


def test_require_ignored_in_ack_and_cancel() -> None:
    for method in ("ACK", "CANCEL"):
        message = invite(
            start=f"{method} sip:bob@biloxi.com SIP/2.0", CSeq=f"1 {method}"
        )
        message.headers.add("Require", "foo")
        check_request(message, supported=SUPPORTED)


def test_check_order_version_before_headers() -> None:
    message = invite(start="INVITE sip:bob@biloxi.com SIP/3.0", Call_ID=None)
    assert rejection(message).status == 505


# --- StreamFramer ----------------------------------------------------------------------------


def framed(*messages: bytes) -> bytes:
    return b"".join(messages)


MSG_A = wire(*invite_lines(Content_Length="5"), body="hello")
MSG_B = wire("SIP/2.0 200 OK", "l: 0")
MSG_C = wire("OPTIONS sip:a@b.com SIP/2.0", "Via: SIP/2.0/TCP h.com")


def test_framer_whole_and_split() -> None:
    stream = framed(MSG_A, MSG_B, MSG_C)
    framer = StreamFramer()
    assert framer.feed(stream) == [MSG_A, MSG_B, MSG_C]
    assert framer.buffered == 0
    framer = StreamFramer()
    out: list[bytes] = []
    for index in range(len(stream)):
        out += framer.feed(stream[index : index + 1])
    assert out == [MSG_A, MSG_B, MSG_C]
    assert [parse_message(item).headers.get("l") for item in out] == ["5", "0", None]


def test_framer_keepalives() -> None:
    framer = StreamFramer()
    assert framer.feed(KEEPALIVE_PING + KEEPALIVE_PING + MSG_B) == [MSG_B]
    assert framer.take_pings() == 2
    assert framer.take_pings() == 0
    # A lone CRLF (a pong, or section 7.5 padding) is skipped without counting.
    assert framer.feed(b"\r\n" + MSG_B) == [MSG_B]
    assert framer.take_pings() == 0
    # Split ping: wait for the rest before deciding.
    assert framer.feed(b"\r\n\r") == []
    assert framer.take_pings() == 0
    assert framer.feed(b"\n") == []
    assert framer.take_pings() == 1
    assert framer.feed(b"\r\n") == []
    assert framer.buffered == 2
    assert framer.feed(MSG_B) == [MSG_B]


def test_framer_incomplete_body_waits() -> None:
    framer = StreamFramer()
    assert framer.feed(MSG_A[:-2]) == []
    assert framer.feed(MSG_A[-2:] + MSG_B[:5]) == [MSG_A]
    assert framer.buffered == 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (wire("A sip:a@b.com SIP/2.0", "Content-Length: -1"), "Bad Content-Length"),
        (wire("A sip:a@b.com SIP/2.0", "l: five"), "Bad Content-Length"),
        (wire("A sip:a@b.com SIP/2.0", "l: 12345678901"), "Bad Content-Length"),
        (wire("A sip:a@b.com SIP/2.0", "l: 1", "Content-Length: 2"), "Conflicting"),
        (wire("A sip:a@b.com SIP/2.0", "l: 2000"), "Content-Length 2000 too large"),
        (b"A" * 1100, "Header section too large"),
        (wire("A sip:a@b.com SIP/2.0", "X: " + "y" * 1100), "Header section too large"),
    ],
)
def test_framer_errors(data: bytes, message: str) -> None:
    framer = StreamFramer(max_header_bytes=1024, max_body_bytes=1024)
    with pytest.raises(BadMessage, match=message):
        framer.feed(data)


def test_framer_uses_the_same_content_length_as_parser() -> None:
    # "Content-Length" with LWS before the colon and in compact form.
    data = (
        wire("MESSAGE sip:a@b.com SIP/2.0", "CONTENT-LENGTH  : 3", body="abc") + MSG_B
    )
    assert StreamFramer().feed(data) == [data[: -len(MSG_B)], MSG_B]


def test_name_addr_of_message_matches_headers_module() -> None:
    message = invite()
    assert message.to == parse_name_addr("Bob <sip:bob@biloxi.com>")
    assert isinstance(message.to.uri, SipUri)


# --- error_response ----------------------------------------------------------------------


def test_error_response_to_bad_request_line() -> None:
    lines = invite_lines(start="INVITE <sip:bob@biloxi.com> SIP/2.0")
    data = wire(*lines[:2], "Bad line", " folded junk", *lines[2:], "X-Extra: 1")
    with pytest.raises(BadMessage) as info:
        parse_message(data)
    reply = error_response(data, info.value)
    assert reply is not None
    assert (reply.status, reply.reason) == (
        400,
        "URI without a valid scheme: '<sip:bob@biloxi.com>'",
    )
    assert [name for name, _ in reply.headers] == [
        "Via",
        "To",
        "From",
        "Call-ID",
        "CSeq",
    ]
    assert reply.to.tag is None
    assert parse_message(reply.to_bytes()) == reply


def test_error_response_without_empty_line_and_with_extra_headers() -> None:
    data = b"\r\n" + "\r\n".join(invite_lines(start="X y")).encode()
    error = ProtocolError("Nope", status=420, headers=(("Unsupported", "foo"),))
    reply = error_response(data, error)
    assert reply is not None
    assert (reply.status, reply.headers.get("Unsupported")) == (420, "foo")


def test_error_response_skips_lines_with_bare_line_breaks() -> None:
    data = wire("X y", "Via: SIP/2.0/UDP a.com", "To: <sip:a@b.com>\nInjected: 1")
    reply = error_response(data, BadMessage("bad"))
    assert reply is not None
    assert "To" not in reply.headers
    assert b"Injected" not in reply.to_bytes()


@pytest.mark.parametrize(
    "data",
    [
        wire("SIP/2.0 999 Bad", "Via: SIP/2.0/UDP a.com"),
        wire("ACK sip:a@b.com SIP/2.0 x", "Via: SIP/2.0/UDP a.com"),
        wire("INVITE sip:a@b.com SIP/2.0 x", "Via: garbage"),
        wire("INVITE sip:a@b.com SIP/2.0 x"),
        b"\xff\xfe",
    ],
)
def test_error_response_refuses_responses_acks_and_unaddressable(data: bytes) -> None:
    assert error_response(data, BadMessage("bad")) is None


def test_error_response_to_framing_errors() -> None:
    data = wire(*invite_lines(Content_Length="99"), body="x")
    with pytest.raises(FramingError) as info:
        parse_message(data)
    reply = error_response(data, info.value)
    assert reply is not None
    assert reply.reason == "Body shorter than Content-Length (1 < 99)"
    ack = wire(*invite_lines(start="ACK sip:b@b.com SIP/2.0", CSeq="1 ACK", l="99"))
    response_data = wire("SIP/2.0 200 OK", "Content-Length: x")
    for bad in (ack, response_data):
        with pytest.raises(FramingError) as info:
            parse_message(bad)
        assert error_response(bad, info.value) is None


def test_message_without_headers() -> None:
    message = parse_message(b"OPTIONS sip:a@b.com SIP/2.0\r\n\r\n")
    assert isinstance(message, Request)
    assert len(message.headers) == 0
    assert message.body == b""
    with pytest.raises(ProtocolError, match="Missing Via header"):
        check_request(message, supported=SUPPORTED)
