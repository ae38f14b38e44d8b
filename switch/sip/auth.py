"""Digest access authentication for SIP, server and client side (RFC 3261 section 22).

The mechanism is HTTP Digest as RFC 3261 section 22.4 borrows it from RFC 2617, with the
SHA-256 algorithm that RFC 8760 brings to SIP from RFC 7616. This module parses and
formats the four header values involved (``WWW-Authenticate`` / ``Proxy-Authenticate``
challenges, ``Authorization`` / ``Proxy-Authorization`` credentials), computes HA1 and
request digests, and holds the two stateful roles: :class:`DigestServer` (challenge and
verify, for the registrar and the B2BUA's inbound side) and :class:`DigestClient`
(answer challenges, for trunks and outbound registrations). It is sans-IO: time comes in
as ``now`` and nothing here touches a socket; only header *values* are handled, the
caller picks the header name (401 -> ``WWW-Authenticate``/``Authorization``, 407 ->
``Proxy-Authenticate``/``Proxy-Authorization``).

Theory of operation (server). A nonce is self-validating: base64url of an issue time in
milliseconds, 8 random bytes and a truncated HMAC-SHA-256 over both plus the realm, keyed
with the server secret. Nothing is stored when a challenge is sent, so challenges cost
no memory and a flood of unauthenticated requests cannot fill a table. Memory is used
only once a request *authenticates*: the highest nonce-count seen per nonce, so that a
replayed request (same or lower ``nc``) is refused. Entries leave the table when their
nonce expires (``nonce_ttl``); if the table is full anyway the oldest entry is evicted
and every untracked nonce issued at or before it is then treated as expired (a "floor"),
so eviction can never reopen a replay window; it only makes clients re-authenticate.

``stale=true`` (RFC 2617 section 3.2.1) is reported only when the digest is right for
the user's stored HA1 and the nonce is no longer usable: expired, below the eviction
floor, or minted under another secret (a restart with a fresh random secret; the client
evidently knows the password, so letting it re-try silently is safe). A wrong password,
a tampered nonce or a replay is never stale.

Requests without ``qop`` (RFC 2069 compatibility, RFC 2617 section 3.2.2.1) carry no
nonce-count, so they are made replay-safe by letting such a nonce authenticate exactly
one request: a second use is refused as a replay. ``qop=auth-int`` is verified (the body
is hashed) when the server was built to offer it; by default only ``qop="auth"`` is
offered, and credentials must use an offered qop.

Malformed values raise :class:`~switch.sip.errors.BadMessage` (answer 400); well-formed
credentials that fail are an :class:`AuthResult` with ``ok=False`` and a reason for the
log (answer with a fresh challenge).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import heapq
import hmac
import logging
import math
import re
import secrets
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from switch.sip.errors import BadMessage, LocalProtocolError
from switch.sip.grammar import TOKEN, WSP

logger = logging.getLogger(__name__)

# --- RFC 3261 section 22.4 / RFC 2617 section 3.2: the one scheme SIP uses ------------------
DIGEST_SCHEME = "Digest"

# --- RFC 2617 section 3.2.2: qop values --------------------------------------------------
QOP_AUTH = "auth"
QOP_AUTH_INT = "auth-int"
SUPPORTED_QOPS = frozenset({QOP_AUTH, QOP_AUTH_INT})

# --- RFC 3261 section 25.1: nonce-count = "nc" EQUAL nc-value ; nc-value = 8LHEX ---------
NONCE_COUNT = re.compile(r"[0-9a-f]{8}")
NONCE_COUNT_MAX = 0xFFFFFFFF

#   request-digest = LDQUOT 32LHEX RDQUOT  (64 hex digits for SHA-256, RFC 8760 2.2)
# Deviation: upper-case hex digits are read too and folded to lower case.
REQUEST_DIGEST = re.compile(r"[0-9A-Fa-f]+")

# --- Nonce layout (ours; RFC 2617 section 3.2.1 leaves the nonce opaque to the client) ---
NONCE_TIME = struct.Struct(">q")  # issue time, milliseconds
NONCE_SALT_BYTES = 8
NONCE_MAC_BYTES = 16
NONCE_BYTES = NONCE_TIME.size + NONCE_SALT_BYTES + NONCE_MAC_BYTES
NONCE_TEXT = re.compile(r"[A-Za-z0-9_\-]{43}")  # base64url of NONCE_BYTES, no padding
OPAQUE_BYTES = 12
MIN_SECRET_BYTES = 16

# --- Defaults ----------------------------------------------------------------------------
DEFAULT_NONCE_TTL = 300.0  # seconds a nonce stays usable
DEFAULT_MAX_NONCES = 65536  # nonce-count table size bound (entries)
CNONCE_BYTES = 8


# TODO: RFC 8760 section 2.1 also registers SHA-512-256 and the "-sess" variants; we
# neither offer nor answer them (no deployed SIP peer we target requires them). A client
# seeing only such challenges gives up; a server gets "algorithm was not offered".
# TODO: RFC 7616 sections 3.4.4 / 3.4.5 (userhash, username* for non-ASCII names) and
# RFC 2617 section 3.2.3 (Authentication-Info, nextnonce) are not implemented; cost: one
# extra round trip after a nonce expires, and usernames travel in clear ASCII/UTF-8.
class Algorithm(enum.StrEnum):
    """Digest algorithms we implement (RFC 8760 section 2.1, RFC 7616 section 6.1)."""

    MD5 = "MD5"
    SHA_256 = "SHA-256"


# Strongest first; the client answers the strongest challenge it can (RFC 8760 2.4).
_STRENGTH = {Algorithm.SHA_256: 2, Algorithm.MD5: 1}
_BY_NAME = {algorithm.value.lower(): algorithm for algorithm in Algorithm}
# A nonce answered without qop can authenticate exactly one request (see module doc).
_NONCE_CONSUMED = NONCE_COUNT_MAX + 1


# --- Parsed values ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class DigestChallenge:
    """One ``WWW-Authenticate`` / ``Proxy-Authenticate`` value (RFC 3261 section 25.1).

    ``algorithm`` is the canonical :class:`Algorithm` value when we know it (compared
    case-insensitively), otherwise the token as sent; absent means MD5 (RFC 2617
    3.2.1). ``qop`` holds the offered qop-options lower-cased, empty for an RFC 2069
    challenge. ``extra`` keeps unknown auth-params (name lower-cased) in order.
    """

    realm: str
    nonce: str
    algorithm: str = Algorithm.MD5.value
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class DigestCredentials:
    """One ``Authorization`` / ``Proxy-Authorization`` value (RFC 3261 section 25.1).

    ``nc`` is the nonce-count as an integer; ``qop``, ``cnonce`` and ``nc`` are all
    present or all absent (RFC 2617 section 3.2.2). ``response`` is lower-case hex.
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = Algorithm.MD5.value
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: int | None = None
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthResult:
    """Outcome of :meth:`DigestServer.verify`.

    :param ok: the request is authenticated.
    :param username: the username the credentials claimed (``None`` never happens for a
        parsed value, kept optional for callers that build failures themselves).
    :param stale: answer with a fresh challenge carrying ``stale=true``: the digest was
        right but the nonce is no longer usable (RFC 2617 section 3.2.1).
    :param reason: why it failed, for the log ("" when ok).
    """

    ok: bool
    username: str | None
    stale: bool
    reason: str


