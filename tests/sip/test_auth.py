"""Tests for switch.sip.auth: Digest challenge/credentials syntax, server and client."""

from __future__ import annotations

import base64
import contextlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.sip.auth import (
    Algorithm,
    AuthResult,
    DigestChallenge,
    DigestClient,
    DigestCredentials,
    DigestServer,
    format_challenge,
    format_credentials,
    ha1,
    parse_auth_params,
    parse_challenge,
    parse_credentials,
    request_digest,
)
from switch.sip.errors import BadMessage, LocalProtocolError

SECRET = b"0123456789abcdef-test-secret"
REALM = "pbx.example.com"
URI = "sip:1000@pbx.example.com"
USERS = {"alice": "wonderland", "bob": "builder"}

# RFC 7616 section 3.9.1 (the HTTP example; the digest arithmetic is the same in SIP).
RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_MD5 = "8ca523f5e9506fed4657c9700eebdbec"
RFC7616_SHA256 = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def lookup(username: str, realm: str, algorithm: str) -> str | None:
    password = USERS.get(username)
    return None if password is None else ha1(username, realm, password, algorithm)


def make_server(**kwargs: object) -> DigestServer:
    return DigestServer(realm=REALM, secret=SECRET, **kwargs)  # type: ignore[arg-type]


def verify(
    server: DigestServer,
    authorization: str,
    *,
    now: float = 1000.0,
    method: str = "INVITE",
    body: bytes = b"",
    request_uri: str | None = URI,
) -> AuthResult:
    return server.verify(
        method=method,
        authorization=authorization,
        lookup_ha1=lookup,
        now=now,
        body=body,
        request_uri=request_uri,
    )


def login(
    server: DigestServer,
    *,
    username: str = "alice",
    password: str = "wonderland",
    now: float = 1000.0,
    method: str = "INVITE",
) -> tuple[DigestClient, str]:
    client = DigestClient(username=username, password=password)
    (answer,) = client.authorize(server.challenge(now), method=method, uri=URI)
    return client, answer


def with_param(value: str, name: str, new: str) -> str:
    """Replace one quoted parameter of a credentials value."""
    credentials = parse_credentials(value)
    fields = {
        "username": credentials.username,
        "realm": credentials.realm,
        "nonce": credentials.nonce,
        "uri": credentials.uri,
        "response": credentials.response,
        "opaque": credentials.opaque,
        "cnonce": credentials.cnonce,
    }
    fields[name] = new
    return format_credentials(
        DigestCredentials(
            username=str(fields["username"]),
            realm=str(fields["realm"]),
            nonce=str(fields["nonce"]),
            uri=str(fields["uri"]),
            response=str(fields["response"]),
            algorithm=credentials.algorithm,
            cnonce=fields["cnonce"],
            opaque=fields["opaque"],
            qop=credentials.qop,
            nc=credentials.nc,
        )
    )


# --- RFC test vectors -------------------------------------------------------------------


def test_rfc2617_md5_example() -> None:
    # RFC 2617 section 3.5.
    stored = ha1("Mufasa", "testrealm@host.com", "Circle Of Life", "MD5")
    response = request_digest(
        algorithm="MD5",
        ha1=stored,
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc=1,
        cnonce="0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(
    ("algorithm", "expected"), [("MD5", RFC7616_MD5), ("SHA-256", RFC7616_SHA256)]
)
def test_rfc7616_example(algorithm: str, expected: str) -> None:
    challenge = parse_challenge(RFC7616_CHALLENGE)
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.algorithm == "SHA-256"
    client = DigestClient(
        username="Mufasa",
        password="Circle of Life",
        cnonce_factory=lambda: RFC7616_CNONCE,
    )
    md5_challenge = RFC7616_CHALLENGE.replace(
        "algorithm=SHA-256", f"algorithm={algorithm}"
    )
    (answer,) = client.authorize([md5_challenge], method="GET", uri="/dir/index.html")
    credentials = parse_credentials(answer)
    assert credentials.response == expected
    assert credentials.nc == 1
    assert credentials.qop == "auth"
    assert credentials.cnonce == RFC7616_CNONCE
    assert credentials.opaque == challenge.opaque
    assert credentials.algorithm == algorithm


