"""A B2BUA call: one inbound leg, the outbound legs it forks to, and the bridge.

RFC 3261 sections 13-15 on each leg (we are UAS towards the caller, UAC towards each
callee), RFC 3264 offer/answer per leg with the media anchored in the media engine, RFC
3515 REFER for blind transfer, RFC 3891 Replaces for attended transfer, RFC 3262
reliable provisionals, RFC 4028 session timers, RFC 3326 ``Reason`` for Q.850 causes.

Theory of operation
-------------------
Each leg is its own dialog with its own Call-ID and its own media endpoint; nothing is
passed through verbatim. SDP is negotiated per leg: the inbound offer is answered at
once by our endpoint (so early media can flow), and each outbound leg gets our own
offer listing the inbound leg's codec first, so transcoding (done by the engine) is
needed only when the callee insists on the other G.711 law.

:meth:`Call.dial` sends one INVITE per target (forking) and resolves with the first leg
that answers, or with the best failure status once every leg failed or the ring timer
fired. Provisionals are relayed to the caller while it is unanswered (180 as 180; a 183
with SDP as early media: the callee's media is bridged at once and the caller gets our
answer in a 183). Once a leg answers, the other forks are CANCELled, the 2xx is ACKed,
the caller gets our 200 and the two endpoints are connected. A 2xx arriving for a leg
that lost (crossed a CANCEL, second fork) is ACKed and sent BYE.

The call ends once (:meth:`Call.end`): every other live leg is sent BYE, CANCEL or a
final response as its state needs, every endpoint is closed after reading its RTCP
statistics, and the events for the CDR are published. Re-INVITEs and UPDATEs are
answered locally from the leg's endpoint (media is anchored here); a change of hold
state is then relayed to the other party as a re-INVITE of our own, whose 481/408 or
timeout ends the call (488/491 keep it, RFC 3261 14.1 and 12.2.1.2).

A caller that sends ``Require: 100rel`` gets our 18x reliably (``RSeq``, retransmitted
until its PRACK, one outstanding at a time); our INVITEs say ``Supported: 100rel,
timer`` and a callee's reliable 18x is PRACKed in its early dialog, which the 2xx then
confirms. A negotiated session timer (:mod:`switch.session_timer`) runs per leg: as
refresher we send UPDATE (or re-INVITE) at half the interval, otherwise the call is
ended when no refresh came. An INVITE with Replaces takes over the leg it names
(:meth:`Call.replace_leg`); a REFER whose Refer-To carries Replaces joins the
transferee with the far end of the referrer's other call (:meth:`Call.on_refer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from media.commands import (
    CloseEndpoint,
    Connect,
    CreateEndpoint,
    DetectInband,
    Disconnect,
    EndpointCreated,
    EndpointStats,
    GetStats,
    MediaError,
    Play,
    Record,
    RecordingStarted,
    SetCodec,
    SetRemote,
    StopRecord,
    Tone,
    ToneName,
)
from media.commands import (
    Codec as MediaCodec,
)
from switch.events import (
    CallBridged,
    CallEnded,
    CallHeld,
    CallRecording,
    CallTransferred,
    DtmfReceived,
    LegAnswered,
    LegEnded,
    LegRinging,
    LegStarted,
    listened,
    publish,
)
from switch.leg import (
    CAUSE_NO_CIRCUIT,
    CAUSE_NORMAL_CLEARING,
    CAUSE_RECOVERY_ON_TIMER_EXPIRY,
    CAUSE_TEMPORARY_FAILURE,
    HangupBy,
    Leg,
    LegRole,
    LegState,
    Ringback,
    Target,
    cause_for_status,
    reason_cause,
    reason_header,
)
from switch.session_timer import (
    OPTION_TIMER,
    Negotiated,
    SessionTimer,
    TimerAction,
    from_response,
    negotiate_uas,
)
from switch.sip.auth import DigestClient
from switch.sip.dialog import Dialog, DialogState
from switch.sip.errors import BadMessage, LocalProtocolError, ProtocolError
from switch.sip.headers import parse_name_addr
from switch.sip.message import Headers, Request, Response, make_response
from switch.sip.offer_answer import (
    TELEPHONE_EVENT_8000,
    Codec,
    NegotiatedMedia,
    answer_offer,
    build_offer,
    process_answer,
)
from switch.sip.sdp import Direction, SessionDescription, parse_sdp
from switch.sip.tokens import randbelow, token_hex
from switch.sip.transaction import CallIdAdapter, make_cancel, new_tag
from switch.sip.uri import SipUri, TelUri, Uri, parse_uri
from switch.stack import RequestTimeout, SipStack

if TYPE_CHECKING:
    from switch.b2bua import B2bua
    from switch.dialplan import Caller

logger = logging.getLogger(__name__)

SDP = "application/sdp"
SIPFRAG = "message/sipfrag;version=2.0"
# RFC 3261 13.3.1.4: 2xx retransmissions stop after 64*T1 without an ACK.
ACK_WAIT_T1_MULTIPLE = 64
# RFC 3515 section 2.4.6: the implicit subscription lasts a while; we end it ourselves.
REFER_SUBSCRIPTION_EXPIRES = 60
# RFC 3326 section 2: the CANCEL of a fork that lost to another one.
REASON_COMPLETED_ELSEWHERE = ("Reason", 'SIP;cause=200;text="Call completed elsewhere"')
# RFC 3261 14.1 / 12.2.1.2: these answers to our re-INVITE end the dialog.
REINVITE_FATAL = frozenset({408, 481})
# RFC 3261 22.2 / 22.3: the challenge each status carries and the answer's header.
CHALLENGE_HEADERS = {
    401: ("WWW-Authenticate", "Authorization"),
    407: ("Proxy-Authenticate", "Proxy-Authorization"),
}
# RFC 3262 section 3: the option tag of reliable provisional responses; unPRACKed
# ones are retransmitted from T1, doubling, until 64*T1, then the INVITE gets a 5xx.
OPTION_100REL = "100rel"
STATUS_PRACK_TIMEOUT = 500
# Sent with our requests: what we take in a dialog (RFC 3261 20.5).
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, REFER, NOTIFY, INFO"

# TODO: RFC 3262 with a caller that only *supports* 100rel: our 18x go unreliably
# (allowed); an offer in a PRACK or a reliable 18x that carries our offer (delayed
# offer) is not handled; cost: a caller relying on either loses early media.
# TODO: RFC 4028: we never ask for a session timer ourselves (a caller without
# Session-Expires, and our INVITEs, get none); Min-SE and the interval are constants,
# not config; cost: a vanished peer that uses no timers lives until the RTP timeout.
# TODO: local ringback (``[limits] ringback = "local"``) needs the caller's offer in
# its INVITE; a delayed-offer caller gets the callee's 180 relayed instead.


def new_call_id() -> str:
    """The switch's own identifier of a call (CDR key): random, so never reused."""
    return "C" + token_hex(6)


class TrunkFullError(Exception):
    """The target's trunk is at its call limit (the fork is skipped)."""


class CallEndedError(Exception):
    """The call was over before the operation completed."""


@dataclass(slots=True)
class DialResult:
    """What :meth:`Call.dial` ended with: the answering leg, or the failure status."""

    leg: Leg | None
    status: int
    cause: int


@dataclass(slots=True)
class _Dial:
    future: asyncio.Future[DialResult]
    relay: bool
    legs: list[Leg] = field(default_factory=list)
    timed_out: bool = False


def called_number(uri_text: str) -> str:
    """The user part of a SIP URI, or the number of a tel URI ('' if neither)."""
    try:
        uri = parse_uri(uri_text)
    except BadMessage:
        return ""
    return uri_number(uri)


def uri_number(uri: Uri) -> str:
    """:func:`called_number` of a parsed URI (a Request-URI is parsed already)."""
    if isinstance(uri, SipUri):
        return uri.user or ""
    if isinstance(uri, TelUri):
        return uri.number
    return ""


def option_tags(message: Request | Response, name: str) -> frozenset[str]:
    """The option tags of every ``Require``/``Supported`` line (RFC 3261 20.32)."""
    tags: set[str] = set()
    for value in message.headers.get_all(name):
        tags.update(tag.strip().lower() for tag in value.split(",") if tag.strip())
    return frozenset(tags)


