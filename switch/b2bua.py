"""The back-to-back user agent: INVITEs in, calls out (RFC 3261 sections 13-15).

:class:`B2bua` sits on the :class:`~switch.stack.SipStack` handlers. For an INVITE out of
any dialog it establishes who is calling (a trunk by source address, else a local user
by digest, RFC 3261 22.3, challenged with 407), applies the switch-wide call limit (503
with Retry-After, RFC 3261 21.5.4), asks the dialplan where the number goes, answers
the caller's SDP offer with a fresh media endpoint and hands the rest to a
:class:`~switch.call.Call`. Requests inside a dialog (ACK, BYE, re-INVITE, UPDATE,
REFER, INFO) are matched to their leg by dialog id and passed to the call; a CANCEL is
matched to the INVITE transaction it cancels (RFC 3261 9.2). Media events from the
engine (DTMF, playback finished, RTP timeout) come in through :meth:`on_media_event`.

Identification order (toll-fraud protection, issue 4): a request carrying
``Proxy-Authorization`` is checked as a local user; a request from the address a
registered phone registered from is challenged as that user (phones and trunks may
share a host on a test box); a source matching a trunk is that trunk; anything else is
challenged. Nothing unidentified is ever routed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pyee import EventEmitter

from media.commands import (
    Command,
    EndpointTimeout,
    EngineLoad,
    MediaError,
    MediaEvent,
    Play,
    PlaybackFinished,
    Result,
    Tone,
    ToneName,
)
from media.commands import (
    DtmfReceived as MediaDtmf,
)
from switch.call import (
    OPTION_100REL,
    Call,
    CallEndedError,
    allowed_methods,
    called_number,
    new_call_id,
    option_tags,
    ordered_codecs,
    parse_replaces,
    uri_number,
)
from switch.dialplan import (
    Caller,
    Dialplan,
    Route,
    RouteRefused,
    ToApp,
    ToTrunk,
    ToUser,
)
from switch.events import (
    AuthenticationFailed,
    CallRejected,
    CallRouted,
    CallStarted,
    DtmfReceived,
    LegStarted,
    publish,
)
from switch.leg import (
    CAUSE_TEMPORARY_FAILURE,
    HangupBy,
    Leg,
    LegRole,
    LegState,
    Ringback,
    Target,
    cause_for_status,
)
from switch.overload import OverloadGuard
from switch.registrar import Registrar
from switch.session import CallSession, Hangup
from switch.session_timer import negotiate_uas
from switch.sip.auth import DigestClient
from switch.sip.dialog import Dialog, DialogId
from switch.sip.errors import ProtocolError
from switch.sip.headers import NameAddr
from switch.sip.message import Request, Response, make_response
from switch.sip.offer_answer import answer_offer
from switch.sip.sdp import parse_sdp
from switch.sip.transaction import CallIdAdapter, new_tag
from switch.sip.uri import SipUri
from switch.stack import SipStack
from switch.transport import Address
from switch.users import Authenticator

logger = logging.getLogger(__name__)

# RFC 3261 21.5.4 / 20.33: the answer when the switch is full.
STATUS_SERVICE_UNAVAILABLE = 503
# RFC 3261 21.4.26: what an originated call that the switch ended itself reports.
STATUS_REQUEST_TERMINATED = 487
# Default seconds an outbound leg may ring before the caller gets 480.
DEFAULT_RING_TIMEOUT = 60.0
# Q.850 cause for a call cut at the maximum duration (recovery on timer expiry).
CAUSE_MAX_DURATION = 102
# RFC 4733 digits a SIP INFO (application/dtmf-relay) may carry.
DTMF_DIGITS = frozenset("0123456789*#ABCD")

#: A local application: runs over the caller's leg until it returns or hangs up.
App = Callable[[CallSession, ToApp], Awaitable[None]]


class MediaControl(Protocol):
    """The part of :class:`media.engine.MediaEngine` the B2BUA uses."""

    def execute(self, command: Command) -> Result: ...


class TrunksLike(Protocol):
    """The part of :class:`switch.trunks.Trunks` the B2BUA uses."""

    def identify(self, request: Request, source: Address) -> object | None: ...

    def destination(self, trunk_name: str) -> tuple[Address, object]: ...

    def request_uri(self, trunk_name: str, number: str) -> str: ...

    def acquire(self, trunk_name: str) -> bool: ...

    def release(self, trunk_name: str) -> None: ...

    def credentials(self, trunk_name: str) -> DigestClient | None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Switch-wide limits (from ``[limits]``).

    :param max_calls: concurrent calls; 0 is no limit.
    :param max_duration: seconds after which a call is hung up; 0 is no limit.
    :param retry_after: the ``Retry-After`` of a 503 when full (RFC 3261 20.33).
    :param ring_timeout: seconds outbound legs ring before the caller gets 480.
    :param ringback: relay the callee's ringing and early media, or play our own.
    """

    max_calls: int = 0
    max_duration: float = 0.0
    retry_after: int = 30
    ring_timeout: float = DEFAULT_RING_TIMEOUT
    ringback: Ringback = Ringback.RELAY