def test_rfc7616_credentials_parse() -> None:
    value = (
        'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        f'algorithm=SHA-256, nonce="{RFC7616_NONCE}", nc=00000001, '
        f'cnonce="{RFC7616_CNONCE}", qop=auth, response="{RFC7616_SHA256}", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    credentials = parse_credentials(value)
    stored = ha1("Mufasa", "http-auth@example.org", "Circle of Life", "sha-256")
    assert credentials.response == request_digest(
        algorithm=credentials.algorithm,
        ha1=stored,
        nonce=credentials.nonce,
        method="GET",
        uri=credentials.uri,
        qop=credentials.qop,
        nc=credentials.nc,
        cnonce=credentials.cnonce,
    )
    assert parse_credentials(format_credentials(credentials)) == credentials


def test_ha1_algorithms() -> None:
    # The HA1 of the RFC 2617 section 3.5 example.
    expected = "939e7578ed9e3c518a452acee763bce9"
    assert ha1("Mufasa", "testrealm@host.com", "Circle Of Life", "MD5") == expected
    assert len(ha1("a", "r", "p", "SHA-256")) == 64
    assert ha1("a", "r", "p", "sha-256") == ha1("a", "r", "p", Algorithm.SHA_256)
    with pytest.raises(LocalProtocolError, match="unsupported digest algorithm"):
        ha1("a", "r", "p", "SHA-256-sess")


def digest(
    qop: str | None, nc: int | None = 1, cnonce: str | None = "c", body: bytes = b""
) -> str:
    return request_digest(
        algorithm="MD5",
        ha1="0" * 32,
        nonce="n",
        method="M",
        uri="u",
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        body=body,
    )


def test_request_digest_auth_int_and_misuse() -> None:
    assert digest("auth-int", body=b"v=0") != digest("auth-int")
    assert digest("auth", body=b"v=0") == digest("auth")
    with pytest.raises(LocalProtocolError, match="needs nc and cnonce"):
        digest("auth", nc=None)
    with pytest.raises(LocalProtocolError, match="needs nc and cnonce"):
        digest("auth", cnonce=None)
    with pytest.raises(LocalProtocolError):
        digest("bogus")


# --- Syntax -----------------------------------------------------------------------------


def test_parse_challenge_all_fields() -> None:
    value = (
        'digest  REALM="a \\"quoted\\" realm" ,Nonce=abc, opaque="o", stale=TRUE, '
        'domain="sip:a sip:b", algorithm="md5", qop="Auth , auth-int", x-extra=tok'
    )
    challenge = parse_challenge(value)
    assert challenge == DigestChallenge(
        realm='a "quoted" realm',
        nonce="abc",
        algorithm="MD5",
        qop=("auth", "auth-int"),
        opaque="o",
        stale=True,
        domain="sip:a sip:b",
        extra=(("x-extra", "tok"),),
    )
    assert parse_challenge(format_challenge(challenge)) == challenge


def test_parse_challenge_defaults_and_unknown_algorithm() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n", algorithm=SHA-512-256')
    assert challenge.algorithm == "SHA-512-256"
    assert challenge.qop == ()
    assert not challenge.stale
    assert parse_challenge('Digest realm="r",nonce="n"').algorithm == "MD5"
    assert not parse_challenge('Digest realm="r", nonce="n", stale=false').stale
    assert "stale" not in format_challenge(
        parse_challenge('Digest realm="r", nonce="n"')
    )


def test_parse_credentials_without_qop() -> None:
    credentials = parse_credentials(
        'Digest username="u", realm="r", nonce="n", uri="sip:x", response="ABCDEF"'
    )
    assert credentials.qop is None and credentials.nc is None
    assert credentials.response == "abcdef"
    assert credentials.algorithm == "MD5"
    assert parse_credentials(format_credentials(credentials)) == credentials


def test_parse_auth_params_generic_scheme() -> None:
    assert parse_auth_params('Basic realm="x"', what="t") == ("Basic", {"realm": "x"})
    with pytest.raises(
        BadMessage, match="t: unsupported authentication scheme 'Basic'"
    ):
        parse_auth_params('Basic realm="x"', what="t", scheme="digest")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "expected an authentication scheme at offset 0"),
        ("   ", "expected an authentication scheme at offset 3"),
        ("Digest", "no parameters after scheme 'Digest'"),
        ("Digest   ", "no parameters after scheme 'Digest'"),
        ('Digest,realm="r"', "expected whitespace after scheme at offset 6"),
        ('Digest ="r"', "expected a parameter name at offset 7"),
        ('Digest realm"r"', "expected '=' after 'realm' at offset 12"),
        ("Digest realm", "expected '=' after 'realm' at offset 12"),
        ("Digest realm=", "expected a value for 'realm' at offset 13"),
        ("Digest realm=,", "expected a value for 'realm' at offset 13"),
        ('Digest realm="r', "unterminated quoted string at offset 13"),
        ('Digest realm="r\\', "unterminated quoted string at offset 13"),
        ('Digest realm="r\\\n"', "invalid quoted-pair at offset 15"),
        ('Digest realm="r\\é"', "invalid quoted-pair at offset 15"),
        ('Digest realm="r\x01"', "control character in quoted string at offset 15"),
        ('Digest realm="r\x7f"', "control character in quoted string at offset 15"),
        ('Digest realm="r" nonce="n"', "expected ',' after 'realm' at offset 17"),
        ('Digest realm="r",', "expected a parameter name at offset 17"),
        ('Digest realm="r", REALM="s"', "duplicate parameter 'realm'"),
        ('Basic realm="r"', "unsupported authentication scheme 'Basic'"),
        ('Digest nonce="n"', "missing parameter 'realm'"),
        ('Digest realm="r"', "missing parameter 'nonce'"),
        ('Digest realm="r", nonce="n", stale=maybe', "stale must be true or false"),
        ('Digest realm="r", nonce="n", qop="auth,,x"', "invalid qop-options"),
        ('Digest realm="r", nonce="n", qop="a b"', "invalid qop-options"),
    ],
)
def test_parse_challenge_errors(value: str, message: str) -> None:
    with pytest.raises(BadMessage) as info:
        parse_challenge(value)
    assert message in str(info.value)
    assert info.value.status == 400


