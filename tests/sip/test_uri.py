"""Tests for switch.sip.uri: SIP/SIPS/tel/absolute URIs (RFC 3261 19.1, RFC 5118)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.sip import uri as uri_module
from switch.sip.errors import BadMessage
from switch.sip.uri import (
    AbsoluteUri,
    SipUri,
    TelUri,
    escape,
    normalize_host,
    parse_uri,
    unescape,
)


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


# --- parsing SIP URIs --------------------------------------------------------------------


def test_minimal_sip_uri() -> None:
    uri = sip("sip:example.com")
    assert uri == SipUri(scheme="sip", user=None, password=None, host="example.com")
    assert uri.port is None
    assert uri.params == {}
    assert uri.headers == {}
    assert uri.host_port == "example.com"
    assert uri.transport is None
    assert str(uri) == "sip:example.com"


def test_full_sip_uri() -> None:
    uri = sip(
        "SIPS:Alice:secret@Atlanta.COM:5061;Transport=TCP;lr;Maddr=x.org?Subject=hi&p="
    )
    assert uri.scheme == "sips"
    assert uri.user == "Alice"
    assert uri.password == "secret"
    assert uri.host == "atlanta.com"
    assert uri.port == 5061
    assert uri.params == {"transport": "TCP", "lr": None, "maddr": "x.org"}
    assert uri.transport == "tcp"
    assert uri.headers == {"Subject": "hi", "p": ""}
    assert uri.host_port == "atlanta.com:5061"
    assert (
        str(uri)
        == "sips:Alice:secret@atlanta.com:5061;transport=TCP;lr;maddr=x.org?Subject=hi&p="
    )


def test_empty_password_is_kept() -> None:
    uri = sip("sip:alice:@h.com")
    assert uri.password == ""
    assert str(uri) == "sip:alice:@h.com"


def test_escapes_are_undone_once() -> None:
    # RFC 4475 section 3.1.1.3 (esc01): "%25%34%31" unescapes to "%41", not "A".
    uri = sip("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert uri.user == "caller"
    assert uri.params == {"lr": None, "name": "value%41"}
    assert str(uri) == "sip:caller@host5.example.net;lr;name=value%2541"


def test_escaped_reserved_characters_in_user_are_reescaped() -> None:
    uri = sip("sip:sips%3Auser%40example.com@example.net")
    assert uri.user == "sips:user@example.com"
    assert str(uri) == "sip:sips%3Auser%40example.com@example.net"


def test_escaped_nul_is_not_a_terminator() -> None:
    one = sip("sip:%00@host5.example.com")
    two = sip("sip:%00%00@host5.example.com")
    assert one.user == "\x00"
    assert two.user == "\x00\x00"
    assert not one.equivalent(two)
    assert str(two) == "sip:%00%00@host5.example.com"


def test_semicolon_in_user_part() -> None:
    # RFC 4475 section 3.1.1.9 (semiuri): the ";" belongs to the user part.
    uri = sip("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u@example.net"
    assert uri.host == "example.com"
    assert uri.params == {}


def test_unusual_user_and_password() -> None:
    # RFC 4475 section 3.1.1.2 (intmeth) Request-URI.
    text = (
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
        "(doesn't-it)@example.com"
    )
    uri = sip(text)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert str(uri) == text


def test_uri_headers_are_unescaped() -> None:
    uri = sip("sip:user@example.com?Route=%3Csip:sip.example.com%3E")
    assert uri.headers == {"Route": "<sip:sip.example.com>"}
    assert str(uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def test_non_ascii_is_escaped_as_utf8() -> None:
    uri = SipUri(scheme="sip", user="jos\u00e9", password=None, host="h.com")
    assert str(uri) == "sip:jos%C3%A9@h.com"
    assert sip(str(uri)).user == "jos\u00e9"


def test_invalid_utf8_escape_round_trips() -> None:
    uri = sip("sip:%FF%41@h.com")
    assert str(uri) == "sip:%FFA@h.com"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:[2001:db8::10]", "[2001:db8::10]", None),
        ("sip:[2001:DB8::10]:5070", "[2001:db8::10]", 5070),
        # RFC 5118 section 4.3: a port inside the brackets is part of the address.
        ("sip:[2001:db8::10:5070]", "[2001:db8::10:5070]", None),
        # RFC 5118 section 4.10: the three-colon form is tolerated and read as "::".
        ("sip:user@[2001:db8:::192.0.2.1]", "[2001:db8::192.0.2.1]", None),
        ("sip:user@[2001:db8::192.0.2.1]", "[2001:db8::192.0.2.1]", None),
        ("sip:[::ffff:192.0.2.10]:19823", "[::ffff:192.0.2.10]", 19823),
        ("sip:192.0.2.1:5060;lr", "192.0.2.1", 5060),
        ("sip:host.example.com.", "host.example.com.", None),
        ("sip:a-b.c0m:0", "a-b.c0m", 0),
    ],
)
def test_hosts(text: str, host: str, port: int | None) -> None:
    uri = sip(text)
    assert uri.host == host
    assert uri.port == port


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "without a valid scheme"),
        ("example.com", "without a valid scheme"),
        (":example.com", "without a valid scheme"),
        ("<sip:user@example.com>", "without a valid scheme"),
        ("1sip:x", "without a valid scheme"),
        ("sip:", "without a host"),
        ("sip:user@", "without a host"),
        ("sip:@example.com", "Bad user part"),
        ("sip:us er@example.com", "Bad user part"),
        ("sip:user%4@example.com", "Bad user part"),
        ("sip:user:p@ss@example.com", "Bad host"),
        ("sip:user:p<w@example.com", "Bad password"),
        ("sip:2001:db8::10", "IPv6 address without brackets"),
        ("sip:[2001:db8::10", "Unclosed IPv6 reference"),
        ("sip:[2001:db8::10]x", "Bad port"),
        ("sip:[]", "Bad IPv6 reference"),
        ("sip:[2001:db8::10::1]", "Bad IPv6 reference"),
        ("sip:[fe80::1%eth0]", "Bad IPv6 reference"),
        ("sip:[:::]", "Bad IPv6 reference"),
        ("sip:a@1.2.3.400", "Bad IPv4 address"),
        ("sip:a@example.com:", "Bad port"),
        ("sip:a@example.com:99999", "Port out of range"),
        ("sip:a@example.com:123456", "Bad port"),
        ("sip:a@example.com:5o60", "Bad port"),
        ("sip:a@exa_mple.com", "Bad host"),
        ("sip:a@-example.com", "Bad host"),
        ("sip:a@example..com", "Bad host"),
        ("sip:a@example.123", "last label must start with a letter"),
        ("sip:a@.", "Bad host"),
        ("sip:user@example.com; lr", "Bad URI parameter"),
        ("sip:user@example.com;;lr", "Bad URI parameter"),
        ("sip:user@example.com;maddr=", "Bad URI parameter value"),
        ("sip:user@example.com;a=b=c", "Bad URI parameter value"),
        ("sip:user@example.com?Route", "Bad URI header"),
        ("sip:user@example.com?=x", "Bad URI header"),
        ("sip:user@example.com?a=<b>", "Bad URI header"),
        ("tel:", "Bad telephone number"),
        ("tel:+1 555", "Bad telephone number"),
        ("tel:+1555;;x", "Bad URI parameter"),
        ("http:", "Bad 'http' URI"),
        ("http://exa mple.com", "Bad 'http' URI"),
        ("urn:a<b", "Bad 'urn' URI"),
    ],
)
def test_bad_uris(text: str, message: str) -> None:
    with pytest.raises(BadMessage, match=message) as info:
        parse_uri(text)
    assert info.value.status == 400


# --- tel and absolute URIs ------------------------------------------------------------


def test_tel_uri() -> None:
    uri = parse_uri("tel:+1-201-555-0123;Phone-Context=example.com;isub=12")
    assert uri == TelUri(
        number="+1-201-555-0123", params={"phone-context": "example.com", "isub": "12"}
    )
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com;isub=12"
    assert parse_uri("TEL:911") == TelUri(number="911")


def test_tel_equivalence() -> None:
    a = parse_uri("tel:+1-201-555-0123;foo=Bar")
    b = parse_uri("tel:+1(201)5550123;foo=bar")
    c = parse_uri("tel:+1-201-555-0124;foo=bar")
    assert a.equivalent(b)
    assert not a.equivalent(c)
    assert not a.equivalent(parse_uri("tel:+1-201-555-0123"))
    assert not a.equivalent(parse_uri("sip:+12015550123@h.com"))


@pytest.mark.parametrize(
    "text",
    [
        "nobodyKnowsThisScheme:totallyopaquecontent",
        "soap.beep://192.0.2.103:3002",
        "isbn:2983792873",
        "http://www.example.com",
        "name:John_Smith",
        "urn:service:sos",
        "http://[2001:db8::1]:80/x?y=%20",
    ],
)
def test_absolute_uris(text: str) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, AbsoluteUri)
    scheme, _, rest = text.partition(":")
    assert uri.scheme == scheme.lower()
    assert uri.rest == rest
    assert str(uri) == f"{scheme.lower()}:{rest}"
    assert uri.equivalent(parse_uri(text))
    assert not uri.equivalent(parse_uri("sip:x.com"))


# --- equivalence (RFC 3261 section 19.1.4) ---------------------------------------------


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:alice@AtLanTa.CoM;Transport=tcp",
        ),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
        ("sip:[2001:db8::1]", "sip:[2001:DB8:0::1]"),
        ("sip:a@h.com;lr", "sip:a@h.com;LR"),
    ],
)
def test_equivalent(left: str, right: str) -> None:
    assert sip(left).equivalent(sip(right))
    assert sip(right).equivalent(sip(left))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
        ("sip:bob:x@biloxi.com", "sip:bob@biloxi.com"),
        ("sip:bob@biloxi.com;user=phone", "sip:bob@biloxi.com"),
        ("sip:bob@biloxi.com;maddr=a.com", "sip:bob@biloxi.com;maddr=b.com"),
        ("sip:bob@biloxi.com;ttl=1", "sip:bob@biloxi.com;lr"),
        ("sip:bob@biloxi.com;lr", "sip:bob@biloxi.com;lr=x"),
        ("sip:bob@biloxi.com?a=b", "sip:bob@biloxi.com?a=B"),
    ],
)
def test_not_equivalent(left: str, right: str) -> None:
    assert not sip(left).equivalent(sip(right))
    assert not sip(right).equivalent(sip(left))


def test_sip_uri_not_equivalent_to_other_types() -> None:
    assert not sip("sip:a@b.com").equivalent(parse_uri("tel:123"))
    assert not sip("sip:a@b.com").equivalent("sip:a@b.com")


# --- helpers ---------------------------------------------------------------------------


def test_normalize_host() -> None:
    assert normalize_host("EXAMPLE.com") == "example.com"
    assert normalize_host("[2001:DB8::1]") == "[2001:db8::1]"
    assert normalize_host("10.0.0.1") == "10.0.0.1"
    with pytest.raises(BadMessage):
        normalize_host("")
    with pytest.raises(BadMessage):
        normalize_host("[::1")


def test_transport_without_value() -> None:
    assert sip("sip:h.com;transport").transport is None


def test_escape_and_unescape() -> None:
    safe = frozenset("abc")
    assert escape("abc", safe) == "abc"
    assert escape("a b", safe) == "a%20b"
    assert unescape("plain") == "plain"
    assert unescape("%41%zz") == "A%zz"


_uri_text = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=12
)


@given(
    user=st.none() | _uri_text.filter(bool),
    password=st.none() | _uri_text,
    port=st.none() | st.integers(min_value=0, max_value=65535),
    params=st.dictionaries(
        _uri_text.filter(bool).map(str.lower),
        st.none() | _uri_text.filter(bool),
        max_size=3,
    ),
    headers=st.dictionaries(_uri_text.filter(bool), _uri_text, max_size=3),
    host=st.sampled_from(["example.com", "192.0.2.1", "[2001:db8::1]", "a-1.b"]),
)
def test_render_parse_round_trip(
    user: str | None,
    password: str | None,
    port: int | None,
    params: dict[str, str | None],
    headers: dict[str, str],
    host: str,
) -> None:
    uri = SipUri(
        scheme="sip",
        user=user,
        password=password if user is not None else None,
        host=host,
        port=port,
        params=params,
        headers=headers,
    )
    parsed = parse_uri(str(uri))
    assert parsed == uri
    assert str(parsed) == str(uri)


# --- the parse memo ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "sip:1002@127.0.0.1:5060;transport=udp?subject=hi",
        "tel:+1-201-555-0123;phone-context=example.com",
        "urn:service:sos",
    ],
)
def test_repeated_parses_are_equal_but_independent(text: str) -> None:
    first = parse_uri(text)
    second = parse_uri(text)
    assert first == second
    assert first is not second
    if isinstance(first, SipUri):
        first.params["lr"] = None
        first.headers.clear()
        first.host = "elsewhere.example.com"
    elif isinstance(first, TelUri):
        first.params.clear()
    else:
        first.rest = "changed"
    assert parse_uri(text) == second
    assert parse_uri(text) != first


def test_copy_is_deep_enough_to_edit() -> None:
    for uri in (
        sip("sip:alice:pw@example.com:5070;maddr=10.0.0.1?x=y"),
        parse_uri("tel:+15551234;ext=1"),
        parse_uri("mailto:alice@example.com"),
    ):
        clone = uri.copy()
        assert clone == uri
        assert clone is not uri
        assert str(clone) == str(uri)
        if not isinstance(clone, AbsoluteUri):
            assert not isinstance(uri, AbsoluteUri)
            clone.params["new"] = "1"
            assert "new" not in uri.params
        if isinstance(clone, SipUri):
            assert isinstance(uri, SipUri)
            clone.headers["h"] = "v"
            assert "h" not in uri.headers


def test_sip_uri_copy_is_what_init_builds() -> None:
    # copy() sets the fields on a bare instance: it must hold what __init__ would.
    for text in ("sip:alice:pw@example.com:5070;maddr=10.0.0.1?x=y", "sips:h"):
        uri = sip(text)
        clone = uri.copy()
        built = SipUri(
            uri.scheme, uri.user, uri.password, uri.host, uri.port,
            dict(uri.params), dict(uri.headers),
        )  # fmt: skip
        assert vars(clone) == vars(built)
        assert list(vars(clone)) == list(vars(built))
        assert repr(clone) == repr(built)
        assert clone.headers is not uri.headers


def test_errors_are_the_same_every_time() -> None:
    for _ in range(3):
        with pytest.raises(BadMessage, match="Bad port"):
            parse_uri("sip:alice@example.com:port")


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uri_module, "URI_CACHE_SIZE", 8)
    monkeypatch.setattr(uri_module, "_URI_CACHE", {})
    for number in range(20):
        assert sip(f"sip:{number}@example.com").user == str(number)
        assert len(uri_module._URI_CACHE) <= 8
    long_text = "sip:" + "a" * uri_module.MAX_CACHED_URI_LENGTH + "@example.com"
    assert sip(long_text).host == "example.com"
    assert long_text not in uri_module._URI_CACHE