# --- Header value syntax ------------------------------------------------------------------


def _skip_wsp(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in WSP:
        pos += 1
    return pos


def _read_quoted(text: str, pos: int, what: str) -> tuple[str, int]:
    """Read the quoted-string starting at ``text[pos] == '"'``; return (value, end)."""
    #   quoted-string  =  SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
    #   qdtext         =  LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
    #   quoted-pair    =  "\" (%x00-09 / %x0B-0C / %x0E-7F)
    chars: list[str] = []
    index = pos + 1
    while index < len(text):
        char = text[index]
        if char == '"':
            return "".join(chars), index + 1
        if char == "\\":
            if index + 1 == len(text):
                break
            escaped = text[index + 1]
            if escaped in "\r\n" or ord(escaped) > 0x7F:
                raise BadMessage(f"{what}: invalid quoted-pair at offset {index}")
            chars.append(escaped)
            index += 2
            continue
        if (ord(char) < 0x20 and char != "\t") or char == "\x7f":
            raise BadMessage(
                f"{what}: control character in quoted string at offset {index}"
            )
        chars.append(char)
        index += 1
    raise BadMessage(f"{what}: unterminated quoted string at offset {pos}")


def parse_auth_params(
    value: str, *, what: str, scheme: str | None = None
) -> tuple[str, dict[str, str]]:
    """Split ``scheme auth-param *(COMMA auth-param)`` into the scheme and its params.

    Parameter names are lower-cased; values are unquoted (escapes undone). A name may
    appear once. Tolerance (RFC 3261 section 25.1 says which parameters are quoted and
    which are tokens; deployed UAs disagree, e.g. ``algorithm="MD5"`` or an unquoted
    nonce): either form is read for every parameter.

    :param what: the header name, used in error messages.
    :param scheme: if given, the only scheme accepted (compared case-insensitively);
        checked before the parameters, whose syntax may differ in other schemes.
    :raises BadMessage: on anything outside that grammar.
    """
    #   challenge   =  ("Digest" LWS digest-cln *(COMMA digest-cln)) / other-challenge
    #   auth-param  =  auth-param-name EQUAL ( token / quoted-string )
    #   COMMA = SWS "," SWS ; EQUAL = SWS "=" SWS
    pos = _skip_wsp(value, 0)
    scheme_match = TOKEN.match(value, pos)
    if scheme_match is None:
        raise BadMessage(f"{what}: expected an authentication scheme at offset {pos}")
    found_scheme = scheme_match.group()
    if scheme is not None and found_scheme.lower() != scheme.lower():
        raise BadMessage(f"{what}: unsupported authentication scheme {found_scheme!r}")
    pos = scheme_match.end()
    after_scheme = _skip_wsp(value, pos)
    if after_scheme == len(value):
        raise BadMessage(f"{what}: no parameters after scheme {found_scheme!r}")
    if after_scheme == pos:
        raise BadMessage(f"{what}: expected whitespace after scheme at offset {pos}")
    pos = after_scheme
    params: dict[str, str] = {}
    while True:
        name_match = TOKEN.match(value, pos)
        if name_match is None:
            raise BadMessage(f"{what}: expected a parameter name at offset {pos}")
        name = name_match.group().lower()
        pos = _skip_wsp(value, name_match.end())
        if pos == len(value) or value[pos] != "=":
            raise BadMessage(f"{what}: expected '=' after {name!r} at offset {pos}")
        pos = _skip_wsp(value, pos + 1)
        if pos < len(value) and value[pos] == '"':
            param_value, pos = _read_quoted(value, pos, what)
        else:
            value_match = TOKEN.match(value, pos)
            if value_match is None:
                raise BadMessage(
                    f"{what}: expected a value for {name!r} at offset {pos}"
                )
            param_value, pos = value_match.group(), value_match.end()
        if name in params:
            raise BadMessage(f"{what}: duplicate parameter {name!r}")
        params[name] = param_value
        pos = _skip_wsp(value, pos)
        if pos == len(value):
            return found_scheme, params
        if value[pos] != ",":
            raise BadMessage(f"{what}: expected ',' after {name!r} at offset {pos}")
        pos = _skip_wsp(value, pos + 1)


def _require(params: dict[str, str], name: str, what: str) -> str:
    try:
        return params.pop(name)
    except KeyError:
        raise BadMessage(f"{what}: missing parameter {name!r}") from None


def _canonical_algorithm(name: str) -> str:
    known = _BY_NAME.get(name.lower())
    return known.value if known is not None else name


def parse_challenge(value: str) -> DigestChallenge:
    """Parse a ``WWW-Authenticate`` or ``Proxy-Authenticate`` header value.

    :raises BadMessage: not a well-formed Digest challenge (RFC 3261 section 25.1).
    """
    what = "challenge"
    # RFC 3261 section 22.4: SIP uses Digest only (Basic is forbidden, section 22.1).
    _, params = parse_auth_params(value, what=what, scheme=DIGEST_SCHEME)
    realm = _require(params, "realm", what)
    nonce = _require(params, "nonce", what)
    qop: tuple[str, ...] = ()
    if "qop" in params:
        #   qop-options  =  "qop" EQUAL LDQUOT qop-value *("," qop-value) RDQUOT
        items = [item.strip(WSP).lower() for item in params.pop("qop").split(",")]
        for item in items:
            if TOKEN.fullmatch(item) is None:
                raise BadMessage(f"{what}: invalid qop-options {','.join(items)!r}")
        qop = tuple(items)
    stale = False
    if "stale" in params:
        #   stale  =  "stale" EQUAL ( "true" / "false" )   (case-insensitive literals)
        stale_text = params.pop("stale").lower()
        if stale_text not in ("true", "false"):
            raise BadMessage(f"{what}: stale must be true or false, not {stale_text!r}")
        stale = stale_text == "true"
    return DigestChallenge(
        realm=realm,
        nonce=nonce,
        algorithm=_canonical_algorithm(params.pop("algorithm", Algorithm.MD5.value)),
        qop=qop,
        opaque=params.pop("opaque", None),
        stale=stale,
        domain=params.pop("domain", None),
        extra=tuple(params.items()),
    )


def parse_credentials(value: str) -> DigestCredentials:
    """Parse an ``Authorization`` or ``Proxy-Authorization`` header value.

    :raises BadMessage: not well-formed Digest credentials (RFC 3261 section 25.1),
        including a missing mandatory parameter and ``qop`` without ``cnonce``/``nc``.
    """
    what = "credentials"
    # RFC 3261 section 22.4: SIP uses Digest only (Basic is forbidden, section 22.1).
    _, params = parse_auth_params(value, what=what, scheme=DIGEST_SCHEME)
    username = _require(params, "username", what)
    realm = _require(params, "realm", what)
    nonce = _require(params, "nonce", what)
    uri = _require(params, "uri", what)
    response = _require(params, "response", what)
    if REQUEST_DIGEST.fullmatch(response) is None:
        raise BadMessage(f"{what}: response is not hex digits")
    qop = params.pop("qop", None)
    cnonce = params.pop("cnonce", None)
    nc_text = params.pop("nc", None)
    nc: int | None = None
    if qop is not None:
        # RFC 2617 section 3.2.2: cnonce and nonce-count MUST be sent with qop.
        qop = qop.lower()
        if TOKEN.fullmatch(qop) is None:
            raise BadMessage(f"{what}: invalid qop {qop!r}")
        if cnonce is None or nc_text is None:
            raise BadMessage(f"{what}: qop={qop} needs both cnonce and nc")
    elif cnonce is not None or nc_text is not None:
        raise BadMessage(f"{what}: cnonce/nc sent without qop")
    if nc_text is not None:
        if NONCE_COUNT.fullmatch(nc_text) is None:
            raise BadMessage(
                f"{what}: nc must be 8 lower-case hex digits, not {nc_text!r}"
            )
        nc = int(nc_text, 16)
    return DigestCredentials(
        username=username,
        realm=realm,
        nonce=nonce,
        uri=uri,
        response=response.lower(),
        algorithm=_canonical_algorithm(params.pop("algorithm", Algorithm.MD5.value)),
        cnonce=cnonce,
        opaque=params.pop("opaque", None),
        qop=qop,
        nc=nc,
        extra=tuple(params.items()),
    )


def _quote(text: str) -> str:
    # quoted-pair escapes '"' and '\'; CR, LF and other controls cannot be carried.
    for char in text:
        if (ord(char) < 0x20 and char != "\t") or char == "\x7f":
            raise LocalProtocolError(
                f"cannot put control character {char!r} in a header"
            )
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _token(name: str, text: str) -> str:
    if TOKEN.fullmatch(text) is None:
        raise LocalProtocolError(f"{name} value {text!r} is not a token")
    return text


def format_challenge(challenge: DigestChallenge) -> str:
    """Render a challenge as a header value (quoting as RFC 3261 section 25.1 says)."""
    parts = [f"realm={_quote(challenge.realm)}"]
    if challenge.domain is not None:
        parts.append(f"domain={_quote(challenge.domain)}")
    parts.append(f"nonce={_quote(challenge.nonce)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    if challenge.stale:
        parts.append("stale=true")
    parts.append(f"algorithm={_token('algorithm', challenge.algorithm)}")
    if challenge.qop:
        qop = ",".join(_token("qop", item) for item in challenge.qop)
        parts.append(f"qop={_quote(qop)}")
    parts.extend(
        f"{_token('name', name)}={_quote(text)}" for name, text in challenge.extra
    )
    return f"{DIGEST_SCHEME} " + ", ".join(parts)


def format_credentials(credentials: DigestCredentials) -> str:
    """Render credentials as a header value (quoting as RFC 3261 section 25.1 says)."""
    parts = [
        f"username={_quote(credentials.username)}",
        f"realm={_quote(credentials.realm)}",
        f"nonce={_quote(credentials.nonce)}",
        f"uri={_quote(credentials.uri)}",
        f"response={_quote(credentials.response)}",
        f"algorithm={_token('algorithm', credentials.algorithm)}",
    ]
    if credentials.cnonce is not None:
        parts.append(f"cnonce={_quote(credentials.cnonce)}")
    if credentials.opaque is not None:
        parts.append(f"opaque={_quote(credentials.opaque)}")
    if credentials.qop is not None:
        parts.append(f"qop={_token('qop', credentials.qop)}")
    if credentials.nc is not None:
        if not 0 <= credentials.nc <= NONCE_COUNT_MAX:
            raise LocalProtocolError(f"nonce-count {credentials.nc} out of range")
        parts.append(f"nc={credentials.nc:08x}")
    parts.extend(
        f"{_token('name', name)}={_quote(text)}" for name, text in credentials.extra
    )
    return f"{DIGEST_SCHEME} " + ", ".join(parts)


# --- Digest computation (RFC 2617 section 3.2.2, RFC 7616 section 3.4) ---------------------


def _algorithm(name: str) -> Algorithm:
    known = _BY_NAME.get(name.lower())
    if known is None:
        raise LocalProtocolError(f"unsupported digest algorithm {name!r}")
    return known


def _hash(algorithm: Algorithm, data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if algorithm is Algorithm.MD5:
        return hashlib.md5(raw, usedforsecurity=False).hexdigest()
    return hashlib.sha256(raw).hexdigest()


def ha1(username: str, realm: str, password: str, algorithm: str) -> str:
    """HA1 = H(username ":" realm ":" password), the form credentials are stored in.

    :param algorithm: ``"MD5"`` or ``"SHA-256"`` (case-insensitive).
    :raises LocalProtocolError: for any other algorithm (``-sess`` variants included).
    """
    return _hash(_algorithm(algorithm), f"{username}:{realm}:{password}")


def request_digest(
    *,
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: int | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value (RFC 2617 section 3.2.2.1, RFC 7616 section 3.4.1).

    With ``qop`` ("auth" or "auth-int") this is H(HA1:nonce:nc:cnonce:qop:HA2), without
    it the RFC 2069 form H(HA1:nonce:HA2). HA2 is H(method:uri), with ":H(body)" added
    for auth-int.
    """
    hash_algorithm = _algorithm(algorithm)
    a2 = f"{method}:{uri}"
    if qop == QOP_AUTH_INT:
        a2 += ":" + _hash(hash_algorithm, body)
    ha2 = _hash(hash_algorithm, a2)
    if qop is None:
        return _hash(hash_algorithm, f"{ha1}:{nonce}:{ha2}")
    if qop not in SUPPORTED_QOPS or nc is None or cnonce is None:
        raise LocalProtocolError(
            f"qop {qop!r} needs nc and cnonce and must be auth[-int]"
        )
    return _hash(hash_algorithm, f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")


# --- Server -------------------------------------------------------------------------------


class DigestServer:
    """Challenges requests and verifies their credentials for one realm.

    Driven by the request handler: on a request without (acceptable) credentials it
    sends a 401/407 carrying :meth:`challenge`; on a request with credentials it calls
    :meth:`verify`. ``now`` is any clock in seconds that never goes backwards; use the
    wall clock if ``secret`` survives restarts, so nonces stay meaningful.

    :param realm: the protection realm (RFC 3261 section 22.1), e.g. the domain.
    :param secret: HMAC key for nonces and opaque, at least 16 bytes.
    :param nonce_ttl: seconds a nonce stays usable.
    :param algorithms: offered algorithms, most preferred first; one challenge each.
    :param qop_options: offered qop values ("auth", "auth-int").
    :param max_nonces: bound on the nonce-count table (see the module doc).
    """

    def __init__(
        self,
        *,
        realm: str,
        secret: bytes,
        nonce_ttl: float = DEFAULT_NONCE_TTL,
        algorithms: Iterable[str] = (Algorithm.SHA_256, Algorithm.MD5),
        qop_options: Iterable[str] = (QOP_AUTH,),
        max_nonces: int = DEFAULT_MAX_NONCES,
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise LocalProtocolError(
                f"secret must be at least {MIN_SECRET_BYTES} bytes"
            )
        if nonce_ttl <= 0 or max_nonces < 1:
            raise LocalProtocolError("nonce_ttl and max_nonces must be positive")
        self.realm = realm
        self.algorithms = tuple(_algorithm(name) for name in algorithms)
        self.qop_options = tuple(qop_options)
        if not self.algorithms or not set(self.qop_options) <= SUPPORTED_QOPS:
            raise LocalProtocolError(
                "need at least one algorithm and only auth[-int] qop"
            )
        self.nonce_ttl = nonce_ttl
        self.max_nonces = max_nonces
        self._secret = secret
        self._realm_bytes = realm.encode("utf-8")
        self._opaque = base64.urlsafe_b64encode(
            self._mac(b"opaque\x00" + self._realm_bytes)[:OPAQUE_BYTES]
        ).decode("ascii")
        # nonce -> (issue time ms, highest nc seen); the heap orders them by issue time.
        self._nonce_counts: dict[str, tuple[int, int]] = {}
        self._expiry_heap: list[tuple[int, str]] = []
        self._floor_ms: int | None = None

    # -- public

    def challenge(self, now: float, *, stale: bool = False) -> list[str]:
        """Header values for a 401/407: one challenge per algorithm, same nonce."""
        nonce = self._nonce_make(now)
        qop = tuple(self.qop_options)
        return [
            format_challenge(
                DigestChallenge(
                    realm=self.realm,
                    nonce=nonce,
                    algorithm=algorithm.value,
                    qop=qop,
                    opaque=self._opaque,
                    stale=stale,
                )
            )
            for algorithm in self.algorithms
        ]

    def verify(
        self,
        *,
        method: str,
        authorization: str,
        lookup_ha1: Callable[[str, str, str], str | None],
        now: float,
        body: bytes = b"",
        request_uri: str | None = None,
    ) -> AuthResult:
        """Check one ``Authorization``/``Proxy-Authorization`` value.

        :param method: the request method (CSeq method; ACK and CANCEL are never
            challenged, RFC 3261 section 22.1).
        :param authorization: the header value whose realm is ours (a request may
            carry one per realm; other realms fail with a reason).
        :param lookup_ha1: ``(username, realm, algorithm) -> HA1 hex or None``.
        :param body: the message body, used only for qop=auth-int.
        :param request_uri: if given, the digest ``uri`` must equal it exactly
            (RFC 3261 section 22.4 ties the credentials to the Request-URI).
        :raises BadMessage: the value is not well-formed Digest credentials.
        """
        credentials = parse_credentials(authorization)
        now_ms = math.floor(now * 1000)
        self._nonce_prune(now_ms)

        # Parameters that need no secret to check.
        refusal = self._check_parameters(credentials, request_uri)
        if refusal:
            return _failure(credentials, refusal)

        # The digest itself (computed even for unknown users, to keep timing flat).
        algorithm = _algorithm(credentials.algorithm)
        stored = lookup_ha1(credentials.username, credentials.realm, algorithm.value)
        expected = request_digest(
            algorithm=algorithm,
            ha1=(stored if stored is not None else "").lower(),
            nonce=credentials.nonce,
            method=method,
            uri=credentials.uri,
            qop=credentials.qop,
            nc=credentials.nc,
            cnonce=credentials.cnonce,
            body=body,
        )
        matches = hmac.compare_digest(expected, credentials.response)
        if stored is None:
            return _failure(credentials, f"unknown user {credentials.username!r}")
        if not matches:
            return _failure(credentials, "response digest mismatch (wrong password?)")

        # Right credentials: now the nonce must be fresh and not replayed.
        issued_ms = self._nonce_issued_ms(credentials.nonce, now_ms)
        if issued_ms is None:
            return _failure(
                credentials, "nonce not issued under our secret", stale=True
            )
        if now_ms - issued_ms > self.nonce_ttl * 1000:
            return _failure(credentials, "nonce expired", stale=True)
        seen = self._nonce_counts.get(credentials.nonce)
        if seen is None and self._floor_ms is not None and issued_ms <= self._floor_ms:
            return _failure(credentials, "nonce evicted from a full table", stale=True)
        highest = 0 if seen is None else seen[1]
        if credentials.nc is None:
            if seen is not None:
                return _failure(credentials, "nonce reused without qop (replay)")
            self._nonce_record(credentials.nonce, issued_ms, _NONCE_CONSUMED)
        else:
            if credentials.nc <= highest:
                return _failure(
                    credentials,
                    f"nonce-count {credentials.nc} not above {highest} (replay)",
                )
            self._nonce_record(credentials.nonce, issued_ms, credentials.nc)
        return AuthResult(
            ok=True, username=credentials.username, stale=False, reason=""
        )

    # -- checks

    def _check_parameters(
        self, credentials: DigestCredentials, request_uri: str | None
    ) -> str:
        if credentials.realm != self.realm:
            return f"realm {credentials.realm!r} is not {self.realm!r}"
        algorithm = _BY_NAME.get(credentials.algorithm.lower())
        if algorithm is None or algorithm not in self.algorithms:
            return f"algorithm {credentials.algorithm!r} was not offered"
        if request_uri is not None and credentials.uri != request_uri:
            return (
                f"digest uri {credentials.uri!r} is not the request-URI {request_uri!r}"
            )
        if credentials.qop is not None and credentials.qop not in self.qop_options:
            return f"qop {credentials.qop!r} was not offered"
        # RFC 2617 3.2.2 says the client returns opaque unchanged. Tolerance: an omitted
        # opaque is accepted (it protects nothing here, the nonce is self-validating).
        if credentials.opaque is not None and not hmac.compare_digest(
            credentials.opaque.encode("utf-8"), self._opaque.encode("ascii")
        ):
            return "opaque does not match"
        return ""

    # -- nonces

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._secret, data, hashlib.sha256).digest()

    def _nonce_issued_ms(self, nonce: str, now_ms: int) -> int | None:
        """Issue time of a nonce we minted, or None (forged, foreign, from the future)."""
        if NONCE_TEXT.fullmatch(nonce) is None:
            return None
        raw = base64.urlsafe_b64decode(nonce + "=")
        if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != nonce:
            return None  # non-canonical spelling of the same bytes
        payload, mac = raw[:-NONCE_MAC_BYTES], raw[-NONCE_MAC_BYTES:]
        expected = self._mac(self._realm_bytes + payload)[:NONCE_MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            return None
        (issued_ms,) = NONCE_TIME.unpack_from(payload)
        return issued_ms if issued_ms <= now_ms else None

    def _nonce_make(self, now: float) -> str:
        payload = NONCE_TIME.pack(math.floor(now * 1000)) + secrets.token_bytes(
            NONCE_SALT_BYTES
        )
        mac = self._mac(self._realm_bytes + payload)[:NONCE_MAC_BYTES]
        return base64.urlsafe_b64encode(payload + mac).decode("ascii").rstrip("=")

    def _nonce_prune(self, now_ms: int) -> None:
        ttl_ms = self.nonce_ttl * 1000
        heap = self._expiry_heap
        while heap and now_ms - heap[0][0] > ttl_ms:
            _, nonce = heapq.heappop(heap)
            del self._nonce_counts[nonce]

    def _nonce_record(self, nonce: str, issued_ms: int, nc: int) -> None:
        if nonce in self._nonce_counts:
            self._nonce_counts[nonce] = (issued_ms, nc)
            return
        if len(self._nonce_counts) >= self.max_nonces:
            evicted_ms, evicted = heapq.heappop(self._expiry_heap)
            del self._nonce_counts[evicted]
            if self._floor_ms is None or evicted_ms > self._floor_ms:
                self._floor_ms = evicted_ms
            logger.debug("nonce table full (%d), evicted one", self.max_nonces)
        self._nonce_counts[nonce] = (issued_ms, nc)
        heapq.heappush(self._expiry_heap, (issued_ms, nonce))


def _failure(
    credentials: DigestCredentials, reason: str, *, stale: bool = False
) -> AuthResult:
    logger.debug("digest auth failed for %r: %s", credentials.username, reason)
    return AuthResult(
        ok=False, username=credentials.username, stale=stale, reason=reason
    )


# --- Client -------------------------------------------------------------------------------


@dataclass(slots=True)
class _RealmState:
    challenge: DigestChallenge
    ha1: str
    qop: str | None
    nc: int
    pending: bool  # answered a challenge; no later request has been sent since


def _default_cnonce() -> str:
    return secrets.token_hex(CNONCE_BYTES)


class DigestClient:
    """Answers Digest challenges for one identity (RFC 3261 sections 22.2 and 22.3).

    Driven by the UAC: on a 401/407 it passes every challenge value of the response to
    :meth:`authorize` and resends the request with the returned values (one per realm;
    an empty list means give up). For later requests to the same server,
    :meth:`credentials_for` reuses the last nonce with the next nonce-count.

    Give-up rule: if a realm was answered by :meth:`authorize` and the next challenge
    for it is not ``stale=true``, the server refused our credentials; answering again
    would loop, so that realm is skipped. A ``stale=true`` challenge is answered again
    from the stored password/HA1, without asking the user.

    :param username: the digest username.
    :param password: the password, or ``None`` when ``ha1`` is given.
    :param ha1: stored HA1 values keyed by ``(realm, algorithm)``.
    :param cnonce_factory: makes client nonces (random by default; tests inject).
    """

    def __init__(
        self,
        *,
        username: str,
        password: str | None = None,
        ha1: Mapping[tuple[str, str], str] | None = None,
        cnonce_factory: Callable[[], str] = _default_cnonce,
    ) -> None:
        if password is None and not ha1:
            raise LocalProtocolError("DigestClient needs a password or HA1 values")
        self.username = username
        self._password = password
        self._ha1 = {
            (realm, _algorithm(name).value): value
            for (realm, name), value in (ha1 or {}).items()
        }
        self._cnonce_factory = cnonce_factory
        self._realms: dict[str, _RealmState] = {}

    def authorize(
        self,
        challenges: str | Iterable[str],
        *,
        method: str,
        uri: str,
        body: bytes = b"",
    ) -> list[str]:
        """Credentials answering the challenges of one 401/407 response.

        Per realm, the strongest challenge we can answer is chosen (SHA-256 over MD5,
        RFC 8760 section 2.4). Unparseable challenges are skipped if others parse.

        :param challenges: every ``WWW-Authenticate``/``Proxy-Authenticate`` value of
            the response (a single string is one value).
        :param uri: the Request-URI of the request being resent, as a string.
        :returns: header values, one per realm answered; empty means give up.
        :raises BadMessage: every challenge value was malformed.
        """
        if isinstance(challenges, str):
            challenges = [challenges]
        parsed: list[DigestChallenge] = []
        errors: list[BadMessage] = []
        for value in challenges:
            try:
                parsed.append(parse_challenge(value))
            except BadMessage as exc:
                errors.append(exc)
        if errors and not parsed:
            raise errors[0]
        best: dict[str, tuple[DigestChallenge, str, str | None]] = {}
        for challenge in parsed:
            usable = self._usable(challenge)
            if usable is None:
                continue
            current = best.get(challenge.realm)
            if current is None or _strength(challenge) > _strength(current[0]):
                best[challenge.realm] = (challenge, *usable)
        answers: list[str] = []
        for realm, (challenge, stored_ha1, qop) in best.items():
            previous = self._realms.get(realm)
            if previous is not None and previous.pending and not challenge.stale:
                logger.debug("credentials for realm %r refused; not retrying", realm)
                continue
            state = _RealmState(
                challenge=challenge, ha1=stored_ha1, qop=qop, nc=0, pending=True
            )
            self._realms[realm] = state
            answers.append(self._answer(state, method=method, uri=uri, body=body))
        return answers

    def credentials_for(self, *, method: str, uri: str, body: bytes = b"") -> list[str]:
        """Credentials for a new request from the cached challenges (next nc each).

        Calling this marks the earlier exchange as done, so a later non-stale
        challenge is answered once more instead of being taken as a refusal.
        RFC 2069 challenges (no qop) are not reused: their nonce is single-use.
        """
        answers: list[str] = []
        for realm, state in list(self._realms.items()):
            if state.qop is None or state.nc >= NONCE_COUNT_MAX:
                del self._realms[realm]
                continue
            state.pending = False
            answers.append(self._answer(state, method=method, uri=uri, body=body))
        return answers

    def _answer(self, state: _RealmState, *, method: str, uri: str, body: bytes) -> str:
        challenge = state.challenge
        state.nc += 1
        cnonce = self._cnonce_factory() if state.qop is not None else None
        nc = state.nc if state.qop is not None else None
        response = request_digest(
            algorithm=challenge.algorithm,
            ha1=state.ha1,
            nonce=challenge.nonce,
            method=method,
            uri=uri,
            qop=state.qop,
            nc=nc,
            cnonce=cnonce,
            body=body,
        )
        return format_credentials(
            DigestCredentials(
                username=self.username,
                realm=challenge.realm,
                nonce=challenge.nonce,
                uri=uri,
                response=response,
                algorithm=challenge.algorithm,
                cnonce=cnonce,
                opaque=challenge.opaque,
                qop=state.qop,
                nc=nc,
            )
        )

    def _usable(self, challenge: DigestChallenge) -> tuple[str, str | None] | None:
        """(HA1, qop to use) if we can answer this challenge, else None (logged)."""
        algorithm = _BY_NAME.get(challenge.algorithm.lower())
        if algorithm is None:
            logger.debug("skipping challenge with algorithm %r", challenge.algorithm)
            return None
        qop: str | None = None
        if challenge.qop:
            # Prefer plain auth: auth-int ties the digest to a body a proxy may rewrite.
            for candidate in (QOP_AUTH, QOP_AUTH_INT):
                if candidate in challenge.qop:
                    qop = candidate
                    break
            else:
                logger.debug("skipping challenge with qop %r", challenge.qop)
                return None
        stored = self._ha1.get((challenge.realm, algorithm.value))
        if stored is None:
            if self._password is None:
                logger.debug("no HA1 for realm %r %s", challenge.realm, algorithm.value)
                return None
            stored = ha1(self.username, challenge.realm, self._password, algorithm)
        return stored.lower(), qop


def _strength(challenge: DigestChallenge) -> int:
    return _STRENGTH[_BY_NAME[challenge.algorithm.lower()]]
