"""RFC 4475 and RFC 5118 torture messages against the syntax layer.

Each message of ``shared/corpus`` (read in place, never copied into the repo) is one
test asserting the outcome that ``EXPECTED.md`` beside it gives: accepted with specific
field values, or rejected with a specific status and a reason phrase naming the defect.
Where the answer belongs to another layer (transaction matching, registrar, UAS method or
media handling), the test asserts what the syntax layer must provide for that decision
and says which layer answers.

Every message is fed as one UDP datagram through :func:`parse_message`, then, for a
request, through :func:`check_request`; rejected requests must still yield a 400
through :func:`error_response` when a Via can be read. The framing cases are also fed
to :class:`StreamFramer` as a TCP stream.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from switch.sip.errors import BadMessage, ProtocolError
from switch.sip.message import (
    FramingError,
    Request,
    Response,
    StreamFramer,
    check_request,
    error_response,
    make_response,
    parse_message,
)
from switch.sip.uri import AbsoluteUri, SipUri, parse_uri

# Option tags this element supports (none of the torture tags).
SUPPORTED = frozenset({"100rel", "timer", "replaces", "path", "outbound"})


def corpus_dir() -> Path | None:
    """``$CCSWITCH_SHARED/corpus`` or ``<checkout>/../shared/corpus``, if present."""
    candidates = []
    if os.environ.get("CCSWITCH_SHARED"):
        candidates.append(Path(os.environ["CCSWITCH_SHARED"]) / "corpus")
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "corpus")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def load(name: str) -> bytes:
    corpus = corpus_dir()
    if corpus is None:
        pytest.skip(
            "torture corpus not there (set CCSWITCH_SHARED or check out ../shared)"
        )
    return (corpus / name).read_bytes()


# --- outcome helpers -------------------------------------------------------------------


def accepted_request(name: str) -> Request:
    """Parses and passes every stateless check of RFC 3261 section 8.2."""
    message = parse_message(load(name))
    assert isinstance(message, Request)
    check_request(message, supported=SUPPORTED)
    return message


def accepted_response(name: str) -> Response:
    message = parse_message(load(name))
    assert isinstance(message, Response)
    # What the transaction layer reads to match it (RFC 3261 section 17.1.3).
    assert message.top_via.branch
    assert message.cseq.method
    return message


def rejected_by_parser(name: str, reason: str) -> BadMessage:
    """parse_message raises with ``reason`` in the phrase; a 400 is still sent."""
    data = load(name)
    with pytest.raises(BadMessage) as info:
        parse_message(data)
    error = info.value
    assert error.status == 400
    assert reason in error.reason
    reply = error_response(data, error)
    assert reply is not None, "a Via is readable, so a 400 must be addressable"
    assert (reply.status, reply.reason) == (400, error.reason)
    assert reply.top_via.host
    return error


def rejected_by_check(name: str, status: int, reason: str) -> ProtocolError:
    """Parses, then check_request refuses with ``status`` and ``reason``."""
    message = parse_message(load(name))
    assert isinstance(message, Request)
    with pytest.raises(ProtocolError) as info:
        check_request(message, supported=SUPPORTED)
    assert info.value.status == status
    assert reason in info.value.reason
    # The boundary answers statelessly, echoing what it can (RFC 3261 section 8.2.6).
    reply = make_response(message, status, info.value.reason, to_tag="b2bua1")
    assert parse_message(reply.to_bytes()).headers.get("Via") == message.headers.get(
        "Via"
    )
    return info.value


def dropped_response(name: str, reason: str) -> None:
    """A bad response: refused by the parser (or its accessors) and never answered."""
    data = load(name)
    try:
        message = parse_message(data)
    except BadMessage as error:
        assert reason in error.reason
        assert error_response(data, error) is None
        return
    assert isinstance(message, Response)
    with pytest.raises(BadMessage, match=reason):
        # The transaction layer needs these to match the response; failing, it drops.
        _ = (message.top_via, message.cseq, message.call_id)


def tcp_frames(name: str) -> tuple[list[bytes], StreamFramer]:
    framer = StreamFramer()
    return framer.feed(load(name)), framer


# --- RFC 4475 section 3.1.1: valid messages ----------------------------------------------


def wsinv() -> None:
    message = accepted_request("rfc4475/wsinv.dat")
    assert message.method == "INVITE"
    assert str(message.uri) == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert message.max_forwards == 68
    assert (message.cseq.number, message.cseq.method) == (9, "INVITE")
    assert [via.host for via in message.vias] == [
        "192.0.2.2",
        "spindle.example.com",
        "192.168.255.111",
    ]
    assert [via.transport for via in message.vias] == ["UDP", "TCP", "UDP"]
    assert message.top_via.branch == "390skdjuw"
    assert message.vias[2].branch == "z9hG4bK30239"
    assert message.to.tag == "1918181833n"
    assert message.from_.display_name == 'J Rosenberg \\"'
    assert message.from_.tag == "98asjd8"
    (contact,) = message.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert message.headers.get("Subject") == ""
    assert len(message.body) == 150
    # Unknown headers are kept verbatim (folding undone) and re-emitted.
    assert message.headers.get("NewFangledHeader") == (
        "newfangled value continued newfangled value"
    )
    assert message.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    wire = message.to_bytes()
    assert b"\r\nUnknownHeaderWithUnusualValue: ;;,,;;,;\r\n" in wire
    assert parse_message(wire) == message


def intmeth() -> None:
    # The method is unknown: the UAS method dispatch answers 501 with Allow.
    message = accepted_request("rfc4475/intmeth.dat")
    assert message.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert message.cseq.method == message.method
    assert isinstance(message.uri, SipUri)
    assert message.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert message.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert message.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert message.from_.tag == "_token~1'+`*%!-."
    # The UTF-8 quoted parameter value is kept as written.
    assert message.from_.params["fromparam''~+*_!.-%"] == (
        '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"'
    )
    assert message.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert message.headers.get("extensionHeader-!.%*+_`'~") == (
        "\ufeff\u5927\u505c\u96fb"
    )
    assert parse_message(message.to_bytes()) == message


def esc01() -> None:
    message = accepted_request("rfc4475/esc01.dat")
    assert isinstance(message.uri, SipUri)
    assert message.uri.user == "sips:user@example.com"
    assert message.uri.host == "example.net"
    assert message.to.uri.equivalent(parse_uri("sip:user@example.com"))
    assert isinstance(message.from_.uri, SipUri)
    assert message.from_.uri.user == "I have spaces"
    (contact,) = message.contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.user == "caller"
    # Unescaped exactly once: "value%41", not "valueA".
    assert contact.uri.params == {"lr": None, "name": "value%41"}


def escnull() -> None:
    # The registrar must create two bindings; the syntax layer gives two distinct AORs.
    message = accepted_request("rfc4475/escnull.dat")
    assert isinstance(message.to.uri, SipUri)
    assert message.to.uri.user == "null-\x00-null"
    first, second = (contact.uri for contact in message.contacts)
    assert isinstance(first, SipUri)
    assert isinstance(second, SipUri)
    assert (first.user, second.user) == ("\x00", "\x00\x00")
    assert not first.equivalent(second)


def esc02() -> None:
    # Not REGISTER: the UAS method dispatch answers 501.
    message = accepted_request("rfc4475/esc02.dat")
    assert message.method == "RE%47IST%45R"
    assert message.method != "REGISTER"
    assert message.to.display_name == "%Z%45"
    assert message.top_via.branch == "z9hG4bK209%fzsnel234"
    assert [str(contact.uri) for contact in message.contacts] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert message.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def lwsdisp() -> None:
    message = accepted_request("rfc4475/lwsdisp.dat")
    assert message.method == "OPTIONS"
    assert message.from_.display_name == "caller"


def longreq() -> None:
    message = accepted_request("rfc4475/longreq.dat")
    assert len(load("rfc4475/longreq.dat")) == 3515
    hosts = [via.host for via in message.vias]
    assert len(hosts) == 34
    assert hosts[:33] == [f"sip{number}.example.com" for number in range(33, 0, -1)]
    assert message.vias[33].received == "192.0.2.5"
    assert message.to.display_name is not None
    assert "extremeextreme" in message.to.display_name
    assert isinstance(message.to.uri, SipUri)
    assert message.to.uri.port == 6000
    assert message.from_.tag is not None
    assert len(message.from_.tag) > 150
    assert message.call_id.startswith("longreq.onereally")


def dblreq() -> None:
    data = load("rfc4475/dblreq.dat")
    # UDP: only the REGISTER; the trailing INVITE octets are ignored (section 18.3).
    message = accepted_request("rfc4475/dblreq.dat")
    assert message.method == "REGISTER"
    assert message.body == b""
    # TCP: the same bytes are legitimately two messages (the CRLF between is skipped).
    # (The INVITE body is 155 bytes with Content-Length 150, so its last 5 bytes come
    # out as a garbage third "message" that the parser refuses.)
    frames, framer = tcp_frames("rfc4475/dblreq.dat")
    assert [parse_message(frame).cseq.method for frame in frames[:2]] == [
        "REGISTER",
        "INVITE",
    ]
    assert frames[2] == b"C\r\n\r\n"
    with pytest.raises(BadMessage):
        parse_message(frames[2])
    assert framer.buffered == 0
    assert b"".join(frames) == data.replace(b"\r\n\r\n\r\nINVITE", b"\r\n\r\nINVITE")


def semiuri() -> None:
    message = accepted_request("rfc4475/semiuri.dat")
    assert isinstance(message.uri, SipUri)
    assert message.uri.user == "user;par=u@example.net"
    assert message.uri.host == "example.com"
    assert message.uri.params == {}
    assert len(message.headers.get_all("Accept")) == 6


def transports() -> None:
    message = accepted_request("rfc4475/transports.dat")
    assert [via.transport for via in message.vias] == [
        "UDP",
        "SCTP",
        "TLS",
        "UNKNOWN",
        "TCP",
    ]


def mpart01() -> None:
    data = load("rfc4475/mpart01.dat")
    message = accepted_request("rfc4475/mpart01.dat")
    assert message.method == "MESSAGE"
    assert len(message.body) == 553
    assert message.body == data[-553:]
    assert b"\x00" in message.body
    assert (message.headers.get("Content-Type") or "").startswith("multipart/mixed")
    assert parse_message(message.to_bytes()).body == message.body


def unreason() -> None:
    message = accepted_response("rfc4475/unreason.dat")
    assert message.status == 200
    assert "\u043f\u0440\u043e\u0441\u0442\u043e\u0435" in message.reason
    assert message.reason.startswith("= 2**3 * 5**2")


def noreason() -> None:
    message = accepted_response("rfc4475/noreason.dat")
    assert (message.status, message.reason) == (100, "")


# --- RFC 4475 section 3.1.2: invalid messages --------------------------------------------


def badinv01() -> None:
    rejected_by_check("rfc4475/badinv01.dat", 400, "Empty or bad parameter name")


def clerr() -> None:
    error = rejected_by_parser("rfc4475/clerr.dat", "Body shorter than Content-Length")
    assert isinstance(error, FramingError)
    assert "(154 < 9999)" in error.reason
    # TCP: wait for the missing bytes (the transport closes on its idle timeout).
    frames, framer = tcp_frames("rfc4475/clerr.dat")
    assert frames == []
    assert framer.buffered == len(load("rfc4475/clerr.dat"))


def ncl() -> None:
    error = rejected_by_parser("rfc4475/ncl.dat", "Bad Content-Length '-999'")
    assert isinstance(error, FramingError)
    # TCP: framing is unrecoverable, the transport closes the connection.
    with pytest.raises(BadMessage, match="Bad Content-Length"):
        tcp_frames("rfc4475/ncl.dat")


def scalar02() -> None:
    rejected_by_check("rfc4475/scalar02.dat", 400, "CSeq number 36893488147419103232")
    message = parse_message(load("rfc4475/scalar02.dat"))
    with pytest.raises(BadMessage, match="Bad Max-Forwards '300'"):
        _ = message.max_forwards
    # Expires and the contact expires are the registrar's to clamp (to 3600).
    assert message.headers.get("Expires") == "1" + "0" * 100


def scalarlg() -> None:
    dropped_response("rfc4475/scalarlg.dat", "does not fit 32 bits")


def quotbal() -> None:
    rejected_by_check("rfc4475/quotbal.dat", 400, "Unterminated quoted display name")


def ltgtruri() -> None:
    rejected_by_parser("rfc4475/ltgtruri.dat", "URI without a valid scheme")


def lwsruri() -> None:
    rejected_by_parser("rfc4475/lwsruri.dat", "got 4 space-separated fields")


def lwsstart() -> None:
    # Rejected rather than repaired: RFC 4475 allows either.
    rejected_by_parser("rfc4475/lwsstart.dat", "space-separated fields")


def trws() -> None:
    rejected_by_parser("rfc4475/trws.dat", "space-separated fields")


def escruri() -> None:
    rejected_by_check(
        "rfc4475/escruri.dat", 400, "Request-URI must not contain headers"
    )


def baddate() -> None:
    # Accepted leniently: the Date header is not interpreted by this element.
    message = accepted_request("rfc4475/baddate.dat")
    assert (message.headers.get("Date") or "").endswith("EST")


def regbadct() -> None:
    rejected_by_check("rfc4475/regbadct.dat", 400, "must be in angle brackets")


def badaspec() -> None:
    rejected_by_check("rfc4475/badaspec.dat", 400, "Whitespace inside angle brackets")


def baddn() -> None:
    # The archive copy never closes its header section: over UDP a 400 ...
    rejected_by_parser("rfc4475/baddn.dat", "not terminated by an empty line")
    # ... and over TCP simply an incomplete message.
    frames, framer = tcp_frames("rfc4475/baddn.dat")
    assert frames == []
    assert framer.buffered > 0


def baddn_with_final_crlf() -> None:
    rejected_by_check(
        "rfc4475/variants/baddn-with-final-crlf.dat", 400, "Display name must be quoted"
    )


def badvers() -> None:
    rejected_by_check("rfc4475/badvers.dat", 505, "SIP/7.0")


def mismatch01() -> None:
    rejected_by_check("rfc4475/mismatch01.dat", 400, "CSeq method does not match")


def mismatch02() -> None:
    # 400 here; an application that inspects the method first (RFC 3261 section 8.2.1)
    # answers the preferred 501 before calling check_request.
    error = rejected_by_check(
        "rfc4475/mismatch02.dat", 400, "CSeq method does not match"
    )
    assert error.status in (400, 501)
    message = parse_message(load("rfc4475/mismatch02.dat"))
    assert isinstance(message, Request)
    assert message.method == "NEWMETHOD"


def bigcode() -> None:
    dropped_response("rfc4475/bigcode.dat", "Bad status code '4294967301'")


# --- RFC 4475 sections 3.2 - 3.4 ----------------------------------------------------------


def badbranch() -> None:
    # The transaction layer decides (400 or RFC 2543 matching); syntax gives the branch.
    message = accepted_request("rfc4475/badbranch.dat")
    assert message.top_via.branch == "z9hG4bK"


def insuf() -> None:
    rejected_by_check("rfc4475/insuf.dat", 400, "Missing From header")


def unkscm() -> None:
    rejected_by_check("rfc4475/unkscm.dat", 416, "Unsupported URI Scheme")
    message = parse_message(load("rfc4475/unkscm.dat"))
    assert isinstance(message, Request)
    assert message.uri == AbsoluteUri("nobodyknowsthisscheme", "totallyopaquecontent")


def novelsc() -> None:
    rejected_by_check("rfc4475/novelsc.dat", 416, "Unsupported URI Scheme soap.beep")


def unksm2() -> None:
    # The registrar answers 400 (a REGISTER's To must be a SIP/SIPS AOR).
    message = accepted_request("rfc4475/unksm2.dat")
    assert message.to.uri == AbsoluteUri("isbn", "2983792873")
    assert message.from_.uri == AbsoluteUri("http", "//www.example.com")
    assert [contact.uri for contact in message.contacts] == [
        AbsoluteUri("name", "John_Smith")
    ]


def bext01() -> None:
    error = rejected_by_check("rfc4475/bext01.dat", 420, "Bad Extension")
    assert error.headers == (
        ("Unsupported", "nothingSupportsThis, nothingSupportsThisEither"),
    )


def invut() -> None:
    # The UAS answers 415 with Accept; the syntax layer only carries the type.
    message = accepted_request("rfc4475/invut.dat")
    assert message.headers.get("Content-Type") == "application/unknownformat"


def regaut01() -> None:
    # The authenticating registrar answers 401 with a fresh Digest challenge.
    message = accepted_request("rfc4475/regaut01.dat")
    assert (
        message.headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"
    )


def multi01() -> None:
    rejected_by_check("rfc4475/multi01.dat", 400, "Multiple")


def mcl01() -> None:
    error = rejected_by_parser(
        "rfc4475/mcl01.dat", "Conflicting Content-Length headers"
    )
    assert isinstance(error, FramingError)
    with pytest.raises(BadMessage, match="Conflicting Content-Length"):
        tcp_frames("rfc4475/mcl01.dat")


def bcast() -> None:
    # No client transaction matches it, so the transaction layer discards it.
    message = accepted_response("rfc4475/bcast.dat")
    assert message.vias[1].host == "255.255.255.255"


def zeromf() -> None:
    # OPTIONS to this element: answered (200) rather than refused with 483.
    message = accepted_request("rfc4475/zeromf.dat")
    assert message.max_forwards == 0


def cparam01() -> None:
    message = accepted_request("rfc4475/cparam01.dat")
    (contact,) = message.contacts
    assert str(contact.uri) == "sip:+19725552222@gw1.example.net"
    assert contact.params == {"unknownparam": None}


def cparam02() -> None:
    message = accepted_request("rfc4475/cparam02.dat")
    (contact,) = message.contacts
    assert str(contact.uri) == "sip:+19725552222@gw1.example.net;unknownparam"
    assert contact.params == {}


def regescrt() -> None:
    message = accepted_request("rfc4475/regescrt.dat")
    (contact,) = message.contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.headers == {"Route": "<sip:sip.example.com>"}
    assert str(contact.uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def sdp01() -> None:
    # The UAS answers 406 (application/sdp is not acceptable to the caller).
    message = accepted_request("rfc4475/sdp01.dat")
    assert message.headers.get("Accept") == "text/nobodyKnowsThis"
    assert message.headers.get("Content-Type") == "application/sdp"


def inv2543() -> None:
    # RFC 2543 peer: accepted; the transaction layer matches it the RFC 2543 way.
    message = accepted_request("rfc4475/inv2543.dat")
    assert len(message.body) == 105
    assert message.max_forwards is None
    assert message.top_via.branch is None
    assert message.from_.tag is None


def extras_test() -> None:
    # Scratch file: garbage. No Via, so nothing can be answered: dropped.
    data = load("rfc4475/extras/test.dat")
    with pytest.raises(BadMessage, match="space-separated fields") as info:
        parse_message(data)
    assert error_response(data, info.value) is None


# --- RFC 5118 ------------------------------------------------------------------------------


def ipv6_good() -> None:
    message = accepted_request("rfc5118/ipv6-good.dat")
    assert isinstance(message.uri, SipUri)
    assert (message.uri.host, message.uri.port) == ("[2001:db8::10]", None)
    assert message.top_via.host == "[2001:db8::9:1]"
    assert str(message.contacts[0].uri) == "sip:caller@[2001:db8::1]"


def ipv6_bad() -> None:
    rejected_by_parser("rfc5118/ipv6-bad.dat", "IPv6 address without brackets")


def port_ambiguous() -> None:
    message = accepted_request("rfc5118/port-ambiguous.dat")
    assert isinstance(message.uri, SipUri)
    assert (message.uri.host, message.uri.port) == ("[2001:db8::10:5070]", None)


def port_unambiguous() -> None:
    message = accepted_request("rfc5118/port-unambiguous.dat")
    assert isinstance(message.uri, SipUri)
    assert (message.uri.host, message.uri.port) == ("[2001:db8::10]", 5070)


def via_received_with_delim() -> None:
    message = accepted_request("rfc5118/via-received-param-with-delim.dat")
    assert message.top_via.received == "2001:db8::9:255"


def via_received_no_delim() -> None:
    message = accepted_request("rfc5118/via-received-param-no-delim.dat")
    assert message.top_via.received == "2001:db8::9:255"
    assert message.top_via.branch == "z9hG4bKas3"


def ipv6_in_sdp() -> None:
    # The SDP/media layer answers 488 (no G.711 offered); syntax only frames the body.
    message = accepted_request("rfc5118/ipv6-in-sdp.dat")
    assert b"c=IN IP6 2001:db8::20" in message.body


def mult_ip_in_header() -> None:
    # A UAS with no matching dialog answers 481 (dialog layer).
    message = accepted_request("rfc5118/mult-ip-in-header.dat")
    first, second, third = message.vias
    assert (first.host, first.port) == ("[2001:db8::9:1]", 6050)
    assert (second.host, second.port) == ("192.0.2.1", None)
    assert (third.transport, third.host, third.received) == (
        "TCP",
        "[2001:db8::9:255]",
        "192.0.2.200",
    )


def mult_ip_in_sdp() -> None:
    message = accepted_request("rfc5118/mult-ip-in-sdp.dat")
    assert b"c=IN IP6 2001:db8::1" in message.body
    assert b"c=IN IP4 192.0.2.1" in message.body


def ipv4_mapped_ipv6() -> None:
    message = accepted_request("rfc5118/ipv4-mapped-ipv6.dat")
    assert [(via.host, via.port) for via in message.vias] == [
        ("[::ffff:192.0.2.10]", 19823),
        ("[::ffff:192.0.2.2]", None),
    ]
    assert message.contacts[0].display_name == "T. desk phone"
    assert len(message.body) == 245


def ipv6_3_colons() -> None:
    message = accepted_request("rfc5118/ipv6-bug-abnf-3-colons.dat")
    assert isinstance(message.uri, SipUri)
    assert message.uri.host == "[2001:db8::192.0.2.1]"


def ipv6_2_colons() -> None:
    message = accepted_request("rfc5118/ipv6-correct-abnf-2-colons.dat")
    assert isinstance(message.uri, SipUri)
    assert message.uri.host == "[2001:db8::192.0.2.1]"


CASES: dict[str, Callable[[], None]] = {
    "rfc4475/wsinv.dat": wsinv,
    "rfc4475/intmeth.dat": intmeth,
    "rfc4475/esc01.dat": esc01,
    "rfc4475/escnull.dat": escnull,
    "rfc4475/esc02.dat": esc02,
    "rfc4475/lwsdisp.dat": lwsdisp,
    "rfc4475/longreq.dat": longreq,
    "rfc4475/dblreq.dat": dblreq,
    "rfc4475/semiuri.dat": semiuri,
    "rfc4475/transports.dat": transports,
    "rfc4475/mpart01.dat": mpart01,
    "rfc4475/unreason.dat": unreason,
    "rfc4475/noreason.dat": noreason,
    "rfc4475/badinv01.dat": badinv01,
    "rfc4475/clerr.dat": clerr,
    "rfc4475/ncl.dat": ncl,
    "rfc4475/scalar02.dat": scalar02,
    "rfc4475/scalarlg.dat": scalarlg,
    "rfc4475/quotbal.dat": quotbal,
    "rfc4475/ltgtruri.dat": ltgtruri,
    "rfc4475/lwsruri.dat": lwsruri,
    "rfc4475/lwsstart.dat": lwsstart,
    "rfc4475/trws.dat": trws,
    "rfc4475/escruri.dat": escruri,
    "rfc4475/baddate.dat": baddate,
    "rfc4475/regbadct.dat": regbadct,
    "rfc4475/badaspec.dat": badaspec,
    "rfc4475/baddn.dat": baddn,
    "rfc4475/badvers.dat": badvers,
    "rfc4475/mismatch01.dat": mismatch01,
    "rfc4475/mismatch02.dat": mismatch02,
    "rfc4475/bigcode.dat": bigcode,
    "rfc4475/badbranch.dat": badbranch,
    "rfc4475/insuf.dat": insuf,
    "rfc4475/unkscm.dat": unkscm,
    "rfc4475/novelsc.dat": novelsc,
    "rfc4475/unksm2.dat": unksm2,
    "rfc4475/bext01.dat": bext01,
    "rfc4475/invut.dat": invut,
    "rfc4475/regaut01.dat": regaut01,
    "rfc4475/multi01.dat": multi01,
    "rfc4475/mcl01.dat": mcl01,
    "rfc4475/bcast.dat": bcast,
    "rfc4475/zeromf.dat": zeromf,
    "rfc4475/cparam01.dat": cparam01,
    "rfc4475/cparam02.dat": cparam02,
    "rfc4475/regescrt.dat": regescrt,
    "rfc4475/sdp01.dat": sdp01,
    "rfc4475/inv2543.dat": inv2543,
    "rfc4475/extras/test.dat": extras_test,
    "rfc4475/variants/baddn-with-final-crlf.dat": baddn_with_final_crlf,
    "rfc5118/ipv6-good.dat": ipv6_good,
    "rfc5118/ipv6-bad.dat": ipv6_bad,
    "rfc5118/port-ambiguous.dat": port_ambiguous,
    "rfc5118/port-unambiguous.dat": port_unambiguous,
    "rfc5118/via-received-param-with-delim.dat": via_received_with_delim,
    "rfc5118/via-received-param-no-delim.dat": via_received_no_delim,
    "rfc5118/ipv6-in-sdp.dat": ipv6_in_sdp,
    "rfc5118/mult-ip-in-header.dat": mult_ip_in_header,
    "rfc5118/mult-ip-in-sdp.dat": mult_ip_in_sdp,
    "rfc5118/ipv4-mapped-ipv6.dat": ipv4_mapped_ipv6,
    "rfc5118/ipv6-bug-abnf-3-colons.dat": ipv6_3_colons,
    "rfc5118/ipv6-correct-abnf-2-colons.dat": ipv6_2_colons,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_torture_message(name: str) -> None:
    CASES[name]()


def test_every_corpus_file_has_a_case() -> None:
    corpus = corpus_dir()
    if corpus is None:
        pytest.skip(
            "torture corpus not there (set CCSWITCH_SHARED or check out ../shared)"
        )
    on_disk = {path.relative_to(corpus).as_posix() for path in corpus.rglob("*.dat")}
    assert on_disk == set(CASES)
    assert sum(1 for name in CASES if name.count("/") == 1 and "4475" in name) == 49