GOOD_CREDENTIALS = {
    "username": '"u"',
    "realm": '"r"',
    "nonce": '"n"',
    "uri": '"sip:x"',
    "response": '"0123abcd"',
    "qop": "auth",
    "nc": "00000001",
    "cnonce": '"c"',
}


def credentials_value(**changes: str | None) -> str:
    params = {**GOOD_CREDENTIALS, **changes}
    return "Digest " + ", ".join(f"{k}={v}" for k, v in params.items() if v is not None)


@pytest.mark.parametrize("missing", ["username", "realm", "nonce", "uri", "response"])
def test_parse_credentials_missing(missing: str) -> None:
    with pytest.raises(BadMessage, match=f"missing parameter '{missing}'"):
        parse_credentials(credentials_value(**{missing: None}))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cnonce": None}, "qop=auth needs both cnonce and nc"),
        ({"nc": None}, "qop=auth needs both cnonce and nc"),
        ({"qop": None}, "cnonce/nc sent without qop"),
        ({"qop": None, "cnonce": None}, "cnonce/nc sent without qop"),
        ({"qop": '"a b"'}, "invalid qop 'a b'"),
        ({"nc": "1"}, "nc must be 8 lower-case hex digits, not '1'"),
        ({"nc": "0000000A"}, "nc must be 8 lower-case hex digits"),
        ({"response": '"xyz"'}, "response is not hex digits"),
        ({"response": '""'}, "response is not hex digits"),
    ],
)
def test_parse_credentials_errors(changes: dict[str, str | None], message: str) -> None:
    with pytest.raises(BadMessage, match=message):
        parse_credentials(credentials_value(**changes))


