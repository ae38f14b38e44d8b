"""Tests for switch.sip.headers: name-addr, Via, CSeq, parameter and list syntax."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.sip import headers as headers_module
from switch.sip.errors import BadMessage, LocalProtocolError
from switch.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    parse_cseq,
    parse_name_addr,
    parse_params,
    parse_via,
    quote_string,
    render_params,
    sip_uri,
    split_header_values,
    unquote_string,
)
from switch.sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri

# --- name-addr / addr-spec ---------------------------------------------------------------


def test_name_addr_with_quoted_display_name() -> None:
    address = parse_name_addr(
        '"J Rosenberg \\\\\\""  <sip:jdrosen@example.com> ; tag = 98asjd8'
    )
    assert address.display_name == 'J Rosenberg \\"'
    assert address.uri == parse_uri("sip:jdrosen@example.com")
    assert address.params == {"tag": "98asjd8"}
    assert address.tag == "98asjd8"
    assert str(address) == '"J Rosenberg \\\\\\"" <sip:jdrosen@example.com>;tag=98asjd8'


def test_name_addr_token_display_name() -> None:
    address = parse_name_addr(
        "token1~` token2'+_   token3*%!.- <sip:mundane@example.com>;tag=x"
    )
    assert address.display_name == "token1~` token2'+_ token3*%!.-"
    assert address.tag == "x"


def test_display_name_directly_before_bracket() -> None:
    # RFC 4475 section 3.1.1.6 (lwsdisp).
    address = parse_name_addr("caller<sip:caller@example.com>;tag=323")
    assert address.display_name == "caller"
    assert address.tag == "323"


def test_name_addr_keeps_uri_params_in_uri() -> None:
    # RFC 4475 section 3.3.13 (cparam02): inside <> the parameter belongs to the URI.
    address = parse_name_addr("<sip:+19725552222@gw1.example.net;unknownparam>")
    assert address.display_name is None
    assert isinstance(address.uri, SipUri)
    assert address.uri.params == {"unknownparam": None}
    assert address.params == {}
    assert address.tag is None


def test_addr_spec_params_belong_to_header() -> None:
    # RFC 4475 section 3.3.12 (cparam01) and RFC 3261 section 20.10.
    address = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam")
    assert isinstance(address.uri, SipUri)
    assert address.uri.params == {}
    assert address.params == {"unknownparam": None}
    assert str(address) == "<sip:+19725552222@gw1.example.net>;unknownparam"


def test_addr_spec_with_space_before_params() -> None:
    address = parse_name_addr(
        "sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n"
    )
    assert address.tag == "1918181833n"
    assert str(address.uri) == "sip:vivekg@chair-dnrc.example.com"


def test_quoted_param_values_kept_as_written() -> None:
    address = parse_name_addr('<sip:a@b.com>;x="a;b\\"c";Q=0.5;lr')
    assert address.params == {"x": '"a;b\\"c"', "q": "0.5", "lr": None}
    assert str(address) == '<sip:a@b.com>;x="a;b\\"c";q=0.5;lr'


def test_non_sip_addresses() -> None:
    assert parse_name_addr("isbn:2983792873").uri == AbsoluteUri("isbn", "2983792873")
    assert parse_name_addr("<tel:+1234>;tag=a").uri == TelUri("+1234")


def test_control_characters_in_display_name() -> None:
    # RFC 4475 section 3.1.1.2 (intmeth): no truncation at NUL; quoted-pairs round trip.
    address = parse_name_addr('"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:a@example.com>')
    assert address.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert parse_name_addr(str(address)) == address


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Empty address"),
        ("   ", "Empty address"),
        ('"Mr. J. User <sip:j.user@example.com>', "Unterminated quoted display name"),
        ('"Joe" sip:joe@example.com', "Expected '<' after display name"),
        ('"Joe"', "Expected '<' after display name"),
        (
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "Display name must be quoted",
        ),
        ("Watson, Thomas <sip:t.watson@example.org>", "Display name must be quoted"),
        (
            '"Watson, Thomas" < sip:t.watson@example.org >',
            "Whitespace inside angle brackets",
        ),
        ("<sip:a@b.com", "Missing '>'"),
        (
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "must be in angle brackets",
        ),
        ("sip:a@b.com,sip:c@d.com", "must be in angle brackets"),
        ('"Joe" <sip:joe@example.org>;;;;', "Empty or bad parameter name"),
        ("<sip:a@b.com> x", "Expected ';'"),
        ("<sip:a@b.com>;tag=", "Missing value for parameter 'tag'"),
        ('<sip:a@b.com>;x="abc', "Unterminated quoted string in parameter 'x'"),
        ("<sip:a@b.com>;tag=a b", "Expected ';'"),
        ("<bad uri>", "Whitespace inside angle brackets|without a valid scheme"),
        ("<>", "without a valid scheme"),
    ],
)
def test_bad_name_addr(text: str, message: str) -> None:
    with pytest.raises(BadMessage, match=message):
        parse_name_addr(text)


def test_name_addr_render_round_trip() -> None:
    address = NameAddr(
        uri=parse_uri("sip:bob@biloxi.com;transport=tcp"),
        display_name='Bob "the builder"',
        params={"tag": "abc", "expires": "60"},
    )
    text = str(address)
    assert (
        text
        == '"Bob \\"the builder\\"" <sip:bob@biloxi.com;transport=tcp>;tag=abc;expires=60'
    )
    assert parse_name_addr(text) == address


def test_sip_uri_helper() -> None:
    assert sip_uri(parse_name_addr("<sip:a@b.com>")).user == "a"
    with pytest.raises(BadMessage, match="Not a SIP URI"):
        sip_uri(parse_name_addr("<tel:+1>"))


# --- quoted strings and parameters -----------------------------------------------------


def test_quote_string() -> None:
    assert quote_string("plain text") == '"plain text"'
    assert quote_string('a"b\\c\td\x00') == '"a\\"b\\\\c\td\\\x00"'
    with pytest.raises(LocalProtocolError):
        quote_string("evil\r\nVia: x")
    with pytest.raises(LocalProtocolError):
        quote_string("line\n")


def test_unquote_string() -> None:
    assert unquote_string('"abc"') == "abc"
    assert unquote_string('"a\\"b\\\\c"') == 'a"b\\c'


@given(
    st.text(alphabet=st.characters(blacklist_characters="\r\n", max_codepoint=0x7FF))
)
def test_quote_unquote_round_trip(text: str) -> None:
    assert unquote_string(quote_string(text)) == text


def test_parse_params() -> None:
    assert parse_params("") == {}
    assert parse_params("  ") == {}
    assert parse_params(" ; A = 1 ;b;C=[2001:db8::1]") == {
        "a": "1",
        "b": None,
        "c": "[2001:db8::1]",
    }
    assert parse_params("xx;a=1", 2) == {"a": "1"}
    assert render_params({"a": "1", "b": None}) == ";a=1;b"


def _params_by_pattern(text: str, pos: int = 0) -> dict[str, str | None] | str:
    """The pattern loop parse_params falls back to, or the error it raises."""
    try:
        return headers_module._parse_params_by_pattern(text, pos)
    except BadMessage as error:
        return f"error: {error}"


def _params(text: str, pos: int = 0) -> dict[str, str | None] | str:
    try:
        return parse_params(text, pos)
    except BadMessage as error:
        return f"error: {error}"


@pytest.mark.parametrize(
    "text",
    [
        ";branch=z9hG4bK776asdhds;rport",
        ";Branch=z9hG4bK.a-b;received=192.0.2.1;rport=5060",
        ";maddr=[2001:db8::1];x-Tag=a~b'c;lr",
        ";a=1;a=2",
        ";tag=é",
        ";tag=a=b",
        ";tag=",
        ";;tag=1",
        ";tag=1;",
        "; tag=1",
        ";tag =1",
        ";tag= 1",
        ';tag="quoted;value"',
        ";t@g=1",
        ";tag=1 x",
        ";",
        "x;a=1",
    ],
)
def test_parse_params_split_fast_path_matches_pattern_loop(text: str) -> None:
    assert _params(text) == _params_by_pattern(text)
    assert _params(f"<sip:a@b>{text}", 9) == _params_by_pattern(f"<sip:a@b>{text}", 9)


@given(st.text(alphabet=';= \t"aZ09.:[]-@é', max_size=20))
def test_parse_params_fast_path_agrees_on_any_text(text: str) -> None:
    assert _params(text) == _params_by_pattern(text)


def test_split_header_values() -> None:
    assert split_header_values("a, b ,c") == ["a", "b", "c"]
    assert split_header_values("a,,b") == ["a", "", "b"]
    assert split_header_values('"x, y" <sip:a@b.com>, <sip:c@d.com;p="1,2">') == [
        '"x, y" <sip:a@b.com>',
        '<sip:c@d.com;p="1,2">',
    ]
    assert split_header_values('"a\\", b" <sip:a@b.com>, c') == [
        '"a\\", b" <sip:a@b.com>',
        "c",
    ]
    assert split_header_values("<sip:a@b.com?x=1,2>,<sip:c@d.com>") == [
        "<sip:a@b.com?x=1,2>",
        "<sip:c@d.com>",
    ]
    assert split_header_values('x;q="1,2"') == ['x;q="1,2"']


# --- Via ---------------------------------------------------------------------------------


def test_parse_via() -> None:
    via = parse_via("SIP/2.0/udp PC33.Atlanta.com:5066;Branch=z9hG4bK776asdhds;rport")
    assert via == Via(
        transport="UDP",
        host="pc33.atlanta.com",
        port=5066,
        params={"branch": "z9hG4bK776asdhds", "rport": None},
    )
    assert via.protocol == "SIP/2.0"
    assert via.branch == "z9hG4bK776asdhds"
    assert via.rport == ""
    assert via.received is None
    assert via.sent_by == "pc33.atlanta.com:5066"
    assert str(via) == "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport"


def test_via_with_lws_everywhere() -> None:
    # RFC 4475 section 3.1.1.1 (wsinv), after unfolding.
    via = parse_via("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw")
    assert (via.transport, via.host, via.port, via.branch) == (
        "UDP",
        "192.0.2.2",
        None,
        "390skdjuw",
    )
    via = parse_via("SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239")
    assert via.branch == "z9hG4bK30239"
    via = parse_via("SIP/2.0/TCP host.com : 5070 ;x")
    assert via.port == 5070
    assert via.params == {"x": None}


def test_via_ipv6_and_received() -> None:
    # RFC 5118 sections 4.5 and 4.7.
    via = parse_via("SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111")
    assert (via.host, via.port) == ("[2001:db8::9:1]", 6050)
    with_delim = parse_via(
        "SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=b"
    )
    assert with_delim.received == "2001:db8::9:255"
    bare = parse_via(
        "SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3"
    )
    assert bare.received == "2001:db8::9:255"
    assert bare.branch == "z9hG4bKas3"
    assert parse_via("SIP/2.0/TCP h.com;received=192.0.2.200").received == "192.0.2.200"


def test_via_rport() -> None:
    assert parse_via("SIP/2.0/UDP h.com").rport is None
    assert parse_via("SIP/2.0/UDP h.com;rport=5070").rport == 5070
    with pytest.raises(BadMessage, match="Bad rport"):
        _ = parse_via("SIP/2.0/UDP h.com;rport=x").rport


def test_via_other_protocols() -> None:
    via = parse_via("SIP/7.0/UNKNOWN h.com")
    assert via.protocol == "SIP/7.0"
    assert via.transport == "UNKNOWN"
    via = Via(transport="TLS", host="[::1]", params={"branch": "z9hG4bKx"})
    assert str(via) == "SIP/2.0/TLS [::1];branch=z9hG4bKx"
    assert parse_via(str(via)) == via


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Bad Via sent-protocol"),
        ("SIP/2.0 h.com", "Bad Via sent-protocol"),
        ("SIP/2.0/UDPh.com", "Bad Via sent-protocol|Missing space"),
        ("SIP/2.0/UDP;branch=x", "Missing space"),
        ("SIP/2.0/UDP ", "Missing space|Missing Via sent-by host"),
        ("SIP/2.0/UDP  ;branch=x", "Missing Via sent-by host"),
        ("SIP/2.0/UDP h.com:", "Bad Via port"),
        ("SIP/2.0/UDP h.com:99999", "Bad Via port"),
        ("SIP/2.0/UDP h_x.com", "Bad host"),
        ("SIP/2.0/UDP [2001:db8::1", "Bad IPv6 reference"),
        ("SIP/2.0/UDP 192.0.2.15;;", "Empty or bad parameter name"),
        ("SIP/2.0/UDP h.com;branch=", "Missing value"),
    ],
)
def test_bad_via(text: str, message: str) -> None:
    with pytest.raises(BadMessage, match=message):
        parse_via(text)


# --- CSeq --------------------------------------------------------------------------------


def test_parse_cseq() -> None:
    assert parse_cseq("0009 \t INVITE") == CSeq(number=9, method="INVITE")
    assert parse_cseq(" 4294967295 ACK ") == CSeq(number=4294967295, method="ACK")
    assert str(CSeq(number=1, method="BYE")) == "1 BYE"
    assert parse_cseq("00000000000000000001 X").number == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Bad CSeq"),
        ("INVITE", "Bad CSeq"),
        ("1", "Bad CSeq"),
        ("1INVITE", "Bad CSeq"),
        ("-1 INVITE", "Bad CSeq"),
        ("1 INVITE x", "Bad CSeq"),
        ("4294967296 INVITE", "does not fit 32 bits"),
        ("36893488147419103232 INVITE", "does not fit 32 bits"),
        ("9" * 5000 + " INVITE", "does not fit 32 bits"),
    ],
)
def test_bad_cseq(text: str, message: str) -> None:
    with pytest.raises(BadMessage, match=message):
        parse_cseq(text)


# --- the parse memos ---------------------------------------------------------------------


def test_repeated_name_addr_parses_are_independent() -> None:
    text = '"Alice" <sip:alice@example.com;transport=tcp>;tag=abc;expires=60'
    first = parse_name_addr(text)
    second = parse_name_addr(text)
    assert first == second
    assert first is not second
    assert first.uri is not second.uri
    first.params.pop("tag")
    assert isinstance(first.uri, SipUri)
    first.uri.params.clear()
    first.uri.user = "mallory"
    third = parse_name_addr(text)
    assert third == second
    assert third.tag == "abc"


def test_known_address_with_a_new_tag() -> None:
    parse_name_addr("<sip:bob@example.com>;tag=one")
    address = parse_name_addr("<sip:bob@example.com>;tag=two;x")
    assert address.params == {"tag": "two", "x": None}
    assert str(address) == "<sip:bob@example.com>;tag=two;x"
    with pytest.raises(BadMessage):
        parse_name_addr("<sip:bob@example.com>;tag=two;;")
    with pytest.raises(BadMessage, match="Expected ';'"):
        parse_name_addr("<sip:bob@example.com> junk")


@pytest.mark.parametrize(
    ("text", "display_name", "params"),
    [
        # ">" inside the display name and inside a parameter value: the memo key (the
        # text up to the last ">") must never stand for a different split.
        ('"a>b" <sip:x@example.com>;tag=1', "a>b", {"tag": "1"}),
        ('<sip:x@example.com>;p="y>z"', None, {"p": '"y>z"'}),
        ('"a>b" <sip:x@example.com>;p="y>z"', "a>b", {"p": '"y>z"'}),
    ],
)
def test_angle_brackets_in_quotes(
    text: str, display_name: str | None, params: dict[str, str | None]
) -> None:
    for _ in range(2):
        address = parse_name_addr(text)
        assert address.display_name == display_name
        assert address.uri == parse_uri("sip:x@example.com")
        assert address.params == params


def test_repeated_via_parses_are_independent() -> None:
    first = parse_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport")
    first.params["received"] = "192.0.2.1"
    second = parse_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2;rport")
    assert second.params == {"branch": "z9hG4bK2", "rport": None}
    assert (second.transport, second.host, second.port) == ("UDP", "10.0.0.1", 5060)
    assert second.protocol == "SIP/2.0"
    bare = parse_via("SIP/2.0/UDP 10.0.0.1:5060")
    assert bare.params == {}
    assert bare.sent_by == "10.0.0.1:5060"


def test_via_head_memo_keeps_errors() -> None:
    # The head parse stops before "junk": such a head is never memoised, so the error
    # is the same every time and a well-formed Via with that host still parses.
    for _ in range(2):
        with pytest.raises(BadMessage, match="Expected ';'"):
            parse_via("SIP/2.0/UDP 10.0.0.9:5060 junk;branch=z9hG4bK1")
        with pytest.raises(BadMessage, match="Expected ';' at '6;branch"):
            parse_via("SIP/2.0/UDP 10.0.0.9:123456;branch=z9hG4bK1")
    via = parse_via("SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK1")
    assert via.branch == "z9hG4bK1"
    for _ in range(2):
        with pytest.raises(BadMessage, match="Empty or bad parameter name"):
            parse_via("SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK1 ;;")


def test_repeated_cseq_is_shared_and_frozen() -> None:
    assert parse_cseq("7 INVITE") is parse_cseq("7 INVITE")
    assert parse_cseq(" 7  INVITE ") == CSeq(number=7, method="INVITE")


def test_name_addr_copy_is_independent() -> None:
    address = parse_name_addr("<sip:carol@example.com>;tag=t")
    clone = address.copy()
    assert clone == address
    clone.params["tag"] = "u"
    assert isinstance(clone.uri, SipUri)
    clone.uri.params["lr"] = None
    assert address.tag == "t"
    assert isinstance(address.uri, SipUri)
    assert address.uri.params == {}


def test_name_addr_copy_is_what_init_builds() -> None:
    # copy() sets the fields on a bare instance: it must hold what __init__ would.
    address = parse_name_addr('"Carol" <sip:carol@example.com;lr>;tag=t')
    clone = address.copy()
    built = NameAddr(address.uri.copy(), address.display_name, dict(address.params))
    assert vars(clone) == vars(built)
    assert list(vars(clone)) == list(vars(built))
    assert repr(clone) == repr(built)
    assert clone.uri is not address.uri
    assert clone.params is not address.params