@dataclass(frozen=True, kw_only=True, slots=True)
class Originated:
    """A call placed by :meth:`B2bua.originate`, both parties connected.

    :param user: the peer of the first leg (the agent's user for a callback).
    """

    call: Call
    user: str
    leg_id: str

    async def wait_hangup(self) -> None:
        """Until either party hangs up (or the switch ends the call)."""
        await self.call.ended_event.wait()


class B2bua:
    """Calls between callers, users, trunks and local apps; see the module doc.

    :param stack: the SIP stack whose handlers this installs (:meth:`install`).
    :param engine: the media engine (commands in, events via :meth:`on_media_event`).
    :param registrar: where users' phones are (``lookup``).
    :param authenticator: digest checks for callers that are local users (407).
    :param dialplan: where numbers go.
    :param trunks: carrier trunks, or None when none are configured.
    :param apps: local applications by name (``echo``, ``tone``...).
    :param media_host: the address our SDP advertises.
    :param overload: sheds new calls with 503 while the switch is overloaded.
    :param recordings: a folder: every bridged call is recorded there.
    """

    def __init__(
        self,
        *,
        stack: SipStack,
        engine: MediaControl,
        registrar: Registrar,
        authenticator: Authenticator,
        dialplan: Dialplan,
        trunks: TrunksLike | None = None,
        bus: EventEmitter | None = None,
        limits: Limits = Limits(),
        apps: dict[str, App] | None = None,
        media_host: str = "127.0.0.1",
        overload: OverloadGuard | None = None,
        recordings: str | None = None,
    ) -> None:
        self.stack = stack
        self.engine = engine
        self.registrar = registrar
        self.authenticator = authenticator
        self.dialplan = dialplan
        self.trunks = trunks
        self.bus = bus
        self.limits = limits
        self.apps: dict[str, App] = dict(apps or {})
        self.media_host = media_host
        self.overload = overload
        self.recordings = recordings
        self.calls: dict[str, Call] = {}
        self._dialogs: dict[DialogId, tuple[Call, Leg]] = {}
        self._invites: dict[tuple[str, str], Call] = {}  # (Call-ID, branch) -> call
        self._outbound: dict[str, tuple[Call, Leg]] = {}  # outbound Call-ID -> leg
        self._endpoints: dict[int, tuple[Call, Leg]] = {}
        # What each call put in the three tables above, so that forgetting a call
        # costs its own entries, not a scan of every call's (1000+ at full load).
        self._keys: dict[str, list[tuple[dict[Any, Any], Any]]] = {}
        self.playbacks: dict[int, asyncio.Future[str]] = {}

    # ------------------------------------------------------------ wiring

    def install(self) -> None:
        """Put our handlers on the stack."""
        handlers = self.stack.handlers
        handlers["INVITE"] = self.handle_invite
        handlers["ACK"] = self.handle_ack
        handlers["BYE"] = self.handle_bye
        handlers["CANCEL"] = self.handle_cancel
        handlers["UPDATE"] = self.handle_update
        handlers["REFER"] = self.handle_refer
        handlers["INFO"] = self.handle_info
        handlers["PRACK"] = self.handle_prack
        self.stack.on_late_2xx = self.handle_late_2xx
        self._contact_texts: dict[str, tuple[tuple[str, int], str]] = {}

    def contact(self, transport: str = "UDP") -> NameAddr:
        """Our Contact: the switch's own address on ``transport``."""
        host, port = self.stack.local_address(transport)
        params: dict[str, str | None] = (
            {} if transport == "UDP" else {"transport": transport.lower()}
        )
        return NameAddr(
            uri=SipUri(
                scheme="sip",
                user="ccswitch",
                password=None,
                host=host,
                port=port,
                params=params,
            )
        )

    def contact_text(self, transport: str = "UDP") -> str:
        """:meth:`contact` as header text, made once per transport: every 2xx and
        every INVITE we send carries it."""
        local = self.stack.local_address(transport)
        cached = self._contact_texts.get(transport)
        if cached is None or cached[0] != local:  # made again if the address moved
            cached = self._contact_texts[transport] = (
                local,
                str(self.contact(transport)),
            )
        return cached[1]

    def media(self, command: Command) -> Result:
        """Run one media command (raises :class:`~media.commands.MediaError`)."""
        return self.engine.execute(command)

    async def stop(self) -> None:
        """End every call (BYE/CANCEL/final as needed) and let the requests go out."""
        calls = list(self.calls.values())
        for call in calls:
            call.end(hangup_by="switch", status=STATUS_SERVICE_UNAVAILABLE, cause=41)
        if calls:
            await asyncio.sleep(
                0.05
            )  # re-INVITE and transfer tasks send on their first step

    # ------------------------------------------------------------ registries

    def _index(self, table: dict[Any, Any], key: Any, value: Any, call: Call) -> None:
        table[key] = value
        self._keys.setdefault(call.call_id, []).append((table, key))

    def register_dialog(self, dialog: Dialog, call: Call, leg: Leg) -> None:
        self._index(self._dialogs, dialog.id, (call, leg), call)

    def register_outbound(self, sip_call_id: str, call: Call, leg: Leg) -> None:
        self._index(self._outbound, sip_call_id, (call, leg), call)

    def register_endpoint(self, endpoint_id: int, call: Call, leg: Leg) -> None:
        self._endpoints[endpoint_id] = (call, leg)

    def credentials(self, trunk_name: str | None) -> DigestClient | None:
        """A digest client for calls out through ``trunk_name`` (None: none known)."""
        if trunk_name is None or self.trunks is None:
            return None
        try:
            return self.trunks.credentials(trunk_name)
        except KeyError:
            return None

    def find_dialog(
        self, call_id: str, to_tag: str, from_tag: str
    ) -> tuple[Call, Leg] | None:
        """The leg of a Replaces (RFC 3891 section 3): to-tag ours, or the reverse."""
        ours = self._dialogs.get(DialogId(call_id, to_tag, from_tag))
        return ours or self._dialogs.get(DialogId(call_id, from_tag, to_tag))

    def adopt(self, leg: Leg, call: Call) -> None:
        """``leg`` now belongs to ``call`` (attended transfer moved it)."""
        self.register_endpoint_of(leg, call)
        if leg.role is LegRole.OUTBOUND:
            self._index(self._outbound, leg.call_id, (call, leg), call)

    def register_endpoint_of(self, leg: Leg, call: Call) -> None:
        """Index ``leg``'s dialog and endpoint under ``call`` (a leg moved in)."""
        if leg.dialog is not None:
            self._index(self._dialogs, leg.dialog.id, (call, leg), call)
        if leg.endpoint_id is not None:
            self._endpoints[leg.endpoint_id] = (call, leg)

    def forget_endpoint(self, endpoint_id: int) -> None:
        self._endpoints.pop(endpoint_id, None)

    def acquire_slot(self, leg: Leg, trunk: str) -> bool:
        """Take one of ``trunk``'s call slots for ``leg`` (False: the trunk is full).

        A slot belongs to a leg, not a call, so a leg moved by a transfer keeps it
        and every path to a trunk (dialplan, application bridge, transfer, inbound
        from it) counts against the same per-trunk limit.
        """
        if self.trunks is None or leg.trunk_slot == trunk:
            return True
        if not self.trunks.acquire(trunk):
            leg.log.warning("trunk %s is at its call limit", trunk)
            return False
        self.release_slot(leg)
        leg.trunk_slot = trunk
        return True

    def release_slot(self, leg: Leg) -> None:
        """Give back ``leg``'s trunk slot, if it holds one (idempotent)."""
        if leg.trunk_slot is not None and self.trunks is not None:
            self.trunks.release(leg.trunk_slot)
        leg.trunk_slot = None

    def forget_call(self, call: Call) -> None:
        """Drop every index entry of an ended call and give back its trunk slot."""
        self.calls.pop(call.call_id, None)
        for table, key in self._keys.pop(call.call_id, ()):
            entry = table.get(key)
            # An entry moved to another call since (attended transfer) stays.
            owner = entry[0] if isinstance(entry, tuple) else entry
            if owner is call:
                del table[key]
        for leg in (call.inbound, *call.outbound):
            self.release_slot(leg)

    def _find(self, request: Request) -> tuple[Call, Leg] | None:
        """The leg an in-dialog request belongs to (RFC 3261 12.2.2)."""
        local_tag = request.to.tag
        if local_tag is None:
            return None
        key = DialogId(request.call_id, local_tag, request.from_.tag or "")
        return self._dialogs.get(key)

    # ------------------------------------------------------------ INVITE

    def handle_invite(self, request: Request, source: Address) -> Response | None:
        """An INVITE: a new call, or a re-INVITE inside one of our dialogs."""
        if request.to.tag is not None:
            found = self._find(request)
            if found is None:
                return make_response(request, 481, "Call/Transaction Does Not Exist")
            call, leg = found
            assert leg.dialog is not None
            try:
                leg.dialog.receive_request(request)
            except ProtocolError as exc:
                return make_response(request, exc.status, exc.reason)
            response = call.on_offer(leg, request)
            if response.status == 200:
                call.expect_ack(leg, request, response)
            return response
        return self._new_call(request, source)

    def _new_call(self, request: Request, source: Address) -> Response | None:
        log = CallIdAdapter(logger, {"call_id": request.call_id})
        caller_or_response = self._identify(request, source)
        if isinstance(caller_or_response, Response):
            return caller_or_response
        caller = caller_or_response
        if "Replaces" in request.headers:
            return self._replace(request, source, caller, log)
        called = uri_number(request.uri)
        log.info(
            "INVITE %s from %s %s (%s:%d)",
            called,
            caller.kind,
            caller.name,
            source[1],
            source[2],
        )
        limits = self.limits
        busy = None
        if limits.max_calls and len(self.calls) >= limits.max_calls:
            log.warning("%d calls in progress: 503", len(self.calls))
            busy = "Too Many Calls"
        elif overloaded := self.overload and self.overload.reason(time.monotonic()):
            log.warning("overloaded (%s): 503", overloaded)
            busy = "Overloaded"
        if busy is not None:  # full or overloaded: try again later (RFC 3261 21.5.4)
            response = self._reject(request, source, caller, called, 503, busy)
            response.headers.add("Retry-After", str(limits.retry_after))
            return response
        try:
            route = self.dialplan.route(called=called, caller=caller)
        except RouteRefused as refused:
            log.info("route refused: %d %s", refused.status, refused.reason)
            return self._reject(
                request, source, caller, called, refused.status, refused.reason
            )
        return self._start_call(request, source, caller, called, route, log)

    def _start_call(
        self,
        request: Request,
        source: Address,
        caller: Caller,
        called: str,
        route: Route,
        log: CallIdAdapter,
    ) -> Response | None:
        sip_call_id = request.call_id
        inbound = Leg(
            role=LegRole.INBOUND,
            call_id=sip_call_id,
            peer=caller.number or caller.name,
            destination=source,
            media_host=self.media_host,
        )
        inbound.invite = request
        inbound.reliable = OPTION_100REL in option_tags(request, "Require")
        inbound.peer_allows_update = "UPDATE" in allowed_methods(request)
        try:
            # RFC 4028 section 9: too short an interval is refused before any work.
            inbound.timer_negotiated = negotiate_uas(request)
        except ProtocolError as exc:
            refused = self._reject(
                request, source, caller, called, exc.status, exc.reason
            )
            for name, value in exc.headers:
                refused.headers.add(name, value)
            return refused
        try:
            inbound.dialog = Dialog.from_uas(
                request, local_contact=self.contact(source[0]), early=True
            )
            offer = parse_sdp(request.body) if request.body else None
        except ProtocolError as exc:
            return self._reject(request, source, caller, called, exc.status, exc.reason)
        if caller.kind == "trunk" and not self.acquire_slot(inbound, caller.name):
            response = self._reject(
                request, source, caller, called, 503, "Trunk Call Limit"
            )
            response.headers.add("Retry-After", str(self.limits.retry_after))
            return response
        call = Call(self, inbound=inbound, caller=caller, called=called)
        try:
            call.create_endpoint(inbound, latching=True)
        except MediaError as exc:
            log.warning("no media endpoint: %s", exc)
            self.release_slot(inbound)
            response = self._reject(request, source, caller, called, 503, "No Media")
            response.headers.add("Retry-After", str(self.limits.retry_after))
            return response
        if offer is not None:
            try:
                answer = answer_offer(offer, inbound.session, ports=[inbound.rtp_port])
            except ProtocolError as exc:
                call.end(hangup_by="switch", status=exc.status, cause=88)
                refused = make_response(
                    request, exc.status, exc.reason, to_tag=inbound.dialog.id.local_tag
                )
                for name, value in exc.headers:
                    refused.headers.add(name, value)
                return refused
            inbound.answer_sdp = answer.sdp
            call.apply_media(inbound, answer.accepted[0])
        self.calls[call.call_id] = call
        self._index(self._dialogs, inbound.dialog.id, (call, inbound), call)
        branch = request.top_via.branch or ""
        self._index(self._invites, (sip_call_id, branch), call, call)
        now = time.time()
        publish(
            self.bus,
            CallStarted(
                at=now,
                call_id=call.call_id,
                sip_call_id=sip_call_id,
                caller=caller.number,
                called=called,
                source=f"{source[1]}:{source[2]}",
                trunk=caller.name if caller.kind == "trunk" else None,
                user=caller.name if caller.kind == "user" else None,
            ),
        )
        publish(
            self.bus,
            LegStarted(
                at=now,
                call_id=call.call_id,
                leg_id=inbound.leg_id,
                role=inbound.role.value,
                sip_call_id=sip_call_id,
                peer=inbound.peer,
            ),
        )
        kind, target = _route_label(route)
        publish(
            self.bus,
            CallRouted(at=now, call_id=call.call_id, kind=kind, target=target),
        )
        if self.limits.max_duration:
            call.call_later(
                self.limits.max_duration,
                lambda: call.end(hangup_by="switch", cause=CAUSE_MAX_DURATION),
            )
        call.spawn(self._run(call, route), "routing")
        return None

    def _replace(
        self, request: Request, source: Address, caller: Caller, log: CallIdAdapter
    ) -> Response | None:
        """RFC 3891: an INVITE replacing a confirmed dialog of ours (attended transfer).

        The Replaces to-tag is our tag, the from-tag the peer's (section 3); the other
        order is accepted too. No match, or an early dialog: 481; an ended one: 603.
        """
        try:
            replaces = parse_replaces(request.headers.get("Replaces") or "")
        except ProtocolError as exc:
            return make_response(request, exc.status, exc.reason, to_tag=new_tag())
        call_id, to_tag, from_tag, early_only = replaces
        found = self.find_dialog(call_id, to_tag, from_tag)
        if found is None:
            log.info("Replaces matches no dialog: 481")
            return make_response(
                request, 481, "Call/Transaction Does Not Exist", to_tag=new_tag()
            )
        call, old = found
        if call.ended or old.ended:
            return make_response(request, 603, "Declined", to_tag=new_tag())
        if early_only or not old.answered:
            # TODO: RFC 3891 section 3 lets an INVITE replace an early dialog we
            # answer as UAS (call pickup); cost: such pickups get 481 / 486.
            status, reason = (486, "Busy Here") if early_only else (481, "Early Dialog")
            return make_response(request, status, reason, to_tag=new_tag())
        new = Leg(
            role=LegRole.INBOUND,
            call_id=request.call_id,
            peer=caller.number or caller.name,
            destination=source,
            media_host=self.media_host,
        )
        new.invite = request
        try:
            new.dialog = Dialog.from_uas(
                request, local_contact=self.contact(source[0]), early=True
            )
            offer = parse_sdp(request.body) if request.body else None
            new.timer_negotiated = negotiate_uas(request)
        except ProtocolError as exc:
            refused = make_response(request, exc.status, exc.reason, to_tag=new_tag())
            for name, value in exc.headers:
                refused.headers.add(name, value)
            return refused
        try:
            call.create_endpoint(new, latching=True)
        except MediaError as exc:
            log.warning("no media endpoint: %s", exc)
            return make_response(request, 503, "No Media", to_tag=new_tag())
        if offer is not None:
            partner = call.other(old)
            first = partner.media.codec if partner and partner.media else None
            try:
                answer = answer_offer(
                    offer,
                    new.session,
                    ports=[new.rtp_port],
                    codecs=ordered_codecs(first),
                )
            except ProtocolError as exc:
                call.finish_leg(new, status=exc.status, hangup_by=HangupBy.LOCAL)
                return make_response(
                    request, exc.status, exc.reason, to_tag=new.dialog.id.local_tag
                )
            new.answer_sdp = answer.sdp
            call.apply_media(new, answer.accepted[0])
        log.info("INVITE replaces leg %s of call %s", old.leg_id, call.call_id)
        invite_key = (request.call_id, request.top_via.branch or "")
        self._index(self._invites, invite_key, call, call)
        call.replace_leg(old, new)
        return None

    def _identify(self, request: Request, source: Address) -> Caller | Response:
        """Who is calling: a local user (digest), a trunk (source), else 407."""
        number = _from_user(request)
        challenged = "Proxy-Authorization" in request.headers or self._from_a_phone(
            source
        )
        if not challenged and self.trunks is not None:
            trunk = self.trunks.identify(request, source)
            if trunk is not None:
                name = str(getattr(trunk, "name", trunk))
                return Caller(
                    kind="trunk", name=name, number=number, allow_outbound=False
                )
        outcome = self.authenticator.check(request, now=time.time(), proxy=True)
        if outcome.user is None:
            assert outcome.response is not None
            if outcome.reason and outcome.reason != "no credentials":
                publish(
                    self.bus,
                    AuthenticationFailed(
                        at=time.time(),
                        method="INVITE",
                        user=None,
                        source=f"{source[1]}:{source[2]}",
                        reason=outcome.reason,
                    ),
                )
            return outcome.response
        user = self.authenticator.directory.get(outcome.user)
        return Caller(
            kind="user",
            name=outcome.user,
            number=outcome.user,
            allow_outbound=bool(user is not None and user.allow_outbound),
        )

    def _from_a_phone(self, source: Address) -> bool:
        """Whether ``source`` is where a registered phone registered from."""
        return self.registrar.registered_from(source)

    def _reject(
        self,
        request: Request,
        source: Address,
        caller: Caller,
        called: str,
        status: int,
        reason: str,
    ) -> Response:
        publish(
            self.bus,
            CallRejected(
                at=time.time(),
                call_id=new_call_id(),
                caller=caller.number,
                called=called,
                source=f"{source[1]}:{source[2]}",
                status=status,
                reason=reason,
            ),
        )
        return make_response(request, status, reason, to_tag=new_tag())

    def targets(self, route: Route) -> list[Target] | int:
        """Where a user or trunk route rings; a status when nothing can be rung."""
        if isinstance(route, ToUser):
            bindings = self.registrar.lookup(route.user)
            targets = [
                Target(
                    uri=binding.contact,
                    to=f"<sip:{route.user}@{self.media_host}>",
                    destination=binding.source,
                    peer=route.user,
                )
                for binding in bindings
                if binding.reachable
            ]
            return targets or 480
        if isinstance(route, ToTrunk):
            if self.trunks is None:
                return 503
            try:
                destination, _ = self.trunks.destination(route.trunk)
                uri = self.trunks.request_uri(route.trunk, route.number)
            except KeyError:
                return 404
            return [
                Target(
                    uri=uri,
                    to=f"<{uri}>",
                    destination=destination,
                    peer=route.trunk,
                    trunk=route.trunk,
                )
            ]
        return 404

    async def _run(self, call: Call, route: Route) -> None:
        if isinstance(route, ToApp):
            await self._run_app(call, route)
            return
        targets = self.targets(route)
        if isinstance(targets, int):
            call.end(
                hangup_by="switch", status=targets, cause=cause_for_status(targets)
            )
            return
        result = await call.dial(
            targets, ring_timeout=self.limits.ring_timeout, relay=True
        )
        if call.ended:
            return
        if result.leg is None:
            call.end(hangup_by="callee", status=result.status, cause=result.cause)
            return
        call.connect(call.inbound, result.leg)
        call.answer_inbound()

    async def _run_app(self, call: Call, route: ToApp) -> None:
        app = self.apps.get(route.app)
        if app is None:
            call.end(hangup_by="switch", status=404, cause=1)
            return
        session = CallSession(call)
        call.wants_digits = True
        call.listen_for_tones()
        try:
            await app(session, route)
        except Hangup:
            pass
        except Exception:
            # An app's own fault ends this call as a server error (500, Q.850
            # temporary failure), never as a cancelled request, and no other call.
            call.log.exception("app %s failed", route.app)
            if not call.ended:
                call.end(hangup_by="switch", status=500, cause=CAUSE_TEMPORARY_FAILURE)
        finally:
            session.close()
            if not call.ended and call.bridged is None:
                call.end(hangup_by="switch")

    def route_transfer(
        self, call: Call, referrer: Leg, number: str
    ) -> list[Target] | int:
        """Targets for a blind transfer by ``referrer`` (its own rights apply)."""
        if referrer.role is LegRole.INBOUND:
            caller = call.caller
        elif referrer.peer in self.authenticator.directory:
            user = self.authenticator.directory.get(referrer.peer)
            caller = Caller(
                kind="user",
                name=referrer.peer,
                number=referrer.peer,
                allow_outbound=bool(user is not None and user.allow_outbound),
            )
        else:
            caller = Caller(
                kind="trunk", name=referrer.peer, number="", allow_outbound=False
            )
        try:
            route = self.dialplan.route(called=number, caller=caller)
        except RouteRefused as refused:
            return refused.status
        if isinstance(route, ToApp):
            # TODO: transferring to a local app (echo, IVR) needs a CallSession over
            # an already answered leg; cost: such transfers get 488.
            return 488
        return self.targets(route)

    # ------------------------------------------------------------ originate

    async def originate(
        self,
        *,
        first: Route,
        then: Route,
        caller_id: str,
        ring_timeout: float | None = None,
    ) -> Originated | int:
        """A call the switch places itself (callbacks, later the dialer).

        ``first`` is rung; once it answers it hears our ringback while ``then`` is
        rung, and the two are bridged when ``then`` answers. A callback rings the
        reserved agent first, so that no customer answers into silence. There is
        no caller leg: the call's inbound leg is an ended stand-in, so ending the
        call sends BYE or CANCEL to the two real legs only.

        :returns: the connected call, or the SIP status of the failed step.
        """
        timeout = ring_timeout or self.limits.ring_timeout
        placeholder = Leg(
            role=LegRole.INBOUND,
            call_id=f"originate-{secrets.token_hex(6)}",
            peer=caller_id,
            destination=("UDP", self.media_host, 0),
            media_host=self.media_host,
        )
        placeholder.set_state(LegState.ENDED)
        caller = Caller(
            kind="switch", name="originate", number=caller_id, allow_outbound=True
        )
        kind, target = _route_label(then)
        call = Call(self, inbound=placeholder, caller=caller, called=target)
        self.calls[call.call_id] = call
        now = time.time()
        publish(
            self.bus,
            CallStarted(
                at=now,
                call_id=call.call_id,
                sip_call_id=placeholder.call_id,
                caller=caller_id,
                called=target,
                source="switch",
                trunk=None,
                user=None,
            ),
        )
        publish(
            self.bus, CallRouted(at=now, call_id=call.call_id, kind=kind, target=target)
        )
        try:
            first_leg = await self._originate_leg(call, first, timeout)
            if isinstance(first_leg, int):
                call.end(
                    hangup_by="callee",
                    status=first_leg,
                    cause=cause_for_status(first_leg),
                )
                return first_leg
            call.answered_at = call.answered_at or time.time()
            self._ringback(first_leg)
            second_leg = await self._originate_leg(call, then, timeout)
            if isinstance(second_leg, int):
                call.end(
                    hangup_by="callee",
                    status=second_leg,
                    cause=cause_for_status(second_leg),
                )
                return second_leg
        except CallEndedError:
            return STATUS_REQUEST_TERMINATED
        call.connect(first_leg, second_leg)
        return Originated(call=call, user=first_leg.peer, leg_id=first_leg.leg_id)

    async def _originate_leg(
        self, call: Call, route: Route, timeout: float
    ) -> Leg | int:
        targets = self.targets(route)
        if isinstance(targets, int):
            return targets
        result = await call.dial(targets, ring_timeout=timeout, relay=False)
        if call.ended:
            raise CallEndedError(call.call_id)
        return result.leg if result.leg is not None else result.status

    def _ringback(self, leg: Leg) -> None:
        if leg.endpoint_id is None:
            return
        with contextlib.suppress(MediaError):
            self.media(
                Play(
                    endpoint_id=leg.endpoint_id,
                    items=(Tone(name=ToneName.RINGBACK),),
                    loop=True,
                )
            )

    # ------------------------------------------------------------ other requests

    def handle_ack(self, request: Request, source: Address) -> None:
        found = self._find(request)
        if found is not None:
            call, leg = found
            call.on_ack(leg, request)

    def handle_bye(self, request: Request, source: Address) -> Response | None:
        found = self._find(request)
        if found is None:
            return make_response(request, 481, "Call/Transaction Does Not Exist")
        call, leg = found
        leg.log.info("BYE from %s", leg.peer)
        response = make_response(request, 200, "OK")
        self.stack.respond(request, response)
        call.on_bye(leg, request)
        return None

    def handle_cancel(self, request: Request, source: Address) -> Response | None:
        call = self._invites.get((request.call_id, request.top_via.branch or ""))
        if call is None:
            return make_response(request, 481, "Call/Transaction Does Not Exist")
        # RFC 3261 9.2: 200 to the CANCEL first, then 487 to the INVITE.
        self.stack.respond(request, make_response(request, 200, "OK"))
        call.on_cancel(request)
        return None

    def _in_dialog(self, request: Request) -> tuple[Call, Leg] | Response:
        """The call and leg of an in-dialog request, its CSeq checked (RFC 3261
        12.2.2); or the response refusing it (481 outside any dialog, 500 for an
        old CSeq...)."""
        found = self._find(request)
        if found is None:
            return make_response(request, 481, "Call/Transaction Does Not Exist")
        call, leg = found
        if leg.dialog is not None:
            try:
                leg.dialog.receive_request(request)
            except ProtocolError as exc:
                return make_response(request, exc.status, exc.reason)
        return call, leg

    def handle_update(self, request: Request, source: Address) -> Response:
        """RFC 3311 UPDATE: SDP answered like a re-INVITE; none: plain 200."""
        found = self._in_dialog(request)
        if isinstance(found, Response):
            return found
        call, leg = found
        return call.on_offer(leg, request)

    def handle_prack(self, request: Request, source: Address) -> Response:
        """RFC 3262 PRACK for one of our reliable provisional responses."""
        found = self._in_dialog(request)
        if isinstance(found, Response):
            return found
        call, leg = found
        return call.on_prack(leg, request)

    def handle_refer(self, request: Request, source: Address) -> Response:
        found = self._in_dialog(request)
        if isinstance(found, Response):
            return found
        call, leg = found
        leg.log.info("REFER to %s", request.headers.get("Refer-To"))
        return call.on_refer(leg, request)

    def handle_info(self, request: Request, source: Address) -> Response:
        """INFO in a dialog: 200; ``application/dtmf-relay`` digits are reported."""
        found = self._find(request)
        if found is None:
            return make_response(request, 481, "Call/Transaction Does Not Exist")
        call, leg = found
        content_type = (request.headers.get("Content-Type") or "").lower()
        if content_type.startswith("application/dtmf-relay"):
            for line in request.body.decode("utf-8", "replace").splitlines():
                name, _, value = line.partition("=")
                digit = value.strip().upper()
                if name.strip().lower() == "signal" and digit in DTMF_DIGITS:
                    self._dtmf(call, leg, digit)
        return make_response(request, 200, "OK")

    def handle_late_2xx(self, response: Response) -> None:
        found = self._outbound.get(response.call_id)
        if found is None:
            return
        call, leg = found
        if response.cseq.method == "INVITE":
            call.on_late_2xx(leg, response)

    # ------------------------------------------------------------ media events

    def on_media_event(self, event: MediaEvent) -> None:
        """The engine's event callback."""
        if isinstance(event, PlaybackFinished):
            future = self.playbacks.pop(event.playback_id, None)
            if future is not None and not future.done():
                future.set_result(event.reason.value)
            return
        if isinstance(event, EngineLoad):
            if self.overload is not None:
                self.overload.on_load(event, time.monotonic())
            return
        endpoint_id = getattr(event, "endpoint_id", None)
        if endpoint_id is None:
            return
        found = self._endpoints.get(endpoint_id)
        if found is None:
            return
        call, leg = found
        if isinstance(event, MediaDtmf):
            self._dtmf(call, leg, event.digit)
        elif isinstance(event, EndpointTimeout):
            if leg.held or call.ended or not leg.answered:
                return
            leg.log.warning("no RTP for %.0f s: ending the call", event.idle_seconds)
            call.end(hangup_by="switch", cause=cause_for_status(408))

    def _dtmf(self, call: Call, leg: Leg, digit: str) -> None:
        publish(
            self.bus,
            DtmfReceived(
                at=time.time(), call_id=call.call_id, leg_id=leg.leg_id, digit=digit
            ),
        )
        if leg is call.inbound and call.on_dtmf is not None:
            call.on_dtmf(digit)


def _from_user(request: Request) -> str:
    uri = request.from_.uri
    if isinstance(uri, SipUri):
        return uri.user or ""
    return called_number(str(uri))


def _route_label(route: Route) -> tuple[str, str]:
    if isinstance(route, ToUser):
        return "user", route.user
    if isinstance(route, ToTrunk):
        return "trunk", f"{route.trunk}:{route.number}"
    if route.app in ("ivr", "queue"):
        return route.app, route.arg(route.app if route.app == "queue" else "flow") or ""
    return "app", route.app


__all__ = ["B2bua", "HangupBy", "Limits", "MediaControl"]