def test_parse_credentials_quoted_qop_and_algorithm_tolerated() -> None:
    credentials = parse_credentials(
        credentials_value(qop='"AUTH"', algorithm='"sha-256"', nc="0000000a")
    )
    assert credentials.qop == "auth"
    assert credentials.algorithm == "SHA-256"
    assert credentials.nc == 10


def test_format_rejects_unsendable_values() -> None:
    with pytest.raises(LocalProtocolError, match="control character"):
        format_challenge(DigestChallenge(realm="a\r\nb", nonce="n"))
    with pytest.raises(LocalProtocolError, match="not a token"):
        format_challenge(DigestChallenge(realm="r", nonce="n", algorithm="MD 5"))
    base = parse_credentials(credentials_value())
    with pytest.raises(LocalProtocolError, match="out of range"):
        format_credentials(
            DigestCredentials(
                username=base.username,
                realm=base.realm,
                nonce=base.nonce,
                uri=base.uri,
                response=base.response,
                cnonce="c",
                qop="auth",
                nc=1 << 32,
            )
        )
    escaped = format_challenge(DigestChallenge(realm='a\\"b\tc', nonce="n"))
    assert parse_challenge(escaped).realm == 'a\\"b\tc'


def test_extra_params_round_trip() -> None:
    credentials = parse_credentials(credentials_value(userhash="false"))
    assert credentials.extra == (("userhash", "false"),)
    assert parse_credentials(format_credentials(credentials)) == credentials


@given(st.text(max_size=200))
def test_fuzz_parsers_raise_only_bad_message(value: str) -> None:
    for parse in (parse_challenge, parse_credentials):
        with contextlib.suppress(BadMessage):
            parse(value)


AUTH_ALPHABET = st.sampled_from(
    list(
        'Digest realm="r" nonce=n,uri="sip:x" response=ab qop=auth nc=00000001\\"\t =,é'
    )
)


@given(st.lists(AUTH_ALPHABET, max_size=80).map("".join))
def test_fuzz_auth_like_strings(value: str) -> None:
    server = make_server()
    for call in (
        parse_challenge,
        parse_credentials,
        lambda text: verify(server, text),
    ):
        with contextlib.suppress(BadMessage):
            call(value)


@given(st.integers(min_value=0, max_value=300))
def test_fuzz_truncated_real_values(cut: int) -> None:
    server = make_server()
    _, answer = login(server)
    for value in (answer, server.challenge(1000.0)[0], RFC7616_CHALLENGE):
        with contextlib.suppress(BadMessage):
            parse_challenge(value[:cut])
        with contextlib.suppress(BadMessage):
            parse_credentials(value[:cut])


# --- Server -----------------------------------------------------------------------------


def test_challenge_values() -> None:
    server = make_server()
    values = server.challenge(1000.0)
    challenges = [parse_challenge(value) for value in values]
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert all(
        c.realm == REALM and c.qop == ("auth",) and not c.stale for c in challenges
    )
    assert challenges[0].nonce == challenges[1].nonce
    assert challenges[0].opaque == challenges[1].opaque is not None
    assert server.challenge(1000.0)[0] != values[0]  # fresh salt every time
    assert all(parse_challenge(v).stale for v in server.challenge(1000.0, stale=True))


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_round_trip_each_algorithm(algorithm: str) -> None:
    server = make_server(algorithms=(algorithm,))
    _, answer = login(server)
    assert parse_credentials(answer).algorithm == algorithm
    assert verify(server, answer) == AuthResult(
        ok=True, username="alice", stale=False, reason=""
    )


def test_client_prefers_sha256_whatever_the_order() -> None:
    server = make_server(algorithms=("MD5", "SHA-256"))
    _, answer = login(server)
    assert parse_credentials(answer).algorithm == "SHA-256"
    assert verify(server, answer).ok


