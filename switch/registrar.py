"""The registrar: where phones say where they are (RFC 3261 section 10.3).

Bindings live in memory for routing and are written through to a
:class:`BindingStore` (SQLite in the application) so that a restart of the switch
keeps every phone reachable without waiting for it to re-register. Expiry times are
wall-clock epochs for the same reason. A binding's ``source`` is the address the
REGISTER really came from: requests to a phone behind NAT go there, not to the
private address in its Contact (the RFC 3581 idea applied to the registrar, as
deployed registrars do).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from pyee import EventEmitter

from switch.events import (
    AuthenticationFailed,
    ContactReachability,
    RegistrationAdded,
    RegistrationRefreshed,
    RegistrationRemoved,
    publish,
)
from switch.sip.errors import BadMessage, ProtocolError
from switch.sip.message import Request, Response, make_response
from switch.sip.uri import SipUri
from switch.transport import Address
from switch.users import Authenticator

logger = logging.getLogger(__name__)

# RFC 3261 section 20.19: a q-value is a decimal from 0 to 1; the default is 1.
DEFAULT_Q = 1.0

#: Contacts one user may have at once: a desk phone, a softphone, a mobile, spares.
#: Without a bound one account could make every 200 OK and keep-alive round huge.
DEFAULT_MAX_CONTACTS = 10

# Section 25.1: delta-seconds is 1*DIGIT; longer values are cut in error phrases.
MAX_QUOTED = 20


class BindingStore(Protocol):
    """Where bindings survive a restart (implemented by ``ccswitch.store``)."""

    async def load_bindings(self) -> list[Binding]: ...

    async def save_binding(self, binding: Binding) -> None: ...

    async def delete_binding(self, user: str, contact: str) -> None: ...


@dataclass(kw_only=True, slots=True)
class Binding:
    """One contact of one user, with what we learned about how to reach it."""

    user: str
    contact: str
    expires_at: float
    q: float = DEFAULT_Q
    call_id: str = ""
    cseq: int = 0
    source: Address = ("UDP", "", 0)
    user_agent: str | None = None
    registered_at: float = 0.0
    reachable: bool = True
    failed_qualifies: int = field(default=0, compare=False)

    def expires_in(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))


class Registrar:
    """Handles REGISTER and answers "where is user X" for the router.

    :param clock: wall-clock source (epoch seconds); tests pass a fake one.
    """

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        store: BindingStore,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
        max_contacts: int = DEFAULT_MAX_CONTACTS,
        bus: EventEmitter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.authenticator = authenticator
        self.store = store
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_contacts = max_contacts
        self.bus = bus
        self.clock = clock
        self._bindings: dict[str, dict[str, Binding]] = {}
        # How many stored bindings came from each (host, port): every INVITE asks
        # whether its source is a registered phone, and scanning every binding for
        # that grows with the number of phones. Kept by _put and _pop, the only
        # writers of _bindings.
        self._sources: dict[tuple[str, int], int] = {}

    async def start(self) -> None:
        """Load stored bindings, dropping those that expired while we were down."""
        now = self.clock()
        kept = 0
        for binding in await self.store.load_bindings():
            if binding.expires_at <= now:
                await self.store.delete_binding(binding.user, binding.contact)
                continue
            self._put(binding)
            kept += 1
        logger.info("registrar loaded %d binding(s)", kept)

    # -- queries ------------------------------------------------------------------

    def lookup(self, user: str) -> list[Binding]:
        """Live bindings of ``user``, reachable ones first, then by q-value."""
        now = self.clock()
        bindings = [
            b for b in self._bindings.get(user, {}).values() if b.expires_at > now
        ]
        return sorted(bindings, key=lambda b: (not b.reachable, -b.q, -b.registered_at))

    def get(self, user: str, contact: str) -> Binding | None:
        """The current binding of ``user`` at ``contact``, if any."""
        return self._bindings.get(user, {}).get(contact)

    def all_bindings(self) -> list[Binding]:
        return [b for per_user in self._bindings.values() for b in per_user.values()]

    def registered_from(self, source: Address) -> bool:
        """Whether any stored binding's REGISTER came from ``source``'s host and port
        (whatever the transport): the same answer as scanning :meth:`all_bindings`."""
        return source[1:] in self._sources

    def _put(self, binding: Binding) -> None:
        """Store ``binding``, replacing the user's binding at the same contact."""
        per_user = self._bindings.setdefault(binding.user, {})
        old = per_user.get(binding.contact)
        if old is not None:
            self._forget_source(old)
        per_user[binding.contact] = binding
        key = binding.source[1:]
        self._sources[key] = self._sources.get(key, 0) + 1

    def _pop(self, user: str, contact: str) -> Binding | None:
        """Remove and return the binding of ``user`` at ``contact``, if any."""
        binding = self._bindings.get(user, {}).pop(contact, None)
        if binding is not None:
            self._forget_source(binding)
        return binding

    def _forget_source(self, binding: Binding) -> None:
        key = binding.source[1:]
        left = self._sources[key] - 1
        if left:
            self._sources[key] = left
        else:
            del self._sources[key]

    # -- REGISTER -----------------------------------------------------------------

    async def handle_register(self, request: Request, source: Address) -> Response:
        """Process one REGISTER (section 10.3, steps 1-8) and return the response."""
        now = self.clock()
        # Section 10.3 steps 1-2 and 10.2: the Request-URI names the domain only, and
        # the address-of-record in To is a SIP or SIPS URI; no need to challenge first.
        if not isinstance(request.uri, SipUri) or request.uri.user is not None:
            return make_response(
                request, 400, "REGISTER Request-URI must name a domain"
            )
        if _to_user(request) is None:
            return make_response(
                request, 400, "To must be a sip or sips address-of-record"
            )
        outcome = self.authenticator.check(request, now=now)
        if outcome.response is not None:
            if outcome.reason != "no credentials":
                logger.info(
                    "REGISTER auth failed from %s:%s: %s",
                    source[1],
                    source[2],
                    outcome.reason,
                )
                publish(
                    self.bus,
                    AuthenticationFailed(
                        at=now,
                        method="REGISTER",
                        user=_to_user(request),
                        source=f"{source[1]}:{source[2]}",
                        reason=outcome.reason,
                    ),
                )
            return outcome.response
        user = outcome.user
        assert user is not None

        # Step 6: the authenticated user may only register their own address-of-record.
        aor_user = _to_user(request)
        if aor_user != user:
            logger.info("%s may not register %r", user, aor_user)
            return make_response(request, 403, "Forbidden: not your address-of-record")

        try:
            return await self._update_bindings(request, user, source, now)
        except ProtocolError as exc:
            response = make_response(request, exc.status, exc.reason)
            for name, value in exc.headers:
                response.headers.add(name, value)
            return response

    async def _update_bindings(
        self, request: Request, user: str, source: Address, now: float
    ) -> Response:
        call_id = request.call_id
        cseq = request.cseq.number
        header_expires = _header_expires(request)
        current = self._bindings.setdefault(user, {})

        # Step 6, wildcard: "Contact: *" needs Expires: 0 and no other contact.
        if request.is_star_contact:
            if header_expires != 0 or len(request.headers.get_all("Contact")) != 1:
                raise ProtocolError("Contact * needs Expires: 0 and no other contact")
            for contact, binding in list(current.items()):
                if binding.call_id == call_id and cseq <= binding.cseq:
                    continue
                await self._remove(user, contact, "unregistered")
            return self._ok(request, user, now)

        # Validate every contact before changing anything: a REGISTER that fails is
        # refused whole (section 10.3 step 7), never half applied.
        updates: dict[str, tuple[int, float]] = {}
        for name_addr in request.contacts:
            uri = name_addr.uri
            if not isinstance(uri, SipUri):
                raise ProtocolError("Contact must be a sip or sips URI")
            if uri.port == 0:
                raise ProtocolError("Contact port 0 cannot be reached")
            contact = str(uri)
            if contact in updates:
                raise ProtocolError("Contact listed twice")
            expires = _contact_expires(
                name_addr.params.get("expires"), header_expires, self.default_expires
            )
            # Step 7: too short a registration is refused with our minimum (423).
            if 0 < expires < self.min_expires:
                raise ProtocolError(
                    "Interval Too Brief",
                    status=423,
                    headers=(("Min-Expires", str(self.min_expires)),),
                )
            existing = current.get(contact)
            if (
                existing is not None
                and existing.call_id == call_id
                and cseq <= existing.cseq
            ):
                # Step 7: an older or repeated REGISTER must not win over a newer one.
                raise ProtocolError("Out of order CSeq for this binding", status=500)
            updates[contact] = (
                min(expires, self.max_expires),
                _q_value(name_addr.params.get("q")),
            )
        kept = sum(1 for contact in current if contact not in updates)
        added = sum(1 for contact, (expires, _) in updates.items() if expires)
        if kept + added > self.max_contacts:
            raise ProtocolError(
                f"Too many contacts (at most {self.max_contacts} per user)", status=403
            )

        user_agent = request.headers.get("User-Agent")
        for contact, (expires, q) in updates.items():
            existing = current.get(contact)
            if expires == 0:
                if existing is not None:
                    await self._remove(user, contact, "unregistered")
                continue
            binding = Binding(
                user=user,
                contact=contact,
                expires_at=now + expires,
                q=q,
                call_id=call_id,
                cseq=cseq,
                source=source,
                user_agent=user_agent,
                registered_at=existing.registered_at if existing else now,
            )
            # Looked up again: a removal above may have dropped the user's table.
            self._put(binding)
            await self.store.save_binding(binding)
            if existing is None:
                logger.info(
                    "registered %s at %s (%ss) from %s:%s",
                    user,
                    contact,
                    expires,
                    source[1],
                    source[2],
                )
                publish(
                    self.bus,
                    RegistrationAdded(
                        at=now,
                        user=user,
                        contact=contact,
                        source=f"{source[1]}:{source[2]}",
                        expires=expires,
                        user_agent=user_agent,
                    ),
                )
            else:
                if not existing.reachable:
                    # A phone that registers again can reach us; say it is back.
                    publish(
                        self.bus,
                        ContactReachability(
                            at=now, user=user, contact=contact, reachable=True
                        ),
                    )
                logger.debug("refreshed %s at %s (%ss)", user, contact, expires)
                publish(
                    self.bus,
                    RegistrationRefreshed(
                        at=now, user=user, contact=contact, expires=expires
                    ),
                )
        return self._ok(request, user, now)

    def _ok(self, request: Request, user: str, now: float) -> Response:
        """Step 8: 200 listing every current binding with its remaining time."""
        response = make_response(request, 200, "OK")
        for binding in self.lookup(user):
            response.headers.add(
                "Contact",
                f"<{binding.contact}>;expires={binding.expires_in(now)}"
                + (f";q={binding.q:g}" if binding.q != DEFAULT_Q else ""),
            )
        response.headers.set(
            "Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))
        )
        return response

    # -- upkeep -------------------------------------------------------------------

    async def expire(self) -> int:
        """Remove every binding whose time is up; returns how many were removed."""
        now = self.clock()
        expired = [b for b in self.all_bindings() if b.expires_at <= now]
        removed = 0
        for binding in expired:
            # A REGISTER may have refreshed it while an earlier removal was awaited.
            if self._bindings.get(binding.user, {}).get(binding.contact) is binding:
                await self._remove(binding.user, binding.contact, "expired")
                removed += 1
        for user in [u for u, per_user in self._bindings.items() if not per_user]:
            del self._bindings[user]
        return removed

    async def mark(self, binding: Binding, *, reachable: bool) -> None:
        """Record the outcome of a keep-alive; persist a change of reachability."""
        stored = self._bindings.get(binding.user, {}).get(binding.contact)
        if stored is None:
            return
        if reachable:
            stored.failed_qualifies = 0
        if stored.reachable != reachable:
            stored.reachable = reachable
            await self.store.save_binding(replace(stored))

    async def _remove(self, user: str, contact: str, reason: str) -> None:
        # The user's (maybe empty) table stays: a REGISTER being processed holds it.
        if self._pop(user, contact) is None:
            return
        await self.store.delete_binding(user, contact)
        logger.info("binding of %s at %s removed (%s)", user, contact, reason)
        publish(
            self.bus,
            RegistrationRemoved(
                at=self.clock(), user=user, contact=contact, reason=reason
            ),
        )