def parse_replaces(value: str) -> tuple[str, str, str, bool]:
    """RFC 3891 section 6.1: ``callid *(SEMI (to-tag / from-tag / early-only))``.

    :returns: Call-ID, to-tag, from-tag, early-only.
    :raises ProtocolError: 400 when the Call-ID or a tag is missing.
    """
    call_id, *params = (part.strip() for part in value.split(";"))
    tags: dict[str, str] = {}
    early_only = False
    for param in params:
        name, _, setting = param.partition("=")
        name = name.strip().lower()
        if name == "early-only":
            early_only = True
        elif name in ("to-tag", "from-tag"):
            tags[name] = setting.strip()
    if not call_id or "to-tag" not in tags or "from-tag" not in tags:
        raise ProtocolError(f"Bad Replaces: {value!r}", status=400)
    return call_id, tags["to-tag"], tags["from-tag"], early_only


def ordered_codecs(first: str | None) -> tuple[Codec, ...]:
    """Our codecs with ``first`` (an encoding name) in front, telephone-event last."""
    from switch.sip.offer_answer import PCMA, PCMU

    voice = [PCMU, PCMA]
    if first is not None:
        voice.sort(key=lambda codec: codec.name.upper() != first.upper())
    return (*voice, TELEPHONE_EVENT_8000)


def _log_outcome(request: Request, future: asyncio.Future[Response]) -> None:
    """How a request sent by :meth:`Call._send_and_forget` ended, for the log."""
    if future.cancelled():
        return
    error = future.exception()
    if isinstance(error, RequestTimeout):
        logger.info("[%s] %s timed out", request.call_id, request.method)
    elif error is not None:
        logger.error(
            "[%s] %s failed",
            request.call_id,
            request.method,
            exc_info=(type(error), error, error.__traceback__),
        )
    else:
        logger.debug(
            "[%s] %s: %d", request.call_id, request.method, future.result().status
        )