def test_wrong_password() -> None:
    server = make_server()
    _, answer = login(server, password="looking-glass")
    result = verify(server, answer)
    assert not result.ok and not result.stale
    assert result.username == "alice"
    assert "mismatch" in result.reason


def test_unknown_user() -> None:
    server = make_server()
    _, answer = login(server, username="mallory")
    result = verify(server, answer)
    assert result == AuthResult(
        ok=False, username="mallory", stale=False, reason="unknown user 'mallory'"
    )


def test_wrong_realm() -> None:
    other = DigestServer(realm="other.example.com", secret=SECRET)
    _, answer = login(other)
    result = verify(make_server(), answer)
    assert not result.ok and not result.stale
    assert result.reason == "realm 'other.example.com' is not 'pbx.example.com'"


def test_request_uri_must_match() -> None:
    server = make_server()
    _, answer = login(server)
    result = verify(server, answer, request_uri="sip:1001@pbx.example.com")
    assert not result.ok and "is not the request-URI" in result.reason
    assert verify(server, answer, request_uri=None).ok


def test_method_is_covered() -> None:
    server = make_server()
    _, answer = login(server, method="REGISTER")
    assert not verify(server, answer, method="INVITE").ok
    assert verify(server, answer, method="REGISTER").ok


def test_replayed_nonce_count_rejected() -> None:
    server = make_server()
    client, answer = login(server)
    assert verify(server, answer).ok
    replay = verify(server, answer, now=1001.0)
    assert not replay.ok and not replay.stale
    assert replay.reason == "nonce-count 1 not above 1 (replay)"
    # The next nonce-count on the same nonce is fine; going back is not.
    (second,) = client.credentials_for(method="INVITE", uri=URI)
    (third,) = client.credentials_for(method="INVITE", uri=URI)
    assert parse_credentials(third).nc == 3
    assert verify(server, third, now=1002.0).ok
    assert not verify(server, second, now=1003.0).ok


def test_failed_attempt_does_not_burn_the_nonce() -> None:
    server = make_server()
    _, answer = login(server)
    forged = with_param(answer, "response", "0" * 64)
    assert not verify(server, forged).ok
    assert verify(server, answer).ok


def test_expired_nonce_is_stale_only_with_right_credentials() -> None:
    server = make_server(nonce_ttl=30.0)
    _, good = login(server, now=1000.0)
    _, bad = login(server, now=1000.0, password="wrong")
    assert verify(server, good, now=1030.0).ok
    _, good = login(server, now=1000.0)
    late = verify(server, good, now=1030.5)
    assert late == AuthResult(
        ok=False, username="alice", stale=True, reason="nonce expired"
    )
    late_bad = verify(server, bad, now=1030.5)
    assert not late_bad.ok and not late_bad.stale


def test_stale_reauthentication_without_password_prompt() -> None:
    server = make_server(nonce_ttl=10.0)
    client, answer = login(server, now=0.0)
    assert verify(server, answer, now=1.0).ok
    (old,) = client.credentials_for(method="INVITE", uri=URI)
    result = verify(server, old, now=20.0)
    assert result.stale
    (fresh,) = client.authorize(
        server.challenge(20.0, stale=True), method="INVITE", uri=URI
    )
    assert verify(server, fresh, now=21.0).ok


def test_tampered_nonce() -> None:
    server = make_server()
    _, answer = login(server)
    nonce = parse_credentials(answer).nonce
    flipped = ("A" if nonce[5] != "A" else "B").join((nonce[:5], nonce[6:]))
    result = verify(server, with_param(answer, "nonce", flipped))
    assert not result.ok and not result.stale
    assert "mismatch" in result.reason


def forge_nonce_and_answer(nonce: str, *, qop: bool = True) -> str:
    """Credentials with a right digest over an arbitrary nonce (the client knows it)."""
    qop_part = ', qop="auth"' if qop else ""
    client = DigestClient(username="alice", password="wonderland")
    challenge = f'Digest realm="{REALM}", nonce="{nonce}", algorithm=SHA-256{qop_part}'
    (answer,) = client.authorize([challenge], method="INVITE", uri=URI)
    return answer


