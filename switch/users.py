"""Local SIP users and digest authentication of their requests (RFC 3261 section 22).

Passwords never reach this module: users are stored as HA1 digests per algorithm
(RFC 8760), so a leaked database does not hand out the plain passwords. The
:class:`Authenticator` turns a request into either an authenticated user name or
the 401/407 response that challenges it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from switch.sip.auth import DigestServer, ha1, parse_credentials
from switch.sip.errors import BadMessage
from switch.sip.message import Request, Response, make_response
from switch.sip.uri import parse_uri

logger = logging.getLogger(__name__)

# RFC 8760 section 2.1 names the algorithms; SHA-256 is offered first (section 2.4).
ALGORITHMS = ("SHA-256", "MD5")


@dataclass(frozen=True, kw_only=True, slots=True)
class User:
    """A local account whose phones may register; digests only, no password."""

    name: str
    realm: str
    ha1_md5: str
    ha1_sha256: str
    display_name: str | None = None
    allow_outbound: bool = False

    @classmethod
    def from_password(
        cls, *, name: str, realm: str, password: str, **extra: object
    ) -> User:
        """Hash ``password`` at once; the plain text is not kept."""
        return cls(
            name=name,
            realm=realm,
            ha1_md5=ha1(name, realm, password, "MD5"),
            ha1_sha256=ha1(name, realm, password, "SHA-256"),
            **extra,  # type: ignore[arg-type]
        )


class UserDirectory:
    """The users the switch knows, looked up by name."""

    def __init__(self, users: Iterable[User] = ()) -> None:
        self._users = {user.name: user for user in users}

    def __contains__(self, name: object) -> bool:
        return name in self._users

    def __len__(self) -> int:
        return len(self._users)

    def get(self, name: str) -> User | None:
        return self._users.get(name)

    def lookup_ha1(self, username: str, realm: str, algorithm: str) -> str | None:
        """The stored HA1 for ``username`` in ``realm`` under ``algorithm``, if any."""
        user = self._users.get(username)
        if user is None or user.realm != realm:
            return None
        if algorithm.upper() == "MD5":
            return user.ha1_md5
        if algorithm.upper() == "SHA-256":
            return user.ha1_sha256
        return None


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthOutcome:
    """Either ``user`` is set (authenticated) or ``response`` is the challenge/refusal."""

    user: str | None
    response: Response | None
    reason: str = ""


def _digest_uri_matches(value: str, request: Request) -> bool:
    """The credentials' ``uri`` names the request's own Request-URI (URI equality).

    Compared as URIs (RFC 3261 19.1.4), not as strings: a phone may write its
    Request-URI with other letter case or escaping than we render it.
    """
    try:
        uri = parse_uri(parse_credentials(value).uri)
    except BadMessage:
        return False
    return uri.equivalent(request.uri)


class Authenticator:
    """Challenges requests and checks their credentials against a user directory.

    :param proxy: use 407/Proxy-Authenticate (for INVITE and other requests that a
        proxy-like element authenticates) instead of 401/WWW-Authenticate (REGISTER).
    """

    def __init__(self, *, directory: UserDirectory, server: DigestServer) -> None:
        self.directory = directory
        self.server = server

    def check(
        self, request: Request, *, now: float, proxy: bool = False
    ) -> AuthOutcome:
        """Authenticate ``request`` or say how to answer it."""
        header = "Proxy-Authorization" if proxy else "Authorization"
        credentials = [
            value
            for value in request.headers.get_all(header)
            if value.lower().startswith("digest")
        ]
        if not credentials:
            return AuthOutcome(
                user=None,
                response=self._challenge(request, now, proxy),
                reason="no credentials",
            )

        stale = False
        reason = ""
        for value in credentials:
            if not _digest_uri_matches(value, request):
                # RFC 2617 3.2.2.5: credentials are bound to the Request-URI they name.
                reason = "digest uri is not the Request-URI"
                continue
            result = self.server.verify(
                method=request.method,
                authorization=value,
                lookup_ha1=self.directory.lookup_ha1,
                now=now,
                body=request.body,
            )
            if result.ok:
                return AuthOutcome(user=result.username, response=None)
            stale = stale or result.stale
            reason = result.reason
        return AuthOutcome(
            user=None,
            response=self._challenge(request, now, proxy, stale=stale),
            reason=reason,
        )

    def _challenge(
        self, request: Request, now: float, proxy: bool, *, stale: bool = False
    ) -> Response:
        status, phrase, header = (
            (407, "Proxy Authentication Required", "Proxy-Authenticate")
            if proxy
            else (401, "Unauthorized", "WWW-Authenticate")
        )
        response = make_response(request, status, phrase, to_tag=secrets.token_hex(6))
        for value in self.server.challenge(now, stale=stale):
            response.headers.add(header, value)
        return response
