"""SIP dialogs, sans-IO (RFC 3261 section 12, with the ACK rules of 13.2.2.4).

A :class:`Dialog` holds the state RFC 3261 12.1 names: dialog id (Call-ID, local tag,
remote tag), local and remote sequence numbers, local and remote URI, remote target,
route set and secure flag. It is created on the UAC side from a 1xx with a To tag
(early) or a 2xx (confirmed) to the dialog-creating request (:meth:`Dialog.from_uac`),
and on the UAS side from the request itself (:meth:`Dialog.from_uas`). It then builds
in-dialog requests (:meth:`Dialog.create_request`, :meth:`Dialog.create_ack`) and
checks the ones received (:meth:`Dialog.receive_request`). :class:`Dialogs` is the
registry by :class:`DialogId` and answers 481 for in-dialog requests that match nothing.

Theory of operation
-------------------
The dialog's life is a three-state table (early, confirmed, terminated) keyed by
``(state, input)`` like the transaction machines; the rest is bookkeeping. Requests
built here carry no Via: the transport that picks the next hop knows the sent-by, so
the caller prepends a Via with a fresh branch (:func:`~switch.sip.transaction.new_branch`)
or passes ``via=`` (RFC 3261 8.1.1.7); :func:`next_hop_uri` tells where to send the
request (8.1.2). ``now`` is never needed: dialogs have no timers of their own (the 2xx
retransmission of 13.3.1.4 and the session timer live in the TU).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from switch.sip.errors import LocalProtocolError, ProtocolError
from switch.sip.headers import NameAddr, Via, parse_name_addr
from switch.sip.message import Headers, Request, Response
from switch.sip.tokens import randbelow
from switch.sip.transaction import MAX_FORWARDS, CallIdAdapter, new_tag
from switch.sip.uri import SipUri, Uri

logger = logging.getLogger(__name__)

# RFC 3261 8.1.1.5: the first CSeq of a request stream is below 2**31; the number
# stays within 32 bits.
INITIAL_CSEQ_LIMIT = 2**31
MAX_CSEQ = 2**32 - 1
# RFC 3261 12.2 (INVITE), RFC 3311 (UPDATE), RFC 6665 (SUBSCRIBE, NOTIFY), RFC 3515
# (REFER): target refresh requests, which may change the remote target.
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
# RFC 3261 12.2.1.2: a 481 or a 408 to an in-dialog request ends the dialog.
DIALOG_ENDING_STATUSES = frozenset({408, 481})
# RFC 3261 19.1.1 table 1: URI parts not allowed in a Request-URI (12.2.1.1 strips
# them when a strict router's URI becomes the Request-URI).
REQUEST_URI_FORBIDDEN_PARAMS = frozenset({"method"})
# RFC 3261 section 21.5.1 and 21.4.19.
STATUS_SERVER_INTERNAL_ERROR = 500
STATUS_DOES_NOT_EXIST = 481
REASON_DOES_NOT_EXIST = "Call/Transaction Does Not Exist"
REASON_CSEQ_OUT_OF_ORDER = "CSeq lower than the dialog's remote sequence number"
_MAX_FORWARDS_TEXT = str(MAX_FORWARDS)


class DialogState(enum.Enum):
    """Dialog states as RFC 3261 section 12 names them."""

    __hash__ = object.__hash__  # by identity, see transaction.TransactionKind

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogInput(enum.Enum):
    """What moves a dialog (RFC 3261 12.1, 12.3, 13.2.2.4)."""

    __hash__ = object.__hash__  # by identity, see transaction.TransactionKind

    SUCCESS = "2xx to the dialog-creating request"
    FAILURE = "non-2xx final to the dialog-creating request"
    TERMINATE = "dialog ended (BYE, 481/408, TU decision)"


_D = DialogState
_DI = DialogInput

DIALOG_TRANSITIONS: dict[tuple[DialogState, DialogInput], DialogState] = {
    (_D.EARLY, _DI.SUCCESS): _D.CONFIRMED,
    # RFC 3261 12.3: a non-2xx final ends every early dialog of the request.
    (_D.EARLY, _DI.FAILURE): _D.TERMINATED,
    (_D.EARLY, _DI.TERMINATE): _D.TERMINATED,
    # A retransmitted or re-sent 2xx changes nothing.
    (_D.CONFIRMED, _DI.SUCCESS): _D.CONFIRMED,
    (_D.CONFIRMED, _DI.TERMINATE): _D.TERMINATED,
    (_D.TERMINATED, _DI.TERMINATE): _D.TERMINATED,
}


@dataclass(frozen=True, slots=True)
class DialogId:
    """RFC 3261 12: Call-ID, local tag, remote tag ("" for an RFC 2543 peer's none)."""

    call_id: str
    local_tag: str
    remote_tag: str


def _without_tag(address: NameAddr) -> NameAddr:
    """An independent copy of ``address`` (URI included) with no ``tag``."""
    params = dict(address.params)
    params.pop("tag", None)
    return NameAddr(address.uri.copy(), address.display_name, params)


def _render_with_tag(address: NameAddr, tag: str) -> str:
    """``address`` with ``tag`` (if any) as From/To text; the URI is rendered, not
    copied, and ``address`` is left as it was."""
    if not tag:
        return str(address)
    params = address.params
    if "tag" not in params:
        # What a copy with the tag added last would render, without the copy.
        return f"{address};tag={tag}"
    return str(NameAddr(address.uri, address.display_name, {**params, "tag": tag}))


def _record_route(message: Request | Response) -> list[NameAddr]:
    return [parse_name_addr(value) for value in message.headers.get_all("Record-Route")]


def _contact_uri(message: Request | Response) -> Uri | None:
    # No Contact line reads as no contacts, as does "*": no need to look twice.
    contacts = message.contacts
    return contacts[0].uri.copy() if contacts else None


def is_loose_router(route: NameAddr) -> bool:
    """RFC 3261 19.1.1: a route URI with the ``lr`` parameter is a loose router."""
    return isinstance(route.uri, SipUri) and "lr" in route.uri.params


def _as_request_uri(uri: Uri) -> Uri:
    # RFC 3261 12.2.1.1: strip what a Request-URI may not carry (19.1.1 table 1).
    copy = uri.copy()
    if isinstance(copy, SipUri):
        for name in REQUEST_URI_FORBIDDEN_PARAMS:
            copy.params.pop(name, None)
        copy.headers.clear()
    return copy


def next_hop_uri(request: Request) -> Uri:
    """Where ``request`` goes next (RFC 3261 8.1.2): the top Route, else Request-URI.

    Resolve the result with RFC 3263 to get the transport address.
    """
    routes = request.headers.get_all("Route")
    if routes:
        return parse_name_addr(routes[0]).uri
    return request.uri


class Dialog:
    """One dialog's state (RFC 3261 12.1) and the requests built from it.

    Use :meth:`from_uac` or :meth:`from_uas` rather than the constructor. Driven by the
    TU: :meth:`receive_request` for each in-dialog request, :meth:`receive_response`
    for responses to requests of this dialog, :meth:`confirm` when the UAS sends its
    2xx, :meth:`terminate` on BYE.

    :param local_contact: our Contact, put in target refresh requests (12.2.1.1).
    """

    def __init__(
        self,
        *,
        dialog_id: DialogId,
        state: DialogState,
        local_uri: NameAddr,
        remote_uri: NameAddr,
        remote_target: Uri,
        route_set: list[NameAddr],
        local_seq: int | None,
        remote_seq: int | None,
        secure: bool = False,
        local_contact: NameAddr | None = None,
    ) -> None:
        self.id = dialog_id
        self.state = state
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.secure = secure
        self.local_contact = local_contact
        self._adapter: CallIdAdapter | None = None

    @property
    def _log(self) -> CallIdAdapter:
        # Made on first use: a dialog logs only its transitions, at DEBUG.
        adapter = self._adapter
        if adapter is None:
            adapter = self._adapter = CallIdAdapter(
                logger, {"call_id": self.id.call_id}
            )
        return adapter

    # --- creation

    @classmethod
    def from_uac(
        cls,
        request: Request,
        response: Response,
        *,
        local_contact: NameAddr | None = None,
        secure: bool | None = None,
    ) -> Dialog:
        """The UAC side's dialog from a 1xx (with To tag) or 2xx (RFC 3261 12.1.2).

        Route set: the response's Record-Route reversed. Remote target: its Contact; a
        1xx without Contact keeps the Request-URI (a tolerance: 12.1.2 says MUST).

        :param secure: defaults to "the Request-URI is sips" (12.1.2 also wants TLS,
            which only the caller knows).
        :raises ProtocolError: the response has no To tag, is not 101-299, or is a 2xx
            without Contact (RFC 3261 12.1.2); the caller should end the session.
        """
        remote_tag = response.to.tag
        if remote_tag is None:
            raise ProtocolError("Dialog-creating response has no To tag")
        if not 101 <= response.status <= 299:
            raise ProtocolError(f"{response.status} response cannot create a dialog")
        remote_target = _contact_uri(response)
        if remote_target is None:
            if response.status >= 200:
                raise ProtocolError("2xx creating a dialog has no Contact")
            remote_target = request.uri.copy()
        local_tag = request.from_.tag or ""
        if secure is None:
            secure = isinstance(request.uri, SipUri) and request.uri.scheme == "sips"
        return cls(
            dialog_id=DialogId(request.call_id, local_tag, remote_tag),
            state=_D.EARLY if response.status < 200 else _D.CONFIRMED,
            local_uri=_without_tag(request.from_),
            remote_uri=_without_tag(response.to),
            remote_target=remote_target,
            route_set=list(reversed(_record_route(response))),
            local_seq=request.cseq.number,
            remote_seq=None,
            secure=secure,
            local_contact=local_contact,
        )

    @classmethod
    def from_uas(
        cls,
        request: Request,
        *,
        local_tag: str | None = None,
        local_contact: NameAddr | None = None,
        secure: bool = False,
        early: bool = False,
    ) -> Dialog:
        """The UAS side's dialog from the dialog-creating request (RFC 3261 12.1.1).

        Route set: the request's Record-Route in order. Remote target: its Contact.
        Answer with ``to_tag=dialog.id.local_tag``; call :meth:`confirm` with the 2xx.

        :param local_tag: our To tag (a fresh :func:`new_tag` if omitted).
        :param secure: the request came over TLS with a sips Request-URI.
        :param early: the dialog starts with a 1xx (early) rather than the 2xx.
        :raises ProtocolError: the request has no Contact (RFC 3261 8.1.1.8); answer
            400.
        """
        remote_target = _contact_uri(request)
        if remote_target is None:
            raise ProtocolError(f"{request.method} creating a dialog has no Contact")
        tag = new_tag() if local_tag is None else local_tag
        return cls(
            dialog_id=DialogId(request.call_id, tag, request.from_.tag or ""),
            state=_D.EARLY if early else _D.CONFIRMED,
            local_uri=_without_tag(request.to),
            remote_uri=_without_tag(request.from_),
            remote_target=remote_target,
            route_set=_record_route(request),
            local_seq=None,
            remote_seq=request.cseq.number,
            secure=secure,
            local_contact=local_contact,
        )

    # --- state

    def confirm(self) -> None:
        """A 2xx to the dialog-creating request was sent or received."""
        self.process(_DI.SUCCESS)

    def terminate(self) -> None:
        """End the dialog (BYE sent or received, or the TU gave up, RFC 3261 15)."""
        self.process(_DI.TERMINATE)

    def process(self, event: DialogInput) -> None:
        """Take one input of the dialog table (RFC 3261 12, 12.3).

        :raises LocalProtocolError: the pair is not in :data:`DIALOG_TRANSITIONS`;
            the dialog is then terminated.
        """
        target = DIALOG_TRANSITIONS.get((self.state, event))
        if target is None:
            old = self.state
            self._set_state(_D.TERMINATED)
            raise LocalProtocolError(f"{old.value} dialog cannot take {event.value!r}")
        self._set_state(target)

    def _set_state(self, state: DialogState) -> None:
        if state is not self.state:
            if logger.isEnabledFor(logging.DEBUG):
                self._log.debug("dialog %s -> %s", self.state.value, state.value)
            self.state = state

    # --- receiving

    def receive_request(self, request: Request) -> None:
        """Check an in-dialog request and learn from it (RFC 3261 12.2.2).

        :raises ProtocolError: status 500 when the CSeq is lower than the remote
            sequence number (12.2.2); the dialog is unchanged.
        """
        number = request.cseq.number
        # ACK and CANCEL reuse the CSeq of the request they go with (13.2.2.4, 9.1).
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and number < self.remote_seq:
                raise ProtocolError(
                    REASON_CSEQ_OUT_OF_ORDER, status=STATUS_SERVER_INTERNAL_ERROR
                )
            self.remote_seq = number
        if request.method in TARGET_REFRESH_METHODS:
            # TODO: RFC 6141 section 4 moves the UAS's refresh to the 2xx it sends;
            # refreshing on receipt (RFC 3261 12.2.2) keeps a rejected re-INVITE's
            # target, which costs a misrouted request only if the peer's moved.
            target = _contact_uri(request)
            if target is not None:
                self.remote_target = target

    def receive_response(self, request: Request, response: Response) -> None:
        """Learn from a response to ``request``, a request of this dialog (UAC side).

        2xx to the dialog-creating INVITE: early becomes confirmed and the route set is
        recomputed (13.2.2.4). 2xx to a target refresh: new remote target (12.2.1.2).
        Non-2xx final to the dialog-creating request: early dialog ends (12.3). 481 or
        408 to anything: the dialog ends (12.2.1.2).
        """
        status = response.status
        if status in DIALOG_ENDING_STATUSES:
            self.process(_DI.TERMINATE)
            return
        if status < 200:
            # TODO: RFC 3262 reliable 1xx may carry a new Contact/Record-Route for an
            # early dialog; they are ignored until the 2xx recomputes both, which
            # costs a misrouted PRACK/UPDATE only if the peer changes them early.
            return
        # An early dialog only ever comes from an INVITE (no re-INVITE while early).
        # TODO: RFC 6665 SUBSCRIBE-created dialogs are not modelled; they cost a TU
        # that wants them its own route set handling.
        creating = self.state is _D.EARLY and request.method == "INVITE"
        if status >= 300:
            if creating:
                self.process(_DI.FAILURE)
            return
        if creating:
            self.route_set = list(reversed(_record_route(response)))
            self.process(_DI.SUCCESS)
        if request.method in TARGET_REFRESH_METHODS:
            target = _contact_uri(response)
            if target is not None:
                self.remote_target = target

    # --- building requests

    def create_request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        via: Via | None = None,
    ) -> Request:
        """A request within this dialog (RFC 3261 12.2.1.1), with the next local CSeq.

        From, To, Call-ID, CSeq, Max-Forwards, Route and Request-URI follow the route
        set (loose or strict); Contact is added to target refresh requests. There is no
        Via unless ``via`` is given: prepend one with a fresh branch before sending.
        Use :meth:`create_ack` for the ACK and
        :func:`~switch.sip.transaction.make_cancel` for a CANCEL, which take no CSeq.

        :param headers: extra header lines, added after the dialog's own.
        :raises LocalProtocolError: ACK or CANCEL asked for, a body without
            Content-Type (RFC 3261 7.4.1), or the dialog is terminated.
        """
        if method in ("ACK", "CANCEL"):
            raise LocalProtocolError(
                f"{method} takes no new CSeq: see create_request docs"
            )
        if self.state is _D.TERMINATED:
            raise LocalProtocolError(f"{method} in a terminated dialog")
        if self.local_seq is None:
            # RFC 3261 12.2.1.1 / 8.1.1.5: start a UAS's local sequence at random.
            self.local_seq = randbelow(INITIAL_CSEQ_LIMIT)
        elif self.local_seq >= MAX_CSEQ:
            raise LocalProtocolError("local CSeq would exceed 32 bits")
        else:
            self.local_seq += 1
        return self._build(method, self.local_seq, body, content_type, headers, via)

    def create_ack(
        self,
        cseq: int,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        via: Via | None = None,
    ) -> Request:
        """The ACK for a 2xx to the INVITE numbered ``cseq`` (RFC 3261 13.2.2.4).

        Built like any in-dialog request but with the INVITE's CSeq number; it needs a
        fresh branch of its own (it is not part of the INVITE transaction). Pass the
        INVITE's Authorization lines in ``headers`` if it had any (13.2.2.4).
        """
        return self._build("ACK", cseq, body, content_type, headers, via)

    def _build(
        self,
        method: str,
        cseq: int,
        body: bytes,
        content_type: str | None,
        extra: Iterable[tuple[str, str]],
        via: Via | None,
    ) -> Request:
        if body and content_type is None:
            raise LocalProtocolError("a body needs a Content-Type (RFC 3261 7.4.1)")
        headers = Headers()
        if via is not None:
            headers.add("Via", str(via))
        headers.add("Max-Forwards", _MAX_FORWARDS_TEXT)
        uri = self._route(headers)
        dialog_id = self.id
        headers.add("From", _render_with_tag(self.local_uri, dialog_id.local_tag))
        headers.add("To", _render_with_tag(self.remote_uri, dialog_id.remote_tag))
        headers.add("Call-ID", dialog_id.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if self.local_contact is not None and method in TARGET_REFRESH_METHODS:
            headers.add("Contact", str(self.local_contact))
        if content_type is not None:
            headers.add("Content-Type", content_type)
        for name, value in extra:
            headers.add(name, value)
        return Request(method=method, uri=uri, headers=headers, body=body)

    def _route(self, headers: Headers) -> Uri:
        """Add the Route lines; return the Request-URI (RFC 3261 12.2.1.1)."""
        if not self.route_set:
            return self.remote_target.copy()
        first = self.route_set[0]
        if is_loose_router(first):
            for route in self.route_set:
                headers.add("Route", str(route))
            return self.remote_target.copy()
        # Strict router: its URI becomes the Request-URI, the rest of the route set and
        # then the remote target become the Route header field.
        for route in self.route_set[1:]:
            headers.add("Route", str(route))
        headers.add("Route", str(NameAddr(uri=self.remote_target.copy())))
        return _as_request_uri(first.uri)


class Dialogs:
    """The dialogs of one user agent, by :class:`DialogId` (RFC 3261 12.2)."""

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def add(self, dialog: Dialog) -> None:
        """Register ``dialog``.

        :raises LocalProtocolError: a dialog with that id is already registered.
        """
        if dialog.id in self._dialogs:
            raise LocalProtocolError(f"dialog {dialog.id} already exists")
        self._dialogs[dialog.id] = dialog

    def remove(self, dialog_id: DialogId) -> Dialog | None:
        """Forget a dialog; return it (``None`` if unknown)."""
        return self._dialogs.pop(dialog_id, None)

    def get(self, dialog_id: DialogId) -> Dialog | None:
        """The dialog with this id, if any."""
        return self._dialogs.get(dialog_id)

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def __contains__(self, dialog_id: object) -> bool:
        return dialog_id in self._dialogs

    def match(self, request: Request) -> Dialog | None:
        """The dialog a received request belongs to (RFC 3261 12.2.2), if any.

        Local tag is the To tag, remote tag the From tag; no To tag, no dialog.
        """
        local_tag = request.to.tag
        if local_tag is None:
            return None
        dialog_id = DialogId(request.call_id, local_tag, request.from_.tag or "")
        return self._dialogs.get(dialog_id)

    def match_response(self, response: Response) -> Dialog | None:
        """The dialog a response to our request belongs to (From tag local)."""
        remote_tag = response.to.tag
        if remote_tag is None:
            return None
        dialog_id = DialogId(response.call_id, response.from_.tag or "", remote_tag)
        return self._dialogs.get(dialog_id)

    def match_in_dialog(self, request: Request) -> Dialog | None:
        """Like :meth:`match`, but an in-dialog request that matches nothing is refused.

        :returns: the dialog; ``None`` for a request without To tag (not in a dialog)
            and for an unmatched ACK (never answered, RFC 3261 17: drop it).
        :raises ProtocolError: 481 Call/Transaction Does Not Exist (RFC 3261 12.2.2).
        """
        dialog = self.match(request)
        if dialog is None and request.to.tag is not None and request.method != "ACK":
            raise ProtocolError(REASON_DOES_NOT_EXIST, status=STATUS_DOES_NOT_EXIST)
        return dialog