def test_foreign_nonce_with_right_digest_is_stale() -> None:
    restarted = DigestServer(realm=REALM, secret=b"another secret, after restart")
    old_server_nonce = parse_challenge(restarted.challenge(1000.0)[0]).nonce
    result = verify(make_server(), forge_nonce_and_answer(old_server_nonce))
    assert result.stale and not result.ok
    assert result.reason == "nonce not issued under our secret"


@pytest.mark.parametrize(
    "nonce",
    [
        "short",
        "!" * 43,
        # Non-canonical base64 spelling: last character with non-zero spare bits.
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",
    ],
)
def test_malformed_nonce_is_not_ours(nonce: str) -> None:
    assert verify(make_server(), forge_nonce_and_answer(nonce)).stale


def test_non_canonical_spelling_of_real_nonce_rejected() -> None:
    server = make_server()
    nonce = parse_challenge(server.challenge(1000.0)[0]).nonce
    raw = base64.urlsafe_b64decode(nonce + "=")
    # Flip one of the two spare low bits of the final base64 character.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(nonce[-1]) ^ 1]
    respelled = nonce[:-1] + last
    assert base64.urlsafe_b64decode(respelled + "=") == raw
    result = verify(server, forge_nonce_and_answer(respelled))
    assert result.reason == "nonce not issued under our secret"


def test_nonce_from_the_future_rejected() -> None:
    server = make_server()
    _, answer = login(server, now=2000.0)
    result = verify(server, answer, now=1000.0)
    assert result.stale and result.reason == "nonce not issued under our secret"


def test_opaque_checked_but_may_be_omitted() -> None:
    server = make_server()
    _, answer = login(server)
    assert not verify(server, with_param(answer, "opaque", "nope")).ok
    credentials = parse_credentials(answer)
    without = format_credentials(
        DigestCredentials(
            username=credentials.username,
            realm=credentials.realm,
            nonce=credentials.nonce,
            uri=credentials.uri,
            response=credentials.response,
            algorithm=credentials.algorithm,
            cnonce=credentials.cnonce,
            qop=credentials.qop,
            nc=credentials.nc,
        )
    )
    assert verify(server, without).ok


def test_algorithm_not_offered() -> None:
    server = make_server(algorithms=("SHA-256",))
    _, answer = login(make_server(algorithms=("MD5",)))
    assert verify(server, answer).reason == "algorithm 'MD5' was not offered"
    unknown = answer.replace("algorithm=MD5", "algorithm=SHA-512-256")
    assert verify(server, unknown).reason == "algorithm 'SHA-512-256' was not offered"


def test_qop_must_be_offered_and_auth_int_covers_body() -> None:
    plain = make_server()
    client = DigestClient(username="alice", password="wonderland")
    challenge = plain.challenge(1000.0)[0].replace('qop="auth"', 'qop="auth-int"')
    (answer,) = client.authorize([challenge], method="INVITE", uri=URI, body=b"v=0")
    assert parse_credentials(answer).qop == "auth-int"
    assert verify(plain, answer, body=b"v=0").reason == "qop 'auth-int' was not offered"
    both = make_server(qop_options=("auth", "auth-int"))
    assert not verify(both, answer, body=b"v=1").ok
    assert verify(both, answer, body=b"v=0").ok


def test_rfc2069_no_qop_single_use() -> None:
    server = make_server()
    challenge = server.challenge(1000.0)[0].replace(', qop="auth"', "")
    client = DigestClient(username="alice", password="wonderland")
    (answer,) = client.authorize([challenge], method="INVITE", uri=URI)
    assert parse_credentials(answer).qop is None
    assert verify(server, answer).ok
    again = verify(server, answer)
    assert not again.ok and not again.stale
    assert again.reason == "nonce reused without qop (replay)"
    # The client does not reuse an RFC 2069 nonce by itself.
    assert client.credentials_for(method="INVITE", uri=URI) == []