def _to_user(request: Request) -> str | None:
    try:
        uri = request.to.uri
    except BadMessage:
        return None
    return uri.user if isinstance(uri, SipUri) else None


def _header_expires(request: Request) -> int | None:
    value = request.headers.get("Expires")
    if value is None:
        return None
    text = value.strip()
    if text.startswith("-") and _is_delta_seconds(text[1:]):
        raise ProtocolError("Negative Expires value")
    if not _is_delta_seconds(text):
        raise ProtocolError(f"Bad Expires value {text[:MAX_QUOTED]!r}")
    return int(text)


def _contact_expires(param: str | None, header: int | None, default: int) -> int:
    """Section 10.2.1.1: the contact's own expires wins over the Expires header."""
    if param is not None:
        if param.startswith("-") and _is_delta_seconds(param[1:]):
            raise ProtocolError("Negative expires parameter")
        if not _is_delta_seconds(param):
            raise ProtocolError(f"Bad expires parameter {param[:MAX_QUOTED]!r}")
        return int(param)
    return header if header is not None else default


def _is_delta_seconds(text: str) -> bool:
    """Section 25.1 delta-seconds: ASCII digits only (no sign, '_' or other scripts)."""
    return bool(text) and text.isascii() and text.isdigit()


def _q_value(param: str | None) -> float:
    if param is None:
        return DEFAULT_Q
    try:
        value = float(param)
    except ValueError:
        raise ProtocolError(f"Bad q value {param[:MAX_QUOTED]!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ProtocolError(f"q value {param} out of range 0-1")
    return value