class Call:
    """One call through the switch; see the module doc for the life of it.

    :param b2bua: the owner (stack, media engine, dialplan, bus, limits).
    :param inbound: the caller's leg, already holding its dialog and endpoint.
    :param caller: who is calling, as identified before routing.
    :param called: the number dialled.
    """

    def __init__(
        self,
        b2bua: B2bua,
        *,
        inbound: Leg,
        caller: Caller,
        called: str,
    ) -> None:
        self.b2bua = b2bua
        self.call_id = new_call_id()
        self.inbound = inbound
        self.caller = caller
        self.called = called
        self.outbound: list[Leg] = []
        self.bridged: tuple[Leg, Leg] | None = None
        self.started_at = time.time()
        self.answered_at: float | None = None
        self.ended = False
        self.hangup_by = "switch"
        self.final_status = 0
        self.inbound_acked = asyncio.Event()
        self.ended_event = asyncio.Event()
        self.on_dtmf: Callable[[str], None] | None = None  # the CallSession's
        # An application (IVR, queue) takes the caller's keys: only then, and only
        # while the caller is not bridged, are tones listened for in its audio.
        self.wants_digits = False
        self.extra_endpoints: list[int] = []  # e.g. the echo loop endpoint
        self.recording_id: int | None = None
        self.recordings: list[str] = []  # every file this call was recorded to
        self._dial: _Dial | None = None
        self._early_leg: Leg | None = None
        self._sent_ringing = False
        self._sent_early_media = False
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.log = CallIdAdapter(logger, {"call_id": inbound.call_id})

    # ------------------------------------------------------------ helpers

    @property
    def stack(self) -> SipStack:
        return self.b2bua.stack

    def spawn(self, coroutine: Coroutine[Any, Any, None], name: str = "") -> None:
        """Run ``coroutine`` in the background; its failure is logged, not lost.

        The failure is read in the task's done callback rather than by a wrapping
        coroutine: a call spawns a few tasks, and the wrapper was a second coroutine
        and frame for each.
        """
        task = asyncio.get_running_loop().create_task(coroutine, name=name or None)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and isinstance(error, Exception):
            self.log.error(
                "call %s: %s failed",
                self.call_id,
                task.get_name(),
                exc_info=(type(error), error, error.__traceback__),
            )

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(delay, callback))

    def is_over(self, leg: Leg) -> bool:
        """The call or ``leg`` ended (checked again after every await)."""
        return self.ended or leg.ended

    def _event_time(self) -> float:
        return time.time()

    def other(self, leg: Leg) -> Leg | None:
        """The leg bridged to ``leg``, if any."""
        if self.bridged is None:
            return None
        a, b = self.bridged
        if leg is a:
            return b
        if leg is b:
            return a
        return None

    # ------------------------------------------------------------ media

    def create_endpoint(self, leg: Leg, *, latching: bool = True) -> None:
        """Give ``leg`` an RTP endpoint (raises MediaError when none is free).

        Every endpoint of a call is placed near the inbound leg's, so that with
        media worker processes the call's bridge stays inside one of them.
        """
        near = None if leg is self.inbound else self._anchor_endpoint()
        result = self.b2bua.media(CreateEndpoint(latching=latching, near=near))
        assert isinstance(result, EndpointCreated)
        leg.endpoint_id = result.endpoint_id
        leg.rtp_port = result.rtp_port
        self.b2bua.register_endpoint(result.endpoint_id, self, leg)

    def _anchor_endpoint(self) -> int | None:
        """The endpoint the call's others are placed near: the inbound leg's, or for
        an originated call (no caller) its first outbound leg's."""
        if self.inbound.endpoint_id is not None:
            return self.inbound.endpoint_id
        return next(
            (leg.endpoint_id for leg in self.outbound if leg.endpoint_id is not None),
            None,
        )

    def apply_media(self, leg: Leg, media: NegotiatedMedia) -> None:
        """Point ``leg``'s endpoint at the negotiated stream (remote, codec, events)."""
        leg.media = media
        if leg.endpoint_id is None:
            return
        try:
            if media.remote_port and media.remote_address not in ("0.0.0.0", "::"):
                self.b2bua.media(
                    SetRemote(
                        endpoint_id=leg.endpoint_id,
                        host=media.remote_address,
                        port=media.remote_port,
                        rtcp_port=media.rtcp_port,
                    )
                )
            self.b2bua.media(
                SetCodec(
                    endpoint_id=leg.endpoint_id,
                    codec=MediaCodec(media.codec.upper()),
                    payload_type=media.payload_type,
                    telephone_event_pt=media.telephone_event,
                )
            )
        except (MediaError, ValueError) as exc:
            leg.log.warning("media of leg %s not set: %s", leg.leg_id, exc)
        if leg is self.inbound:
            self.listen_for_tones()

    def listen_for_tones(self) -> None:
        """Detect the caller's keys in its audio exactly while someone can take them.

        A caller without RFC 4733 presses keys as tones. The IVR, a queue's exit key
        and the callback offer take keys, so an application that holds the call gets
        them; once the caller is bridged, the tones reach the other party in the
        audio and decoding every packet to look for them would buy nothing, unless
        someone subscribed to ``call.dtmf`` (checked when the media or the bridge
        changes). Sent only on a change: most callers negotiate telephone-event.
        """
        leg = self.inbound
        media = leg.media
        bridged = self.bridged is not None and leg in self.bridged
        wanted = (
            media is not None
            and media.telephone_event is None
            and (
                (self.wants_digits and not bridged)
                # the desk, a supervisor or QM watching call.dtmf hear every key
                or listened(self.b2bua.bus, DtmfReceived.name)
            )
        )
        if leg.endpoint_id is None or wanted == leg.inband_dtmf:
            return
        try:
            self.b2bua.media(DetectInband(endpoint_id=leg.endpoint_id, enabled=wanted))
        except MediaError as exc:
            leg.log.warning("in-band DTMF of leg %s not set: %s", leg.leg_id, exc)
            return
        leg.inband_dtmf = wanted

    def connect(self, a: Leg, b: Leg) -> None:
        """Bridge the media of two legs and remember them as the call's pair."""
        self.bridged = (a, b)
        self.listen_for_tones()
        if a.endpoint_id is not None and b.endpoint_id is not None:
            try:
                self.b2bua.media(
                    Connect(endpoint_a=a.endpoint_id, endpoint_b=b.endpoint_id)
                )
            except MediaError as exc:
                self.log.warning("cannot connect %s and %s: %s", a, b, exc)
        publish(
            self.b2bua.bus,
            CallBridged(
                at=self._event_time(),
                call_id=self.call_id,
                leg_a=a.leg_id,
                leg_b=b.leg_id,
            ),
        )
        if self.b2bua.recordings is not None:
            self._record(a, b, self.b2bua.recordings)

    def _record(self, a: Leg, b: Leg, folder_of_days: str) -> None:
        """Record the new pair (the caller left) into the day's folder; a pair made
        again (a transfer) starts a new file, so each file has one conversation."""
        if a.endpoint_id is None or b.endpoint_id is None:
            return
        if b is self.inbound:
            a, b = b, a
        media = self.b2bua.media
        if self.recording_id is not None:
            with contextlib.suppress(MediaError):
                media(StopRecord(recording_id=self.recording_id))
            self.recording_id = None
        folder = Path(folder_of_days, time.strftime("%Y-%m-%d"))
        suffix = f"-{len(self.recordings) + 1}" if self.recordings else ""
        path = folder / f"{self.call_id}{suffix}.wav"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            started = media(
                Record(path=str(path), left=a.endpoint_id, right=b.endpoint_id)
            )
        except (OSError, MediaError) as exc:
            self.log.error("call %s not recorded: %s", self.call_id, exc)
            return
        assert isinstance(started, RecordingStarted)
        self.recording_id = started.recording_id
        self.recordings.append(str(path))
        self.log.info("call %s recorded to %s", self.call_id, path)
        publish(
            self.b2bua.bus,
            CallRecording(at=self._event_time(), call_id=self.call_id, path=str(path)),
        )

    def _close_endpoint(self, leg: Leg) -> EndpointStats | None:
        endpoint_id = leg.endpoint_id
        if endpoint_id is None:
            return None
        leg.endpoint_id = None
        stats: EndpointStats | None = None
        try:
            result = self.b2bua.media(GetStats(endpoint_id=endpoint_id))
            if isinstance(result, EndpointStats):
                stats = result
            self.b2bua.media(CloseEndpoint(endpoint_id=endpoint_id))
        except MediaError as exc:
            leg.log.debug("closing endpoint %d: %s", endpoint_id, exc)
        self.b2bua.forget_endpoint(endpoint_id)
        return stats

    # ------------------------------------------------------------ inbound leg

    def respond_inbound(
        self,
        status: int,
        reason: str | None = None,
        *,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        leg: Leg | None = None,
    ) -> Response:
        """Answer the caller's INVITE (1xx/2xx carry our tag and Contact).

        :param leg: another leg we are UAS of (one that replaced a leg, RFC 3891).
        """
        leg = leg or self.inbound
        assert leg.invite is not None and leg.dialog is not None
        response = make_response(
            leg.invite, status, reason, to_tag=leg.dialog.id.local_tag
        )
        if status < 300:
            response.headers.add("Contact", self.b2bua.contact_text())
            response.headers.add("Allow", ALLOW)
        for name, value in headers:
            response.headers.add(name, value)
        if body:
            response.headers.add("Content-Type", SDP)
            response.body = body
        if 100 < status < 200 and leg.reliable:
            self._send_reliable(response)
            return response
        if status >= 200:
            leg.unacked = None  # a final response ends the retransmissions
            leg.queued.clear()
        self.stack.respond(leg.invite, response)
        return response

    def _send_reliable(self, response: Response) -> None:
        """Send a 18x reliably (RFC 3262 section 3): RSeq, retransmit until PRACK."""
        leg = self.inbound
        invite = leg.invite
        assert invite is not None
        if leg.unacked is not None:
            # One unacknowledged reliable provisional at a time (RFC 3262 section 3).
            leg.queued.append(response)
            return
        leg.rseq = leg.rseq + 1 if leg.rseq else randbelow(2**31 - 1) + 1
        response.headers.add("Require", OPTION_100REL)
        response.headers.add("RSeq", str(leg.rseq))
        leg.unacked = response
        self.stack.respond(invite, response)
        t1 = self.stack.layer.timers.t1
        give_up = time.monotonic() + ACK_WAIT_T1_MULTIPLE * t1
        self.call_later(
            t1, functools.partial(self._retransmit_reliable, response, give_up, t1 * 2)
        )

    def _retransmit_reliable(
        self, response: Response, give_up: float, interval: float
    ) -> None:
        """Timer of :meth:`_send_reliable`: send the 18x again, or give up.

        A method with its state in arguments, not a closure that schedules itself: a
        function whose closure holds itself is a reference cycle, and it would keep the
        whole call (legs, dialogs, SDP) alive until the garbage collector's next pass.
        """
        leg = self.inbound
        if leg.unacked is not response or self.ended or leg.ended:
            return
        if time.monotonic() + interval >= give_up:
            leg.log.warning("no PRACK for our %d: ending the call", response.status)
            leg.unacked = None
            self.end(
                hangup_by="switch",
                status=STATUS_PRACK_TIMEOUT,
                cause=CAUSE_RECOVERY_ON_TIMER_EXPIRY,
            )
            return
        assert leg.invite is not None
        self.stack.respond(leg.invite, response)
        self.call_later(
            interval,
            functools.partial(
                self._retransmit_reliable, response, give_up, interval * 2
            ),
        )

    def on_prack(self, leg: Leg, request: Request) -> Response:
        """A PRACK for our reliable 18x (RFC 3262 section 3): 200, or 481 if none.

        A PRACK for an RSeq we sent that is no longer outstanding (it crossed our
        200, or repeats) is answered 200 too: a 481 would end the caller's dialog
        (RFC 3261 12.2.1.2).
        """
        invite = leg.invite
        parts = (request.headers.get("RAck") or "").split()
        if invite is None or len(parts) != 3 or not parts[0].isdigit():
            return make_response(request, 481, "No Matching Reliable Response")
        rseq, cseq, method = int(parts[0]), parts[1], parts[2]
        if (
            not leg.rseq
            or rseq > leg.rseq
            or cseq != str(invite.cseq.number)
            or method.upper() != "INVITE"
        ):
            return make_response(request, 481, "No Matching Reliable Response")
        unacked = leg.unacked
        if unacked is not None and str(rseq) == unacked.headers.get("RSeq"):
            leg.unacked = None
            if leg.queued and not leg.answered:
                self._send_reliable(leg.queued.pop(0))
        return make_response(request, 200, "OK")

    def answer_inbound(self, leg: Leg | None = None) -> None:
        """Send our 200 to the caller: the SDP answer, or our offer (delayed offer).

        :param leg: another leg we are UAS of (default: the caller's).
        """
        leg = leg or self.inbound
        if leg.answered or leg.ended or leg.invite is None or leg.dialog is None:
            return
        if leg.media is not None and leg.offer is None and leg.answer_sdp is not None:
            body = leg.answer_sdp.to_bytes()
        else:
            # RFC 3264 section 5 (delayed offer): we offer in the 2xx, answer in ACK.
            partner = self.other(leg)
            first = partner.media.codec if partner and partner.media else None
            leg.codecs = ordered_codecs(first)
            leg.offer = build_offer(leg.session, port=leg.rtp_port, codecs=leg.codecs)
            body = leg.offer.to_bytes()
        leg.dialog.confirm()
        negotiated = leg.timer_negotiated
        timer_headers = negotiated.headers if negotiated is not None else ()
        response = self.respond_inbound(200, body=body, headers=timer_headers, leg=leg)
        if negotiated is not None:
            self.start_session_timer(leg, negotiated)
        leg.set_state(LegState.ANSWERED)
        leg.status = 200
        leg.answered_at = time.time()
        if self.answered_at is None:
            self.answered_at = leg.answered_at
        self.expect_ack(leg, leg.invite, response)
        publish(
            self.b2bua.bus,
            LegAnswered(
                at=self._event_time(),
                call_id=self.call_id,
                leg_id=leg.leg_id,
                codec=leg.media.codec if leg.media else "",
            ),
        )
        leg.log.info("call %s answered", self.call_id)

    def expect_ack(self, leg: Leg, invite: Request, response: Response) -> None:
        """Retransmit our 2xx to ``invite`` until its ACK (RFC 3261 13.3.1.4)."""
        leg.awaiting_ack = invite.cseq.number
        if leg.destination[0] != "UDP":
            return
        timers = self.stack.layer.timers
        give_up = time.monotonic() + ACK_WAIT_T1_MULTIPLE * timers.t1
        retransmit = functools.partial(
            self._retransmit_2xx, leg, invite, response, give_up
        )
        self.call_later(
            timers.t1, functools.partial(retransmit, min(timers.t1 * 2, timers.t2))
        )

    def _retransmit_2xx(
        self,
        leg: Leg,
        invite: Request,
        response: Response,
        give_up: float,
        interval: float,
    ) -> None:
        """Timer of :meth:`expect_ack` (a method, not a self-scheduling closure: see
        :meth:`_retransmit_reliable`)."""
        if self.ended or leg.ended or leg.awaiting_ack != invite.cseq.number:
            return
        if time.monotonic() + interval >= give_up:
            leg.log.warning("no ACK for our 2xx: ending the call")
            leg.awaiting_ack = None
            self.end(hangup_by="switch", cause=CAUSE_RECOVERY_ON_TIMER_EXPIRY)
            return
        self.stack.respond(invite, response)
        next_interval = min(interval * 2, self.stack.layer.timers.t2)
        self.call_later(
            interval,
            functools.partial(
                self._retransmit_2xx, leg, invite, response, give_up, next_interval
            ),
        )

    def on_ack(self, leg: Leg, request: Request) -> None:
        """An ACK for one of our 2xx (RFC 3261 13.3.1.4), perhaps with the answer."""
        if leg.awaiting_ack != request.cseq.number:
            return
        leg.awaiting_ack = None
        if leg.state is LegState.ANSWERED:
            leg.set_state(LegState.CONFIRMED)
        if leg.offer is not None:
            offer, leg.offer = leg.offer, None
            try:
                answer = parse_sdp(request.body) if request.body else None
                if answer is None:
                    raise ProtocolError("ACK carries no SDP answer", status=488)
                self.apply_media(leg, process_answer(offer, answer, codecs=leg.codecs))
            except ProtocolError as exc:
                # RFC 3261 13.3.1.4: a bad or missing answer in the ACK: end it (BYE).
                leg.log.warning("bad answer in ACK: %s; ending the call", exc.reason)
                self.end(hangup_by="switch", status=488, cause=cause_for_status(488))
                return
        if leg is self.inbound:
            self.inbound_acked.set()

    # ------------------------------------------------------------ outbound legs

    def _new_outbound(self, target: Target, codecs: tuple[Codec, ...]) -> Leg:
        b2bua = self.b2bua
        leg = Leg(
            role=LegRole.OUTBOUND,
            call_id=token_hex(12) + "@ccswitch",
            peer=target.peer,
            destination=target.destination,
            media_host=b2bua.media_host,
        )
        leg.trunk = target.trunk
        if target.trunk is not None and not b2bua.acquire_slot(leg, target.trunk):
            raise TrunkFullError(target.trunk)
        try:
            self.create_endpoint(leg)
        except MediaError:
            b2bua.release_slot(leg)
            raise
        leg.codecs = codecs
        leg.offer = build_offer(leg.session, port=leg.rtp_port, codecs=codecs)
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", self._outbound_from())
        headers.add("To", target.to)
        headers.add("Call-ID", leg.call_id)
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", b2bua.contact_text(target.destination[0]))
        headers.add("Allow", ALLOW)
        headers.add("Supported", f"{OPTION_100REL}, {OPTION_TIMER}")
        headers.add("Content-Type", SDP)
        leg.invite = Request(
            method="INVITE",
            uri=parse_uri(target.uri),
            headers=headers,
            body=leg.offer.to_bytes(),
        )
        self.outbound.append(leg)
        b2bua.register_outbound(leg.call_id, self, leg)
        self._leg_started(leg)
        return leg

    def _leg_started(self, leg: Leg) -> None:
        publish(
            self.b2bua.bus,
            LegStarted(
                at=self._event_time(),
                call_id=self.call_id,
                leg_id=leg.leg_id,
                role=leg.role.value,
                sip_call_id=leg.call_id,
                peer=leg.peer,
            ),
        )

    def _outbound_from(self) -> str:
        """The caller's identity as the callee sees it: number at our host, new tag."""
        inbound = self.inbound
        # An originated call (B2bua.originate) has no caller INVITE to take it from.
        display = None if inbound.invite is None else inbound.invite.from_.display_name
        host, port = self.stack.local_address()  # our UDP Contact's host and port
        number = self.caller.number or "anonymous"
        prefix = "" if display is None else f'"{display}" '
        return f"{prefix}<sip:{number}@{host}:{port}>;tag={new_tag()}"

    async def dial(
        self, targets: list[Target], *, ring_timeout: float, relay: bool
    ) -> DialResult:
        """Ring every target at once; the first to answer wins (see the module doc).

        :param relay: pass 180/183 on to the (unanswered) caller.
        """
        if self.ended:
            raise CallEndedError(self.call_id)
        loop = asyncio.get_running_loop()
        dial = _Dial(future=loop.create_future(), relay=relay)
        self._dial = dial
        first = self.inbound.media.codec if self.inbound.media else None
        codecs = ordered_codecs(first)
        # Q.850 cause when nothing could be rung: 34 "no circuit" for a full trunk.
        cause = CAUSE_TEMPORARY_FAILURE
        for target in targets:
            try:
                leg = self._new_outbound(target, codecs)
            except TrunkFullError:
                cause = CAUSE_NO_CIRCUIT
                continue
            except MediaError as exc:
                self.log.warning("no media endpoint for %s: %s", target.peer, exc)
                continue
            dial.legs.append(leg)
            self.spawn(self._run_outbound(leg, dial), f"INVITE to {target.peer}")
        if not dial.legs:
            dial.future.set_result(DialResult(leg=None, status=503, cause=cause))
        timer = loop.call_later(ring_timeout, self._dial_timeout, dial)
        try:
            return await dial.future
        finally:
            timer.cancel()
            if self._dial is dial:
                self._dial = None

    def _dial_timeout(self, dial: _Dial) -> None:
        if dial.future.done():
            return
        self.log.info("call %s: no answer in time", self.call_id)
        dial.timed_out = True
        for leg in dial.legs:
            self._cancel_leg(leg, status=487, hangup_by=HangupBy.LOCAL)
        dial.future.set_result(DialResult(leg=None, status=480, cause=19))

    async def _run_outbound(self, leg: Leg, dial: _Dial) -> None:
        assert leg.invite is not None
        leg.log.info(
            "INVITE %s to %s:%d", leg.invite.uri, leg.destination[1], leg.destination[2]
        )
        digest = self.b2bua.credentials(leg.trunk)
        while True:
            try:
                response: Response | None = await self.stack.request(
                    leg.invite,
                    leg.destination,
                    on_provisional=lambda r: self._on_provisional(leg, dial, r),
                )
            except RequestTimeout:
                response = None
            if response is None or digest is None:
                break
            if self.is_over(leg) or leg.cancel_requested:
                break
            retry = self._authenticated_invite(leg, response, digest)
            if retry is None:
                break
            leg.log.info(
                "INVITE challenged %d: resent with credentials", response.status
            )
            leg.invite = retry
            leg.got_provisional = False
        if response is not None and response.status < 300:
            self._on_outbound_2xx(leg, dial, response)
            return
        status = 408 if response is None else response.status
        leg.log.info("leg %s: %d", leg.leg_id, status)
        if leg.ended:
            return
        cause = reason_cause(response) if response is not None else None
        self.finish_leg(
            leg,
            status=status,
            cause=cause or cause_for_status(status),
            hangup_by=HangupBy.REMOTE,
        )
        leg.final_response = response
        self._check_dial(dial)

    def _authenticated_invite(
        self, leg: Leg, response: Response, digest: DigestClient
    ) -> Request | None:
        """The INVITE again with credentials for a 401/407 (RFC 3261 22.2, 8.1.3.5).

        Same Call-ID, From tag and body, the next CSeq, a fresh branch (the stack adds
        the Via). None when the response is no challenge or ``digest`` gives up (it
        answers each realm once unless the nonce was stale).
        """
        names = CHALLENGE_HEADERS.get(response.status)
        invite = leg.invite
        if names is None or invite is None:
            return None
        challenge, answer = names
        try:
            values = digest.authorize(
                response.headers.get_all(challenge),
                method="INVITE",
                uri=str(invite.uri),
                body=invite.body,
            )
        except BadMessage as exc:
            leg.log.info("unusable %d challenge: %s", response.status, exc)
            return None
        if not values:
            return None
        headers = Headers()
        for name, value in invite.headers:
            if name in ("Via", "CSeq", "Authorization", "Proxy-Authorization"):
                continue
            headers.add(name, value)
        headers.add("CSeq", f"{invite.cseq.number + 1} INVITE")
        for value in values:
            headers.add(answer, value)
        return Request(
            method="INVITE", uri=invite.uri, headers=headers, body=invite.body
        )

    def _check_dial(self, dial: _Dial) -> None:
        if dial.future.done() or not all(leg.ended for leg in dial.legs):
            return
        status = best_status([leg.status for leg in dial.legs])
        dial.future.set_result(
            DialResult(leg=None, status=status, cause=cause_for_status(status))
        )

    def _on_provisional(self, leg: Leg, dial: _Dial, response: Response) -> None:
        leg.got_provisional = True
        if leg.cancel_requested:
            self._send_cancel(leg)
            return
        if response.status == 100 or self.ended or leg.ended:
            return
        if OPTION_100REL in option_tags(response, "Require"):
            self._prack(leg, response)
        if dial.future.done():
            return
        leg.set_state(LegState.RINGING)
        early = bool(response.body)
        if not leg.ringing_reported:
            leg.ringing_reported = True
            publish(
                self.b2bua.bus,
                LegRinging(
                    at=self._event_time(),
                    call_id=self.call_id,
                    leg_id=leg.leg_id,
                    early_media=early,
                ),
            )
        local = self.b2bua.limits.ringback is Ringback.LOCAL
        if early and self._early_leg is None and not local:
            self._start_early_media(leg, response)
        if not dial.relay or self.inbound.answered or self.inbound.ended:
            return
        if local and self.inbound.answer_sdp is not None:
            self._local_ringback()
            return
        # Never a provisional after the final on the same leg (RFC 3261 13.3.1.1).
        if self._early_leg is leg and self.inbound.answer_sdp is not None:
            if not self._sent_early_media:
                self._sent_early_media = True
                self.inbound.set_state(LegState.RINGING)
                self.respond_inbound(183, body=self.inbound.answer_sdp.to_bytes())
        elif not self._sent_ringing and not self._sent_early_media:
            self._sent_ringing = True
            self.inbound.set_state(LegState.RINGING)
            self.respond_inbound(180)

    def _local_ringback(self) -> None:
        """Our 183 with the caller's answer, and our ringback tone in it (once).

        The bridge made on answer (:meth:`connect`) stops the tone; a failed dial
        leaves it to whatever the route does next (a queue's music replaces it).
        """
        if self._sent_early_media or self.inbound.endpoint_id is None:
            return
        assert self.inbound.answer_sdp is not None
        self._sent_early_media = True
        self.inbound.set_state(LegState.RINGING)
        self.respond_inbound(183, body=self.inbound.answer_sdp.to_bytes())
        try:
            self.b2bua.media(
                Play(
                    endpoint_id=self.inbound.endpoint_id,
                    items=(Tone(name=ToneName.RINGBACK),),
                    loop=True,
                )
            )
        except MediaError as exc:
            self.log.warning("local ringback not played: %s", exc)

    def _prack(self, leg: Leg, response: Response) -> None:
        """PRACK a callee's reliable 18x once per RSeq (RFC 3262 section 4)."""
        tag = response.to.tag
        invite = leg.invite
        rseq_text = response.headers.get("RSeq") or ""
        if tag is None or invite is None or not rseq_text.strip().isdigit():
            leg.log.info("unusable reliable %d: not PRACKed", response.status)
            return
        rseq = int(rseq_text)
        if (tag, rseq) in leg.pracked:
            return  # a retransmission: our PRACK is already on its way
        dialog = leg.early_dialogs.get(tag)
        if dialog is None:
            try:
                dialog = Dialog.from_uac(
                    invite, response, local_contact=self.b2bua.contact()
                )
            except ProtocolError as exc:
                leg.log.info("reliable %d unusable: %s", response.status, exc.reason)
                return
            leg.early_dialogs[tag] = dialog
        leg.pracked.add((tag, rseq))
        rack = ("RAck", f"{rseq} {invite.cseq.number} INVITE")
        prack = dialog.create_request("PRACK", headers=(rack,))
        self._send_and_forget(prack, leg.destination)

    def _start_early_media(self, leg: Leg, response: Response) -> None:
        """A 183 with SDP: take it as the answer for now and bridge at once."""
        assert leg.offer is not None
        try:
            media = process_answer(
                leg.offer, parse_sdp(response.body), codecs=leg.codecs
            )
        except ProtocolError as exc:
            leg.log.debug("early SDP ignored: %s", exc.reason)
            return
        self._early_leg = leg
        leg.early_media = True
        self.apply_media(leg, media)
        if self.inbound.endpoint_id is not None and leg.endpoint_id is not None:
            try:
                self.b2bua.media(
                    Connect(
                        endpoint_a=self.inbound.endpoint_id,
                        endpoint_b=leg.endpoint_id,
                    )
                )
            except MediaError as exc:
                leg.log.warning("early media not connected: %s", exc)

    def _on_outbound_2xx(self, leg: Leg, dial: _Dial, response: Response) -> None:
        assert leg.invite is not None and leg.offer is not None
        try:
            early = leg.early_dialogs.get(response.to.tag or "")
            if early is not None and early.state is not DialogState.TERMINATED:
                # The early dialog of a PRACKed 18x goes on (its CSeq counts).
                early.receive_response(leg.invite, response)
                dialog = early
            else:
                dialog = Dialog.from_uac(
                    leg.invite, response, local_contact=self.b2bua.contact()
                )
        except ProtocolError as exc:
            leg.log.warning("2xx unusable (%s): leg dropped", exc.reason)
            self.finish_leg(leg, status=502, cause=38, hangup_by=HangupBy.LOCAL)
            self._check_dial(dial)
            return
        leg.dialog = dialog
        self.b2bua.register_dialog(dialog, self, leg)
        self.send_ack(leg, response)
        if dial.future.done() or self.ended or leg.cancel_requested or leg.ended:
            # A 2xx crossing our CANCEL, or a fork that lost: ACK then BYE.
            leg.log.info("leg %s answered too late: BYE", leg.leg_id)
            leg.set_state(LegState.CONFIRMED)
            self.send_bye(leg, cause=CAUSE_NORMAL_CLEARING)
            if not leg.ended:
                self.finish_leg(leg, status=200, hangup_by=HangupBy.LOCAL)
            return
        try:
            media = process_answer(
                leg.offer, parse_sdp(response.body), codecs=leg.codecs
            )
        except ProtocolError as exc:
            leg.log.warning("answer refused (%s): BYE", exc.reason)
            leg.set_state(LegState.CONFIRMED)
            self.send_bye(leg, cause=cause_for_status(488))
            self.finish_leg(leg, status=488, hangup_by=HangupBy.LOCAL)
            self._check_dial(dial)
            return
        leg.offer = None
        self.apply_media(leg, media)
        leg.set_state(LegState.CONFIRMED)
        leg.peer_allows_update = "UPDATE" in allowed_methods(response)
        negotiated = from_response(response)
        if negotiated is not None:
            self.start_session_timer(leg, negotiated)
        leg.status = 200
        leg.answered_at = time.time()
        publish(
            self.b2bua.bus,
            LegAnswered(
                at=self._event_time(),
                call_id=self.call_id,
                leg_id=leg.leg_id,
                codec=media.codec,
            ),
        )
        for other in dial.legs:
            if other is not leg:
                self._cancel_leg(
                    other,
                    status=487,
                    hangup_by=HangupBy.OTHER,
                    headers=(REASON_COMPLETED_ELSEWHERE,),
                )
        dial.future.set_result(DialResult(leg=leg, status=200, cause=16))

    def send_ack(self, leg: Leg, response: Response) -> None:
        """ACK a 2xx of ``leg``'s INVITE (again, for a retransmission)."""
        assert leg.dialog is not None and leg.invite is not None
        if leg.ack is None:
            leg.ack = leg.dialog.create_ack(leg.invite.cseq.number)
            self.b2bua.stack.send_ack(leg.ack, leg.destination)
        else:
            self.b2bua.stack.send_ack(leg.ack, leg.destination)

    def on_late_2xx(self, leg: Leg, response: Response) -> None:
        """A 2xx after the INVITE's final: re-ACK it, or ACK+BYE an unknown dialog."""
        dialog = leg.dialog
        if dialog is not None and dialog.id.remote_tag == (response.to.tag or ""):
            if leg.ack is not None:
                self.stack.send_ack(leg.ack, leg.destination)
            return
        if dialog is None and not leg.ended:
            # The first 2xx is still on its way to _run_outbound (a busy loop takes
            # a while): this is its retransmission, or another fork's 2xx that will
            # come again once the dialog exists. Answering it now would BYE the
            # very dialog being set up.
            leg.log.debug("2xx from %s before the first was handled", response.to.tag)
            return
        assert leg.invite is not None
        try:
            extra = Dialog.from_uac(leg.invite, response)
        except ProtocolError:
            return
        leg.log.info("extra 2xx from %s: ACK and BYE", response.to.tag)
        self.stack.send_ack(extra.create_ack(leg.invite.cseq.number), leg.destination)
        bye = extra.create_request("BYE", headers=(reason_header(16),))
        self._send_and_forget(bye, leg.destination)

    def _cancel_leg(
        self,
        leg: Leg,
        *,
        status: int,
        hangup_by: HangupBy,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Stop a ringing leg: CANCEL once a provisional came (RFC 3261 9.1)."""
        if leg.ended or leg.answered:
            return
        leg.cancel_requested = True
        leg.cancel_headers = tuple(headers)
        if leg.got_provisional:
            self._send_cancel(leg)
        self.finish_leg(leg, status=status, hangup_by=hangup_by)

    def _send_cancel(self, leg: Leg) -> None:
        if leg.cancel_sent or leg.invite is None:
            return
        leg.cancel_sent = True
        cancel = make_cancel(leg.invite)
        for name, value in leg.cancel_headers:
            cancel.headers.add(name, value)
        leg.log.info("CANCEL leg %s", leg.leg_id)
        self._send_and_forget(cancel, leg.destination, add_via=False)

    def _send_and_forget(
        self,
        request: Request,
        destination: tuple[str, str, int],
        *,
        add_via: bool = True,
    ) -> None:
        """Send ``request`` now; its outcome is only logged (no task waits for it)."""
        try:
            future = self.stack.send_request(request, destination, add_via=add_via)
        except Exception:
            self.log.exception("call %s: %s not sent", self.call_id, request.method)
            return
        future.add_done_callback(functools.partial(_log_outcome, request))

    def send_bye(self, leg: Leg, *, cause: int) -> None:
        """Send BYE on a confirmed (or answered) leg; the dialog ends at once."""
        dialog = leg.dialog
        if dialog is None:
            return
        try:
            bye = dialog.create_request("BYE", headers=(reason_header(cause),))
        except LocalProtocolError:
            return
        dialog.terminate()
        leg.log.info("BYE leg %s", leg.leg_id)
        self._send_and_forget(bye, leg.destination)

    # ------------------------------------------------------------ ending

    def finish_leg(
        self,
        leg: Leg,
        *,
        status: int,
        hangup_by: HangupBy,
        cause: int | None = None,
    ) -> None:
        """Mark ``leg`` ended, release its media and report it (idempotent)."""
        if leg.ended:
            return
        if not leg.answered or leg.status == 0:
            leg.status = status
        leg.cause = cause if cause is not None else cause_for_status(status)
        leg.hangup_by = hangup_by
        leg.set_state(LegState.ENDED)
        leg.ended_at = time.time()
        leg.awaiting_ack = None
        self.stop_session_timer(leg)
        self.b2bua.release_slot(leg)
        stats = self._close_endpoint(leg)
        had_media = stats is not None and stats.packets_in > 0
        publish(
            self.b2bua.bus,
            LegEnded(
                at=self._event_time(),
                call_id=self.call_id,
                leg_id=leg.leg_id,
                status=leg.status,
                cause=leg.cause,
                hangup_by=hangup_by.value,
                packets_lost=stats.lost if stats is not None and had_media else None,
                jitter_ms=stats.jitter_ms if stats is not None and had_media else None,
                mos=stats.mos if stats is not None and had_media else None,
            ),
        )

    def end(
        self,
        *,
        hangup_by: str,
        status: int = 200,
        cause: int = CAUSE_NORMAL_CLEARING,
        origin: Leg | None = None,
    ) -> None:
        """End the whole call once: BYE/CANCEL/final on every other live leg.

        :param hangup_by: ``caller``, ``callee`` or ``switch`` for the CDR.
        :param status: the final status for an unanswered caller (487, 480, 486...).
        :param origin: the leg whose peer hung up (already answered, not touched).
        """
        if self.ended:
            return
        self.ended = True
        self.hangup_by = hangup_by
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        dial = self._dial
        if dial is not None and not dial.future.done():
            dial.future.set_result(DialResult(leg=None, status=487, cause=cause))
        for leg in [*self.outbound, self.inbound]:
            if leg.ended:
                continue
            if leg is origin:
                self.finish_leg(leg, status=200, cause=cause, hangup_by=HangupBy.REMOTE)
                continue
            by = HangupBy.LOCAL if hangup_by == "switch" else HangupBy.OTHER
            if leg.answered:
                self.send_bye(leg, cause=cause)
                self.finish_leg(leg, status=200, cause=cause, hangup_by=by)
            elif leg.role is LegRole.OUTBOUND:
                self._cancel_leg(leg, status=487, hangup_by=by)
            else:
                final = status if status >= 300 else 487
                self.respond_inbound(final, headers=(reason_header(cause),))
                self.finish_leg(leg, status=final, cause=cause, hangup_by=by)
        for endpoint_id in self.extra_endpoints:
            with contextlib.suppress(MediaError):
                self.b2bua.media(CloseEndpoint(endpoint_id=endpoint_id))
        self.extra_endpoints.clear()
        self.final_status = (
            200 if self.answered_at is not None else self.inbound.status or status
        )
        duration = 0.0 if self.answered_at is None else time.time() - self.answered_at
        publish(
            self.b2bua.bus,
            CallEnded(
                at=self._event_time(),
                call_id=self.call_id,
                hangup_by=hangup_by,
                status=self.final_status,
                cause=cause,
                duration=duration,
                answered=self.answered_at is not None,
            ),
        )
        self.log.info(
            "call %s ended by %s (%d, cause %d)",
            self.call_id,
            hangup_by,
            self.final_status,
            cause,
        )
        self.ended_event.set()
        self.on_dtmf = None  # the session's hook: a cycle the collector had to find
        self.b2bua.forget_call(self)

    # ------------------------------------------------------------ in-dialog requests

    def on_bye(self, leg: Leg, request: Request) -> None:
        """The peer of ``leg`` hung up (BYE already answered 200)."""
        if leg.dialog is not None:
            leg.dialog.terminate()
        cause = reason_cause(request) or CAUSE_NORMAL_CLEARING
        in_pair = self.bridged is not None and leg in self.bridged
        if leg is self.inbound or in_pair or self.bridged is None:
            by = "caller" if leg is self.inbound else "callee"
            if (
                leg is not self.inbound
                and self.bridged is None
                and self._dial is not None
                and leg in self._dial.legs
            ):
                # An answered fork that is not bridged yet: only that leg goes.
                self.finish_leg(leg, status=200, cause=cause, hangup_by=HangupBy.REMOTE)
                return
            self.end(hangup_by=by, cause=cause, origin=leg)
        else:
            self.finish_leg(leg, status=200, cause=cause, hangup_by=HangupBy.REMOTE)

    def on_cancel(self, request: Request) -> None:
        """The caller CANCELled its INVITE (200 to the CANCEL already sent)."""
        if self.inbound.answered or self.ended:
            return
        cause = reason_cause(request) or CAUSE_NORMAL_CLEARING
        self.inbound.log.info("caller cancelled")
        self.end(hangup_by="caller", status=487, cause=cause)

    def on_offer(self, leg: Leg, request: Request) -> Response:
        """A re-INVITE or UPDATE: answered by :meth:`_answer_offer`; refreshes timers.

        RFC 4028 section 9: a 2xx to a refresh carries the negotiated Session-Expires
        and restarts the timer; a refresh without Session-Expires turns it off.
        """
        try:
            negotiated = negotiate_uas(request)
        except ProtocolError as exc:
            refused = make_response(request, exc.status, exc.reason)
            for name, value in exc.headers:
                refused.headers.add(name, value)
            return refused
        response = self._answer_offer(leg, request)
        if not 200 <= response.status < 300:
            return response
        if negotiated is None:
            if leg.session_timer is not None:
                leg.log.info("refresh without Session-Expires: session timer off")
                self.stop_session_timer(leg)
            return response
        for name, value in negotiated.headers:
            response.headers.add(name, value)
        self.start_session_timer(leg, negotiated)
        return response

    def _answer_offer(self, leg: Leg, request: Request) -> Response:
        """A re-INVITE or UPDATE: answer locally from ``leg``'s endpoint.

        With an offer, we answer it; an INVITE without one gets our offer in the 2xx
        (answer in the ACK). A change of hold state is relayed to the other party.
        """
        assert leg.dialog is not None
        if leg.reinvite_pending and request.method == "INVITE":
            # RFC 3261 14.2: our own re-INVITE is outstanding (glare).
            return make_response(request, 491, "Request Pending")
        response = make_response(request, 200, "OK")
        response.headers.add("Contact", self.b2bua.contact_text())
        response.headers.add("Allow", ALLOW)
        if not request.body:
            if request.method == "INVITE":
                first = leg.media.codec if leg.media else None
                leg.codecs = ordered_codecs(first)
                direction = Direction.SENDONLY if leg.held else Direction.SENDRECV
                leg.offer = build_offer(
                    leg.session,
                    port=leg.rtp_port,
                    codecs=leg.codecs,
                    direction=direction,
                )
                response.headers.add("Content-Type", SDP)
                response.body = leg.offer.to_bytes()
            return response
        try:
            offer = parse_sdp(request.body)
            first = leg.media.codec if leg.media else None
            answer = answer_offer(
                offer, leg.session, ports=[leg.rtp_port], codecs=ordered_codecs(first)
            )
        except ProtocolError as exc:
            refused = make_response(request, exc.status, exc.reason)
            for name, value in exc.headers:
                refused.headers.add(name, value)
            return refused
        media = answer.accepted[0]
        self.apply_media(leg, media)
        leg.answer_sdp = answer.sdp
        response.headers.add("Content-Type", SDP)
        response.body = answer.sdp.to_bytes()
        held = _offer_holds(offer)
        if held != leg.held:
            leg.held = held
            leg.log.info("leg %s %s", leg.leg_id, "holds" if held else "resumes")
            publish(
                self.b2bua.bus,
                CallHeld(
                    at=self._event_time(),
                    call_id=self.call_id,
                    leg_id=leg.leg_id,
                    held=held,
                ),
            )
            partner = self.other(leg)
            if partner is not None:
                self._hold_media(leg, partner)
                direction = Direction.SENDONLY if held else Direction.SENDRECV
                self.spawn(self.reinvite(partner, direction), "re-INVITE")
        return response

    def _hold_media(self, leg: Leg, partner: Leg) -> None:
        """Stop or restart the relay when ``leg`` holds or resumes (RFC 3264 8.4).

        We answered a holding party recvonly or inactive, so nothing may be sent to
        it; its partner is offered sendonly. Breaking the bridge does both; it is
        made again only once neither side holds.
        """
        a, b = leg.endpoint_id, partner.endpoint_id
        if a is None or b is None:
            return
        try:
            if leg.held or partner.held:
                self.b2bua.media(Disconnect(endpoint_id=a))
            else:
                self.b2bua.media(Connect(endpoint_a=a, endpoint_b=b))
        except MediaError as exc:
            leg.log.warning("hold media on %s: %s", leg.leg_id, exc)

    async def reinvite(self, leg: Leg, direction: Direction) -> None:
        """Send our re-INVITE on ``leg`` (hold relay); 481/408/timeout end the call."""
        await self._reinvite(leg, direction)

    async def _reinvite(
        self,
        leg: Leg,
        direction: Direction,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Response | None:
        """Our re-INVITE on ``leg``; its 2xx (ACKed), or None if it failed or ended."""
        dialog = leg.dialog
        if dialog is None or leg.ended or self.ended:
            return None
        if leg.reinvite_pending:
            # TODO: RFC 3261 14.1 glare: a second change while one is outstanding is
            # dropped instead of queued; cost: the other party may show a stale hold.
            leg.log.info("re-INVITE already pending on %s: not sent", leg.leg_id)
            return None
        first = leg.media.codec if leg.media else None
        codecs = ordered_codecs(first)
        offer = build_offer(
            leg.session, port=leg.rtp_port, codecs=codecs, direction=direction
        )
        invite = dialog.create_request(
            "INVITE",
            body=offer.to_bytes(),
            content_type=SDP,
            headers=(("Allow", ALLOW), *headers),
        )
        leg.reinvite_pending = True
        try:
            response = await self.stack.request(invite, leg.destination)
        except RequestTimeout:
            response = None
        finally:
            leg.reinvite_pending = False
        if not self._in_dialog_outcome(leg, invite, response):
            return None
        assert response is not None
        self.stack.send_ack(dialog.create_ack(invite.cseq.number), leg.destination)
        try:
            self.apply_media(leg, process_answer(offer, parse_sdp(response.body)))
        except ProtocolError as exc:
            leg.log.warning("re-INVITE answer unusable: %s", exc.reason)
        return response

    def _in_dialog_outcome(
        self, leg: Leg, request: Request, response: Response | None
    ) -> bool:
        """Whether our re-INVITE/UPDATE succeeded; 481/408/timeout end the call.

        RFC 3261 12.2.1.2 and 14.1: those end the dialog (no response at all counts
        as 408); 488, 491 and other refusals keep the call as it was.
        """
        dialog = leg.dialog
        if self.is_over(leg) or dialog is None:
            return False
        status = 408 if response is None else response.status
        if response is not None:
            dialog.receive_response(request, response)
        else:
            dialog.terminate()
        if status in REINVITE_FATAL:
            leg.log.warning("%s got %d: ending the call", request.method, status)
            self.end(hangup_by="switch", cause=cause_for_status(status), origin=None)
            return False
        if status >= 300:
            leg.log.info("%s refused %d: call kept", request.method, status)
            return False
        return True

    # ------------------------------------------------------------ session timers

    def start_session_timer(self, leg: Leg, negotiated: Negotiated) -> None:
        """Run (or restart) ``leg``'s RFC 4028 timer from now."""
        now = asyncio.get_running_loop().time()
        timer = leg.session_timer
        if timer is None:
            leg.session_timer = SessionTimer(
                interval=negotiated.interval, we_refresh=negotiated.we_refresh, now=now
            )
        else:
            timer.refreshed(
                now, interval=negotiated.interval, we_refresh=negotiated.we_refresh
            )
        leg.log.debug(
            "leg %s session timer %d s, refresher %s",
            leg.leg_id,
            negotiated.interval,
            "us" if negotiated.we_refresh else "the peer",
        )
        self._schedule_session_timer(leg)

    def stop_session_timer(self, leg: Leg) -> None:
        if leg.session_timer_handle is not None:
            leg.session_timer_handle.cancel()
            leg.session_timer_handle = None
        leg.session_timer = None

    def _schedule_session_timer(self, leg: Leg) -> None:
        if leg.session_timer_handle is not None:
            leg.session_timer_handle.cancel()
            leg.session_timer_handle = None
        timer = leg.session_timer
        if timer is None or leg.ended or self.ended:
            return
        leg.session_timer_handle = asyncio.get_running_loop().call_at(
            timer.next_deadline(), self.on_session_timer, leg
        )

    def on_session_timer(self, leg: Leg, now: float | None = None) -> None:
        """``leg``'s session timer is due: refresh, or end the call (RFC 4028 10)."""
        timer = leg.session_timer
        if timer is None or self.ended or leg.ended:
            return
        if now is None:
            now = asyncio.get_running_loop().time()
        action = timer.handle_deadline(now)
        if action is TimerAction.EXPIRE:
            leg.log.warning("session of leg %s expired: ending the call", leg.leg_id)
            self.end(hangup_by="switch", cause=CAUSE_RECOVERY_ON_TIMER_EXPIRY)
            return
        if action is TimerAction.REFRESH:
            self.spawn(self._refresh_session(leg), "session refresh")
        self._schedule_session_timer(leg)

    async def _refresh_session(self, leg: Leg) -> None:
        """Our refresh (RFC 4028 7.4): UPDATE if the peer takes it, else re-INVITE."""
        timer = leg.session_timer
        dialog = leg.dialog
        if timer is None or dialog is None:
            return
        headers = (
            ("Session-Expires", f"{int(timer.interval)};refresher=uac"),
            ("Supported", OPTION_TIMER),
        )
        response: Response | None
        if leg.peer_allows_update:
            try:
                update = dialog.create_request("UPDATE", headers=headers)
            except LocalProtocolError:
                return
            try:
                response = await self.stack.request(update, leg.destination)
            except RequestTimeout:
                response = None
            if not self._in_dialog_outcome(leg, update, response):
                return
        else:
            partner = self.other(leg)
            held = partner is not None and partner.held
            direction = Direction.SENDONLY if held else Direction.SENDRECV
            response = await self._reinvite(leg, direction, headers)
        if response is None or leg.session_timer is not timer:
            return
        negotiated = from_response(response)
        now = asyncio.get_running_loop().time()
        if negotiated is None:
            timer.refreshed(now)
        else:
            timer.refreshed(
                now, interval=negotiated.interval, we_refresh=negotiated.we_refresh
            )
        self._schedule_session_timer(leg)

    # ------------------------------------------------------------ transfer

    def replace_leg(self, old: Leg, new: Leg) -> None:
        """RFC 3891: ``new`` (an INVITE with Replaces) takes the place of ``old``.

        ``old`` is sent BYE, ``new`` is answered and bridged to ``old``'s partner.
        """
        partner = self.other(old)
        if old is self.inbound:
            self.inbound = new
        else:
            self.outbound.append(new)
        self.b2bua.register_endpoint_of(new, self)
        self._leg_started(new)
        old.log.info("leg %s replaced by %s", old.leg_id, new.leg_id)
        self.send_bye(old, cause=CAUSE_NORMAL_CLEARING)
        self.finish_leg(old, status=200, hangup_by=HangupBy.LOCAL)
        if partner is not None:
            self.connect(new, partner)
        self.answer_inbound(new)
        publish(
            self.b2bua.bus,
            CallTransferred(
                at=self._event_time(),
                call_id=self.call_id,
                leg_id=old.leg_id,
                target=new.peer,
                kind="attended",
            ),
        )

    def on_refer(self, leg: Leg, request: Request) -> Response:
        """REFER from a bridged party (RFC 3515): 202, then a blind transfer."""
        refer_to = request.headers.get("Refer-To")
        transferee = self.other(leg)
        if refer_to is None:
            return make_response(request, 400, "Missing Refer-To")
        if transferee is None:
            return make_response(request, 603, "Decline")
        try:
            target = parse_name_addr(refer_to)
        except BadMessage:
            return make_response(request, 400, "Bad Refer-To")
        if isinstance(target.uri, SipUri):
            replaces = {
                name.lower(): value for name, value in target.uri.headers.items()
            }.get("replaces")
            if replaces is not None:
                return self._refer_replaces(leg, transferee, request, replaces)
        number = called_number(str(target.uri))
        self.spawn(self._transfer(leg, transferee, number), "transfer")
        return make_response(request, 202, "Accepted")

    def _refer_replaces(
        self, referrer: Leg, transferee: Leg, request: Request, replaces: str
    ) -> Response:
        """Attended transfer (RFC 5589 4.1 with RFC 3891): join two of our calls.

        The Refer-To's Replaces names the referrer's other dialog with us (the
        consultation call); its partner is moved into this call and bridged to the
        transferee, and the referrer's two legs are sent BYE. No INVITE with
        Replaces goes out: both dialogs end here, so the switch joins them itself.
        """
        try:
            call_id, to_tag, from_tag, _ = parse_replaces(replaces)
        except ProtocolError as exc:
            return make_response(request, exc.status, exc.reason)
        found = self.b2bua.find_dialog(call_id, to_tag, from_tag)
        if found is None:
            return make_response(request, 481, "Replaced Dialog Does Not Exist")
        consult, replaced = found
        target = consult.other(replaced)
        if consult is self or consult.ended or replaced.ended or target is None:
            return make_response(request, 603, "Decline")
        self.spawn(
            self._attended_transfer(referrer, transferee, consult, replaced, target),
            "attended transfer",
        )
        return make_response(request, 202, "Accepted")

    async def _attended_transfer(
        self, referrer: Leg, transferee: Leg, consult: Call, replaced: Leg, target: Leg
    ) -> None:
        await self._notify(referrer, "SIP/2.0 100 Trying", final=False)
        if self.ended or consult.ended or target.ended or transferee.ended:
            await self._notify(referrer, "SIP/2.0 487 Request Terminated", final=True)
            return
        consult.release_leg(target)
        self.adopt_leg(target, from_call=consult)
        self.connect(transferee, target)
        publish(
            self.b2bua.bus,
            CallTransferred(
                at=self._event_time(),
                call_id=self.call_id,
                leg_id=referrer.leg_id,
                target=target.peer,
                kind="attended",
            ),
        )
        self.log.info(
            "call %s: %s joined to %s (attended transfer)",
            self.call_id,
            transferee.leg_id,
            target.leg_id,
        )
        # Whoever the referrer held during the consultation hears again.
        for held_by_referrer, leg in ((referrer, transferee), (replaced, target)):
            if held_by_referrer.held:
                self.spawn(self.reinvite(leg, Direction.SENDRECV), "unhold")
        await self._notify(referrer, "SIP/2.0 200 OK", final=True)
        consult.end(hangup_by="switch", cause=CAUSE_NORMAL_CLEARING)
        if not referrer.ended:
            self.send_bye(referrer, cause=CAUSE_NORMAL_CLEARING)
            self.finish_leg(referrer, status=200, hangup_by=HangupBy.LOCAL)

    def release_leg(self, leg: Leg) -> None:
        """Give ``leg`` up to another call (it leaves our lists and our bridge)."""
        if leg in self.outbound:
            self.outbound.remove(leg)
        if self.bridged is not None and leg in self.bridged:
            self.bridged = None
            self.listen_for_tones()

    def adopt_leg(self, leg: Leg, *, from_call: Call) -> None:
        """Take ``leg`` over from ``from_call``; its trunk slot moves with it."""
        if leg is from_call.inbound:
            # The consultation's caller moves: the old call keeps an ended stand-in.
            from_call.inbound = _ended_copy(leg)
        self.outbound.append(leg)
        self.b2bua.adopt(leg, self)

    async def _transfer(self, referrer: Leg, transferee: Leg, number: str) -> None:
        await self._notify(referrer, "SIP/2.0 100 Trying", final=False)
        publish(
            self.b2bua.bus,
            CallTransferred(
                at=self._event_time(),
                call_id=self.call_id,
                leg_id=referrer.leg_id,
                target=number,
                kind="blind",
            ),
        )
        routed = self.b2bua.route_transfer(self, referrer, number)
        if isinstance(routed, int):
            await self._notify(referrer, f"SIP/2.0 {routed} Refused", final=True)
            return
        result = await self.dial(
            routed, ring_timeout=self.b2bua.limits.ring_timeout, relay=False
        )
        if self.ended:
            return
        if result.leg is None:
            await self._notify(referrer, f"SIP/2.0 {result.status} Failed", final=True)
            return
        self.connect(transferee, result.leg)
        await self._notify(referrer, "SIP/2.0 200 OK", final=True)
        if not referrer.ended:
            self.send_bye(referrer, cause=CAUSE_NORMAL_CLEARING)
            self.finish_leg(referrer, status=200, hangup_by=HangupBy.LOCAL)

    async def _notify(self, leg: Leg, sipfrag: str, *, final: bool) -> None:
        """NOTIFY of the REFER's implicit subscription (RFC 3515 section 2.4.4)."""
        dialog = leg.dialog
        if dialog is None or leg.ended:
            return
        state = (
            "terminated;reason=noresource"
            if final
            else f"active;expires={REFER_SUBSCRIPTION_EXPIRES}"
        )
        try:
            notify = dialog.create_request(
                "NOTIFY",
                body=(sipfrag + "\r\n").encode(),
                content_type=SIPFRAG,
                headers=(("Event", "refer"), ("Subscription-State", state)),
            )
        except LocalProtocolError:
            return
        try:
            await self.stack.request(notify, leg.destination)
        except RequestTimeout:
            leg.log.info("NOTIFY timed out")


def _ended_copy(leg: Leg) -> Leg:
    """An ended leg standing in for ``leg`` in a call it has left."""
    copy = Leg(
        role=leg.role,
        call_id=leg.call_id,
        peer=leg.peer,
        destination=leg.destination,
        media_host=leg.session.address,
    )
    copy.leg_id = leg.leg_id
    copy.invite = leg.invite
    copy.status = leg.status or 200
    copy.set_state(LegState.ENDED)
    return copy


def allowed_methods(message: Request | Response) -> frozenset[str]:
    """The methods of every ``Allow`` line (RFC 3261 20.5), upper case."""
    methods: set[str] = set()
    for value in message.headers.get_all("Allow"):
        methods.update(method.strip().upper() for method in value.split(","))
    return frozenset(methods)


def _offer_holds(offer: SessionDescription) -> bool:
    """Whether an offer puts us on hold: sendonly/inactive or c=0.0.0.0 (RFC 3264 8.4)."""
    for media in offer.media:
        if media.port == 0 or media.media != "audio":
            continue
        connection = offer.connection_for(media)
        if connection is not None and connection.is_null:
            return True
        return not offer.direction_for(media).receives
    return False


def best_status(statuses: list[int]) -> int:
    """The final status to give the caller when every fork failed (RFC 3261 16.7.6).

    A 6xx wins; then busy; then the lowest other 4xx/5xx; legs we cancelled (487) or
    that timed out (408) count only when nothing else answered.
    """
    if any(600 <= status < 700 for status in statuses):
        return min(status for status in statuses if status >= 600)
    if 486 in statuses:
        return 486
    others = [s for s in statuses if s >= 300 and s not in (408, 487)]
    if others:
        return min(others)
    if 408 in statuses:
        return 408
    return 480