def test_nonce_table_pruned_on_expiry() -> None:
    server = make_server(nonce_ttl=10.0)
    for second in range(5):
        _, answer = login(server, now=float(second))
        assert verify(server, answer, now=float(second)).ok
    assert len(server._nonce_counts) == 5
    _, answer = login(server, now=100.0)
    assert verify(server, answer, now=100.0).ok
    assert len(server._nonce_counts) == 1


def test_nonce_table_bounded_and_eviction_is_replay_safe() -> None:
    server = make_server(max_nonces=2)
    answers = []
    for second in range(3):
        _, answer = login(server, now=1000.0 + second)
        assert verify(server, answer, now=1000.0 + second).ok
        answers.append(answer)
    assert len(server._nonce_counts) == 2
    # The evicted nonce can no longer be replayed: it is treated as stale instead.
    result = verify(server, answers[0], now=1003.0)
    assert result == AuthResult(
        ok=False, username="alice", stale=True, reason="nonce evicted from a full table"
    )
    # A nonce issued before the floor but never used is stale as well; newer ones work.
    _, older = login(server, now=999.0)
    assert verify(server, older, now=1003.0).stale
    _, newer = login(server, now=1003.0)
    assert verify(server, newer, now=1003.0).ok
    # A tracked nonce keeps counting even when older than the floor.
    assert not verify(server, answers[2], now=1003.0).ok


def test_evicting_an_older_nonce_keeps_the_higher_floor() -> None:
    server = make_server(max_nonces=1)
    _, late = login(server, now=1010.0)
    _, early = login(server, now=1000.0)
    assert verify(server, late, now=1010.0).ok
    assert verify(server, early, now=1011.0).ok  # evicts `late`, floor 1010
    _, newer = login(server, now=1012.0)
    assert verify(server, newer, now=1012.0).ok  # evicts `early`, floor stays 1010
    assert server._floor_ms == 1010_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secret": b"short"}, "at least 16 bytes"),
        ({"nonce_ttl": 0.0}, "must be positive"),
        ({"max_nonces": 0}, "must be positive"),
        ({"algorithms": ()}, "at least one algorithm"),
        ({"qop_options": ("auth-conf",)}, "only auth"),
        ({"algorithms": ("SHA-256-sess",)}, "unsupported digest algorithm"),
    ],
)
def test_server_misuse(kwargs: dict[str, object], message: str) -> None:
    params: dict[str, object] = {"realm": REALM, "secret": SECRET, **kwargs}
    with pytest.raises(LocalProtocolError, match=message):
        DigestServer(**params)  # type: ignore[arg-type]


def test_verify_garbage_raises_bad_message() -> None:
    with pytest.raises(BadMessage, match="unsupported authentication scheme 'Basic'"):
        verify(make_server(), "Basic YWxhZGRpbjpvcGVuc2VzYW1l")
    with pytest.raises(BadMessage, match="missing parameter 'response'"):
        verify(make_server(), credentials_value(response=None))


# --- Client -----------------------------------------------------------------------------


def test_client_needs_a_secret() -> None:
    with pytest.raises(LocalProtocolError, match="password or HA1"):
        DigestClient(username="alice")


def test_client_with_ha1_only() -> None:
    server = make_server()
    stored = {(REALM, "SHA-256"): ha1("alice", REALM, "wonderland", "SHA-256").upper()}
    client = DigestClient(username="alice", ha1=stored)
    (answer,) = client.authorize(server.challenge(1000.0), method="INVITE", uri=URI)
    assert parse_credentials(answer).algorithm == "SHA-256"
    assert verify(server, answer).ok
    # Only an MD5 HA1: the SHA-256 challenge is skipped for the one we can answer.
    md5_only = DigestClient(
        username="alice", ha1={(REALM, "md5"): ha1("alice", REALM, "wonderland", "MD5")}
    )
    (answer,) = md5_only.authorize(server.challenge(1000.0), method="INVITE", uri=URI)
    assert parse_credentials(answer).algorithm == "MD5"
    assert verify(server, answer).ok
    # HA1 for another realm only: nothing to answer with.
    assert (
        md5_only.authorize(
            DigestServer(realm="elsewhere", secret=SECRET).challenge(1000.0),
            method="INVITE",
            uri=URI,
        )
        == []
    )


