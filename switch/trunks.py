"""Carrier trunks: who they are, where they are, and whether they are up.

A trunk is a SIP peer at a carrier that carries calls to and from the public network.
This module answers the B2BUA's questions about trunks and keeps them usable:

* inbound identification (:meth:`Trunks.identify`): an INVITE whose source address is
  in a trunk's ``inbound_sources`` (CIDR list; by default the trunk host's own
  address) comes from that trunk. A trunk may instead (or as well) be identified by
  digest authentication (RFC 3261 section 22.3): when ``inbound_username`` is set, an
  INVITE whose ``Proxy-Authorization`` credentials are that user name and verify
  against ``inbound_password`` comes from the trunk. The challenge itself is the
  ordinary 407 the B2BUA sends to unidentified requests, so the :class:`DigestServer`
  must be the one the user :class:`~switch.users.Authenticator` uses (nonces are
  checked by the server that issued them).
* outbound: :meth:`Trunks.destination`, :meth:`Trunks.request_uri` and
  :meth:`Trunks.credentials` (a :class:`DigestClient` answering the carrier's 401/407);
  per-trunk concurrent call limits with :meth:`Trunks.acquire`/:meth:`Trunks.release`.
* registration (RFC 3261 section 10.2): a trunk with ``register`` sends REGISTER to
  the carrier, answers 401/407 with digest credentials, follows 423 Min-Expires,
  refreshes before the granted expiry and backs off on failure as RFC 5626 section
  4.5 describes; :class:`~switch.events.TrunkRegistrationChanged` reports each change.
* monitoring (RFC 3261 section 11): OPTIONS every ``options_interval`` seconds; any
  response proves the carrier is there; ``options_failures`` unanswered probes in a row
  mark the trunk down (:class:`~switch.events.TrunkStateChanged`) and the dialplan skips
  it (:meth:`Trunks.available`) until a probe is answered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from pyee import EventEmitter

from switch.dialplan import NumberingPlan
from switch.events import TrunkRegistrationChanged, TrunkStateChanged, publish
from switch.sip.auth import DigestClient, DigestServer, ha1
from switch.sip.errors import BadMessage, LocalProtocolError
from switch.sip.message import Headers, Request, Response
from switch.sip.transaction import new_tag
from switch.sip.uri import SipUri
from switch.stack import RequestTimeout, SipStack
from switch.transport import Address

logger = logging.getLogger(__name__)

# RFC 3261 section 19.1.2: the default port of sip: URIs.
DEFAULT_SIP_PORT = 5060
TRANSPORTS = ("UDP", "TCP", "TLS")

# RFC 3261 section 10.2.1.1: the registration lifetime we ask for by default.
DEFAULT_EXPIRES = 3600
# Refresh this many seconds before the granted expiry (half the lifetime when the
# carrier grants less than twice this).
REFRESH_MARGIN = 30.0

# RFC 5626 section 4.5: after n consecutive failures wait min(max-time,
# base-time * 2**n), randomised down to half of it; base-time 30 s, max-time 1800 s.
RETRY_BASE_TIME = 30.0
RETRY_MAX_TIME = 1800.0

# 401/407 and 423 rounds answered for one registration attempt before giving up.
MAX_REGISTER_ROUNDS = 3

# Unanswered OPTIONS in a row before a trunk is marked down.
DEFAULT_OPTIONS_FAILURES = 3

# RFC 3261 section 8.1.1.6.
MAX_FORWARDS = "70"

# Source hosts whose trunk match each trunk remembers (INVITEs come from a few
# carrier addresses; the table is emptied when full, so no source list grows it).
SOURCE_CACHE_SIZE = 256


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text.strip("[]"), strict=False)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass(kw_only=True, slots=True, eq=False)
class Trunk:
    """One carrier trunk: its settings (from ``[[trunks]]``) and its live state.

    :param name: how the dialplan and CDRs name it.
    :param host: the carrier's SIP host (IP address or name) and ``port``/``transport``.
    :param inbound_sources: CIDR blocks INVITEs from the trunk come from; empty means
        the host's own address unless ``inbound_username`` is set (digest only).
    :param register: register to the carrier as ``username``/``password``.
    :param domain: the registrar domain (Request-URI, From and To of REGISTER);
        default ``host``.
    :param expires: the registration lifetime to ask for (seconds).
    :param options_interval: seconds between OPTIONS probes; 0 turns monitoring off.
    :param options_failures: unanswered probes in a row before the trunk is down.
    :param max_calls: concurrent calls allowed; 0 is unlimited.
    :param numbering: how numbers are written for the carrier (E.164 normalisation).
    :param latching: learn the RTP peer from the first packet (off for trunks: a
        carrier's media address is trusted, and latching opens media hijacking).
    :param inbound_username: digest user name the carrier authenticates with.
    :param inbound_password: its password.
    """

    name: str
    host: str
    port: int = DEFAULT_SIP_PORT
    transport: str = "UDP"
    inbound_sources: tuple[str, ...] = ()
    register: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    domain: str | None = None
    expires: int = DEFAULT_EXPIRES
    options_interval: float = 60.0
    options_failures: int = DEFAULT_OPTIONS_FAILURES
    max_calls: int = 0
    numbering: NumberingPlan = field(default_factory=NumberingPlan)
    latching: bool = False
    inbound_username: str | None = None
    inbound_password: str | None = field(default=None, repr=False)

    # Live state.
    active_calls: int = 0
    available: bool = True
    registered: bool = False
    address: str = ""  # the host resolved to an IP address ("" until resolved)
    failed_probes: int = 0
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        default=(), init=False, repr=False
    )
    # matches_source's answers by host, valid while address and inbound_username are
    # those of _sources_for (the address is resolved, or resolved again, later).
    _sources: dict[str, bool] = field(default_factory=dict, init=False, repr=False)
    _sources_for: tuple[str, str | None] = field(
        default=("", None), init=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}")
        if self.register and not (self.username and self.password):
            raise ValueError(f"trunk {self.name}: register needs username and password")
        self._networks = tuple(_network(text) for text in self.inbound_sources)
        if _is_ip(self.host):
            self.address = self.host.strip("[]")

    @property
    def registrar_domain(self) -> str:
        return self.domain or self.host

    def matches_source(self, host: str) -> bool:
        """Whether an INVITE from ``host`` (an IP address) comes from this trunk.

        Every INVITE asks every trunk, and parsing the address costs more than the
        rest of identification: the answer is remembered per host.
        """
        state = (self.address, self.inbound_username)
        if state != self._sources_for or len(self._sources) >= SOURCE_CACHE_SIZE:
            self._sources.clear()
            self._sources_for = state
        matches = self._sources.get(host)
        if matches is None:
            matches = self._sources[host] = self._matches_source(host)
        return matches

    def _matches_source(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        if self._networks:
            return any(ip in network for network in self._networks)
        if self.inbound_username:
            return False  # digest only
        return bool(self.address) and ip == ipaddress.ip_address(self.address)


class Trunks:
    """The configured trunks; registration and monitoring run between start and stop.

    :param trunks: the trunks, names unique.
    :param stack: sends REGISTER and OPTIONS (needed only by :meth:`start`).
    :param bus: where trunk events are published.
    :param digest_server: the server whose 407 challenges inbound trunks answer (the
        user authenticator's); without it digest identification is off.
    :param clock: wall clock for events and nonces.
    :param retry_base_time: RFC 5626 base-time for registration back-off (seconds).
    :param retry_max_time: RFC 5626 max-time.
    """

    def __init__(
        self,
        trunks: Iterable[Trunk] = (),
        *,
        stack: SipStack | None = None,
        bus: EventEmitter | None = None,
        digest_server: DigestServer | None = None,
        clock: Callable[[], float] = time.time,
        retry_base_time: float = RETRY_BASE_TIME,
        retry_max_time: float = RETRY_MAX_TIME,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._trunks: dict[str, Trunk] = {}
        for trunk in trunks:
            if trunk.name in self._trunks:
                raise ValueError(f"duplicate trunk {trunk.name!r}")
            self._trunks[trunk.name] = trunk
        self.stack = stack
        self.bus = bus
        self.digest_server = digest_server
        self.clock = clock
        self.retry_base_time = retry_base_time
        self.retry_max_time = retry_max_time
        self._jitter = jitter
        self._tasks: list[asyncio.Task[None]] = []
        self._register_clients: dict[str, DigestClient] = {}
        self._register_call_ids: dict[str, str] = {}
        self._auth_header: dict[str, str] = {}
        self._cseq = 0

    # -- lookup ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[Trunk]:
        return iter(self._trunks.values())

    def __len__(self) -> int:
        return len(self._trunks)

    def __contains__(self, name: object) -> bool:
        return name in self._trunks

    def get(self, name: str) -> Trunk | None:
        return self._trunks.get(name)

    def names(self) -> tuple[str, ...]:
        return tuple(self._trunks)

    def numbering(self) -> dict[str, NumberingPlan]:
        """Each trunk's numbering plan, for :class:`~switch.dialplan.Dialplan`."""
        return {name: trunk.numbering for name, trunk in self._trunks.items()}

    def available(self, name: str) -> bool:
        """False when the trunk is unknown or OPTIONS monitoring marked it down."""
        trunk = self._trunks.get(name)
        return trunk is not None and trunk.available

    def identify(
        self, request: Request, source: Address, *, now: float | None = None
    ) -> Trunk | None:
        """The trunk ``request`` comes from, by source address or digest credentials.

        Source addresses are tried first, in configuration order; then the request's
        ``Proxy-Authorization`` against trunks with ``inbound_username``.
        """
        host = source[1]
        for trunk in self._trunks.values():
            if trunk.matches_source(host):
                return trunk
        return self.authenticate(request, now=now)

    def authenticate(
        self, request: Request, *, now: float | None = None
    ) -> Trunk | None:
        """The trunk whose inbound digest credentials ``request`` carries, if any.

        For callers that must not trust the source address (the request came from a
        registered phone's address, or carries credentials): only
        ``Proxy-Authorization`` for a trunk's ``inbound_username`` counts.
        """
        if self.digest_server is None:
            return None
        return self._identify_by_digest(request, self.clock() if now is None else now)

    def destination(self, trunk_name: str) -> tuple[Address, Trunk]:
        """Where to send a request for the trunk.

        :raises KeyError: unknown trunk.
        """
        trunk = self._trunks[trunk_name]
        host = trunk.address or trunk.host
        return (trunk.transport, host, trunk.port), trunk

    def request_uri(self, trunk_name: str, number: str) -> str:
        """The Request-URI of an outbound INVITE: ``sip:NUMBER@host:port``."""
        trunk = self._trunks[trunk_name]
        uri = SipUri(
            scheme="sip",
            user=number,
            password=None,
            host=_uri_host(trunk.host),
            port=trunk.port,
            params=_transport_params(trunk.transport),
            headers={},
        )
        return str(uri)

    def credentials(self, trunk_name: str) -> DigestClient | None:
        """A fresh digest client for one outbound call (None: the trunk has none)."""
        trunk = self._trunks[trunk_name]
        if not (trunk.username and trunk.password):
            return None
        return DigestClient(username=trunk.username, password=trunk.password)

    # -- call limits ----------------------------------------------------------------

    def acquire(self, trunk_name: str) -> bool:
        """Count one more call on the trunk; False (nothing counted) when it is full."""
        trunk = self._trunks[trunk_name]
        if trunk.max_calls and trunk.active_calls >= trunk.max_calls:
            logger.info("trunk %s is full (%d calls)", trunk.name, trunk.active_calls)
            return False
        trunk.active_calls += 1
        return True

    def release(self, trunk_name: str) -> None:
        """Count one call less (never below zero)."""
        trunk = self._trunks.get(trunk_name)
        if trunk is None:
            logger.warning("release of unknown trunk %r", trunk_name)
            return
        if trunk.active_calls == 0:
            logger.warning("trunk %s released more calls than acquired", trunk.name)
            return
        trunk.active_calls -= 1

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Resolve host names, then start registration and OPTIONS monitoring."""
        loop = asyncio.get_running_loop()
        for trunk in self._trunks.values():
            if not trunk.address:
                await self._resolve(trunk)
            if trunk.register:
                self._tasks.append(loop.create_task(self._register_loop(trunk)))
            if trunk.options_interval > 0:
                self._tasks.append(loop.create_task(self._monitor_loop(trunk)))
        if self._tasks and self.stack is None:
            raise RuntimeError("Trunks needs a SipStack to register and monitor")

    async def stop(self, *, unregister_timeout: float = 1.0) -> None:
        """Stop the loops; unregister from carriers (best effort, bounded wait)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        registered = [t for t in self._trunks.values() if t.registered]
        if not registered:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(
                    *(self.register(t.name, expires=0) for t in registered),
                    return_exceptions=True,
                ),
                unregister_timeout,
            )

    async def _resolve(self, trunk: Trunk) -> None:
        # TODO: RFC 3263 NAPTR/SRV lookups are not done: the host's A/AAAA record and
        # the configured port are used, so a carrier that publishes only SRV records
        # needs its proxy host and port written out in the configuration.
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                trunk.host, trunk.port, type=socket.SOCK_DGRAM
            )
        except OSError as exc:
            logger.warning(
                "trunk %s: cannot resolve %s: %s", trunk.name, trunk.host, exc
            )
            return
        if infos:
            trunk.address = str(infos[0][4][0])

    # -- registration (RFC 3261 section 10.2) ---------------------------------------

    async def _register_loop(self, trunk: Trunk) -> None:
        failures = 0
        while True:
            try:
                granted = await self.register(trunk.name)
            except Exception:  # our bug must not end registration for good
                logger.exception("trunk %s: REGISTER failed", trunk.name)
                granted = 0
            if granted:
                failures = 0
                await asyncio.sleep(refresh_delay(granted))
                continue
            failures += 1
            delay = retry_delay(
                failures,
                base_time=self.retry_base_time,
                max_time=self.retry_max_time,
                jitter=self._jitter(),
            )
            logger.info(
                "trunk %s: registration failed %d times; retrying in %.1f s",
                trunk.name,
                failures,
                delay,
            )
            await asyncio.sleep(delay)

    async def register(self, trunk_name: str, *, expires: int | None = None) -> int:
        """Send one REGISTER (answering challenges); the granted lifetime, 0 if none.

        ``expires=0`` removes the registration (section 10.2.2).
        """
        trunk = self._trunks[trunk_name]
        stack = self._need_stack()
        asked = trunk.expires if expires is None else expires
        client = self._register_client(trunk)
        authorization: list[str] = []
        header = self._auth_header.get(trunk.name, "Authorization")
        uri = self._registrar_uri(trunk)
        if client is not None:
            authorization = client.credentials_for(method="REGISTER", uri=str(uri))
        status = 0
        for _ in range(MAX_REGISTER_ROUNDS + 1):
            request = self._register_request(trunk, uri, asked, header, authorization)
            destination, _trunk = self.destination(trunk.name)
            try:
                response = await stack.request(request, destination)
            except RequestTimeout:
                logger.warning("trunk %s: REGISTER timed out", trunk.name)
                status = 0
                break
            status = response.status
            if 200 <= status < 300:
                granted = 0 if asked == 0 else self._granted(response, request, asked)
                self._set_registered(trunk, granted > 0, status, granted)
                return granted
            if status in (401, 407) and client is not None:
                header = "Authorization" if status == 401 else "Proxy-Authorization"
                authorization = self._answer_challenge(
                    client, response, status, str(uri)
                )
                if authorization:
                    self._auth_header[trunk.name] = header
                    continue
            elif status == 423 and asked:
                minimum = _min_expires(response)
                if minimum is not None and minimum > asked:
                    asked = minimum
                    if client is not None:  # the same nonce, the next nonce-count
                        authorization = client.credentials_for(
                            method="REGISTER", uri=str(uri)
                        )
                    continue
            logger.warning(
                "trunk %s: REGISTER refused %d %s", trunk.name, status, response.reason
            )
            break
        self._set_registered(trunk, False, status, 0)
        return 0

    def _answer_challenge(
        self, client: DigestClient, response: Response, status: int, uri: str
    ) -> list[str]:
        name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        try:
            return client.authorize(
                response.headers.get_all(name), method="REGISTER", uri=uri
            )
        except BadMessage as exc:
            logger.warning("unreadable %d challenge: %s", status, exc)
            return []

    def _granted(self, response: Response, request: Request, asked: int) -> int:
        """The lifetime the registrar granted our contact (section 10.2.4)."""
        ours = request.contacts[0].uri
        try:
            contacts = response.contacts
        except BadMessage:
            contacts = []
        for contact in contacts:
            if isinstance(ours, SipUri) and isinstance(contact.uri, SipUri):
                same = ours.equivalent(contact.uri)
            else:
                same = str(ours) == str(contact.uri)
            value = contact.params.get("expires")
            if same and value is not None and value.isdigit():
                return int(value)
        header = response.headers.get("Expires")
        if header is not None and header.strip().isdigit():
            return int(header.strip())
        return asked

    def _register_client(self, trunk: Trunk) -> DigestClient | None:
        if not (trunk.username and trunk.password):
            return None
        client = self._register_clients.get(trunk.name)
        if client is None:
            client = DigestClient(username=trunk.username, password=trunk.password)
            self._register_clients[trunk.name] = client
        return client

    def _registrar_uri(self, trunk: Trunk) -> SipUri:
        domain = trunk.registrar_domain
        port = trunk.port if domain == trunk.host else None
        return SipUri(
            scheme="sip",
            user=None,
            password=None,
            host=_uri_host(domain),
            port=port,
            params=_transport_params(trunk.transport),
            headers={},
        )

    def _register_request(
        self,
        trunk: Trunk,
        uri: SipUri,
        expires: int,
        header: str,
        authorization: list[str],
    ) -> Request:
        stack = self._need_stack()
        local_host, local_port = stack.local_address(trunk.transport)
        # Section 10.2: one Call-ID for every REGISTER to this registrar, CSeq rising.
        call_id = self._register_call_ids.setdefault(
            trunk.name, f"{new_tag()}{new_tag()}@{local_host}"
        )
        aor = f"sip:{trunk.username}@{_uri_host(trunk.registrar_domain)}"
        # TODO: the Contact carries the listening address; behind NAT the carrier
        # should learn the public one (RFC 5626 outbound, or an advertised address).
        contact = f"sip:{trunk.username}@{_uri_host(local_host)}:{local_port}"
        if trunk.transport != "UDP":
            contact += f";transport={trunk.transport.lower()}"
        headers = Headers()
        headers.add("Max-Forwards", MAX_FORWARDS)
        headers.add("From", f"<{aor}>;tag={new_tag()}")
        headers.add("To", f"<{aor}>")
        headers.add("Call-ID", call_id)
        headers.add("CSeq", f"{self._next_cseq()} REGISTER")
        headers.add("Contact", f"<{contact}>")
        headers.add("Expires", str(expires))
        for value in authorization:
            headers.add(header, value)
        return Request(method="REGISTER", uri=uri, headers=headers)

    def _set_registered(
        self, trunk: Trunk, registered: bool, status: int, expires: int
    ) -> None:
        changed = registered != trunk.registered
        trunk.registered = registered
        if registered:
            logger.info("trunk %s registered for %d s", trunk.name, expires)
        if not changed and registered:
            return  # a refresh: nothing new to tell
        publish(
            self.bus,
            TrunkRegistrationChanged(
                at=self.clock(),
                trunk=trunk.name,
                registered=registered,
                status=status,
                expires=expires,
            ),
        )

    # -- monitoring (RFC 3261 section 11) -------------------------------------------

    async def _monitor_loop(self, trunk: Trunk) -> None:
        while True:
            try:
                await self.probe(trunk.name)
            except Exception:  # our bug must not end monitoring for good
                logger.exception("trunk %s: OPTIONS probe failed", trunk.name)
            await asyncio.sleep(trunk.options_interval)

    async def probe(self, trunk_name: str) -> bool:
        """Send one OPTIONS to the trunk and update its state; True if answered."""
        trunk = self._trunks[trunk_name]
        stack = self._need_stack()
        local_host, local_port = stack.local_address(trunk.transport)
        uri = self._registrar_uri(trunk)
        headers = Headers()
        headers.add("Max-Forwards", MAX_FORWARDS)
        headers.add(
            "From",
            f"<sip:ccswitch@{_uri_host(local_host)}:{local_port}>;tag={new_tag()}",
        )
        headers.add("To", f"<{uri}>")
        headers.add("Call-ID", f"{new_tag()}{new_tag()}@{local_host}")
        headers.add("CSeq", f"{self._next_cseq()} OPTIONS")
        request = Request(method="OPTIONS", uri=uri, headers=headers)
        destination, _trunk = self.destination(trunk.name)
        try:
            await stack.request(request, destination)
        except RequestTimeout:
            trunk.failed_probes += 1
            logger.debug(
                "trunk %s: OPTIONS unanswered (%d)", trunk.name, trunk.failed_probes
            )
            if trunk.available and trunk.failed_probes >= trunk.options_failures:
                self._set_available(trunk, False, "options timeout")
            return False
        trunk.failed_probes = 0
        if not trunk.available:
            self._set_available(trunk, True, "options answered")
        return True

    def _set_available(self, trunk: Trunk, available: bool, reason: str) -> None:
        trunk.available = available
        if available:
            logger.info("trunk %s is up again (%s)", trunk.name, reason)
        else:
            logger.warning("trunk %s is down (%s)", trunk.name, reason)
        publish(
            self.bus,
            TrunkStateChanged(
                at=self.clock(), trunk=trunk.name, available=available, reason=reason
            ),
        )

    # -- helpers --------------------------------------------------------------------

    def _identify_by_digest(self, request: Request, now: float) -> Trunk | None:
        assert self.digest_server is not None
        by_user = {
            trunk.inbound_username: trunk
            for trunk in self._trunks.values()
            if trunk.inbound_username and trunk.inbound_password
        }
        if not by_user:
            return None
        server = self.digest_server

        def lookup_ha1(username: str, realm: str, algorithm: str) -> str | None:
            trunk = by_user.get(username)
            if trunk is None or trunk.inbound_password is None or realm != server.realm:
                return None
            return _ha1(username, realm, trunk.inbound_password, algorithm)

        for value in request.headers.get_all("Proxy-Authorization"):
            if not value.lower().startswith("digest"):
                continue
            try:
                result = server.verify(
                    method=request.method,
                    authorization=value,
                    lookup_ha1=lookup_ha1,
                    now=now,
                    body=request.body,
                )
            except BadMessage:
                continue
            if result.ok and result.username in by_user:
                return by_user[result.username]
        return None

    def _need_stack(self) -> SipStack:
        if self.stack is None:
            raise RuntimeError("Trunks has no SipStack")
        return self.stack

    def _next_cseq(self) -> int:
        self._cseq += 1
        return self._cseq


def refresh_delay(granted: float) -> float:
    """Seconds until a registration granted for ``granted`` seconds is refreshed."""
    if granted < 2 * REFRESH_MARGIN:
        return granted / 2
    return granted - REFRESH_MARGIN


def retry_delay(
    failures: int, *, base_time: float, max_time: float, jitter: float
) -> float:
    """RFC 5626 section 4.5 back-off after ``failures`` consecutive failures.

    :param jitter: a number in [0, 1) choosing between 50 % and 100 % of the wait.
    """
    wait = min(max_time, base_time * 2.0 ** min(failures, 32))
    return wait * (0.5 + jitter / 2)


def _min_expires(response: Response) -> int | None:
    value = response.headers.get("Min-Expires")
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def _uri_host(host: str) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _transport_params(transport: str) -> dict[str, str | None]:
    if transport == "UDP":
        return {}
    return {"transport": transport.lower()}


def _ha1(username: str, realm: str, password: str, algorithm: str) -> str | None:
    try:
        return ha1(username, realm, password, algorithm)
    except LocalProtocolError:  # an algorithm we do not know: no credentials for it
        return None