def test_client_gives_up_when_refused_but_not_when_stale() -> None:
    server = make_server()
    client = DigestClient(username="alice", password="wrong")
    (answer,) = client.authorize(server.challenge(1000.0), method="INVITE", uri=URI)
    assert not verify(server, answer).ok
    assert client.authorize(server.challenge(1001.0), method="INVITE", uri=URI) == []
    # A stale challenge would be answered again.
    assert (
        len(client.authorize(server.challenge(1001.0, stale=True), method="I", uri=URI))
        == 1
    )


def test_client_answers_again_after_a_new_request() -> None:
    server = make_server()
    client, _ = login(server)
    client.credentials_for(method="INVITE", uri=URI)
    (answer,) = client.authorize(server.challenge(1001.0), method="INVITE", uri=URI)
    assert verify(server, answer, now=1001.0).ok


def test_client_one_answer_per_realm() -> None:
    first = make_server()
    second = DigestServer(realm="proxy.example.net", secret=SECRET)
    client = DigestClient(username="alice", password="wonderland")
    answers = client.authorize(
        [*first.challenge(1000.0), *second.challenge(1000.0)], method="INVITE", uri=URI
    )
    assert [parse_credentials(a).realm for a in answers] == [REALM, "proxy.example.net"]
    assert all(parse_credentials(a).algorithm == "SHA-256" for a in answers)
    assert verify(first, answers[0]).ok
    assert verify(second, answers[1]).ok
    assert len(client.credentials_for(method="BYE", uri=URI)) == 2


def test_client_skips_unusable_and_garbage_challenges() -> None:
    server = make_server()
    client = DigestClient(username="alice", password="wonderland")
    values = [
        "garbage",
        'Digest realm="r", nonce="n", algorithm=SHA-512-256',
        'Digest realm="r", nonce="n", qop="auth-conf"',
        server.challenge(1000.0)[1],  # MD5
    ]
    (answer,) = client.authorize(values, method="INVITE", uri=URI)
    assert parse_credentials(answer).algorithm == "MD5"
    assert verify(server, answer).ok
    with pytest.raises(BadMessage, match="unsupported authentication scheme 'garbage'"):
        client.authorize(["garbage,", "also garbage"], method="INVITE", uri=URI)
    assert client.authorize([], method="INVITE", uri=URI) == []


def test_client_accepts_a_single_challenge_string() -> None:
    server = make_server()
    client = DigestClient(username="alice", password="wonderland")
    (answer,) = client.authorize(server.challenge(1000.0)[0], method="INVITE", uri=URI)
    assert verify(server, answer).ok


def test_client_nonce_count_and_cnonce() -> None:
    counter = itertools.count()
    server = make_server()
    client = DigestClient(
        username="alice",
        password="wonderland",
        cnonce_factory=lambda: f"c{next(counter)}",
    )
    (first,) = client.authorize(server.challenge(1000.0), method="REGISTER", uri=URI)
    (second,) = client.credentials_for(method="REGISTER", uri=URI)
    assert (parse_credentials(first).nc, parse_credentials(first).cnonce) == (1, "c0")
    assert (parse_credentials(second).nc, parse_credentials(second).cnonce) == (2, "c1")
    assert verify(server, first, method="REGISTER").ok
    assert verify(server, second, method="REGISTER").ok


def test_client_drops_exhausted_nonce() -> None:
    server = make_server()
    client, _ = login(server)
    client._realms[REALM].nc = 0xFFFFFFFF
    assert client.credentials_for(method="INVITE", uri=URI) == []
    assert client.credentials_for(method="INVITE", uri=URI) == []
